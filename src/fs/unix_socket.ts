/**
 * A request/reply over a Unix domain socket, with Deno's asynchronous Unix
 * sockets (the caller's event loop goes on meanwhile).
 *
 * The socket is opened with O_PATH|O_NOFOLLOW and must be a socket inode; the
 * connection goes through `/proc/self/fd/N`, so a symlink planted at the path
 * never redirects it elsewhere (and the path's length does not matter).
 *
 * @module
 */

import { cString, libc, O_CLOEXEC, O_NOFOLLOW, O_PATH } from "./libc.ts";
import { after } from "../timer.ts";

const AT_EMPTY_PATH = 0x1000;
const STATX_TYPE = 1;
const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;

function isSocket(fd: number): boolean {
  const buf = new Uint8Array(256);
  if (libc().statx(fd, cString(""), AT_EMPTY_PATH, STATX_TYPE, buf) !== 0) return false;
  return (new DataView(buf.buffer).getUint16(28, true) & S_IFMT) === S_IFSOCK;
}

/**
 * Sends `request` to the socket at `path` and returns the first line of the
 * reply, or null if there is no socket there (or a non-socket, or a symlink),
 * nobody listens, or no whole line arrives within `timeoutMs`. The socket is
 * opened O_PATH|O_NOFOLLOW, checked to be a socket inode, and connected to
 * through `/proc/self/fd/N`; the event loop goes on meanwhile.
 */
export async function askUnixSocket(
  path: string,
  request: string,
  timeoutMs: number,
): Promise<string | null> {
  const node = libc().open(cString(path), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (node < 0) return null;
  let conn: Deno.UnixConn | undefined;
  const cancel = after(timeoutMs, () => conn?.close());
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
    cancel();
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
    libc().close(node);
  }
}
