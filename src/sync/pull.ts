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
import type { Peer } from "./peer.ts";
import {
  applyBatch,
  type Batch,
  checkRecord,
  fetchWanted,
  finalContent,
  planFirst,
  type Progress,
} from "../apply/mod.ts";
import { type ContentCache, FetchCache, type Transfer, type Want } from "./prefetch.ts";
import { LocalCopy } from "./local_copy.ts";
import { collectGarbage } from "../memory.ts";
import { loadHashingFor } from "../fs/hash.ts";

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
  /**
   * Bytes of content that crossed from the peer in this pull, as they travelled:
   * a resumed transfer counts only the rest, deflated content its deflated size.
   */
  receivedBytes: number;
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
 * Bounds memory and the work a crash loses.
 */
function batchRecords(): number {
  return positiveEnv("REPLICATOR_BATCH_RECORDS", 4096);
}

/**
 * Bytes of the peer's log read and planned together (REPLICATOR_WINDOW_BYTES,
 * default 2 MiB, some 10,000 records): what a pull holds in memory whatever
 * the log's length (measured: a clone of 200,000 files peaked at 771 MB with
 * 8 MiB windows, 247 MB with 2 MiB and a collection between windows). Which
 * content travels is decided over a whole window, so a file stored and then
 * replaced or renamed within one is fetched once, at its final path.
 */
function windowBytes(): number {
  return positiveEnv("REPLICATOR_WINDOW_BYTES", 2 << 20);
}

