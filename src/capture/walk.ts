/**
 * A stat walk of the volume tree (never following symlinks, never entering
 * `.replicator/`). Paths are volume-relative, parents before children.
 *
 * @module
 */

import { lstatNs, type Stat } from "../fs/stat.ts";
import { META_DIR } from "../volume/layout.ts";

/** One entry seen on disk, with a symlink's target. */
export interface Seen extends Stat {
  target: string;
}

/** The tree as walked, plus what could not be read (never treated as deleted). */
export interface WalkResult {
  seen: Map<string, Seen>;
  /** Directories that could not be listed: their contents are unknown. */
  unreadable: string[];
  /** Human-readable problems (skipped special files, unreadable directories). */
  problems: string[];
}

/** Walks the tree under absolute `root`. */
export function walk(root: string): WalkResult {
  const out: WalkResult = { seen: new Map(), unreadable: [], problems: [] };
  walkDir(root, "", out);
  return out;
}

/** Adds `rel` (a directory) and everything below it to `out`. */
export function walkDir(root: string, rel: string, out: WalkResult): void {
  let names: string[];
  try {
    names = [...Deno.readDirSync(rel ? `${root}/${rel}` : root)].map((e) => e.name);
  } catch (e) {
    out.unreadable.push(rel);
    out.problems.push(`cannot list ${rel || "."}: ${(e as Error).message}`);
    return;
  }
  names.sort();
  for (const name of names) {
    if (rel === "" && name === META_DIR) continue;
    const path = rel ? `${rel}/${name}` : name;
    const st = lstatNs(`${root}/${path}`);
    if (!st) continue; // vanished while walking
    if (st.type === "other") {
      out.problems.push(`skipping ${path}: not a regular file, directory or symlink`);
      continue;
    }
    const seen = st as Seen; // one object per entry: the walk is the hot path of a scan
    seen.target = st.type === "l" ? Deno.readLinkSync(`${root}/${path}`) : "";
    out.seen.set(path, seen);
    if (st.type === "d") walkDir(root, path, out);
  }
}
