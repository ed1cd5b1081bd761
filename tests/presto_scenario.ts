/**
 * The "main" scenario of tests/shim/presto_test.c, step by step, for the
 * host-side replays of what the Presto module emitted for it under QEMU
 * (tests/shim/capture-main.bin).
 */

import { assertEquals } from "./assert.ts";

// ---- the scenario of presto_test.c, step by step ------------------------------

const X = {
  renameat2: { parameters: ["i32", "buffer", "i32", "buffer", "u32"], result: "i32" },
  setxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;
let xlib: Deno.DynamicLibrary<typeof X> | undefined;
const x = () => (xlib ??= Deno.dlopen("libc.so.6", X)).symbols;
const AT_FDCWD = -100;
const RENAME_EXCHANGE = 2;
const EOPNOTSUPP = 95;
const cstr = (s: string) => new TextEncoder().encode(s + "\0");

const enc = new TextEncoder();

/** write_file() of presto_test.c: open O_WRONLY|flags 0644, write data if any, close. */
function writeFile(
  path: string,
  data: string | null,
  flags: { create?: boolean; truncate?: boolean; createNew?: boolean } = {},
) {
  const f = Deno.openSync(path, { write: true, mode: 0o644, ...flags });
  if (data !== null) f.writeSync(enc.encode(data));
  f.close();
}

/**
 * The "main" scenario of presto_test.c on `vol` (the armed root), with
 * `outside` beside it. A filesystem without user xattrs skips the setxattr
 * step (it changes no record; its SETATTR hint names f3, named anyway).
 */
export function mainScenario(vol: string, outside: string): void {
  const v = (p: string) => `${vol}/${p}`;
  // 1. create + write + close
  writeFile(v("f1"), "hello\n", { create: true });
  // 2. mkdir (the C test arms a second reader on d1 here)
  Deno.mkdirSync(v("d1"), { mode: 0o755 });
  // 3. mkdir + rmdir
  Deno.mkdirSync(v("d2"), { mode: 0o755 });
  Deno.removeSync(v("d2"));
  // 4-6. create without writing; reopen for writing without writing; unlink
  writeFile(v("f2"), null, { create: true });
  writeFile(v("f1"), null);
  Deno.removeSync(v("f2"));
  // 7. rename of a file
  Deno.renameSync(v("f1"), v("d1/f1r"));
  // 8-9. a directory with files, renamed
  Deno.mkdirSync(v("d3"), { mode: 0o755 });
  writeFile(v("d3/a"), "aaa\n", { create: true });
  writeFile(v("d3/b"), "bbb\n", { create: true });
  Deno.renameSync(v("d3"), v("d4"));
  // 10-11. hard link, symlink
  Deno.linkSync(v("d4/a"), v("hl"));
  Deno.symlinkSync("d4/a", v("sl"));
  // 12. chmod, utimes (atime 1000000 s, mtime 2000000 s), chmod of a directory
  Deno.chmodSync(v("d4/b"), 0o600);
  Deno.utimeSync(v("d4/a"), 1000000, 2000000);
  Deno.chmodSync(v("d1"), 0o700);
  // 13. many small writes, one close
  {
    const f = Deno.openSync(v("f3"), { write: true, create: true, mode: 0o644 });
    for (let i = 0; i < 500; i++) f.writeSync(enc.encode("0123456789abcdef"));
    f.close();
  }
  // 14. inside .replicator/ (private names, see the header comment)
  writeFile(v(".replicator/presto-kml"), "record\n", { create: true });
  Deno.mkdirSync(v(".replicator/presto-tmp"), { mode: 0o755 });
  Deno.renameSync(v(".replicator/presto-kml"), v(".replicator/presto-kml2"));
  Deno.chmodSync(v(".replicator/presto-kml2"), 0o600);
  writeFile(v(".replicator/presto-gone"), "x\n", { create: true });
  Deno.removeSync(v(".replicator/presto-gone"));
  Deno.removeSync(v(".replicator/presto-tmp"));
  Deno.chmodSync(v(".replicator"), 0o700);
  // 15. outside the volume
  writeFile(`${outside}/x`, "outside\n", { create: true });
  Deno.mkdirSync(`${outside}/y`, { mode: 0o755 });
  Deno.removeSync(`${outside}/y`);
  // 16-17. moves across the volume boundary
  Deno.renameSync(`${outside}/x`, v("moved"));
  Deno.renameSync(v("moved"), `${outside}/x2`);
  Deno.renameSync(v(".replicator/presto-kml2"), v("staged"));
  // 18. truncating open
  writeFile(v("d1/f1r"), null, { truncate: true });
  // 19. write, rename while open, close
  {
    const f = Deno.openSync(v("f4"), { write: true, create: true, mode: 0o644 });
    f.writeSync(enc.encode("4"));
    Deno.renameSync(v("f4"), v("f5"));
    f.close();
  }
  // 20. rename over an existing file, unlink of a hard link
  writeFile(v("f6"), "six\n", { createNew: true });
  Deno.renameSync(v("f6"), v("f5"));
  Deno.removeSync(v("hl"));
  // 21. exchange of two names; an xattr change
  assertEquals(
    x().renameat2(AT_FDCWD, cstr(v("f5")), AT_FDCWD, cstr(v("f3")), RENAME_EXCHANGE),
    0,
    "renameat2(RENAME_EXCHANGE)",
  );
  if (x().setxattr(cstr(v("f3")), cstr("user.k"), enc.encode("v"), 1n, 0) !== 0) {
    const errno = new Deno.UnsafePointerView(x().__errno_location()!).getInt32();
    assertEquals(errno, EOPNOTSUPP, "setxattr failed otherwise than 'not supported'");
  }
  // 21b. written outside, moved in while open, written, closed
  {
    const f = Deno.openSync(`${outside}/w`, { write: true, create: true, mode: 0o644 });
    f.writeSync(enc.encode("a"));
    Deno.renameSync(`${outside}/w`, v("w"));
    f.writeSync(enc.encode("b"));
    f.close();
  }
  // 22. end marker
  Deno.mkdirSync(v("end"), { mode: 0o755 });
}
