/**
 * A full garbage collection where the runtime allows one (V8's
 * `--expose-gc`, which `./replicator` and the compiled binary give): called
 * between the windows of a pull and the chunks of a first scan, so a long run
 * holds about one window's worth, not whatever V8's heap growth allows on a
 * machine with much memory. Without the flag it does nothing.
 *
 * A full collection costs several milliseconds even on a small heap, which a
 * lento-assisted sync of a few files cannot afford; so it runs only once the
 * process holds {@link COLLECT_ABOVE_BYTES}. The measure is the resident size,
 * not the JavaScript heap: what the heap's small objects hold outside it
 * (node:crypto's hash contexts, one per file copied) is freed only by a
 * collection, and a 1,000,000-file clone that collected by heap size alone
 * reached 668 MB.
 *
 * @module
 */

/** Resident size below which a collection is skipped (a small sync stays near 50 MB). */
export const COLLECT_ABOVE_BYTES = 128 << 20;

/** Collects garbage now, if the runtime exposes how and the process is large enough to matter. */
export function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc && Deno.memoryUsage().rss >= COLLECT_ABOVE_BYTES) gc();
}

/** The V8 flags every way of running the program passes (the wrapper, the binary, the bench). */
export const V8_FLAGS = "--expose-gc";
