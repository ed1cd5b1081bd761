/**
 * Scan capture: compares the tree on disk with the index of the last recorded
 * state and describes the difference as KML changes. Only files whose size,
 * mtime or inode moved are hashed; a path that reappears under a new name
 * with the same inode becomes one rename (a directory's contents move with it).
 * A full scan streams the walk and the index side by side in path order and
 * keeps only what differs, so an unchanged tree costs little memory however
 * large it is.
 *
 * @module
 */

import type { Change } from "../kml/record.ts";
import { NO_DIGEST, Op } from "../kml/record.ts";
import { type Entry, entryOf } from "../volume/state.ts";
import { hashFile } from "../fs/hash.ts";
import { statBeneath, withRoot } from "../fs/beneath.ts";
import { mtimeNsOf, sameMtime, typeBits } from "../fs/stat.ts";
import { isWithin, parentOf } from "../fs/paths.ts";
import { groupName, userName } from "../fs/owners.ts";
import { type Seen, walkInOrder, type WalkProblems, type WalkResult } from "./walk.ts";

export type { Change } from "../kml/record.ts";

/** What a scan found. */
export interface ScanResult {
  changes: Change[];
  /** Index rows to write (null: delete the row) if the changes are recorded. */
  updates: Map<string, Entry | null>;
  problems: string[];
}

/** The index as a full scan reads it. */
export interface OrderedIndex {
  /** Every row, in the order of the paths' UTF-8 bytes. */
  ordered(): Iterable<[string, Entry]>;
  /** Every row of a file with inode `ino` (the names of a hard-linked file). */
  withInode(ino: number): Iterable<[string, Entry]>;
}

/** A map of index rows as an OrderedIndex (tests, and small indexes). */
export function mapIndex(rows: Map<string, Entry>): OrderedIndex {
  const byInode = indexByInode(rows);
  return {
    ordered: () => [...rows].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0),
    withInode: byInode,
  };
}

/**
 * Scans the whole volume at `root` against `index` (which it does not
 * modify). The walk and the index are merged in path order; a path both
 * have, unchanged, is dropped there, and diffTree sees only the rest. A path
 * the two orders disagree on is simply seen on both sides. `visit` is told
 * every path walked.
 */
export function scan(
  root: string,
  index: OrderedIndex,
  visit?: (path: string) => void,
): ScanResult {
  const m = mergeWithIndex(root, index, visit);
  return diffTree(root, m.old, m.tree, (ino) => index.withInode(ino));
}

/** What differs between the tree and the index: the part of them a diff must see. */
export interface Merged {
  old: Map<string, Entry>;
  tree: WalkResult;
}

/** A full scan's first half: the walk merged with the index (see scan). */
export function mergeWithIndex(
  root: string,
  index: OrderedIndex,
  visit?: (path: string) => void,
): Merged {
  const tree: WalkResult = { seen: new Map(), unreadable: [], problems: [] };
  const old = new Map<string, Entry>();
  const rows = index.ordered()[Symbol.iterator]();
  let row = rows.next();
  for (const [p, s] of walkInOrder(root, tree)) {
    visit?.(p);
    for (; !row.done && row.value[0] < p; row = rows.next()) old.set(row.value[0], row.value[1]);
    if (!row.done && row.value[0] === p) {
      const before = row.value[1];
      row = rows.next();
      if (unchanged(before, s)) continue;
      old.set(p, before);
    }
    tree.seen.set(p, s);
  }
  for (; !row.done; row = rows.next()) old.set(row.value[0], row.value[1]);
  return { old, tree };
}

/** About how many bytes a diff of `m` will hash: the files new, or moved in size, mtime or inode. */
export function bytesToHash(m: Merged): number {
  let bytes = 0;
  for (const [p, s] of m.tree.seen) {
    if (s.type === "f" && needsHash(s, m.old.get(p), false)) bytes += s.size;
  }
  return bytes;
}

/**
 * The scan of a volume whose index is empty (`init`): every entry is new, so
 * none can be a rename or a removal, and the changes come `chunk` entries at
 * a time in walk order (parents first). The caller records each before
 * asking for the next, so a later name of a hard-linked file finds its first
 * name in the index. Memory holds one chunk, not the tree; the walk's
 * problems come with the last chunk.
 */
