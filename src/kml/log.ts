/**
 * The KML file: a header followed by records, appended whole and fsynced.
 * Opening checks the last record; a torn tail (a crash mid-append) is cut back.
 * Damage anywhere else is a CorruptLogError carrying the offset, never skipped.
 *
 * Byte layout: docs/kml.md.
 * @module
 */

import { crc32c } from "./crc32c.ts";
import { bytesHex, checkFrame, frameLength, hexBytes, RECORD_MIN } from "./record.ts";
import { CorruptLogError, FormatError } from "../errors.ts";
import { fsyncDir } from "../fs/durable.ts";
import { openRegular } from "../fs/nofollow.ts";

/** KML header format version. */
export const KML_VERSION = 1;
/** Header size in bytes; the first record starts here. */
export const KML_HEADER_BYTES = 64;
const MAGIC = "RKML";
const CHUNK = 1 << 20;

/** The header: which volume, which incarnation of this log. */
export interface KmlHeader {
  volumeId: string;
  /** Random id of this log's incarnation; a rebuilt log gets a new one. */
  incarnation: string;
}

/** A record's raw bytes and where it starts in the file. */
export interface Frame {
  offset: number;
  bytes: Uint8Array;
}

/** A problem found by a full scan. */
export interface LogProblem {
  offset: number;
  reason: string;
}

/** Serialises a header. */
export function encodeHeader(h: KmlHeader): Uint8Array {
  const b = new Uint8Array(KML_HEADER_BYTES);
  const v = new DataView(b.buffer);
  b.set(new TextEncoder().encode(MAGIC), 0);
  v.setUint16(4, KML_VERSION, true);
  v.setUint16(6, KML_HEADER_BYTES, true);
  b.set(hexBytes(h.volumeId, 16), 8);
  b.set(hexBytes(h.incarnation, 16), 24);
  v.setUint32(60, crc32c(b.subarray(0, 60)), true);
  return b;
}

/** Parses a header; throws FormatError if it is not a KML v1 header. */
export function decodeHeader(b: Uint8Array): KmlHeader {
  if (b.length < KML_HEADER_BYTES) throw new FormatError("KML header is truncated");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (new TextDecoder().decode(b.subarray(0, 4)) !== MAGIC) {
    throw new FormatError("not a KML file (bad magic)");
  }
  if (v.getUint32(60, true) !== crc32c(b.subarray(0, 60))) {
    throw new FormatError("KML header checksum mismatch");
  }
  const version = v.getUint16(4, true);
  if (version !== KML_VERSION) {
    throw new FormatError(
      `KML version ${version} is not supported (this build reads ${KML_VERSION})`,
    );
  }
  return { volumeId: bytesHex(b.subarray(8, 24)), incarnation: bytesHex(b.subarray(24, 40)) };
}

/** An open KML file. Not safe for concurrent writers; the volume lock serialises them. */
export class KmlLog {
  private constructor(
    readonly path: string,
    private readonly file: Deno.FsFile,
    readonly header: KmlHeader,
    /** Byte size of the valid log (header + whole records). */
    public size: number,
  ) {}

  /** Creates a new, empty log (fails if `path` exists). */
  static create(path: string, header: KmlHeader): KmlLog {
    const file = Deno.openSync(path, { read: true, write: true, createNew: true });
    file.writeSync(encodeHeader(header));
    file.syncSync();
    fsyncDir(dirOf(path));
    return new KmlLog(path, file, header, KML_HEADER_BYTES);
  }

  /** Opens a log, cutting a torn tail back to the last whole record. */
  static open(path: string): KmlLog {
    const file = openRegular(path, { write: true }); // never through a symlink
    try {
      const head = new Uint8Array(KML_HEADER_BYTES);
      readFully(file, 0, head);
      const log = new KmlLog(path, file, decodeHeader(head), file.statSync().size);
      log.recoverTail();
      return log;
    } catch (e) {
      file.close();
      if (e instanceof FormatError) throw new FormatError(`${path}: ${e.message}`);
      throw e;
    }
  }

  close(): void {
    this.file.close();
  }

  /** Appends whole records and makes them durable. Returns the first one's offset. */
  append(frames: Uint8Array[]): number {
    const start = this.size;
    const total = frames.reduce((n, f) => n + f.length, 0);
    const buf = new Uint8Array(total);
    let at = 0;
    for (const f of frames) {
      buf.set(f, at);
      at += f.length;
    }
    try {
      this.file.seekSync(start, Deno.SeekMode.Start);
      let written = 0;
      while (written < total) written += this.file.writeSync(buf.subarray(written));
      this.file.syncDataSync();
    } catch (e) {
      // A failed append (disk full, I/O error) must leave no partial records behind.
      try {
        this.truncate(start);
      } catch { /* the next open cuts the torn tail */ }
      throw e;
    }
    this.size = start + total;
    return start;
  }

