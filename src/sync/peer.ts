/**
 * What a sync needs from the other replica. A directory peer is another
 * Volume opened in this process; network transports implement the same shape.
 *
 * @module
 */

import type { Frame } from "../kml/log.ts";
import type { Volume } from "../volume/volume.ts";
import { checkRelativePath } from "../fs/paths.ts";
import { Beneath } from "../fs/beneath.ts";
import { copyHashing } from "./copy.ts";

/** A replica records are read from and files fetched from. */
export interface PeerSource {
  volumeId: string;
  hostId: string;
  hostName: string;
  /** Incarnation of the peer's KML. */
  incarnation: string;
  /** Raw records of the peer's KML from `offset` to its end. */
  frames(offset: number): Iterable<Frame>;
  /**
   * Copies the peer's current file at `path` to the local file `dest`
   * (created, with permission bits `perm`), returning the bytes' SHA-256.
   * Never follows symlinks; throws FsError ENOENT/ELOOP/ENOTDIR if no
   * regular file is there.
   */
  fetchFile(path: string, dest: string, perm: number): string;
  /**
   * How far the peer has read and applied the log of `host` (item 3 of that
   * host's Expect), if it refers to `incarnation`.
   */
  readPosition(host: string, incarnation: string): { seq: number; offset: number } | null;
}

/** A peer that is a volume on a local path. */
export function localPeer(v: Volume): PeerSource {
  return {
    volumeId: v.config.volumeId,
    hostId: v.hostId,
    hostName: v.config.hostName,
    incarnation: v.kml.header.incarnation,
    frames: (offset) => v.kml.frames(offset),
    fetchFile: (path, dest, perm) => copyOut(v.root, path, dest, perm),
    readPosition: (host, incarnation) => {
      const e = v.readExpect().find((x) => x.host === host && x.incarnation === incarnation);
      return e ? { seq: e.readSeq, offset: e.readOffset } : null;
    },
  };
}

/** Copies a file of the replica at `root`, confined beneath it. */
function copyOut(root: string, path: string, dest: string, perm: number): string {
  checkRelativePath(path);
  const t = Beneath.open(root);
  try {
    return copyHashing(t.openFile(path), dest, perm);
  } finally {
    t.close();
  }
}