export function* scanNew(
  root: string,
  index: OrderedIndex,
  chunk = 5_000,
): Generator<ScanResult> {
  const walked: WalkProblems = { unreadable: [], problems: [] };
  const diff = (seen: Map<string, Seen>, problems: string[]) =>
    diffTree(root, new Map(), { seen, unreadable: [], problems }, (ino) => index.withInode(ino));
  let seen = new Map<string, Seen>();
  for (const [p, s] of walkInOrder(root, walked)) {
    seen.set(p, s);
    if (seen.size < chunk) continue;
    yield diff(seen, []);
    seen = new Map();
  }
  yield diff(seen, walked.problems);
}

/**
 * Compares what was walked (`tree`) with `old`, the index rows covering the
 * same part of the volume (consumed). Full scans and the scoped scans of
 * lento share it, so both capture paths produce the same records.
 */
export function diffTree(
  root: string,
  old: Map<string, Entry>,
  tree: WalkResult,
  sameInode: (ino: number) => Iterable<[string, Entry]> = indexByInode(old),
): ScanResult {
  return withRoot(root, (rootFd) => diffFrom(root, rootFd, old, tree, sameInode));
}

function diffFrom(
  root: string,
  rootFd: number,
  old: Map<string, Entry>,
  tree: WalkResult,
  sameInode: (ino: number) => Iterable<[string, Entry]>,
): ScanResult {
  const { seen, unreadable, problems } = tree;
  const links = new HardLinks(rootFd, root, sameInode, seen);
  const changes: Change[] = [];
  const updates = new Map<string, Entry | null>();
  const renames = detectRenames(rootFd, root, old, seen, updates);
  const movedBy = new Map<string, number>(); // index path -> the rename that brought it there
  renames.forEach((r, k) => r.moved.forEach((q) => movedBy.set(q, k)));
  const hidden = (p: string) =>
    unreadable.some((d) => d !== "" && isWithin(p, d)) || unreadable.includes("");
  const gone = new Set([...old.keys()].filter((p) => {
    const s = seen.get(p);
    return (!s || s.type !== old.get(p)!.type) && !hidden(p);
  }));
  const order = new Emitter(seen, renames, changes);

  /**
   * Removes what is recorded at or below `p` (everything: "") and is gone,
   * deepest first; what a rename brings there goes only once that rename is emitted.
   */
  const remove = (p: string) => {
    const here = (q: string) => !movedBy.has(q) || order.emitted(movedBy.get(q)!);
    const below = [...gone].filter((q) => p === "" || (isWithin(q, p) && here(q)))
      .sort().reverse();
    for (const q of below) {
      order.beforeChangeAt(q, old.get(q)!.type === "d");
      changes.push(change(old.get(q)!.type === "d" ? Op.Rmdir : Op.Unlink, q));
      updates.set(q, null);
      old.delete(q);
      gone.delete(q);
    }
  };

  order.replaced = (p: string) => gone.has(p);
  order.visit = (p: string) => {
    const s = seen.get(p)!;
    if (gone.has(p)) remove(p); // replaced by an entry of another type
    const before = old.get(p);
    const first = s.type === "f" && s.nlink > 1 ? links.first(s.ino, p) : p;
    if (before && unchanged(before, s)) return; // the common case: nothing to hash or write
    if (first !== p) return linkTo(p, s, before, first);
    const entry = toEntry(s, before);
    if (s.type === "f" && needsHash(s, before, movedBy.has(p))) {
      try {
        const digest = hashFile(rootFd, p, `${root}/${p}`, s.size);
        if (digest === null) return; // written to since the walk: the next scan records it
        entry.digest = digest;
      } catch (e) {
        // Gone between the walk and the read (editors' and build tools' temporary files),
        // or a parent replaced by a file: as if never seen. The next scan records what is
        // there then.
        if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return;
        problems.push(`cannot read ${p}: ${(e as Error).message}; it was not recorded`);
        return;
      }
    }
    const c = diffEntry(p, s, entry, before);
    if (c) changes.push(c);
    if (c?.op === Op.Store) links.changed(p);
    if (c || !before || !sameEntry(before, entry)) updates.set(p, entry);
  };

  /**
   * `p` is another name of the file first seen at `first`: a Link record if it
   * is new here or the file's content changed (the receiver installs the new
   * content under one name and links the others to it); attribute changes go
   * with the first name's record.
   */
  const linkTo = (p: string, s: Seen, before: Entry | undefined, first: string) => {
    const prim = updates.get(first) ?? old.get(first) ?? links.row(first);
    if (!prim || prim.type !== "f" || !prim.digest) return; // not recorded (yet): nothing to link to
    const entry = { ...toEntry(s, before), digest: prim.digest };
    if (!before || before.ino !== s.ino || links.hasChanged(first)) {
      changes.push({
        ...change(Op.Link, p),
        target: first,
        mode: typeBits("f") | s.perm,
        size: s.size,
        mtimeNs: mtimeNsOf(s),
        digest: prim.digest,
        ...ownerOf(s),
      });
    }
    updates.set(p, entry);
  };
  for (const p of seen.keys()) order.handle(p);
  order.flush();
  remove("");
  return { changes, updates, problems };
}

