/**
 * One KML record: a self-contained description of one modification, framed by
 * its length at both ends and protected by a CRC32C. Byte layout: docs/kml.md.
 *
 * @example
 * ```ts
 * const bytes = encodeRecord({ ...emptyRecord(), op: Op.Mkdir, path: "a", mode: 0o40755 });
 * decodeRecord(bytes).path; // "a"
 * ```
 * @module
 */

import { crc32c } from "./crc32c.ts";
import { FormatError } from "../errors.ts";

/**
 * Record format version: 1, or 2 for records that carry an owner or are a
 * Link (a v2 record is a v1 record plus the owner fields after the target).
 */
export const RECORD_VERSION = 1;
/** The version of records with owner fields or a Link. */
export const RECORD_VERSION_OWNED = 2;
/** Bytes of the owner fields' fixed part in a version 2 record (uid, gid, two lengths). */
export const OWNER_FIXED = 12;
/** Longest user or group name a record may carry, in bytes. */
export const MAX_NAME_BYTES = 255;
/** "No id" in a record's uid or gid field. */
export const NO_ID = 0xffffffff;
/** Bytes before the paths (including the leading length). */
export const RECORD_FIXED = 108;
/** Smallest possible record: fixed part, no paths, trailing length. */
export const RECORD_MIN = RECORD_FIXED + 4;
/** Longest path (or target) a record may carry, in bytes. */
export const MAX_PATH_BYTES = 4096;

/** Operations. Values are part of the on-disk format. */
export enum Op {
  /** A regular file's content was written and closed. */
  Store = 1,
  Mkdir = 2,
  Rmdir = 3,
  Unlink = 4,
  /** `path` moved to `target`; a directory moves with everything inside it. */
  Rename = 5,
  /** A symbolic link at `path` pointing to `target`. */
  Symlink = 6,
  /** Mode bits and mtime of `path` changed. */
  Setattr = 7,
  /** The write permit moved to host `target` at `epoch`. */
  Permit = 8,
  /** `path` is a new hard link to the file at `target` (whose content, mode, mtime it names). */
  Link = 9,
}

/** A decoded record. Host ids and the digest are lowercase hex. */
export interface KmlRecord {
  op: Op;
  /** Host id of the replica where the change happened (32 hex digits). */
  originHost: string;
  /** The origin's own counter, 1, 2, 3, ... per origin host. */
  originSeq: number;
  /** Permit epoch the change was made under (for Permit: the new epoch). */
  epoch: number;
  /** Wall-clock time of the change at the origin, ns since the Unix epoch. */
  timeNs: bigint;
  /** st_mode including the file-type bits; 0 where it does not apply. */
  mode: number;
  /** File size in bytes (Store). */
  size: number;
  /** Modification time in ns since the Unix epoch. */
  mtimeNs: bigint;
  /** SHA-256 of the whole file for Store, else 64 zeros. */
  digest: string;
  /** Path relative to the volume root, "/"-separated. */
  path: string;
  /** Rename: new path; Symlink: link target; Link: the existing name; Permit: holder host id; else "". */
  target: string;
  /** Owner and group ids at the origin, -1 if the record carries none. */
  uid: number;
  gid: number;
  /** Owner and group names at the origin ("" if unknown there). */
  owner: string;
  group: string;
}

/** A change as capture describes it; the volume adds origin, sequence, epoch and time. */
export type Change = Pick<
  KmlRecord,
  | "op"
  | "path"
  | "target"
  | "mode"
  | "size"
  | "mtimeNs"
  | "digest"
  | "uid"
  | "gid"
  | "owner"
  | "group"
>;

/** The digest field of records that name no content. */
export const NO_DIGEST = "0".repeat(64);
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** A record with every field zero or empty; spread it and set what matters. */
export function emptyRecord(): KmlRecord {
  return {
    op: Op.Store,
    originHost: "0".repeat(32),
    originSeq: 0,
    epoch: 0,
    timeNs: 0n,
    mode: 0,
    size: 0,
    mtimeNs: 0n,
    digest: NO_DIGEST,
    path: "",
    target: "",
    uid: -1,
    gid: -1,
    owner: "",
    group: "",
  };
}

