/**
 * JSON payloads of control messages (docs/protocol.md): UTF-8, at most
 * MAX_JSON bytes, an object with exactly the fields its message lists.
 *
 * @example
 * ```ts
 * const bytes = encodeJson({ offset: 64 });
 * const msg = decodeJson(bytes, "RECORDS?", ["offset"]); // { offset: 64 }
 * ```
 *
 * @module
 */

import { ProtocolError } from "./frame.ts";

/** Largest JSON payload. */
export const MAX_JSON = 64 * 1024;

/** The payload bytes of a control message; keys in the order given. */
export function encodeJson(value: Record<string, unknown> | null): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  if (bytes.length > MAX_JSON) throw new RangeError(`a JSON payload of ${bytes.length} bytes`);
  return bytes;
}

/** What else a JSON payload may be besides an object with exactly its fields. */
export interface JsonShape {
  /** JSON `null` is allowed. */
  nullable?: boolean;
  /** Any fields are allowed (a RESULT's report). */
  anyFields?: boolean;
  /** Fields that may be left out. */
  optional?: readonly string[];
}

/**
 * Parses the payload of message `what`, which must be an object with exactly
 * `fields` (less the optional ones), or what `shape` also allows. Throws ProtocolError.
 */
export function decodeJson(
  payload: Uint8Array,
  what: string,
  fields: readonly string[],
  shape: JsonShape = {},
): Record<string, unknown> | null {
  if (payload.length > MAX_JSON) {
    throw new ProtocolError("limit", `${what}: a JSON payload of ${payload.length} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch (e) {
    throw new ProtocolError("protocol", `${what}: not UTF-8 JSON (${(e as Error).message})`);
  }
  if (value === null && shape.nullable) return null;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("protocol", `${what}: the payload is not a JSON object`);
  }
  if (shape.anyFields) return value as Record<string, unknown>;
  const keys = Object.keys(value);
  const extra = keys.filter((k) => !fields.includes(k));
  const missing = fields.filter((k) => !keys.includes(k) && !shape.optional?.includes(k));
  if (extra.length || missing.length) {
    throw new ProtocolError(
      "protocol",
      `${what}: ` + [
        extra.length ? `unknown fields ${extra.join(", ")}` : "",
        missing.length ? `missing fields ${missing.join(", ")}` : "",
      ].filter(Boolean).join("; "),
    );
  }
  return value as Record<string, unknown>;
}
