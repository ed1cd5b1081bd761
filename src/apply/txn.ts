/**
 * Transactions: a batch of remote records is applied as one unit (rule 2).
 *
 * 1. Everything the batch installs is staged (stage.ts), the records to
 *    append are written to `.replicator/txn.records`, and both are flushed.
 * 2. The transaction file `.replicator/txn` (steps with their pre- and
 *    postconditions, the index rows expected at the end, the Expect after
 *    the batch) is written atomically: the commit point.
 * 3. The steps run (steps.ts), the records are appended to the KML, the
 *    index and Expect updated, everything flushed, and the file removed.
 *
 * On open, a transaction file means "run it again from its first step":
 * each step checks the disk first, so what was done is not done twice and
 * nothing a later step did is undone (rule 9). Staging without a transaction
 * file means nothing was committed: it is dropped.
 *
 * @module
 */

import { decodeRecord, frameLength, type KmlRecord, Op } from "../kml/record.ts";
import type { ExpectEntry } from "../expect/expect.ts";
import { fsyncDir, fsyncFiles, syncFilesystem, writeFileAtomic } from "../fs/durable.ts";
import { parentOf } from "../fs/paths.ts";
import { Beneath } from "../fs/beneath.ts";
import { mtimeNsOf, type Stat } from "../fs/stat.ts";
import type { Volume } from "../volume/volume.ts";
import { type Entry, entryOf, type Wanted } from "../volume/state.ts";
import { FsError, MetadataError } from "../errors.ts";
import { readRegular, readRegularText } from "../fs/nofollow.ts";
import type { Layout } from "../volume/layout.ts";
import {
  newOutcome,
  type Outcome,
  runStep,
  same,
  STAGING,
  type Step,
  type StepContext,
} from "./steps.ts";
import { checkRecord, checkSteps } from "./validate.ts";
import { crashPoint, failPoint } from "./crash.ts";
import { type DirAttrs, wantedOf } from "./plan.ts";

/** Transaction file format version (2: steps carry their pre- and postconditions). */
export const TXN_VERSION = 2;

/** A committed batch, as stored in `.replicator/txn`. */
export interface Txn {
  version: number;
  /** KML size before the batch: a re-run cuts back to it and appends again. */
  kmlSize: number;
  /** Bytes of the records to append, stored beside it in `txn.records`. */
  recordBytes: number;
  steps: Step[];
  /** Index rows expected at the end of the batch (null: none). */
  rows: [string, Entry | null][];
  /** Content the batch could not bring (the source had changed it): asked for later. */
  wants: Wanted[];
  /** The Expect entries after the batch. */
  expect: ExpectEntry[];
  /** UTC stamp of conflict copies made by this batch. */
  stamp: string;
  /** Directory attributes set after the steps, deepest first. */
  dirs: DirAttrs[];
}

/** Outcome of applying a transaction. */
export interface TxnResult {
  /** Steps run. */
  applied: number;
  /** Conflict copies made (local versions kept aside). */
  kept: string[];
  /** Steps that could not be applied, with the reason. */
  problems: string[];
}

/** Commits and applies a planned batch of `records`, whose KML frames are `frames`. */
export function runTxn(
  vol: Volume,
  txn: Txn,
  records: KmlRecord[],
  frames: Uint8Array[],
): TxnResult {
  writeNew(vol.layout.txnRecords, concat(frames));
  // Staged content and records durable before the commit point.
  // (Staged symlinks and directories have no data: their bucket's fsync covers them.)
  const files = txn.steps.flatMap((s) =>
    "staged" in s && s.staged && s.post?.type === "f" ? [`${vol.root}/${STAGING}/${s.staged}`] : []
  );
  const buckets = new Set(files.map(parentOf));
  flush(vol.root, [...files, vol.layout.txnRecords], [
    ...buckets,
    vol.layout.staging,
    vol.layout.meta,
  ]);
  writeFileAtomic(vol.layout.txn, new TextEncoder().encode(JSON.stringify(txn)));
  crashPoint("commit");
  return applyTxn(vol, { txn, records, frames }, false);
}

/** Finishes a committed transaction, or drops staging left by an uncommitted one. */
export function recoverTxn(vol: Volume): void {
  const loaded = loadTxn(vol.layout);
  if (!loaded) return clearStaging(vol); // nothing was committed
  applyTxn(vol, loaded, true);
}

