/**
 * Recording local changes (rule 4: only the permit holder publishes). On the
 * holder, a scan (of the whole tree, or of the paths events named) becomes
 * this host's records. A replica without the permit records nothing and is
 * not scanned here: `status` lists its unpublished changes, and a pull checks
 * every path it touches for local changes before overwriting anything.
 *
 * @module
 */

import type { Volume } from "../volume/volume.ts";
import { bytesToHash, diffTree, mergeWithIndex, scan, scanNew, type ScanResult } from "./scan.ts";
import { loadHashing, loadHashingFor } from "../fs/hash.ts";
import { collectGarbage } from "../memory.ts";
import { scanScope } from "./scope.ts";

/** What capture did. */
export interface CaptureResult {
  /** How changes were found: a scan, the running lento, or not at all (no permit). */
  via: "scan" | "lento" | "none";
  /** Records appended to the KML. */
  recorded: number;
  problems: string[];
}

/** Records what changed in `vol` (only in `scope`, if given: volume-relative paths). */
export function capture(vol: Volume, scope?: Iterable<string>): CaptureResult {
  if (!vol.holdsPermit()) return { via: "none", recorded: 0, problems: [] };
  if (!scope && vol.state.indexIsEmpty()) return captureNew(vol);
  const found = scope
    ? scanScope(vol.root, {
      get: (p) => vol.state.getEntry(p),
      under: (d) => vol.state.entriesUnder(d),
      withInode: (ino) => vol.state.withInode(ino),
    }, scope)
    : scan(vol.root, vol.state);
  return record(vol, found);
}

/** Records what a scan found. */
function record(vol: Volume, found: ScanResult): CaptureResult {
  if (found.changes.length > 0 || found.updates.size > 0) {
    vol.recordLocal(found.changes, found.updates);
  }
  return { via: "scan", recorded: found.changes.length, problems: found.problems };
}

/**
 * A full capture as `capture` makes it, for an asynchronous caller: node:crypto
 * is loaded between the walk and the hashing if there is much to hash (a
 * no-op sync hashes nothing and need not pay its loading). With `journaled`
 * (the volume's lento has recorded every change) nothing is scanned.
 */
export async function captureFully(vol: Volume, journaled = false): Promise<CaptureResult> {
  if (journaled) return { via: "lento", recorded: 0, problems: [] };
  if (!vol.holdsPermit()) return { via: "none", recorded: 0, problems: [] };
  if (vol.state.indexIsEmpty()) {
    await loadHashing();
    return captureNew(vol);
  }
  const merged = mergeWithIndex(vol.root, vol.state);
  await loadHashingFor(bytesToHash(merged));
  return record(
    vol,
    diffTree(vol.root, merged.old, merged.tree, (ino) => vol.state.withInode(ino)),
  );
}

/** A first capture (an empty index): recorded in chunks, each committed before the next. */
function captureNew(vol: Volume): CaptureResult {
  const out: CaptureResult = { via: "scan", recorded: 0, problems: [] };
  for (const found of scanNew(vol.root, vol.state)) {
    const done = record(vol, found);
    out.recorded += done.recorded;
    out.problems.push(...done.problems);
    collectGarbage();
  }
  return out;
}
