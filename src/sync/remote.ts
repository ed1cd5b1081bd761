/**
 * A peer on the other end of a session (ssh or https): each Peer method is a
 * call of docs/protocol.md. Everything the peer sends back is checked here:
 * records are whole and sound before pull decodes them, results have the
 * fields a report prints, nothing else.
 *
 * @module
 */

import { checkFrame, frameLength } from "../kml/record.ts";
import type { Frame as KmlFrame } from "../kml/log.ts";
import type { CaptureResult } from "../capture/capture.ts";
import { zlib } from "../wire/zlib.ts";
import { FLAG_DEFLATE, FLAG_END, MsgType, ProtocolError, SEND_BYTES } from "../wire/frame.ts";
import { type Identity, printable, PROTOCOL_VERSION } from "../wire/messages.ts";
import type { Welcome } from "../wire/handshake.ts";
import { RemoteError, type Session } from "../wire/session.ts";
import { ContentGoneError, type Peer, type PeerIdentity } from "./peer.ts";
import type { PullResult } from "./pull.ts";

/** Identity as the handshake carries it. */
export function toWire(who: PeerIdentity): Identity {
  return {
    protocol: PROTOCOL_VERSION,
    volume: who.volumeId,
    host: who.hostId,
    name: who.hostName,
    incarnation: who.incarnation,
    epoch: who.epoch,
  };
}

/** Identity from a HELLO or WELCOME. */
export function fromWire(w: Identity | Welcome): PeerIdentity {
  return {
    volumeId: w.volume,
    hostId: w.host,
    hostName: w.name,
    incarnation: w.incarnation,
    epoch: w.epoch,
    readOnly: "readOnly" in w ? w.readOnly : false,
  };
}

/** How this side asks for files. */
export interface ReadOptions {
  /** Ask for DATA deflated where it helps (--compress). */
  compress?: boolean;
}

/** The peer at the other end of `session`. */
export function remotePeer(
  session: Session,
  who: PeerIdentity,
  label: string,
  opts: ReadOptions = {},
): Peer {
  const count = { bytes: 0 };
  return {
    who,
    label,
    records: (offset, limit) => records(session, offset, limit),
    read: (path, from) => read(session, path, from, !!opts.compress, count),
    received: () => count.bytes,
    readPosition: async (host, incarnation) => {
      const m = await session.ask(
        { type: MsgType.PositionRequest, host, incarnation },
        MsgType.Position,
      );
      return m.position;
    },
    capture: async () => {
      const m = await session.ask({ type: MsgType.CaptureRequest }, MsgType.Result);
      return checkCapture(m.result, who.hostName);
    },
    pullFromUs: async () => {
      const m = await session.ask({ type: MsgType.PullRequest }, MsgType.Result);
      return checkPull(m.result, who.hostName);
    },
    close: () => session.close(true),
  };
}

/** The records of a RECORDS stream, with their offsets in the peer's log. */
async function* records(
  session: Session,
  offset: number,
  limit: number,
): AsyncGenerator<KmlFrame> {
  let at = offset;
  const ask = Number.isSafeInteger(limit)
    ? { type: MsgType.RecordsRequest as const, offset, limit }
    : { type: MsgType.RecordsRequest as const, offset };
  for await (const f of session.call(ask)) {
    if (f.type !== MsgType.Records) {
      throw new ProtocolError("protocol", `${MsgType[f.type]} in reply to RECORDS?`);
    }
    for (let i = 0; i < f.payload.length;) {
      const problem = checkFrame(f.payload.subarray(i));
      if (problem) {
        throw new ProtocolError("protocol", `RECORDS: the record at ${at} is invalid: ${problem}`);
      }
      const len = frameLength(f.payload.subarray(i));
      yield { offset: at, bytes: f.payload.subarray(i, i + len) };
      i += len;
      at += len;
    }
  }
}

/** The bytes of a DATA stream; `changed` becomes ContentGoneError. */
async function* read(
  session: Session,
  path: string,
  from: number,
  compress: boolean,
  count: { bytes: number },
): AsyncGenerator<Uint8Array> {
  try {
    for await (const f of session.call({ type: MsgType.FileRequest, path, from, compress })) {
      if (f.type !== MsgType.Data) {
        throw new ProtocolError("protocol", `${MsgType[f.type]} in reply to FILE?`);
      }
      count.bytes += f.payload.length;
      const bytes = f.flags & FLAG_DEFLATE ? await inflate(f.payload) : f.payload;
      if (bytes.length > 0) yield bytes;
      if (f.flags & FLAG_END) return;
    }
  } catch (e) {
    if (e instanceof RemoteError && e.code === "changed") throw new ContentGoneError(e.message);
    throw e;
  }
}

/** A deflated DATA payload, unpacked to at most the 1 MiB a DATA frame may carry. */
async function inflate(payload: Uint8Array): Promise<Uint8Array> {
  const { inflateRawSync } = await zlib();
  try {
    return inflateRawSync(payload, { maxOutputLength: SEND_BYTES });
  } catch (e) {
    throw new ProtocolError("protocol", `DATA: bad deflated payload (${(e as Error).message})`);
  }
}

/** A CAPTURE? result, checked. */
function checkCapture(r: Record<string, unknown>, peer: string): CaptureResult {
  const via = r.via;
  if (via !== "scan" && via !== "lento" && via !== "none") bad(peer, "via");
  return { via, recorded: count(r, "recorded", peer), problems: texts(r, "problems", peer) };
}

/** A PULL? result, checked. */
function checkPull(r: Record<string, unknown>, peer: string): PullResult {
  return {
    received: count(r, "received", peer),
    applied: count(r, "applied", peer),
    fetched: count(r, "fetched", peer),
    fetchedBytes: count(r, "fetchedBytes", peer),
    receivedBytes: count(r, "receivedBytes", peer),
    conflicts: texts(r, "conflicts", peer),
    deferred: texts(r, "deferred", peer),
    rejected: count(r, "rejected", peer),
    heldBack: count(r, "heldBack", peer),
    problems: texts(r, "problems", peer),
  };
}

function count(r: Record<string, unknown>, k: string, peer: string): number {
  const v = r[k];
  return Number.isSafeInteger(v) && (v as number) >= 0 ? v as number : bad(peer, k);
}

function texts(r: Record<string, unknown>, k: string, peer: string): string[] {
  const v = r[k];
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) bad(peer, k);
  return (v as string[]).map((x) => printable(x, 1024)); // printed on our terminal
}

function bad(peer: string, k: string): never {
  throw new ProtocolError("protocol", `RESULT from ${peer}: ${k} is missing or malformed`);
}
