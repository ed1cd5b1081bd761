/**
 * An open regular file as a bare descriptor: read, written, and given its
 * owner, mode and times through that descriptor (fchown, fchmod, futimens),
 * so every call reaches the inode that was opened, never a name looked up
 * again. Beneath makes them (`openRaw`, `createRaw`): a Deno.FsFile of a
 * descriptor would cost a second open through /proc/self/fd, and each
 * attribute set by name a path resolution, about a third of what staging a
 * small file costs.
 *
 * @example
 * ```ts
 * const f = tree.createRaw(".replicator/staging/0/7", 0o600);
 * try {
 *   f.write(bytes);
 *   f.chmod(0o644);
 *   f.setMtime(1700000000_000000000n);
 * } finally {
 *   f.close();
 * }
 * ```
 * @module
 */

import { bothTimes, Errno, errno, errnoName, libc } from "./libc.ts";
import { type Stat, statAt } from "./stat.ts";
import { FsError } from "../errors.ts";

const { EINTR } = Errno;
const SEEK_SET = 0;
/** ioctl_ficlone(2)'s request: _IOW(0x94, 9, int). */
const FICLONE = 0x40049409n;

/** A regular file open as a descriptor; close it. */
export class RawFile {
  #fd: number;
  #opened: Stat | null = null;

  /** Takes ownership of `fd`; `label` names the file in errors. */
  constructor(fd: number, readonly label: string) {
    this.#fd = fd;
  }

  /** Reads into `buf` from the current offset: the bytes read, 0 at the end. */
  read(buf: Uint8Array): number {
    for (;;) {
      const n = Number(libc().read(this.#fd, buf, BigInt(buf.length)));
      if (n >= 0) return n;
      if (errno() !== EINTR) this.fail("read");
    }
  }

  /**
   * Makes this empty file a clone of `input` (ioctl FICLONE: the two share
   * their extents on filesystems that can, btrfs and XFS among them, so no
   * data is copied or written again). False, with the file left empty, if
   * it could not: the filesystem cannot clone (or not these two files), or
   * the clone failed; a copy made instead reports any fault of its own.
   */
  cloneFrom(input: RawFile): boolean {
    if (libc().ioctlInt(this.#fd, FICLONE, BigInt(input.#fd)) === 0) return true;
    this.truncate(0); // whatever a failed clone may have left
    return false;
  }

  /** Cuts the file to `size` bytes. */
  truncate(size: number): void {
    if (libc().ftruncate(this.#fd, BigInt(size)) !== 0) this.fail("truncate");
  }

  /** Moves the offset to `offset` bytes from the start. */
  seek(offset: number): void {
    if (Number(libc().lseek(this.#fd, BigInt(offset), SEEK_SET)) < 0) this.fail("seek in");
  }

  /** Writes all of `bytes` at the current offset. */
  write(bytes: Uint8Array): void {
    for (let at = 0; at < bytes.length;) {
      const rest = bytes.subarray(at);
      const n = Number(libc().write(this.#fd, rest, BigInt(rest.length)));
      if (n >= 0) at += n;
      else if (errno() !== EINTR) this.fail("write");
    }
  }

  /** Sets the owner and group (-1 leaves one as it is). */
  chown(uid: number, gid: number): void {
    if (libc().fchown(this.#fd, uid >>> 0, gid >>> 0) !== 0) this.fail("chown");
  }

  /** Sets the permission bits. */
  chmod(perm: number): void {
    if (libc().fchmod(this.#fd, perm) !== 0) this.fail("chmod");
  }

  /** Sets atime and mtime to `mtimeNs` (ns since the epoch). */
  setMtime(mtimeNs: bigint): void {
    if (libc().futimens(this.#fd, bothTimes(mtimeNs)) !== 0) this.fail("set the time of");
  }

  /** fsync(2): the data and the inode on disk. */
  sync(): void {
    for (;;) {
      if (libc().fsync(this.#fd) === 0) return;
      if (errno() !== EINTR) this.fail("fsync");
    }
  }

  /** What the descriptor refers to now. */
  stat(): Stat {
    const st = statAt(this.#fd, "", this.label, true);
    if (!st) throw new FsError("stat", this.label, 0, "ENOENT");
    return st;
  }

  /** What the descriptor referred to when first asked (one stat for a check and a size). */
  opened(): Stat {
    this.#opened ??= this.stat();
    return this.#opened;
  }

  /**
   * A Deno.FsFile for reading the same file, opened again through the
   * descriptor's /proc/self/fd link (so the very inode); this one stays open.
   */
  reopen(): Deno.FsFile {
    return Deno.openSync(`/proc/self/fd/${this.#fd}`, { read: true });
  }

  /** Closes the descriptor (once; later calls do nothing). */
  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }

  private fail(op: string): never {
    const e = errno();
    throw new FsError(op, this.label, e, errnoName(e));
  }
}
