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
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_EMPTY_PATH = 0x1000;
export const O_RDONLY = 0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const SYNC_FILE_RANGE_WRITE = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = 0o200000;
export const O_CLOEXEC = 0o2000000;
export const O_NOFOLLOW = 0o400000;
export const O_PATH = 0o10000000;

/** st_mode's file type: its mask, and the types the callers tell apart. */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFSOCK = 0o140000;
export const S_IFIFO = 0o010000;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  openMode: { name: "open", parameters: ["buffer", "i32", "u32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  syncfs: { parameters: ["i32"], result: "i32" },
  fsync: { parameters: ["i32"], result: "i32" },
  sync_file_range: { parameters: ["i32", "i64", "i64", "u32"], result: "i32" },
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize" },
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
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
} as const;

/** The loaded symbols' type. */
export type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
type Key = keyof typeof SYMBOLS;
let lib: Lib | undefined;

/**
 * The symbols. Each is bound when first read, or, for the functions
 * VIA_SYSCALL lists, made of a generic syscall(2) symbol until it has been
 * called HOT_AFTER times and then bound: binding costs 0.3–0.6 ms a symbol
 * (Deno compiles a call stub for each), and a command making a few calls to
 * each of 15 functions spent more on binding them than on the calls. A
 * function called often gets its own stub, the fastest call there is.
 */
export function libc(): Lib {
  lib ??= lazySymbols(Deno.build.arch === "x86_64" ? HOT_AFTER : 0);
  return lib;
}

/**
 * The same functions, those VIA_SYSCALL lists always through syscall(2)
 * (`viaSyscall`) or never: for tests, which compare the two.
 */
export function libcFor(viaSyscall: boolean): Lib {
  return lazySymbols(viaSyscall ? Infinity : 0);
}

/**
 * Calls after which a function is bound as its own symbol: a call through
 * syscall(2) costs 1.3–1.9 µs more than a bound one (statx: 1.84 against
 * 0.57 µs when measured first; 3.0 against 1.1 µs with buffers passed by
 * address, on a slower day), so binding (0.45–0.6 ms) pays only after some
 * 250–500 calls. Binding then, when the extra paid so far about equals the
 * cost of binding, never costs more than twice the better choice made in
 * hindsight; the higher end keeps short commands from binding at all.
 */
const HOT_AFTER = 512;

function lazySymbols(hotAfter: number): Lib {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(SYMBOLS) as Key[]) {
    Object.defineProperty(out, key, {
      configurable: true,
      get() {
        const via = hotAfter > 0 ? VIA_SYSCALL[key] : undefined;
        const fn = via ? warming(out, key, via, hotAfter) : bind(key);
        Object.defineProperty(out, key, { value: fn, configurable: true });
        return fn;
      },
    });
  }
  return out as Lib;
}

function bind<K extends Key>(key: K): Lib[K] {
  return bindOne(SYMBOLS, key) as Lib[K];
}

/** Symbol `key` of `table`, bound alone (binding a whole table costs every symbol's stub). */
function bindOne<T extends Deno.ForeignLibraryInterface, K extends keyof T & string>(
  table: T,
  key: K,
): unknown {
  return Deno.dlopen("libc.so.6", { [key]: table[key] } as Pick<T, K>).symbols[key];
}

/** `key` through syscall(2), replaced in `table` by its own symbol at its `hotAfter`th call. */
function warming(table: Record<string, unknown>, key: Key, via: Via, hotAfter: number): unknown {
  const [nr, order] = via;
  let calls = 0;
  return (...args: unknown[]) => {
    if (++calls === hotAfter) Object.defineProperty(table, key, { value: bind(key) });
    const words = order(...args).map(word);
    return Number(generic()(nr, words[0], words[1], words[2], words[3], words[4]));
  };
}

