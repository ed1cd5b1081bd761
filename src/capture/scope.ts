/**
 * Scoped scans: re-examine only the paths that events named, so that capture
 * costs O(changes). A new directory (created, moved in, or replacing another
 * at the same path) is walked whole; a directory that is gone takes its
 * recorded subtree with it. The result goes
 * through the same diff as a full scan.
 *
 * @module
 */

import { statBeneath, withRoot } from "../fs/beneath.ts";
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
  return withRoot(root, (rootFd) => scanScopeIn(root, rootFd, index, paths));
}

function scanScopeIn(
  root: string,
  rootFd: number,
  index: IndexView,
  paths: Iterable<string>,
): ScanResult {
  const tree: WalkResult = { seen: new Map(), unreadable: [], problems: [] };
  const old = new Map<string, Entry>();
  const walked: string[] = [];
  for (const p of normalise(paths)) {
    if (walked.some((d) => isWithin(p, d))) continue;
    const before = index.get(p);
    if (before) old.set(p, before);
    // Under a symlink or a file (not a real directory all the way): not in the tree.
    const st = statBeneath(rootFd, p, `${root}/${p}`);
    if (st && st.type !== "other") tree.seen.set(p, st);
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
