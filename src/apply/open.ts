/**
 * Opening a replica for use: take the lock, then finish (or drop) a batch a
 * crash interrupted, then bring the derived state up to the KML. Everything
 * that reads or changes a replica opens it through here.
 *
 * @module
 */

import { Volume } from "../volume/volume.ts";
import { indexRecords, recoverTxn } from "./txn.ts";

/**
 * Opens and recovers the replica containing `dir`. Close it to release the
 * lock. Waits for the lock up to `lockWaitMs` (default: lockWaitMs()).
 */
export function openReplica(dir: string, lockWaitMs?: number): Volume {
  const vol = Volume.open(dir, lockWaitMs);
  try {
    recoverTxn(vol);
    vol.reconcile(indexRecords);
    return vol;
  } catch (e) {
    vol.close();
    throw e;
  }
}
