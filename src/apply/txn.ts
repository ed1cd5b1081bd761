/**
 * Transactions: a batch of remote records is applied as one unit (rule 2).
 *
 * 1. Content is staged in `.replicator/staging/`, the records to append are
 *    written to `.replicator/txn.records`, and both are flushed (syncfs).
 * 2. The transaction file `.replicator/txn` is written atomically: the commit point.
 * 3. Steps are applied to the tree, the records appended to the KML, the state
 *    and Expect updated, everything flushed, and the transaction file removed.
 *
 * On open, a transaction file means "redo" (every step is idempotent); staging
 * without one means "undo" (the staged files are dropped).
 *
 * @module
 */

import { decodeRecord, frameLength, type KmlRecord, NO_DIGEST, Op } from "../kml/record.ts";
import type { ExpectEntry } from "../expect/expect.ts";
import { fsyncDir, fsyncFile, syncFilesystem, writeFileAtomic } from "../fs/durable.ts";
import { lstatNs, mtimeNsOf } from "../fs/stat.ts";
import { isWithin, parentOf } from "../fs/paths.ts";
import type { Volume } from "../volume/volume.ts";
import { type Entry, entryOf, type Wanted } from "../volume/state.ts";
import { applyStep, type StepPlan, Tree } from "./steps.ts";
import { FormatError } from "../errors.ts";

/** Transaction file format version. */
export const TXN_VERSION = 1;

/** A committed batch, as stored in `.replicator/txn`. */
export interface Txn {
  version: number;
  /** KML size before the batch: redo cuts back to it and appends again. */
  kmlSize: number;
  /** Bytes of the records to append, stored beside it in `txn.records`. */
  recordBytes: number;
  steps: StepPlan[];
  /** The Expect entries after the batch. */
  expect: ExpectEntry[];
}

/** Outcome of applying a transaction. */
export interface TxnResult {
  applied: number;
  /** Conflict copies made (local versions moved aside). */
  kept: string[];
  /** Steps that could not be applied, with the reason. */
  problems: string[];
}

/** Commits and applies a planned batch of `records`, encoded as `frames` (concatenated). */
export function runTxn(vol: Volume, txn: Txn, records: KmlRecord[], frames: Uint8Array): TxnResult {
  Deno.writeFileSync(vol.layout.txnRecords, frames);
  // Staged content and records durable before the commit point.
  // (Staged symlinks have no data: their bucket directory's fsync covers them.)
  const staged = txn.steps.filter((s) => s.staged);
  const where = (s: StepPlan) => `${vol.layout.staging}/${s.staged}`;
  const files = staged.filter((s) => records[s.i].op !== Op.Symlink).map(where);
  const buckets = new Set(staged.map((s) => parentOf(where(s))));
  flush(vol.root, [...files, vol.layout.txnRecords], [
    ...buckets,
    vol.layout.staging,
    vol.layout.meta,
  ]);
  writeFileAtomic(vol.layout.txn, new TextEncoder().encode(JSON.stringify(txn)));
  return applyTxn(vol, txn);
}

