/**
 * Durability primitives: fsync of directories, atomic replacement of small
 * files, and one-call flushing of a whole filesystem.
 *
 * @module
 */

import { syncfs } from "./libc.ts";
import { createFresh } from "./nofollow.ts";

/** fsync a directory so that renames and creations inside it are durable. */
export function fsyncDir(dir: string): void {
  fsyncFile(dir);
}

/** fsync one file (or directory) by path. */
export function fsyncFile(path: string): void {
  const f = Deno.openSync(path, { read: true });
  try {
    f.syncSync();
  } finally {
    f.close();
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
