/**
 * File operations confined to one tree (rule 6). Every path is resolved by
 * openat2(2) from a descriptor of the tree's root with RESOLVE_BENEATH and
 * RESOLVE_NO_SYMLINKS: no component may be a symlink or leave the tree, so
 * nothing here can be steered outside, whatever was swapped in between two
 * calls. There is deliberately no cache of "known directories" across
 * operations: each call resolves afresh, except that the calls made inside
 * one `within` (one step of a transaction, one planning pass) share what
 * each directory resolved to, until one of them creates, renames or removes
 * a name. So a step's check and the rename that follows it act on the same
 * directory, and the step costs one resolution per directory, not one per
 * call.
 *
 * Final components are never followed either: stat and utimens use
 * AT_SYMLINK_NOFOLLOW, chmod goes through an O_PATH descriptor, opens use
 * O_NOFOLLOW.
 *
 * @example
 * ```ts
 * const t = Beneath.open("/srv/vol");
 * try {
 *   t.makeParents("a/b/c");
 *   t.rename(".replicator/staging/0/0", "a/b/c");
 * } finally {
 *   t.close();
 * }
 * ```
 * @module
 */

import {
  AT_SYMLINK_NOFOLLOW,
  bothTimes,
  Errno,
  errno,
  errnoName,
  libc,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
} from "./libc.ts";
import { type Stat, statAt } from "./stat.ts";
import { RawFile } from "./raw_file.ts";
import { FsError, NotConfinedError } from "../errors.ts";

const SYS_OPENAT2 = 437n;
const RESOLVE_NO_MAGICLINKS = 0x02n;
const RESOLVE_NO_SYMLINKS = 0x04n;
const RESOLVE_BENEATH = 0x08n;
const RESOLVE_ALL = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
const O_APPEND = 0o2000;
const AT_REMOVEDIR = 0x200;
const RENAME_NOREPLACE = 1;
const { ENOENT, EEXIST, ENOTDIR, ELOOP, EXDEV } = Errno;

const encoder = new TextEncoder();

/**
 * Scratch buffers for C strings, used in turn: a call passes at most two
 * names (rename, link), so each buffer is free again long before its turn
 * comes round; a fresh allocation per name cost more than the system call.
 */
const scratch = Array.from({ length: 4 }, () => new Uint8Array(16 * 1024));
let turn = 0;

function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = s.length * 3 + 1 <= 16 * 1024
    ? scratch[turn = (turn + 1) % scratch.length]
    : new Uint8Array(s.length * 3 + 1);
  const { written } = encoder.encodeInto(s, b);
  b[written] = 0;
  return b.subarray(0, written + 1) as Uint8Array<ArrayBuffer>;
}

const hows = new Map<number, Uint8Array<ArrayBuffer>>();

/** openat2's struct open_how for `flags` and `mode`, confined; one buffer per combination. */
function openHow(flags: number, mode: number): Uint8Array<ArrayBuffer> {
  const key = flags * 0o10000 + mode;
  let how = hows.get(key);
  if (!how) {
    const words = [BigInt(flags | O_CLOEXEC), BigInt(mode), RESOLVE_ALL];
    how = new Uint8Array(new BigUint64Array(words).buffer);
    hows.set(key, how);
  }
  return how;
}

/** Splits "a/b/c" into ["a/b", "c"] (parent "" for a top-level name). */
function split(rel: string): [string, string] {
  const i = rel.lastIndexOf("/");
  return i < 0 ? ["", rel] : [rel.slice(0, i), rel.slice(i + 1)];
}

/**
 * A descriptor of the directory at absolute path `root` (a tree's root, which
 * may be reached through symlinks), to resolve beneath; FsError if it cannot
 * be opened. The caller closes it.
 */
export function openRoot(root: string): number {
  const fd = libc().open(cstr(root), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const e = errno();
    throw new FsError("open", root, e, errnoName(e));
  }
  return fd;
}

/** Runs `fn` with a descriptor of the directory at `root` (as openRoot opens it), closed after. */
export function withRoot<T>(root: string, fn: (rootFd: number) => T): T {
  const fd = openRoot(root);
  try {
    return fn(fd);
  } finally {
    libc().close(fd);
  }
}

/** True for the errno of a path that openat2 refused as not confined (a symlink or a file on the way). */
export function notConfined(e: number): boolean {
  return e === ELOOP || e === ENOTDIR || e === EXDEV;
}

/**
 * openat2(2) of `rel` ("" for the directory itself) below the directory open
 * as `dirfd`, confined as Beneath resolves (no symlink anywhere, nothing
 * outside): the new descriptor, or -1 with errno set (ELOOP, EXDEV or
 * ENOTDIR for a path that is not confined, ENOENT for a missing one).
 */
