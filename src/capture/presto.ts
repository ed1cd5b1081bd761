/**
 * The /dev/presto ABI, version 1, on the userspace side: constants, record
 * layout and a strict decoder of what read(2) returns, plus the mapping of
 * decoded events to lento's hints, and (re-exported from presto_source.ts)
 * `openPresto`, the event source on the device. `shim/presto_abi.h` is the source of
 * truth; `tests/presto_abi_test.ts` compiles it and checks every number here
 * against it. Byte-by-byte description: docs/presto-abi.md.
 *
 * @example
 * ```ts
 * const events = decodePrestoRecords(bytesFromRead);
 * const hints = hintsOf(events); // [{ kind: "paths", paths: ["f1", "d1"] }]
 * ```
 * @module
 */

import { FormatError } from "../errors.ts";
import type { Hint } from "./events.ts";
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from "../fs/libc.ts";

// The device side (FFI) lives in presto_source.ts; import either module.
export { openPresto, type PrestoOptions, PrestoSource } from "./presto_source.ts";

/** Path of the character device. */
export const PRESTO_DEVICE = "/dev/presto";
/** The only ABI version this decoder reads. */
export const PRESTO_ABI_VERSION = 1;
/** `magic` of every record (bytes 0x50 0x52, "PR"). */
export const PRESTO_MAGIC = 0x5250;
/** Bytes of `struct presto_event`, the record header. */
export const PRESTO_EVENT_HDR_LEN = 48;
/** Records start on, and their lengths are multiples of, this many bytes. */
export const PRESTO_REC_ALIGN = 8;
/** Smallest record: a header, an empty path and its NUL, padded. */
export const PRESTO_REC_MIN = 56;

/** Byte offset and size of every field of `struct presto_event` (all little-endian). */
export const PRESTO_EVENT_LAYOUT = {
  rec_len: { offset: 0, size: 4 },
  magic: { offset: 4, size: 2 },
  version: { offset: 6, size: 1 },
  type: { offset: 7, size: 1 },
  seq: { offset: 8, size: 8 },
  ino: { offset: 16, size: 8 },
  time_ns: { offset: 24, size: 8 },
  flags: { offset: 32, size: 2 },
  mode: { offset: 34, size: 2 },
  path_len: { offset: 36, size: 2 },
  path2_len: { offset: 38, size: 2 },
  aux: { offset: 40, size: 8 },
} as const;

/** Event types (`enum presto_event_type`). */
export const PrestoType = {
  CLOSE_WRITE: 1,
  CREATE: 2,
  MKDIR: 3,
  RMDIR: 4,
  UNLINK: 5,
  RENAME: 6,
  LINK: 7,
  SYMLINK: 8,
  SETATTR: 9,
  MOVED_IN: 10,
  MOVED_OUT: 11,
  OVERFLOW: 12,
} as const;

/** A value of {@link PrestoType}. */
export type PrestoTypeValue = (typeof PrestoType)[keyof typeof PrestoType];
/** Name of a {@link PrestoType} value. */
export type PrestoTypeName = keyof typeof PrestoType;

/** Highest defined type (`PRESTO_EV_MAX`). */
export const PRESTO_EV_MAX = 12;

/** `presto_event.flags`: the object is a directory. */
export const PRESTO_F_ISDIR = 0x0001;
/** `presto_event.flags`: CLOSE_WRITE reported without a seen modification. */
export const PRESTO_F_UNVERIFIED = 0x0002;
const KNOWN_FLAGS = PRESTO_F_ISDIR | PRESTO_F_UNVERIFIED;

/** ioctl magic. */
export const PRESTO_IOC_MAGIC = 0xb7;
/** `_IOW(0xB7, 1, struct presto_arm)`: arm a volume root. */
export const PRESTO_IOC_ARM = 0x4018b701;
/** `_IO(0xB7, 2)`: disarm (a no-op on an unarmed reader). */
export const PRESTO_IOC_DISARM = 0x0000b702;
/** `_IOR(0xB7, 3, struct presto_stats)`: counters of the open file. */
export const PRESTO_IOC_STATS = 0x8028b703;

