/**
 * Copying a file while hashing it, in bounded memory.
 *
 * @module
 */

import type { Taken } from "../apply/mod.ts";
import { newHash } from "../fs/hash.ts";
import type { RawFile } from "../fs/raw_file.ts";

/** One buffer for every copy: allocating per file would dominate small files. */
const buf = new Uint8Array(1 << 20);

/**
 * Copies the open file `input` (from where it stands) into the file
 * `create()` makes, returning the hex SHA-256 of what was copied and the new
 * file, still open (staging finishes it through that descriptor). Closes
 * `input` in any case, and the new file if the copy fails. At most `limit` +
 * 1 bytes are copied: a file still growing under a writer cannot fill the
 * disk, and one byte more than expected cannot hash right.
 */
export function copyHashing(input: RawFile, create: () => RawFile, limit = Infinity): Taken {
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
    return { digest: h.digest("hex"), file: output };
  } catch (e) {
    output?.close();
    throw e;
  } finally {
    input.close();
  }
}
