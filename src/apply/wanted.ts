/**
 * Content a record named but that is not in place yet: the source had
 * changed it, or installing it failed. Every pull asks its source for each
 * such file again, installs it only if it has exactly the wanted digest, and
 * puts it in place with the same compare-and-swap as a batch step, so a local
 * change is kept as a conflict copy (rule 10: nothing is silently forgotten).
 *
 * @module
 */

import { Beneath } from "../fs/beneath.ts";
import { mtimeNsOf } from "../fs/stat.ts";
import { parentOf } from "../fs/paths.ts";
import { hashOpenFile } from "../fs/hash.ts";
import { entryOf, type Wanted } from "../volume/state.ts";
import type { Volume } from "../volume/volume.ts";
import { FsError, HostilePeerError } from "../errors.ts";
import { type ContentSource, fetchVerified, finishStaged, StagingError } from "./stage.ts";
import { newOutcome, runStep, same, STAGING, type StepContext } from "./steps.ts";
import { utcStamp } from "./batch.ts";

/** What installing wanted content did. */
export interface WantedResult {
  /** Files installed. */
  installed: number;
  kept: string[];
  problems: string[];
}

const TMP = "wanted";

/** Installs what `vol` still wants, taking fetched content from `source`. */
export function fetchWanted(vol: Volume, source: ContentSource): WantedResult {
  const result: WantedResult = { installed: 0, kept: [], problems: [] };
  const wanted = vol.state.wanted();
  if (wanted.length === 0) return result;
  const t = Beneath.open(vol.root);
  try {
    if (t.stat(STAGING)?.type !== "d") t.mkdir(STAGING, 0o700);
    for (const w of wanted) {
      try {
        if (adopt(vol, t, w) || install(vol, t, source, w, result)) {
          vol.state.unwant(w.path);
        }
      } catch (e) {
        if (e instanceof HostilePeerError) throw e;
        if (!(e instanceof FsError || e instanceof StagingError)) throw e;
        result.problems.push(`${w.path}: still not applied: ${e.message}`);
      } finally {
        t.tryUnlink(`${STAGING}/${TMP}`); // installed, or never fetched
      }
    }
  } finally {
    t.close();
  }
  return result;
}

/** True if the file is already there with the wanted content (a crash after its install). */
function adopt(vol: Volume, t: Beneath, w: Wanted): boolean {
  const st = t.stat(w.path);
  if (st?.type !== "f" || st.size !== w.size) return false;
  const f = t.openFile(w.path);
  try {
    if (hashOpenFile(f) !== w.digest) return false;
  } finally {
    f.close();
  }
  vol.state.putEntry(w.path, entryOf(st, w.digest, ""));
  return true;
}

/** Fetches `w` and puts it in place; false if the source does not have that content now. */
function install(
  vol: Volume,
  t: Beneath,
  source: ContentSource,
  w: Wanted,
  result: WantedResult,
): boolean {
  const tmp = `${STAGING}/${TMP}`;
  const f = fetchVerified(t, source, w.path, tmp, w.digest, w.perm, "it stays wanted");
  if (!f) return false;
  // Durable before it is placed, and placed durably before its row says so: a crash
  // in between leaves it wanted (found whole by adopt, or fetched again).
  const post = entryOf(finishStaged(f, null, w.perm, mtimeNsOf(w), true), w.digest, "");
  const out = newOutcome();
  const ctx: StepContext = {
    t,
    host: vol.config.hostName,
    stamp: utcStamp(),
    steps: [{
      kind: "place",
      i: 0,
      path: w.path,
      staged: TMP,
      pre: vol.state.getEntry(w.path) ?? null,
      post,
    }],
    out,
  };
  runStep(ctx, 0);
  result.kept.push(...out.kept);
  result.problems.push(...out.problems);
  restoreParent(vol, t, w.path);
  syncChangedDirs(t, w.path);
  const now = t.stat(w.path);
  if (!same(now, post)) return false;
  vol.state.putEntry(w.path, entryOf(now!, w.digest, ""));
  result.installed++;
  return true;
}

/** fsyncs the directory holding `path`, and each directory made on the way there with its parent. */
function syncChangedDirs(t: Beneath, path: string): void {
  for (const d of new Set([parentOf(path), ...t.takeMade()])) t.syncDir(d);
}

/** Sets the parent directory's mtime back to its row's: installing changed it, the holder did not. */
function restoreParent(vol: Volume, t: Beneath, path: string): void {
  const dir = parentOf(path);
  const row = dir ? vol.state.getEntry(dir) : undefined;
  if (row?.type !== "d" || (row.mtimeSec === 0 && row.mtimeNsec === 0)) return;
  if (t.stat(dir)?.type !== "d") return;
  t.setMtime(dir, mtimeNsOf(row));
}
