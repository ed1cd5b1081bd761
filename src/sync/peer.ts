/**
 * What a sync needs from the other replica. A directory peer is another
 * Volume opened in this process; network transports implement the same shape.
 *
 * @module
 */

import type { Frame } from "../kml/log.ts";
import type { Volume } from "../volume/volume.ts";
import { checkRelativePath } from "../fs/paths.ts";
import { HostilePeerError } from "../errors.ts";
import { lstatNs } from "../fs/stat.ts";
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
   * (created), returning the bytes' SHA-256. Never follows symlinks.
   */
  fetchFile(path: string, dest: string): string;
}

/** A peer that is a volume on a local path. */
export function localPeer(v: Volume): PeerSource {
  return {
    volumeId: v.config.volumeId,
    hostId: v.hostId,
    hostName: v.config.hostName,
    incarnation: v.kml.header.incarnation,
    frames: (offset) => v.kml.frames(offset),
    fetchFile: (path, dest) => copyOut(v.root, path, dest),
  };
}

function copyOut(root: string, path: string, dest: string): string {
  checkRelativePath(path);
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i++) {
    const st = lstatNs(`${root}/${parts.slice(0, i).join("/")}`);
    if (!st || st.type !== "d") {
      throw new HostilePeerError(`${path}: a parent is not a directory on the peer`);
    }
  }
  const st = lstatNs(`${root}/${path}`);
  if (!st || st.type !== "f") {
    throw new Deno.errors.NotFound(`${path} is no longer a file on the peer`);
  }
  return copyHashing(`${root}/${path}`, dest, st.size);
}
