/**
 * Recording local changes: scan, then either publish them as this host's
 * records (the permit holder) or keep them as pending (everyone else: rule 4).
 *
 * @module
 */

import type { Volume } from "../volume/volume.ts";
import { type Change, scan } from "./scan.ts";

/** What capture found. */
export interface CaptureResult {
  /** Records appended to the KML. */
  recorded: number;
  /** Local changes kept unpublished because this replica lacks the permit. */
  pending: Change[];
  problems: string[];
}

/** Scans `vol` and records or keeps what changed. */
export function capture(vol: Volume): CaptureResult {
  const found = scan(vol.root, vol.state.loadIndex());
  if (!vol.holdsPermit()) {
    return { recorded: 0, pending: found.changes, problems: found.problems };
  }
  if (found.changes.length > 0 || found.updates.size > 0) {
    vol.recordLocal(found.changes, found.updates);
  }
  return { recorded: found.changes.length, pending: [], problems: found.problems };
}
