/**
 * Consistency check of a replica's metadata, and repair of what can be
 * repaired without losing file content.
 *
 * @module
 */

import { findRoot } from "./volume/volume.ts";
import { openReplica } from "./apply/open.ts";
import { layoutOf } from "./volume/layout.ts";
import { acquireLock } from "./volume/lock.ts";
import { randomId, readConfig } from "./volume/config.ts";
import { encodeHeader, KML_HEADER_BYTES, KmlLog } from "./kml/log.ts";
import { decodeRecord } from "./kml/record.ts";
import { decodeExpect, encodeExpect, newExpect } from "./expect/expect.ts";
import { writeFileAtomic } from "./fs/durable.ts";
import { CorruptLogError, FormatError } from "./errors.ts";

/** One problem fsck found. */
export interface FsckProblem {
  file: string;
  /** Byte offset in the file, where it applies. */
  offset?: number;
  message: string;
  repaired?: boolean;
}

/** Checks the replica containing `dir`; with `repair`, fixes what it can. */
export function fsck(dir: string, repair = false): FsckProblem[] {
  const root = findRoot(dir);
  const layout = layoutOf(root);
  const problems: FsckProblem[] = [];
  finishInterrupted(root);
  const release = acquireLock(layout.lock, root);
  try {
    const config = readConfig(layout.config);
    checkKml(layout.kml, config.volumeId, repair, problems);
    try {
      decodeExpect(Deno.readFileSync(layout.expect));
    } catch (e) {
      problems.push({ file: layout.expect, message: (e as Error).message });
      if (repair) {
        writeFileAtomic(layout.expect, encodeExpect([]));
        problems.at(-1)!.repaired = true;
      }
    }
  } finally {
    release();
  }
  if (repair && problems.some((p) => p.repaired)) afterRepair(root);
  return problems;
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

function checkKml(path: string, volumeId: string, repair: boolean, problems: FsckProblem[]): void {
  let log: KmlLog;
  try {
    log = KmlLog.open(path);
  } catch (e) {
    if (!(e instanceof CorruptLogError)) throw e;
    problems.push({ file: path, offset: e.offset, message: e.message });
    if (repair) cutLog(path, e.offset, volumeId, problems);
    return;
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
          bad = { file: path, offset: f.offset, message: (e as Error).message };
          break;
        }
      }
    } catch (e) {
      if (!(e instanceof CorruptLogError)) throw e;
      bad = { file: path, offset: e.offset, message: e.message };
    }
    if (bad) {
      problems.push(bad);
      if (repair) cutLog(path, bad.offset!, volumeId, problems);
    }
  } finally {
    log.close();
  }
}

/**
 * Keeps the records before `offset` under a new incarnation: peers then
 * re-read this log from the start, and records they already hold are skipped.
 */
function cutLog(path: string, offset: number, volumeId: string, problems: FsckProblem[]): void {
  const keep = Deno.readFileSync(path).subarray(KML_HEADER_BYTES, offset);
  const out = new Uint8Array(KML_HEADER_BYTES + keep.length);
  out.set(encodeHeader({ volumeId, incarnation: randomId() }));
  out.set(keep, KML_HEADER_BYTES);
  writeFileAtomic(path, out);
  problems.at(-1)!.repaired = true;
}
