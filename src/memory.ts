/**
 * A full garbage collection where the runtime allows one (V8's
 * `--expose-gc`, which `./replicator` and the compiled binary give): called
 * between the windows of a pull and the chunks of a first scan, so a long run
 * holds about one window's worth, not whatever V8's heap growth allows on a
 * machine with much memory. Without the flag it does nothing.
 *
 * A full collection costs several milliseconds even on a small heap, which a
 * lento-assisted sync of a few files cannot afford: below
 * {@link COLLECT_ABOVE_BYTES} of live heap there is nothing worth collecting.
 *
 * @module
 */

/** Heap in use below which a collection is skipped. */
export const COLLECT_ABOVE_BYTES = 16 << 20;

/** Collects garbage now, if the runtime exposes how and the heap is large enough to matter. */
export function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc && Deno.memoryUsage().heapUsed >= COLLECT_ABOVE_BYTES) gc();
}

/** The V8 flags every way of running the program passes (the wrapper, the binary, the bench). */
export const V8_FLAGS = "--expose-gc";
