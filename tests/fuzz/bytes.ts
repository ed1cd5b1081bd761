/**
 * Byte helpers: text and JSON as bytes, joining and comparing byte arrays,
 * hex for failure messages, and frames of the wire protocol, well-formed or
 * with a header written by hand.
 */

import { encodeFrame, FLAG_END, HEADER_BYTES } from "../../src/wire/frame.ts";

const enc = new TextEncoder();
export const dec = new TextDecoder();
export const text = (s: string) => enc.encode(s);
export const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
export const equalBytes = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((x, i) => x === b[i]);
export const hex = (b: Uint8Array, max = 80) =>
  [...b.subarray(0, max)].map((x) => x.toString(16).padStart(2, "0")).join("") +
  (b.length > max ? `… (${b.length} bytes)` : "");
export const frame = (type: number, call: number, payload: Uint8Array, flags = FLAG_END) =>
  encodeFrame({ type, flags, call, payload });
/** A header written by hand: any field, valid or not. */
export function rawHeader(length: number, type: number, flags: number, zero: number, call: number) {
  const b = new Uint8Array(HEADER_BYTES);
  const v = new DataView(b.buffer);
  v.setUint32(0, length >>> 0, true);
  v.setUint8(4, type & 0xff);
  v.setUint8(5, flags & 0xff);
  v.setUint16(6, zero & 0xffff, true);
  v.setUint32(8, call >>> 0, true);
  return b;
}

export function jsonBytes(v: unknown): Uint8Array {
  return text(JSON.stringify(v));
}
