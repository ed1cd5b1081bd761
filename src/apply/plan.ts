/**
 * Planning a batch: which content travels (only the last content of each
 * file), which files are already here (adopted, not fetched), and the steps
 * with the entry each one expects to find (read from a View of the index).
 *
 * Planning runs twice over the same records: once to learn what to stage,
 * and once the staged entries exist, so that each step knows the inode it
 * will put in place.
 *
 * @module
 */

import { type KmlRecord, NO_DIGEST, Op } from "../kml/record.ts";
import { isWithin, parentOf } from "../fs/paths.ts";
import type { Beneath } from "../fs/beneath.ts";
import { splitNs, type Stat } from "../fs/stat.ts";
import { hashOpenFile } from "../fs/hash.ts";
import { type Entry, entryOf, type Wanted } from "../volume/state.ts";
import type { Volume } from "../volume/volume.ts";
import { same, type Step } from "./steps.ts";
import { View } from "./view.ts";
import { localGid, localUid, runAsRoot } from "../fs/owners.ts";

/** What staging must provide for a record: a file fetched from `from`, a symlink, a directory. */
export type Need = { kind: "fetch"; from: string } | { kind: "symlink" } | { kind: "dir" };

/** A planned batch. */
export interface Plan {
  steps: Step[];
  /** Record index -> what to stage for it (first pass). */
  needs: Map<number, Need>;
  /** Store records whose content is already here, with the file as found. */
  adopted: Map<number, Entry | null>;
  /** Every path the batch touches, with the index row expected there at its end. */
  rows: Map<string, Entry | null>;
  /** Directories whose permissions and mtime are set after the steps, deepest first. */
  dirs: DirAttrs[];
}

/**
 * A directory's attributes as the holder last recorded them, and the inode the
 * batch expects there: [path, perm, mtimeSec, mtimeNsec, ino].
 */
export type DirAttrs = [string, number, number, number, number];

/** Records per staging bucket: a batch of up to this many stages into one directory. */
export const STAGING_BUCKET = 256;

/**
 * Where record `i`'s entry is staged, below STAGING: in buckets of
 * STAGING_BUCKET consecutive records, so a big batch never makes one huge
 * directory and a small one makes (and flushes) one bucket, not one per file.
 */
export function stagedName(i: number): string {
  return `${Math.floor(i / STAGING_BUCKET)}/${i}`;
}

/** Permission bits to apply: setuid and setgid are dropped unless the volume keeps them (rule 11). */
export function permOf(vol: Volume, mode: number): number {
  return mode & (vol.config.keepSetid ? 0o7777 : 0o1777);
}

/**
 * The owner and group this replica gives what record `r` describes: by name
 * where known here, else the number (rsync's rule); none unless running as
 * root (a replica runs as whatever user it runs as) or if `r` carries none.
 */
export function ownerFor(r: KmlRecord): { uid: number; gid: number } | null {
  if (r.uid < 0 || !runAsRoot()) return null;
  return { uid: localUid(r.owner, r.uid), gid: r.gid < 0 ? -1 : localGid(r.group, r.gid) };
}

/** What a record asks for at its final path, should it not arrive in this batch. */
export function wantedOf(vol: Volume, path: string, r: KmlRecord): Wanted {
  return { path, digest: r.digest, size: r.size, perm: permOf(vol, r.mode), ...mtimeOf(r) };
}

/**
 * Plans the steps of `records`. `finals` maps content records to the path
 * their content ends at; `staged` (second pass) gives each staged entry, and
 * `adopted` the first pass's adoption decisions.
 */
