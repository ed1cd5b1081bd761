/**
 * Pulling: read what a peer's KML has that this replica has not applied,
 * decide what to do with each record, stage the content, and apply it all in
 * one transaction.
 *
 * @module
 */

import { decodeRecord, type KmlRecord, Op } from "../kml/record.ts";
import { KML_HEADER_BYTES } from "../kml/log.ts";
import { type ExpectEntry, newExpect } from "../expect/expect.ts";
import { checkRelativePath } from "../fs/paths.ts";
import { setMtimeNs } from "../fs/libc.ts";
import { FormatError, HostilePeerError } from "../errors.ts";
import type { Volume } from "../volume/volume.ts";
import type { PeerSource } from "./peer.ts";
import type { StepPlan } from "../apply/steps.ts";
import { runTxn } from "../apply/txn.ts";
import { finalContent, locallyChanged, planSteps } from "../apply/plan.ts";
import { Tree } from "../apply/steps.ts";
import { lstatNs, mtimeNsOf } from "../fs/stat.ts";
import { entryOf } from "../volume/state.ts";

/** What one pull did. */
export interface PullResult {
  /** Records read from the peer that were new here. */
  received: number;
  /** Steps that changed the tree. */
  applied: number;
  /** Files whose content was copied from the peer, and their bytes. */
  fetched: number;
  fetchedBytes: number;
  /** Conflict copies made (volume-relative paths). */
  conflicts: string[];
  /** Content not taken because it changed again on the peer (a later record will bring it). */
  deferred: string[];
  /** Records refused: written by a host that did not hold the permit in their epoch. */
  rejected: number;
  problems: string[];
}

interface Accepted {
  record: KmlRecord;
  bytes: Uint8Array;
  /** The read position just after this record. */
  seq: number;
  end: number;
}

/**
 * Records applied per transaction (REPLICATOR_BATCH_RECORDS, default 4096).
 * Bounds memory and the work a crash loses; which content travels is still
 * decided over everything new, so each file is fetched once.
 */
function batchRecords(): number {
  const n = Number(Deno.env.get("REPLICATOR_BATCH_RECORDS") ?? "4096");
  return Number.isInteger(n) && n > 0 ? n : 4096;
}

/** Reports fetching progress: files and bytes done of the batch's total. */
export type Progress = (
  done: { files: number; bytes: number },
  total: { files: number; bytes: number },
) => void;

/** Pulls everything new from `peer` into `vol`. */
export function pull(vol: Volume, peer: PeerSource, progress?: Progress): PullResult {
  const result: PullResult = {
    received: 0,
    applied: 0,
    fetched: 0,
    fetchedBytes: 0,
    conflicts: [],
    deferred: [],
    rejected: 0,
    problems: [],
  };
  const expects = vol.readExpect();
  const before = expects.find((e) => e.host === peer.hostId) ?? newExpect(peer.hostId);
  const exp: ExpectEntry = before.incarnation === peer.incarnation
    ? { ...before }
    : { ...before, incarnation: peer.incarnation, readSeq: 0, readOffset: KML_HEADER_BYTES };
  const accepted = readNew(vol, peer, exp, result);
  const confirmed = peer.readPosition(vol.hostId, vol.kml.header.incarnation);
  if (confirmed) [exp.confirmedSeq, exp.confirmedOffset] = [confirmed.seq, confirmed.offset];
  const others = expects.filter((e) => e.host !== peer.hostId);
  result.received = accepted.length;
  if (accepted.length > 0) applyAll(vol, peer, accepted, exp, others, result, progress);
  else if (JSON.stringify(exp) !== JSON.stringify(before)) vol.writeExpect([...others, exp]);
  retryWanted(vol, peer, result);
  return result;
}

/**
 * Applies `accepted` in batches, each one transaction that also moves this
 * peer's Expect entry (the last one to `exp`, past any records skipped after it).
 */
