/**
 * The steps of a transaction and how each one is carried out.
 *
 * Every step names what it expects to find (`pre`: the entry this replica
 * last recorded or applied there, as planned) and what it leaves (`post`).
 * Immediately before it replaces, removes or moves anything, it compares the
 * disk with those (compare-and-swap):
 *
 * - the disk already shows the step's effect, or the effect of a later step
 *   of the batch: the step is done (a recovery re-running the batch);
 * - the disk shows `pre`: the step is carried out;
 * - anything else is a local change: it is kept as a conflict copy, never
 *   overwritten, removed or moved (attribute changes are simply not applied).
 *
 * So a batch can be run again from its first step at any time, after a crash
 * or an error, without undoing what a later step did (rule 9), and a change
 * made while the sync fetched is never lost (rule 8). Every path goes through
 * Beneath: nothing is followed out of the volume (rule 6).
 *
 * @module
 */

import type { Entry, Wanted } from "../volume/state.ts";
import type { Beneath } from "../fs/beneath.ts";
import { mtimeNsOf, type Stat } from "../fs/stat.ts";
import { FsError, NotConfinedError } from "../errors.ts";
import { runAsRoot } from "../fs/owners.ts";

/** Where staged entries live, relative to the volume root. */
export const STAGING = ".replicator/staging";

/** Installs a staged file, symlink or directory (Store, Symlink, Mkdir). */
export interface PlaceStep {
  kind: "place";
  /** Index of the record in the batch. */
  i: number;
  path: string;
  /** Name below STAGING. */
  staged: string;
  pre: Entry | null;
  /** The staged entry (its inode is the one that will be at `path`). */
  post: Entry;
}

/** Removes a file, symlink or empty directory (Unlink, Rmdir). */
export interface RemoveStep {
  kind: "remove";
  i: number;
  path: string;
  pre: Entry | null;
}

/** Moves `path` to `to` (Rename); `staged` is the file's content if the source is not here. */
export interface MoveStep {
  kind: "move";
  i: number;
  path: string;
  to: string;
  pre: Entry | null;
  preTo: Entry | null;
  staged?: string;
  post?: Entry;
  /** Content to ask for at `to` if neither the source nor staged content is here. */
  want?: Wanted;
  /** A directory's files (at their new paths) to ask for if the directory is not here. */
  wantsBelow?: Wanted[];
}

/** Sets permission bits and (files, symlinks) mtime: Setattr, a Mkdir on a directory, an adopted Store. */
export interface AttrsStep {
  kind: "attrs";
  i: number;
  path: string;
  pre: Entry | null;
  post: Entry | null;
  /** Content to ask for if the file changed since it was found to hold it (adopted Store). */
  want?: Wanted;
  /** A Setattr: also the attributes of content still wanted at `path`. */
  wantAttrs?: { perm: number; mtimeSec: number; mtimeNsec: number };
}

/** Makes `path` another name of the file at `to` (Link). */
export interface LinkStep {
  kind: "link";
  i: number;
  path: string;
  /** The existing name. */
  to: string;
  pre: Entry | null;
  /** The file at `to` as planned (its inode is what `path` will be). */
  post: Entry;
}

export type Step = PlaceStep | RemoveStep | MoveStep | AttrsStep | LinkStep;

/** What running steps produced beyond the tree itself. */
export interface Outcome {
  /** Conflict copies made (volume-relative). */
  kept: string[];
  /** Content that could not be put in place; fetched again later. */
  wants: Wanted[];
  /** Move steps (by number) that took place, or had before a crash. */
  moved: Set<number>;
  /** Directories the holder removed that stay, holding files of this replica's own. */
  keptDirs: Set<string>;
  problems: string[];
}

/** An empty Outcome. */
export function newOutcome(): Outcome {
  return { kept: [], wants: [], moved: new Set(), keptDirs: new Set(), problems: [] };
}

/** What steps run against. */
export interface StepContext {
  t: Beneath;
  /** This host's name and the run's UTC stamp, for conflict copy names. */
  host: string;
  stamp: string;
  steps: Step[];
  out: Outcome;
  /** The content a link step asks for when it cannot link (from its record). */
  wantOf?: (s: LinkStep) => Wanted;
}

