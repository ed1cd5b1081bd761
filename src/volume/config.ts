/**
 * `.replicator/volume.json`: which volume this is, which replica, and the
 * named peers. Small, human-readable, replaced atomically.
 *
 * @module
 */

import { writeFileAtomic } from "../fs/durable.ts";
import { MetadataError } from "../errors.ts";
import { readRegularText } from "../fs/nofollow.ts";

/** Version of the volume.json layout. */
export const CONFIG_VERSION = 1;

/** The replica's identity and settings. */
export interface VolumeConfig {
  format: number;
  /** Shared by every replica of the volume (32 hex digits). */
  volumeId: string;
  /** This replica's random, stable id (32 hex digits). */
  hostId: string;
  /** Human name of this replica. */
  hostName: string;
  /** Named peers: name -> URL or path. */
  peers: Record<string, string>;
  /** How to reach named peers on other hosts, by name (`peer add … --ssh …`). */
  peerOptions?: Record<string, PeerOptions>;
  /** Apply setuid/setgid bits as received (default: dropped, as Unison does). */
  keepSetid?: boolean;
}

/** Per-peer transport options, as the command line's flags of the same names. */
export interface PeerOptions {
  ssh?: string;
  compress?: boolean;
  remoteCmd?: string;
  tokenFile?: string;
  caFile?: string;
}

/** Reads and validates volume.json (never through a symlink). */
export function readConfig(path: string): VolumeConfig {
  let c: VolumeConfig;
  try {
    c = JSON.parse(readRegularText(path));
  } catch (e) {
    if (e instanceof MetadataError) throw e;
    if (e instanceof Deno.errors.NotFound) {
      throw new MetadataError(
        path,
        `${path} is missing, and it holds this replica's identity: restore it from a backup, ` +
          `or move ${path.slice(0, path.lastIndexOf("/"))} away and make the replica again ` +
          `with 'replicator clone'`,
      );
    }
    throw new MetadataError(
      path,
      `${path} is unreadable or not JSON (${(e as Error).message}); restore it from a backup ` +
        `or make the replica again with 'replicator clone'`,
    );
  }
  const hex = /^[0-9a-f]{32}$/;
  if (c?.format !== CONFIG_VERSION || !hex.test(c.volumeId) || !hex.test(c.hostId)) {
    throw new MetadataError(path, `${path} is not a version ${CONFIG_VERSION} volume config`);
  }
  c.peers ??= {};
  return c;
}

/** Writes volume.json atomically. */
export function writeConfig(path: string, c: VolumeConfig): void {
  writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(c, null, 2) + "\n"));
}

/** 16 random bytes as 32 hex digits. */
export function randomId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}
