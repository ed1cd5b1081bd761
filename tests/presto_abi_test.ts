/**
 * The userspace side of the Presto ABI (src/capture/presto.ts and
 * presto_source.ts): its numbers equal those of shim/presto_abi.h (compiled
 * here with gcc), it decodes the records captured from the real module under
 * QEMU (tests/shim/capture-main.bin) exactly as the in-guest C decoder did,
 * and it rejects every truncation and every structural corruption of them
 * with a FormatError. The event source's FFI paths that need no device (the
 * null return, arm failures, nonblocking reads, close of a pending next())
 * run against real fds: a regular file and a pipe.
 */

import { assert, assertEquals, assertNotEquals, assertThrows } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { FormatError, ReplicatorError } from "../src/errors.ts";
import {
  decodePrestoRecords,
  hintsOf,
  PATH_NOT_UTF8,
  PRESTO_ABI_VERSION,
  PRESTO_ARM_ALL_CLOSE_WRITE,
  PRESTO_ARM_FLAGS,
  PRESTO_ARM_LAYOUT,
  PRESTO_ARM_SIZE,
  PRESTO_DEVICE,
  PRESTO_EV_MAX,
  PRESTO_EVENT_HDR_LEN,
  PRESTO_EVENT_LAYOUT,
  PRESTO_F_ISDIR,
  PRESTO_F_UNVERIFIED,
  PRESTO_IOC_ARM,
  PRESTO_IOC_DISARM,
  PRESTO_IOC_MAGIC,
  PRESTO_IOC_STATS,
  PRESTO_MAGIC,
  PRESTO_REC_ALIGN,
  PRESTO_RING_DEFAULT,
  PRESTO_RING_MAX,
  PRESTO_RING_MIN,
  PRESTO_STATS_LAYOUT,
  PRESTO_STATS_SIZE,
  type PrestoEvent,
  prestoRecLen,
  PrestoType,
  prestoTypeName,
} from "../src/capture/presto.ts";
import { openPresto, PrestoSource } from "../src/capture/presto_source.ts";

const HEADER = new URL("../shim/presto_abi.h", import.meta.url).pathname;
const FIXTURE = new URL("./shim/capture-main.bin", import.meta.url).pathname;
const bin = Deno.readFileSync(FIXTURE);
const guestLines = Deno.readTextFileSync(`${FIXTURE}.events`).split("\n").filter((l) => l);