/** A committed transaction as read back from disk, validated. */
export interface LoadedTxn {
  txn: Txn;
  records: KmlRecord[];
  frames: Uint8Array[];
}

/**
 * Reads `txn` and `txn.records` (never through a symlink) and checks them
 * like a peer's records: null if there is no transaction. Throws
 * MetadataError naming the damaged file and saying to run fsck --repair.
 */
export function loadTxn(layout: Layout): LoadedTxn | null {
  let text: string;
  try {
    text = readRegularText(layout.txn);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const damaged = (file: string, why: string) =>
    new MetadataError(
      file,
      `${file}: the interrupted batch is damaged (${why}); run 'replicator fsck --repair'`,
    );
  let txn: Txn;
  try {
    txn = JSON.parse(text);
  } catch {
    throw damaged(layout.txn, "not JSON");
  }
  if (txn?.version !== TXN_VERSION) {
    throw damaged(layout.txn, `unknown version ${String(txn?.version)}`);
  }
  let all: Uint8Array;
  try {
    all = readRegular(layout.txnRecords);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw damaged(layout.txnRecords, "missing");
    throw e;
  }
  if (all.length !== txn.recordBytes) throw damaged(layout.txnRecords, "wrong length");
  let frames: Uint8Array[];
  let records: KmlRecord[];
  try {
    frames = splitFrames(all);
    records = frames.map(decodeRecord);
    for (const r of records) checkRecord(r, layout.txnRecords);
    if (!Array.isArray(txn.wants) || !Array.isArray(txn.expect) || !Array.isArray(txn.dirs)) {
      throw new Error("fields missing");
    }
    const paths = [...txn.dirs.map(([d]) => d), ...txn.wants.map((w) => w.path)];
    checkSteps(layout.txn, txn.steps, txn.rows, records.length, paths);
  } catch (e) {
    throw damaged(layout.txn, (e as Error).message);
  }
  return { txn, records, frames };
}

/** Splits concatenated frames. */
export function splitFrames(all: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < all.length;) {
    const len = frameLength(all.subarray(at));
    out.push(all.subarray(at, at + len));
    at += len;
  }
  return out;
}

/**
 * Runs (or, `recovering` after a crash, finishes) the steps of a committed
 * transaction, then its records, index rows and Expect, each made durable
 * before the transaction file goes.
 */
function applyTxn(
  vol: Volume,
  { txn, records, frames }: LoadedTxn,
  recovering: boolean,
): TxnResult {
  const t = Beneath.open(vol.root);
  try {
    const out = newOutcome();
    const ctx: StepContext = {
      t,
      host: vol.config.hostName,
      stamp: txn.stamp,
      steps: txn.steps,
      out,
      wantOf: (s) => wantedOf(vol, s.path, records[s.i]),
    };
    let applied = 0;
    txn.steps.forEach((s, k) => {
      try {
        t.within(() => runStep(ctx, k)); // each directory resolved once per step
        applied++;
      } catch (e) {
        if (!(e instanceof FsError)) throw e;
        out.problems.push(`${s.path}: ${e.message}; it will be retried by the next sync`);
        const r = records[s.i];
        if (r.op === Op.Store || (r.op === Op.Rename && s.kind === "move" && s.want)) {
          out.wants.push(wantedOf(vol, s.kind === "move" ? s.to : s.path, r));
        }
      }
      crashPoint(`step:${k + 1}`);
    });
    setDirAttrs(vol, t, txn.dirs, out); // writes: each directory resolved afresh
    crashPoint("steps");
    // A re-run after the records and index were committed (their one SQLite
    // transaction notes the KML's new end) does not do them twice.
    const end = txn.kmlSize + txn.recordBytes;
    if (vol.kml.size !== end || vol.state.getMeta("kml_end") !== String(end)) {
      if (vol.kml.size !== txn.kmlSize) vol.kml.truncate(txn.kmlSize);
      failPoint("append", vol.layout.kml);
      vol.commitRecords(records, frames, () => finalize(vol, t, txn, out));
    }
    crashPoint("append");
    vol.writeExpect(txn.expect);
    crashPoint("expect");
    failPoint("fsync", vol.root);
    flush(vol.root, [], changedDirs(vol, t, txn.steps, out.kept, recovering));
    Deno.removeSync(vol.layout.txn);
    clearStaging(vol);
    fsyncDir(vol.layout.meta);
    return { applied, kept: out.kept, problems: out.problems };
  } finally {
    t.close();
  }
}

