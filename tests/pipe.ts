/**
 * A pipe standing in for /dev/presto in tests that feed lento's own loop
 * module records: the read end is non-blocking, like the device.
 */

import { assertEquals } from "./assert.ts";

const C = {
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
} as const;
const libc = Deno.dlopen("libc.so.6", C).symbols;

/** [read end (O_NONBLOCK), write end], both close-on-exec. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  assertEquals(libc.pipe2(new Uint8Array(fds.buffer), 0o2000000 /* O_CLOEXEC */), 0);
  assertEquals(libc.fcntl(fds[0], 4, /* F_SETFL */ 0o4000 /* O_NONBLOCK */), 0);
  return [fds[0], fds[1]];
}

/** Writes all of `bytes` to `fd` in one call (pipes up to their capacity). */
export function writeAll(fd: number, bytes: Uint8Array): void {
  const copy = new Uint8Array(bytes); // an ArrayBuffer-backed copy FFI takes
  assertEquals(Number(libc.write(fd, copy, BigInt(copy.length))), copy.length);
}

export function closeFd(fd: number): void {
  libc.close(fd);
}