/**
 * True if `st` is exactly the entry `e` (both absent counts). Directories:
 * kind and inode (kind alone where the plan could not know the inode).
 */
export function same(st: Stat | null, e: Entry | null): boolean {
  if (!st || !e) return !st && !e;
  if (st.type === "d" && e.type === "d" && e.ino < 0) return true;
  if (st.type !== e.type || st.ino !== e.ino) return false;
  if (st.type !== "f") return true;
  return st.perm === e.perm && st.size === e.size && st.mtimeSec === e.mtimeSec &&
    st.mtimeNsec === e.mtimeNsec;
}

/** Runs step `k` of `ctx.steps`. */
export function runStep(ctx: StepContext, k: number): void {
  const s = ctx.steps[k];
  switch (s.kind) {
    case "place":
      return place(ctx, k, s);
    case "remove":
      return remove(ctx, k, s);
    case "move":
      return move(ctx, k, s);
    case "attrs":
      return attrs(ctx, s);
    case "link":
      return link(ctx, k, s);
  }
}

function link(ctx: StepContext, k: number, s: LinkStep): void {
  const { t } = ctx;
  const cur = t.stat(s.path);
  if (cur?.type === "f" && cur.ino === s.post.ino) return; // linked before a crash
  if (t.stat(s.to)?.ino !== s.post.ino) {
    // The file is not there under its other name (changed here, or gone): ask for the content.
    const r = ctx.wantOf?.(s);
    if (r && !replacedLater(ctx, k, s.path)) ctx.out.wants.push(r);
    return;
  }
  if (cur && supersededAt(ctx, k, s.path, cur)) return;
  if (cur) clearFor(ctx, s.path, s.pre, cur, false);
  makeParents(ctx, s.path);
  const tmp = `${STAGING}/link-${k}`;
  if (t.stat(tmp)) t.unlink(tmp);
  t.link(s.to, tmp);
  t.rename(tmp, s.path);
}

function place(ctx: StepContext, k: number, s: PlaceStep): void {
  const { t } = ctx;
  if (s.pre === null && s.post.type !== "d" && placedAtNewName(ctx, s)) return;
  const cur = t.stat(s.path);
  if (same(cur, s.post)) return; // done before a crash
  if (!t.stat(`${STAGING}/${s.staged}`)) return; // placed before a crash, since moved or replaced
  if (s.post.type === "d" && cur?.type === "d") {
    // A directory is already there: merge into it. Its mode is the holder's only if the
    // batch made it on its way (a local one keeps its own).
    if (s.pre?.type === "d" && s.pre.ino < 0) t.chmod(s.path, s.post.perm);
    return;
  }
  if (cur && supersededAt(ctx, k, s.path, cur)) return;
  putStaged(ctx, s.staged, s.path, s.pre, cur, s.post.type === "d");
}

/**
 * The common case of a new name, tried first: a rename that fails if
 * anything is at `s.path` is itself the check that nothing is there (what
 * the full step would find before the same rename). False if it did not
 * happen (something there, the staged file or a parent missing, no
 * RENAME_NOREPLACE): the full step then looks at what is there.
 */
function placedAtNewName(ctx: StepContext, s: PlaceStep): boolean {
  try {
    ctx.t.rename(`${STAGING}/${s.staged}`, s.path, true);
    return true;
  } catch (e) {
    if (e instanceof FsError) return false;
    throw e;
  }
}

/**
 * Installs staged `name` (a directory if `isDir`: its post entry says so) at
 * `path`, keeping whatever is there that is not `pre`.
 */
function putStaged(
  ctx: StepContext,
  name: string,
  path: string,
  pre: Entry | null,
  cur: Stat | null,
  isDir: boolean,
): void {
  if (cur) clearFor(ctx, path, pre, cur, isDir);
  makeParents(ctx, path);
  renameInto(ctx, `${STAGING}/${name}`, path, replaces(cur, pre, isDir));
}

/** True if the rename that follows clearFor replaces `cur`: a file that is `pre`. */
function replaces(cur: Stat | null, pre: Entry | null, newIsDir: boolean): boolean {
  return cur !== null && cur.type !== "d" && !newIsDir && same(cur, pre);
}

/**
 * Renames `from` to `path`. Unless it `replace`s what was checked there, the
 * path must be empty: what appeared there since the check is a local change,
 * kept aside. (A filesystem without RENAME_NOREPLACE, such as NFS, has only
 * the check.)
 */