/** True if `r` must be written as version 2: it carries an owner, or is a Link. */
function owned(r: KmlRecord): boolean {
  return r.uid >= 0 || r.gid >= 0 || r.owner !== "" || r.group !== "" || r.op === Op.Link;
}

/** Serialises a record. Throws FormatError for fields that cannot be encoded. */
export function encodeRecord(r: KmlRecord): Uint8Array {
  const p1 = enc.encode(r.path);
  const p2 = enc.encode(r.target);
  if (p1.length > MAX_PATH_BYTES || p2.length > MAX_PATH_BYTES) {
    throw new FormatError(`path longer than ${MAX_PATH_BYTES} bytes: ${r.path}`);
  }
  const v2 = owned(r);
  const n3 = enc.encode(v2 ? r.owner : "");
  const n4 = enc.encode(v2 ? r.group : "");
  if (n3.length > MAX_NAME_BYTES || n4.length > MAX_NAME_BYTES) {
    throw new FormatError(`owner or group name longer than ${MAX_NAME_BYTES} bytes`);
  }
  const ext = v2 ? OWNER_FIXED + n3.length + n4.length : 0;
  const len = RECORD_FIXED + p1.length + p2.length + ext + 4;
  const buf = new Uint8Array(len);
  const v = new DataView(buf.buffer);
  v.setUint32(0, len, true);
  buf[8] = v2 ? RECORD_VERSION_OWNED : RECORD_VERSION;
  buf[9] = r.op;
  v.setUint16(10, 0, true);
  v.setUint32(12, r.mode >>> 0, true);
  v.setBigUint64(16, BigInt(r.originSeq), true);
  buf.set(hexBytes(r.originHost, 16), 24);
  v.setBigUint64(40, BigInt(r.epoch), true);
  v.setBigInt64(48, r.timeNs, true);
  v.setBigUint64(56, BigInt(r.size), true);
  v.setBigInt64(64, r.mtimeNs, true);
  buf.set(hexBytes(r.digest, 32), 72);
  v.setUint16(104, p1.length, true);
  v.setUint16(106, p2.length, true);
  buf.set(p1, RECORD_FIXED);
  buf.set(p2, RECORD_FIXED + p1.length);
  if (v2) {
    const at = RECORD_FIXED + p1.length + p2.length;
    v.setUint32(at, r.uid < 0 ? NO_ID : r.uid, true);
    v.setUint32(at + 4, r.gid < 0 ? NO_ID : r.gid, true);
    v.setUint16(at + 8, n3.length, true);
    v.setUint16(at + 10, n4.length, true);
    buf.set(n3, at + OWNER_FIXED);
    buf.set(n4, at + OWNER_FIXED + n3.length);
  }
  v.setUint32(len - 4, len, true);
  v.setUint32(4, crc32c(buf.subarray(8, len - 4)), true);
  return buf;
}

/** Largest record: both paths and both names at their longest. */
export const RECORD_MAX = RECORD_MIN + 2 * MAX_PATH_BYTES + OWNER_FIXED + 2 * MAX_NAME_BYTES;

/**
 * Why `bytes` (starting at a record boundary) does not hold a valid record, or
 * null if it does. `bytes` may extend past the record.
 */
export function checkFrame(bytes: Uint8Array): string | null {
  if (bytes.length < 4) return "truncated length";
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = v.getUint32(0, true);
  if (len < RECORD_MIN || len > RECORD_MAX) return `bad length ${len}`;
  if (len > bytes.length) return "truncated record";
  if (v.getUint32(len - 4, true) !== len) return "leading and trailing lengths differ";
  if (crc32c(bytes.subarray(8, len - 4)) !== v.getUint32(4, true)) return "checksum mismatch";
  if (bytes[8] !== RECORD_VERSION && bytes[8] !== RECORD_VERSION_OWNED) {
    return `unknown record version ${bytes[8]}`;
  }
  return null;
}

