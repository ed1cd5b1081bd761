/**
 * Where a volume keeps its metadata: everything lives in `.replicator/` at the
 * volume root, which is never captured or replicated as content.
 *
 * @module
 */

import { META_DIR } from "../fs/paths.ts";
import { checkMeta, type MetaKind } from "../fs/nofollow.ts";
import { MetadataError } from "../errors.ts";

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
  /** Held (flock) by a running lento, with its pid inside (for people; nothing signals it). */
  lentoPid: string;
  /** Unix socket a running lento answers flush requests on. */
  lentoSock: string;
  staging: string;
  /** Content fetched from a peer, waiting for its batch (src/sync/prefetch.ts). */
  fetch: string;
  /** Present while `init` or `clone` has not finished creating the replica. */
  creating: string;
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
    lentoSock: `${meta}/lento.sock`,
    staging: `${meta}/staging`,
    fetch: `${meta}/fetch`,
    creating: `${meta}/creating`,
  };
}

/** Every name in `.replicator/` that is opened, and the kind it must be. */
function expectedKinds(l: Layout): [string, MetaKind][] {
  const files = [l.config, l.kml, l.expect, l.state, l.lock, l.txn, l.txnRecords, l.lentoPid];
  const derived = [
    ...[l.config, l.expect, l.txn, l.kml].map((p) => `${p}.tmp`),
    ...["-wal", "-shm", "-journal"].map((s) => l.state + s),
    ...["", "-wal", "-shm", "-journal"].map((s) => `${l.state}.new${s}`),
  ];
  return [
    ...[...files, ...derived, l.creating].map((p): [string, MetaKind] => [p, "file"]),
    [l.staging, "directory"],
    [l.fetch, "directory"],
    [l.lentoSock, "socket"],
  ];
}

/**
 * The confinement gate every open passes first: `.replicator` must be a real
 * directory, and each metadata name that exists must be what it should be
 * (never a symlink). Throws MetadataError naming the offending file.
 */
export function checkLayout(l: Layout): void {
  const meta = checkMeta(l.meta, "directory");
  if (!meta) throw new MetadataError(l.meta, `${l.meta} does not exist`);
  for (const [path, kind] of expectedKinds(l)) checkMeta(path, kind);
}
