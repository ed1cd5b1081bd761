/**
 * What a change-event source (the Presto device, fanotify) tells lento. A
 * source only names paths to look at again; lento's scoped scan decides what
 * changed, so every capture path produces the same records as a full scan.
 *
 * @module
 */

/** One batch item from a source. */
export type Hint =
  /** Re-examine these volume-relative paths ("" is the volume root). A rename names both paths. */
  | { kind: "paths"; paths: string[] }
  /** Events were lost (a full ring, an unmappable object): rescan the whole volume. */
  | { kind: "overflow"; lost: number };

/** A source of hints for one volume, armed when it is returned. */
export interface EventSource {
  /** "presto" or "fanotify". */
  readonly name: string;
  /**
   * Waits for the next hints. Returns at least one hint, or an empty array
   * once the source is closed. Never blocks the event loop.
   */
  next(): Promise<Hint[]>;
  /**
   * True if events wait in the kernel for this source, or a read of them is
   * under way: a sync waiting for a flush gets its answer once this is false
   * and a pending next() has nothing more. (The kernel queues an event before
   * the call that caused it returns, so nothing made before the request can
   * still be on its way.) Never blocks.
   */
  queued(): boolean;
  /** Disarms and releases the source; a pending next() resolves with []. */
  close(): void;
}
