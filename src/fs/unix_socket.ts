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
import { fdType } from "./stat.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
/** struct sockaddr_un: sa_family_t, then a 108-byte path. */
const SOCKADDR_UN_BYTES = 110;
const POLLIN = 1;
const { EAGAIN } = Errno;

function isSocket(fd: number): boolean {
  try {
    return fdType(fd) === S_IFSOCK;
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
  const node = libc().open(cString(path), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (node < 0) return null;
  let fd = -1;
  try {
    if (!isSocket(node)) return null;
    fd = libc().socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return null;
    const to = sockaddrUn(`/proc/self/fd/${node}`);
    if (libc().connect(fd, to, SOCKADDR_UN_BYTES) !== 0) return null; // nobody listens
    const bytes = new TextEncoder().encode(request);
    if (Number(libc().write(fd, bytes, BigInt(bytes.length))) !== bytes.length) return null;
    return await readLine(fd, performance.now() + timeoutMs);
  } finally {
    if (fd >= 0) libc().close(fd);
    libc().close(node);
  }
}

function sockaddrUn(path: string): Uint8Array<ArrayBuffer> {
  const sa = new Uint8Array(SOCKADDR_UN_BYTES);
  new DataView(sa.buffer).setUint16(0, AF_UNIX, true);
  new TextEncoder().encodeInto(path, sa.subarray(2, SOCKADDR_UN_BYTES - 1));
  return sa;
}

/** The first line read from `fd` before `deadline` (performance.now()), or null. */
async function readLine(fd: number, deadline: number): Promise<string | null> {
  const reply = new Uint8Array(256);
  const pollFd = new Uint8Array(8); // struct pollfd: fd, events, revents
  new DataView(pollFd.buffer).setInt32(0, fd, true);
  new DataView(pollFd.buffer).setInt16(4, POLLIN, true);
  for (let got = 0; got < reply.length;) {
    const left = Math.ceil(deadline - performance.now());
    // Nothing in time, or poll failed (its errno is the worker thread's): no answer.
    if (left <= 0 || await libc().poll(pollFd, 1n, left) <= 0) return null;
    const n = Number(libc().read(fd, reply.subarray(got), BigInt(reply.length - got)));
    if (n < 0 && errno() === EAGAIN) continue;
    if (n <= 0) return null; // closed without a whole line
    got += n;
    const nl = reply.subarray(0, got).indexOf(10);
    if (nl >= 0) return new TextDecoder().decode(reply.subarray(0, nl));
  }
  return null;
}
