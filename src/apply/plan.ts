/**
 * Planning a pull: which content records are final within a batch (only the
 * last content of each file travels), and where a local change must be kept
 * as a conflict copy before the holder's version is installed.
 *
 * @module
 */

import { type KmlRecord, NO_DIGEST, Op } from "../kml/record.ts";
import { isWithin } from "../fs/paths.ts";
import { lstatNs, sameMtime, type Stat } from "../fs/stat.ts";
import { hashFile } from "../fs/hash.ts";
import type { Volume } from "../volume/volume.ts";
import type { StepPlan } from "./steps.ts";

/**
 * One step per record, in order. Decides which content records are final
 * (not overwritten, moved away or deleted later in the batch: those travel
 * once) and where a local change must be kept as a conflict copy.
 */
export function planSteps(
  vol: Volume,
  records: KmlRecord[],
  finals: Map<number, string>,
): StepPlan[] {
  const touched = new Set<string>();
  const renames: [string, string][] = [];
  const steps: StepPlan[] = [];
  const stamp = utcStamp();
  records.forEach((r, i) => {
    const step: StepPlan = { i };
    const at = r.op === Op.Rename ? r.target : r.path;
    if ([Op.Store, Op.Symlink].includes(r.op) && finals.has(i)) step.staged = stagedName(i);
    if (r.op === Op.Rename && finals.has(i) && !touched.has(r.path)) {
      // Fetch the file only if the old path is not here to be moved (its content was deferred).
      if (!lstatNs(`${vol.root}/${originalPath(r.path, renames)}`)) step.staged = stagedName(i);
    }
    if (r.op !== Op.Permit && r.op !== Op.Rmdir && !touched.has(at)) {
      // What is on disk now at the path the record will reach (earlier renames in the batch undone).
      const before = originalPath(at, renames);
      const st = lstatNs(`${vol.root}/${before}`);
      if (st && step.staged && r.op === Op.Store && before === at && holds(vol, at, st, r)) {
        delete step.staged; // the file is already here: adopt it, nothing to fetch
        step.adopt = true;
      } else if (st && (locallyChanged(vol, before, st) || inTheWay(r, st))) {
        if (r.op === Op.Setattr) return; // keep the local version; its own change will follow
        if (!(r.op === Op.Mkdir && st.type === "d")) {
          step.conflict = conflictName(vol, at, stamp);
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
    // An rmdir may find local files and leave the directory: what comes next still checks it.
    if (r.op !== Op.Rmdir) touched.add(at);
    steps.push(step);
  });
  return steps;
}

/**
 * Where record `i`'s content is staged, below the staging directory: spread
 * over 64 subdirectories, as creating thousands of files in one directory is
 * measurably slower on ext4.
 */
export function stagedName(i: number): string {
  return `${i % 64}/${i}`;
}

/** Record index -> final path, for content records that survive the batch. */
export function finalContent(records: KmlRecord[]): Map<number, string> {
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
        // A file rename names its content: it provides it if nothing earlier in the batch does.
        if (r.digest !== NO_DIGEST && !current.has(r.target)) current.set(r.target, i);
        break;
    }
  });
  return new Map([...current].map(([p, i]) => [i, p]));
}

/**
 * True if the file `st` at `p` already has the content `r` names: its index row
 * says so and the disk agrees, or (a replica seeded by other means, a file not
 * yet recorded here) it has the same size and hashes the same.
 */
function holds(vol: Volume, p: string, st: Stat, r: KmlRecord): boolean {
  if (st.type !== "f" || st.size !== r.size) return false;
  const e = vol.state.getEntry(p);
  if (e && !locallyChanged(vol, p, st)) return e.digest === r.digest;
  try {
    return hashFile(`${vol.root}/${p}`, st.size) === r.digest;
  } catch {
    return false; // unreadable: let the normal path decide
  }
}

/** A directory where the record puts a file or link: kept aside if anything is still in it. */
function inTheWay(r: KmlRecord, st: Stat): boolean {
  return st.type === "d" && (r.op === Op.Store || r.op === Op.Symlink);
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
export function locallyChanged(vol: Volume, p: string, st: Stat): boolean {
  const e = vol.state.getEntry(p);
  if (!e) return true;
  if (e.type !== st.type || e.perm !== st.perm || e.ino !== st.ino) return true;
  if (st.type === "f") return e.size !== st.size || !sameMtime(e, st);
  if (st.type === "l") return e.target !== Deno.readLinkSync(`${vol.root}/${p}`);
  return false;
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
