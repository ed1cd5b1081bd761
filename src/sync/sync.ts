/**
 * A sync between two replicas: both record their local changes, then each
 * pulls what the other has (noting, in the same Expect update, how far the
 * other has read it).
 * The order is the same whichever side started, so `sync -C A B` and
 * `sync -C B A` reach the same state, whether B is a directory or a host.
 *
 * @module
 */

import { captureFully, type CaptureResult } from "../capture/capture.ts";
import type { Volume } from "../volume/volume.ts";
import { PeerMismatchError } from "../errors.ts";
import { localPeer, type Peer } from "./peer.ts";
import { type Progress, pull, type PullResult } from "./pull.ts";

/** The outcome of syncing with one peer, from this replica's point of view. */
export interface SyncReport {
  peer: string;
  /** The peer's host name (from its handshake). */
  peerName: string;
  local: { capture: CaptureResult; pull: PullResult };
  /** The peer's side; `pull` is null if the peer is read-only. */
  remote: { capture: CaptureResult; pull: PullResult | null };
}

/** How a sync runs. */
export interface SyncOptions {
  progress?: Progress;
  /** This replica's lento has recorded every change: no scan here. */
  journaled?: boolean;
  /** Only this side pulls (a clone: the peer knew nothing of this replica at the handshake). */
  oneWay?: boolean;
}

/** Syncs the open replica `local` with `peer`, in both directions. */
export async function syncWith(
  local: Volume,
  peer: Peer,
  opts: SyncOptions = {},
): Promise<SyncReport> {
  const { who } = peer;
  if (local.config.volumeId !== who.volumeId) {
    throw new PeerMismatchError(
      `${peer.label} is a replica of another volume (${who.volumeId}, ` +
        `not ${local.config.volumeId}); check the peer's path`,
    );
  }
  if (local.hostId === who.hostId) {
    throw new PeerMismatchError(`${peer.label} is this same replica`);
  }
  local.rememberHost(who.hostId, who.hostName);
  const localCapture = await captureFully(local, opts.journaled);
  const remoteCapture = await peer.capture();
  const localPull = await pull(local, peer, opts.progress);
  const remotePull = who.readOnly || opts.oneWay ? null : await peer.pullFromUs();
  return {
    peer: peer.label,
    peerName: who.hostName,
    local: { capture: localCapture, pull: localPull },
    remote: { capture: remoteCapture, pull: remotePull },
  };
}

/** Syncs two replicas open in this process (both locked by the caller). */
export async function syncVolumes(
  local: Volume,
  remote: Volume,
  opts: SyncOptions & { remoteJournaled?: boolean } = {},
): Promise<SyncReport> {
  remote.rememberHost(local.hostId, local.config.hostName);
  const back = localPeer(local);
  const peer = localPeer(remote, {
    journaled: opts.remoteJournaled,
    pullFromUs: () => pull(remote, back, opts.progress),
  });
  try {
    return await syncWith(local, peer, opts);
  } finally {
    await peer.close();
    await back.close();
  }
}
