/**
 * A request/reply over a Unix domain socket, made with system calls: Deno's
 * own Unix sockets cost a sync about 5 ms to set up, more than lento takes to
 * answer. Only the wait for the reply runs off this thread (poll(2) on a
 * worker thread), so the caller's event loop goes on meanwhile and two
 * requests wait side by side.
 *
 * The socket is opened with O_PATH|O_NOFOLLOW and must be a socket inode; the
 * connection goes through `/proc/self/fd/N`, so a symlink planted at the path
 * never redirects it elsewhere (and the path's length does not matter).
 *
 * @module
 */

import { cString, Errno, errno, libc, O_CLOEXEC, O_NOFOLLOW, O_PATH, S_IFSOCK } from "./libc.ts";
import { fdType, statAt } from "./stat.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
/** struct sockaddr_un: sa_family_t, then a 108-byte path. */
const SOCKADDR_UN_BYTES = 110;
const POLLIN = 1;
const MAX_FAILED_POLLS = 100;
const { EAGAIN } = Errno;

/** Whether `fd` is a socket inode (owned by `owner`, if given). */
function isSocket(fd: number, owner?: number): boolean {
  try {
    if (fdType(fd) !== S_IFSOCK) return false;
    return owner === undefined || statAt(fd, "", `descriptor ${fd}`, true)?.uid === owner;
  } catch {
    return false; // cannot be told: no socket to trust
  }
}

/**
 * Sends `request` to the socket at `path` and returns the first line of the
 * reply, or null if there is no socket there (or a non-socket, or a symlink),
 * nobody listens, or no whole line arrives within `timeoutMs`. The socket is
 * opened O_PATH|O_NOFOLLOW, checked to be a socket inode, and connected to
 * through `/proc/self/fd/N`.
 */
export async function askUnixSocket(
  path: string,
  request: string,
  timeoutMs: number,
): Promise<string | null> {
  const conn = UnixRequest.send(path, request);
  try {
    return await conn?.line(performance.now() + timeoutMs) ?? null;
  } finally {
    conn?.close();
  }
}

/** A request sent over a Unix socket, whose reply is read a line at a time. */
export class UnixRequest {
  #fd: number;
  #buf = new Uint8Array(256);
  #got = 0;
  #pollFd = new Uint8Array(8); // struct pollfd: fd, events, revents
  #failedPolls = 0;
  /** The last line() gave up because the line exceeded its `maxBytes`. */
  tooLong = false;

  private constructor(fd: number) {
    this.#fd = fd;
    new DataView(this.#pollFd.buffer).setInt32(0, fd, true);
    new DataView(this.#pollFd.buffer).setInt16(4, POLLIN, true);
  }

  /**
   * Connects to the socket at `path` and sends `request`; null if there is no
   * socket there (or a non-socket, a symlink, or, with `owner`, a socket some
   * other user owns), or nobody listens.
   */
  static send(path: string, request: string, owner?: number): UnixRequest | null {
    const node = libc().open(cString(path), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (node < 0) return null;
    let fd = -1;
    try {
      if (!isSocket(node, owner)) return null;
      fd = libc().socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) return null;
      const to = sockaddrUn(`/proc/self/fd/${node}`);
      if (libc().connect(fd, to, SOCKADDR_UN_BYTES) !== 0) return null; // nobody listens
      const bytes = new TextEncoder().encode(request);
      if (Number(libc().write(fd, bytes, BigInt(bytes.length))) !== bytes.length) return null;
      const conn = new UnixRequest(fd);
      fd = -1;
      return conn;
    } finally {
      if (fd >= 0) libc().close(fd);
      libc().close(node);
    }
  }

  /**
   * The next line of the reply, or null if the connection closes first, the
   * line would exceed `maxBytes`, or `deadline` (performance.now(); null:
   * none) passes.
   */
  async line(deadline: number | null, maxBytes = 256): Promise<string | null> {
    for (let from = 0;;) {
      const nl = this.#buf.subarray(from, this.#got).indexOf(10);
      if (nl >= 0) return this.#take(from + nl);
      from = this.#got;
      if (this.#got === this.#buf.length) {
        if (this.#buf.length >= maxBytes) {
          this.tooLong = true;
          return null;
        }
        const more = new Uint8Array(Math.min(maxBytes, this.#buf.length * 4));
        more.set(this.#buf);
        this.#buf = more;
      }
      const left = deadline === null ? -1 : Math.ceil(deadline - performance.now());
      if (deadline !== null && left <= 0) return null; // nothing in time
      const ready = await libc().poll(this.#pollFd, 1n, left);
      if (ready === 0) continue; // the deadline, checked above
      // A failed poll (a signal: its errno is the worker thread's) is tried again, a few times.
      if (ready < 0 && ++this.#failedPolls > MAX_FAILED_POLLS) return null;
      if (ready < 0) continue;
      const room = this.#buf.subarray(this.#got);
      const n = Number(libc().read(this.#fd, room, BigInt(room.length)));
      if (n < 0 && errno() === EAGAIN) continue;
      if (n <= 0) return null; // closed without a whole line
      this.#got += n;
    }
  }

  close(): void {
    if (this.#fd >= 0) libc().close(this.#fd);
    this.#fd = -1;
  }

  /** The line ending at `nl`, removed from the buffer. */
  #take(nl: number): string {
    const line = new TextDecoder().decode(this.#buf.subarray(0, nl));
    this.#buf.copyWithin(0, nl + 1, this.#got);
    this.#got -= nl + 1;
    return line;
  }
}

function sockaddrUn(path: string): Uint8Array<ArrayBuffer> {
  const sa = new Uint8Array(SOCKADDR_UN_BYTES);
  new DataView(sa.buffer).setUint16(0, AF_UNIX, true);
  new TextEncoder().encodeInto(path, sa.subarray(2, SOCKADDR_UN_BYTES - 1));
  return sa;
}
