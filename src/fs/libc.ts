/**
 * The libc calls Deno does not offer, via FFI, in one symbol table whose
 * symbols are each bound on first use (binding all at once costs ~10 ms of
 * start-up, more than many a command's work): syncfs(2), utimensat(2) with
 * nanoseconds and AT_SYMLINK_NOFOLLOW, flock(2), statx(2), and what the
 * event sources need (eventfd, poll, read/write, ioctl, fanotify, file
 * handles, statfs).
 *
 * Where one C function is needed with two signatures, each has its own key
 * and `name:` says which function it binds. Symbols declared
 * `nonblocking: true` run on a worker thread and return a promise: they must
 * not be followed by errno() (errno is per thread).
 *
 * @module
 */

export const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
export const O_RDONLY = 0;
export const O_DIRECTORY = 0o200000;
export const O_CLOEXEC = 0o2000000;
export const O_NOFOLLOW = 0o400000;
export const O_PATH = 0o10000000;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  openMode: { name: "open", parameters: ["buffer", "i32", "u32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  syncfs: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  statfs: { parameters: ["buffer", "buffer"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** read(2) on a worker thread. */
  readNonblocking: {
    name: "read",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  fchown: { parameters: ["i32", "u32", "u32"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  futimens: { parameters: ["i32", "buffer"], result: "i32" },
  ioctlPtr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctlInt: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** poll(2) on a worker thread. */
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  /** poll(2) on this thread: for a timeout of 0 only. */
  pollNow: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32" },
  fanotify_init: { parameters: ["u32", "u32"], result: "i32" },
  fanotify_mark: { parameters: ["i32", "u32", "u64", "i32", "buffer"], result: "i32" },
  name_to_handle_at: { parameters: ["i32", "buffer", "buffer", "buffer", "i32"], result: "i32" },
  open_by_handle_at: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** openat2(2) has no glibc wrapper on Debian 12: syscall(SYS_openat2, dirfd, path, how, size). */
  openat2: {
    name: "syscall",
    parameters: ["i64", "i64", "buffer", "buffer", "u64"],
    result: "i64",
  },
  renameat2: { parameters: ["i32", "buffer", "i32", "buffer", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  symlinkat: { parameters: ["buffer", "i32", "buffer"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
  fchownat: { parameters: ["i32", "buffer", "u32", "u32", "i32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
} as const;

/** The loaded symbols' type. */
export type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let lib: Lib | undefined;

/** The symbols, each bound when first read (then a plain property). */
export function libc(): Lib {
  lib ??= lazySymbols();
  return lib;
}

function lazySymbols(): Lib {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(SYMBOLS) as (keyof typeof SYMBOLS)[]) {
    Object.defineProperty(out, key, {
      configurable: true,
      get() {
        const one = { [key]: SYMBOLS[key] } as Pick<typeof SYMBOLS, typeof key>;
        const fn = Deno.dlopen("libc.so.6", one).symbols[key];
        Object.defineProperty(out, key, { value: fn });
        return fn;
      },
    });
  }
  return out as Lib;
}

const encoder = new TextEncoder();
const pathBuf = new Uint8Array(64 * 1024);

/**
 * `s` as a NUL-terminated C string, in a buffer shared by every call (valid
 * until the next call): stat-heavy walks would otherwise allocate per path.
 */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const { written } = encoder.encodeInto(s, pathBuf.subarray(0, pathBuf.length - 1));
  if (written >= pathBuf.length - 4) throw new Error(`path too long: ${s.slice(0, 80)}...`);
  pathBuf[written] = 0;
  return pathBuf.subarray(0, written + 1);
}

/** The calling thread's errno after a failed call. */
export function errno(): number {
  return new Deno.UnsafePointerView(libc().__errno_location()!).getInt32();
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  5: "EIO",
  6: "ENXIO",
  9: "EBADF",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
  28: "ENOSPC",
  30: "EROFS",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  95: "EOPNOTSUPP",
  116: "ESTALE",
  122: "EDQUOT",
};

/** The symbolic name of an errno value the callers report ("errno N" otherwise). */
export function errnoName(e: number): string {
  return ERRNO_NAMES[e] ?? `errno ${e}`;
}

/** syncfs(2) on the filesystem holding directory `dir`. */
export function syncfs(dir: string): void {
  const fd = libc().open(cString(dir), O_RDONLY | O_DIRECTORY);
  if (fd < 0) throw new Error(`cannot open ${dir} to flush its filesystem`);
  try {
    if (libc().syncfs(fd) !== 0) throw new Error(`syncfs(${dir}) failed`);
  } finally {
    libc().close(fd);
  }
}

/** utimensat(2)'s two timespecs (atime, mtime), both `ns` since the epoch (tv_nsec kept in 0..1e9). */
export function bothTimes(ns: bigint): Uint8Array<ArrayBuffer> {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) [sec, nsec] = [sec - 1n, nsec + 1_000_000_000n];
  return new Uint8Array(new BigInt64Array([sec, nsec, sec, nsec]).buffer);
}

/**
 * Sets atime and mtime of `path` (not following a final symlink) to `mtimeNs`.
 * Throws Deno.errors.NotFound-like Error on failure.
 */
export function setMtimeNs(path: string, mtimeNs: bigint): void {
  const rc = libc().utimensat(AT_FDCWD, cString(path), bothTimes(mtimeNs), AT_SYMLINK_NOFOLLOW);
  if (rc !== 0) throw new Error(`cannot set the modification time of ${path}`);
}
