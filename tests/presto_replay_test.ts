/**
 * Host-side replay of the Presto "main" scenario: the file operations of
 * tests/shim/presto_test.c (scenario "main", same order, relative to the
 * armed volume root) are done here on a replicator volume, then the hints
 * decoded from what the real module emitted for them under QEMU
 * (tests/shim/capture-main.bin) go through capture(vol, scope). The KML
 * records that appends must equal those a full scan records for the same
 * operations on a second, separate volume.
 *
 * Why on the host and not in the QEMU guest: the Deno runtime is ~100 MB+
 * and JITs very slowly under QEMU's TCG emulation (no KVM on the build
 * machines), so the guest runs the C test and dumps its raw records, and
 * this test replays them against the same operations here. Inode numbers
 * and times differ between the guest and here; the hints carry neither.
 *
 * Adaptations (the C scenario runs in a bare directory, this one in a real
 * volume): the scenario's private files in `.replicator/` (kml, kml2, tmp,
 * gone) get `presto-` names here so they do not clobber the volume's own
 * KML; the module reports nothing below `.replicator/` either way.
 */

import { assert, assertEquals, assertNotEquals } from "./assert.ts";
import { listing, tempDir } from "./helpers.ts";
import { createHash } from "node:crypto";
import { init } from "../src/replica.ts";
import { Volume } from "../src/volume/volume.ts";
import { capture } from "../src/capture/capture.ts";
import { decodeRecord, Op } from "../src/kml/record.ts";
import type { Hint } from "../src/capture/events.ts";
import {
  decodePrestoRecords,
  hintsOf,
  type PrestoEvent,
  PrestoType,
} from "../src/capture/presto.ts";

const FIXTURE = new URL("./shim/capture-main.bin", import.meta.url).pathname;
const events = decodePrestoRecords(Deno.readFileSync(FIXTURE), { firstSeq: 1n });

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
function mainScenario(vol: string, outside: string): void {
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

// ---- volumes and their records -----------------------------------------------

interface Rec {
  op: string;
  path: string;
  target: string;
  mode: number;
  size: number;
  digest: string;
}

/** A new volume `vol` with an `outside` directory beside it, the scenario done in it. */
async function scenarioVolume(): Promise<{ dir: string; vol: Volume; before: number }> {
  const dir = await tempDir();
  const root = `${dir}/vol`;
  Deno.mkdirSync(`${dir}/outside`);
  init(root, { host: "replay" });
  const vol = Volume.open(root);
  const before = [...vol.kml.frames()].length;
  mainScenario(root, `${dir}/outside`);
  return { dir, vol, before };
}

/** The records appended since frame `before`, in log order, without origin, times and mtime. */
function recordsSince(vol: Volume, before: number): Rec[] {
  return [...vol.kml.frames()].slice(before).map((f) => {
    const r = decodeRecord(f.bytes);
    return {
      op: Op[r.op],
      path: r.path,
      target: r.target,
      mode: r.mode,
      size: r.size,
      digest: r.digest,
    };
  });
}

/** Feeds hints to capture as lento does: paths as a scope, an overflow as a full capture. */
function replay(vol: Volume, hints: Hint[]): void {
  for (const h of hints) {
    const res = h.kind === "overflow" ? capture(vol) : capture(vol, h.paths);
    assertEquals(res.problems, []);
  }
}

async function withVolume<T>(
  f: (v: { dir: string; vol: Volume; before: number }) => T,
): Promise<T> {
  const v = await scenarioVolume();
  try {
    return f(v);
  } finally {
    v.vol.close();
    await Deno.remove(v.dir, { recursive: true });
  }
}

const sha = (s: string | Uint8Array) => createHash("sha256").update(s).digest("hex");
const NO_DIGEST = "0".repeat(64);

/** What a full scan must record for the scenario (umask applies to the 0644/0755 modes). */
function expectedRecords(): Rec[] {
  const umask = Deno.umask();
  Deno.umask(umask);
  const m = (bits: number) => bits & ~umask;
  const dir = (path: string, perm: number) => ({
    op: "Mkdir",
    path,
    target: "",
    mode: 0o40000 | m(perm),
    size: 0,
    digest: NO_DIGEST,
  });
  const file = (path: string, content: string, perm = 0o644) => ({
    op: "Store",
    path,
    target: "",
    mode: 0o100000 | perm,
    size: enc.encode(content).length,
    digest: sha(content),
  });
  return [
    dir("d1", 0o700),
    file("d1/f1r", "", m(0o644)),
    dir("d4", 0o755),
    file("d4/a", "aaa\n", m(0o644)),
    file("d4/b", "bbb\n", 0o600),
    dir("end", 0o755),
    file("f3", "six\n", m(0o644)),
    file("f5", "0123456789abcdef".repeat(500), m(0o644)),
    { op: "Symlink", path: "sl", target: "d4/a", mode: 0o120777, size: 0, digest: NO_DIGEST },
    file("staged", "record\n", 0o600),
    file("w", "ab", m(0o644)),
  ];
}

Deno.test("the module's hints for the main scenario record exactly what a full scan records", async () => {
  const full = await withVolume(({ vol, before }) => {
    assertEquals(capture(vol).problems, []);
    return { records: recordsSince(vol, before), tree: listing(vol.root) };
  });
  const hints = hintsOf(events);
  assertEquals(hints.length, 1); // the fixture has no OVERFLOW
  const replayed = await withVolume(({ vol, before }) => {
    assertEquals(recordsSince(vol, before), []); // nothing is recorded until capture runs
    replay(vol, hints);
    // utimes() of step 12 came through: d4/a carries mtime 2000000 s.
    const a = [...vol.kml.frames()].map((f) => decodeRecord(f.bytes)).find((r) =>
      r.path === "d4/a"
    );
    assertEquals(a?.mtimeNs, 2_000_000n * 1_000_000_000n);
    return { records: recordsSince(vol, before), tree: listing(vol.root) };
  });
  assertEquals(replayed.records, full.records);
  // Sorted by path as the scan diff emits them; the hard-coded list pins the content.
  const sorted = (rs: Rec[]) => [...rs].sort((a, b) => a.path < b.path ? -1 : 1);
  assertEquals(sorted(full.records), sorted(expectedRecords()));
  // The two volumes ended in the same state (mtimes aside: they were made at different times).
  const noTimes = (t: Record<string, string>) =>
    Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.replace(/ \d{10,}(?= |$)/, "")]));
  assertEquals(noTimes(replayed.tree), noTimes(full.tree));
});

