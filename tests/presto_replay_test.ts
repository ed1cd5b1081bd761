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

import { openReplica } from "../src/apply/open.ts";
import { assert, assertEquals, assertNotEquals } from "./assert.ts";
import { listing, tempDir } from "./helpers.ts";
import { createHash } from "node:crypto";
import { init } from "../src/replica.ts";
import { Volume } from "../src/volume/volume.ts";
import { capture } from "../src/capture/capture.ts";
import { decodeRecord, Op } from "../src/kml/record.ts";
import type { Hint } from "../src/capture/events.ts";
import { mainScenario } from "./presto_scenario.ts";
import {
  decodePrestoRecords,
  hintsOf,
  type PrestoEvent,
  PrestoType,
} from "../src/capture/presto.ts";

const FIXTURE = new URL("./shim/capture-main.bin", import.meta.url).pathname;
const events = decodePrestoRecords(Deno.readFileSync(FIXTURE), { firstSeq: 1n });

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
  const vol = openReplica(root);
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
const enc = new TextEncoder();

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
