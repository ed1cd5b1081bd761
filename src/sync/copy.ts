/**
 * Copying a file while hashing it, in bounded memory.
 *
 * @module
 */

import type { Taken } from "../apply/mod.ts";
import { feedRawFile, type Hash, newHash } from "../fs/hash.ts";
import type { RawFile } from "../fs/raw_file.ts";

/**
 * Files recorded with this size or more are cloned where the filesystem can
 * (btrfs, XFS and others: the copy shares the original's extents, so neither
 * the copy nor its flush writes the data again), then hashed as they landed.
 * Below it, one read and one write here cost less than a clone, a stat and
 * a read back. (copy_file_range(2), which copies inside the kernel where it
 * cannot clone, made 8 MiB files 5–15 % slower to stage on ext4 than read
 * and write here: docs/design.md.)
 */
const CLONE_FROM = 1 << 20;

/**
 * Copies the open file `input` (from where it stands; from its start if
 * `limit` is given, as it is only with a descriptor just opened) into the file
 * `create()` makes, returning the hex SHA-256 of what was copied and the new
 * file, still open (staging finishes it through that descriptor). Closes
 * `input` in any case, and the new file if the copy fails. At most `limit`
 * bytes are copied (the size the content is recorded with): a file still
 * growing under a writer cannot fill the disk, and what is copied is what
 * the digest says, whatever the file became since.
 */
export function copyHashing(input: RawFile, create: () => RawFile, limit = Infinity): Taken {
  let output: RawFile | undefined;
  const h = newHash();
  try {
    output = create();
    if (!(limit >= CLONE_FROM && limit < Infinity && cloned(input, output, limit, h))) {
      feedRawFile(input, h, limit, output.write.bind(output));
    }
    return { digest: h.digest("hex"), file: output };
  } catch (e) {
    output?.close();
    throw e;
  } finally {
    input.close();
  }
}

/**
 * Clones `input` into `output` if it holds `limit` bytes (a clone takes the
 * whole file: one that grew since its record is copied, at most `limit`
 * bytes of it), cut to `limit` bytes should it have grown meanwhile, and
 * feeds `h` what landed in `output` (not what `input` holds by then). False,
 * with `output` still empty, where it was not cloned.
 */
function cloned(input: RawFile, output: RawFile, limit: number, h: Hash): boolean {
  if (input.opened().size !== limit || !output.cloneFrom(input)) return false;
  if (output.stat().size > limit) output.truncate(limit);
  feedRawFile(output, h, limit);
  return true;
}
