/**
 * Scoped scans: re-examine only the paths that events named, so that capture
 * costs O(changes). A new directory (created, moved in, or replacing another
 * at the same path) is walked whole; a directory that is gone takes its
 * recorded subtree with it. The result goes
 * through the same diff as a full scan.
 *
 * @module
 */

import { lstatNs } from "../fs/stat.ts";
import { isWithin, parentOf } from "../fs/paths.ts";
import type { Entry } from "../volume/state.ts";
import { META_DIR } from "../volume/layout.ts";
import { walkDir, type WalkResult } from "./walk.ts";
import { diffTree, type ScanResult } from "./scan.ts";

/** The part of the index a scoped scan needs. */
export interface IndexView {
  get(path: string): Entry | undefined;
  /** Every row strictly below directory `dir`. */
  under(dir: string): Iterable<[string, Entry]>;
  /** Every row of a file with inode `ino` (other names of a hard-linked file). */
  withInode?(ino: number): Iterable<[string, Entry]>;
}

/** Scans only `paths` (volume-relative) of the volume at `root`. */
export function scanScope(root: string, index: IndexView, paths: Iterable<string>): ScanResult {
  const tree: WalkResult = { seen: new Map(), unreadable: [], problems: [] };
  const old = new Map<string, Entry>();
  const walked: string[] = [];
  for (const p of normalise(paths)) {
    if (walked.some((d) => isWithin(p, d))) continue;
    const before = index.get(p);
    if (before) old.set(p, before);
    const st = inTree(root, p) ? lstatNs(`${root}/${p}`) : null;
    if (st && st.type !== "other") {
      const target = st.type === "l" ? Deno.readLinkSync(`${root}/${p}`) : "";
      tree.seen.set(p, { ...st, target });
    }
    const isDir = st?.type === "d";
    if (isDir && (before?.type !== "d" || before.ino !== st!.ino)) { // new, or replaced
      walkDir(root, p, tree);
      walked.push(p);
    }
    if (before?.type === "d" && (!isDir || walked.includes(p))) {
      for (const [q, e] of index.under(p)) old.set(q, e);
    }
  }
  return diffTree(root, old, tree, index.withInode?.bind(index));
}

/**
 * Sorted, unique, without anything in the metadata directory, each with its
 * parent directory (an entry made or removed changes its parent's mtime).
 */
function normalise(paths: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const p of paths) {
    if (p === "" || p === META_DIR || p.startsWith(META_DIR + "/")) continue;
    out.add(p);
    const up = parentOf(p);
    if (up !== "") out.add(up);
  }
  return [...out].sort();
}

/** True if every parent of `p` is a real directory (a path under a symlink is not in the tree). */
function inTree(root: string, p: string): boolean {
  for (let d = parentOf(p); d !== ""; d = parentOf(d)) {
    if (lstatNs(`${root}/${d}`)?.type !== "d") return false;
  }
  return true;
}
