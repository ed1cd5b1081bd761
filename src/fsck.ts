/**
 * Consistency check of a replica's metadata, and repair of what can be
 * repaired without losing file content: a torn or damaged KML is cut, a
 * damaged Expect reset, a damaged interrupted batch (`txn`) discarded, and a
 * lost or damaged `state.db` rebuilt from the KML and the tree.
 *
 * @module
 */

import { findRoot, refuseIncomplete } from "./volume/volume.ts";
import { openReplica } from "./apply/open.ts";
import { loadTxn } from "./apply/txn.ts";
import { checkLayout, type Layout, layoutOf } from "./volume/layout.ts";
import { acquireLock } from "./volume/lock.ts";
import { randomId, readConfig } from "./volume/config.ts";
import { State } from "./volume/state.ts";
import { rebuildIndex } from "./volume/rebuild.ts";
import { encodeHeader, KML_HEADER_BYTES, KmlLog } from "./kml/log.ts";
import { decodeRecord } from "./kml/record.ts";
import { decodeExpect, encodeExpect, newExpect } from "./expect/expect.ts";
import { fsyncDir, writeFileAtomic } from "./fs/durable.ts";
import { checkMeta, readRegular } from "./fs/nofollow.ts";
import { CorruptLogError, FormatError, MetadataError } from "./errors.ts";

/** One problem fsck found. */
export interface FsckProblem {
  file: string;
  /** Byte offset in the file, where it applies. */
  offset?: number;
  message: string;
  /** What --repair does (or did) about it. */
  fix?: string;
  repaired?: boolean;
}

/** Checks the replica containing `dir`; with `repair`, fixes what it can. */
export function fsck(dir: string, repair = false): FsckProblem[] {
  const root = findRoot(dir);
  const layout = layoutOf(root);
  const problems: FsckProblem[] = [];
  let relogged = false; // the log was cut or the Expect reset: peers must re-read
  checkMeta(layout.meta, "directory");
  let release = acquireLock(layout.lock, root);
  try {
    checkLayout(layout);
    refuseIncomplete(layout);
    checkTxn(layout, repair, problems);
    relogged = checkKmlThere(layout, repair, problems);
    checkState(layout, repair, problems);
  } finally {
    release();
  }
  // Opening with damaged metadata left in place would fail or act on it: report first.
  if (problems.some((p) => !p.repaired)) return problems;
  finishInterrupted(root);
  release = acquireLock(layout.lock, root);
  try {
    const config = readConfig(layout.config);
    relogged = checkKml(layout.kml, config.volumeId, repair, problems) || relogged;
    relogged = checkExpect(layout.expect, repair, problems) || relogged;
  } finally {
    release();
  }
  if (relogged) afterRepair(root);
  return problems;
}

/**
 * A missing or damaged state.db: with `repair`, rebuilt under a temporary
 * name and renamed into place, so a killed repair leaves it missing (and
 * refused), never half-built. The derived state is replayed from the KML by
 * the next open.
 */
function checkState(l: Layout, repair: boolean, problems: FsckProblem[]): void {
  let why: string | undefined;
  if (!checkMeta(l.state)) why = "missing";
  else {
    try {
      const st = new State(l.state);
      try {
        const damage = st.damage();
        if (damage.length > 0) why = `damaged: ${damage.slice(0, 3).join("; ")}`;
      } finally {
        st.close();
      }
    } catch (e) {
      why = `damaged (${(e as Error).message.split(";")[0]})`;
    }
  }
  if (!why) return;
  const problem: FsckProblem = {
    file: l.state,
    message: `the state database is ${why}`,
    fix: "rebuilt it from the KML and the tree",
  };
  problems.push(problem);
  if (!repair) return;
  const fresh = `${l.state}.new`;
  for (const suffix of ["", "-wal", "-shm", "-journal"]) removeIfThere(fresh + suffix);
  let kml: KmlLog | null = null;
  try {
    kml = KmlLog.open(l.kml);
  } catch (e) {
    if (!(e instanceof CorruptLogError)) throw e; // cut below; the next scan sees the tree
  }
  try {
    const state = new State(fresh);
    try {
      const r = rebuildIndex(l.root, kml, state);
      problem.fix += ` (${r.adopted} entries matched their records; ${r.left} are left to the ` +
        `next scan)`;
    } finally {
      state.close();
    }
  } finally {
    kml?.close();
  }
  for (const suffix of ["-wal", "-shm", "-journal"]) removeIfThere(l.state + suffix);
  Deno.renameSync(fresh, l.state);
  fsyncDir(l.meta);
  problem.repaired = true;
}

/**
 * A missing KML: with `repair`, a new, empty log (new incarnation) is
 * started, and an interrupted batch (whose offsets referred to the lost log)
 * is discarded. Returns true if repaired.
 */
