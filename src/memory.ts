/**
 * A full garbage collection where the runtime allows one (V8's
 * `--expose-gc`, which `./replicator` and the compiled binary give): called
 * between the windows of a pull and the chunks of a first scan, so a long run
 * holds about one window's worth, not whatever V8's heap growth allows on a
 * machine with much memory. Without the flag it does nothing.
 *
 * @module
 */

/** Collects garbage now, if the runtime exposes how. */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** The V8 flags every way of running the program passes (the wrapper, the binary, the bench). */
export const V8_FLAGS = "--expose-gc";
