/**
 * Coalescing writes to a byte stream: frames sent while the previous write
 * is still under way go out together in the next one. Over ssh every write
 * becomes a packet that ssh encrypts and sshd decrypts (and a read on each
 * side), so a tree of small files, one request and one DATA frame per file,
 * would otherwise pay all of that per frame. Nothing waits for company: a
 * frame sent when the stream is idle is written at once (after the current
 * microtask, so that frames sent in the same turn share a write).
 *
 * @example
 * ```ts
 * const writer = child.stdin.getWriter();
 * const send = coalescing((b) => writer.write(b));
 * await Promise.all([send(a), send(b)]); // one write of a then b
 * ```
 *
 * @module
 */

/** A batch grows to about this many bytes; a frame that would pass it starts the next. */
const BATCH_BYTES = 256 * 1024;

/**
 * `write`, in order, one call at a time, frames sent meanwhile joined into
 * one call. Each returned promise settles when the write that carried its
 * frame has (so a caller that awaits it still feels the stream's
 * backpressure); a failed write fails every frame it carried.
 */
export function coalescing(
  write: (bytes: Uint8Array) => Promise<void>,
): (bytes: Uint8Array) => Promise<void> {
  let previous: Promise<void> = Promise.resolve();
  let open: { parts: Uint8Array[]; bytes: number; done: Promise<void> } | null = null;
  return (bytes) => {
    if (open && open.bytes + bytes.length <= BATCH_BYTES) {
      open.parts.push(bytes);
      open.bytes += bytes.length;
      return open.done;
    }
    const batch = { parts: [bytes], bytes: bytes.length, done: Promise.resolve() };
    const settled = previous.then(noop, noop); // a failed write is its frames' failure only
    batch.done = settled.then(() => {
      if (open === batch) open = null; // closed: later frames start another batch
      return write(joined(batch.parts, batch.bytes));
    });
    open = batch;
    previous = batch.done;
    return batch.done;
  };
}

function noop(): void {}

function joined(parts: Uint8Array[], bytes: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