function renameInto(ctx: StepContext, from: string, path: string, replace: boolean): void {
  for (let tries = 1;; tries++) {
    try {
      return ctx.t.rename(from, path, !replace);
    } catch (e) {
      if (!replace && e instanceof FsError && e.code === "EINVAL") {
        return ctx.t.rename(from, path);
      }
      if (!(e instanceof FsError && e.code === "EEXIST") || tries === 3) throw e;
      keepAside(ctx, path);
    }
  }
}

/**
 * Makes room at `path` for a new entry: what is there and is `pre` goes if it
 * must (an empty directory; files are replaced atomically by the rename that
 * follows), anything else is kept aside.
 */
function clearFor(
  ctx: StepContext,
  path: string,
  pre: Entry | null,
  cur: Stat,
  newIsDir: boolean,
): void {
  if (!same(cur, pre) && !(cur.type === "d" && pre?.type === "d")) {
    keepAside(ctx, path);
    return;
  }
  if (cur.type !== "d") {
    if (newIsDir) ctx.t.unlink(path); // rename cannot put a directory over a file
    return;
  }
  try {
    ctx.t.rmdir(path);
  } catch (e) {
    if (!(e instanceof FsError && e.code === "ENOTEMPTY")) throw e;
    keepAside(ctx, path); // files of this replica's own in it
  }
}

function remove(ctx: StepContext, k: number, s: RemoveStep): void {
  const { t } = ctx;
  const cur = t.stat(s.path);
  if (!cur) return;
  if (cur.type === "d" && s.pre?.type === "d") {
    try {
      t.rmdir(s.path);
    } catch (e) {
      // Files of this replica's own are in it: it stays (status lists them), still indexed
      // as the holder's directory it was, so a later record about it applies as usual.
      if (!(e instanceof FsError && e.code === "ENOTEMPTY")) throw e;
      ctx.out.keptDirs.add(s.path);
    }
    return;
  }
  if (same(cur, s.pre)) return t.unlink(s.path);
  if (supersededAt(ctx, k, s.path, cur)) return;
  keepAside(ctx, s.path);
}

function move(ctx: StepContext, k: number, s: MoveStep): void {
  const { t } = ctx;
  const from = t.stat(s.path);
  const to = t.stat(s.to);
  if (s.pre && same(to, s.pre) && !same(from, s.pre)) {
    return void ctx.out.moved.add(k);
  }
  if (s.pre && same(from, s.pre)) {
    const isDir = from!.type === "d";
    if (to) clearFor(ctx, s.to, s.preTo, to, isDir);
    makeParents(ctx, s.to);
    renameInto(ctx, s.path, s.to, replaces(to, s.preTo, isDir));
    ctx.out.moved.add(k);
    return;
  }
  // The source is not what this replica last had there.
  if (s.pre && from?.ino !== s.pre.ino && consumedLater(ctx, k, s.pre)) {
    ctx.out.moved.add(k); // moved before a crash, and a later step took it on
    return;
  }
  if (from && !supersededAt(ctx, k, s.path, from)) keepAside(ctx, s.path);
  if (s.staged && t.stat(`${STAGING}/${s.staged}`)) {
    const now = t.stat(s.to);
    if (now && (same(now, s.post!) || supersededAt(ctx, k, s.to, now))) return;
    putStaged(ctx, s.staged, s.to, s.preTo, now, s.post!.type === "d");
  } else if (s.want) {
    const placed = s.post && same(t.stat(s.to), s.post);
    if (!placed && !replacedLater(ctx, k, s.to)) ctx.out.wants.push(s.want);
  } else if (s.pre?.type === "d" && !replacedLater(ctx, k, s.to)) {
    makeParents(ctx, `${s.to}/-`); // the directory itself; its files are wanted
    ctx.out.wants.push(...(s.wantsBelow ?? []));
  }
}

