/**
 * Injection points for tests: the process kills itself (SIGKILL, like a power
 * cut for everything not yet on disk... as far as a test can tell) or fails
 * with an I/O error at a named point of a transaction.
 *
 * - `REPLICATOR_CRASH_AT`: `commit` (the transaction file is written, no step
 *   run), `step:N` (right after the N-th step of a transaction), `steps` (all
 *   steps run, before the KML append), `append` (records appended, before the
 *   Expect), `expect` (Expect written, before the transaction file goes).
 * - `REPLICATOR_FAIL_AT`: `append` or `fsync` throws EIO there instead.
 * - `REPLICATOR_PAUSE_AT=staged:FILE`: after a batch is staged, before its
 *   steps are planned against the disk, wait (at most 30 s) until FILE exists,
 *   so a test can change the tree while a sync is in flight.
 *
 * Unset, both cost one comparison.
 *
 * @module
 */

import { FsError } from "../errors.ts";

const crashAt = Deno.env.get("REPLICATOR_CRASH_AT") ?? "";
const failAt = Deno.env.get("REPLICATOR_FAIL_AT") ?? "";
const pauseAt = Deno.env.get("REPLICATOR_PAUSE_AT") ?? "";

/** Dies here if the test asked for it. */
export function crashPoint(name: string): void {
  if (crashAt !== "" && crashAt === name) Deno.kill(Deno.pid, "SIGKILL");
}

/** Throws an I/O error here if the test asked for it. */
export function failPoint(name: string, path: string): void {
  if (failAt !== "" && failAt === name) {
    throw new FsError(name, path, 5, "EIO", "injected by REPLICATOR_FAIL_AT");
  }
}

/** Waits here, if the test asked for it, until the file it named exists. */
export function pausePoint(name: string): void {
  if (pauseAt === "" || !pauseAt.startsWith(`${name}:`)) return;
  const file = pauseAt.slice(name.length + 1);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      Deno.lstatSync(file);
      return;
    } catch {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
}
