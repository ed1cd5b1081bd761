/**
 * The Presto event source: /dev/presto opened and armed on a volume root
 * through Deno FFI (libc open/ioctl/poll/read/close), delivering hints to
 * lento.
 *
 * How it waits without blocking the event loop, and how close() stops it,
 * is poller.ts: the device is opened O_NONBLOCK, next() waits in poll(2) on
 * the device and an eventfd and reads with read(2), both on a worker thread.
 * close() disarms the reader (the kernel then stops queueing and wakes
 * pollers with POLLHUP) and writes the eventfd; the pending next() then
 * resolves with []. poll's revents say what happened (POLLIN, POLLHUP = no
 * longer armed, POLLNVAL/POLLERR = broken), and a read that fails after
 * POLLIN is retried after polling again (errno is not readable there: the
 * read ran on another thread).
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
import { cString, errno, errnoName, libc, O_CLOEXEC, O_NONBLOCK, O_RDONLY } from "../fs/libc.ts";
import { Poller } from "./poller.ts";

/** The read buffer: many records per read (a record is at most 8,240 bytes). */
const READ_BUFFER_BYTES = 64 * 1024;

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
  const path = cString(root).slice(); // its own copy: the kernel reads it through a pointer
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
  readonly #poller: Poller;
  readonly #buf = new Uint8Array(READ_BUFFER_BYTES);
  #nextSeq = 1n;

  private constructor(poller: Poller) {
    this.#poller = poller;
  }

  /** Takes ownership of `fd` (closed by close()). */
  static fromFd(fd: number): PrestoSource {
    const poller = Poller.open(
      "presto",
      fd,
      (e) =>
        new ReplicatorError(`cannot create an eventfd for the presto reader (${errnoName(e)})`),
      // not a device (tests): ENOTTY, harmless
      { onClose: () => void libc().ioctlInt(fd, BigInt(PRESTO_IOC_DISARM), 0n) },
    );
    return new PrestoSource(poller);
  }

  /** True once close() was called or the device reported that it is no longer armed. */
  get closed(): boolean {
    return this.#poller.closed;
  }

  next(): Promise<Hint[]> {
    return this.#poller.turn(() => this.#next());
  }

  queued(): boolean {
    return this.#poller.queued();
  }

  /** Disarms the reader (the kernel then wakes pollers with POLLHUP) and ends a pending next(). */
  close(): void {
    this.#poller.close();
  }

  async #next(): Promise<Hint[]> {
    const poller = this.#poller;
    while (!poller.closed) {
      const woke = await poller.wait();
      if (woke === "closed" || woke === "hangup") break; // hangup: disarmed, nothing left to read
      if (woke !== "readable") continue; // a failed poll (EINTR): the poller counts it
      const n = Number(
        await poller.read(() =>
          libc().readNonblocking(poller.fd, this.#buf, BigInt(READ_BUFFER_BYTES))
        ),
      );
      if (poller.closed) break;
      if (n > 0) {
        poller.progress();
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
      poller.failure("read() keeps failing after poll()");
    }
    this.close();
    return [];
  }
}