function positiveEnv(name: string, fallback: number): number {
  const n = Number(Deno.env.get(name) ?? fallback);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

/**
 * Pulls everything new from `peer` into `vol`, one window of the peer's log
 * at a time: its records, then for each batch the content it needs (fetched
 * ahead into `.replicator/fetch/` over a session; from a local peer, copied
 * as it is staged), then the batch's transaction; last, content still wanted
 * from earlier pulls.
 */
export async function pull(vol: Volume, peer: Peer, progress?: Progress): Promise<PullResult> {
  const result: PullResult = {
    received: 0,
    applied: 0,
    fetched: 0,
    fetchedBytes: 0,
    receivedBytes: 0,
    conflicts: [],
    deferred: [],
    rejected: 0,
    heldBack: 0,
    problems: [],
  };
  const { who } = peer;
  const expects = vol.readExpect();
  const before = expects.find((e) => e.host === who.hostId) ?? newExpect(who.hostId);
  const exp: ExpectEntry = before.incarnation === who.incarnation
    ? { ...before }
    : { ...before, incarnation: who.incarnation, readSeq: 0, readOffset: KML_HEADER_BYTES };
  const confirmed = await peer.readPosition(vol.hostId, vol.kml.header.incarnation);
  if (confirmed) [exp.confirmedSeq, exp.confirmedOffset] = [confirmed.seq, confirmed.offset];
  const others = expects.filter((e) => e.host !== who.hostId);
  const cache: ContentCache = peer.openLocal
    ? new LocalCopy(vol.root, who.hostName, peer.openLocal)
    : new FetchCache(vol, peer);
  const xfer: Transfer = {
    done: { files: 0, bytes: 0 },
    total: { files: 0, bytes: 0 },
    progress,
  };
  const receivedBefore = peer.received();
  const reader = new RecordReader(vol, peer, exp, result);
  let written = before;
  for (let more = true; more;) {
    const window = await reader.window(windowBytes());
    more = window.more;
    result.received += window.accepted.length;
    if (window.accepted.length > 0) {
      written = await applyWindow(vol, cache, window.accepted, reader, others, result, xfer);
    }
    // The window's records are garbage now, applied or skipped (a peer's log of
    // records this replica already has, such as a clone's, is read to its end).
    collectGarbage();
  }
  reader.finish();
  if (JSON.stringify(exp) !== JSON.stringify(written)) vol.writeExpect([...others, exp]);
  const wanted = vol.state.wanted();
  if (wanted.length > 0) {
    await loadHashingFor(wanted.reduce((n, w) => n + w.size, 0));
    await cache.fill(wanted, xfer);
    const w = fetchWanted(vol, cache.source());
    result.conflicts.push(...w.kept);
    result.problems.push(...w.problems);
  }
  cache.clear();
  result.fetched = xfer.done.files;
  result.fetchedBytes = xfer.done.bytes;
  result.receivedBytes = peer.received() - receivedBefore;
  return result;
}

/**
 * Applies one window's `accepted` records in batches, each one transaction
 * that also moves this peer's Expect entry past its last record, never past
 * a held-back one. Returns the entry the last batch wrote.
 */
async function applyWindow(
  vol: Volume,
  cache: ContentCache,
  accepted: Accepted[],
  reader: RecordReader,
  others: ExpectEntry[],
  result: PullResult,
  xfer: Transfer,
): Promise<ExpectEntry> {
  const records = accepted.map((a) => a.record);
  const finals = finalContent(records);
  let bytes = 0;
  for (const i of finals.keys()) {
    if (records[i].op !== Op.Store) continue;
    xfer.total.files++;
    bytes += records[i].size;
  }
  xfer.total.bytes += bytes;
  await loadHashingFor(bytes);
  const size = batchRecords();
  let upTo = reader.positionAfter(accepted[0]);
  for (let start = 0; start < accepted.length; start += size) {
    const part = accepted.slice(start, start + size);
    upTo = reader.positionAfter(part.at(-1)!);
    const batch: Batch = {
      records: part.map((a) => a.record),
      frames: part.map((a) => a.bytes),
      finals: shifted(finals, start, part.length),
      expect: [...others, upTo],
    };
    const first = planFirst(vol, batch);
    await cache.fill(wantsOf(batch, first.needs), xfer);
    const done = applyBatch(vol, cache.source(), batch, first);
    result.applied += done.applied;
    result.conflicts.push(...done.kept);
    result.deferred.push(...done.deferred);
    result.problems.push(...done.problems);
  }
  return upTo;
}

/** The content staging will ask for: each fetch need, with its record's digest. */
function wantsOf(batch: Batch, needs: Map<number, { kind: string; from?: string }>): Want[] {
  const out: Want[] = [];
  for (const [i, need] of needs) {
    if (need.kind !== "fetch") continue;
    const r = batch.records[i];
    out.push({ path: need.from!, digest: r.digest, size: r.size });
  }
  return out;
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

/** One window's records to apply, and whether the peer's log may hold more. */
interface Window {
  accepted: Accepted[];
  more: boolean;
}

/**
 * Reads the peer's new records window by window, advancing `exp`, keeping
 * those to apply: from a host that held the permit in their epoch, and next
 * in their origin's sequence. A relayed record further ahead (a gap) is held
 * back and `exp` stops before it (`finish`), so it is read again by later
 * pulls; no sequence number a relay sends can mark records this replica has
 * not seen as applied (rule 10).
 */
class RecordReader {
  private readonly applied: Map<string, number>;
  private permit: { epoch: number; holder: string };
  private readonly holders = new Map<number, string>();
  /** Where `exp` must stop: before the first held-back record. */
  private stop: { seq: number; offset: number } | undefined;
  private readonly gaps = new Map<string, number>();

  constructor(
    private readonly vol: Volume,
    private readonly peer: Peer,
    private readonly exp: ExpectEntry,
    private readonly result: PullResult,
  ) {
    this.applied = vol.state.origins();
    this.permit = vol.permit();
  }

  /** The next records, about `limit` bytes of the peer's log (a hostile peer's extra is not read). */
  async window(limit: number): Promise<Window> {
    const { peer, exp } = this;
    const from = exp.readOffset;
    const out: Accepted[] = [];
    for await (const f of peer.records(from, limit)) {
      let r: KmlRecord;
      try {
        r = decodeRecord(f.bytes);
      } catch (e) {
        throw new HostilePeerError(
          `peer ${peer.who.hostName} sent a bad record at ${f.offset}: ${
            (e as FormatError).message
          }`,
        );
      }
      const at = { seq: exp.readSeq, offset: exp.readOffset };
      exp.readOffset = f.offset + f.bytes.length;
      exp.readSeq++;
      if (this.accept(r, at)) {
        out.push({
          record: r,
          bytes: new Uint8Array(f.bytes),
          seq: exp.readSeq,
          end: exp.readOffset,
        });
      }
      if (exp.readOffset - from >= limit) return { accepted: out, more: true };
    }
    return { accepted: out, more: false };
  }

  /** True if `r` (read at `at`) is to be applied; counts it as rejected or held back if not. */
  private accept(r: KmlRecord, at: { seq: number; offset: number }): boolean {
    const { vol, peer, result } = this;
    const last = this.applied.get(r.originHost) ?? 0;
    if (r.originHost === vol.hostId || r.originSeq <= last) return false;
    checkRecord(r, `peer ${peer.who.hostName}`);
    if (r.op === Op.Permit) {
      const { epoch, holder } = this.permit;
      if (r.epoch <= epoch || (epoch > 0 && r.originHost !== holder)) {
        result.rejected++;
        return false;
      }
    } else if ((this.holders.get(r.epoch) ?? vol.holderOf(r.epoch)) !== r.originHost) {
      result.rejected++;
      return false;
    }
    // The origin itself may skip numbers (a log cut by fsck --repair); relays may not.
    if (r.originSeq !== last + 1 && r.originHost !== peer.who.hostId) {
      result.heldBack++;
      this.stop ??= at;
      if (!this.gaps.has(r.originHost)) this.gaps.set(r.originHost, last);
      return false;
    }
    if (r.op === Op.Permit) {
      this.permit = { epoch: r.epoch, holder: r.target };
      this.holders.set(r.epoch, r.target);
    }
    this.applied.set(r.originHost, r.originSeq);
    return true;
  }

  /** The Expect entry once `a` is applied: just past it, or at the held-back record before it. */
  positionAfter(a: Accepted): ExpectEntry {
    const stop = this.stop;
    return stop && a.end > stop.offset
      ? { ...this.exp, readSeq: stop.seq, readOffset: stop.offset }
      : { ...this.exp, readSeq: a.seq, readOffset: a.end };
  }

  /** After the last window: `exp` goes back to the first held-back record, each gap reported. */
  finish(): void {
    if (this.stop) [this.exp.readSeq, this.exp.readOffset] = [this.stop.seq, this.stop.offset];
    for (const [host, last] of this.gaps) {
      this.result.problems.push(
        `peer ${this.peer.who.hostName}: records of host ${host} after its record ${last} are ` +
          `missing from its log; later ones are held back (check that peer's log with ` +
          `'replicator fsck' there)`,
      );
    }
  }
}
