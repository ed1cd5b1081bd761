/**
 * Serving a replica over a session: the answers to the other side's calls
 * (docs/protocol.md). Both ends serve: the server answers the client's
 * RECORDS?, FILE?, POSITION?, CAPTURE? and PULL?; the client answers the
 * server's RECORDS?, FILE? and POSITION? while the server pulls from it.
 *
 * Every path a request names was checked by decodeMessage and is opened
 * through Beneath; nothing a request says can reach outside the volume.
 *
 * @module
 */

import { captureFully } from "../capture/capture.ts";
import { KML_HEADER_BYTES } from "../kml/log.ts";
import type { Volume } from "../volume/volume.ts";
import { CorruptLogError } from "../errors.ts";
import { zlib } from "../wire/zlib.ts";
import { FLAG_DEFLATE, MsgType, ProtocolError, SEND_BYTES } from "../wire/frame.ts";
import { encodeJson } from "../wire/json.ts";
import { changesVolume, type Message } from "../wire/messages.ts";
import type { Handler, Reply } from "../wire/session.ts";
import { ContentGoneError, type Peer, positionIn, readBeneath, windowOf } from "./peer.ts";
import { pull } from "./pull.ts";

/** What a side serves. */
export interface ServeOptions {
  /** Answer CAPTURE? and PULL? (the server side only). */
  server: boolean;
  /** Refuse PULL? (`serve --read-only`). */
  readOnly?: boolean;
  /** This replica's lento records its changes: CAPTURE? scans nothing. */
  journaled?: boolean;
  /** The other side, as a peer to pull from (PULL?). */
  peer?: () => Peer;
}

/**
 * The handler that answers calls about `vol`. Its errors name paths relative
 * to the volume: where the volume lives on this host is not the peer's business.
 */
export function volumeHandler(vol: Volume, opts: ServeOptions): Handler {
  const answer = answers(vol, opts);
  let working = false;
  return async (m: Message, reply: Reply) => {
    // Two at once would share the volume's staging and fetch directories.
    // The peer waits for one before the next.
    const changes = changesVolume(m.type);
    if (changes && working) {
      return await reply.error("limit", "one CAPTURE? or PULL? at a time in a session");
    }
    working ||= changes;
    try {
      await answer(m, reply);
    } catch (e) {
      if (e instanceof Error) e.message = e.message.replaceAll(`${vol.root}/`, "");
      throw e;
    } finally {
      if (changes) working = false;
    }
  };
}

function answers(vol: Volume, opts: ServeOptions): Handler {
  return async (m: Message, reply: Reply) => {
    switch (m.type) {
      case MsgType.RecordsRequest:
        return await sendRecords(vol, m.offset, m.limit ?? Infinity, reply);
      case MsgType.FileRequest:
        return await sendFile(vol, m.path, m.from, m.compress, reply);
      case MsgType.PositionRequest:
        return await reply.message({
          type: MsgType.Position,
          position: positionIn(vol, m.host, m.incarnation),
        });
      case MsgType.CaptureRequest: {
        if (!opts.server) break;
        const r = await captureFully(vol, opts.journaled);
        return await reply.message({ type: MsgType.Result, result: fit({ ...r }) });
      }
      case MsgType.PullRequest: {
        if (!opts.server || !opts.peer) break;
        if (opts.readOnly) {
          return await reply.error("read-only", "this server is read-only: it takes no changes");
        }
        const r = await pull(vol, opts.peer());
        return await reply.message({ type: MsgType.Result, result: fit({ ...r }) });
      }
    }
    throw new ProtocolError("protocol", `${MsgType[m.type]} is not a request this side answers`);
  };
}

/**
 * RECORDS: whole records from `offset`, up to SEND_BYTES per frame, ending
 * with the record that brings the reply to `limit` bytes (or the log's end).
 */
async function sendRecords(
  vol: Volume,
  offset: number,
  limit: number,
  reply: Reply,
): Promise<void> {
  const end = vol.kml.size;
  if (offset < KML_HEADER_BYTES || offset > end) {
    return await reply.error("protocol", `offset ${offset} is outside the log (${end} bytes)`);
  }
  let buf = new Uint8Array(SEND_BYTES);
  let len = 0;
  try {
    for (const f of windowOf(vol.kml.frames(offset, end), offset, limit)) {
      if (len + f.bytes.length > buf.length) {
        await reply.frame(MsgType.Records, buf.subarray(0, len), false);
        buf = new Uint8Array(SEND_BYTES);
        len = 0;
      }
      buf.set(f.bytes, len);
      len += f.bytes.length;
    }
  } catch (e) {
    if (!(e instanceof CorruptLogError) || e.offset !== offset) throw e;
    return await reply.error("protocol", `offset ${offset} is not the start of a record`);
  }
  await reply.frame(MsgType.Records, buf.subarray(0, len), true);
}

/**
 * DATA: the file's bytes from `from`, the last frame marked END (an empty one
 * for an empty file). With `compress`, a frame that deflates to under 90 %
 * goes deflated. Each frame is held until the next is read, so that a small
 * file is one frame, one write: a separate END frame would wait on the
 * peer's delayed acknowledgement (Nagle) over TCP.
 */
async function sendFile(
  vol: Volume,
  path: string,
  from: number,
  compress: boolean,
  reply: Reply,
): Promise<void> {
  let held: Uint8Array | null = null;
  const send = async (piece: Uint8Array, end: boolean) => {
    const packed = compress && piece.length > 0
      ? (await zlib()).deflateRawSync(piece, { level: 1 })
      : null;
    if (packed && packed.length < piece.length * 0.9) {
      await reply.frame(MsgType.Data, packed, end, FLAG_DEFLATE);
    } else await reply.frame(MsgType.Data, piece, end);
  };
  try {
    for await (const chunk of readBeneath(vol.tree(), path, from)) {
      for (let i = 0; i < chunk.length; i += SEND_BYTES) {
        if (held) await send(held, false);
        held = chunk.subarray(i, i + SEND_BYTES);
      }
    }
  } catch (e) {
    if (!(e instanceof ContentGoneError) || reply.ended) throw e;
    return await reply.error("changed", (e as Error).message);
  }
  await send(held ?? new Uint8Array(), true);
}

/** A report made to fit one RESULT payload: long lists are cut, and say so. */
export function fit(r: Record<string, unknown>): Record<string, unknown> {
  for (const keep of [200, 50, 10, 0]) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r)) {
      if (!Array.isArray(v) || v.length <= keep) out[k] = v;
      else out[k] = [...v.slice(0, keep), `… and ${v.length - keep} more`];
    }
    try {
      encodeJson(out);
      return out;
    } catch { /* still too long: keep fewer */ }
  }
  return { ...r, conflicts: [], deferred: [], problems: ["the report was too long to send"] };
}
