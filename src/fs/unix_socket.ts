/**
 * A request/reply over a Unix domain socket: synchronous through FFI for the
 * sync path (Deno's own Unix sockets are async only), and asynchronous for a
 * server, whose event loop must not wait.
 *
 * The socket is opened with O_PATH|O_NOFOLLOW and must be a socket inode; the
 * connection goes through `/proc/self/fd/N`, so a symlink planted at the path
 * never redirects it elsewhere (and the path's length does not matter).
 *
 * @module
 */

import { errno, libc } from "./libc.ts";

const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;
const O_PATH = 0o10000000;
const AT_EMPTY_PATH = 0x1000;
const STATX_TYPE = 1;
const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const POLLIN = 1;
const EINTR = 4;
const EAGAIN = 11;

function cString(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0") as Uint8Array<ArrayBuffer>;
}

/**
 * Sends `request` to the socket at `path` and returns the first line of the
 * reply, or null if there is no socket there (or a non-socket, or a symlink),
 * nobody listens, or no whole line arrives within `timeoutMs`.
 */
export function askUnixSocket(path: string, request: string, timeoutMs: number): string | null {
  const node = libc().open(cString(path), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (node < 0) return null;
  try {
    if (!isSocket(node)) return null;
    const s = libc().socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return null;
    try {
      return exchange(s, `/proc/self/fd/${node}`, request, Date.now() + timeoutMs);
    } finally {
      libc().close(s);
    }
  } finally {
    libc().close(node);
  }
}

function isSocket(fd: number): boolean {
  const buf = new Uint8Array(256);
  if (libc().statx(fd, cString(""), AT_EMPTY_PATH, STATX_TYPE, buf) !== 0) return false;
  return (new DataView(buf.buffer).getUint16(28, true) & S_IFMT) === S_IFSOCK;
}

function exchange(s: number, via: string, request: string, deadline: number): string | null {
  const name = new TextEncoder().encode(via);
  const addr = new Uint8Array(2 + name.length + 1);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(name, 2);
  if (libc().connect(s, addr, addr.length) !== 0) return null;
  const out = cString(request);
  const len = out.length - 1;
  if (Number(libc().write(s, out, BigInt(len))) !== len) return null;
  const reply = new Uint8Array(256);
  let got = 0;
  const pfd = new Uint8Array(8);
  const view = new DataView(pfd.buffer);
  while (got < reply.length) {
    const left = deadline - Date.now();
    if (left <= 0) return null;
    view.setInt32(0, s, true);
    view.setInt16(4, POLLIN, true);
    view.setInt16(6, 0, true);
    const ready = libc().pollSync(pfd, 1n, Math.min(left, 1000));
    if (ready < 0 && errno() !== EINTR) return null;
    if (ready <= 0) continue;
    const n = Number(libc().read(s, reply.subarray(got), BigInt(reply.length - got)));
    if (n < 0) {
      if (errno() === EAGAIN || errno() === EINTR) continue;
      return null;
    }
    if (n === 0) return null; // closed without a whole line
    got += n;
    const nl = reply.subarray(0, got).indexOf(10);
    if (nl >= 0) return new TextDecoder().decode(reply.subarray(0, nl));
  }
  return null;
}

/**
 * askUnixSocket for an event loop that serves others meanwhile: the same
 * checks (O_PATH|O_NOFOLLOW, a socket inode, connecting through
 * `/proc/self/fd/N`), with Deno's asynchronous Unix socket.
 */
export async function askUnixSocketAsync(
  path: string,
  request: string,
  timeoutMs: number,
): Promise<string | null> {
  const node = libc().open(cString(path), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (node < 0) return null;
  let conn: Deno.UnixConn | undefined;
  const timer = setTimeout(() => conn?.close(), timeoutMs);
  try {
    if (!isSocket(node)) return null;
    conn = await Deno.connect({ transport: "unix", path: `/proc/self/fd/${node}` });
    await conn.write(new TextEncoder().encode(request));
    const reply = new Uint8Array(256);
    let got = 0;
    while (got < reply.length) {
      const n = await conn.read(reply.subarray(got));
      if (n === null) return null; // closed (or timed out) without a whole line
      got += n;
      const nl = reply.subarray(0, got).indexOf(10);
      if (nl >= 0) return new TextDecoder().decode(reply.subarray(0, nl));
    }
    return null;
  } catch {
    return null; // nobody listens, or the timer closed the connection
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
    libc().close(node);
  }
}