/** Index rows by inode, built once when a scan first meets a hard-linked file. */
function indexByInode(old: Map<string, Entry>): (ino: number) => Iterable<[string, Entry]> {
  let byIno: Map<number, [string, Entry][]> | undefined;
  return (ino) => {
    if (!byIno) {
      byIno = new Map();
      for (const [p, e] of old) {
        if (e.type !== "f") continue;
        if (!byIno.has(e.ino)) byIno.set(e.ino, []);
        byIno.get(e.ino)!.push([p, e]);
      }
    }
    return byIno.get(ino) ?? [];
  };
}

/**
 * The names of hard-linked files (more than one link) met by a scan: the
 * first one met of each inode (or, for a scoped scan, one the index knows
 * that is still that inode on disk) is the one the others link to.
 */
class HardLinks {
  private readonly firsts = new Map<number, string>();
  private readonly rows = new Map<string, Entry>();
  private readonly stored = new Set<string>();

  constructor(
    private readonly rootFd: number,
    private readonly root: string,
    private readonly sameInode: (ino: number) => Iterable<[string, Entry]>,
    private readonly seen: Map<string, Seen>,
  ) {}

  /** The name `p`'s file (inode `ino`) is recorded under first. */
  first(ino: number, p: string): string {
    const known = this.firsts.get(ino);
    if (known !== undefined) return known;
    for (const [q, e] of this.sameInode(ino)) {
      // Names this scan meets itself are taken in the order it meets them.
      if (this.seen.has(q)) continue;
      if (statBeneath(this.rootFd, q, `${this.root}/${q}`)?.ino !== ino) continue;
      this.rows.set(q, e);
      this.firsts.set(ino, q);
      return q;
    }
    this.firsts.set(ino, p);
    return p;
  }

  /** The index row of a first name met only in the index. */
  row(p: string): Entry | undefined {
    return this.rows.get(p);
  }

  /** The file's content under its first name `p` was recorded anew by this scan. */
  changed(p: string): void {
    this.stored.add(p);
  }

  hasChanged(p: string): boolean {
    return this.stored.has(p);
  }
}

/** A detected rename and the index paths (after it) it moved. */
interface Rename {
  from: string;
  to: string;
  change: Change;
  moved: string[];
}

/**
 * Orders a scan's changes so that each can be applied in turn: a directory
 * is made before anything goes into it, a rename comes once its target's
 * parents exist and before anything is made or removed where its source was,
 * and renames keep their detection order (later ones may name paths the
 * earlier ones moved).
 */
class Emitter {
  private readonly done = new Set<string>();
  private readonly targets = new Map<string, number>();
  /** Source path -> the last rename from it (a path can be a source again after a rename to it). */
  private readonly sources = new Map<string, number>();
  private next = 0;
  /** Records the entry at `p` (set by diffTree). */
  visit: (p: string) => void = () => {};
  /** True if what is recorded at `p` is replaced by an entry of another type (set by diffTree). */
  replaced: (p: string) => boolean = () => false;