/** Finishes a committed transaction, or drops staging left by an uncommitted one. */
export function recoverTxn(vol: Volume): void {
  let text: string | undefined;
  try {
    text = Deno.readTextFileSync(vol.layout.txn);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (text === undefined) {
    clearStaging(vol); // undo: nothing was committed
    return;
  }
  let txn: Txn;
  try {
    txn = JSON.parse(text);
  } catch {
    throw new FormatError(`${vol.layout.txn} is damaged; run 'replicator fsck --repair'`);
  }
  if (txn.version !== TXN_VERSION) throw new FormatError(`${vol.layout.txn}: unknown version`);
  applyTxn(vol, txn);
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

function applyTxn(vol: Volume, txn: Txn): TxnResult {
  const all = Deno.readFileSync(vol.layout.txnRecords);
  if (all.length !== txn.recordBytes) {
    throw new FormatError(`${vol.layout.txnRecords} is damaged; run 'replicator fsck --repair'`);
  }
  const frames = splitFrames(all);
  const records = frames.map(decodeRecord);
  const tree = new Tree(vol.root);
  const problems: string[] = [];
  let applied = 0;
  const kept: string[] = [];
  const failed = new Set<number>();
  for (const step of txn.steps) {
    const r = records[step.i];
    try {
      if (applyStep(tree, r, step, vol.layout.staging, kept)) applied++;
    } catch (e) {
      failed.add(step.i);
      problems.push(`${r.path}: ${(e as Error).message}; it will be retried by the next sync`);
    }
  }
  if (vol.kml.size !== txn.kmlSize) vol.kml.truncate(txn.kmlSize);
  vol.commitRecords(records, frames, () => updateIndex(vol, records, txn.steps, failed));
  vol.writeExpect(txn.expect);
  flush(vol.root, [], touchedDirs(vol, records, txn.steps));
  Deno.removeSync(vol.layout.txn);
  clearStaging(vol);
  fsyncDir(vol.layout.meta);
  return { applied, kept, problems };
}

/**
 * Brings the index up to what the batch changed, read back from disk: a file
 * row is only written when the disk matches the record that last stored it,
 * so a step that failed leaves the path looking changed (to be rescanned).
 * Runs inside the state transaction.
 */
function updateIndex(
  vol: Volume,
  records: KmlRecord[],
  steps: StepPlan[],
  failed: Set<number>,
): void {
  const wrote = new Map<string, number>(); // path -> last record that set content or attrs
  const stepped = new Set(steps.map((s) => s.i));
  records.forEach((r, i) => {
    if (!stepped.has(i)) return;
    switch (r.op) {
      case Op.Rename:
        vol.state.renameEntries(r.path, r.target);
        vol.state.renameWanted(r.path, r.target);
        for (const [p, w] of [...wrote]) {
          if (!isWithin(p, r.path)) continue;
          wrote.delete(p);
          wrote.set(r.target + p.slice(r.path.length), w);
        }
        if (r.digest !== NO_DIGEST) wrote.set(r.target, i); // a file: the record names its content
        break;
      case Op.Unlink:
      case Op.Rmdir:
        wrote.delete(r.path);
        vol.state.deleteEntry(r.path);
        vol.state.unwant(r.path);
        break;
      case Op.Permit:
        break;
      default:
        wrote.set(r.path, i);
    }
  });
  for (const [p, i] of wrote) {
    const r = records[i];
    const e = entryOnDisk(vol, p, r);
    if (e === null) vol.state.deleteEntry(p);
    else if (e) vol.state.putEntry(p, e);
    // Content whose installation failed: later pulls fetch it until it is there or a
    // later record replaces it. Any step that did reach the path settles it.
    if (failed.has(i) && (r.op === Op.Store || r.op === Op.Rename)) {
      vol.state.want(wantedOf(p, r));
    } else if (e?.digest) vol.state.unwant(p);
  }
}

function wantedOf(path: string, r: KmlRecord): Wanted {
  const sec = r.mtimeNs / 1_000_000_000n;
  return {
    path,
    digest: r.digest,
    size: r.size,
    perm: r.mode & 0o7777,
    mtimeSec: Number(sec),
    mtimeNsec: Number(r.mtimeNs - sec * 1_000_000_000n),
  };
}

/** The index row for `p` as it is on disk after record `r`; null if gone, undefined to leave as is. */
function entryOnDisk(vol: Volume, p: string, r: KmlRecord): Entry | null | undefined {
  const abs = `${vol.root}/${p}`;
  const st = lstatNs(abs);
  if (!st) return null;
  if (st.type === "other") return undefined;
  let digest = "";
  if (st.type === "f") {
    const names = r.op === Op.Store || r.op === Op.Rename;
    if (names && st.size === r.size && mtimeNsOf(st) === r.mtimeNs) digest = r.digest;
    else if (r.op === Op.Setattr) digest = vol.state.getEntry(p)?.digest ?? "";
    if (!digest) return undefined;
  }
  return entryOf(st, digest, st.type === "l" ? Deno.readLinkSync(abs) : "");
}

/** Few files: fsync each. Many: one syncfs(2) beats thousands of fsyncs. */
const FSYNC_AT_MOST = 64;

/** Makes `files` and the entries of `dirs` durable. */
function flush(root: string, files: string[], dirs: string[]): void {
  if (files.length + dirs.length > FSYNC_AT_MOST) return syncFilesystem(root);
  for (const f of files) fsyncFile(f);
  for (const d of dirs) {
    try {
      fsyncDir(d);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // removed by a later step
    }
  }
}

/** Directories whose entries the steps changed: every ancestor of every path touched (parents may have been created). */
function touchedDirs(vol: Volume, records: KmlRecord[], steps: StepPlan[]): string[] {
  const dirs = new Set<string>([vol.layout.meta]);
  for (const s of steps) {
    const r = records[s.i];
    for (const p of [r.path, r.op === Op.Rename ? r.target : "", s.conflict ?? ""]) {
      for (let d = p ? parentOf(p) : null; d !== null; d = d === "" ? null : parentOf(d)) {
        dirs.add(d ? `${vol.root}/${d}` : vol.root);
      }
    }
  }
  return [...dirs];
}

/** Brings the index up to `records` as if they had all been applied (see updateIndex). */
export function indexRecords(vol: Volume, records: KmlRecord[]): void {
  updateIndex(vol, records, records.map((_, i) => ({ i })), new Set());
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
