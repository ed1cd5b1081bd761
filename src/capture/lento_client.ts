/**
 * How a sync uses a running lento instead of scanning: signal it, wait until
 * it has recorded everything queued so far, and skip the scan. Must run
 * before the sync takes the volume lock (lento needs it to append).
 *
 * @module
 */

import { tryLock } from "../fs/libc.ts";
import { layoutOf } from "../volume/layout.ts";
import { readCounter } from "./lento.ts";
import { sleepSync } from "../volume/lock.ts";

/** How long a sync waits for lento's acknowledgement before scanning itself. */
const WAIT_MS = 5000;

/**
 * True if a lento runs for the volume at `root` and has recorded every change
 * made before this call; false if none runs (or it did not answer in time),
 * in which case the caller scans.
 */
export function flushLento(root: string): boolean {
  const layout = layoutOf(root);
  const release = tryLock(layout.lentoPid);
  if (release) {
    release(); // nobody holds it: no lento
    return false;
  }
  const pid = Number(Deno.readTextFileSync(layout.lentoPid).trim());
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const before = readCounter(layout.lentoAck);
  try {
    Deno.kill(pid, "SIGUSR2");
  } catch {
    return false;
  }
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    if (readCounter(layout.lentoAck) !== before) return true;
    sleepSync(1);
  }
  return false;
}