  constructor(
    private readonly seen: Map<string, Seen>,
    private readonly renames: Rename[],
    private readonly changes: Change[],
  ) {
    renames.forEach((r, k) => {
      this.targets.set(r.to, k);
      this.sources.set(r.from, k);
    });
  }

  /** Handles `p` (after its parents), once. */
  handle(p: string): void {
    if (this.done.has(p)) return;
    this.done.add(p);
    const up = parentOf(p);
    if (up !== "" && this.seen.has(up)) this.handle(up);
    this.beforeChangeAt(p, this.replaced(p));
    const k = this.targets.get(p);
    if (k !== undefined) this.emitThrough(k);
    this.visit(p); // a moved entry too: it may differ in attributes
  }

  /** Emits pending renames whose source is at or below `p` (something is made or removed there). */
  beforeChangeAt(p: string, subtree = false): void {
    if (!subtree) {
      const k = this.sources.get(p);
      if (k !== undefined && k >= this.next) this.emitThrough(k);
      return;
    }
    for (let k = this.renames.length - 1; k >= this.next; k--) {
      if (isWithin(this.renames[k].from, p)) return this.emitThrough(k);
    }
  }

  /** Emits every pending rename up to number `k`, in detection order. */
  emitThrough(k: number): void {
    while (this.next <= k) {
      const r = this.renames[this.next++];
      const parents: string[] = [];
      for (let q = parentOf(r.to); q !== ""; q = parentOf(q)) parents.unshift(q);
      for (const d of parents) if (this.seen.has(d)) this.handle(d);
      this.changes.push(r.change);
    }
  }

  /** True if rename number `k` has been emitted. */
  emitted(k: number): boolean {
    return k < this.next;
  }

  /** Emits what is still pending. */
  flush(): void {
    this.emitThrough(this.renames.length - 1);
  }
}

/**
 * Pairs paths that vanished with new paths of the same inode and type (and,
 * for a file, the same content: inodes are reused), in path order so a
 * directory is paired before anything inside it; rewrites `old` as if each
 * rename had already been applied.
 */
function detectRenames(
  rootFd: number,
  root: string,
  old: Map<string, Entry>,
  seen: Map<string, Seen>,
  updates: Map<string, Entry | null>,
): Rename[] {
  const gone = new Map<number, string>();
  for (const [p, e] of old) if (!seen.has(p)) gone.set(e.ino, p);
  const renames: Rename[] = [];
  if (gone.size === 0) return renames;
  for (const [p, s] of seen) {
    if (old.has(p)) continue;
    const from = gone.get(s.ino);
    if (from === undefined || !old.has(from) || old.get(from)!.type !== s.type) continue;
    if (isWithin(p, from)) continue; // a directory cannot move inside itself
    if (s.type === "f" && !sameContent(rootFd, root, p, old.get(from)!)) continue; // a reused inode
    gone.delete(s.ino);
    const r: Rename = { from, to: p, change: renameChange(from, p, old.get(from)!), moved: [] };
    const moving = [...old.keys()].filter((q) => isWithin(q, from));
    for (const q of moving) {
      const e = old.get(q)!;
      const to = p + q.slice(from.length);
      old.delete(q);
      old.set(to, e);
      updates.set(q, null);
      updates.set(to, e);
      r.moved.push(to);
    }
    renames.push(r);
  }
  return renames;
}

/** True if the file at `p` still has the content `e` recorded (a renamed file, not a new one). */
function sameContent(rootFd: number, root: string, p: string, e: Entry): boolean {
  try {
    return hashFile(rootFd, p, `${root}/${p}`, e.size) === e.digest;
  } catch {
    return false;
  }
}

/**
 * A rename. A file's rename also carries the file's recorded mode, size,
 * mtime and SHA-256, so that a replica which never got the old path (its
 * content was deferred) can fetch the file at the new one, verified.
 */
function renameChange(from: string, to: string, e: Entry): Change {
  const c = { ...change(Op.Rename, from), target: to };
  if (e.type !== "f" || !e.digest) return c;
  const owner = e.uid >= 0 ? ownerOf(e) : {};
  return {
    ...c,
    mode: typeBits("f") | e.perm,
    size: e.size,
    mtimeNs: mtimeNsOf(e),
    digest: e.digest,
    ...owner,
  };
}

