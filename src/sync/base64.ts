/**
 * Base64 for binary payloads inside JSON documents.
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** Standard base64 of bytes. */
export function encodeBase64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

/** Bytes of standard base64. */
export function decodeBase64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "base64"));
}
