/**
 * The Presto event source: /dev/presto opened and armed on a volume root
 * through Deno FFI (libc open/ioctl/poll/read/close), delivering hints to
 * lento.
 *
 * How it waits without blocking the event loop, and how close() stops it:
 * the device is opened O_NONBLOCK, and next() waits in poll(2) on two fds,
 * the device and an eventfd, with `poll` and `read` declared
 * `nonblocking: true` (they run on a worker thread and return promises).
 * close() marks the source closed, disarms the reader (the kernel then stops
 * queueing and wakes pollers with POLLHUP) and writes the eventfd, which ends
 * a pending poll at once whatever the device does; the pending next() then
 * resolves with []. The fds are closed only when no call is in flight, so a
 * worker thread never polls or reads an fd number that was closed and reused.
 *
 * errno is per thread, and a nonblocking call runs on another thread, so the
 * waiting path never reads errno: poll's revents say what happened (POLLIN,
 * POLLHUP = no longer armed, POLLNVAL/POLLERR = broken), and a read that
 * fails after POLLIN is retried after polling again.
 *
 * @module
 */

import { ReplicatorError } from "../errors.ts";
import type { EventSource, Hint } from "./events.ts";
import {
  decodePrestoRecords,
  hintsOf,
  PRESTO_ARM_ALL_CLOSE_WRITE,
  PRESTO_ARM_LAYOUT,
  PRESTO_ARM_SIZE,
  PRESTO_DEVICE,
  PRESTO_IOC_ARM,
  PRESTO_IOC_DISARM,
  PRESTO_RING_MAX,
  PRESTO_RING_MIN,
} from "./presto.ts";

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  ioctlPtr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctlInt: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let lib: Lib | undefined;

function libc(): Lib {
  lib ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return lib;
}

/** errno of the last failed synchronous call on this thread. */
function errno(): number {
  return new Deno.UnsafePointerView(libc().__errno_location()!).getInt32();
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  6: "ENXIO",
  9: "EBADF",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  19: "ENODEV",
  20: "ENOTDIR",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
};

function errnoName(e: number): string {
  return ERRNO_NAMES[e] ?? `errno ${e}`;
}

const O_RDONLY = 0;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
/** The read buffer: many records per read (a record is at most 8,240 bytes). */
const READ_BUFFER_BYTES = 64 * 1024;
/** Consecutive failed polls or reads before giving up. */
const MAX_FAILURES = 100;

/** Options of {@link openPresto}. */
export interface PrestoOptions {
  /** Ring size in bytes: 0 (default 256 KiB) or a power of two from 4 KiB to 16 MiB. */
  ringBytes?: number;
  /** Report every close of a file opened for writing (catches mmap/AIO writers). */
  allCloseWrite?: boolean;
  /** The device (default /dev/presto). */
  device?: string;
}

/**
 * Opens the Presto device and arms it on the volume root `root`. Returns
 * null when the device does not exist (the module is not loaded); throws a
 * ReplicatorError when it exists but cannot be opened or armed (not root,
 * not a directory, ...). Arm first, then scan: the scan plus the events is
 * the complete picture.
 *
 * next() rejects with a FormatError if the device returns a malformed
 * record (another ABI version, say): close the source and capture by
 * scanning instead.
 */
export function openPresto(root: string, opts: PrestoOptions = {}): PrestoSource | null {
  const device = opts.device ?? PRESTO_DEVICE;
  try {
    Deno.statSync(device);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const ring = opts.ringBytes ?? 0;
  if (
    ring !== 0 &&
    (!Number.isInteger(ring) || ring < PRESTO_RING_MIN || ring > PRESTO_RING_MAX ||
      (ring & (ring - 1)) !== 0)
  ) {
    throw new ReplicatorError(
      `presto ring size ${ring} is invalid: use 0 (default) or a power of two from ` +
        `${PRESTO_RING_MIN} to ${PRESTO_RING_MAX}`,
    );
  }
  const c = libc();
  const fd = c.open(cString(device), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const e = errnoName(errno());
    throw new ReplicatorError(
      `cannot open ${device} (${e}); lento needs root to read it, or capture without it`,
    );
  }
  const path = cString(root);
  const arm = new Uint8Array(PRESTO_ARM_SIZE);
  const v = new DataView(arm.buffer);
  v.setUint32(PRESTO_ARM_LAYOUT.size.offset, PRESTO_ARM_SIZE, true);
  v.setUint32(
    PRESTO_ARM_LAYOUT.flags.offset,
    opts.allCloseWrite ? PRESTO_ARM_ALL_CLOSE_WRITE : 0,
    true,
  );
  v.setUint32(PRESTO_ARM_LAYOUT.ring_bytes.offset, ring, true);
  v.setUint32(PRESTO_ARM_LAYOUT.reserved.offset, 0, true);
  v.setBigUint64(
    PRESTO_ARM_LAYOUT.path.offset,
    BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(path))),
    true,
  );
  if (c.ioctlPtr(fd, BigInt(PRESTO_IOC_ARM), arm) !== 0) {
    const e = errnoName(errno());
    c.close(fd);
    const why = e === "ENOTTY" || e === "EINVAL"
      ? `${device} is not a Presto ABI version 1 device`
      : e === "EPERM"
      ? "arming needs CAP_SYS_ADMIN"
      : "the volume root must be an existing directory";
    throw new ReplicatorError(`cannot arm ${device} on ${root} (${e}): ${why}`);
  }
  path.fill(0); // keep `path` alive until here: the kernel read it through the pointer
  return PrestoSource.fromFd(fd);
}

