/**
 * How a sync uses a running lento instead of scanning: ask it over its Unix
 * socket (`.replicator/lento.sock`) to record everything queued so far, wait
 * for its answer, and skip the scan. Must run before the sync takes the volume
 * lock (lento needs it to append).
 *
 * No signal is sent and no pid is trusted: only a process listening on the
 * socket in this very `.replicator/` can answer (see lento.ts).
 *
 * @module
 */

import { layoutOf } from "../volume/layout.ts";
import { askUnixSocket } from "../fs/unix_socket.ts";

/** How long a sync waits for lento's acknowledgement before scanning itself. */
const WAIT_MS = 5000;

/** The request and its answer on lento's socket, one line each. */
export const FLUSH_REQUEST = "flush";
export const FLUSH_DONE = "flushed";
/** A sync for lento to run, and its first answer (src/cli/delegated_sync.ts). */
export const SYNC_REQUEST = "sync";
export const SYNC_STARTED = "started";
export const SYNC_DECLINED = "declined";

/**
 * True if a lento runs for the volume at `root` and has recorded every change
 * made before this call; false if none runs (or it did not answer in time),
 * in which case the caller scans.
 */
export async function flushLento(root: string): Promise<boolean> {
  const reply = await askUnixSocket(layoutOf(root).lentoSock, `${FLUSH_REQUEST}\n`, WAIT_MS);
  return reply === FLUSH_DONE;
}
