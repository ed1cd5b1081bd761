/**
 * Lento's own overflow path: when the event stream carries an OVERFLOW record
 * (the module's ring was full and events were lost), lento must rescan the
 * whole volume, so changes that no event names are still recorded. Lento's
 * real loop (runLento) reads Presto records from a pipe standing in for
 * /dev/presto (as in lento_replay_test.ts); the records it appends must equal
 * what a full scan of a twin volume, changed the same way, records, and the
 * full scan must record each change as what it is (a rename as one rename, a
 * same-size edit as a store): the only direct check of scan.ts's rename
 * pairing and re-hashing outside the CLI tests.
 */

import { closeFd, pipe, writeAll } from "./pipe.ts";
import { openReplica } from "../src/apply/open.ts";
import { assert, assertEquals } from "./assert.ts";
import { init } from "../src/replica.ts";
import { capture } from "../src/capture/capture.ts";
import { runLento } from "../src/capture/lento.ts";
import {
  PRESTO_ABI_VERSION,
  PRESTO_EVENT_HDR_LEN,
  PRESTO_EVENT_LAYOUT as L,
  PRESTO_MAGIC,
  prestoRecLen,
  PrestoSource,
  PrestoType,
} from "../src/capture/presto.ts";
import { decodeRecord, Op } from "../src/kml/record.ts";

interface Rec {
  type: number;
  path?: string;
  path2?: string;
  /** OVERFLOW: events lost. */
  lost?: number;
}

