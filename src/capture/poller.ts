/**
 * How an event source waits for its fd without blocking the event loop, and
 * how close() stops it; shared by the Presto and fanotify sources.
 *
 * Threads: the source's fd is nonblocking. {@link Poller.wait} runs poll(2)
 * on two fds, the source's and an eventfd, through the `poll` symbol
 * declared `nonblocking: true`: the call runs on a worker thread and the
 * event loop gets a promise. {@link Poller.call} runs any other such call
 * (Presto's read) the same way. Everything else (close(), the eventfd write,
 * the decisions on what poll returned) runs on the main thread.
 *
 * Stopping: {@link Poller.close} marks the poller closed, runs the source's
 * own stop (disarm the device, drop the marks) and writes the eventfd, which
 * ends a pending poll at once whatever the source fd does; the pending wait()
 * then resolves "closed". The fds are closed only when no worker-thread call
 * is in flight: closing them under a running poll or read would let the fd
 * number be reused by another open, and the worker would then poll or read
 * that unrelated file.
 *
 * errno is per thread and a nonblocking call runs on another thread, so
 * wait() never reads errno: poll's revents say what happened. A failed poll
 * (EINTR, say) is counted and retried; {@link MAX_FAILURES} in a row, or
 * POLLERR/POLLNVAL on the source fd, and the poller gives up. The source
 * says what resets the count ({@link Poller.progress}); each
 * {@link Poller.turn} (one next() of the source) starts it at zero.
 *
 * @module
 */

import { ReplicatorError } from "../errors.ts";
import { errno, libc } from "../fs/libc.ts";

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
/** Consecutive failed calls (polls, or the source's reads) before giving up. */
export const MAX_FAILURES = 100;

/**
 * What one wait() saw: the source fd is readable; it hung up with nothing to
 * read; nothing (timeout); the poll failed and may be retried; the poller
 * was closed.
 */
export type Wakeup = "readable" | "hangup" | "idle" | "retry" | "closed";

/** What the source adds to the poller's stopping and releasing. */
export interface PollerHooks {
  /** Stops the kernel side; run once by close(), before the eventfd is written. */
  onClose?: () => void;
  /** Closes the source's other fds; run once, just before the two fds are closed. */
  onRelease?: () => void;
}

/** One source fd, an eventfd to interrupt its waits, and their lifetime. */
export class Poller {
  /** The source fd, owned by the poller (closed when released). */
  readonly fd: number;
  readonly #name: string;
  readonly #wake: number;
  readonly #hooks: PollerHooks;
  readonly #pollfds = new Uint8Array(16);
  /** The source fd alone, for queued(): a worker may be using #pollfds meanwhile. */
  readonly #pollNow = new Uint8Array(8);
  /** Reads of the source fd under way on a worker thread. */
  #reads = 0;
  #closed = false;
  #released = false;
  #inFlight = 0;
  #failures = 0;
  /** The running or last turn(): turns are served one after the other. */
  #chain: Promise<unknown> = Promise.resolve();

  private constructor(name: string, fd: number, wake: number, hooks: PollerHooks) {
    this.#name = name;
    this.fd = fd;
    this.#wake = wake;
    this.#hooks = hooks;
    const v = new DataView(this.#pollfds.buffer);
    v.setInt32(0, fd, true);
    v.setInt16(4, POLLIN, true);
    v.setInt32(8, wake, true);
    new DataView(this.#pollNow.buffer).setInt32(0, fd, true);
    new DataView(this.#pollNow.buffer).setInt16(4, POLLIN, true);
    v.setInt16(12, POLLIN, true);
  }

  /**
   * Takes ownership of `fd` and makes its eventfd. If that fails, `fd` is
   * closed and the error made by `error(errno)` is thrown. `name` ("presto")
   * names the source in the error of {@link Poller.fail}.
   */
  static open(
    name: string,
    fd: number,
    error: (errno: number) => Error,
    hooks: PollerHooks = {},
  ): Poller {
    const wake = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake < 0) {
      const e = errno();
      libc().close(fd);
      throw error(e);
    }
    return new Poller(name, fd, wake, hooks);
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Waits in poll(2), on a worker thread, until the source fd is readable or
   * hangs up, the poller is closed, or `timeoutMs` passes (-1: no timeout).
   * Throws (closing the poller) on POLLERR/POLLNVAL or when poll keeps
   * failing.
   */
  async wait(timeoutMs = -1): Promise<Wakeup> {
    if (this.#closed) return "closed";
    const ready = await this.call(() => libc().poll(this.#pollfds, 2n, timeoutMs));
    if (this.#closed) return "closed";
    if (ready < 0) {
      this.failure("poll() keeps failing");
      return "retry";
    }
    const revents = new DataView(this.#pollfds.buffer).getUint16(6, true);
    if (revents & (POLLNVAL | POLLERR)) this.fail("poll() reported an error");
    if (revents & POLLIN) return "readable";
    if (revents & POLLHUP) return "hangup";
    return "idle";
  }

  /**
   * Runs `f` once every earlier turn has settled (a source's next() calls are
   * served one after the other), with a fresh count of failed calls.
   */
  turn<T>(f: () => Promise<T>): Promise<T> {
    const run = () => {
      this.#failures = 0;
      return f();
    };
    const p = this.#chain.then(run, run);
    this.#chain = p;
    return p;
  }

  /**
   * True if the source fd has something to read now (a poll(2) with no
   * timeout, on this thread), or a {@link Poller.read} is under way.
   */
  queued(): boolean {
    if (this.#closed) return false;
    if (this.#reads > 0) return true;
    if (libc().pollNow(this.#pollNow, 1n, 0) <= 0) return false;
    return (new DataView(this.#pollNow.buffer).getUint16(6, true) & POLLIN) !== 0;
  }

  /** {@link Poller.call} for a read of the source fd: queued() is true until it returns. */
  async read<T>(f: () => Promise<T>): Promise<T> {
    this.#reads++;
    try {
      return await this.call(f);
    } finally {
      this.#reads--;
    }
  }

  /** Runs one nonblocking FFI call, keeping the fds open until it returns. */
  async call<T>(f: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await f();
    } finally {
      this.#inFlight--;
      if (this.#closed && this.#inFlight === 0) this.#release();
    }
  }

  /** Counts a failed call; the {@link MAX_FAILURES}th in a row fails with `why`. */
  failure(why: string): void {
    if (++this.#failures >= MAX_FAILURES) this.fail(why);
  }

  /** Resets the count of failed calls (a call made progress). */
  progress(): void {
    this.#failures = 0;
  }

  /** Closes the poller and throws why the source's reader failed. */
  fail(why: string): never {
    this.close();
    throw new ReplicatorError(
      `the ${this.#name} reader failed: ${why}; capture by scanning instead`,
    );
  }

  /**
   * Stops the source (its onClose hook), then wakes a pending wait(), which
   * resolves "closed". The fds are closed now if no call is in flight, else
   * when the last one returns.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#hooks.onClose?.();
    const one = new BigUint64Array([1n]);
    libc().write(this.#wake, new Uint8Array(one.buffer), 8n);
    if (this.#inFlight === 0) this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#hooks.onRelease?.();
    libc().close(this.fd);
    libc().close(this.#wake);
  }
}