export function planBatch(
  vol: Volume,
  t: Beneath,
  records: KmlRecord[],
  finals: Map<number, string>,
  staged?: Map<number, Entry>,
  adopted?: Map<number, Entry | null>,
): Plan {
  const view = new View((p) => vol.state.getEntry(p), (p) => vol.state.entriesUnder(p));
  const plan: Plan = {
    steps: [],
    needs: new Map(),
    adopted: adopted ?? new Map(),
    rows: new Map(),
    dirs: [],
  };
  // Paths steps so far act on, and those they may remove or replace on disk (with all below).
  const acted = new Set<string>();
  const cut = new Set<string>();
  const untouched = (p: string) => {
    if (acted.has(p)) return false;
    for (let q = p; q !== ""; q = parentOf(q)) if (cut.has(q)) return false;
    return true;
  };
  const placeholder = (i: number, type: "f" | "d" | "l"): Entry =>
    staged?.get(i) ?? { ...entryOf(NO_STAT, "", ""), type, ino: -1 - i };
  records.forEach((r, i) => {
    const p = r.path;
    switch (r.op) {
      case Op.Store: {
        if (!finals.has(i)) break;
        const pre = view.get(p);
        if (!adopted && untouched(p)) {
          const found = holds(vol, t, p, r);
          if (found) plan.adopted.set(i, found);
        }
        if (plan.adopted.has(i)) {
          const found = plan.adopted.get(i)!;
          const post = { ...found, perm: permOf(vol, r.mode), ...mtimeOf(r), ...ownerFor(r) };
          const want = wantedOf(vol, finals.get(i)!, r);
          plan.steps.push({ kind: "attrs", i, path: p, pre: found, post, want });
          view.update(p, post);
          break;
        }
        if (staged && !staged.has(i)) break; // deferred: the old version stays, the new one is wanted
        plan.needs.set(i, { kind: "fetch", from: finals.get(i)! });
        place(plan, view, i, p, pre, { ...placeholder(i, "f"), digest: r.digest });
        break;
      }
      case Op.Link: {
        if (!finals.has(i)) break;
        const to = view.get(r.target);
        if (to?.type === "f" && to.digest === r.digest && !(staged && staged.has(i))) {
          plan.steps.push({ kind: "link", i, path: p, to: r.target, pre: view.get(p), post: to });
          view.set(p, to);
          break;
        }
        // The file it names is not here as recorded: its content travels instead.
        if (staged && !staged.has(i)) break;
        plan.needs.set(i, { kind: "fetch", from: finals.get(i)! });
        place(plan, view, i, p, view.get(p), { ...placeholder(i, "f"), digest: r.digest });
        break;
      }
      case Op.Symlink:
        if (!finals.has(i)) break;
        plan.needs.set(i, { kind: "symlink" });
        place(plan, view, i, p, view.get(p), { ...placeholder(i, "l"), target: r.target });
        break;
      case Op.Mkdir: {
        const pre = view.get(p);
        if (pre?.type === "d") {
          const post = { ...pre, perm: permOf(vol, r.mode), ...mtimeOf(r), ...ownerFor(r) };
          plan.steps.push({ kind: "attrs", i, path: p, pre, post });
          view.update(p, post);
        } else {
          plan.needs.set(i, { kind: "dir" });
          place(plan, view, i, p, pre, { ...placeholder(i, "d"), ...mtimeOf(r) });
        }
        break;
      }
      case Op.Rmdir:
      case Op.Unlink:
        plan.steps.push({ kind: "remove", i, path: p, pre: view.get(p) });
        view.set(p, null);
        break;
      case Op.Rename:
        rename(vol, plan, view, records, finals, i, placeholder, staged);
        break;
      case Op.Setattr: {
        const pre = view.get(p);
        const wantAttrs = { perm: permOf(vol, r.mode), ...mtimeOf(r) };
        if (!pre) { // nothing of the holder's is here to change, but its content may be wanted
          plan.steps.push({ kind: "attrs", i, path: p, pre, post: null, wantAttrs });
          break;
        }
        const post = { ...pre, perm: permOf(vol, r.mode), ...mtimeOf(r), ...ownerFor(r) };
        plan.steps.push({ kind: "attrs", i, path: p, pre, post, wantAttrs });
        view.update(p, post);
        break;
      }
      case Op.Permit:
        break;
    }
    acted.add(p);
    const placesDir = r.op === Op.Mkdir || r.op === Op.Setattr;
    if (!placesDir) cut.add(p);
    if (r.op === Op.Rename) cut.add(r.target);
  });
  plan.rows = view.touched();
  if (staged) plan.dirs = dirAttrs(view, plan.steps); // the first pass only decides what to stage
  return plan;
}

/**
 * The directories a batch changes (those it makes or sets, and the parents of
 * every entry it adds, removes or moves) with the attributes the holder last
 * recorded for them, deepest first: applying entries changes a directory's
 * mtime, so it is set again once they are all in place.
 */
function dirAttrs(view: View, steps: Step[]): DirAttrs[] {
  const dirs = new Set<string>();
  const add = (p: string) => {
    dirs.add(p);
    if (parentOf(p) !== "") dirs.add(parentOf(p));
  };
  for (const s of steps) for (const p of s.kind === "move" ? [s.path, s.to] : [s.path]) add(p);
  for (const p of view.touched().keys()) add(p); // where moved subtrees ended up
  const out: DirAttrs[] = [];
  for (const d of dirs) {
    const e = view.get(d);
    if (e?.type !== "d" || (e.mtimeSec === 0 && e.mtimeNsec === 0)) continue;
    out.push([d, e.perm, e.mtimeSec, e.mtimeNsec, e.ino]);
  }
  const depth = (p: string) => p.split("/").length;
  return out.sort((a, b) => depth(b[0]) - depth(a[0]));
}

