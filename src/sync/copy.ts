/**
 * Copying a file while hashing it, in bounded memory.
 *
 * @module
 */

import type { Taken } from "../apply/mod.ts";
import { feedRawFile, newHash } from "../fs/hash.ts";
import type { RawFile } from "../fs/raw_file.ts";

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
    feedRawFile(input, h, limit + 1, output.write.bind(output));
    return { digest: h.digest("hex"), file: output };
  } catch (e) {
    output?.close();
    throw e;
  } finally {
    input.close();
  }
}