function applyAll(
  vol: Volume,
  peer: PeerSource,
  accepted: Accepted[],
  exp: ExpectEntry,
  others: ExpectEntry[],
  result: PullResult,
  progress?: Progress,
): void {
  const finals = finalContent(accepted.map((a) => a.record));
  const total = { files: 0, bytes: 0 };
  for (const i of finals.keys()) {
    if (accepted[i].record.op !== Op.Store) continue;
    total.files++;
    total.bytes += accepted[i].record.size;
  }
  const size = batchRecords();
  for (let start = 0; start < accepted.length; start += size) {
    const part = accepted.slice(start, start + size);
    const last = start + size >= accepted.length;
    const upTo = last ? exp : { ...exp, readSeq: part.at(-1)!.seq, readOffset: part.at(-1)!.end };
    const batchFinals = shifted(finals, start, part.length);
    applyBatch(vol, peer, part, batchFinals, [...others, upTo], result, total, progress);
  }
}

/**
 * Installs content that earlier records named but that could not be installed
 * (a failed step, say a directory that was not writable), if the peer still has
 * exactly that content and nothing local would be overwritten.
 */
function retryWanted(vol: Volume, peer: PeerSource, result: PullResult): void {
  const wanted = vol.state.wanted();
  if (wanted.length === 0) return;
  const tree = new Tree(vol.root);
  const tmp = `${vol.layout.staging}/wanted`;
  Deno.mkdirSync(vol.layout.staging, { recursive: true });
  for (const w of wanted) {
    const st = lstatNs(tree.abs(w.path));
    if (st && locallyChanged(vol, w.path, st)) continue; // never over a local change
    try {
      if (peer.fetchFile(w.path, tmp, w.perm) !== w.digest) continue; // changed again: a record will come
      setMtimeNs(tmp, mtimeNsOf(w));
      tree.parents(w.path);
      Deno.renameSync(tmp, tree.abs(w.path));
      const now = lstatNs(tree.abs(w.path))!;
      vol.state.transaction(() => {
        vol.state.putEntry(w.path, entryOf(now, w.digest, ""));
        vol.state.unwant(w.path);
      });
      result.fetched++;
      result.fetchedBytes += w.size;
    } catch (e) {
      if (e instanceof HostilePeerError) throw e;
      if (!(e instanceof Deno.errors.NotFound)) {
        result.problems.push(`${w.path}: still not applied: ${(e as Error).message}`);
      }
    } finally {
      try {
        Deno.removeSync(tmp);
      } catch { /* installed, or never fetched */ }
    }
  }
}

/** Plans, stages and applies one batch of records as one transaction. */
function applyBatch(
  vol: Volume,
  peer: PeerSource,
  part: Accepted[],
  finals: Map<number, string>,
  expect: ExpectEntry[],
  result: PullResult,
  total: { files: number; bytes: number },
  progress?: Progress,
): void {
  const records = part.map((a) => a.record);
  const steps = planSteps(vol, records, finals);
  stageContent(vol, peer, records, steps, finals, result, total, progress);
  const all = new Uint8Array(part.reduce((n, a) => n + a.bytes.length, 0));
  let at = 0;
  for (const a of part) {
    all.set(a.bytes, at);
    at += a.bytes.length;
  }
  const txn = runTxn(
    vol,
    {
      version: 1,
      kmlSize: vol.kml.size,
      recordBytes: all.length,
      steps,
      expect,
    },
    records,
    all,
  );
  result.applied += txn.applied;
  result.conflicts.push(...txn.kept);
  result.problems.push(...txn.problems);
}

/** The entries of `finals` for indices start..start+n, renumbered from 0. */
function shifted(finals: Map<number, string>, start: number, n: number): Map<number, string> {
  const out = new Map<number, string>();
  for (let i = 0; i < n; i++) {
    const p = finals.get(start + i);
    if (p !== undefined) out.set(i, p);
  }
  return out;
}