/** Bytes of `struct presto_arm`. */
export const PRESTO_ARM_SIZE = 24;
/** Byte offset and size of every field of `struct presto_arm`. */
export const PRESTO_ARM_LAYOUT = {
  size: { offset: 0, size: 4 },
  flags: { offset: 4, size: 4 },
  ring_bytes: { offset: 8, size: 4 },
  reserved: { offset: 12, size: 4 },
  path: { offset: 16, size: 8 },
} as const;
/** Arm flag: report every close of a file opened for writing (flagged UNVERIFIED). */
export const PRESTO_ARM_ALL_CLOSE_WRITE = 0x0001;
/** Every arm flag this ABI version defines. */
export const PRESTO_ARM_FLAGS = 0x0001;

/** Default ring size (`ring_bytes` 0). */
export const PRESTO_RING_DEFAULT = 256 << 10;
/** Smallest ring. */
export const PRESTO_RING_MIN = 4 << 10;
/** Largest ring. */
export const PRESTO_RING_MAX = 16 << 20;

/** Bytes of `struct presto_stats`. */
export const PRESTO_STATS_SIZE = 40;
/** Byte offset and size of every field of `struct presto_stats`. */
export const PRESTO_STATS_LAYOUT = {
  abi_version: { offset: 0, size: 4 },
  armed: { offset: 4, size: 4 },
  ring_bytes: { offset: 8, size: 4 },
  ring_used: { offset: 12, size: 4 },
  queued: { offset: 16, size: 8 },
  lost: { offset: 24, size: 8 },
  pending_lost: { offset: 32, size: 8 },
} as const;

/** One decoded record. The 64-bit fields are bigints (inode numbers may use all 64 bits). */
export interface PrestoEvent {
  type: PrestoTypeValue;
  /** Per-reader sequence number: 1, 2, 3, ... */
  seq: bigint;
  /** Inode number of the object; 0 for OVERFLOW. */
  ino: bigint;
  /** CLOCK_REALTIME in ns when queued. */
  timeNs: bigint;
  /** PRESTO_F_* bits. */
  flags: number;
  /** st_mode of the object, 0 if unknown. */
  mode: number;
  /** Volume-relative path ("" is the volume root). */
  path: string;
  /** RENAME: the new path; otherwise "". */
  path2: string;
  /** OVERFLOW: events lost; otherwise 0. */
  aux: bigint;
}

/** Options of {@link decodePrestoRecords}. */
export interface DecodeOptions {
  /**
   * Sequence number the first record must carry (a reader's stream is
   * contiguous from 1). Without it, only contiguity inside the buffer is
   * checked.
   */
  firstSeq?: bigint;
}

const NAMES = Object.fromEntries(
  Object.entries(PrestoType).map(([k, v]) => [v, k]),
) as Record<number, PrestoTypeName>;

/** Name of a type number ("CLOSE_WRITE", ...), "?" if unknown. */
export function prestoTypeName(type: number): PrestoTypeName | "?" {
  return NAMES[type] ?? "?";
}

/** `rec_len` of a record with paths of these byte lengths. */
export function prestoRecLen(pathLen: number, path2Len: number): number {
  const need = PRESTO_EVENT_HDR_LEN + pathLen + 1 + (path2Len ? path2Len + 1 : 0);
  return (need + PRESTO_REC_ALIGN - 1) & ~(PRESTO_REC_ALIGN - 1);
}

const FILE_TYPES = new Set([0o010000, 0o020000, S_IFDIR, 0o060000, S_IFREG, S_IFLNK, S_IFSOCK]);
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Decodes the bytes of one or more read(2) calls (whole records, back to
 * back). An empty buffer is no records. Anything else that is not exactly a
 * sequence of well-formed version-1 records throws {@link FormatError}:
 * a short or misaligned record, bad magic/version/type/flags, paths beyond
 * the record or without their NUL, non-zero padding, a path that is not a
 * clean relative path, fields the type does not allow, or sequence numbers
 * that are not contiguous. A path that is not UTF-8 decodes as PATH_NOT_UTF8.
 */
