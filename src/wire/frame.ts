/**
 * Frames of the wire protocol (docs/protocol.md): a 12-byte header and a
 * payload of at most MAX_PAYLOAD bytes. The decoder is incremental (bytes
 * arrive in any chunking) and checks every header rule before it buffers
 * a payload, so a hostile peer cannot make it allocate more than one
 * frame's limit.
 *
 * @example
 * ```ts
 * const bytes = encodeFrame({ type: MsgType.Bye, flags: 0, call: 1, payload: new Uint8Array() });
 * const d = new FrameDecoder();
 * const [frame] = d.push(bytes); // frame.type === MsgType.Bye
 * d.end(); // throws ProtocolError if the stream stopped inside a frame
 * ```
 *
 * @module
 */

import { HostilePeerError } from "../errors.ts";

/** Bytes of a frame header. */
export const HEADER_BYTES = 12;
/** Largest payload of one frame. */
export const MAX_PAYLOAD = 4 * 1024 * 1024;
/** Largest RECORDS or DATA payload a sender writes (and a deflated DATA unpacks to). */
export const SEND_BYTES = 1 << 20;
/** Flag: the last frame of a reply. */
export const FLAG_END = 0x01;
/** Flag (DATA only): the payload is raw DEFLATE of the bytes (FILE? asked with `compress`). */
export const FLAG_DEFLATE = 0x02;

/** Message types (docs/protocol.md, "Message types"). */
export enum MsgType {
  Hello = 1,
  Welcome = 2,
  Error = 3,
  RecordsRequest = 4,
  Records = 5,
  FileRequest = 6,
  Data = 7,
  PositionRequest = 8,
  Position = 9,
  CaptureRequest = 10,
  PullRequest = 11,
  Result = 12,
  Bye = 13,
}

const LAST_TYPE = MsgType.Bye;
/** Types that belong to the session rather than to a call (call id 0). */
const SESSION_TYPES = new Set([MsgType.Hello, MsgType.Welcome, MsgType.Error]);

/** One frame. */
export interface Frame {
  type: MsgType;
  flags: number;
  /** The call it belongs to; 0 only for HELLO, WELCOME and a session-wide ERROR. */
  call: number;
  payload: Uint8Array;
}

/** Which rule a peer broke: the `code` of the ERROR message we answer with. */
export type ProtocolCode = "protocol" | "limit";

/** A peer's bytes broke docs/protocol.md; the session cannot go on. */
export class ProtocolError extends HostilePeerError {
  readonly code: ProtocolCode;
  constructor(code: ProtocolCode, message: string) {
    super(`protocol error: ${message}`);
    this.code = code;
  }
}

/** The header rules, shared by encoder (our bug) and decoder (their bytes). */
function headerProblem(type: number, flags: number, call: number, length: number): string | null {
  if (length > MAX_PAYLOAD) return `a frame of ${length} bytes (the limit is ${MAX_PAYLOAD})`;
  if (!(type >= 1 && type <= LAST_TYPE)) return `unknown message type ${type}`;
  const allowed = FLAG_END | (type === MsgType.Data ? FLAG_DEFLATE : 0);
  if (flags & ~allowed) return `unknown flags 0x${flags.toString(16)} on message type ${type}`;
  if (call === 0 && !SESSION_TYPES.has(type)) return `message type ${type} outside any call`;
  return null;
}

/** The bytes of one frame. Throws RangeError on a frame that breaks the rules. */
export function encodeFrame(f: Frame): Uint8Array {
  const problem = headerProblem(f.type, f.flags, f.call, f.payload.length);
  if (problem) throw new RangeError(`cannot send ${problem}`);
  if (!Number.isInteger(f.call) || f.call < 0 || f.call > 0xffff_ffff) {
    throw new RangeError(`cannot send call id ${f.call}`);
  }
  const out = new Uint8Array(HEADER_BYTES + f.payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, f.payload.length, true);
  v.setUint8(4, f.type);
  v.setUint8(5, f.flags);
  v.setUint16(6, 0, true);
  v.setUint32(8, f.call, true);
  out.set(f.payload, HEADER_BYTES);
  return out;
}

/** Turns a byte stream cut anywhere into frames. */
export class FrameDecoder {
  #buf = new Uint8Array(64 * 1024);
  #len = 0;
  /** Bytes taken from the stream so far (for error messages). */
  #offset = 0;

  /** Adds bytes; returns the frames they complete. Throws ProtocolError. */
  push(chunk: Uint8Array): Frame[] {
    this.#append(chunk);
    const frames: Frame[] = [];
    let at = 0;
    while (this.#len - at >= HEADER_BYTES) {
      const v = new DataView(this.#buf.buffer, at, HEADER_BYTES);
      const length = v.getUint32(0, true);
      const type = v.getUint8(4);
      const flags = v.getUint8(5);
      const call = v.getUint32(8, true);
      const problem = headerProblem(type, flags, call, length) ??
        (v.getUint16(6, true) !== 0 ? "reserved header bytes are not zero" : null);
      if (problem) {
        throw new ProtocolError(
          length > MAX_PAYLOAD ? "limit" : "protocol",
          `${problem}, at byte ${this.#offset + at} of the stream`,
        );
      }
      if (this.#len - at < HEADER_BYTES + length) break;
      const start = at + HEADER_BYTES;
      frames.push({ type, flags, call, payload: this.#buf.slice(start, start + length) });
      at = start + length;
    }
    this.#consume(at);
    return frames;
  }

  /** The stream ended: throws ProtocolError if it stopped inside a frame. */
  end(): void {
    if (this.#len > 0) {
      throw new ProtocolError(
        "protocol",
        `the stream ended inside a frame (${this.#len} bytes of it arrived)`,
      );
    }
  }

  #append(chunk: Uint8Array): void {
    if (this.#len + chunk.length > this.#buf.length) {
      // At most one whole frame plus one chunk is ever kept.
      const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + chunk.length));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    this.#buf.set(chunk, this.#len);
    this.#len += chunk.length;
  }

  #consume(n: number): void {
    if (n === 0) return;
    this.#buf.copyWithin(0, n, this.#len);
    this.#len -= n;
    this.#offset += n;
  }
}

/** The frames of a byte stream, in order; throws ProtocolError on a broken one. */
export async function* readFrames(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<Frame, void, undefined> {
  const d = new FrameDecoder();
  for await (const chunk of stream) yield* d.push(chunk);
  d.end();
}
