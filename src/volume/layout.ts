/**
 * Where a volume keeps its metadata: everything lives in `.replicator/` at the
 * volume root, which is never captured or replicated as content.
 *
 * @module
 */

import { META_DIR } from "../fs/paths.ts";

export { META_DIR };

/** Absolute paths of a volume's metadata files. */
export interface Layout {
  root: string;
  meta: string;
  config: string;
  kml: string;
  expect: string;
  state: string;
  lock: string;
  txn: string;
  txnRecords: string;
  /** Held (flock) by a running lento, with its pid inside. */
  lentoPid: string;
  /** Counter lento bumps after each flush a sync asked for. */
  lentoAck: string;
  staging: string;
}

/** The layout of the volume rooted at absolute path `root`. */
export function layoutOf(root: string): Layout {
  const meta = `${root}/${META_DIR}`;
  return {
    root,
    meta,
    config: `${meta}/volume.json`,
    kml: `${meta}/kml`,
    expect: `${meta}/expect`,
    state: `${meta}/state.db`,
    lock: `${meta}/lock`,
    txn: `${meta}/txn`,
    txnRecords: `${meta}/txn.records`,
    lentoPid: `${meta}/lento.pid`,
    lentoAck: `${meta}/lento.ack`,
    staging: `${meta}/staging`,
  };
}