export function decodePrestoRecords(bytes: Uint8Array, opts: DecodeOptions = {}): PrestoEvent[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const L = PRESTO_EVENT_LAYOUT;
  const out: PrestoEvent[] = [];
  let nextSeq = opts.firstSeq;
  let off = 0;
  while (off < bytes.length) {
    const bad = (why: string): never => {
      throw new FormatError(
        `malformed /dev/presto record at byte ${off} (record ${out.length + 1}): ${why}`,
      );
    };
    if (bytes.length - off < PRESTO_EVENT_HDR_LEN) {
      bad(`${bytes.length - off} bytes left, a header needs ${PRESTO_EVENT_HDR_LEN}`);
    }
    const recLen = view.getUint32(off + L.rec_len.offset, true);
    const magic = view.getUint16(off + L.magic.offset, true);
    const version = view.getUint8(off + L.version.offset);
    const type = view.getUint8(off + L.type.offset);
    if (magic !== PRESTO_MAGIC) bad(`magic 0x${magic.toString(16)}, want 0x5250`);
    if (version !== PRESTO_ABI_VERSION) {
      bad(`ABI version ${version}, this reader knows ${PRESTO_ABI_VERSION}`);
    }
    if (type < 1 || type > PRESTO_EV_MAX) bad(`unknown type ${type}`);
    if (recLen % PRESTO_REC_ALIGN !== 0 || recLen < PRESTO_REC_MIN) {
      bad(`rec_len ${recLen} is not a multiple of 8 of at least ${PRESTO_REC_MIN}`);
    }
    if (recLen > bytes.length - off) {
      bad(`rec_len ${recLen} runs past the end of the buffer (${bytes.length - off} bytes left)`);
    }
    const pathLen = view.getUint16(off + L.path_len.offset, true);
    const path2Len = view.getUint16(off + L.path2_len.offset, true);
    if (prestoRecLen(pathLen, path2Len) !== recLen) {
      bad(`rec_len ${recLen} does not match path_len ${pathLen} and path2_len ${path2Len}`);
    }
    const seq = view.getBigUint64(off + L.seq.offset, true);
    const ino = view.getBigUint64(off + L.ino.offset, true);
    const timeNs = view.getBigUint64(off + L.time_ns.offset, true);
    const flags = view.getUint16(off + L.flags.offset, true);
    const mode = view.getUint16(off + L.mode.offset, true);
    const aux = view.getBigUint64(off + L.aux.offset, true);

    if (nextSeq !== undefined && seq !== nextSeq) bad(`seq ${seq}, want ${nextSeq}`);
    if (seq === 0n) bad("seq 0 (sequence numbers start at 1)");
    nextSeq = seq + 1n;

    const p1 = off + PRESTO_EVENT_HDR_LEN;
    const p2 = p1 + pathLen + 1;
    const end = p2 + (path2Len ? path2Len + 1 : 0);
    if (bytes[p1 + pathLen] !== 0) bad("path is not NUL-terminated");
    if (path2Len && bytes[p2 + path2Len] !== 0) bad("path2 is not NUL-terminated");
    for (let i = end; i < off + recLen; i++) {
      if (bytes[i] !== 0) bad(`padding byte ${i - off} is not zero`);
    }
    const path = pathOf(bytes.subarray(p1, p1 + pathLen), "path", bad);
    const path2 = pathOf(bytes.subarray(p2, p2 + path2Len), "path2", bad);

    if (flags & ~KNOWN_FLAGS) bad(`unknown flags 0x${flags.toString(16)}`);
    const isDir = (flags & PRESTO_F_ISDIR) !== 0;
    if (mode !== 0) {
      if (!FILE_TYPES.has(mode & S_IFMT)) bad(`mode 0o${mode.toString(8)} has no file type`);
      if (isDir !== ((mode & S_IFMT) === S_IFDIR)) {
        bad(`flag ISDIR ${isDir ? "set" : "clear"} but mode is 0o${mode.toString(8)}`);
      }
    }
    if ((flags & PRESTO_F_UNVERIFIED) && type !== PrestoType.CLOSE_WRITE) {
      bad(`flag UNVERIFIED on ${prestoTypeName(type)}`);
    }
    if ((type === PrestoType.RENAME) !== (path2Len > 0)) {
      bad(type === PrestoType.RENAME ? "RENAME without path2" : `path2 on ${prestoTypeName(type)}`);
    }
    switch (type) {
      case PrestoType.OVERFLOW:
        if (pathLen !== 0 || flags !== 0 || mode !== 0 || ino !== 0n) {
          bad("OVERFLOW with a path, flags, mode or inode");
        }
        break;
      case PrestoType.MKDIR:
      case PrestoType.RMDIR:
        if (!isDir) bad(`${prestoTypeName(type)} without flag ISDIR`);
        break;
      case PrestoType.CLOSE_WRITE:
      case PrestoType.CREATE:
      case PrestoType.UNLINK:
      case PrestoType.LINK:
      case PrestoType.SYMLINK:
        if (isDir) bad(`${prestoTypeName(type)} with flag ISDIR`);
        break;
    }
    if (type === PrestoType.SYMLINK && mode !== 0 && (mode & S_IFMT) !== S_IFLNK) {
      bad(`SYMLINK with mode 0o${mode.toString(8)}`);
    }
    if (type !== PrestoType.OVERFLOW && aux !== 0n) bad(`aux ${aux} on ${prestoTypeName(type)}`);
    // Only SETATTR (of the root directory itself) names the volume root.
    if (path === "" && type !== PrestoType.OVERFLOW && type !== PrestoType.SETATTR) {
      bad(`${prestoTypeName(type)} with an empty path`);
    }
    out.push({ type: type as PrestoTypeValue, seq, ino, timeNs, flags, mode, path, path2, aux });
    off += recLen;
  }
  return out;
}

