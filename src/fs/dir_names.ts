/**
 * The names in a directory, read with getdents64(2) through a descriptor
 * the caller opened: one system call per 64 KiB of entries and one string
 * per name, where Deno.readDirSync makes an object per entry, and decodes a
 * name that is not UTF-8 lossily into one that then names nothing.
 *
 * struct linux_dirent64, as the kernel packs them into the buffer:
 *
 * | offset | size       | field      |
 * | ------ | ---------- | ---------- |
 * | 0      | 8          | d_ino      |
 * | 8      | 8          | d_off      |
 * | 16     | 2          | d_reclen   |
 * | 18     | 1          | d_type     |
 * | 19     | to the NUL | d_name     |
 *
 * @example
 * ```ts
 * const { names, notUtf8 } = dirNames(fd, "/srv/vol/docs"); // no "." or "..", directory order
 * ```
 * @module
 */

import { errno, errnoName, libc } from "./libc.ts";
import { FsError } from "../errors.ts";

/** What a directory holds, by name. */
export interface DirNames {
  /** Every name that is UTF-8, in the order the directory gave them. */
  names: string[];
  /** Names that are not UTF-8 (no path of a record can hold them), escaped for messages. */
  notUtf8: string[];
}

const buf = new Uint8Array(64 * 1024);
const view = new DataView(buf.buffer);
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The names in the directory open as `fd` (read from its current offset); `label` names it in errors. */
export function dirNames(fd: number, label: string): DirNames {
  const out: DirNames = { names: [], notUtf8: [] };
  for (;;) {
    const n = Number(libc().getdents64(fd, buf, BigInt(buf.length)));
    if (n === 0) return out;
    if (n < 0) {
      const e = errno();
      throw new FsError("list", label, e, errnoName(e));
    }
    for (let at = 0; at < n; at += view.getUint16(at + 16, true)) {
      const start = at + 19;
      const end = buf.indexOf(0, start);
      addName(out, start, end);
    }
  }
}

/** Adds the name in buf[start, end) to `out`, unless it is "." or "..". */
function addName(out: DirNames, start: number, end: number): void {
  let ascii = true;
  for (let i = start; i < end && ascii; i++) ascii = buf[i] < 0x80;
  if (ascii) {
    const name = String.fromCharCode(...buf.subarray(start, end));
    if (name !== "." && name !== "..") out.names.push(name);
    return;
  }
  try {
    out.names.push(utf8.decode(buf.subarray(start, end)));
  } catch {
    out.notUtf8.push(escaped(buf.subarray(start, end)));
  }
}

/** A byte string for a message: printable ASCII as it is, other bytes as \xNN. */
function escaped(bytes: Uint8Array): string {
  return [...bytes].map((b) =>
    b >= 0x20 && b < 0x7f && b !== 0x5c
      ? String.fromCharCode(b)
      : `\\x${b.toString(16).padStart(2, "0")}`
  ).join("");
}