/** Presto records as the module writes them (docs/presto-abi.md), numbered from 1. */
function encode(recs: Rec[]): Uint8Array {
  const te = new TextEncoder();
  const parts = recs.map((r, i) => {
    const overflow = r.type === PrestoType.OVERFLOW;
    const p1 = te.encode(r.path ?? "");
    const p2 = te.encode(r.path2 ?? "");
    const len = prestoRecLen(p1.length, p2.length);
    const b = new Uint8Array(len);
    const v = new DataView(b.buffer);
    v.setUint32(L.rec_len.offset, len, true);
    v.setUint16(L.magic.offset, PRESTO_MAGIC, true);
    v.setUint8(L.version.offset, PRESTO_ABI_VERSION);
    v.setUint8(L.type.offset, r.type);
    v.setBigUint64(L.seq.offset, BigInt(i + 1), true);
    v.setBigUint64(L.ino.offset, overflow ? 0n : 5000n + BigInt(i), true);
    v.setBigUint64(L.time_ns.offset, BigInt(Date.now()) * 1_000_000n, true);
    v.setUint16(L.mode.offset, overflow ? 0 : 0o100644, true);
    v.setUint16(L.path_len.offset, p1.length, true);
    v.setUint16(L.path2_len.offset, p2.length, true);
    v.setBigUint64(L.aux.offset, BigInt(r.lost ?? 0), true);
    b.set(p1, PRESTO_EVENT_HDR_LEN);
    b.set(p2, PRESTO_EVENT_HDR_LEN + p1.length + 1);
    return b;
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, off), off += p.length;
  return out;
}

/** The log's records, without origins and times. */
function records(root: string): string[] {
  const vol = openReplica(root);
  try {
    return [...vol.kml.frames()].map((f) => decodeRecord(f.bytes)).map((r) =>
      `${Op[r.op]} ${r.path} ${r.target} ${r.mode.toString(8)} ${r.size} ${r.digest}`
    );
  } finally {
    vol.close();
  }
}

/** "Op path [target]" of a line of records(). */
function opAndPaths(line: string): string {
  const [op, path, target] = line.split(" ");
  return op === "Rename" ? `${op} ${path} ${target}` : `${op} ${path}`;
}

/** A volume with some files, all recorded by init. */
function populated(root: string): void {
  Deno.mkdirSync(`${root}/dir/sub`, { recursive: true });
  Deno.writeTextFileSync(`${root}/keep.txt`, "keep\n");
  Deno.writeTextFileSync(`${root}/old.txt`, "to be renamed\n");
  Deno.writeTextFileSync(`${root}/gone.txt`, "to be deleted\n");
  Deno.writeTextFileSync(`${root}/mode.txt`, "to be chmodded\n");
  Deno.writeTextFileSync(`${root}/dir/sub/x`, "x\n");
  Deno.writeTextFileSync(`${root}/same.txt`, "aaaa\n");
  init(root, { host: "overflow" });
}

/** Changes of which the event stream below names only `named.txt`. */
function change(root: string): void {
  Deno.writeTextFileSync(`${root}/named.txt`, "named by an event\n");
  Deno.writeTextFileSync(`${root}/keep.txt`, "keep, and a longer second version\n");
  Deno.renameSync(`${root}/old.txt`, `${root}/new.txt`);
  Deno.removeSync(`${root}/gone.txt`);
  Deno.chmodSync(`${root}/mode.txt`, 0o600);
  Deno.mkdirSync(`${root}/fresh`);
  Deno.writeTextFileSync(`${root}/fresh/y`, "unnamed new file\n");
  Deno.writeTextFileSync(`${root}/dir/sub/x`, "x, changed\n");
  // Edited in place to the same size: only the mtime (set apart) tells.
  Deno.writeTextFileSync(`${root}/same.txt`, "bbbb\n");
  Deno.utimeSync(`${root}/same.txt`, new Date(978307200000), new Date(978307200000));
}

/** What `change` must be recorded as (operation and path), in any order. */
const CHANGED = [
  "Store named.txt",
  "Store keep.txt",
  "Rename old.txt new.txt",
  "Unlink gone.txt",
  "Setattr mode.txt",
  "Mkdir fresh",
  "Store fresh/y",
  "Store dir/sub/x",
  "Store same.txt",
].sort();

/** What a full scan records for `change` on a twin volume. */
async function expected(): Promise<string[]> {
  const dir = await Deno.makeTempDir({ prefix: "replicator-test-" });
  try {
    populated(`${dir}/vol`);
    const before = records(`${dir}/vol`).length;
    change(`${dir}/vol`);
    const vol = openReplica(`${dir}/vol`);
    try {
      capture(vol);
    } finally {
      vol.close();
    }
    return records(`${dir}/vol`).slice(before);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** What lentoRecords waits for: the records appended so far and lento's log since start-up. */
type Done = (appended: number, logged: string[]) => boolean;

const rescanned: Done = (_, logged) => logged.some((l) => l.includes("rescanned"));

/**
 * Runs lento on a fresh populated volume, makes `change`, feeds `stream`
 * through the pipe, waits until `done` (by default: lento reports a rescan
 * after start-up; at most 10 s), and returns the records appended and
 * lento's log.
 */
async function lentoRecords(
  stream: Rec[],
  done: Done = rescanned,
): Promise<{ got: string[]; lines: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "replicator-test-" });
  const root = `${dir}/vol`;
  try {
    populated(root);
    const before = records(root).length;
    const [r, w] = pipe();
    const stop = new AbortController();
    let ready!: () => void;
    const armed = new Promise<void>((ok) => (ready = ok));
    const lines: string[] = [];
    const running = runLento(root, {
      source: PrestoSource.fromFd(r),
      signal: stop.signal,
      ready: () => ready(),
      log: (l) => lines.push(l),
    });
    try {
      await armed; // the start-up rescan is done (and logged): from here on only events count
      const startup = lines.length;
      change(root);
      const bytes = encode(stream);
      writeAll(w, bytes);
      const deadline = Date.now() + 10_000;
      while (
        !done(records(root).length - before, lines.slice(startup)) && Date.now() < deadline
      ) {
        await new Promise((ok) => setTimeout(ok, 20));
      }
    } finally {
      stop.abort();
      await running;
      closeFd(w);
    }
    return { got: records(root).slice(before), lines };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("lento rescans on an OVERFLOW record: changes no event names are recorded", async () => {
  const want = await expected();
  // The full scan itself records each change as what it is (a rename as a
  // rename, a same-size edit as a store): else comparing with it proves little.
  assertEquals(want.map(opAndPaths).sort(), CHANGED, want.join("\n"));
  const { got, lines } = await lentoRecords([
    { type: PrestoType.CREATE, path: "named.txt" },
    { type: PrestoType.CLOSE_WRITE, path: "named.txt" },
    { type: PrestoType.OVERFLOW, lost: 17 },
  ]);
  assertEquals(got, want, lines.join("\n"));
  assert(lines.some((l) => /^presto: rescanned, recorded [1-9]/.test(l)), lines.join("\n"));
});

Deno.test("lento rescans on an OVERFLOW record alone (no path hints at all)", async () => {
  const want = await expected();
  const { got, lines } = await lentoRecords([{ type: PrestoType.OVERFLOW, lost: 3 }]);
  assertEquals(got, want, lines.join("\n"));
});

Deno.test("without an OVERFLOW, lento records only what the events name (the test can tell)", async () => {
  // The control: the same changes with only `named.txt` named and no OVERFLOW
  // record leave the others unrecorded, so the tests above see the rescan.
  const { got } = await lentoRecords([
    { type: PrestoType.CREATE, path: "named.txt" },
    { type: PrestoType.CLOSE_WRITE, path: "named.txt" },
  ], (appended) => appended > 0);
  assertEquals(got.length, 1, got.join("\n"));
  assert(got[0].startsWith("Store named.txt "), got[0]);
});
