/**
 * Pulling: read what a peer's KML has that this replica has not applied,
 * accept records in sequence from hosts that held the permit, and hand them
 * to the apply engine in bounded batches.
 *
 * @module
 */

import { decodeRecord, type KmlRecord, Op } from "../kml/record.ts";
import { KML_HEADER_BYTES } from "../kml/log.ts";
import { type ExpectEntry, newExpect } from "../expect/expect.ts";
import { FormatError, HostilePeerError } from "../errors.ts";
import type { Volume } from "../volume/volume.ts";
import type { PeerSource } from "./peer.ts";
import {
  applyBatch,
  checkRecord,
  type FetchCount,
  fetchWanted,
  finalContent,
  type Progress,
} from "../apply/mod.ts";

export type { Progress };

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
  /** Content not taken because it changed again on the peer (wanted: a later pull brings it). */
  deferred: string[];
  /** Records refused: written by a host that did not hold the permit in their epoch. */
  rejected: number;
  /** Records held back: their origin's earlier records have not been seen (a gap). */
  heldBack: number;
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
    heldBack: 0,
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
  const w = fetchWanted(vol, peer);
  result.fetched += w.fetched;
  result.fetchedBytes += w.fetchedBytes;
  result.conflicts.push(...w.kept);
  result.problems.push(...w.problems);
  return result;
}

/**
 * Applies `accepted` in batches, each one transaction that also moves this
 * peer's Expect entry (the last one to `exp`), never past a held-back record.
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
  const records = accepted.map((a) => a.record);
  const finals = finalContent(records);
  const count: FetchCount = {
    done: { files: 0, bytes: 0 },
    total: { files: 0, bytes: 0 },
    progress,
  };
  for (const i of finals.keys()) {
    if (records[i].op !== Op.Store) continue;
    count.total.files++;
    count.total.bytes += records[i].size;
  }
  const size = batchRecords();
  for (let start = 0; start < accepted.length; start += size) {
    const part = accepted.slice(start, start + size);
    const lastOne = part.at(-1)!;
    const upTo = start + size >= accepted.length || lastOne.end > exp.readOffset
      ? exp
      : { ...exp, readSeq: lastOne.seq, readOffset: lastOne.end };
    const batch = applyBatch(vol, peer, {
      records: part.map((a) => a.record),
      frames: part.map((a) => a.bytes),
      finals: shifted(finals, start, part.length),
      expect: [...others, upTo],
    }, count);
    result.applied += batch.applied;
    result.conflicts.push(...batch.kept);
    result.deferred.push(...batch.deferred);
    result.problems.push(...batch.problems);
  }
  result.fetched += count.done.files;
  result.fetchedBytes += count.done.bytes;
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

/**
 * Reads the peer's new records, advancing `exp`, keeping those to apply:
 * from a host that held the permit in their epoch, and next in their
 * origin's sequence. A relayed record further ahead (a gap) is held back and
 * `exp` stops before it, so it is read again by later pulls; no sequence
 * number a relay sends can mark records this replica has not seen as applied
 * (rule 10).
 */
function readNew(vol: Volume, peer: PeerSource, exp: ExpectEntry, result: PullResult): Accepted[] {
  const applied = vol.state.origins();
  let permit = vol.permit();
  const holders = new Map<number, string>();
  const out: Accepted[] = [];
  let stop: { seq: number; offset: number } | undefined;
  const gaps = new Map<string, number>();
  for (const f of peer.frames(exp.readOffset)) {
    let r: KmlRecord;
    try {
      r = decodeRecord(f.bytes);
    } catch (e) {
      throw new HostilePeerError(
        `peer ${peer.hostName} sent a bad record at ${f.offset}: ${(e as FormatError).message}`,
      );
    }
    const at = { seq: exp.readSeq, offset: exp.readOffset };
    exp.readOffset = f.offset + f.bytes.length;
    exp.readSeq++;
    const last = applied.get(r.originHost) ?? 0;
    if (r.originHost === vol.hostId || r.originSeq <= last) continue;
    checkRecord(r, `peer ${peer.hostName}`);
    if (r.op === Op.Permit) {
      if (r.epoch <= permit.epoch || (permit.epoch > 0 && r.originHost !== permit.holder)) {
        result.rejected++;
        continue;
      }
    } else if ((holders.get(r.epoch) ?? vol.holderOf(r.epoch)) !== r.originHost) {
      result.rejected++;
      continue;
    }
    // The origin itself may skip numbers (a log cut by fsck --repair); relays may not.
    if (r.originSeq !== last + 1 && r.originHost !== peer.hostId) {
      result.heldBack++;
      stop ??= at;
      if (!gaps.has(r.originHost)) gaps.set(r.originHost, last);
      continue;
    }
    if (r.op === Op.Permit) {
      permit = { epoch: r.epoch, holder: r.target };
      holders.set(r.epoch, r.target);
    }
    applied.set(r.originHost, r.originSeq);
    out.push({ record: r, bytes: new Uint8Array(f.bytes), seq: exp.readSeq, end: exp.readOffset });
  }
  if (stop) [exp.readSeq, exp.readOffset] = [stop.seq, stop.offset];
  for (const [host, last] of gaps) {
    result.problems.push(
      `peer ${peer.hostName}: records of host ${host} after its record ${last} are missing from ` +
        `its log; later ones are held back (check that peer's log with 'replicator fsck' there)`,
    );
  }
  return out;
}
