/**
 * Crafted peers against a sentinel tree outside every volume (issue 7).
 *
 * Each case builds a legit volume A (init) and its clone B, then a hostile peer
 * H: a copy of A's replica directory whose `.replicator/kml` gets crafted
 * records appended, encoded as A's own (A's origin host id, the current permit
 * epoch, A's sequence continued), so that B accepts them as the holder's. Some
 * cases tamper with H's other metadata instead, or use a second replica as a
 * relay. After `replicator sync -C B H` (which may fail, but cleanly):
 *
 * - nothing outside B changed: the sentinel tree (snapshot: bytes, modes,
 *   mtimes, links), A, and the parents of B and H hold no new entries;
 * - every entry B had is unchanged unless the case allows it (a legit update);
 * - B's metadata holds no symlink, its volume.json is the same, its KML only
 *   grew (old bytes a prefix), `fsck -C B` passes;
 * - stderr shows no stack trace.
 *
 * The last test prints how many cases ran and failed.
 */

import { createHash } from "node:crypto";
import { assert, assertEquals } from "./assert.ts";
import { cli, listing, makeSentinel, put, type Run, scratchDir, snapshot } from "./helpers.ts";
import { decodeRecord, encodeRecord, type KmlRecord, NO_DIGEST, Op } from "../src/kml/record.ts";
import { KmlLog } from "../src/kml/log.ts";
import { openReplica } from "../src/apply/open.ts";
import { clone, init } from "../mod.ts";
import { capture } from "../src/capture/capture.ts";
import { lstatNs, mtimeNsOf } from "../src/fs/stat.ts";
import { setMtimeNs } from "../src/fs/libc.ts";

const enc = new TextEncoder();
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const OLD_F = "f-old content\n";

/** The volumes of one case. */
interface World {
  root: string;
  a: string;
  b: string;
  /** The hostile peer: a copy of A's replica directory. */
  h: string;
  sentinel: string;
  aHost: string;
  epoch: number;
  /** A's last sequence number in H's log. */
  seq: number;
}

/** A crafted record: the fields that matter, the rest filled in as A would. */
type Rec = Partial<KmlRecord> & { op: Op; path: string };

const NOW = BigInt(Date.now()) * 1_000_000n;
const mkdir = (path: string): Rec => ({ op: Op.Mkdir, path, mode: 0o40755 });
const rmdir = (path: string): Rec => ({ op: Op.Rmdir, path });
const unlink = (path: string): Rec => ({ op: Op.Unlink, path });
const rename = (path: string, target: string): Rec => ({ op: Op.Rename, path, target });
const symlink = (path: string, target: string): Rec => ({
  op: Op.Symlink,
  path,
  target,
  mode: 0o120777,
  mtimeNs: NOW,
});
const setattr = (path: string, mode: number): Rec => ({ op: Op.Setattr, path, mode, mtimeNs: NOW });
const store = (path: string, content: string | Uint8Array): Rec => {
  const bytes = typeof content === "string" ? enc.encode(content) : content;
  return {
    op: Op.Store,
    path,
    mode: 0o100644,
    size: bytes.length,
    mtimeNs: NOW,
    digest: sha(bytes),
  };
};

