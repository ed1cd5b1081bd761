/**
 * Durability primitives: fsync of directories, atomic replacement of small
 * files, and one-call flushing of a whole filesystem.
 *
 * @module
 */

import {
  cString,
  Errno,
  errno,
  errnoName,
  libc,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  syncfs,
} from "./libc.ts";
import { createFresh } from "./nofollow.ts";
import { statAt } from "./stat.ts";
import { FsError } from "../errors.ts";

/**
 * fsync a directory so that renames and creations inside it are durable. (A
 * volume's root may be reached through a symlink: this one is followed.)
 */
export function fsyncDir(dir: string): void {
  fsyncPath(dir, O_DIRECTORY);
}

/**
 * fsync one regular file by path. Opened without following a final symlink
 * and without blocking, so that whatever was swapped in there (a FIFO, a
 * device) is refused instead of waited on or opened.
 */
export function fsyncFile(path: string): void {
  fsyncPath(path, O_NOFOLLOW | O_NONBLOCK);
}

/** Deno.errors.NotFound if `path` is missing, FsError for any other failure. */
function fsyncPath(path: string, flags: number): void {
  const fd = libc().open(cString(path), O_RDONLY | O_CLOEXEC | flags);
  if (fd < 0) {
    const e = errno();
    if (e === Errno.ENOENT) throw new Deno.errors.NotFound(`cannot fsync ${path}: ENOENT`);
    throw new FsError("fsync", path, e, errnoName(e));
  }
  try {
    if (!(flags & O_DIRECTORY) && statAt(fd, "", path, true)?.type !== "f") {
      throw new FsError("fsync", path, 0, "EINVAL", "not a regular file");
    }
    if (libc().fsync(fd) !== 0) {
      const e = errno();
      throw new FsError("fsync", path, e, errnoName(e));
    }
  } finally {
    libc().close(fd);
  }
}

/**
 * Replaces `path` with `data` atomically: write a sibling temporary file,
 * fsync it, rename it over `path`, fsync the directory. A stale temporary
 * file (or a symlink planted in its place) is unlinked and the temporary file
 * created exclusively, so nothing is ever written through a link.
 */
export function writeFileAtomic(path: string, data: Uint8Array): void {
  const tmp = `${path}.tmp`;
  const f = createFresh(tmp);
  try {
    let n = 0;
    while (n < data.length) n += f.writeSync(data.subarray(n));
    f.syncSync();
  } finally {
    f.close();
  }
  Deno.renameSync(tmp, path);
  fsyncDir(path.slice(0, path.lastIndexOf("/")) || "/");
}

/**
 * Flushes every dirty page and inode of the filesystem holding `dir`: one
 * syncfs(2) instead of thousands of fsyncs when a batch stages many files.
 */
export function syncFilesystem(dir: string): void {
  syncfs(dir);
}
