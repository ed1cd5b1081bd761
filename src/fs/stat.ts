/**
 * lstat with nanosecond times, through statx(2): Deno's own lstat rounds
 * mtime to milliseconds, and replicas must agree on mtimes exactly.
 *
 * @module
 */

import {
  AT_EMPTY_PATH,
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  cString,
  Errno,
  errno,
  errnoName,
  libc,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
} from "./libc.ts";

const STATX_TYPE = 0x1;
const STATX_BASIC_STATS = 0x7ff;
const { ENOENT, ENOTDIR } = Errno;

/** File types the replicator handles; anything else is "other". */
export type FileType = "f" | "d" | "l" | "other";

/** The fields of struct statx that capture and apply need. */
export interface Stat {
  type: FileType;
  /** st_mode & 0o7777 */
  perm: number;
  ino: number;
  size: number;
  /** Modification time: whole seconds and nanoseconds (kept apart: cheaper than a bigint). */
  mtimeSec: number;
  mtimeNsec: number;
  /** Owner and group ids, and the number of hard links. */
  uid: number;
  gid: number;
  nlink: number;
}

const buf = new Uint8Array(256);
const view = new DataView(buf.buffer);

/** lstat(path) with ns times, or null if it does not exist. Throws on other errors. */
export function lstatNs(path: string): Stat | null {
  return statAt(AT_FDCWD, path, path);
}

/**
 * fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW) with ns times, or null if it does
 * not exist; `label` names the path in errors.
 */
export function statAt(dirfd: number, name: string, label: string, emptyPath = false): Stat | null {
  const flags = AT_SYMLINK_NOFOLLOW | (emptyPath ? AT_EMPTY_PATH : 0);
  if (!statxInto(dirfd, name, flags, STATX_BASIC_STATS, label)) return null;
  const mode = view.getUint16(28, true);
  return {
    type: typeOf(mode),
    perm: mode & 0o7777,
    ino: u64(32),
    size: u64(40),
    mtimeSec: view.getInt32(116, true) * 2 ** 32 + view.getUint32(112, true),
    mtimeNsec: view.getUint32(120, true),
    uid: view.getUint32(20, true),
    gid: view.getUint32(24, true),
    nlink: view.getUint32(16, true),
  };
}

function u64(at: number): number {
  return view.getUint32(at + 4, true) * 2 ** 32 + view.getUint32(at, true);
}

/**
 * The file type bits of `path` (st_mode & S_IFMT, not following a final
 * symlink), or null if nothing is there: one statx, where Deno's lstat
 * builds an object (and, for a missing path, an error with its stack).
 */
export function lstatType(path: string): number | null {
  if (!statxInto(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE, path)) return null;
  return view.getUint16(28, true) & S_IFMT;
}

/** The file type bits of what descriptor `fd` (an O_PATH one too) refers to. */
export function fdType(fd: number): number | null {
  if (!statxInto(fd, "", AT_EMPTY_PATH, STATX_TYPE, `descriptor ${fd}`)) return null;
  return view.getUint16(28, true) & S_IFMT;
}

/**
 * statx(2) of `name` below `dirfd` into `buf`: false if nothing is there.
 * Any other failure is asked again once (see missingSlow), then thrown.
 */
function statxInto(dirfd: number, name: string, flags: number, mask: number, label: string) {
  if (libc().statx(dirfd, cString(name), flags, mask, buf) === 0) return true;
  const e = errno();
  if (e === ENOENT || e === ENOTDIR) return false;
  if (dirfd === AT_FDCWD && missingSlow(name)) return false;
  if (libc().statx(dirfd, cString(name), flags, mask, buf) === 0) return true;
  const again = errno();
  if (again === ENOENT || again === ENOTDIR) return false;
  throw new Error(`cannot stat ${label} (${errnoName(again)})`);
}

/** A modification time as ns since the epoch (the form records carry). */
export function mtimeNsOf(t: { mtimeSec: number; mtimeNsec: number }): bigint {
  return BigInt(t.mtimeSec) * 1_000_000_000n + BigInt(t.mtimeNsec);
}

/** ns since the epoch as the seconds and nanoseconds an index row keeps (the inverse of mtimeNsOf). */
export function splitNs(ns: bigint): { mtimeSec: number; mtimeNsec: number } {
  const sec = ns / 1_000_000_000n;
  return { mtimeSec: Number(sec), mtimeNsec: Number(ns - sec * 1_000_000_000n) };
}

/** True if two stats or index rows have the same modification time. */
export function sameMtime(
  a: { mtimeSec: number; mtimeNsec: number },
  b: { mtimeSec: number; mtimeNsec: number },
): boolean {
  return a.mtimeSec === b.mtimeSec && a.mtimeNsec === b.mtimeNsec;
}

function typeOf(mode: number): FileType {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "f";
    case S_IFDIR:
      return "d";
    case S_IFLNK:
      return "l";
    default:
      return "other";
  }
}

/** st_mode type bits for a type. */
export function typeBits(t: FileType): number {
  return t === "f" ? S_IFREG : t === "d" ? S_IFDIR : t === "l" ? S_IFLNK : 0;
}

/**
 * The runtime may run other system calls on this thread between the FFI call
 * and the read of errno, so an errno other than "no such entry" is checked
 * again the slow way: Deno's lstat, whose error says what happened.
 */
function missingSlow(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return false; // it exists (perhaps only now): the caller stats it again
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return true;
    throw e;
  }
}