async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (out.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

function names(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** A's host id, the permit epoch and A's last sequence number, read from a KML. */
function kmlState(kml: string, host: string): { epoch: number; seq: number } {
  const log = KmlLog.open(kml);
  try {
    let epoch = 0;
    let seq = 0;
    for (const f of log.frames()) {
      const r = decodeRecord(f.bytes);
      if (r.op === Op.Permit) epoch = Math.max(epoch, r.epoch);
      if (r.originHost === host) seq = Math.max(seq, r.originSeq);
    }
    return { epoch, seq };
  } finally {
    log.close();
  }
}

/**
 * A (ok, keep/file, f), its clone B in root/bdir, and H, a copy of A in root/h.
 * `beforeCopy` runs on A after the clone, before the copy is taken.
 */
async function world(beforeCopy?: (w: World) => void | Promise<void>): Promise<World> {
  const root = await scratchDir();
  const a = `${root}/a`;
  const w: World = {
    root,
    a,
    b: `${root}/bdir/b`,
    h: `${root}/h/h`,
    sentinel: `${root}/sentinel`,
    aHost: "",
    epoch: 0,
    seq: 0,
  };
  makeSentinel(w.sentinel);
  put(`${a}/ok`, "ok v1\n");
  put(`${a}/keep/file`, "keep\n");
  put(`${a}/f`, OLD_F);
  await init(a, { host: "alpha" }); // in-process: the attacks themselves run the CLI
  Deno.mkdirSync(`${root}/bdir`);
  await clone(a, w.b, { host: "beta" });
  await beforeCopy?.(w);
  Deno.mkdirSync(`${root}/h`);
  // H keeps A's inodes (so H's own scan sees its tree as recorded); A becomes the copy.
  Deno.renameSync(a, w.h);
  await run("cp", ["-a", w.h, a]);
  w.aHost = JSON.parse(Deno.readTextFileSync(`${a}/.replicator/volume.json`)).hostId;
  Object.assign(w, kmlState(`${w.h}/.replicator/kml`, w.aHost));
  return w;
}

/** Encodes crafted records as A's, continuing A's sequence in `w`. */
function encodeAll(
  w: World,
  recs: Rec[],
  origin = w.aHost,
): { records: KmlRecord[]; frames: Uint8Array[] } {
  const records = recs.map((r) => ({
    originHost: origin,
    originSeq: ++w.seq,
    epoch: w.epoch,
    timeNs: NOW,
    mode: 0,
    size: 0,
    mtimeNs: 0n,
    digest: NO_DIGEST,
    target: "",
    uid: -1,
    gid: -1,
    owner: "",
    group: "",
    ...r,
  }));
  return { records, frames: records.map(encodeRecord) };
}

/** Appends crafted records to the KML of replica `dir`. */
function appendRecords(dir: string, frames: Uint8Array[]): void {
  const log = KmlLog.open(`${dir}/.replicator/kml`);
  try {
    log.append(frames);
  } finally {
    log.close();
  }
}

/** Everything a case observes outside B, and B itself, before the attack. */
interface Before {
  sentinel: Record<string, string>;
  a: Record<string, string>;
  rootNames: string[];
  bdir: string[];
  hdir: string[];
  b: Record<string, string>;
  bConfig: string;
  bKml: Uint8Array;
}

function observe(w: World): Before {
  return {
    sentinel: snapshot(w.sentinel),
    a: snapshot(w.a),
    rootNames: names(w.root),
    bdir: names(`${w.root}/bdir`),
    hdir: names(`${w.root}/h`),
    b: listing(w.b),
    bConfig: Deno.readTextFileSync(`${w.b}/.replicator/volume.json`),
    bKml: Deno.readFileSync(`${w.b}/.replicator/kml`),
  };
}

function changes(x: Record<string, string>, y: Record<string, string>): string[] {
  const out: string[] = [];
  for (const p of [...new Set([...Object.keys(x), ...Object.keys(y)])].sort()) {
    if (x[p] !== y[p]) out.push(`${p}: ${x[p] ?? "absent"} -> ${y[p] ?? "absent"}`);
  }
  return out;
}

/** The checks every case ends with; returns the violations. */
async function confined(
  w: World,
  before: Before,
  r: Run,
  mayChange: (p: string) => boolean,
): Promise<string[]> {
  const bad: string[] = [];
  const outside = changes(before.sentinel, snapshot(w.sentinel));
  if (outside.length) bad.push(`WROTE OUTSIDE, sentinel changed: ${outside.join("; ")}`);
  const aChanged = changes(before.a, snapshot(w.a));
  if (aChanged.length) bad.push(`replica A (outside B) changed: ${aChanged.join("; ")}`);
  for (
    const [what, was, now] of [
      ["the parent of the volumes", before.rootNames, names(w.root)],
      ["the parent of B", before.bdir, names(`${w.root}/bdir`)],
      ["the parent of H", before.hdir, names(`${w.root}/h`)],
    ] as const
  ) {
    if (was.join("/") !== now.join("/")) bad.push(`new entries in ${what}: ${now.join(", ")}`);
  }
  const after = listing(w.b);
  const touched = Object.keys(before.b).filter((p) => !mayChange(p) && before.b[p] !== after[p]);
  if (touched.length) {
    bad.push(
      `B's files changed: ${
        touched.map((p) => `${p}: ${before.b[p]} -> ${after[p] ?? "absent"}`).join("; ")
      }`,
    );
  }
  const meta = `${w.b}/.replicator`;
  const st = Deno.lstatSync(meta);
  if (!st.isDirectory) bad.push("B's .replicator is no longer a directory");
  else {
    for (const n of names(meta)) {
      if (Deno.lstatSync(`${meta}/${n}`).isSymlink) bad.push(`B's .replicator/${n} is a symlink`);
    }
    try {
      if (Deno.readTextFileSync(`${meta}/volume.json`) !== before.bConfig) {
        bad.push("B's volume.json changed");
      }
      const kml = Deno.readFileSync(`${meta}/kml`);
      if (kml.length < before.bKml.length || !before.bKml.every((x, i) => kml[i] === x)) {
        bad.push("B's KML was rewritten (its old records are no longer a prefix)");
      }
    } catch (e) {
      bad.push(`B's metadata unreadable: ${(e as Error).message}`);
    }
  }
  if (/\n\s+at .*:\d+:\d+/.test(r.stderr)) {
    bad.push(`stack trace on stderr: ${r.stderr.slice(0, 300)}`);
  }
  const f = await cli(["fsck", "-C", w.b]);
  if (f.code !== 0) {
    bad.push(`fsck -C B exits ${f.code}: ${(f.stderr || f.stdout).trim().slice(0, 300)}`);
  }
  return bad;
}

let cases = 0;
const failedCases: string[] = [];

/** One adversarial case: its body returns the violations found. */
function attack(name: string, body: () => Promise<string[]>): void {
  Deno.test({
    name: `adversarial: ${name}`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      cases++;
      const bad = await body();
      if (bad.length) failedCases.push(name);
      assert(bad.length === 0, `${name}:\n  ${bad.join("\n  ")}`);
    },
  });
}

/** An attack on a fresh world (made with `beforeCopy`, see world()), removed afterwards. */
function attackInWorld(
  name: string,
  body: (w: World) => Promise<string[]>,
  beforeCopy?: (w: World) => void | Promise<void>,
): void {
  attack(name, async () => {
    const w = await world(beforeCopy);
    try {
      return await body(w);
    } finally {
      Deno.removeSync(w.root, { recursive: true });
    }
  });
}

interface CraftOpts {
  /** Paths of B that may legitimately change. */
  mayChange?: (p: string) => boolean;
  /** Files to put in H's tree (H-relative path -> bytes), e.g. the content a store names. */
  payload?: Record<string, string>;
  env?: Record<string, string>;
  /** Extra checks after the sync. */
  then?: (w: World, r: Run) => Promise<string[]> | string[];
}

/** A case whose records are appended to H's KML as A's. */
function crafted(name: string, recs: (w: World) => Rec[], opts: CraftOpts = {}): void {
  attackInWorld(name, async (w) => {
    for (const [p, content] of Object.entries(opts.payload ?? {})) put(`${w.h}/${p}`, content);
    appendRecords(w.h, encodeAll(w, recs(w)).frames);
    const before = observe(w);
    const r = await cli(["sync", "-C", w.b, w.h], { env: opts.env });
    const bad = await confined(w, before, r, opts.mayChange ?? (() => false));
    if (opts.then) bad.push(...await opts.then(w, r));
    return bad.map((b) => `${b} [sync exit ${r.code}: ${r.stderr.trim().split("\n")[0]}]`);
  });
}

// --- control: the crafting itself is accepted (else every other case proves nothing) ---

crafted(
  "control: crafted holder records are accepted and applied",
  () => [mkdir("benign"), symlink("benign-link", "ok"), store("benign/f", "payload\n")],
  {
    payload: { "benign/f": "payload\n" },
    then: (w, r) => {
      const l = listing(w.b);
      const bad: string[] = [];
      if (r.code !== 0) bad.push(`control sync exits ${r.code}: ${r.stderr}`);
      if (!l["benign"]?.startsWith("dir ")) {
        bad.push("crafted mkdir not applied: the crafting is broken");
      }
      if (!l["benign-link"]?.startsWith("link ok ")) bad.push("crafted symlink not applied");
      if (!l["benign/f"]) bad.push("crafted store not applied");
      return bad;
    },
  },
);

// --- hostile paths ---

const onlyUnder = (...tops: string[]) => (p: string) =>
  tops.some((t) => p === t || p.startsWith(t + "/"));

crafted("absolute path: mkdir", (w) => [mkdir(`${w.root}/bdir/abs-mkdir`)]);
crafted("absolute path: unlink of a file outside", (w) => [unlink(`${w.sentinel}/victim`)]);
crafted(
  "absolute path: setattr (chmod 777) of a file outside",
  (w) => [setattr(`${w.sentinel}/file2`, 0o100777)],
);
crafted("absolute path: rmdir outside", (w) => [rmdir(`${w.sentinel}/emptydir`)]);
crafted("absolute path: symlink", (w) => [symlink(`${w.root}/bdir/abs-link`, "/etc/passwd")]);
crafted("absolute path: store", (w) => [store(`${w.sentinel}/abs-store`, "pwned\n")]);
crafted("'..': unlink of a file outside", () => [unlink("../../sentinel/victim")]);
crafted("'..': rmdir outside", () => [rmdir("../../sentinel/emptydir")]);
crafted("'..': mkdir beside the volume", () => [mkdir("../escape-dir")]);
crafted("'..': symlink beside the volume", () => [symlink("../escape-link", "/")]);
crafted("'..': setattr of a file outside", () => [setattr("../../sentinel/file1", 0o104777)]);
crafted(
  "'..': store beside the volume, content present at the peer",
  () => [store("../escape-file", "pwned\n")],
  {
    payload: { "../escape-file": "pwned\n" },
  },
);
crafted("'..' inside a path: keep/../../escape2", () => [store("keep/../../escape2", "pwned\n")], {
  payload: { "../escape2": "pwned\n" },
});
crafted("NUL in path: mkdir", () => [mkdir("nul\0dir")]);
crafted("NUL in path: unlink 'ok\\0' (C would see 'ok')", () => [unlink("ok\0")]);
crafted("NUL in path: store 'f\\0x'", () => [store("f\0x", "pwned\n")]);
crafted("NUL in path: rename ok -> 'x\\0y'", () => [rename("ok", "x\0y")]);
crafted("'.replicator': store .replicator/volume.json (A's config)", (w) => [
  store(".replicator/volume.json", Deno.readFileSync(`${w.h}/.replicator/volume.json`)),
]);
crafted("'.replicator': unlink .replicator/kml", () => [unlink(".replicator/kml")]);
crafted("'.replicator': symlink .replicator/expect.tmp -> sentinel", (w) => [
  symlink(".replicator/expect.tmp", `${w.sentinel}/victim`),
]);
crafted("'.replicator': symlink .replicator/txn.records -> sentinel", (w) => [
  symlink(".replicator/txn.records", `${w.sentinel}/file1`),
]);
crafted("'.replicator': mkdir .replicator/staging/evil", () => [mkdir(".replicator/staging/evil")]);
crafted("'.replicator': rename .replicator -> stolen", () => [rename(".replicator", "stolen")]);
crafted("'.replicator': rmdir .replicator", () => [rmdir(".replicator")]);
crafted("'.replicator' behind '..': store keep/../.replicator/expect", () => [
  store("keep/../.replicator/expect", "garbage"),
]);
crafted("empty path: rmdir ''", () => [rmdir("")]);
crafted("empty path: unlink ''", () => [unlink("")]);
crafted("empty path: setattr '' (chmod the volume root 777)", () => [setattr("", 0o40777)]);
crafted("empty path: symlink '' -> sentinel", (w) => [symlink("", w.sentinel)]);
crafted("empty path: store ''", () => [store("", "pwned\n")]);
crafted(
  "rename target escaping: ok -> ../../sentinel/victim",
  () => [rename("ok", "../../sentinel/victim")],
);
crafted(
  "rename target escaping: ok -> absolute path outside",
  (w) => [rename("ok", `${w.sentinel}/moved-abs`)],
);
crafted("rename target escaping: keep -> ../moved-dir", () => [rename("keep", "../moved-dir")]);
crafted(
  "rename target into metadata: ok -> .replicator/kml",
  () => [rename("ok", ".replicator/kml")],
);
crafted("rename target empty: ok -> ''", () => [rename("ok", "")]);
crafted(
  "rename source escaping: ../../sentinel/file1 -> stolen",
  () => [rename("../../sentinel/file1", "stolen")],
);
crafted(
  "rename source absolute: sentinel/sub -> stolen-dir",
  (w) => [rename(`${w.sentinel}/sub`, "stolen-dir")],
);

// --- symlink swaps (defect 3a) ---

const defect3a = (w: World) => [
  mkdir("d"),
  mkdir("d/e"),
  rmdir("d/e"),
  symlink("d", w.sentinel),
  store("d/x", "pwned through d\n"),
];
crafted("defect 3a: mkdir d, mkdir d/e, rmdir d/e, symlink d -> sentinel, store d/x", defect3a, {
  mayChange: onlyUnder("d"),
});
crafted("defect 3a, with d/x's content present at the peer", defect3a, {
  mayChange: onlyUnder("d"),
  payload: { "d/x": "pwned through d\n" },
});
crafted("defect 3a, content present, one record per transaction", defect3a, {
  mayChange: onlyUnder("d"),
  payload: { "d/x": "pwned through d\n" },
  env: { REPLICATOR_BATCH_RECORDS: "1" },
});
crafted(
  "defect 3a with rmdir d before the symlink, content present",
  (
    w,
  ) => [
    mkdir("d"),
    mkdir("d/e"),
    rmdir("d/e"),
    rmdir("d"),
    symlink("d", w.sentinel),
    store("d/x", "pwned\n"),
  ],
  { mayChange: onlyUnder("d"), payload: { "d/x": "pwned\n" } },
);
const swap = (w: World) => [
  mkdir("s"),
  store("s/f", "first\n"),
  unlink("s/f"),
  rmdir("s"),
  symlink("s", w.sentinel),
  store("s/g", "pwned through s\n"),
];
crafted(
  "symlink swap between records: store s/f, rmdir s, symlink s -> sentinel, store s/g",
  swap,
  {
    mayChange: onlyUnder("s"),
    payload: { "s/f": "first\n", "s/g": "pwned through s\n" },
  },
);
crafted("symlink swap, one record per transaction", swap, {
  mayChange: onlyUnder("s"),
  payload: { "s/f": "first\n", "s/g": "pwned through s\n" },
  env: { REPLICATOR_BATCH_RECORDS: "1" },
});
crafted(
  "symlink swap of a directory B already has: keep -> sentinel/sub, store keep/inner",
  (
    w,
  ) => [
    unlink("keep/file"),
    rmdir("keep"),
    symlink("keep", `${w.sentinel}/sub`),
    store("keep/inner", "pwned\n"),
  ],
  { mayChange: onlyUnder("keep"), payload: { "keep/inner": "pwned\n" } },
);
crafted(
  "symlink swap then rename into it: symlink s -> sentinel, rename ok -> s/victim",
  (w) => [symlink("s", w.sentinel), rename("ok", "s/victim")],
  { mayChange: (p) => p === "ok" || onlyUnder("s")(p) },
);

// --- content that does not match its record (rule 3) ---

/** Rewrites `path` in place and puts its mtime back, so that a scan sees no change. */
function overwriteKeepingMtime(path: string, content: string): void {
  const mtime = mtimeNsOf(lstatNs(path)!);
  Deno.writeTextFileSync(path, content);
  setMtimeNs(path, mtime);
}

/** Syncs B from H: confined, and B's f must still be OLD_F (else `why`). */
async function syncKeepsOldF(w: World, why: string): Promise<string[]> {
  const before = observe(w);
  const r = await cli(["sync", "-C", w.b, w.h]);
  const bad = await confined(w, before, r, () => false);
  const now = Deno.readTextFileSync(`${w.b}/f`);
  if (now !== OLD_F) bad.push(`B's f is now ${JSON.stringify(now)}: ${why}`);
  return bad;
}

attackInWorld(
  "peer file whose bytes differ from its record's SHA-256 (wrong digest recorded)",
  async (w) => {
    // H's f is overwritten in place with other bytes of the same size and its mtime put
    // back, so that H's own scan sees no change; the crafted record names other bytes.
    const evil = "F-EVIL content".slice(0, OLD_F.length).padEnd(OLD_F.length, "!");
    overwriteKeepingMtime(`${w.h}/f`, evil);
    const claimed = "f-new content\n";
    appendRecords(w.h, encodeAll(w, [{ ...store("f", claimed), size: evil.length }]).frames);
    return await syncKeepsOldF(w, "unverified bytes installed");
  },
);

attackInWorld(
  "peer file changed after it was recorded: not installed, and the real content still arrives",
  async (w) => {
    overwriteKeepingMtime(`${w.h}/f`, "f-v2 EVIL!!!!\n");
    const bad = await syncKeepsOldF(w, "it must keep its old version");
    const again = await cli(["sync", "-C", w.b, w.a]);
    const later = Deno.readTextFileSync(`${w.b}/f`);
    if (later !== "f-v2 genuine.\n") {
      bad.push(
        `after a sync with A, B's f is ${
          JSON.stringify(later)
        } (exit ${again.code}): the wanted content was forgotten`,
      );
    }
    return bad;
  },
  (w) => {
    put(`${w.a}/f`, "f-v2 genuine.\n"); // same size as OLD_F
    const vol = openReplica(w.a);
    try {
      capture(vol);
    } finally {
      vol.close();
    }
  },
);

// --- one forged sequence number (defect 7) ---

attackInWorld(
  "defect 7: a relayed record of the holder's origin with sequence 2^52 does not block the holder",
  async (w) => {
    // A relay R (another replica) carries records claiming A's origin: seq 2^52, then more.
    const relay = `${w.root}/h/r`;
    assertEquals((await cli(["clone", w.a, relay, "--host", "relay"])).code, 0);
    const forged = { ...w, seq: 2 ** 52 - 1 };
    appendRecords(
      relay,
      encodeAll(forged, [mkdir("forged"), mkdir("forged/more"), symlink("forged-link", "ok")])
        .frames,
    );
    const before = observe(w);
    const r = await cli(["sync", "-C", w.b, relay]);
    const bad = await confined(w, before, r, () => false);
    put(`${w.a}/after`, "genuine, after the forgery\n");
    const r2 = await cli(["sync", "-C", w.b, w.a]);
    let got: string | undefined;
    try {
      got = Deno.readTextFileSync(`${w.b}/after`);
    } catch { /* absent */ }
    if (got !== "genuine, after the forgery\n") {
      bad.push(
        `A's next change did not reach B after the forged 2^52 record (sync with A exits ${r2.code}; ` +
          `B has 'after': ${got !== undefined})`,
      );
    }
    return bad;
  },
);

// --- hostile metadata (defect 3b) ---

/** A committed transaction (today's txn format) whose records name paths outside the volume. */
function evilTxn(w: World, dir: string): { txn: string; records: Uint8Array } {
  const { frames } = encodeAll(w, [
    unlink("../../sentinel/victim"),
    setattr("../../sentinel/file2", 0o100777),
    rmdir("../../sentinel/emptydir"),
    rename("../../sentinel/file1", "stolen"),
    symlink("../../sentinel/newlink", "/"),
    unlink(`${w.sentinel}/sub/inner`),
  ]);
  const records = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of frames) {
    records.set(f, at);
    at += f.length;
  }
  const kmlSize = Deno.statSync(`${dir}/.replicator/kml`).size;
  const txn = JSON.stringify({
    version: 1,
    kmlSize,
    recordBytes: records.length,
    steps: frames.map((_, i) => ({ i })),
    expect: [],
  });
  return { txn, records };
}

