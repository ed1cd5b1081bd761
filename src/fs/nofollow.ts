/**
 * Metadata confinement: files in `.replicator/` are opened without following
 * symlinks, and a symlink or a file of the wrong kind there is refused with
 * a MetadataError that names it. (A peer's metadata is as untrusted as its
 * records: a planted `kml -> /etc/passwd` must never be written through.)
 *
 * Reads and opens check lstat before and the open file's identity (device
 * and inode) after, so a link swapped in between is caught; creation is
 * exclusive (O_EXCL does not follow a final symlink); locks are opened with
 * O_NOFOLLOW through FFI.
 *
 * @module
 */

import { MetadataError } from "../errors.ts";
import {
  Errno,
  errno,
  libc,
  O_CLOEXEC,
  O_CREAT,
  O_NOFOLLOW,
  O_RDWR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
} from "./libc.ts";
import { lstatType } from "./stat.ts";

/** What a metadata path must be. */
export type MetaKind = "file" | "directory" | "socket";

/**
 * True if the metadata path exists as `kind`, false if nothing is there;
 * anything else (a symlink never passes) is refused with a MetadataError.
 */
export function checkMeta(path: string, kind: MetaKind = "file"): boolean {
  const type = lstatType(path);
  if (type === null) return false;
  const is = kindName(type);
  if (is !== kind) throw unsafe(path, is, kind);
  return true;
}

/** What file type bits `type` (st_mode & S_IFMT) name, in messages. */
function kindName(type: number): string {
  return KINDS.get(type) ?? "special file";
}

const KINDS = new Map<number, string>([
  [S_IFLNK, "symlink"],
  [S_IFREG, "file"],
  [S_IFDIR, "directory"],
  [S_IFSOCK, "socket"],
  [S_IFIFO, "fifo"],
]);

/** The error for `path` being an `is` where a `kind` belongs. */
export function unsafe(path: string, is: string, kind: MetaKind): MetadataError {
  const what = is === "symlink" ? "a symbolic link" : `a ${is}`;
  return new MetadataError(
    path,
    `${path} is ${what}, not a ${kind}: replicator never follows links or opens foreign files ` +
      `in its metadata; remove it ('rm ${path}') and run the command again`,
  );
}

/**
 * Opens the existing regular file `path` (never creating it) without going
 * through a symlink: lstat, open, then the open file must be that same inode.
 */
export function openRegular(path: string, opts: { write?: boolean } = {}): Deno.FsFile {
  let before: Deno.FileInfo; // its device and inode, for the check below
  try {
    before = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Deno.errors.NotFound(`${path} does not exist`);
    throw e;
  }
  if (!before.isFile) throw unsafe(path, kindName(before.mode! & S_IFMT), "file");
  const f = Deno.openSync(path, { read: true, write: opts.write ?? false });
  try {
    const now = f.statSync();
    if (now.dev !== before.dev || now.ino !== before.ino || !now.isFile) {
      throw unsafe(path, "file replaced while being opened", "file");
    }
    return f;
  } catch (e) {
    f.close();
    throw e;
  }
}

/** The bytes of the regular file `path`, read without following a symlink. */
export function readRegular(path: string): Uint8Array {
  const f = openRegular(path);
  try {
    const size = f.statSync().size;
    const out = new Uint8Array(size);
    let got = 0;
    while (got < size) {
      const n = f.readSync(out.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    return out.subarray(0, got);
  } finally {
    f.close();
  }
}

/** readRegular as text. */
export function readRegularText(path: string): string {
  return new TextDecoder().decode(readRegular(path));
}

/**
 * Creates `path` anew for writing: a stale file (or planted link) there is
 * unlinked first, then the file is created exclusively, which never follows
 * a symlink. Returns the open file.
 */
export function createFresh(path: string, mode = 0o644): Deno.FsFile {
  try {
    Deno.removeSync(path); // unlinks a symlink itself, never its target
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return Deno.openSync(path, { write: true, createNew: true, mode });
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const { ELOOP } = Errno;

/**
 * Takes an exclusive flock(2) on the lock file `path` (created if missing,
 * never through a symlink) without waiting, then replaces its content with
 * `content` if given. Returns a release function, or null if another process
 * holds the lock.
 */
export function tryLockNoFollow(path: string, content?: string): (() => void) | null {
  checkMeta(path);
  const c = new TextEncoder().encode(path + "\0");
  const fd = libc().openMode(c, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644);
  if (fd < 0) {
    const e = errno();
    if (e === ELOOP) throw unsafe(path, "symlink", "file");
    checkMeta(path); // names a foreign file put there meanwhile
    throw new MetadataError(path, `cannot open lock file ${path} (errno ${e})`);
  }
  if (libc().flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    libc().close(fd);
    return null;
  }
  if (content !== undefined) {
    const b = new TextEncoder().encode(content);
    libc().ftruncate(fd, 0n);
    libc().pwrite(fd, b, BigInt(b.length), 0n);
  }
  return () => void libc().close(fd);
}
