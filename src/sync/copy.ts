/**
 * Copying a file while hashing it, in bounded memory.
 *
 * @module
 */

import { newHash } from "../fs/hash.ts";
import type { RawFile } from "../fs/raw_file.ts";

/** One buffer for every copy: allocating per file would dominate small files. */
const buf = new Uint8Array(1 << 20);

/**
 * Copies the open file `input` (from where it stands) into the file
 * `create()` makes, returning the hex SHA-256 of what was copied; closes
 * both (`input` also when `create` throws). At most `limit` + 1 bytes are
 * copied: a file still growing under a writer cannot fill the disk, and one
 * byte more than expected cannot hash right.
 */
export function copyHashing(input: RawFile, create: () => RawFile, limit = Infinity): string {
  let output: RawFile | undefined;
  const h = newHash();
  try {
    output = create();
    let left = limit + 1;
    for (let n; left > 0 && (n = input.read(buf.subarray(0, Math.min(buf.length, left)))) > 0;) {
      const chunk = buf.subarray(0, n);
      h.update(chunk);
      output.write(chunk);
      left -= n;
    }
    return h.digest("hex");
  } finally {
    input.close();
    output?.close();
  }
}