attackInWorld(
  "defect 3b: H's committed .replicator/txn names paths outside; opening H changes nothing outside",
  async (w) => {
    const { txn, records } = evilTxn(w, w.h);
    Deno.writeFileSync(`${w.h}/.replicator/txn.records`, records);
    Deno.writeTextFileSync(`${w.h}/.replicator/txn`, txn);
    const before = observe(w);
    const r = await cli(["sync", "-C", w.b, w.h]);
    return await confined(w, before, r, () => false);
  },
);

attackInWorld(
  "defect 3b: H's .replicator/txn and txn.records are symlinks to crafted files elsewhere",
  async (w) => {
    const { txn, records } = evilTxn(w, w.h);
    Deno.writeFileSync(`${w.root}/h/evil.records`, records);
    Deno.writeTextFileSync(`${w.root}/h/evil.txn`, txn);
    Deno.symlinkSync(`${w.root}/h/evil.records`, `${w.h}/.replicator/txn.records`);
    Deno.symlinkSync(`${w.root}/h/evil.txn`, `${w.h}/.replicator/txn`);
    const before = observe(w);
    const r = await cli(["sync", "-C", w.b, w.h]);
    return await confined(w, before, r, () => false);
  },
);

attackInWorld(
  "defect 3b: a local .replicator/txn naming paths outside is validated before recovery",
  async (w) => {
    const { txn, records } = evilTxn(w, w.b);
    const before = observe(w);
    Deno.writeFileSync(`${w.b}/.replicator/txn.records`, records);
    Deno.writeTextFileSync(`${w.b}/.replicator/txn`, txn);
    const r = await cli(["status", "-C", w.b]);
    const bad: string[] = [];
    const outside = changes(before.sentinel, snapshot(w.sentinel));
    if (outside.length) bad.push(`WROTE OUTSIDE when B was opened: ${outside.join("; ")}`);
    if (names(`${w.root}/bdir`).join() !== "b") {
      bad.push(
        `new entries beside B: ${names(`${w.root}/bdir`)}`,
      );
    }
    if (/\n\s+at .*:\d+:\d+/.test(r.stderr)) bad.push(`stack trace: ${r.stderr.slice(0, 300)}`);
    return bad;
  },
);

