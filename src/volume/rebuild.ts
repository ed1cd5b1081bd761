/**
 * Rebuilding the index of a replica whose state database was lost: replay the
 * KML to learn, for each path, the last record that set it, and adopt a path
 * into the index only where the disk still matches that record (same type;
 * files: same size and mtime; symlinks: same target), with the disk's inode.
 * Anything else stays out of the index, so the next scan sees it as a local
 * change: kept and published or listed, never lost.
 *
 * @module
 */

import { decodeRecord, type KmlRecord, Op } from "../kml/record.ts";
import { mtimeNsOf, splitNs, type Stat } from "../fs/stat.ts";
import { statBeneath, withRoot } from "../fs/beneath.ts";
import { isWithin } from "../fs/paths.ts";
import type { KmlLog } from "../kml/log.ts";
import { CorruptLogError, FormatError } from "../errors.ts";
import type { Entry, EntryType, State } from "./state.ts";

/** What the log says a path should be. */
interface Recorded {
  type: EntryType;
  perm: number;
  size: number;
  mtimeNs: bigint;
  digest: string;
  target: string;
}

/** Counts of a rebuild. */
export interface RebuildResult {
  /** Paths whose disk state matches their last record: in the index again. */
  adopted: number;
  /** Paths left out (changed, missing or of another type): the next scan looks at them. */
  left: number;
}

/**
 * Replaces the index in `state` with what the KML `kml` (null: unreadable)
 * and the tree at `root` agree on. The caller holds the volume lock.
 */
export function rebuildIndex(root: string, kml: KmlLog | null, state: State): RebuildResult {
  const want = new Map<string, Recorded>();
  try {
    for (const f of kml?.frames() ?? []) replay(want, decodeRecord(f.bytes));
  } catch (e) {
    // A damaged record (fsck cuts the log there): what follows it is left to the next
    // scan, which is safe; the index only ever holds what the disk still matches.
    if (!(e instanceof CorruptLogError || e instanceof FormatError)) throw e;
  }
  const out: RebuildResult = { adopted: 0, left: 0 };
  withRoot(root, (rootFd) =>
    state.transaction(() => {
      state.clearIndex();
      for (const [p, r] of want) {
        const e = adoptable(statBeneath(rootFd, p, `${root}/${p}`), r);
        if (e) {
          state.putEntry(p, e);
          out.adopted++;
        } else out.left++;
      }
    }));
  return out;
}

/** Applies one record to the map of what each path should be. */
function replay(want: Map<string, Recorded>, r: KmlRecord): void {
  const perm = r.mode & 0o7777;
  const none = { size: 0, mtimeNs: 0n, digest: "", target: "" };
  switch (r.op) {
    case Op.Store:
    case Op.Link: // another name of the file: its content, mode and mtime
      want.set(r.path, {
        ...none,
        type: "f",
        perm,
        size: r.size,
        mtimeNs: r.mtimeNs,
        digest: r.digest,
      });
      break;
    case Op.Symlink:
      want.set(r.path, { ...none, type: "l", perm, mtimeNs: r.mtimeNs, target: r.target });
      break;
    case Op.Mkdir:
      want.set(r.path, { ...none, type: "d", perm });
      break;
    case Op.Setattr: {
      const w = want.get(r.path);
      if (!w) break;
      w.perm = perm;
      if (w.type === "f" && r.mtimeNs !== 0n) w.mtimeNs = r.mtimeNs;
      break;
    }
    case Op.Rename: {
      const moving = [...want.entries()].filter(([p]) => isWithin(p, r.path));
      drop(want, r.target);
      for (const [p] of moving) want.delete(p);
      for (const [p, w] of moving) want.set(r.target + p.slice(r.path.length), w);
      break;
    }
    case Op.Unlink:
    case Op.Rmdir:
      drop(want, r.path);
      break;
    default: // the permit, and operations this build does not index
  }
}

function drop(want: Map<string, Recorded>, path: string): void {
  for (const p of [...want.keys()]) if (isWithin(p, path)) want.delete(p);
}

/**
 * The index row for what is on disk (`st`, found beneath the root, with a
 * symlink's target) if it matches `r`, else null.
 */
function adoptable(st: (Stat & { target: string }) | null, r: Recorded): Entry | null {
  if (!st || st.type !== r.type) return null;
  const row = (size: number, mtimeNs: bigint): Entry => ({
    type: r.type,
    ino: st.ino,
    perm: r.perm,
    size,
    ...splitNs(mtimeNs),
    digest: r.digest,
    target: r.target,
    uid: st.uid,
    gid: st.gid,
  });
  if (r.type === "d") return row(0, 0n);
  if (r.type === "l") {
    return st.target === r.target ? row(0, mtimeNsOf(st)) : null;
  }
  return st.size === r.size && mtimeNsOf(st) === r.mtimeNs ? row(r.size, r.mtimeNs) : null;
}