function hasGcc(): boolean {
  try {
    return new Deno.Command("gcc", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const GCC = hasGcc();

// ---- (a) the C header is the source of truth -------------------------------

const C_PROGRAM = String.raw`
#include <stdio.h>
#include <stddef.h>
#include "presto_abi.h"

#define FIELD(s, m) printf("%s\"%s\": [%zu, %zu]", first ? "" : ", ", #m, \
	offsetof(struct s, m), sizeof(((struct s *)0)->m)), first = 0
#define NUM(n) printf(", \"%s\": %llu", #n, (unsigned long long)(n))

int main(void)
{
	int first;

	printf("{\"presto_event\": {\"size\": %zu, \"fields\": {", sizeof(struct presto_event));
	first = 1;
	FIELD(presto_event, rec_len); FIELD(presto_event, magic);
	FIELD(presto_event, version); FIELD(presto_event, type);
	FIELD(presto_event, seq); FIELD(presto_event, ino);
	FIELD(presto_event, time_ns); FIELD(presto_event, flags);
	FIELD(presto_event, mode); FIELD(presto_event, path_len);
	FIELD(presto_event, path2_len); FIELD(presto_event, aux);
	printf("}}, \"presto_arm\": {\"size\": %zu, \"fields\": {", sizeof(struct presto_arm));
	first = 1;
	FIELD(presto_arm, size); FIELD(presto_arm, flags);
	FIELD(presto_arm, ring_bytes); FIELD(presto_arm, reserved);
	FIELD(presto_arm, path);
	printf("}}, \"presto_stats\": {\"size\": %zu, \"fields\": {", sizeof(struct presto_stats));
	first = 1;
	FIELD(presto_stats, abi_version); FIELD(presto_stats, armed);
	FIELD(presto_stats, ring_bytes); FIELD(presto_stats, ring_used);
	FIELD(presto_stats, queued); FIELD(presto_stats, lost);
	FIELD(presto_stats, pending_lost);
	printf("}}, \"PRESTO_DEVICE\": \"%s\"", PRESTO_DEVICE);
	NUM(PRESTO_ABI_VERSION); NUM(PRESTO_MAGIC);
	NUM(PRESTO_EVENT_HDR_LEN); NUM(PRESTO_REC_ALIGN);
	NUM(PRESTO_EV_CLOSE_WRITE); NUM(PRESTO_EV_CREATE); NUM(PRESTO_EV_MKDIR);
	NUM(PRESTO_EV_RMDIR); NUM(PRESTO_EV_UNLINK); NUM(PRESTO_EV_RENAME);
	NUM(PRESTO_EV_LINK); NUM(PRESTO_EV_SYMLINK); NUM(PRESTO_EV_SETATTR);
	NUM(PRESTO_EV_MOVED_IN); NUM(PRESTO_EV_MOVED_OUT); NUM(PRESTO_EV_OVERFLOW);
	NUM(PRESTO_EV_MAX);
	NUM(PRESTO_F_ISDIR); NUM(PRESTO_F_UNVERIFIED);
	NUM(PRESTO_IOC_MAGIC); NUM(PRESTO_IOC_ARM); NUM(PRESTO_IOC_DISARM);
	NUM(PRESTO_IOC_STATS);
	NUM(PRESTO_ARM_ALL_CLOSE_WRITE); NUM(PRESTO_ARM_FLAGS);
	NUM(PRESTO_RING_DEFAULT); NUM(PRESTO_RING_MIN); NUM(PRESTO_RING_MAX);
	printf("}\n");
	return 0;
}
`;

interface CStruct {
  size: number;
  fields: Record<string, [number, number]>;
}

function layoutAsC(layout: Record<string, { offset: number; size: number }>) {
  return Object.fromEntries(Object.entries(layout).map(([k, v]) => [k, [v.offset, v.size]]));
}

Deno.test({
  name: GCC
    ? "presto.ts constants and layouts equal shim/presto_abi.h (compiled with gcc)"
    : "presto.ts constants equal shim/presto_abi.h (IGNORED: gcc not found, cannot compile the header)",
  ignore: !GCC,
  fn: async () => {
    const dir = await tempDir();
    try {
      Deno.writeTextFileSync(`${dir}/abi.c`, C_PROGRAM);
      const build = await new Deno.Command("gcc", {
        args: [
          "-std=gnu11",
          "-Wall",
          "-Werror",
          "-I",
          HEADER.slice(0, HEADER.lastIndexOf("/")),
          "-o",
          `${dir}/abi`,
          `${dir}/abi.c`,
        ],
        stderr: "piped",
      }).output();
      assert(build.success, `gcc failed: ${new TextDecoder().decode(build.stderr)}`);
      const run = await new Deno.Command(`${dir}/abi`, { stdout: "piped" }).output();
      assert(run.success, "the ABI dump program failed");
      const c = JSON.parse(new TextDecoder().decode(run.stdout)) as Record<string, unknown> & {
        presto_event: CStruct;
        presto_arm: CStruct;
        presto_stats: CStruct;
      };

      assertEquals(c.presto_event.size, PRESTO_EVENT_HDR_LEN);
      assertEquals(layoutAsC(PRESTO_EVENT_LAYOUT), c.presto_event.fields);
      assertEquals(c.presto_arm.size, PRESTO_ARM_SIZE);
      assertEquals(layoutAsC(PRESTO_ARM_LAYOUT), c.presto_arm.fields);
      assertEquals(c.presto_stats.size, PRESTO_STATS_SIZE);
      assertEquals(layoutAsC(PRESTO_STATS_LAYOUT), c.presto_stats.fields);

      const ts: Record<string, number | string> = {
        PRESTO_DEVICE,
        PRESTO_ABI_VERSION,
        PRESTO_MAGIC,
        PRESTO_EVENT_HDR_LEN,
        PRESTO_REC_ALIGN,
        PRESTO_EV_MAX,
        PRESTO_F_ISDIR,
        PRESTO_F_UNVERIFIED,
        PRESTO_IOC_MAGIC,
        PRESTO_IOC_ARM,
        PRESTO_IOC_DISARM,
        PRESTO_IOC_STATS,
        PRESTO_ARM_ALL_CLOSE_WRITE,
        PRESTO_ARM_FLAGS,
        PRESTO_RING_DEFAULT,
        PRESTO_RING_MIN,
        PRESTO_RING_MAX,
      };
      for (const [name, value] of Object.entries(PrestoType)) ts[`PRESTO_EV_${name}`] = value;
      const fromC = Object.fromEntries(
        Object.entries(c).filter(([k]) => k.startsWith("PRESTO_")),
      );
      assertEquals(ts, fromC);
      // The numbers docs/presto-abi.md and the brief quote.
      assertEquals(fromC.PRESTO_IOC_ARM, 0x4018b701);
      assertEquals(fromC.PRESTO_IOC_DISARM, 0xb702);
      assertEquals(fromC.PRESTO_IOC_STATS, 0x8028b703);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// ---- (b) the capture from the real module ----------------------------------

interface GuestEvent {
  seq: bigint;
  type: string;
  flags: number;
  ino: bigint;
  aux: bigint;
  path: string;
  path2: string;
}

/** One line of the .events file: run-qemu.sh keeps the guest's "PRESTO-EVENT main" lines. */
function parseGuestLine(line: string): GuestEvent {
  const m = line.match(
    /^seq=(\d+) type=([A-Z_]+) flags=(\d+) ino=(\d+) aux=(\d+) path=(.*?)(?: path2=(.*))?$/,
  );
  if (!m) throw new Error(`unexpected line in capture-main.bin.events: ${line}`);
  return {
    seq: BigInt(m[1]),
    type: m[2],
    flags: Number(m[3]),
    ino: BigInt(m[4]),
    aux: BigInt(m[5]),
    path: m[6],
    path2: m[7] ?? "",
  };
}

function asGuest(e: PrestoEvent): GuestEvent {
  return {
    seq: e.seq,
    type: prestoTypeName(e.type),
    flags: e.flags,
    ino: e.ino,
    aux: e.aux,
    path: e.path,
    path2: e.path2,
  };
}

/** Offsets at which a record of the fixture starts, plus its length. */
function boundaries(bytes: Uint8Array): number[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [0];
  while (out.at(-1)! < bytes.length) out.push(out.at(-1)! + v.getUint32(out.at(-1)!, true));
  return out;
}

Deno.test("capture-main.bin decodes exactly as the guest's C decoder printed it", () => {
  const events = decodePrestoRecords(bin, { firstSeq: 1n });
  assertEquals(events.length, 38);
  assertEquals(guestLines.length, 38);
  assertEquals(events.map(asGuest), guestLines.map(parseGuestLine));
  // Fields the guest did not print: modes known from the scenario, time order.
  const at = (seq: number) => events[seq - 1];
  assertEquals(at(1).mode, 0o100644); // f1, created 0644
  assertEquals(at(3).mode, 0o40755); // mkdir d1
  assertEquals(at(16).mode, 0o120777); // symlink sl
  assertEquals(at(17).mode, 0o100600); // chmod d4/b 0600
  assertEquals(at(19).mode, 0o40700); // chmod d1 0700
  for (let i = 1; i < events.length; i++) assert(events[i].timeNs >= events[i - 1].timeNs);
  // Records are back to back, 8-aligned, each exactly as long as its paths need.
  const b = boundaries(bin);
  assertEquals(b.at(-1), bin.length);
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    const len2 = new TextEncoder().encode(e.path2).length;
    assertEquals(b[i + 1] - b[i], prestoRecLen(new TextEncoder().encode(e.path).length, len2));
  }
});

Deno.test("the fixture's hints name every event path once, in order, renames with both paths", () => {
  const hints = hintsOf(decodePrestoRecords(bin));
  assertEquals(hints, [{
    kind: "paths",
    paths: [
      "f1",
      "d1",
      "d2",
      "f2",
      "d1/f1r",
      "d3",
      "d3/a",
      "d3/b",
      "d4",
      "hl",
      "sl",
      "d4/b",
      "d4/a",
      "f3",
      "moved",
      "staged",
      "f4",
      "f5",
      "f6",
      "w",
      "end",
    ],
  }]);
  // Read by read() in several pieces (as the guest did, 200-byte reads),
  // each piece decodes alone and the sequence continues across them.
  const b = boundaries(bin);
  let next = 1n;
  let count = 0;
  for (let i = 0; i + 1 < b.length; i += 3) {
    const piece = bin.subarray(b[i], b[Math.min(i + 3, b.length - 1)]);
    const ev = decodePrestoRecords(piece, { firstSeq: next });
    next = ev.at(-1)!.seq + 1n;
    count += ev.length;
  }
  assertEquals(count, 38);
  assertThrows(() => decodePrestoRecords(bin.subarray(b[3]), { firstSeq: 1n }), FormatError);
});

// ---- synthetic records (an encoder written from docs/presto-abi.md) --------

interface Rec {
  type: number;
  seq: number;
  path?: string | Uint8Array;
  path2?: string | Uint8Array;
  flags?: number;
  mode?: number;
  ino?: bigint;
  aux?: bigint;
  magic?: number;
  version?: number;
  recLen?: number;
}

function encode(...recs: Rec[]): Uint8Array {
  const te = new TextEncoder();
  const parts = recs.map((r) => {
    const p1 = typeof r.path === "string" || r.path === undefined
      ? te.encode(r.path ?? "")
      : r.path;
    const p2 = typeof r.path2 === "string" || r.path2 === undefined
      ? te.encode(r.path2 ?? "")
      : r.path2;
    const need = 48 + p1.length + 1 + (p2.length ? p2.length + 1 : 0);
    const len = Math.ceil(need / 8) * 8;
    const b = new Uint8Array(Math.max(len, 48));
    const v = new DataView(b.buffer);
    v.setUint32(0, r.recLen ?? len, true);
    v.setUint16(4, r.magic ?? 0x5250, true);
    v.setUint8(6, r.version ?? 1);
    v.setUint8(7, r.type);
    v.setBigUint64(8, BigInt(r.seq), true);
    v.setBigUint64(16, r.ino ?? (r.type === 12 ? 0n : 1000n + BigInt(r.seq)), true);
    v.setBigUint64(24, 1_700_000_000_000_000_000n + BigInt(r.seq), true);
    v.setUint16(32, r.flags ?? 0, true);
    v.setUint16(34, r.mode ?? (r.type === 12 ? 0 : 0o100644), true);
    v.setUint16(36, p1.length, true);
    v.setUint16(38, p2.length, true);
    v.setBigUint64(40, r.aux ?? 0n, true);
    b.set(p1, 48);
    b.set(p2, 49 + p1.length);
    return b;
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, off), off += p.length;
  return out;
}

Deno.test("overflow records become overflow hints between the path hints around them", () => {
  const bytes = encode(
    { type: PrestoType.CREATE, seq: 1, path: "a" },
    { type: PrestoType.CLOSE_WRITE, seq: 2, path: "a" },
    { type: PrestoType.OVERFLOW, seq: 3, aux: 57n },
    { type: PrestoType.CREATE, seq: 4, path: "b" },
    { type: PrestoType.RENAME, seq: 5, path: "b", path2: "dir/c" },
    { type: PrestoType.SETATTR, seq: 6, path: "", mode: 0o40755, flags: PRESTO_F_ISDIR },
    { type: PrestoType.OVERFLOW, seq: 7, aux: 2n ** 64n - 1n },
  );
  const events = decodePrestoRecords(bytes, { firstSeq: 1n });
  assertEquals(events[2].aux, 57n);
  assertEquals(events[4].path2, "dir/c");
  assertEquals(hintsOf(events), [
    { kind: "paths", paths: ["a"] },
    { kind: "overflow", lost: 57 },
    { kind: "paths", paths: ["b", "dir/c", ""] },
    { kind: "overflow", lost: Number.MAX_SAFE_INTEGER },
  ]);
  assertEquals(hintsOf([]), []);
  assertEquals(decodePrestoRecords(new Uint8Array(0)), []);
  // Non-ASCII UTF-8 names are fine.
  const utf = decodePrestoRecords(encode({ type: PrestoType.CREATE, seq: 9, path: "dé/ß 東" }));
  assertEquals(utf[0].path, "dé/ß 東");
  // A name that is not UTF-8 (any byte string is a name to the kernel) is no error: it
  // decodes as PATH_NOT_UTF8, a rescan, which reports it (no record can hold it).
  for (const raw of [[0x66, 0xff, 0x66], [0x64, 0xc3]]) {
    const odd = decodePrestoRecords(
      encode({ type: PrestoType.CREATE, seq: 3, path: new Uint8Array(raw) }),
    );
    assertEquals(odd[0].path, PATH_NOT_UTF8);
    assertEquals(hintsOf(odd), [{ kind: "overflow", lost: 1 }]);
  }
  const renamed = decodePrestoRecords(
    encode({ type: PrestoType.RENAME, seq: 4, path: "a", path2: new Uint8Array([0x62, 0xfe]) }),
  );
  assertEquals(hintsOf(renamed), [{ kind: "overflow", lost: 1 }]);
});

Deno.test("malformed records are each rejected with a FormatError that says why", () => {
  const ok: Rec = { type: PrestoType.CREATE, seq: 1, path: "f" };
  const cases: [string, Uint8Array, RegExp][] = [
    ["bad magic", encode({ ...ok, magic: 0x5052 }), /magic/],
    ["version 2", encode({ ...ok, version: 2 }), /ABI version 2/],
    ["version 0", encode({ ...ok, version: 0 }), /ABI version 0/],
    ["type 0", encode({ ...ok, type: 0 }), /unknown type 0/],
    ["type 13", encode({ ...ok, type: 13 }), /unknown type 13/],
    ["rec_len not aligned", encode({ ...ok, recLen: 57 }), /rec_len 57/],
    ["rec_len too short", encode({ ...ok, recLen: 48 }), /rec_len 48/],
    ["rec_len past the end", encode({ ...ok, recLen: 64 }), /past the end/],
    ["path beyond the record", encode({ ...ok, path: "x".repeat(20), recLen: 56 }), /rec_len/],
    ["NUL in the path", encode({ ...ok, path: new Uint8Array([0x61, 0, 0x62]) }), /NUL/],
    ["absolute path", encode({ ...ok, path: "/etc/passwd" }), /normalised/],
    ["dot-dot", encode({ ...ok, path: "a/../../etc" }), /normalised/],
    ["dot", encode({ ...ok, path: "./a" }), /normalised/],
    ["trailing slash", encode({ ...ok, path: "a/" }), /normalised/],
    ["double slash", encode({ ...ok, path: "a//b" }), /normalised/],
    ["empty path", encode({ ...ok, path: "" }), /empty path/],
    ["RENAME without path2", encode({ ...ok, type: PrestoType.RENAME }), /without path2/],
    ["path2 on CREATE", encode({ ...ok, path2: "g" }), /path2 on CREATE/],
    ["bad path2", encode({ ...ok, type: PrestoType.RENAME, path2: "../x" }), /path2/],
    ["aux on CREATE", encode({ ...ok, aux: 1n }), /aux/],
    ["OVERFLOW with path", encode({ type: 12, seq: 1, path: "f", aux: 1n, mode: 0 }), /OVERFLOW/],
    ["OVERFLOW with ino", encode({ type: 12, seq: 1, ino: 5n, aux: 1n }), /OVERFLOW/],
    ["unknown flag", encode({ ...ok, flags: 0x4 }), /unknown flags/],
    ["ISDIR on a file mode", encode({ ...ok, type: 9, flags: PRESTO_F_ISDIR }), /ISDIR/],
    ["MKDIR without ISDIR", encode({ ...ok, type: 3, mode: 0 }), /MKDIR without flag ISDIR/],
    ["UNVERIFIED on CREATE", encode({ ...ok, flags: PRESTO_F_UNVERIFIED }), /UNVERIFIED/],
    ["mode without type", encode({ ...ok, mode: 0o644 }), /file type/],
    ["SYMLINK not a link", encode({ ...ok, type: PrestoType.SYMLINK }), /SYMLINK/],
    ["seq 0", encode({ ...ok, seq: 0 }), /seq 0/],
    ["seq gap", encode(ok, { ...ok, seq: 3 }), /seq 3, want 2/],
    ["short header", encode(ok).subarray(0, 47), /header needs 48/],
  ];
  const padded = encode(ok);
  padded[52] = 1; // a padding byte
  cases.push(["non-zero padding", padded, /padding/]);
  const noNul = encode({ ...ok, path: "abcdefg" }); // 48 + 7 + NUL = 56 exactly
  noNul[55] = 0x68;
  cases.push(["path without NUL", noNul, /NUL/]);
  for (const [what, bytes, why] of cases) {
    const e = assertThrows(() => decodePrestoRecords(bytes, { firstSeq: 1n }), FormatError);
    assert(why.test(e.message), `${what}: message "${e.message}" does not match ${why}`);
  }
  assertEquals(decodePrestoRecords(encode(ok)).length, 1); // the base case is valid
});

// ---- (c) truncations and corruptions of the fixture --------------------------

Deno.test("every truncation of the fixture is rejected, except whole-record prefixes", () => {
  const all = decodePrestoRecords(bin);
  const b = new Set(boundaries(bin));
  let rejected = 0;
  for (let n = 1; n < bin.length; n++) {
    const cut = bin.slice(0, n); // own buffer: nothing beyond n is reachable
    if (b.has(n)) {
      const ev = decodePrestoRecords(cut, { firstSeq: 1n });
      assertEquals(ev, all.slice(0, ev.length));
      assert(ev.length > 0 && ev.length < all.length);
    } else {
      assertThrows(() => decodePrestoRecords(cut, { firstSeq: 1n }), FormatError);
      rejected++;
    }
  }
  assertEquals(rejected, bin.length - 1 - 37);
});

/** An independent, unvalidated reading of one record's fields (offsets from docs/presto-abi.md). */
/** A path field as the decoder must read it: its UTF-8, or PATH_NOT_UTF8. */
function asPath(raw: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    return PATH_NOT_UTF8;
  }
}

function rawFields(bytes: Uint8Array, off: number) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const pl = v.getUint16(off + 36, true);
  const p2l = v.getUint16(off + 38, true);
  return {
    type: v.getUint8(off + 7),
    seq: v.getBigUint64(off + 8, true),
    ino: v.getBigUint64(off + 16, true),
    timeNs: v.getBigUint64(off + 24, true),
    flags: v.getUint16(off + 32, true),
    mode: v.getUint16(off + 34, true),
    path: asPath(bytes.subarray(off + 48, off + 48 + pl)),
    path2: asPath(bytes.subarray(off + 49 + pl, off + 49 + pl + p2l)),
    aux: v.getBigUint64(off + 40, true),
  };
}

/**
 * Decodes a corrupted copy: it must either throw a FormatError, or return
 * exactly what the (corrupted) bytes say, record by record, at the original
 * boundaries. Returns true if it was rejected.
 */
function rejectsOrFaithful(bytes: Uint8Array, starts: number[]): boolean {
  let events: PrestoEvent[];
  try {
    events = decodePrestoRecords(bytes, { firstSeq: 1n });
  } catch (e) {
    if (e instanceof FormatError) return true;
    throw e; // a crash: RangeError, TypeError, ...
  }
  assertEquals(events.length, starts.length - 1, "an accepted corruption changed the framing");
  events.forEach((e, i) => assertEquals(e, rawFields(bytes, starts[i])));
  return false;
}

Deno.test("single-byte corruptions: structural bytes are always rejected, others decode faithfully", () => {
  const starts = boundaries(bin);
  const events = decodePrestoRecords(bin);
  const masks = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff];
  let tried = 0, rejected = 0;
  for (let r = 0; r + 1 < starts.length; r++) {
    const off = starts[r];
    const e = events[r];
    const pl = new TextEncoder().encode(e.path).length;
    const p2l = new TextEncoder().encode(e.path2).length;
    for (let i = 0; i < starts[r + 1] - off; i++) {
      // Bytes whose every change breaks framing, a fixed value or a cross-check.
      const structural = i < 7 || // rec_len, magic, version
        (i >= 8 && i < 16) || // seq (contiguous from 1)
        i === 33 || // flags, high byte: no such bits
        (i >= 36 && i < 48) || // path_len, path2_len, aux (0 except OVERFLOW)
        i >= 48 + pl; // NULs, path2 and padding
      for (const mask of masks) {
        const c = bin.slice();
        c[off + i] ^= mask;
        tried++;
        const isPath2Byte = i > 48 + pl && i < 49 + pl + p2l;
        const res = rejectsOrFaithful(c, starts);
        if (res) rejected++;
        else {
          assert(
            !structural || isPath2Byte,
            `byte ${i} of record ${r + 1} (seq ${e.seq}) ^ 0x${mask.toString(16)} was accepted`,
          );
        }
        // A path byte made non-ASCII alone is invalid UTF-8: rejected, or read as PATH_NOT_UTF8
        // (rejectsOrFaithful compared it so).
        const inPath = (i >= 48 && i < 48 + pl) || isPath2Byte;
        if (inPath && (mask & 0x80) && !res) {
          const got = decodePrestoRecords(c, { firstSeq: 1n })[r];
          assert(
            got.path === PATH_NOT_UTF8 || got.path2 === PATH_NOT_UTF8,
            `a non-UTF-8 path at byte ${i} was read as a name`,
          );
        }
      }
    }
  }
  assert(tried > 2136 * 8);
  assert(rejected > tried / 2, `only ${rejected} of ${tried} corruptions rejected`);
});

Deno.test("random multi-byte corruptions and garbage never crash the decoder", () => {
  const starts = boundaries(bin);
  let seed = 12345;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  let rejected = 0;
  for (let t = 0; t < 3000; t++) {
    const c = bin.slice();
    for (let k = 1 + rnd(4); k > 0; k--) c[rnd(c.length)] = rnd(256);
    if (rejectsOrFaithful(c, starts)) rejected++;
  }
  assert(rejected > 1000);
  for (let t = 0; t < 500; t++) {
    const g = new Uint8Array(48 + rnd(200));
    for (let i = 0; i < g.length; i++) g[i] = rnd(256);
    if (rnd(2)) g.set([0x50, 0x52, 1, 1 + rnd(12)], 4);
    assertThrows(() => decodePrestoRecords(g), FormatError);
  }
});

// ---- the event source, without the device ----------------------------------

const T = {
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
} as const;
let testLib: Deno.DynamicLibrary<typeof T> | undefined;
const c = () => (testLib ??= Deno.dlopen("libc.so.6", T)).symbols;

const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/** A pipe as [read end, write end]; the read end is O_NONBLOCK like the device fd. */
function pipe(): [number, number] {
  const fds = new Int32Array(2);
  assertEquals(c().pipe2(new Uint8Array(fds.buffer), O_CLOEXEC), 0);
  assertEquals(c().fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
  return [fds[0], fds[1]];
}
function put(fd: number, bytes: Uint8Array): void {
  assertEquals(
    Number(c().write(fd, bytes as Uint8Array<ArrayBuffer>, BigInt(bytes.length))),
    bytes.length,
  );
}
/** What fd `fd` refers to ("pipe:[123]"), or null if it is not open. */
function fdTarget(fd: number): string | null {
  try {
    return Deno.readLinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}
/** How many of this process's fds are open on `path` (other tests may open fds meanwhile). */
function fdsOn(path: string): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`) === path) n++;
    } catch { /* closed meanwhile */ }
  }
  return n;
}

Deno.test("openPresto returns null when the device does not exist", async () => {
  const dir = await tempDir();
  try {
    assertEquals(openPresto(dir, { device: `${dir}/no-such-device` }), null);
    let present = true;
    try {
      Deno.statSync(PRESTO_DEVICE);
    } catch {
      present = false;
    }
    if (!present) assertEquals(openPresto(dir), null); // this host: no module loaded
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openPresto on something that is not the device fails clearly and leaks no fd", async () => {
  const dir = await tempDir();
  try {
    const fake = `${dir}/not-a-device`;
    Deno.writeTextFileSync(fake, "");
    const e = assertThrows(() => openPresto(dir, { device: fake }), ReplicatorError);
    assert(
      /cannot arm .* \(ENOTTY\): .* is not a Presto ABI version 1 device/.test(e.message),
      e.message,
    );
    assertEquals(fdsOn(fake), 0);
    for (const ring of [1000, 4095, 3 << 12, 32 << 20, 2048, 1.5]) {
      const r = assertThrows(
        () => openPresto(dir, { device: fake, ringBytes: ring }),
        ReplicatorError,
      );
      assert(/ring size/.test(r.message), r.message);
    }
    Deno.chmodSync(fake, 0);
    if (Deno.uid() !== 0) {
      const o = assertThrows(() => openPresto(dir, { device: fake }), ReplicatorError);
      assert(/cannot open .*EACCES/.test(o.message), o.message);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the source reads records without blocking, continues seq across reads, and close() ends a pending next()", async () => {
  const [r, w] = pipe();
  const pipeName = fdTarget(r);
  assert(pipeName?.startsWith("pipe:"));
  const src = PrestoSource.fromFd(r);
  assertEquals(src.name, "presto");
  const b = boundaries(bin);
  put(w, bin.subarray(0, b[10]));
  const first = await src.next();
  assertEquals(first, hintsOf(decodePrestoRecords(bin.subarray(0, b[10]))));
  put(w, bin.subarray(b[10]));
  const second = await src.next();
  assertEquals(second, hintsOf(decodePrestoRecords(bin.subarray(b[10]))));
  // Nothing queued: next() waits in poll on a worker thread; timers still run.
  let settled = false;
  const pending = src.next().then((h) => (settled = true, h));
  let ticks = 0;
  await new Promise<void>((done) => {
    const t = setInterval(() => ++ticks === 5 && (clearInterval(t), done()), 10);
  });
  assertEquals(settled, false);
  src.close();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((ok) => timer = setTimeout(() => ok("late"), 2000));
  const got = await Promise.race([pending, late]);
  clearTimeout(timer);
  assertEquals(got, [], "close() did not end the pending next()");
  assertNotEquals(fdTarget(r), pipeName, "the fd was not closed");
  assertEquals(await src.next(), []);
  assertEquals(src.closed, true);
  src.close(); // twice is harmless
  c().close(w);
});

Deno.test("the source ends with [] at end of file, and rejects a malformed read", async () => {
  {
    const [r, w] = pipe();
    const pipeName = fdTarget(r);
    assert(pipeName?.startsWith("pipe:"));
    const src = PrestoSource.fromFd(r);
    const pending = src.next();
    c().close(w); // like a disarmed reader: POLLHUP, read 0
    assertEquals(await pending, []);
    assertEquals(src.closed, true);
    assertNotEquals(fdTarget(r), pipeName);
  }
  {
    const [r, w] = pipe();
    const pipeName = fdTarget(r);
    assert(pipeName?.startsWith("pipe:"));
    const src = PrestoSource.fromFd(r);
    const b = boundaries(bin);
    put(w, bin.subarray(0, b[2]));
    assertEquals((await src.next()).length, 1);
    put(w, bin.subarray(0, b[2])); // seq 1 again: not the continuation
    let err: unknown;
    try {
      await src.next();
    } catch (e) {
      err = e;
    }
    assert(err instanceof FormatError, `expected a FormatError, got ${err}`);
    assert(/seq 1, want 3/.test(err.message), err.message);
    assertEquals(src.closed, true);
    assertNotEquals(fdTarget(r), pipeName);
    c().close(w);
  }
});