attackInWorld(
  "defect 3b: the peer's expect.tmp and txn.records are symlinks to sentinel files",
  async (w) => {
    // H is a replica that is behind B, so that the sync makes it apply a batch (txn.records)
    // and move its Expect (expect.tmp): both written where the symlinks point, unless refused.
    const hr = `${w.root}/h/r`;
    assertEquals((await cli(["clone", w.a, hr, "--host", "behind"])).code, 0);
    put(`${w.a}/newer`, "newer\n");
    assertEquals((await cli(["sync", "-C", w.b, w.a])).code, 0);
    Deno.symlinkSync(`${w.sentinel}/victim`, `${hr}/.replicator/expect.tmp`);
    Deno.symlinkSync(`${w.sentinel}/file1`, `${hr}/.replicator/txn.records`);
    const before = observe(w);
    const r = await cli(["sync", "-C", w.b, hr]);
    return await confined(w, before, r, () => false);
  },
);

// --- signals (defect 4) ---

attack(
  "defect 4: the peer's lento.pid names an unrelated live process: it is not signalled",
  async () => {
    const w = await world();
    const victim = new Deno.Command("sleep", { args: ["300"], stdout: "null", stderr: "null" })
      .spawn();
    const pidFile = `${w.h}/.replicator/lento.pid`;
    Deno.writeTextFileSync(pidFile, `${victim.pid}\n`);
    const holder = new Deno.Command("flock", {
      args: [pidFile, "sleep", "300"],
      stdout: "null",
      stderr: "null",
    })
      .spawn();
    try {
      // Wait until flock holds the lock.
      for (let i = 0; i < 100; i++) {
        const probe = await new Deno.Command("flock", { args: ["-n", pidFile, "true"] }).output();
        if (probe.code !== 0) break;
        await new Promise((ok) => setTimeout(ok, 20));
      }
      const before = observe(w);
      const r = await cli(["sync", "-C", w.b, w.h]);
      const bad = await confined(w, before, r, () => false);
      const died = await Promise.race([
        victim.status.then((s) => `exited (signal ${s.signal ?? "none"}, code ${s.code})`),
        new Promise<null>((ok) => setTimeout(() => ok(null), 300)),
      ]);
      if (died) bad.push(`the unrelated process named in the peer's lento.pid ${died}`);
      return bad;
    } finally {
      for (const p of [victim, holder]) {
        try {
          p.kill("SIGKILL");
        } catch { /* gone */ }
        await p.status;
      }
      Deno.removeSync(w.root, { recursive: true });
    }
  },
);