/** Decodes one record from the start of `bytes`; throws FormatError if invalid. */
export function decodeRecord(bytes: Uint8Array): KmlRecord {
  const problem = checkFrame(bytes);
  if (problem) throw new FormatError(`invalid KML record: ${problem}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = v.getUint32(0, true);
  const op = bytes[9];
  if (!(op in Op) || typeof Op[op] !== "string") {
    throw new FormatError(`invalid KML record: unknown operation ${op}`);
  }
  const n1 = v.getUint16(104, true);
  const n2 = v.getUint16(106, true);
  const at = RECORD_FIXED + n1 + n2;
  const v2 = bytes[8] === RECORD_VERSION_OWNED;
  const n3 = v2 && at + OWNER_FIXED + 4 <= len ? v.getUint16(at + 8, true) : 0;
  const n4 = v2 && at + OWNER_FIXED + 4 <= len ? v.getUint16(at + 10, true) : 0;
  const ext = v2 ? OWNER_FIXED + n3 + n4 : 0;
  if (at + ext + 4 !== len) throw new FormatError("invalid KML record: path sizes");
  if (op === Op.Link && !v2) throw new FormatError("invalid KML record: a link in version 1");
  if (n3 > MAX_NAME_BYTES || n4 > MAX_NAME_BYTES) {
    throw new FormatError("invalid KML record: name sizes");
  }
  const id = (x: number) => (x === NO_ID ? -1 : x);
  try {
    return {
      op,
      mode: v.getUint32(12, true),
      originSeq: Number(v.getBigUint64(16, true)),
      originHost: bytesHex(bytes.subarray(24, 40)),
      epoch: Number(v.getBigUint64(40, true)),
      timeNs: v.getBigInt64(48, true),
      size: Number(v.getBigUint64(56, true)),
      mtimeNs: v.getBigInt64(64, true),
      digest: bytesHex(bytes.subarray(72, 104)),
      path: utf8(bytes.subarray(RECORD_FIXED, RECORD_FIXED + n1)),
      target: utf8(bytes.subarray(RECORD_FIXED + n1, at)),
      uid: v2 ? id(v.getUint32(at, true)) : -1,
      gid: v2 ? id(v.getUint32(at + 4, true)) : -1,
      owner: v2 ? utf8(bytes.subarray(at + OWNER_FIXED, at + OWNER_FIXED + n3)) : "",
      group: v2 ? utf8(bytes.subarray(at + OWNER_FIXED + n3, at + ext)) : "",
    };
  } catch (e) {
    if (e instanceof TypeError) throw new FormatError("invalid KML record: path is not UTF-8");
    throw e;
  }
}

/**
 * The text of UTF-8 `b` (a TypeError if it is not UTF-8). ASCII, the usual
 * case, is decoded here: a call into the runtime's decoder costs more than
 * a short path (a pull decodes four strings per record).
 */
function utf8(b: Uint8Array): string {
  for (let i = 0; i < b.length; i++) if (b[i] >= 0x80) return dec.decode(b);
  return String.fromCharCode.apply(null, b as unknown as number[]);
}

/** Length of the record starting at `bytes[0]` (no validation). */
export function frameLength(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
}

/** Lowercase hex of bytes. */
export function bytesHex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += HEX[b[i]];
  return s;
}

const HEX = Array.from({ length: 256 }, (_, x) => x.toString(16).padStart(2, "0"));

/** Bytes of a hex string of exactly `n` bytes; throws FormatError otherwise. */
export function hexBytes(hex: string, n: number): Uint8Array {
  if (hex.length !== 2 * n || !/^[0-9a-f]*$/.test(hex)) {
    throw new FormatError(`expected ${n} bytes of lowercase hex, got "${hex}"`);
  }
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