function attrs(ctx: StepContext, s: AttrsStep): void {
  const { t } = ctx;
  const cur = t.stat(s.path);
  if (!s.post || !cur) {
    if (s.want) ctx.out.wants.push(s.want);
    return;
  }
  const localMode = cur.type === "d" && cur.perm !== s.pre?.perm && cur.perm !== s.post.perm;
  if ((!same(cur, s.pre) && !same(cur, s.post)) || localMode) {
    if (s.want) {
      keepAside(ctx, s.path); // changed since it was found to hold the content
      ctx.out.wants.push(s.want);
    }
    return; // a local change: its own attributes stay
  }
  const { uid, gid } = s.post;
  if (uid >= 0 && runAsRoot() && (cur.uid !== uid || (gid >= 0 && cur.gid !== gid))) {
    t.chown(s.path, uid, gid); // before chmod: a chown clears setuid bits
  }
  if (cur.type !== "l") t.chmod(s.path, s.post.perm);
  if (cur.type !== "d") {
    t.setMtime(s.path, mtimeNsOf(s.post));
  }
}

/** True if `cur` at `path` is what a later step of the batch puts there (a recovery's re-run). */
function supersededAt(ctx: StepContext, k: number, path: string, cur: Stat): boolean {
  // A later step's entry, even if edited here since (same inode): the later step handles it.
  const its = (e: Entry | null | undefined) => !!e && e.type === cur.type && e.ino === cur.ino;
  for (let j = k + 1; j < ctx.steps.length; j++) {
    const s = ctx.steps[j];
    if ((s.kind === "place" || s.kind === "link") && s.path === path && its(s.post)) return true;
    if (s.kind === "attrs" && s.path === path && same(cur, s.post)) return true;
    if (s.kind === "move" && s.to === path && (its(s.pre) || its(s.post))) return true;
  }
  return false;
}

/** True if a later step of the batch puts something at `path` or removes it. */
function replacedLater(ctx: StepContext, k: number, path: string): boolean {
  for (let j = k + 1; j < ctx.steps.length; j++) {
    const s = ctx.steps[j];
    if (s.kind === "place" || s.kind === "remove" || s.kind === "link") {
      if (s.path === path) return true;
    } else if (s.kind === "move" && (s.to === path || s.path === path)) return true;
  }
  return false;
}

/**
 * True if a later step expects entry `e` (by inode) and finds it where it
 * expects it: this step's effect was there before a crash.
 */
function consumedLater(ctx: StepContext, k: number, e: Entry): boolean {
  for (let j = k + 1; j < ctx.steps.length; j++) {
    const s = ctx.steps[j];
    if (!s.pre || s.pre.type !== e.type || s.pre.ino !== e.ino) continue;
    if (ctx.t.stat(s.path)?.ino === e.ino) return true;
  }
  return false;
}

/**
 * Creates the missing parents of `path`. A parent that is a file or a symlink
 * here, where the holder has a directory, is a local change: kept aside.
 */
function makeParents(ctx: StepContext, path: string): void {
  for (let tries = 0;; tries++) {
    try {
      return ctx.t.makeParents(path);
    } catch (e) {
      const blocked = e instanceof NotConfinedError ? ctx.t.blockedParent(path) : null;
      if (!blocked || tries > path.split("/").length) throw e;
      keepAside(ctx, blocked);
    }
  }
}

const utf8 = new TextEncoder();

/**
 * `NAME.conflict-<host>-<UTC>[-n]` beside `path`: the host part made safe for
 * a file name, and NAME shortened (on a character boundary) so that the whole
 * name fits in the 255 bytes a directory entry allows.
 */
export function conflictName(path: string, host: string, stamp: string, n: number): string {
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash + 1);
  const safeHost = [...host].map((c) => c === "/" || c < " " ? "_" : c).join("").slice(0, 64) ||
    "host";
  const tail = `.conflict-${safeHost}-${stamp}${n === 1 ? "" : `-${n}`}`;
  let name = path.slice(slash + 1);
  while (name && utf8.encode(name + tail).length > 255) name = [...name].slice(0, -1).join("");
  return `${dir}${name}${tail}`;
}

/** Moves the local entry at `path` to a conflict copy beside it (rule 4). */
function keepAside(ctx: StepContext, path: string): void {
  for (let n = 1;; n++) {
    const name = conflictName(path, ctx.host, ctx.stamp, n);
    try {
      ctx.t.rename(path, name, true);
      ctx.out.kept.push(name);
      return;
    } catch (e) {
      if (!(e instanceof FsError && e.code === "EEXIST")) throw e;
    }
  }
}