/** An argument as the register syscall(2) takes: a buffer by its address (null: 0). */
function word(a: unknown): number | bigint {
  if (a === null) return 0;
  if (a instanceof Uint8Array) return Deno.UnsafePointer.value(Deno.UnsafePointer.of(a));
  return a as number | bigint;
}

/**
 * syscall(2) with every argument a 64-bit word (x86-64 passes a pointer in
 * the same register as an integer): one symbol, one call stub, for every
 * function while it warms up. Every call made through it returns an fd,
 * 0/-1, or a count of at most a buffer's 1 MiB.
 */
const SYSCALL = {
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
} as const;
// deno-lint-ignore no-explicit-any
type Generic = (nr: number, ...args: any[]) => number | bigint;
let syscallFn: Generic | undefined;

function generic(): Generic {
  syscallFn ??= bindOne(SYSCALL, "syscall") as Generic;
  return syscallFn;
}

/** A function as syscall(2): x86-64 number, and the caller's arguments in the kernel's order. */
// deno-lint-ignore no-explicit-any
type Via = [number, (...a: any[]) => unknown[]];

const VIA_SYSCALL: Partial<Record<Key, Via>> = {
  open: [257, (path, flags) => [AT_FDCWD, path, flags, 0, null]], // openat
  openMode: [257, (path, flags, mode) => [AT_FDCWD, path, flags, mode, null]],
  read: [0, (fd, buf, n) => [fd, buf, n, 0, null]],
  write: [1, (fd, buf, n) => [fd, buf, n, 0, null]],
  close: [3, (fd) => [fd, 0, 0, 0, 0]],
  flock: [73, (fd, op) => [fd, op, 0, 0, 0]],
  syncfs: [306, (fd) => [fd, 0, 0, 0, 0]],
  fsync: [74, (fd) => [fd, 0, 0, 0, 0]],
  sync_file_range: [277, (fd, offset, bytes, flags) => [fd, offset, bytes, flags, 0]],
  getdents64: [217, (fd, buf, n) => [fd, buf, n, 0, null]],
  fchown: [93, (fd, uid, gid) => [fd, uid, gid, 0, 0]],
  fchmod: [91, (fd, mode) => [fd, mode, 0, 0, 0]],
  statx: [332, (dirfd, path, flags, mask, buf) => [dirfd, path, flags, mask, buf]],
  utimensat: [280, (dirfd, path, times, flags) => [dirfd, path, times, flags, 0]],
  futimens: [280, (fd, times) => [fd, null, times, 0, 0]], // utimensat(fd, NULL, ...)
  socket: [41, (domain, type, protocol) => [domain, type, protocol, 0, 0]],
  connect: [42, (fd, addr, len) => [fd, addr, len, 0, null]],
  renameat2: [316, (ofd, from, nfd, to, flags) => [ofd, from, nfd, to, flags]],
  linkat: [265, (ofd, from, nfd, to, flags) => [ofd, from, nfd, to, flags]],
  unlinkat: [263, (fd, path, flags) => [fd, path, flags, 0, null]],
  mkdirat: [258, (fd, path, mode) => [fd, path, mode, 0, null]],
  readlinkat: [267, (fd, path, buf, size) => [fd, path, buf, size, 0]],
  // Bound as syscall(SYS_openat2, ...) itself: its first argument is the number.
  openat2: [437, (_nr, dirfd, path, how, size) => [dirfd, path, how, size, 0]],
};

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

/** The errno values the callers test for or name: Linux's, the same on x86-64 and arm64. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  ENOSPC: 28,
  EROFS: 30,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  EOPNOTSUPP: 95,
  ESTALE: 116,
  EDQUOT: 122,
} as const;

const ERRNO_NAMES = new Map<number, string>(Object.entries(Errno).map(([name, n]) => [n, name]));

/** The symbolic name of an errno value the callers report ("errno N" otherwise). */
export function errnoName(e: number): string {
  return ERRNO_NAMES.get(e) ?? `errno ${e}`;
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
