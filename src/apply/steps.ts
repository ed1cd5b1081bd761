/**
 * Applying one remote record to the tree. Every step is idempotent, so that a
 * transaction interrupted at any instant can simply be run again (redo).
 * Paths are resolved without following symlinks: a parent that is not a real
 * directory stops the operation (rule 6).
 *
 * @module
 */

import { type KmlRecord, Op } from "../kml/record.ts";
import { lstatNs } from "../fs/stat.ts";
import { setMtimeNs } from "../fs/libc.ts";
import { HostilePeerError } from "../errors.ts";

/** What one transaction step does, beyond the record itself. */
export interface StepPlan {
  /** Index of the record in the transaction. */
  i: number;
  /** Staged content (file or symlink) in the staging directory, for Store/Symlink. */
  staged?: string;
  /** Move the local version here first (volume-relative), keeping it as a conflict copy. */
  conflict?: string;
  /** Store: the file here already has the content; only its mode and mtime are set. */
  adopt?: boolean;
}

/** Resolves volume-relative paths under a root, checking or creating real parent directories. */
export class Tree {
  private readonly dirs = new Set<string>([""]);
  constructor(readonly root: string) {}

  abs(rel: string): string {
    return `${this.root}/${rel}`;
  }

  /** Ensures every parent of `rel` is a real directory, creating missing ones. */
  parents(rel: string): void {
    const bad = this.checkParents(rel, true);
    if (bad !== null) {
      throw new HostilePeerError(`${rel}: parent ${bad} is not a directory here; not applied`);
    }
  }

  /** True if every parent of `rel` is a real directory (nothing is created). */
  parentsAreDirectories(rel: string): boolean {
    return this.checkParents(rel, false) === null;
  }

  /** The first parent of `rel` that is not a real directory (after creating missing ones if asked), or null. */
  private checkParents(rel: string, create: boolean): string | null {
    const parts = rel.split("/");
    let dir = "";
    for (let i = 0; i < parts.length - 1; i++) {
      dir = dir ? `${dir}/${parts[i]}` : parts[i];
      if (this.dirs.has(dir)) continue;
      const st = lstatNs(this.abs(dir));
      if (!st && create) Deno.mkdirSync(this.abs(dir));
      else if (st?.type !== "d") return dir;
      this.dirs.add(dir);
    }
    return null;
  }

  /** Forgets cached directories at or under `rel` (they were moved or removed). */
  forget(rel: string): void {
    for (const d of [...this.dirs]) if (d === rel || d.startsWith(rel + "/")) this.dirs.delete(d);
  }
}

/**
 * Applies one step. Returns false if there was nothing it could do (e.g. rmdir
 * of a non-empty dir). A local version moved aside as a conflict copy is added
 * to `kept`.
 */
export function applyStep(
  t: Tree,
  r: KmlRecord,
  step: StepPlan,
  staging: string,
  kept: string[],
): boolean {
  const at = r.op === Op.Rename ? r.target : r.path;
  if (step.conflict && keepConflict(t, at, step.conflict)) kept.push(step.conflict);
  switch (r.op) {
    case Op.Store:
      if (step.adopt) return setattr(t, r);
      return install(t, r.path, step.staged ? `${staging}/${step.staged}` : undefined);
    case Op.Symlink:
      return install(t, r.path, step.staged ? `${staging}/${step.staged}` : undefined);
    case Op.Mkdir:
      return mkdir(t, r);
    case Op.Rmdir:
      return rmdir(t, r.path);
    case Op.Unlink:
      return unlink(t, r.path);
    case Op.Rename:
      return rename(t, r.path, r.target, step.staged ? `${staging}/${step.staged}` : undefined);
    case Op.Setattr:
      return setattr(t, r);
    case Op.Permit:
      return true;
  }
}

/** Moves what is at `path` to `copy`; true if it did (or had, before a crash). */
function keepConflict(t: Tree, path: string, copy: string): boolean {
  if (lstatNs(t.abs(copy))) return true; // done before a crash
  if (!lstatNs(t.abs(path))) return false; // nothing (left) to keep
  t.parents(path);
  Deno.renameSync(t.abs(path), t.abs(copy));
  t.forget(path);
  return true;
}

function install(t: Tree, path: string, staged: string | undefined): boolean {
  if (!staged || !lstatNs(staged)) return false; // superseded, or installed before a crash
  t.parents(path);
  try {
    Deno.renameSync(staged, t.abs(path));
  } catch (e) {
    // The holder replaced a directory by a file: only an empty one may go (a directory
    // with local files in it was moved aside as a conflict copy at planning).
    if (lstatNs(t.abs(path))?.type !== "d") throw e;
    Deno.removeSync(t.abs(path));
    Deno.renameSync(staged, t.abs(path));
  }
  return true;
}

function mkdir(t: Tree, r: KmlRecord): boolean {
  t.parents(r.path);
  const cur = lstatNs(t.abs(r.path));
  if (cur && cur.type !== "d") Deno.removeSync(t.abs(r.path));
  if (!cur || cur.type !== "d") Deno.mkdirSync(t.abs(r.path));
  Deno.chmodSync(t.abs(r.path), r.mode & 0o7777);
  return true;
}

function rmdir(t: Tree, path: string): boolean {
  const cur = lstatNs(t.abs(path));
  if (!cur) return true;
  if (cur.type !== "d") return false;
  t.parents(path);
  for (const _ of Deno.readDirSync(t.abs(path))) return false; // local files kept
  Deno.removeSync(t.abs(path));
  t.forget(path);
  return true;
}

function unlink(t: Tree, path: string): boolean {
  const cur = lstatNs(t.abs(path));
  if (!cur) return true;
  if (cur.type === "d") return false;
  t.parents(path);
  Deno.removeSync(t.abs(path));
  return true;
}

function rename(t: Tree, from: string, to: string, staged: string | undefined): boolean {
  // Moved before a crash, or never here: then the file was fetched at its new path, if needed.
  if (!lstatNs(t.abs(from))) return staged ? install(t, to, staged) : true;
  t.parents(from);
  t.parents(to);
  const dest = lstatNs(t.abs(to));
  if (dest?.type === "d" && lstatNs(t.abs(from))?.type !== "d") return false;
  Deno.renameSync(t.abs(from), t.abs(to));
  t.forget(from);
  return true;
}

function setattr(t: Tree, r: KmlRecord): boolean {
  const cur = lstatNs(t.abs(r.path));
  if (!cur || cur.type === "l") return false;
  t.parents(r.path);
  Deno.chmodSync(t.abs(r.path), r.mode & 0o7777);
  if (cur.type === "f") setMtimeNs(t.abs(r.path), r.mtimeNs);
  return true;
}