/**
 * What a path field that is not UTF-8 decodes to: a name the filesystem
 * allows but no record can hold ("/" is no relative path). hintsOf makes it
 * a rescan, which reports the name.
 */
export const PATH_NOT_UTF8 = "/";

/**
 * A path field as a string: relative, "/"-separated, no empty, "." or ".."
 * parts; PATH_NOT_UTF8 if it is not UTF-8.
 */
function pathOf(raw: Uint8Array, field: string, bad: (why: string) => never): string {
  if (raw.length === 0) return "";
  if (raw.includes(0)) bad(`${field} contains a NUL byte`);
  let s: string;
  try {
    s = utf8.decode(raw);
  } catch {
    return PATH_NOT_UTF8;
  }
  for (const part of s.split("/")) {
    if (part === "" || part === "." || part === "..") {
      bad(`${field} ${JSON.stringify(s)} is not a normalised relative path`);
    }
  }
  return s;
}

/**
 * The hints that events give lento: every event names the path(s) to look at
 * again (both paths for RENAME); OVERFLOW means "rescan the volume".
 * Consecutive path hints merge into one, without duplicates, so the order of
 * overflows relative to paths is kept.
 */
export function hintsOf(events: PrestoEvent[]): Hint[] {
  const out: Hint[] = [];
  let batch: Set<string> | null = null;
  for (const e of events) {
    if (e.type === PrestoType.OVERFLOW) {
      if (batch) out.push({ kind: "paths", paths: [...batch] });
      batch = null;
      const lost = e.aux > BigInt(Number.MAX_SAFE_INTEGER)
        ? Number.MAX_SAFE_INTEGER
        : Number(e.aux);
      out.push({ kind: "overflow", lost });
      continue;
    }
    if (e.path === PATH_NOT_UTF8 || e.path2 === PATH_NOT_UTF8) {
      if (batch) out.push({ kind: "paths", paths: [...batch] });
      batch = null;
      out.push({ kind: "overflow", lost: 1 }); // the rescan reports the name
      continue;
    }
    batch ??= new Set();
    batch.add(e.path);
    if (e.type === PrestoType.RENAME) batch.add(e.path2);
  }
  if (batch) out.push({ kind: "paths", paths: [...batch] });
  return out;
}
