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
import { checkRelativePath, isWithin } from "../fs/paths.ts";
import { lstatNs, sameMtime, type Stat } from "../fs/stat.ts";
import { setMtimeNs } from "../fs/libc.ts";
import { FormatError, HostilePeerError } from "../errors.ts";
import type { Volume } from "../volume/volume.ts";
import type { PeerSource } from "./peer.ts";
import type { StepPlan } from "./apply.ts";
import { runTxn } from "./txn.ts";

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
  const newExpects = [...expects.filter((e) => e.host !== peer.hostId), exp];
  if (accepted.length === 0) {
    if (JSON.stringify(exp) !== JSON.stringify(before)) vol.writeExpect(newExpects);
    return result;
  }
  result.received = accepted.length;
  const records = accepted.map((a) => a.record);
  const finals = finalContent(records);
  const steps = planSteps(vol, records, finals, result);
  stageContent(vol, peer, records, steps, finals, result, progress);
  const all = new Uint8Array(accepted.reduce((n, a) => n + a.bytes.length, 0));
  let at = 0;
  for (const a of accepted) {
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
      expect: newExpects,
    },
    records,
    all,
  );
  result.applied = txn.applied;
  result.problems.push(...txn.problems);
  return result;
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
    out.push({ record: r, bytes: new Uint8Array(f.bytes) });
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

/**
 * One step per record, in order. Decides which content records are final
 * (not overwritten, moved away or deleted later in the batch: those travel
 * once) and where a local change must be kept as a conflict copy.
 */
function planSteps(
  vol: Volume,
  records: KmlRecord[],
  finals: Map<number, string>,
  result: PullResult,
): StepPlan[] {
  const touched = new Set<string>();
  const renames: [string, string][] = [];
  const steps: StepPlan[] = [];
  const stamp = utcStamp();
  records.forEach((r, i) => {
    const step: StepPlan = { i };
    const at = r.op === Op.Rename ? r.target : r.path;
    if ([Op.Store, Op.Symlink].includes(r.op) && finals.has(i)) step.staged = String(i);
    if (r.op !== Op.Permit && r.op !== Op.Rmdir && !touched.has(at)) {
      // What is on disk now at the path the record will reach (earlier renames in the batch undone).
      const before = originalPath(at, renames);
      const st = lstatNs(`${vol.root}/${before}`);
      if (st && locallyChanged(vol, before, st)) {
        if (r.op === Op.Setattr) return; // keep the local version; its own change will follow
        if (!(r.op === Op.Mkdir && st.type === "d")) {
          step.conflict = conflictName(vol, at, stamp);
          result.conflicts.push(step.conflict);
        }
      }
    }
    if (r.op === Op.Rename) {
      renames.push([r.path, r.target]);
      for (const p of [...touched]) {
        if (isWithin(p, r.path)) {
          touched.delete(p);
          touched.add(r.target + p.slice(r.path.length));
        }
      }
    }
    touched.add(at);
    steps.push(step);
  });
  return steps;
}

/** Record index -> final path, for content records that survive the batch. */
function finalContent(records: KmlRecord[]): Map<number, string> {
  const current = new Map<string, number>();
  records.forEach((r, i) => {
    switch (r.op) {
      case Op.Store:
      case Op.Symlink:
        current.set(r.path, i);
        break;
      case Op.Unlink:
      case Op.Rmdir:
      case Op.Mkdir:
        current.delete(r.path);
        break;
      case Op.Rename:
        for (const p of [...current.keys()]) if (isWithin(p, r.target)) current.delete(p);
        for (const [p, j] of [...current]) {
          if (!isWithin(p, r.path)) continue;
          current.delete(p);
          current.set(r.target + p.slice(r.path.length), j);
        }
        break;
    }
  });
  return new Map([...current].map(([p, i]) => [i, p]));
}

/** Where `p` (a path after the renames so far) was before the batch. */
function originalPath(p: string, renames: [string, string][]): string {
  for (let k = renames.length - 1; k >= 0; k--) {
    const [from, to] = renames[k];
    if (isWithin(p, to)) p = from + p.slice(to.length);
  }
  return p;
}

/** True if `st`, what is on disk at `p`, differs from what the index last recorded. */
function locallyChanged(vol: Volume, p: string, st: Stat): boolean {
  const e = vol.state.getEntry(p);
  if (!e) return true;
  if (e.type !== st.type || e.perm !== st.perm || e.ino !== st.ino) return true;
  if (st.type === "f") return e.size !== st.size || !sameMtime(e, st);
  if (st.type === "l") return e.target !== Deno.readLinkSync(`${vol.root}/${p}`);
  return false;
}

/** Stages content for every final Store/Symlink; defers what changed on the peer. */
function stageContent(
  vol: Volume,
  peer: PeerSource,
  records: KmlRecord[],
  steps: StepPlan[],
  finals: Map<number, string>,
  result: PullResult,
  progress?: Progress,
): void {
  Deno.mkdirSync(vol.layout.staging, { recursive: true });
  const total = { files: 0, bytes: 0 };
  for (const s of steps) {
    if (s.staged && records[s.i].op === Op.Store) {
      total.files++;
      total.bytes += records[s.i].size;
    }
  }
  for (const step of steps) {
    if (!step.staged) continue;
    const r = records[step.i];
    const dest = `${vol.layout.staging}/${step.staged}`;
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

function conflictName(vol: Volume, p: string, stamp: string): string {
  const base = `${p}.conflict-${vol.config.hostName}-${stamp}`;
  let name = base;
  for (let n = 2; lstatNs(`${vol.root}/${name}`); n++) name = `${base}-${n}`;
  return name;
}

function utcStamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}