export function openBeneath(dirfd: number, rel: string, flags: number, mode = 0): number {
  return Number(
    libc().openat2(SYS_OPENAT2, BigInt(dirfd), cstr(rel || "."), openHow(flags, mode), 24n),
  );
}

/**
 * What is at `rel` below the directory open as `dirfd`, not following it,
 * and its target if it is a symlink: null if nothing is there, or if a
 * parent is missing or is not a real directory (resolved as openBeneath
 * resolves). `label` names it in errors.
 */
export function statBeneath(
  dirfd: number,
  rel: string,
  label: string,
): (Stat & { target: string }) | null {
  const [dir, name] = split(rel);
  const fd = openBeneath(dirfd, dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return null;
  try {
    const st = statAt(fd, name, label);
    if (!st) return null;
    const target = st.type === "l" ? Deno.readLinkSync(`/proc/self/fd/${fd}/${name}`) : "";
    return { ...st, target };
  } finally {
    libc().close(fd);
  }
}

const DIR_FLAGS = O_RDONLY | O_DIRECTORY;

/** How many directories one `within` holds open at most (descriptors are finite). */
const HELD_AT_MOST = 64;

/** A tree whose every operation stays beneath its root. Close it when done. */
export class Beneath {
  /** Directories resolved inside `within`: path -> descriptor, or -errno (null outside). */
  #held: Map<string, number> | null = null;
  #heldFds = new Set<number>();
  /** Directories makeParents created since takeMade() was last called. */
  #made: string[] = [];

  private constructor(readonly root: string, private fd: number) {}

  /** Opens the tree at absolute path `root` (the root itself may be reached through symlinks). */
  static open(root: string): Beneath {
    return new Beneath(root, openRoot(root));
  }

  close(): void {
    this.#forget();
    if (this.fd >= 0) libc().close(this.fd);
    this.fd = -1;
  }

  /**
   * Runs `fn`, during which each directory this tree resolves is resolved
   * once and kept open (or its failure kept), until an operation creates,
   * renames or removes a name (then all are resolved afresh) or `fn`
   * returns. For the calls of one short unit of work only: a step, or a pass
   * that only reads.
   */
  within<T>(fn: () => T): T {
    if (this.#held) return fn();
    this.#held = new Map();
    try {
      return fn();
    } finally {
      this.#forget();
      this.#held = null;
    }
  }

  /** Closes the directories `within` holds: the next use resolves them afresh. */
  #forget(): void {
    for (const fd of this.#heldFds) libc().close(fd);
    this.#heldFds.clear();
    this.#held?.clear();
  }

  /** Closes `fd` unless `within` holds it. */
  #release(fd: number): void {
    if (!this.#heldFds.has(fd)) libc().close(fd);
  }

  /** Absolute path of `rel`, for messages only: never pass it to a system call. */
  abs(rel: string): string {
    return rel ? `${this.root}/${rel}` : this.root;
  }

  /**
   * What is at `rel`, without following anything; null if nothing is there,
   * including when a parent is missing or is not a real directory.
   */
  stat(rel: string): Stat | null {
    const [dir, name] = split(rel);
    const fd = this.resolve(dir, DIR_FLAGS, "stat");
    if (fd < 0) return null;
    try {
      return statAt(fd, name, this.abs(rel));
    } finally {
      this.#release(fd);
    }
  }

  /** The target of the symlink at `rel`. */
  readlink(rel: string): string {
    return this.inParent(rel, "readlink", (fd, name) => {
      const buf = new Uint8Array(4097);
      const n = Number(libc().readlinkat(fd, cstr(name), buf, BigInt(buf.length)));
      if (n < 0) return -1;
      return new TextDecoder().decode(buf.subarray(0, n));
    });
  }

  /**
   * Makes every parent of `rel` a real directory, creating missing ones
   * (mode 0755). Throws NotConfinedError naming the first parent that is a
   * symlink or not a directory (nothing is created below it).
   */
  makeParents(rel: string): void {
    const parent = split(rel)[0];
    if (parent === "") return;
    // The common case, parents all there: one resolution of the whole parent
    // (which follows no symlink and stays beneath) says so.
    const whole = this.resolve(parent, DIR_FLAGS, "open");
    if (whole >= 0) return this.#release(whole);
    const parts = rel.split("/");
    let dir = "";
    for (let i = 0; i < parts.length - 1;) {
      const next = dir ? `${dir}/${parts[i]}` : parts[i];
      const fd = this.resolve(next, DIR_FLAGS, "open");
      if (fd >= 0) {
        this.#release(fd);
        dir = next;
        i++;
      } else if (this.lastErrno === ENOENT) {
        // Made here, or meanwhile by someone else (EEXIST): either way, checked again.
        this.#changeName(next, "mkdir", (pfd, name) => {
          const rc = libc().mkdirat(pfd, cstr(name), 0o755);
          if (rc === 0) this.#made.push(next);
          return rc === 0 || errno() === EEXIST ? 0 : -1;
        });
      } else {
        const e = this.lastErrno;
        throw new NotConfinedError("use", this.abs(next), e, errnoName(e), "not a real directory");
      }
    }
  }

  /** First parent of `rel` that is there but is not a real directory, or null. */
  blockedParent(rel: string): string | null {
    const parent = split(rel)[0];
    if (parent === "") return null;
    const whole = this.resolve(parent, DIR_FLAGS, "open");
    if (whole >= 0) {
      this.#release(whole);
      return null; // every parent is a real directory
    }
    const parts = rel.split("/");
    let dir = "";
    for (let i = 0; i < parts.length - 1; i++) {
      dir = dir ? `${dir}/${parts[i]}` : parts[i];
      const st = this.stat(dir);
      if (!st) return null;
      if (st.type !== "d") return dir;
    }
    return null;
  }

  /** rename(2) of `from` to `to`; with `noReplace`, fails with EEXIST if `to` exists. */
  rename(from: string, to: string, noReplace = false): void {
    const [fdir, fname] = split(from);
    const [tdir, tname] = split(to);
    const ffd = this.mustResolve(fdir, "rename", from);
    try {
      // Both names in one directory (a conflict copy beside its file): resolved once.
      const tfd = tdir === fdir ? ffd : this.mustResolve(tdir, "rename", to);
      try {
        const rc = libc().renameat2(
          ffd,
          cstr(fname),
          tfd,
          cstr(tname),
          noReplace ? RENAME_NOREPLACE : 0,
        );
        if (rc !== 0) this.fail("rename", `${from} to ${to}`);
      } finally {
        if (tfd !== ffd) this.#release(tfd);
      }
    } finally {
      this.#release(ffd);
      this.#forget(); // a held directory may have moved
    }
  }

  unlink(rel: string): void {
    this.#changeName(rel, "remove", (fd, name) => libc().unlinkat(fd, cstr(name), 0));
  }

  /** unlink, for clean-up of what may never have been made: a failure is no error. */
  tryUnlink(rel: string): void {
    try {
      this.unlink(rel);
    } catch { /* never made, or already gone */ }
  }

  /** rmdir(2); an ENOTEMPTY FsError if the directory holds anything. */
  rmdir(rel: string): void {
    this.#changeName(rel, "remove", (fd, name) => libc().unlinkat(fd, cstr(name), AT_REMOVEDIR));
  }

  mkdir(rel: string, perm: number): void {
    this.#changeName(rel, "create", (fd, name) => libc().mkdirat(fd, cstr(name), perm));
  }

  symlink(target: string, rel: string): void {
    this.#changeName(rel, "create", (fd, name) => libc().symlinkat(cstr(target), fd, cstr(name)));
  }

  /** A hard link at `to` to the file at `from` (neither followed). */
  link(from: string, to: string): void {
    const [fdir, fname] = split(from);
    const ffd = this.mustResolve(fdir, "link", from);
    try {
      this.inParent(
        to,
        "link",
        (tfd, tname) => libc().linkat(ffd, cstr(fname), tfd, cstr(tname), 0),
      );
    } finally {
      this.#release(ffd);
      this.#forget();
    }
  }

  /**
   * The directories makeParents created since the last call, each with the
   * directory holding it: where entries were made, for the caller to fsync.
   */
  takeMade(): Set<string> {
    const out = new Set<string>();
    for (const d of this.#made) out.add(d).add(split(d)[0]);
    this.#made = [];
    return out;
  }

  /** fsync(2) of the directory `rel`: the entries made, renamed or removed in it are on disk. */
  syncDir(rel: string): void {
    const fd = this.mustResolve(rel, "fsync", rel);
    try {
      if (libc().fsync(fd) !== 0) this.fail("fsync", rel);
    } finally {
      this.#release(fd);
    }
  }

  /** Permission bits of a file or directory (never a symlink's target). */
  chmod(rel: string, perm: number): void {
    const fd = this.mustResolve(rel, "chmod", rel, O_PATH | O_NOFOLLOW);
    try {
      // chmod of the descriptor's magic link reaches exactly the inode opened above.
      Deno.chmodSync(`/proc/self/fd/${fd}`, perm);
    } catch (e) {
      throw new FsError("chmod", this.abs(rel), 0, (e as Error).name, (e as Error).message);
    } finally {
      libc().close(fd);
    }
  }

  /** Owner and group of `rel` (a symlink's own, never its target's). */
  chown(rel: string, uid: number, gid: number): void {
    this.inParent(
      rel,
      "chown",
      (fd, name) => libc().fchownat(fd, cstr(name), uid >>> 0, gid >>> 0, AT_SYMLINK_NOFOLLOW),
    );
  }

  /** Sets atime and mtime of `rel` (not following a final symlink) to `mtimeNs`. */
  setMtime(rel: string, mtimeNs: bigint): void {
    const bytes = bothTimes(mtimeNs);
    this.inParent(
      rel,
      "set the time of",
      (fd, name) => libc().utimensat(fd, cstr(name), bytes, AT_SYMLINK_NOFOLLOW),
    );
  }

  /** Opens the regular file at `rel` for reading; throws FsError if it is not one. */
  openFile(rel: string): Deno.FsFile {
    const f = this.openRaw(rel);
    try {
      return f.reopen();
    } finally {
      f.close();
    }
  }

  /** Opens the regular file at `rel` for reading, as a descriptor; throws FsError if it is not one. */
  openRaw(rel: string): RawFile {
    const fd = this.mustResolve(rel, "open", rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    const f = new RawFile(fd, this.abs(rel));
    try {
      if (f.opened().type !== "f") {
        throw new FsError("read", this.abs(rel), 0, "ENOENT", "not a regular file");
      }
      return f;
    } catch (e) {
      f.close();
      throw e;
    }
  }

  /**
   * Creates the regular file `rel` (it must not exist), open for writing and
   * reading back (a copy the kernel made is hashed as it landed) as a descriptor.
   */
  createRaw(rel: string, perm: number): RawFile {
    const flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK;
    const fd = this.mustResolve(rel, "create", rel, flags, perm);
    this.#forget();
    return new RawFile(fd, this.abs(rel));
  }

  /** Opens the regular file at `rel` to append to it, created (mode 0600) if missing. */
  openAppend(rel: string): RawFile {
    const flags = O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK;
    const f = new RawFile(this.mustResolve(rel, "open", rel, flags, 0o600), this.abs(rel));
    this.#forget();
    try {
      if (f.opened().type !== "f") {
        throw new FsError("open", this.abs(rel), 0, "EEXIST", "not a regular file");
      }
      return f;
    } catch (e) {
      f.close();
      throw e;
    }
  }

  private lastErrno = 0;

  /**
   * openat2 of `rel` beneath the root, no symlinks anywhere; -1 with
   * lastErrno set on failure (ENOENT missing, ELOOP/ENOTDIR/EXDEV not confined).
   */
  private resolve(rel: string, flags: number, _op: string, mode = 0): number {
    const held = flags === DIR_FLAGS ? this.#held : null;
    const had = held?.get(rel);
    if (had !== undefined) {
      if (had < 0) this.lastErrno = -had;
      return had < 0 ? -1 : had;
    }
    const fd = openBeneath(this.fd, rel, flags, mode);
    if (fd < 0) this.lastErrno = errno();
    if (held) this.#hold(held, rel, fd < 0 ? -this.lastErrno : fd);
    return fd;
  }

  /**
   * Keeps `rel`'s descriptor, or its failure as a negative errno, for the
   * rest of `within`; past HELD_AT_MOST, not kept (the caller closes it).
   * Never closes what is held: a call may be using it right now, and a
   * descriptor number closed under it could be reused by another thread.
   */
  #hold(held: Map<string, number>, rel: string, fdOrErrno: number): void {
    if (held.size >= HELD_AT_MOST) return;
    held.set(rel, fdOrErrno);
    if (fdOrErrno >= 0) this.#heldFds.add(fdOrErrno);
  }

  private mustResolve(
    rel: string,
    op: string,
    label: string,
    flags = DIR_FLAGS,
    mode = 0,
  ): number {
    const fd = this.resolve(rel, flags, op, mode);
    if (fd >= 0) return fd;
    const e = this.lastErrno;
    if (notConfined(e)) {
      throw new NotConfinedError(
        op,
        this.abs(label),
        e,
        errnoName(e),
        "a path component is a symlink or not a directory",
      );
    }
    throw new FsError(op, this.abs(label), e, errnoName(e));
  }

  /**
   * inParent for a call that creates or removes the name `rel`: what `within`
   * holds is resolved afresh afterwards (a failure held for `rel` or below it,
   * a directory held at `rel`, are stale).
   */
  #changeName(rel: string, op: string, call: (fd: number, name: string) => number): void {
    try {
      this.inParent(rel, op, call);
    } finally {
      this.#forget();
    }
  }

  /** Runs `call` with the parent directory's descriptor and the last component of `rel`. */
  private inParent<T>(rel: string, op: string, call: (fd: number, name: string) => T | number): T {
    const [dir, name] = split(rel);
    const fd = this.mustResolve(dir, op, rel);
    try {
      const out = call(fd, name);
      if (out === -1) this.fail(op, rel);
      return out as T;
    } finally {
      this.#release(fd);
    }
  }

  private fail(op: string, what: string): never {
    const e = errno();
    throw new FsError(op, this.abs(what), e, errnoName(e));
  }
}