/**
 * An open reader of Presto records. Normally made by {@link openPresto};
 * {@link PrestoSource.fromFd} wraps any readable, pollable fd that carries
 * whole records (an armed /dev/presto fd, or a pipe in tests).
 */
export class PrestoSource implements EventSource {
  readonly name = "presto";
  readonly #fd: number;
  readonly #wake: number;
  readonly #buf = new Uint8Array(READ_BUFFER_BYTES);
  readonly #pollfds = new Uint8Array(16);
  #nextSeq = 1n;
  #closed = false;
  #released = false;
  /** The running or last next(): calls are served one after the other. */
  #chain: Promise<unknown> = Promise.resolve();
  #inFlight = 0;

  private constructor(fd: number, wake: number) {
    this.#fd = fd;
    this.#wake = wake;
    const v = new DataView(this.#pollfds.buffer);
    v.setInt32(0, fd, true);
    v.setInt16(4, POLLIN, true);
    v.setInt32(8, wake, true);
    v.setInt16(12, POLLIN, true);
  }

  /** Takes ownership of `fd` (closed by close()). */
  static fromFd(fd: number): PrestoSource {
    const wake = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake < 0) {
      const e = errnoName(errno());
      libc().close(fd);
      throw new ReplicatorError(`cannot create an eventfd for the presto reader (${e})`);
    }
    return new PrestoSource(fd, wake);
  }

  /** True once close() was called or the device reported that it is no longer armed. */
  get closed(): boolean {
    return this.#closed;
  }

  next(): Promise<Hint[]> {
    const run = this.#chain.then(() => this.#next(), () => this.#next());
    this.#chain = run;
    return run;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const c = libc();
    c.ioctlInt(this.#fd, BigInt(PRESTO_IOC_DISARM), 0n); // not a device (tests): ENOTTY, harmless
    const one = new BigUint64Array([1n]);
    c.write(this.#wake, new Uint8Array(one.buffer), 8n);
    if (this.#inFlight === 0) this.#release();
  }

  async #next(): Promise<Hint[]> {
    let failures = 0;
    while (!this.#closed) {
      const ready = await this.#call(() => libc().poll(this.#pollfds, 2n, -1));
      if (this.#closed) break;
      if (ready < 0) {
        // EINTR; anything else repeats and ends in the failure limit below
        if (++failures >= MAX_FAILURES) return this.#fail("poll() keeps failing");
        continue;
      }
      const v = new DataView(this.#pollfds.buffer);
      const revents = v.getUint16(6, true);
      if (revents & (POLLNVAL | POLLERR)) return this.#fail("poll() reported an error");
      if (revents & POLLIN) {
        const n = Number(
          await this.#call(() => libc().read(this.#fd, this.#buf, BigInt(READ_BUFFER_BYTES))),
        );
        if (this.#closed) break;
        if (n > 0) {
          failures = 0;
          let events;
          try {
            events = decodePrestoRecords(this.#buf.subarray(0, n), { firstSeq: this.#nextSeq });
          } catch (e) {
            this.close();
            throw e;
          }
          if (events.length === 0) continue;
          this.#nextSeq = events[events.length - 1].seq + 1n;
          return hintsOf(events);
        }
        if (n === 0) break; // end of file: the reader is no longer armed
        if (++failures >= MAX_FAILURES) return this.#fail("read() keeps failing after poll()");
        continue;
      }
      if (revents & POLLHUP) break; // disarmed, nothing left to read
    }
    this.close();
    if (this.#inFlight === 0) this.#release();
    return [];
  }

  #fail(why: string): never {
    this.close();
    throw new ReplicatorError(`the presto reader failed: ${why}; capture by scanning instead`);
  }

  /** Runs one nonblocking call, keeping the fds open until it returns. */
  async #call<T>(f: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await f();
    } finally {
      this.#inFlight--;
      if (this.#closed && this.#inFlight === 0) this.#release();
    }
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    libc().close(this.#fd);
    libc().close(this.#wake);
  }
}

const encoder = new TextEncoder();

/** `s` as a new NUL-terminated C string. */
function cString(s: string): Uint8Array<ArrayBuffer> {
  const b = encoder.encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}