/** True if the index row still describes the entry exactly. */
function unchanged(e: Entry, s: Seen): boolean {
  if (e.type !== s.type || e.ino !== s.ino || e.perm !== s.perm || !sameMtime(e, s)) return false;
  if (e.uid !== s.uid || e.gid !== s.gid) return false;
  if (s.type === "d") return true;
  return e.size === (s.type === "f" ? s.size : 0) && e.target === s.target;
}

function needsHash(s: Seen, before: Entry | undefined, wasRenamed: boolean): boolean {
  if (!before || before.type !== "f") return true;
  return before.size !== s.size || !sameMtime(before, s) ||
    (before.ino !== s.ino && !wasRenamed);
}

function toEntry(s: Seen, before: Entry | undefined): Entry {
  const keep = before && before.type === "f" && s.type === "f";
  return entryOf(s, keep ? before.digest : "", s.target);
}

/** The change that turns `before` into what is on disk now, if any, with the entry's owner. */
function diffEntry(p: string, s: Seen, now: Entry, before: Entry | undefined): Change | null {
  const c = diffContent(p, s, now, before) ??
    (ownerMoved(s, before)
      ? { ...change(Op.Setattr, p), mode: typeBits(s.type) | s.perm, mtimeNs: mtimeNsOf(s) }
      : null);
  return c && { ...c, ...ownerOf(s) };
}

/** True if a known owner or group of `before` is not the one on disk (older rows know none). */
function ownerMoved(s: Seen, before: Entry | undefined): boolean {
  return !!before && before.type === s.type && before.uid >= 0 &&
    (before.uid !== s.uid || before.gid !== s.gid);
}

/** The owner fields of a record about `s`. */
function ownerOf(s: { uid: number; gid: number }): Pick<Change, "uid" | "gid" | "owner" | "group"> {
  return { uid: s.uid, gid: s.gid, owner: userName(s.uid), group: groupName(s.gid) };
}

/** The change of type, content or attributes (owner aside), if any. */
function diffContent(p: string, s: Seen, now: Entry, before: Entry | undefined): Change | null {
  const mode = typeBits(s.type) | s.perm;
  const fresh = !before || before.type !== s.type;
  if (s.type === "d") {
    const mtimeNs = mtimeNsOf(s);
    if (fresh) return { ...change(Op.Mkdir, p), mode, mtimeNs };
    // A row of an older index has no directory mtime (0): it is learnt without a record.
    const known = before.mtimeSec !== 0 || before.mtimeNsec !== 0;
    const moved = before.perm !== s.perm || (known && !sameMtime(before, s));
    return moved ? { ...change(Op.Setattr, p), mode, mtimeNs } : null;
  }
  if (s.type === "l") {
    if (fresh || before.target !== s.target) {
      return { ...change(Op.Symlink, p), mode, target: s.target, mtimeNs: mtimeNsOf(s) };
    }
    return sameMtime(before, s) ? null : { ...change(Op.Setattr, p), mode, mtimeNs: mtimeNsOf(s) };
  }
  if (fresh || before.digest !== now.digest) {
    return {
      ...change(Op.Store, p),
      mode,
      size: s.size,
      mtimeNs: mtimeNsOf(s),
      digest: now.digest,
    };
  }
  if (before.perm !== s.perm || !sameMtime(before, s)) {
    return { ...change(Op.Setattr, p), mode, mtimeNs: mtimeNsOf(s) };
  }
  return null;
}

function sameEntry(a: Entry, b: Entry): boolean {
  return a.type === b.type && a.ino === b.ino && a.perm === b.perm && a.size === b.size &&
    a.uid === b.uid && a.gid === b.gid &&
    sameMtime(a, b) && a.digest === b.digest && a.target === b.target;
}

function change(op: Op, path: string): Change {
  return {
    op,
    path,
    target: "",
    mode: 0,
    size: 0,
    mtimeNs: 0n,
    digest: NO_DIGEST,
    uid: -1,
    gid: -1,
    owner: "",
    group: "",
  };
}
