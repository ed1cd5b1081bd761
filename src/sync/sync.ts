/**
 * A sync between two replicas: both record their local changes, then each
 * pulls what the other has (noting, in the same Expect update, how far the
 * other has read it).
 * The order is the same whichever side started, so `sync -C A B` and
 * `sync -C B A` reach the same state.
 *
 * @module
 */

import { capture, type CaptureResult } from "../capture/capture.ts";
import type { Volume } from "../volume/volume.ts";
import { PeerMismatchError } from "../errors.ts";
import { localPeer } from "./peer.ts";
import { type Progress, pull, type PullResult } from "./pull.ts";

/** The outcome of syncing with one peer, from this replica's point of view. */
export interface SyncReport {
  peer: string;
  local: { capture: CaptureResult; pull: PullResult };
  remote: { capture: CaptureResult; pull: PullResult };
}

/** How a sync runs. */
export interface SyncOptions {
  progress?: Progress;
  /** Roots of replicas whose lento has recorded every change: not scanned. */
  journaled?: Set<string>;
}

/** Syncs two open replicas of the same volume in both directions. */
export function syncVolumes(local: Volume, remote: Volume, opts: SyncOptions = {}): SyncReport {
  const { progress, journaled } = opts;
  if (local.config.volumeId !== remote.config.volumeId) {
    throw new PeerMismatchError(
      `${remote.root} is a replica of another volume (${remote.config.volumeId}, ` +
        `not ${local.config.volumeId}); check the peer's path`,
    );
  }
  if (local.hostId === remote.hostId) {
    throw new PeerMismatchError(`${remote.root} is this same replica`);
  }
  const record = (v: Volume) =>
    journaled?.has(v.root) ? { via: "lento" as const, recorded: 0, problems: [] } : capture(v);
  const localCapture = record(local);
  const remoteCapture = record(remote);
  const localPull = pull(local, localPeer(remote), progress);
  const remotePull = pull(remote, localPeer(local), progress);
  return {
    peer: remote.root,
    local: { capture: localCapture, pull: localPull },
    remote: { capture: remoteCapture, pull: remotePull },
  };
}