// --- setuid/setgid (defect 8) ---

attackInWorld("defect 8: setuid/setgid bits on holder files do not replicate", async (w) => {
  const bad: string[] = [];
  for (
    const [name, mode] of [["suid-sgid", 0o6755], ["suid", 0o4755], ["sgid", 0o2755]] as const
  ) {
    put(`${w.a}/${name}`, `#!/bin/sh\necho ${name}\n`);
    Deno.chmodSync(`${w.a}/${name}`, mode);
  }
  const r = await cli(["sync", "-C", w.b, w.a]);
  if (r.code !== 0) bad.push(`sync exits ${r.code}: ${r.stderr}`);
  for (const name of ["suid-sgid", "suid", "sgid"]) {
    let mode: number | null = null;
    try {
      mode = Deno.lstatSync(`${w.b}/${name}`).mode! & 0o7777;
    } catch { /* absent */ }
    if (mode === null) bad.push(`${name} did not arrive`);
    else if (mode & 0o6000) {
      bad.push(`${name} arrived with mode ${mode.toString(8)} (setuid/setgid kept)`);
    } else if (mode !== 0o755) {
      bad.push(`${name} arrived with mode ${mode.toString(8)}, expected 755`);
    }
  }
  return bad;
});

Deno.test("adversarial: summary", () => {
  console.log(`adversarial: ${cases} cases ran, ${failedCases.length} failed`);
  for (const c of failedCases) console.log(`  FAILED: ${c}`);
});