/**
 * Sets the recorded permissions and mtimes of the directories the batch
 * changed, deepest first (rsync -a does the same). Only metadata, only on
 * real directories: safe to repeat.
 */
function setDirAttrs(vol: Volume, t: Beneath, dirs: DirAttrs[], out: Outcome): void {
  for (const [d, perm, sec, nsec, ino] of dirs) {
    try {
      const st = t.stat(d);
      if (st?.type !== "d") continue;
      // Permissions only where they are this replica's record (a local chmod, a local
      // directory merged into, keep theirs); the mtime is the holder's in any case.
      const row = vol.state.getEntry(d);
      const ours = row?.type === "d" ? st.perm === row.perm : st.ino === ino || ino < 0;
      if (ours && st.perm !== perm) t.chmod(d, perm);
      t.setMtime(d, mtimeNsOf({ mtimeSec: sec, mtimeNsec: nsec }));
    } catch (e) {
      if (!(e instanceof FsError)) throw e;
      out.problems.push(`${d}: ${e.message}`);
    }
  }
}

/**
 * Brings the index to what the batch left on disk, inside the state
 * transaction: rows move with the moves that happened, and each touched path
 * gets the row the batch expected only where the disk shows exactly that
 * entry. Where a step failed, the old version's row stays while the disk
 * still shows it; anything else is a local change, and has no row. Content
 * that did not arrive is wanted.
 */
function finalize(vol: Volume, t: Beneath, txn: Txn, out: Outcome): void {
  const { state } = vol;
  // The index below each path as the plan's View saw it: what a step made or
  // removed replaces the old subtree, a move takes it along.
  txn.steps.forEach((s, k) => {
    if (s.kind === "attrs") return;
    if (s.kind !== "move") return state.deleteBelow(s.path); // the path itself: see rows
    if (!out.moved.has(k)) return state.deleteTree(s.path);
    state.deleteTree(s.to);
    state.renameEntries(s.path, s.to);
    state.renameWanted(s.path, s.to);
  });
  // Content this batch put in place supersedes content wanted there before (this batch's
  // own wants are added after the rows). Only stats below: each directory is resolved once.
  const placed = new Set(txn.steps.flatMap(contentAt));
  const wants = state.anyWanted(); // if none, no row has one to end (a clone, most syncs)
  t.within(() => {
    for (const [p, e] of txn.rows) putRow(vol, t.stat(p), p, e, out, placed.has(p), wants);
  });
  const rows = new Map(txn.rows);
  for (const w of [...txn.wants, ...out.wants]) {
    if (state.getEntry(w.path)?.digest === w.digest || rows.get(w.path) === null) continue;
    // Attributes set later in the batch belong to the wanted file too.
    const e = rows.get(w.path);
    const attrs = e?.type === "f" && e.digest === w.digest
      ? { perm: e.perm, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec }
      : {};
    state.want({ ...w, ...attrs });
  }
  for (const s of txn.steps) {
    const w = s.kind === "attrs" && s.wantAttrs ? state.wantedAt(s.path) : undefined;
    if (w && s.kind === "attrs") state.want({ ...w, ...s.wantAttrs });
  }
}

/** Where step `s` puts a file's content of its record (a Setattr or a rename puts none). */
function contentAt(s: Step): string[] {
  if (s.kind === "place") return s.post.type === "f" ? [s.path] : [];
  if (s.kind === "link") return [s.path];
  if (s.kind === "attrs" && s.want) return [s.path]; // a Store whose content was already there
  return [];
}

/**
 * The row of `p` after the batch: the one it expected (`e`, null for none)
 * where the disk (`st`) shows exactly that entry. Where the batch `placed`
 * content, what was wanted there before is not any more (if `wants`: some
 * content is wanted at all).
 */
