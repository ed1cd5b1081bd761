/**
 * Copying a file while hashing it, in bounded memory.
 *
 * @module
 */

import { newHash } from "../fs/hash.ts";

/** One buffer for every copy: allocating per file would dominate small files. */
const buf = new Uint8Array(1 << 20);

/**
 * Copies the open file `input` (from where it stands) into the open file
 * `output`, returning the hex SHA-256 of what was copied; closes both.
 */
export function copyHashing(input: Deno.FsFile, output: Deno.FsFile): string {
  const h = newHash();
  try {
    for (let n; (n = input.readSync(buf) ?? 0) > 0;) {
      const chunk = buf.subarray(0, n);
      h.update(chunk);
      for (let w = 0; w < n;) w += output.writeSync(chunk.subarray(w));
    }
    return h.digest("hex");
  } finally {
    input.close();
    output.close();
  }
}