Deno.test("lost events: an OVERFLOW hint makes the replay a full capture, and only then does it match", async () => {
  const full = await withVolume(({ vol, before }) => {
    capture(vol);
    return recordsSince(vol, before);
  });
  // As if events 11..20 had not fit the ring: the module queues one OVERFLOW
  // (aux = 10) in their place, with the next sequence number.
  const overflow: PrestoEvent = {
    type: PrestoType.OVERFLOW,
    seq: 11n,
    ino: 0n,
    timeNs: events[10].timeNs,
    flags: 0,
    mode: 0,
    path: "",
    path2: "",
    aux: 10n,
  };
  const after = events.slice(20).map((e, i) => ({ ...e, seq: 12n + BigInt(i) }));
  const lossy = [...events.slice(0, 10), overflow, ...after];
  const hints = hintsOf(lossy);
  assertEquals(hints.map((h) => h.kind), ["paths", "overflow", "paths"]);
  assertEquals(hints[1], { kind: "overflow", lost: 10 });

  const honoured = await withVolume(({ vol, before }) => {
    replay(vol, hints);
    return recordsSince(vol, before);
  });
  assertEquals(
    [...honoured].sort((a, b) => a.path < b.path ? -1 : 1),
    [...full].sort((a, b) => a.path < b.path ? -1 : 1),
  );
  // Ignoring the overflow (paths only) misses what the lost events named:
  // the test above would catch a replay that drops overflows.
  const ignored = await withVolume(({ vol, before }) => {
    replay(vol, hints.filter((h) => h.kind === "paths"));
    return recordsSince(vol, before);
  });
  assertNotEquals(ignored, full);
  assert(
    !ignored.some((r) => r.path === "d4" || r.path === "sl"),
    "d4 and sl came only from lost events",
  );
});
