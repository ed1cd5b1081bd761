/**
 * Timers that are cheap to start. Deno sets up the machinery behind
 * setTimeout and setInterval on their first use in a process: about 10 ms
 * (Deno 2.9 on the bench machine), a tenth of a whole lento-assisted sync.
 * AbortSignal.timeout has its own timer, which starts in under 1 ms. Like
 * setTimeout, a timer here keeps the process alive until it fires or is
 * cancelled.
 *
 * @example
 * ```ts
 * const cancel = after(5000, () => conn.close()); // give up on a silent peer
 * try { await answer; } finally { cancel(); }
 * await sleep(100);
 * ```
 * @module
 */

/** Runs `fire` once after `ms` milliseconds, unless the returned function is called first. */
export function after(ms: number, fire: () => void): () => void {
  const signal = AbortSignal.timeout(ms);
  signal.addEventListener("abort", fire, { once: true });
  // Without a listener the signal's timer no longer holds the process open.
  return () => signal.removeEventListener("abort", fire);
}

/** Resolves with `value` after `ms` milliseconds. */
export function sleep<T = void>(ms: number, value?: T): Promise<T> {
  return new Promise((ok) => after(ms, () => ok(value as T)));
}

/** Runs `tick` every `ms` milliseconds until the returned function is called. */
export function every(ms: number, tick: () => void): () => void {
  let cancel = () => {};
  let stopped = false;
  const arm = () => {
    cancel = after(ms, () => {
      tick();
      if (!stopped) arm();
    });
  };
  arm();
  return () => {
    stopped = true;
    cancel();
  };
}
