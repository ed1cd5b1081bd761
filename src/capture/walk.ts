/**
 * A stat walk of the volume tree (never following symlinks, never entering
 * `.replicator/`). Paths are volume-relative, parents before children:
 * collected in a map (`walkDir`, for a scoped scan), or streamed in the
 * index's order (`walkInOrder`), holding one directory's entries per level.
 *
 * @module
 */

import { type Stat, statAt } from "../fs/stat.ts";
import { errno, errnoName, libc, O_DIRECTORY, O_RDONLY } from "../fs/libc.ts";
import { notConfined, openBeneath, openRoot } from "../fs/beneath.ts";
import { META_DIR } from "../volume/layout.ts";
import { type DirNames, dirNames } from "../fs/dir_names.ts";

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

/** Adds `rel` (a directory) and everything below it to `out`. */
export function walkDir(root: string, rel: string, out: WalkResult): void {
  const top = Tree.open(root, out);
  if (!top) return;
  try {
    walkDirIn(top, rel, out);
  } finally {
    top.close();
  }
}

function walkDirIn(top: Tree, rel: string, out: WalkResult): void {
  for (const [path, seen] of listDir(top, rel, out)) {
    out.seen.set(path, seen);
    if (seen.type === "d") walkDirIn(top, path, out);
  }
}

/** What a walk reports besides the entries. */
export type WalkProblems = Omit<WalkResult, "seen">;

/**
 * The entries below `rel` (a directory) in the order of their paths' UTF-8
 * bytes, which is the index's order (SQLite compares text as bytes): a
 * directory's own entry comes where its name sorts, its contents where
 * "name/" does ("a", "a.txt", "a/x", "a0"). Strings compare by UTF-16 code
 * units, so names beyond U+FFFF may come out of that order; a reader that
 * merges must then see a path as on one side only, not lose it.
 */
export function* walkInOrder(
  root: string,
  out: WalkProblems,
  rel = "",
): Generator<[string, Seen]> {
  const top = Tree.open(root, out);
  if (!top) return;
  try {
    yield* inOrder(top, out, rel);
  } finally {
    top.close();
  }
}

function* inOrder(top: Tree, out: WalkProblems, rel: string): Generator<[string, Seen]> {
  const items: [key: string, path: string, seen: Seen | null][] = [];
  for (const [path, seen] of listDir(top, rel, out)) {
    const name = rel ? path.slice(rel.length + 1) : path;
    items.push([name, path, seen]);
    if (seen.type === "d") items.push([name + "/", path, null]);
  }
  items.sort((x, y) => x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0);
  for (const [, path, seen] of items) {
    if (seen) yield [path, seen];
    else yield* inOrder(top, out, path);
  }
}

/**
 * The volume root open for one walk. Each directory below is opened from
 * it as Beneath opens (no symlink anywhere on the way, nothing outside), so
 * a directory swapped for a symlink at any level while the walk runs is not
 * listed through it. (The root itself may be reached through a symlink.)
 */
class Tree {
  private constructor(readonly root: string, readonly fd: number) {}

  /** The root, open; null (and a problem) if it cannot be opened. */
  static open(root: string, out: WalkProblems): Tree | null {
    try {
      return new Tree(root, openRoot(root));
    } catch (e) {
      out.unreadable.push("");
      out.problems.push(`cannot list .: ${listError(root) ?? (e as Error).message}`);
      return null;
    }
  }

  close(): void {
    libc().close(this.fd);
  }
}

/**
 * The entries directly in directory `rel`, name order, statted (none if it
 * cannot be listed; a name that is not UTF-8 is a problem, not an entry).
 * The directory is opened once (beneath the walk's root: see Tree), and
 * listed and statted through that descriptor, so the kernel looks up one
 * name per entry instead of its whole path.
 */
function listDir(top: Tree, rel: string, out: WalkProblems): [string, Seen][] {
  const { root } = top;
  const dir = rel ? `${root}/${rel}` : root;
  const fd = openBeneath(top.fd, rel, O_RDONLY | O_DIRECTORY);
  if (fd < 0) {
    const e = errno();
    const why = notConfined(e)
      ? "a path component is a symlink or not a directory"
      : listError(dir) ?? errnoName(e);
    out.unreadable.push(rel);
    out.problems.push(`cannot list ${rel || "."}: ${why}`);
    return [];
  }
  try {
    const via = `/proc/self/fd/${fd}`;
    let listed: DirNames;
    try {
      listed = dirNames(fd, dir);
    } catch (e) {
      out.unreadable.push(rel);
      out.problems.push(`cannot list ${rel || "."}: ${(e as Error).message}`);
      return [];
    }
    for (const name of listed.notUtf8) {
      const path = rel ? `${rel}/${name}` : name;
      out.problems.push(`skipping ${path}: its name is not UTF-8; rename it to replicate it`);
    }
    const names = listed.names.sort();
    const found: [string, Seen][] = [];
    for (const name of names) {
      if (rel === "" && name === META_DIR) continue;
      const path = rel ? `${rel}/${name}` : name;
      const st = statAt(fd, name, `${root}/${path}`);
      if (!st) continue; // vanished while walking
      if (st.type === "other") {
        out.problems.push(`skipping ${path}: not a regular file, directory or symlink`);
        continue;
      }
      const seen = st as Seen; // one object per entry: the walk is the hot path of a scan
      seen.target = st.type === "l" ? Deno.readLinkSync(`${via}/${name}`) : "";
      found.push([path, seen]);
    }
    return found;
  } finally {
    libc().close(fd);
  }
}

/** What listing `dir` by its path says is wrong (Deno's words), or null if it can be listed. */
function listError(dir: string): string | null {
  try {
    Deno.readDirSync(dir);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
