/**
 * Copying a file while hashing it, in bounded memory.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** One buffer for every copy: allocating 1 MiB per small file would dominate. */
const buf = new Uint8Array(1 << 20);

/** Copies `src` to a new file `dest`, returning the hex SHA-256 of what was copied. */
export function copyHashing(src: string, dest: string): string {
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
