/**
 * The control messages of the wire protocol (docs/protocol.md, "Message
 * types"): typed values to and from their JSON payloads. Every field a peer
 * sends is checked here, before any other code sees it: ids are 32 hex
 * digits, offsets are safe non-negative integers, paths pass the same check
 * as a record's path.
 *
 * @example
 * ```ts
 * const bytes = encodeMessage({ type: MsgType.FileRequest, path: "a/b", from: 0, compress: false });
 * const m = decodeMessage(MsgType.FileRequest, bytes); // { type, path: "a/b", from: 0, compress: false }
 * ```
 *
 * @module
 */

import { checkRelativePath } from "../fs/paths.ts";
import { MsgType, ProtocolError } from "./frame.ts";
import { decodeJson, encodeJson } from "./json.ts";

/** The protocol version this code speaks. */
export const PROTOCOL_VERSION = 2;
/** Longest text field (a name, an ERROR's message), in UTF-16 units as JSON.parse gives them. */
export const MAX_TEXT = 4096;

/**
 * Text a peer sent, made safe to print: control characters (which could
 * forge log lines or move a terminal's cursor) become "?", and it is cut to
 * `max` characters.
 */
export function printable(s: string, max = 255): string {
  const clean = [...s].map((c) => c < " " || c === "\x7f" ? "?" : c).join("");
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/** Who a side is: HELLO (client) and WELCOME (server, which adds `readOnly`). */
export interface Identity {
  protocol: number;
  volume: string;
  host: string;
  name: string;
  incarnation: string;
  epoch: number;
}

/** ERROR codes (docs/protocol.md, "Errors"). */
export const ERROR_CODES = [
  "busy",
  "auth",
  "volume",
  "changed",
  "read-only",
  "protocol",
  "limit",
  "internal",
] as const;
export type ErrorCode = typeof ERROR_CODES[number];

/**
 * Requests that change the responder's volume (a whole scan, or a pull and
 * its apply): long and silent, and one at a time per session.
 */
export function changesVolume(type: MsgType): boolean {
  return type === MsgType.CaptureRequest || type === MsgType.PullRequest;
}

/** A control message, by type. */
export type Message =
  | ({ type: MsgType.Hello } & Identity)
  | ({ type: MsgType.Welcome; readOnly: boolean } & Identity)
  | { type: MsgType.Error; code: ErrorCode; message: string }
  | { type: MsgType.RecordsRequest; offset: number; limit?: number }
  | { type: MsgType.FileRequest; path: string; from: number; compress: boolean }
  | { type: MsgType.PositionRequest; host: string; incarnation: string }
  | { type: MsgType.Position; position: { seq: number; offset: number } | null }
  | { type: MsgType.CaptureRequest }
  | { type: MsgType.PullRequest }
  | { type: MsgType.Result; result: Record<string, unknown> };

const IDENTITY = ["protocol", "volume", "host", "name", "incarnation", "epoch"] as const;

/** The JSON fields of each control message type, in wire order. */
const FIELDS: Partial<Record<MsgType, readonly string[]>> = {
  [MsgType.Hello]: IDENTITY,
  [MsgType.Welcome]: [...IDENTITY, "readOnly"],
  [MsgType.Error]: ["code", "message"],
  [MsgType.RecordsRequest]: ["offset", "limit"],
  [MsgType.FileRequest]: ["path", "from", "compress"],
  [MsgType.PositionRequest]: ["host", "incarnation"],
  [MsgType.Position]: ["seq", "offset"],
  [MsgType.CaptureRequest]: [],
  [MsgType.PullRequest]: [],
};

/** Fields a message may leave out. */
const OPTIONAL: Partial<Record<MsgType, readonly string[]>> = {
  [MsgType.RecordsRequest]: ["limit"],
};

/** The JSON payload of a control message, fields in the document's order. */
export function encodeMessage(m: Message): Uint8Array {
  switch (m.type) {
    case MsgType.Position:
      return encodeJson(m.position && { seq: m.position.seq, offset: m.position.offset });
    case MsgType.Result:
      return encodeJson(m.result);
    case MsgType.Error: // an error may quote what the peer sent: keep it within the limit
      return encodeJson({ code: m.code, message: printable(m.message, 1024) });
    default: {
      const out: Record<string, unknown> = {};
      for (const k of FIELDS[m.type]!) out[k] = (m as unknown as Record<string, unknown>)[k];
      return encodeJson(out);
    }
  }
}

/** Parses and checks the payload of a control message of `type`. Throws ProtocolError. */
export function decodeMessage(type: MsgType, payload: Uint8Array): Message {
  const what = MsgType[type] ?? `type ${type}`;
  if (type === MsgType.Result) {
    return { type, result: decodeJson(payload, what, [], { anyFields: true })! };
  }
  const fields = FIELDS[type];
  if (!fields) throw new ProtocolError("protocol", `${what} carries bytes, not a message`);
  const j = decodeJson(payload, what, fields, {
    nullable: type === MsgType.Position,
    optional: OPTIONAL[type],
  });
  const f = new Fields(what, j ?? {});
  switch (type) {
    case MsgType.Hello:
      return { type, ...identity(f) };
    case MsgType.Welcome:
      return { type, ...identity(f), readOnly: f.bool("readOnly") };
    case MsgType.Error:
      return { type, code: f.oneOf("code", ERROR_CODES), message: f.text("message") };
    case MsgType.RecordsRequest:
      return j && "limit" in j
        ? { type, offset: f.count("offset"), limit: f.count("limit") }
        : { type, offset: f.count("offset") };
    case MsgType.FileRequest:
      return { type, path: f.path("path"), from: f.count("from"), compress: f.bool("compress") };
    case MsgType.PositionRequest:
      return { type, host: f.id("host"), incarnation: f.id("incarnation") };
    case MsgType.Position:
      return { type, position: j && { seq: f.count("seq"), offset: f.count("offset") } };
    case MsgType.CaptureRequest:
    case MsgType.PullRequest:
      return { type };
  }
  throw new ProtocolError("protocol", `${what} carries bytes, not a message`);
}

function identity(f: Fields): Identity {
  return {
    protocol: f.count("protocol"),
    volume: f.id("volume"),
    host: f.id("host"),
    name: f.text("name"),
    incarnation: f.id("incarnation"),
    epoch: f.count("epoch"),
  };
}

/** Typed access to the fields of one message, each checked. */
class Fields {
  constructor(readonly what: string, readonly j: Record<string, unknown>) {}

  #bad(k: string, want: string): never {
    throw new ProtocolError("protocol", `${this.what}: ${k} is not ${want}`);
  }
  count(k: string): number {
    const v = this.j[k];
    return Number.isSafeInteger(v) && (v as number) >= 0
      ? v as number
      : this.#bad(k, "a non-negative integer");
  }
  id(k: string): string {
    const v = this.j[k];
    return typeof v === "string" && /^[0-9a-f]{32}$/.test(v) ? v : this.#bad(k, "32 hex digits");
  }
  text(k: string): string {
    const v = this.j[k];
    return typeof v === "string" && v.length <= MAX_TEXT ? v : this.#bad(k, "a string");
  }
  bool(k: string): boolean {
    const v = this.j[k];
    return typeof v === "boolean" ? v : this.#bad(k, "true or false");
  }
  oneOf<T extends string>(k: string, values: readonly T[]): T {
    const v = this.j[k];
    return values.includes(v as T) ? v as T : this.#bad(k, `one of ${values.join(", ")}`);
  }
  path(k: string): string {
    const v = this.text(k);
    try {
      checkRelativePath(v);
    } catch (e) {
      throw new ProtocolError("protocol", `${this.what}: ${(e as Error).message}`);
    }
    return v;
  }
}