function checkKmlThere(l: Layout, repair: boolean, problems: FsckProblem[]): boolean {
  if (checkMeta(l.kml)) return false;
  problems.push({
    file: l.kml,
    message: "the KML is missing",
    fix: "started a new, empty log (a new incarnation); peers send what they hold again",
  });
  if (!repair) return false;
  for (const path of [l.txn, l.txnRecords, l.staging]) removeIfThere(path);
  cutLog(l.kml, KML_HEADER_BYTES, readConfig(l.config).volumeId, problems);
  return true;
}

/** A damaged interrupted batch: with `repair`, discarded (it is fetched again). */
function checkTxn(l: Layout, repair: boolean, problems: FsckProblem[]): void {
  const why = txnDamage(l);
  if (!why) return;
  const problem: FsckProblem = {
    file: why.file,
    message: why.message,
    fix: "discarded the interrupted batch (txn, txn.records, staging); the Expect was not " +
      "advanced, so the next sync fetches it again, and files already in place are adopted",
  };
  problems.push(problem);
  if (!repair) return;
  // The commit point goes first: without txn, what remains is an uncommitted batch.
  for (const path of [l.txn, l.txnRecords, l.staging]) removeIfThere(path);
  fsyncDir(l.meta);
  problem.repaired = true;
}

/** Why `txn`/`txn.records` cannot be recovered, or null if there is none or it is sound. */
function txnDamage(l: Layout): { file: string; message: string } | null {
  try {
    loadTxn(l);
    return null;
  } catch (e) {
    if (!(e instanceof MetadataError)) throw e;
    return { file: e.file, message: e.message };
  }
}

function checkExpect(path: string, repair: boolean, problems: FsckProblem[]): boolean {
  try {
    decodeExpect(readRegular(path));
    return false;
  } catch (e) {
    if (!(e instanceof FormatError || e instanceof Deno.errors.NotFound)) throw e;
    problems.push({
      file: path,
      message: `the Expect file is damaged (${(e as Error).message})`,
      fix: "reset it: every peer's log is read again from the start (nothing applies twice)",
    });
  }
  if (!repair) return false;
  writeFileAtomic(path, encodeExpect([]));
  problems.at(-1)!.repaired = true;
  return true;
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true }); // never follows a symlink
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * After a cut log or a lost Expect: re-read every peer from the start (records
 * still held here are skipped by origin sequence) and, on the permit holder,
 * record the whole tree again so that changes whose records were cut are
 * published anew. A replica without the permit keeps its index, so that what
 * arrives is not mistaken for local changes.
 */
function afterRepair(root: string): void {
  const vol = openReplica(root); // rebuilds the derived state from the remaining log
  try {
    vol.writeExpect(vol.readExpect().map((e) => ({ ...newExpect(e.host) })));
    if (vol.holdsPermit()) vol.state.clearIndex();
  } finally {
    vol.close();
  }
}

/** Opening a volume finishes or undoes an interrupted batch; a corrupt log is checked below. */
function finishInterrupted(root: string): void {
  try {
    openReplica(root).close();
  } catch (e) {
    if (!(e instanceof CorruptLogError)) throw e;
  }
}

/** Checks the KML; returns true if it was cut (peers must re-read). */
function checkKml(
  path: string,
  volumeId: string,
  repair: boolean,
  problems: FsckProblem[],
): boolean {
  let log: KmlLog;
  try {
    log = KmlLog.open(path);
  } catch (e) {
    if (!(e instanceof CorruptLogError)) throw e;
    problems.push({ file: path, offset: e.offset, message: e.message, fix: CUT });
    if (repair) cutLog(path, e.offset, volumeId, problems);
    return repair;
  }
  try {
    if (log.header.volumeId !== volumeId) {
      throw new FormatError(`${path} belongs to another volume`);
    }
    let bad: FsckProblem | undefined;
    try {
      for (const f of log.frames()) {
        try {
          decodeRecord(f.bytes);
        } catch (e) {
          bad = { file: path, offset: f.offset, message: (e as Error).message, fix: CUT };
          break;
        }
      }
    } catch (e) {
      if (!(e instanceof CorruptLogError)) throw e;
      bad = { file: path, offset: e.offset, message: e.message, fix: CUT };
    }
    if (!bad) return false;
    problems.push(bad);
    if (repair) cutLog(path, bad.offset!, volumeId, problems);
    return repair;
  } finally {
    log.close();
  }
}

const CUT = "cut the log there (under a new incarnation); peers send what was lost again";

/**
 * Keeps the records before `offset` under a new incarnation: peers then
 * re-read this log from the start, and records they already hold are skipped.
 */
function cutLog(path: string, offset: number, volumeId: string, problems: FsckProblem[]): void {
  const keep = offset > KML_HEADER_BYTES
    ? readRegular(path).subarray(KML_HEADER_BYTES, offset)
    : new Uint8Array(0);
  const out = new Uint8Array(KML_HEADER_BYTES + keep.length);
  out.set(encodeHeader({ volumeId, incarnation: randomId() }));
  out.set(keep, KML_HEADER_BYTES);
  writeFileAtomic(path, out);
  problems.at(-1)!.repaired = true;
}