function putRow(
  vol: Volume,
  st: Stat | null,
  p: string,
  e: Entry | null,
  out: Outcome,
  placed: boolean,
  wants: boolean,
): void {
  const { state } = vol;
  if (wants && e && e.type !== "f") state.unwant(p); // the holder has no file there any more
  if (e && st && (same(st, e) || (st.type === "d" && e.type === "d"))) {
    // A directory's row keeps the holder's mode: a different one here is a local change.
    const perm = st.type === "d" ? e.perm : st.perm;
    state.putEntry(p, { ...entryOf(st, e.digest, e.target), perm });
    // Wanted content is there now, or older than what the batch put there. (After a
    // Setattr or a rename the wanted content may be newer than the file: it stays wanted.)
    if (wants && (placed || (e.digest && state.wantedAt(p)?.digest === e.digest))) {
      state.unwant(p);
    }
  } else if (!e) {
    if (!out.keptDirs.has(p)) state.deleteEntry(p);
    if (wants) state.unwant(p);
  } else if (!same(st, state.getEntry(p) ?? null)) {
    state.deleteEntry(p); // a local change is there (or nothing): no row, it is not ours
  } // else the step failed and the old version is whole: its row still holds
}

/** Brings the index up to `records` as if they had all been applied (own records a crash left unindexed). */
export function indexRecords(vol: Volume, records: KmlRecord[]): void {
  const t = Beneath.open(vol.root);
  try {
    for (const r of records) {
      if (r.op === Op.Rename) vol.state.renameEntries(r.path, r.target);
      if (r.op === Op.Unlink || r.op === Op.Rmdir) vol.state.deleteEntry(r.path);
      if (r.op === Op.Permit || r.op === Op.Unlink || r.op === Op.Rmdir) continue;
      const p = r.op === Op.Rename ? r.target : r.path;
      const row = diskRow(vol, t, p, r);
      if (row === null) vol.state.deleteEntry(p);
      else if (row) vol.state.putEntry(p, row);
    }
  } finally {
    t.close();
  }
}

/** The index row for `p` as it is on disk after record `r`; null if gone, undefined to leave as is. */
function diskRow(vol: Volume, t: Beneath, p: string, r: KmlRecord): Entry | null | undefined {
  const st = t.stat(p);
  if (!st) return null;
  if (st.type === "other") return undefined;
  let digest = "";
  if (st.type === "f") {
    const names = r.op === Op.Store || r.op === Op.Rename;
    if (names && st.size === r.size && mtimeNsOf(st) === r.mtimeNs) digest = r.digest;
    else if (r.op === Op.Setattr) digest = vol.state.getEntry(p)?.digest ?? "";
    if (!digest) return undefined;
  }
  return entryOf(st, digest, st.type === "l" ? t.readlink(p) : "");
}

/** Few files: fsync each. Many: one syncfs(2) beats thousands of fsyncs. */
const FSYNC_AT_MOST = 64;

/** Makes `files` and the entries of `dirs` durable. */
function flush(root: string, files: string[], dirs: string[]): void {
  if (files.length + dirs.length > FSYNC_AT_MOST) return syncFilesystem(root);
  fsyncFiles(files);
  for (const d of dirs) {
    try {
      fsyncDir(d);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // removed by a later step
    }
  }
}

/**
 * Real directories whose entries the steps changed: the parent of every path
 * touched, and each directory made on the way there with its own parent.
 * Recovering, what the interrupted run made is not known: every ancestor.
 */
function changedDirs(
  vol: Volume,
  t: Beneath,
  steps: Step[],
  kept: string[],
  recovering: boolean,
): string[] {
  const rel = new Set<string>();
  const paths = [...kept, ...steps.flatMap((s) => s.kind === "move" ? [s.path, s.to] : [s.path])];
  for (const p of paths) {
    for (let d = parentOf(p);; d = parentOf(d)) {
      rel.add(d);
      if (d === "" || !recovering) break;
    }
  }
  for (const d of t.takeMade()) rel.add(d);
  const dirs = t.within(() => [...rel].filter((d) => d === "" || t.stat(d)?.type === "d"));
  return [vol.layout.meta, ...dirs.map((d) => d ? `${vol.root}/${d}` : vol.root)];
}

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of parts) {
    all.set(b, at);
    at += b.length;
  }
  return all;
}

/** Creates `path` afresh with `data`, never through a symlink left there. */
function writeNew(path: string, data: Uint8Array): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  Deno.writeFileSync(path, data, { createNew: true, mode: 0o600 });
}

/** Removes staged content and the records file of a batch (done, or never committed). */
function clearStaging(vol: Volume): void {
  for (const path of [vol.layout.staging, vol.layout.txnRecords]) {
    try {
      Deno.removeSync(path, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}
