/**
 * The Expect file: per remote host, how this replica and that host stand with
 * each other's KML. Replaced atomically as a whole. Byte layout: docs/expect.md.
 *
 * @example
 * ```ts
 * const bytes = encodeExpect([{ ...newExpect("ab".repeat(16)), readSeq: 3 }]);
 * decodeExpect(bytes)[0].readSeq; // 3
 * ```
 * @module
 */

import { crc32c } from "../kml/crc32c.ts";
import { bytesHex, hexBytes } from "../kml/record.ts";
import { FormatError } from "../errors.ts";
import { KML_HEADER_BYTES } from "../kml/log.ts";

/** Expect file format version. */
export const EXPECT_VERSION = 1;
const MAGIC = "REXP";
const HEADER = 16;
const ENTRY = 72;

/** What this replica knows about one remote host. */
export interface ExpectEntry {
  /** (1) The remote host id. */
  host: string;
  /** (4) Incarnation of the remote KML the offsets below refer to. */
  incarnation: string;
  /** (2) Records of the remote KML read and applied here: count and byte offset of the next. */
  readSeq: number;
  readOffset: number;
  /** (3) How far the remote host has confirmed reading this replica's KML. */
  confirmedSeq: number;
  confirmedOffset: number;
}

/** An entry for a host never exchanged with: nothing read, nothing confirmed. */
export function newExpect(host: string): ExpectEntry {
  return {
    host,
    incarnation: "0".repeat(32),
    readSeq: 0,
    readOffset: KML_HEADER_BYTES,
    confirmedSeq: 0,
    confirmedOffset: KML_HEADER_BYTES,
  };
}

/** Serialises entries (sorted by host so equal content gives equal bytes). */
export function encodeExpect(entries: ExpectEntry[]): Uint8Array {
  const sorted = [...entries].sort((a, b) => a.host < b.host ? -1 : a.host > b.host ? 1 : 0);
  const b = new Uint8Array(HEADER + ENTRY * sorted.length);
  const v = new DataView(b.buffer);
  b.set(new TextEncoder().encode(MAGIC), 0);
  v.setUint16(4, EXPECT_VERSION, true);
  v.setUint32(8, sorted.length, true);
  sorted.forEach((e, i) => {
    const at = HEADER + ENTRY * i;
    b.set(hexBytes(e.host, 16), at);
    b.set(hexBytes(e.incarnation, 16), at + 16);
    v.setBigUint64(at + 32, BigInt(e.readSeq), true);
    v.setBigUint64(at + 40, BigInt(e.readOffset), true);
    v.setBigUint64(at + 48, BigInt(e.confirmedSeq), true);
    v.setBigUint64(at + 56, BigInt(e.confirmedOffset), true);
  });
  v.setUint32(12, checksum(b), true);
  return b;
}

/** Parses an Expect file; throws FormatError if damaged. */
export function decodeExpect(b: Uint8Array): ExpectEntry[] {
  if (b.length < HEADER || new TextDecoder().decode(b.subarray(0, 4)) !== MAGIC) {
    throw new FormatError("not an Expect file (bad magic)");
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const version = v.getUint16(4, true);
  if (version !== EXPECT_VERSION) {
    throw new FormatError(`Expect version ${version} is not supported`);
  }
  const count = v.getUint32(8, true);
  if (b.length !== HEADER + ENTRY * count) throw new FormatError("Expect file has the wrong size");
  if (v.getUint32(12, true) !== checksum(b)) {
    throw new FormatError("Expect file checksum mismatch");
  }
  const out: ExpectEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = HEADER + ENTRY * i;
    out.push({
      host: bytesHex(b.subarray(at, at + 16)),
      incarnation: bytesHex(b.subarray(at + 16, at + 32)),
      readSeq: Number(v.getBigUint64(at + 32, true)),
      readOffset: Number(v.getBigUint64(at + 40, true)),
      confirmedSeq: Number(v.getBigUint64(at + 48, true)),
      confirmedOffset: Number(v.getBigUint64(at + 56, true)),
    });
  }
  return out;
}

/** CRC32C of the whole file except the checksum field itself (bytes 12..15). */
function checksum(b: Uint8Array): number {
  return crc32c(b.subarray(HEADER), crc32c(b.subarray(0, 12)));
}