/** Reads the peer's new records, advancing `exp`, keeping those to apply. */
function readNew(vol: Volume, peer: PeerSource, exp: ExpectEntry, result: PullResult): Accepted[] {
  const applied = vol.state.origins();
  let permit = vol.permit();
  const holders = new Map<number, string>();
  const out: Accepted[] = [];
  for (const f of peer.frames(exp.readOffset)) {
    let r: KmlRecord;
    try {
      r = decodeRecord(f.bytes);
    } catch (e) {
      throw new HostilePeerError(
        `peer ${peer.hostName} sent a bad record at ${f.offset}: ${(e as FormatError).message}`,
      );
    }
    exp.readOffset = f.offset + f.bytes.length;
    exp.readSeq++;
    if (r.originHost === vol.hostId || r.originSeq <= (applied.get(r.originHost) ?? 0)) continue;
    checkRecordPaths(r, peer.hostName);
    if (r.op === Op.Permit) {
      if (r.epoch <= permit.epoch || (permit.epoch > 0 && r.originHost !== permit.holder)) {
        result.rejected++;
        continue;
      }
      permit = { epoch: r.epoch, holder: r.target };
      holders.set(r.epoch, r.target);
    } else if ((holders.get(r.epoch) ?? vol.holderOf(r.epoch)) !== r.originHost) {
      result.rejected++;
      continue;
    }
    applied.set(r.originHost, r.originSeq);
    out.push({ record: r, bytes: new Uint8Array(f.bytes), seq: exp.readSeq, end: exp.readOffset });
  }
  return out;
}

function checkRecordPaths(r: KmlRecord, peer: string): void {
  try {
    if (r.op === Op.Permit) {
      if (!/^[0-9a-f]{32}$/.test(r.target)) throw new HostilePeerError("bad permit holder");
      return;
    }
    checkRelativePath(r.path);
    if (r.op === Op.Rename) checkRelativePath(r.target);
    if (r.op === Op.Symlink && (r.target === "" || r.target.includes("\0"))) {
      throw new HostilePeerError("bad symlink target");
    }
  } catch (e) {
    throw new HostilePeerError(`peer ${peer}: ${(e as Error).message}; nothing was applied`);
  }
}

/** Stages content for every final Store/Symlink; defers what changed on the peer. */
function stageContent(
  vol: Volume,
  peer: PeerSource,
  records: KmlRecord[],
  steps: StepPlan[],
  finals: Map<number, string>,
  result: PullResult,
  total: { files: number; bytes: number },
  progress?: Progress,
): void {
  const buckets = new Set<string>();
  for (const step of steps) {
    if (!step.staged) continue;
    const r = records[step.i];
    const dest = `${vol.layout.staging}/${step.staged}`;
    const bucket = dest.slice(0, dest.lastIndexOf("/"));
    if (!buckets.has(bucket)) Deno.mkdirSync(bucket, { recursive: true }), buckets.add(bucket);
    if (r.op === Op.Symlink) {
      Deno.symlinkSync(r.target, dest);
      setMtimeNs(dest, r.mtimeNs);
      continue;
    }
    const from = finals.get(step.i)!;
    let digest = "";
    try {
      digest = peer.fetchFile(from, dest, r.mode & 0o7777);
    } catch (e) {
      if (e instanceof HostilePeerError) throw e;
      if (!(e instanceof Deno.errors.NotFound)) {
        result.problems.push(
          `${from}: cannot fetch from ${peer.hostName}: ${(e as Error).message}`,
        );
      }
    }
    if (digest !== r.digest) {
      try {
        Deno.removeSync(dest);
      } catch { /* never created */ }
      delete step.staged;
      result.deferred.push(from);
      continue;
    }
    setMtimeNs(dest, r.mtimeNs);
    result.fetched++;
    result.fetchedBytes += r.size;
    progress?.({ files: result.fetched, bytes: result.fetchedBytes }, total);
  }
}
