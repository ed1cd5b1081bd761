/**
 * The one gate every record and transaction passes before any step runs,
 * whatever its source: a peer's KML, or a transaction file found on disk at
 * recovery (rule 6). Paths must be relative, normalised, outside
 * `.replicator/`; staged names must be the engine's own.
 *
 * @module
 */

import { type KmlRecord, Op } from "../kml/record.ts";
import { checkRelativePath } from "../fs/paths.ts";
import { FormatError, HostilePeerError } from "../errors.ts";
import type { Entry } from "../volume/state.ts";
import type { Step } from "./steps.ts";

/** Throws HostilePeerError unless every path of `r` is safe. `from` names the source. */
export function checkRecord(r: KmlRecord, from: string): void {
  try {
    if (r.op === Op.Permit) {
      if (!/^[0-9a-f]{32}$/.test(r.target)) throw new HostilePeerError("bad permit holder");
      return;
    }
    checkRelativePath(r.path);
    if (r.op === Op.Rename || r.op === Op.Link) checkRelativePath(r.target);
    if (r.op === Op.Symlink && (r.target === "" || r.target.includes("\0"))) {
      throw new HostilePeerError("bad symlink target");
    }
  } catch (e) {
    throw new HostilePeerError(`${from}: ${(e as Error).message}; nothing was applied`);
  }
}

const STAGED_NAME = /^[0-9]{1,9}\/[0-9]{1,9}$/;
const KINDS = new Set(["place", "remove", "move", "attrs", "link"]);

/**
 * Throws FormatError (naming `file`) unless `steps` and `rows` are what the
 * engine writes: known kinds, record indices below `records`, safe paths
 * (those of the steps and rows, and the other `paths` the file names).
 */
export function checkSteps(
  file: string,
  steps: Step[],
  rows: [string, Entry | null][],
  records: number,
  paths: string[] = [],
): void {
  const bad = (why: string) =>
    new FormatError(`${file} is damaged (${why}); run 'replicator fsck --repair'`);
  if (!Array.isArray(steps) || !Array.isArray(rows)) throw bad("no steps");
  const path = (p: unknown) => {
    if (typeof p !== "string") throw bad("a path is not a string");
    try {
      checkRelativePath(p);
    } catch (e) {
      throw bad((e as Error).message);
    }
  };
  for (const s of steps) {
    if (!s || !KINDS.has(s.kind)) throw bad("unknown step");
    if (!Number.isInteger(s.i) || s.i < 0 || s.i >= records) throw bad("a step names no record");
    path(s.path);
    if (s.kind === "link") path(s.to);
    if (s.kind === "move") {
      path(s.to);
      for (const w of s.wantsBelow ?? []) path(w.path);
    }
    const staged = "staged" in s ? s.staged : undefined;
    if (staged !== undefined && !STAGED_NAME.test(String(staged))) throw bad("bad staged name");
    for (const e of [s.pre, "post" in s ? s.post : null]) if (e) entry(e, bad);
  }
  for (const [p, e] of rows) {
    path(p);
    if (e) entry(e, bad);
  }
  for (const p of paths) path(p);
}

function entry(e: Entry, bad: (why: string) => Error): void {
  if (!["f", "d", "l"].includes(e.type) || !Number.isSafeInteger(e.ino)) throw bad("bad entry");
}
