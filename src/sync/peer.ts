/**
 * What a sync needs from the other replica. A directory peer is another
 * Volume opened in this process; network transports implement the same shape.
 *
 * @module
 */

import type { Frame } from "../kml/log.ts";
import type { Volume } from "../volume/volume.ts";
import { checkRelativePath } from "../fs/paths.ts";
import { lstatNs } from "../fs/stat.ts";
import { copyHashing } from "./copy.ts";
import { Tree } from "../apply/steps.ts";

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
   * Never follows symlinks.
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
  const tree = new Tree(v.root);
  return {
    volumeId: v.config.volumeId,
    hostId: v.hostId,
    hostName: v.config.hostName,
    incarnation: v.kml.header.incarnation,
    frames: (offset) => v.kml.frames(offset),
    fetchFile: (path, dest, perm) => copyOut(tree, path, dest, perm),
    readPosition: (host, incarnation) => {
      const e = v.readExpect().find((x) => x.host === host && x.incarnation === incarnation);
      return e ? { seq: e.readSeq, offset: e.readOffset } : null;
    },
  };
}

function copyOut(tree: Tree, path: string, dest: string, perm: number): string {
  checkRelativePath(path);
  if (!tree.parentsAreDirectories(path)) {
    throw new Deno.errors.NotFound(`${path}: a parent is not a directory on the peer`);
  }
  if (lstatNs(tree.abs(path))?.type !== "f") {
    throw new Deno.errors.NotFound(`${path} is no longer a file on the peer`);
  }
  return copyHashing(tree.abs(path), dest, perm);
}