  /** Cuts the log to `size` bytes (a record boundary) and makes that durable. */
  truncate(size: number): void {
    this.file.truncateSync(size);
    this.file.syncSync();
    this.size = size;
  }

  /**
   * Records from `offset` (a record boundary) to the end, in order.
   * Throws CorruptLogError at the first invalid record.
   */
  *frames(offset: number = KML_HEADER_BYTES, end: number = this.size): Generator<Frame> {
    let buf = new Uint8Array(0);
    let bufAt = offset;
    let pos = offset;
    while (pos < end) {
      if (
        pos + RECORD_MIN > bufAt + buf.length ||
        pos + peekLen(buf, pos - bufAt) > bufAt + buf.length
      ) {
        const want = Math.min(Math.max(CHUNK, RECORD_MIN * 80), end - pos);
        buf = new Uint8Array(want);
        readFully(this.file, pos, buf);
        bufAt = pos;
      }
      const rel = pos - bufAt;
      const problem = checkFrame(buf.subarray(rel));
      if (problem) throw new CorruptLogError(this.path, pos, problem);
      const len = frameLength(buf.subarray(rel));
      yield { offset: pos, bytes: buf.subarray(rel, rel + len) };
      pos += len;
    }
  }

  /** Records from the end back to the start. */
  *backward(): Generator<Frame> {
    let pos = this.size;
    const tail = new Uint8Array(4);
    while (pos > KML_HEADER_BYTES) {
      readFully(this.file, pos - 4, tail);
      const len = new DataView(tail.buffer).getUint32(0, true);
      const start = pos - len;
      if (len < RECORD_MIN || start < KML_HEADER_BYTES) {
        throw new CorruptLogError(this.path, pos - 4, `bad trailing length ${len}`);
      }
      const bytes = new Uint8Array(len);
      readFully(this.file, start, bytes);
      const problem = checkFrame(bytes);
      if (problem) throw new CorruptLogError(this.path, start, problem);
      yield { offset: start, bytes };
      pos = start;
    }
  }

  /** Full forward scan: every record checked. Empty list means the log is sound. */
  verify(): LogProblem[] {
    try {
      for (const _ of this.frames()) { /* checking is the point */ }
      return [];
    } catch (e) {
      if (e instanceof CorruptLogError) return [{ offset: e.offset, reason: e.message }];
      throw e;
    }
  }

  /**
   * A valid last record means no torn tail (a crash can only tear the end).
   * Otherwise find the first bad record; if anything valid follows it, the log
   * is damaged in the middle and must not be cut silently.
   */
  private recoverTail(): void {
    if (this.size === KML_HEADER_BYTES || this.lastRecordValid()) return;
    let cut = KML_HEADER_BYTES;
    try {
      for (const f of this.frames()) cut = f.offset + f.bytes.length;
      return; // the whole file scanned clean (only possible if size changed meanwhile)
    } catch (e) {
      if (!(e instanceof CorruptLogError)) throw e;
    }
    const rest = new Uint8Array(this.size - cut);
    readFully(this.file, cut, rest);
    for (let i = 1; i + RECORD_MIN <= rest.length; i++) {
      if (checkFrame(rest.subarray(i)) === null) {
        throw new CorruptLogError(this.path, cut, "damaged record followed by valid ones");
      }
    }
    this.truncate(cut);
  }

  private lastRecordValid(): boolean {
    if (this.size < KML_HEADER_BYTES + RECORD_MIN) return false;
    const tail = new Uint8Array(4);
    readFully(this.file, this.size - 4, tail);
    const len = new DataView(tail.buffer).getUint32(0, true);
    if (len < RECORD_MIN || this.size - len < KML_HEADER_BYTES) return false;
    const bytes = new Uint8Array(len);
    readFully(this.file, this.size - len, bytes);
    return checkFrame(bytes) === null;
  }
}

function peekLen(buf: Uint8Array, rel: number): number {
  if (rel + 4 > buf.length) return Infinity;
  return new DataView(buf.buffer, buf.byteOffset + rel, 4).getUint32(0, true);
}

function readFully(file: Deno.FsFile, at: number, into: Uint8Array): void {
  file.seekSync(at, Deno.SeekMode.Start);
  let got = 0;
  while (got < into.length) {
    const n = file.readSync(into.subarray(got));
    if (n === null || n === 0) throw new FormatError(`unexpected end of file at ${at + got}`);
    got += n;
  }
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? (i === 0 ? "/" : ".") : path.slice(0, i);
}
