/**
 * What a sync needs from the other replica, as a session (docs/protocol.md,
 * "Decisions"): who it is, its records from an offset, a file's bytes, how far
 * it has read our log, and that it record its own changes and pull ours.
 * A local directory (`localPeer`) and a network session (`remotePeer`) are
 * the two implementations; the planning and apply code never knows which.
 *
 * @module
 */

import type { Frame } from "../kml/log.ts";
import type { Volume } from "../volume/volume.ts";
import { checkRelativePath } from "../fs/paths.ts";
import type { Beneath } from "../fs/beneath.ts";
import type { RawFile } from "../fs/raw_file.ts";
import { noFileThere } from "../errors.ts";
import { captureFully, type CaptureResult } from "../capture/capture.ts";
import type { PullResult } from "./pull.ts";

/** Who a peer is (the handshake's fields). */
export interface PeerIdentity {
  volumeId: string;
  hostId: string;
  hostName: string;
  /** Incarnation of the peer's KML. */
  incarnation: string;
  /** The permit epoch the peer knows. */
  epoch: number;
  /** The peer takes nothing from us (`serve --read-only`). */
  readOnly: boolean;
}

/** A read position in a log. */
export interface Position {
  seq: number;
  offset: number;
}

/** The content at a path has changed or gone: it stays wanted, a later pull brings it. */
export class ContentGoneError extends Error {}

/** The other replica of a sync. */
export interface Peer {
  readonly who: PeerIdentity;
  /** How the user named it (a path or a URL), for messages. */
  readonly label: string;
  /**
   * Raw records of the peer's KML from `offset` (a record boundary): up to
   * the one that brings them to `limit` bytes, or to the log's end.
   */
  records(offset: number, limit: number): AsyncIterable<Frame>;
  /**
   * The bytes of the peer's regular file at `path`, from byte `from`. Throws
   * ContentGoneError if no regular file is there. The bytes are not trusted:
   * the receiver hashes them.
   */
  read(path: string, from: number): AsyncIterable<Uint8Array>;
  /**
   * A replica in this process only: its regular file at `path`, opened
   * confined beneath its root (counted as received). Content is then copied
   * straight into staging, with nothing fetched ahead.
   */
  openLocal?(path: string): RawFile;
  /** Bytes of file content received from the peer so far, as they travelled (deflated or not). */
  received(): number;
  /** How far the peer has read and applied the log of `host` in `incarnation`. */
  readPosition(host: string, incarnation: string): Promise<Position | null>;
  /** The peer records its own local changes. */
  capture(): Promise<CaptureResult>;
  /** The peer pulls from us (`local`); a read-only peer refuses. */
  pullFromUs(): Promise<PullResult>;
  /** Ends the session (releases the peer's lock). */
  close(): Promise<void>;
}

/** Bytes per chunk a file is read in. */
export const CHUNK_BYTES = 1 << 20;

/** Identity of an open replica. */
export function identityOf(v: Volume, readOnly = false): PeerIdentity {
  return {
    volumeId: v.config.volumeId,
    hostId: v.hostId,
    hostName: v.config.hostName,
    incarnation: v.kml.header.incarnation,
    epoch: v.permit().epoch,
    readOnly,
  };
}

/** The read position `v` keeps for `host`'s log, if it refers to `incarnation`. */
export function positionIn(v: Volume, host: string, incarnation: string): Position | null {
  const e = v.readExpect().find((x) => x.host === host && x.incarnation === incarnation);
  return e ? { seq: e.readSeq, offset: e.readOffset } : null;
}

/** The bytes of `path` below the root of `tree` from `from`, confined beneath it. */
export async function* readBeneath(
  tree: Beneath,
  path: string,
  from: number,
): AsyncGenerator<Uint8Array> {
  checkRelativePath(path);
  let file: RawFile;
  try {
    file = tree.openRaw(path);
  } catch (e) {
    if (gone(e)) throw new ContentGoneError(`${path}: no regular file there now`);
    throw e;
  }
  try {
    // Synchronous reads: each asynchronous one is a round trip through the
    // runtime's thread pool, which costs a small file more than its read.
    if (from > 0) file.seek(from);
    // Buffers sized to what the file holds: most files are small, and a
    // fresh 1 MiB per read would dominate their cost. One byte more tells the end.
    let left = file.opened().size - from;
    let grew = false;
    for (;;) {
      const want = left > 0 ? Math.min(CHUNK_BYTES, left) : grew ? CHUNK_BYTES : 1;
      const buf = new Uint8Array(want);
      const n = file.read(buf);
      if (n === 0) return;
      left -= n;
      grew ||= left < 0;
      yield buf.subarray(0, n);
    }
  } finally {
    file.close();
  }
}

/**
 * The records of `frames` (read from `offset`) up to the one that brings
 * them to `limit` bytes: a window of a log, so a pull holds a bounded part.
 */
export function* windowOf(
  frames: Iterable<Frame>,
  offset: number,
  limit: number,
): Generator<Frame> {
  for (const f of frames) {
    yield f;
    if (f.offset + f.bytes.length - offset >= limit) return;
  }
}

/** True if `e` says the peer has no regular file at a path (any more). */
export function gone(e: unknown): boolean {
  return e instanceof ContentGoneError || noFileThere(e);
}

/**
 * A peer that is a replica opened in this process. `pullFromUs` runs the
 * pull the other way with `us` as its peer (given by the sync, which holds
 * both).
 */
export function localPeer(
  v: Volume,
  opts: { journaled?: boolean; pullFromUs?: () => Promise<PullResult> } = {},
): Peer {
  let received = 0;
  return {
    who: identityOf(v),
    label: v.root,
    records: async function* (offset, limit) {
      yield* windowOf(v.kml.frames(offset), offset, limit);
    },
    read: async function* (path, from) {
      for await (const chunk of readBeneath(v.tree(), path, from)) {
        received += chunk.length;
        yield chunk;
      }
    },
    openLocal: (path) => {
      checkRelativePath(path);
      const file = v.tree().openRaw(path);
      received += file.opened().size;
      return file;
    },
    received: () => received,
    readPosition: (host, incarnation) => Promise.resolve(positionIn(v, host, incarnation)),
    capture: () => captureFully(v, opts.journaled),
    pullFromUs: () => opts.pullFromUs ? opts.pullFromUs() : Promise.reject(new Error("no pull")),
    close: () => Promise.resolve(), // the volume's tree is closed with the volume
  };
}
