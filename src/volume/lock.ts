/**
 * The volume lock: one run at a time per volume (rule 7). A second run polls
 * for a short while, then gives up with BusyError (exit status 75).
 *
 * @module
 */

import { tryLockNoFollow } from "../fs/nofollow.ts";
import { BusyError } from "../errors.ts";
import { sleep } from "../timer.ts";

/** How long a run waits for the lock, from REPLICATOR_LOCK_WAIT (seconds), default 5. */
export function lockWaitMs(): number {
  const s = Number(Deno.env.get("REPLICATOR_LOCK_WAIT") ?? "5");
  return Number.isFinite(s) && s >= 0 ? s * 1000 : 5000;
}

/** Takes the lock at `path`, waiting up to `waitMs`. Returns the release function. */
export function acquireLock(path: string, label: string, waitMs = lockWaitMs()): () => void {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const release = tryLockNoFollow(path);
    if (release) return release;
    if (Date.now() >= deadline) throw new BusyError(label);
    sleepSync(100);
  }
}

/**
 * True if nobody holds the lock at `path` at this instant (it is taken and
 * released at once: a racing run may take it next); false if it is held or
 * cannot be tried.
 */
function lockIsFree(path: string): boolean {
  try {
    const release = tryLockNoFollow(path);
    release?.();
    return release !== null;
  } catch {
    return false;
  }
}

/**
 * Waits, without blocking this thread (lento's event loop goes on), until
 * none of the locks at `paths` is held, at most `waitMs`.
 */
export async function untilFree(paths: string[], waitMs = lockWaitMs()): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (paths.some((p) => !lockIsFree(p)) && Date.now() < deadline) await sleep(20);
}

/** Blocks this thread for `ms` (the CLI's work is synchronous). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
