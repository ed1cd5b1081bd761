/**
 * The apply engine: the one place that changes a replica's tree on behalf
 * of another replica. It owns the integrity invariants (docs/design.md,
 * "Invariants"): every operation confined beneath the volume root, a
 * compare-and-swap before every destructive step, recovery that can re-run
 * any batch, and content that did not arrive kept wanted.
 *
 * @module
 */

export { openReplica } from "./open.ts";
export { applyBatch, type Batch, type BatchResult, planFirst } from "./batch.ts";
export { finalContent, type Plan } from "./plan.ts";
export {
  type Amount,
  type ContentSource,
  type Progress,
  stagedMode,
  StagingError,
  type Taken,
} from "./stage.ts";
export { fetchWanted, type WantedResult } from "./wanted.ts";
export { checkRecord } from "./validate.ts";
export { indexRecords, recoverTxn } from "./txn.ts";
