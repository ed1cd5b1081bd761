/**
 * `.replicator/volume.json`: which volume this is, which replica, and the
 * named peers. Small, human-readable, replaced atomically.
 *
 * @module
 */

import { writeFileAtomic } from "../fs/durable.ts";
import { FormatError } from "../errors.ts";

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
  /** Apply setuid/setgid bits as received (default: dropped, as Unison does). */
  keepSetid?: boolean;
}

/** Reads and validates volume.json. */
export function readConfig(path: string): VolumeConfig {
  let c: VolumeConfig;
  try {
    c = JSON.parse(Deno.readTextFileSync(path));
  } catch (e) {
    throw new FormatError(`${path} is unreadable or not JSON: ${(e as Error).message}`);
  }
  const hex = /^[0-9a-f]{32}$/;
  if (c.format !== CONFIG_VERSION || !hex.test(c.volumeId) || !hex.test(c.hostId)) {
    throw new FormatError(`${path} is not a version ${CONFIG_VERSION} volume config`);
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
