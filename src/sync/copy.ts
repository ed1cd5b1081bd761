/**
 * Copying a file while hashing it, in bounded memory.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** One buffer for every copy: allocating 1 MiB per small file would dominate. */
const buf = new Uint8Array(1 << 20);

/** Files up to this size are copied with one read and one write call. */
export const SMALL_FILE = 1 << 20;

/**
 * Copies `src` to a new file `dest`, returning the hex SHA-256 of what was
 * copied. `sizeHint` (from a stat just before) picks the one-call path for
 * small files; large ones stream through a fixed buffer.
 */
export function copyHashing(src: string, dest: string, sizeHint = Infinity): string {
  if (sizeHint <= SMALL_FILE) {
    const data = Deno.readFileSync(src);
    Deno.writeFileSync(dest, data, { createNew: true });
    return createHash("sha256").update(data).digest("hex");
  }
  const h = createHash("sha256");
  const input = Deno.openSync(src, { read: true });
  try {
    const out = Deno.openSync(dest, { write: true, createNew: true });
    try {
      for (;;) {
        const n = input.readSync(buf);
        if (n === null || n === 0) break;
        const chunk = buf.subarray(0, n);
        h.update(chunk);
        let w = 0;
        while (w < n) w += out.writeSync(chunk.subarray(w));
      }
    } finally {
      out.close();
    }
  } finally {
    input.close();
  }
  return h.digest("hex");
}
