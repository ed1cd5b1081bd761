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
  SYNC_FILE_RANGE_WRITE,
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
  const fd = openForSync(dir, O_DIRECTORY);
  try {
    fsyncOpen(fd, dir);
  } finally {
    libc().close(fd);
  }
}

/**
 * fsync the regular files `paths`, having first started the writeback of
 * all of them: the filesystem then commits their blocks in one journal
 * transaction instead of one each (10 new small files on ext4: 2.2 ms
 * against 5.3 ms one after another, medians of 40). Each is opened without
 * following a final symlink and without blocking, so that whatever was
 * swapped in there (a FIFO, a device) is refused instead of waited on.
 */
export function fsyncFiles(paths: string[]): void {
  const open: number[] = [];
  try {
    for (const path of paths) {
      const fd = openForSync(path, O_NOFOLLOW | O_NONBLOCK);
      open.push(fd);
      if (statAt(fd, "", path, true)?.type !== "f") {
        throw new FsError("fsync", path, 0, "EINVAL", "not a regular file");
      }
      // Only a hint: whatever fails here, the fsync below reports.
      if (paths.length > 1) libc().sync_file_range(fd, 0n, 0n, SYNC_FILE_RANGE_WRITE);
    }
    open.forEach((fd, i) => fsyncOpen(fd, paths[i]));
  } finally {
    for (const fd of open) libc().close(fd);
  }
}

/** `path` opened read-only with `flags`: Deno.errors.NotFound if it is missing, FsError otherwise. */
function openForSync(path: string, flags: number): number {
  const fd = libc().open(cString(path), O_RDONLY | O_CLOEXEC | flags);
  if (fd >= 0) return fd;
  const e = errno();
  if (e === Errno.ENOENT) throw new Deno.errors.NotFound(`cannot fsync ${path}: ENOENT`);
  throw new FsError("fsync", path, e, errnoName(e));
}

function fsyncOpen(fd: number, path: string): void {
  if (libc().fsync(fd) !== 0) {
    const e = errno();
    throw new FsError("fsync", path, e, errnoName(e));
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
