/**
 * Staging: everything a batch will put in place is first made in
 * `.replicator/staging/` — files fetched and verified against their record's
 * SHA-256 (rule 3), symlinks, directories — so that every placing step knows
 * the inode it installs, and a crash before the commit point leaves the tree
 * untouched.
 *
 * A fetch that fails because the source no longer has that content defers it:
 * the content stays wanted (state.db) and later pulls fetch it. Any other
 * failure (no space, an I/O error) aborts the batch before its commit point:
 * nothing is applied, Expect does not move, and the next sync tries again
 * (rule 10).
 *
 * @module
 */

import type { KmlRecord } from "../kml/record.ts";
import type { Beneath } from "../fs/beneath.ts";
import type { Stat } from "../fs/stat.ts";
import type { RawFile } from "../fs/raw_file.ts";
import { type Entry, entryOf, type Wanted } from "../volume/state.ts";
import type { Volume } from "../volume/volume.ts";
import { HostilePeerError, noFileThere, ReplicatorError } from "../errors.ts";
import { type Need, ownerFor, permOf, stagedName, wantedOf } from "./plan.ts";
import { STAGING } from "./steps.ts";

/**
 * The mode a content source creates a staged file with, for a record's
 * `perm`: those permission bits (as the umask lets them through; staging
 * corrects any difference afterwards, which then costs a chmod), and always
 * readable and writable by this replica. No one else can reach it: staging's
 * directories are 0700.
 */
export function stagedMode(perm: number): number {
  return (perm & 0o777) | 0o600;
}

/** Content a source put in staging: the SHA-256 of what it put there, and that file, open. */
export interface Taken {
  digest: string;
  /** The staged file; whoever takes it closes it. */
  file: RawFile;
}

/** Where content comes from: what a pull fetched from its peer. */
export interface ContentSource {
  hostName: string;
  /**
   * Puts the content `digest` (the peer's file at `path`) at the new file
   * `dest` below `t`'s root, for a record whose permission bits are `perm`
   * (see stagedMode). Throws Deno.errors.NotFound if the content is not
   * available.
   */
  take(t: Beneath, path: string, digest: string, dest: string, perm: number): Taken;
}

/** Files and bytes, for progress. */
export interface Amount {
  files: number;
  bytes: number;
}

/** Reports fetching progress: done so far of the pull's total. */
export type Progress = (done: Amount, total: Amount) => void;

/** What staging made. */
export interface Staged {
  /** Record index -> the staged entry. */
  entries: Map<number, Entry>;
  /** Content the source no longer had: asked for again later. */
  deferred: Wanted[];
}

/** The batch could not be staged; nothing of it was applied. */
export class StagingError extends ReplicatorError {}

/** Stages what `needs` asks for, taking fetched content from `source`. */
export function stage(
  vol: Volume,
  t: Beneath,
  records: KmlRecord[],
  needs: Map<number, Need>,
  source: ContentSource,
): Staged {
  const out: Staged = { entries: new Map(), deferred: [] };
  makeDir(t, STAGING);
  const made = new Set<string>(); // staging's subdirectories made by this call
  for (const [i, need] of needs) {
    const r = records[i];
    const name = `${STAGING}/${stagedName(i)}`;
    const bucket = name.slice(0, name.lastIndexOf("/"));
    if (!made.has(bucket)) makeDir(t, bucket);
    made.add(bucket);
    if (need.kind === "dir") {
      t.mkdir(name, 0o700);
      own(t, name, r);
      t.chmod(name, permOf(vol, r.mode));
    } else if (need.kind === "symlink") {
      t.symlink(r.target, name);
      own(t, name, r);
      t.setMtime(name, r.mtimeNs);
    } else {
      const st = fetch(vol, t, source, r, need.from, name);
      if (!st) out.deferred.push(wantedOf(vol, need.from, r));
      else out.entries.set(i, entryOf(st, r.digest, r.target));
      continue;
    }
    const st = t.stat(name);
    if (!st) throw new StagingError(`${t.abs(name)} vanished while staging; run sync again`);
    out.entries.set(i, entryOf(st, "", r.target));
  }
  return out;
}

/**
 * Fetches `from` into `name` for record `r`, with its owner, mode and mtime:
 * what was staged, or null as fetchVerified says false.
 */
function fetch(
  vol: Volume,
  t: Beneath,
  source: ContentSource,
  r: KmlRecord,
  from: string,
  name: string,
): Stat | null {
  const what = "nothing of this batch was applied";
  const perm = permOf(vol, r.mode);
  const f = fetchVerified(t, source, from, name, r.digest, perm, what);
  return f && finishStaged(f, ownerFor(r), perm, r.mtimeNs);
}

/**
 * Gives the staged file `f` its owner (where this replica can: see
 * ownerFor), mode and mtime through its descriptor, makes it durable if
 * `sync` (a transaction's staged files are flushed together instead), closes
 * it, and returns what it was then. Owner and mode are set only where they
 * differ: each change is an inode update the filesystem journals.
 */
export function finishStaged(
  f: RawFile,
  owner: { uid: number; gid: number } | null,
  perm: number,
  mtimeNs: bigint,
  sync = false,
): Stat {
  try {
    f.setMtime(mtimeNs);
    let st = f.stat();
    const chown = !!owner && (st.uid !== owner.uid || (owner.gid >= 0 && st.gid !== owner.gid));
    if (chown || st.perm !== perm) {
      if (chown) f.chown(owner.uid, owner.gid);
      f.chmod(perm); // after chown, which clears set-id bits
      st = f.stat();
    }
    if (sync) f.sync();
    return st;
  } finally {
    f.close();
  }
}

/**
 * Copies the source's file `from` to the new staged file `name` (below the
 * volume root; `perm` as stagedMode says) and checks it holds `digest`:
 * that file, open, or null and nothing left staged if the source no longer
 * has that content (rule 3: never mixed). Any other failure is a
 * StagingError saying `what` and what to do.
 */
export function fetchVerified(
  t: Beneath,
  source: ContentSource,
  from: string,
  name: string,
  digest: string,
  perm: number,
  what: string,
): RawFile | null {
  let got: Taken;
  try {
    got = source.take(t, from, digest, name, perm);
  } catch (e) {
    t.tryUnlink(name);
    if (e instanceof HostilePeerError) throw e;
    if (noFileThere(e)) return null;
    throw new StagingError(
      `cannot fetch ${from} from ${source.hostName}: ${(e as Error).message}; ` +
        `${what}; run sync again once that is fixed`,
    );
  }
  if (got.digest === digest) return got.file;
  got.file.close();
  t.tryUnlink(name); // changed again on the source: a later record brings it
  return null;
}

/** Gives a staged entry the record's owner, where this replica can (see ownerFor). */
function own(t: Beneath, name: string, r: KmlRecord): void {
  const o = ownerFor(r);
  if (o) t.chown(name, o.uid, o.gid);
}

/** Creates directory `rel` (mode 0700) unless it is one; anything else there is replaced. */
function makeDir(t: Beneath, rel: string): void {
  const st = t.stat(rel);
  if (st?.type === "d") return;
  if (st) t.unlink(rel);
  t.mkdir(rel, 0o700);
}
