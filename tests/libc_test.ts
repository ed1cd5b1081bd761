/**
 * The libc functions a command calls only a few times go through syscall(2)
 * (see libc.ts): each one must do exactly what its own bound symbol does,
 * results and errno alike.
 */

import { assertEquals } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import {
  AT_SYMLINK_NOFOLLOW,
  bothTimes,
  errno,
  type Lib,
  libc,
  libcFor,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_RDONLY,
  O_WRONLY,
} from "../src/fs/libc.ts";

const LOCK_EX_NB = 2 | 4;
const ENOENT = 2;
const EEXIST = 17;
const EBADF = 9;

const c = (s: string) => new TextEncoder().encode(`${s}\0`);

/** What statx says of `name` below `fd`: type and mode, size, mtime (s, ns). */
function statOf(L: Lib, fd: number, name: string): number[] | string {
  const buf = new Uint8Array(256);
  if (L.statx(fd, c(name), AT_SYMLINK_NOFOLLOW, 0x7ff, buf) !== 0) return `errno ${errno()}`;
  const v = new DataView(buf.buffer);
  return [
    v.getUint16(28, true),
    v.getUint32(40, true),
    v.getUint32(112, true),
    v.getUint32(120, true),
  ];
}

/** One run of every function through `L` in a fresh directory, as a list of what happened. */
async function exercise(L: Lib): Promise<unknown[]> {
  const dir = await tempDir();
  const seen: unknown[] = [];
  const fd = L.open(c(dir), O_RDONLY | O_DIRECTORY);
  seen.push(fd >= 0);
  seen.push(L.mkdirat(fd, c("sub"), 0o750), L.mkdirat(fd, c("sub"), 0o750), errno() === EEXIST);
  const f = L.openMode(c(`${dir}/sub/file`), O_WRONLY | O_CREAT | O_EXCL, 0o600);
  const bytes = new TextEncoder().encode("some bytes");
  seen.push(Number(L.write(f, bytes, BigInt(bytes.length))));
  seen.push(L.fchmod(f, 0o604), L.fchown(f, Deno.uid()!, Deno.gid()!));
  seen.push(L.futimens(f, bothTimes(1_700_000_000_250_000_000n)), L.close(f));
  seen.push(statOf(L, fd, "sub/file"));
  seen.push(L.renameat2(fd, c("sub/file"), fd, c("sub/moved"), 0));
  seen.push(L.linkat(fd, c("sub/moved"), fd, c("sub/link"), 0), statOf(L, fd, "sub/link"));
  seen.push(L.unlinkat(fd, c("sub/link"), 0), statOf(L, fd, "sub/link"));
  Deno.symlinkSync("sub/moved", `${dir}/sym`);
  const target = new Uint8Array(64);
  const n = Number(L.readlinkat(fd, c("sym"), target, BigInt(target.length)));
  seen.push(new TextDecoder().decode(target.subarray(0, n)));
  seen.push(L.utimensat(fd, c("sym"), bothTimes(5_000_000_007n), AT_SYMLINK_NOFOLLOW));
  seen.push(statOf(L, fd, "sym"));
  const how = new Uint8Array(new BigUint64Array([0n, 0n, 0x0cn]).buffer); // BENEATH|NO_SYMLINKS
  const r = Number(L.openat2(437n, BigInt(fd), c("sub/moved"), how, 24n));
  const back = new Uint8Array(64);
  seen.push(new TextDecoder().decode(back.subarray(0, Number(L.read(r, back, 64n)))));
  seen.push(L.flock(r, LOCK_EX_NB), L.syncfs(r), L.sync_file_range(r, 0n, 0n, 2));
  seen.push(L.fsync(r), L.close(r), L.fsync(r));
  seen.push(Number(L.openat2(437n, BigInt(fd), c("sym/x"), how, 24n)), errno() !== 0);
  const s = L.socket(1, 1, 0); // AF_UNIX, SOCK_STREAM
  const addr = new Uint8Array(110);
  addr[0] = 1;
  new TextEncoder().encodeInto(`${dir}/no-socket`, addr.subarray(2));
  seen.push(s >= 0, L.connect(s, addr, 110), errno() === ENOENT, L.close(s));
  const dents = new Uint8Array(4096);
  seen.push(Number(L.getdents64(fd, dents, 4096n)) > 48, Number(L.getdents64(fd, dents, 4096n)));
  seen.push(statOf(L, fd, "nothing"), L.close(fd), L.close(fd), errno() === EBADF);
  return seen;
}

Deno.test("each function does through syscall(2) what its own symbol does", async () => {
  const bound = await exercise(libcFor(false));
  const via = await exercise(libcFor(true));
  assertEquals(via, bound);
  assertEquals(bound, [
    true,
    0,
    -1,
    true,
    10,
    0,
    0,
    0,
    0,
    [0o100604, 10, 1_700_000_000, 250_000_000],
    0,
    0,
    [0o100604, 10, 1_700_000_000, 250_000_000],
    0,
    `errno ${ENOENT}`,
    "sub/moved",
    0,
    [0o120777, 9, 5, 7],
    "some bytes",
    0,
    0,
    0,
    0,
    0,
    -1,
    -1,
    true,
    true,
    -1,
    true,
    0,
    true,
    0,
    `errno ${ENOENT}`,
    0,
    -1,
    true,
  ]);
});

Deno.test({
  name: "a function called often gets its own symbol, and calls go on working across the change",
  ignore: Deno.build.arch !== "x86_64",
  fn: () => {
    const L = libc();
    const seen = new Set<unknown>();
    for (let i = 0; i < 600; i++) { // past HOT_AFTER (512)
      seen.add(L.fchmod);
      assertEquals([L.fchmod(-1, 0o600), errno()], [-1, EBADF]);
    }
    assertEquals(seen.size, 2, "through syscall(2) first, then its own symbol");
  },
});
