/**
 * Applying one batch of accepted records: plan what to stage, stage it, plan
 * the steps against the staged entries, and run them as one transaction.
 *
 * @module
 */

import type { KmlRecord } from "../kml/record.ts";
import type { ExpectEntry } from "../expect/expect.ts";
import { Beneath } from "../fs/beneath.ts";
import type { Volume } from "../volume/volume.ts";
import { type Plan, planBatch } from "./plan.ts";
import { type ContentSource, stage } from "./stage.ts";
import { runTxn, TXN_VERSION } from "./txn.ts";
import { pausePoint } from "./crash.ts";

/** What applying a batch did. */
export interface BatchResult {
  /** Steps run. */
  applied: number;
  /** Conflict copies made. */
  kept: string[];
  /** Final paths whose content the source no longer had (wanted, fetched later). */
  deferred: string[];
  problems: string[];
}

/** A batch: its records and their raw frames (appended to this replica's KML as they are). */
export interface Batch {
  records: KmlRecord[];
  frames: Uint8Array[];
  /** Record index -> final path, for the content records that travel (see finalContent). */
  finals: Map<number, string>;
  /** The Expect entries to write with the batch. */
  expect: ExpectEntry[];
}

/**
 * The first plan of `batch`: its `needs` name the content to fetch before
 * applyBatch runs.
 */
export function planFirst(vol: Volume, batch: Batch): Plan {
  const t = Beneath.open(vol.root);
  try {
    return t.within(() => planBatch(vol, t, batch.records, batch.finals));
  } finally {
    t.close();
  }
}

/** Applies `batch` (first planned as `first`) from `source` to `vol` as one transaction. */
export function applyBatch(
  vol: Volume,
  source: ContentSource,
  batch: Batch,
  first: Plan,
): BatchResult {
  const { records, finals } = batch;
  const t = Beneath.open(vol.root);
  let plan;
  let staged;
  try {
    staged = stage(vol, t, records, first.needs, source);
    pausePoint("staged");
    const entries = staged.entries;
    plan = t.within(() => planBatch(vol, t, records, finals, entries, first.adopted));
  } finally {
    t.close();
  }
  const result = runTxn(
    vol,
    {
      version: TXN_VERSION,
      kmlSize: vol.kml.size,
      recordBytes: batch.frames.reduce((n, f) => n + f.length, 0),
      steps: plan.steps,
      rows: [...plan.rows],
      wants: staged.deferred,
      expect: batch.expect,
      stamp: utcStamp(),
      dirs: plan.dirs,
    },
    records,
    batch.frames,
  );
  return { ...result, deferred: staged.deferred.map((w) => w.path) };
}

/** The current UTC time as conflict copies name it: YYYYMMDDTHHMMSSZ. */
export function utcStamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}