function place(plan: Plan, view: View, i: number, p: string, pre: Entry | null, post: Entry): void {
  plan.steps.push({ kind: "place", i, path: p, staged: stagedName(i), pre, post });
  view.set(p, post);
}

function rename(
  vol: Volume,
  plan: Plan,
  view: View,
  records: KmlRecord[],
  finals: Map<number, string>,
  i: number,
  placeholder: (i: number, type: "f") => Entry,
  staged?: Map<number, Entry>,
): void {
  const r = records[i];
  const pre = view.get(r.path);
  const preTo = view.get(r.target);
  const final = finals.get(i);
  const want = final !== undefined && r.digest !== NO_DIGEST ? wantedOf(vol, final, r) : undefined;
  // Content comes with the rename only if this replica never had the source.
  const fetch = want && !pre && (!staged || staged.has(i));
  if (fetch) plan.needs.set(i, { kind: "fetch", from: final! });
  const post = fetch ? { ...placeholder(i, "f"), digest: r.digest } : undefined;
  // A directory's files, should the directory not be here to move: each is then wanted.
  const wantsBelow = pre?.type === "d"
    ? view.below(r.path).filter(([, e]) => e.type === "f" && e.digest).map(([q, e]) =>
      wantedOfEntry(r.target + q.slice(r.path.length), e)
    )
    : [];
  plan.steps.push({
    kind: "move",
    i,
    path: r.path,
    to: r.target,
    pre,
    preTo,
    ...(fetch ? { staged: stagedName(i), post } : {}),
    ...(want ? { want } : {}),
    ...(wantsBelow.length ? { wantsBelow } : {}),
  });
  view.makeParents(r.target);
  view.move(r.path, r.target);
  if (post) view.set(r.target, post);
}

/** What a file recorded as `e` asks for at `path`, should it not be here. */
function wantedOfEntry(path: string, e: Entry): Wanted {
  return {
    path,
    digest: e.digest,
    size: e.size,
    perm: e.perm,
    mtimeSec: e.mtimeSec,
    mtimeNsec: e.mtimeNsec,
  };
}

/** The record's mtime as index fields. */
function mtimeOf(r: KmlRecord): { mtimeSec: number; mtimeNsec: number } {
  return splitNs(r.mtimeNs);
}

const NO_STAT: Stat = {
  type: "f",
  perm: 0,
  ino: 0,
  size: 0,
  mtimeSec: 0,
  mtimeNsec: 0,
  uid: -1,
  gid: -1,
  nlink: 1,
};

/**
 * The file at `p` as found, if it already has the content `r` names: its
 * index row says so and the disk agrees, or (a replica seeded by other means)
 * it has the same size and hashes the same. Null otherwise.
 */
function holds(vol: Volume, t: Beneath, p: string, r: KmlRecord): Entry | null {
  const st = t.stat(p);
  if (st?.type !== "f" || st.size !== r.size) return null;
  const found = entryOf(st, r.digest, "");
  const e = vol.state.getEntry(p);
  if (e && same(st, e)) return e.digest === r.digest ? found : null;
  try {
    const f = t.openFile(p);
    try {
      return hashOpenFile(f) === r.digest ? found : null;
    } finally {
      f.close();
    }
  } catch {
    return null; // unreadable or gone: fetch it
  }
}

/** Record index -> final path, for content records that survive the batch. */
export function finalContent(records: KmlRecord[]): Map<number, string> {
  const current = new Map<string, number>();
  const linkedTo = new Map<number, number>(); // a Link -> the content record it names
  records.forEach((r, i) => {
    switch (r.op) {
      case Op.Link:
        if (current.has(r.target)) linkedTo.set(i, current.get(r.target)!);
        current.set(r.path, i);
        break;
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
  const finals = new Map([...current].map(([p, i]) => [i, p]));
  // The content a surviving Link names travels even if its first name did not survive:
  // fetched where the link is, installed under the first name, linked, then moved or removed.
  for (const [i, j] of linkedTo) {
    if (finals.has(i) && !finals.has(j)) finals.set(j, finals.get(i)!);
  }
  return finals;
}
