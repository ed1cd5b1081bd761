/**
 * Property tests of KML records and logs with a seeded PRNG: random records
 * round-trip exactly; every single-bit flip and every truncation of a record
 * is detected; a log reads the same forwards and backwards; a torn tail is cut
 * back to the last whole record on open; damage elsewhere is reported with its
 * offset and never cut silently.
 */

import assert from "node:assert/strict";
import {
  checkFrame,
  decodeRecord,
  emptyRecord,
  encodeRecord,
  type KmlRecord,
  Op,
} from "../src/kml/record.ts";
import { KML_HEADER_BYTES, KmlLog } from "../src/kml/log.ts";
import { CorruptLogError, FormatError } from "../src/errors.ts";

// ---------------------------------------------------------------- PRNG

/** sfc32, seeded through splitmix32: small, fast, deterministic. */
class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 0x100000000) * n);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }

  hex(n: number): string {
    let s = "";
    for (const x of this.bytes(n)) s += x.toString(16).padStart(2, "0");
    return s;
  }

  /** A safe integer (what records hold in number fields), biased towards edges. */
  safeInt(): number {
    switch (this.int(5)) {
      case 0:
        return this.pick([0, 1, 2, 0xffffffff, 0x100000000, Number.MAX_SAFE_INTEGER]);
      case 1:
        return this.int(1000);
      case 2:
        return this.u32();
      default:
        return this.u32() * 0x200000 + (this.u32() & 0x1fffff); // full 53 bits
    }
  }

  /** Any signed 64-bit integer, biased towards edges and plausible times. */
  int64(): bigint {
    switch (this.int(5)) {
      case 0:
        return this.pick([0n, 1n, -1n, -(2n ** 63n), 2n ** 63n - 1n, -(2n ** 62n)]);
      case 1:
        return BigInt(this.int(2 ** 31)) * 1_000_000_000n + BigInt(this.int(1e9)); // 1970..2038
      case 2:
        return -BigInt(this.u32()) * 1_000_000n - BigInt(this.int(1e6)); // before 1970
      default:
        return BigInt.asIntN(64, (BigInt(this.u32()) << 32n) | BigInt(this.u32()));
    }
  }
}

// ---------------------------------------------------------------- generators

/** Code point ranges for paths: ASCII, whitespace, accents, scripts, CJK, emoji, edges. */
const RANGES: [number, number][] = [
  [0x20, 0x7e],
  [0x20, 0x7e],
  [0x20, 0x7e],
  [0x2f, 0x2f], // "/"
  [0x09, 0x0d], // tab, newline, vertical tab, form feed, carriage return
  [0x20, 0x20], // space
  [0x00, 0x1f], // other control characters, NUL included
  [0xa0, 0x24f], // Latin-1 and Latin Extended
  [0x300, 0x36f], // combining marks
  [0x370, 0x4ff], // Greek, Cyrillic
  [0x590, 0x6ff], // Hebrew, Arabic (right-to-left)
  [0x4e00, 0x9fff], // CJK
  [0xe000, 0xfffd], // private use to the replacement character
  [0x1f300, 0x1faff], // emoji (astral: surrogate pairs in JS)
  [0x10000, 0x10ffff], // any astral code point
];
const enc = new TextEncoder();

/** A random well-formed Unicode string of at most `maxBytes` bytes of UTF-8. */
function randomText(rng: Rng, maxBytes: number): string {
  const want = rng.chance(0.1) ? 0 : rng.int(maxBytes + 1);
  let s = "";
  let bytes = 0;
  while (bytes < want) {
    const [lo, hi] = rng.pick(RANGES);
    const cp = lo + rng.int(hi - lo + 1);
    const ch = String.fromCodePoint(cp);
    const n = enc.encode(ch).length;
    if (bytes + n > want) break;
    s += ch;
    bytes += n;
  }
  return s;
}

const OPS = [Op.Store, Op.Mkdir, Op.Rmdir, Op.Unlink, Op.Rename, Op.Symlink, Op.Setattr, Op.Permit];

/** A random record: all ops, natural field use most of the time, arbitrary fields otherwise. */
function randomRecord(rng: Rng, maxPathBytes = 300): KmlRecord {
  const op = rng.pick(OPS);
  const arbitrary = rng.chance(0.2);
  const r: KmlRecord = {
    ...emptyRecord(),
    op,
    originHost: rng.hex(16),
    originSeq: rng.safeInt(),
    epoch: rng.safeInt(),
    timeNs: rng.int64(),
  };
  if (op !== Op.Permit || arbitrary) r.path = randomText(rng, maxPathBytes);
  if (op === Op.Store || arbitrary) {
    r.size = rng.safeInt();
    r.digest = rng.hex(32);
  }
  if (op === Op.Store || op === Op.Symlink || op === Op.Setattr || arbitrary) {
    r.mtimeNs = rng.int64();
  }
  if (op !== Op.Rmdir && op !== Op.Unlink && op !== Op.Rename && op !== Op.Permit || arbitrary) {
    r.mode = rng.u32();
  }
  if (op === Op.Permit) r.target = rng.hex(16);
  else if (op === Op.Rename || op === Op.Symlink || arbitrary) {
    r.target = randomText(rng, maxPathBytes);
  }
  return r;
}

// ---------------------------------------------------------------- record properties

const RECORDS = (() => {
  const rng = new Rng(0x4b4d4c31);
  const out: KmlRecord[] = [];
  for (let i = 0; i < 4000; i++) out.push(randomRecord(rng));
  // A few at the size limits.
  out.push({
    ...randomRecord(rng),
    op: Op.Rename,
    path: "x".repeat(4096),
    target: "😀".repeat(1024),
  });
  out.push({ ...randomRecord(rng), op: Op.Unlink, path: "", target: "" });
  return out;
})();

Deno.test("property: 4000 random records of every op round-trip exactly", () => {
  const seen = new Set<Op>();
  let nonAscii = 0;
  let withNewline = 0;
  let negativeTimes = 0;
  for (const r of RECORDS) {
    const bytes = encodeRecord(r);
    assert.equal(bytes.length, 112 + enc.encode(r.path).length + enc.encode(r.target).length);
    assert.equal(checkFrame(bytes), null);
    const back = decodeRecord(bytes);
    assert.deepEqual(back, r);
    assert.deepEqual(encodeRecord(back), bytes, "the encoding is canonical");
    seen.add(r.op);
    if ([...r.path + r.target].some((c) => c.codePointAt(0)! > 0x7f)) nonAscii++;
    if (/\n/.test(r.path + r.target)) withNewline++;
    if (r.timeNs < 0n || r.mtimeNs < 0n) negativeTimes++;
  }
  // The generator really covers what it claims to.
  assert.equal(seen.size, OPS.length);
  assert.ok(RECORDS.length >= 3000);
  assert.ok(nonAscii > 1000, `only ${nonAscii} records with non-ASCII text`);
  assert.ok(withNewline > 100, `only ${withNewline} records with a newline`);
  assert.ok(negativeTimes > 500, `only ${negativeTimes} records with negative times`);
});

/** 200 records spread over the whole set, all ops included. */
const SAMPLE = RECORDS.filter((_, i) => i % 20 === 7).slice(0, 200);

Deno.test("property: every single-bit flip of 200 encoded records is detected", () => {
  assert.equal(SAMPLE.length, 200);
  let flips = 0;
  let byFrame = 0;
  let byDecode = 0;
  for (const r of SAMPLE) {
    const bytes = encodeRecord(r);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const i = bit >> 3;
      bytes[i] ^= 1 << (bit & 7);
      flips++;
      if (checkFrame(bytes) !== null) {
        byFrame++;
      } else {
        // Not caught by the frame checks: decoding must refuse it.
        assert.throws(() => decodeRecord(bytes), FormatError, `flip of bit ${bit} not detected`);
        byDecode++;
      }
      bytes[i] ^= 1 << (bit & 7);
    }
    assert.deepEqual(decodeRecord(bytes), r, "restored after the flips");
  }
  assert.ok(flips > 200 * 112 * 8);
  assert.equal(byFrame + byDecode, flips, "every flip detected");
  // The CRC and the length pair catch all of them; decoding is only the last line.
  assert.equal(byDecode, 0);
});

Deno.test("property: bit flips are detected when another record follows (as in a log)", () => {
  const rng = new Rng(7);
  for (const r of SAMPLE.slice(0, 100)) {
    const a = encodeRecord(r);
    const next = encodeRecord(randomRecord(rng));
    const buf = new Uint8Array(a.length + next.length);
    buf.set(a);
    buf.set(next, a.length);
    for (let bit = 0; bit < a.length * 8; bit++) {
      const i = bit >> 3;
      buf[i] ^= 1 << (bit & 7);
      assert.notEqual(checkFrame(buf), null, `flip of bit ${bit}`);
      buf[i] ^= 1 << (bit & 7);
    }
    assert.equal(checkFrame(buf), null);
  }
});

Deno.test("property: every truncation of 200 encoded records is detected", () => {
  for (const r of SAMPLE) {
    const bytes = encodeRecord(r);
    for (let n = 0; n < bytes.length; n++) {
      const prefix = bytes.subarray(0, n);
      const problem = checkFrame(prefix);
      if (problem === null) assert.fail(`prefix of ${n} of ${bytes.length} bytes accepted`);
      assert.match(problem, n < 4 ? /truncated length/ : /truncated record/);
    }
    assert.throws(() => decodeRecord(bytes.subarray(0, bytes.length - 1)), FormatError);
  }
});

// ---------------------------------------------------------------- log helpers

const VOLUME = "11".repeat(16);
const INCARNATION = "22".repeat(16);

function newLog(dir: string, name = "kml"): KmlLog {
  return KmlLog.create(`${dir}/${name}`, { volumeId: VOLUME, incarnation: INCARNATION });
}

/** Appends records in random batches; returns each record's offset. */
function fill(log: KmlLog, records: KmlRecord[], rng: Rng): number[] {
  const offsets: number[] = [];
  for (let i = 0; i < records.length;) {
    const n = Math.min(1 + rng.int(60), records.length - i);
    const frames = records.slice(i, i + n).map(encodeRecord);
    let at = log.append(frames);
    for (const f of frames) {
      offsets.push(at);
      at += f.length;
    }
    i += n;
  }
  return offsets;
}

function records(seed: number, n: number, maxPathBytes = 300): KmlRecord[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => randomRecord(rng, maxPathBytes));
}

async function withDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kml_property_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function readAll(log: KmlLog): { offsets: number[]; recs: KmlRecord[] } {
  const offsets: number[] = [];
  const recs: KmlRecord[] = [];
  for (const f of log.frames()) {
    offsets.push(f.offset);
    recs.push(decodeRecord(f.bytes));
  }
  return { offsets, recs };
}

// ---------------------------------------------------------------- log properties

Deno.test("log: 3000 records (over 1 MiB) read the same forward, backward and after reopening", async () => {
  await withDir((dir) => {
    const recs = records(101, 3000, 500);
    const log = newLog(dir);
    const offsets = fill(log, recs, new Rng(102));
    const fileSize = Deno.statSync(log.path).size;
    assert.equal(log.size, fileSize);
    assert.ok(
      fileSize > (1 << 20) + 100_000,
      `log of ${fileSize} bytes crosses the 1 MiB read chunk`,
    );
    assert.equal(offsets[0], KML_HEADER_BYTES);

    const fwd = readAll(log);
    assert.deepEqual(fwd.offsets, offsets);
    assert.deepEqual(fwd.recs, recs);

    const back = [...log.backward()];
    assert.deepEqual(back.map((f) => f.offset), [...offsets].reverse());
    assert.deepEqual(back.map((f) => decodeRecord(f.bytes)), [...recs].reverse());
    assert.deepEqual(log.verify(), []);

    // From any record boundary, forward reading gives exactly the rest.
    for (const k of [1, 1234, 2999]) {
      const rest = [...log.frames(offsets[k])].map((f) => decodeRecord(f.bytes));
      assert.deepEqual(rest, recs.slice(k));
    }
    log.close();

    const again = KmlLog.open(`${dir}/kml`);
    assert.equal(again.size, fileSize, "a sound log is not cut");
    assert.deepEqual(again.header, { volumeId: VOLUME, incarnation: INCARNATION });
    assert.deepEqual(readAll(again).recs, recs);
    assert.deepEqual(again.verify(), []);
    again.close();
  });
});

Deno.test("log: an empty log is just the header and reads as nothing", async () => {
  await withDir((dir) => {
    newLog(dir).close();
    assert.equal(Deno.statSync(`${dir}/kml`).size, 64);
    const log = KmlLog.open(`${dir}/kml`);
    assert.equal(log.size, 64);
    assert.deepEqual([...log.frames()], []);
    assert.deepEqual([...log.backward()], []);
    assert.deepEqual(log.verify(), []);
    log.close();
    assert.throws(() => newLog(dir), Deno.errors.AlreadyExists, "create never overwrites");
  });
});

Deno.test("log: truncation at every byte inside the last record is cut back to the previous boundary", async () => {
  await withDir((dir) => {
    const recs = records(201, 30, 120);
    recs.push({
      ...emptyRecord(),
      op: Op.Rename,
      originHost: "ab".repeat(16),
      path: "last",
      target: "one",
    });
    const log = newLog(dir);
    const offsets = fill(log, recs, new Rng(202));
    log.close();
    const full = Deno.readFileSync(`${dir}/kml`);
    const boundary = offsets.at(-1)!; // start of the last record
    assert.equal(full.length - boundary, 112 + 4 + 3);

    for (let size = boundary + 1; size < full.length; size++) {
      const path = `${dir}/torn-${size}`;
      Deno.writeFileSync(path, full.subarray(0, size));
      const torn = KmlLog.open(path);
      assert.equal(torn.size, boundary, `torn at ${size}`);
      assert.equal(Deno.statSync(path).size, boundary, `file cut on disk (torn at ${size})`);
      const got = readAll(torn);
      assert.deepEqual(got.offsets, offsets.slice(0, -1));
      assert.deepEqual(got.recs, recs.slice(0, -1));
      torn.close();
      Deno.removeSync(path);
    }
  });
});

Deno.test("log: torn tails of every shape are cut back, and appending afterwards works", async () => {
  await withDir((dir) => {
    const recs = records(301, 40, 200);
    const log = newLog(dir);
    fill(log, recs, new Rng(302));
    const end = log.size;
    log.close();
    const full = Deno.readFileSync(`${dir}/kml`);
    const rng = new Rng(303);
    const next = encodeRecord(randomRecord(rng));
    const tails: [string, Uint8Array][] = [
      ["zeros (size extended by a crash)", new Uint8Array(4096)],
      ["1 byte", new Uint8Array([0x7a])],
      ["3 bytes of a length", next.slice(0, 3)],
      ["a whole record but the last byte", next.slice(0, -1)],
      [
        "a record with its trailing length zeroed",
        new Uint8Array([...next.slice(0, -4), 0, 0, 0, 0]),
      ],
      ["random garbage", rng.bytes(777)],
      ["a record then zeros", new Uint8Array([...next.slice(0, 60), ...new Uint8Array(500)])],
    ];
    for (const [what, tail] of tails) {
      const path = `${dir}/${what}`;
      Deno.writeFileSync(path, new Uint8Array([...full, ...tail]));
      const torn = KmlLog.open(path);
      assert.equal(torn.size, end, what);
      assert.equal(Deno.statSync(path).size, end, what);
      assert.deepEqual(readAll(torn).recs, recs, what);
      const extra = randomRecord(rng);
      assert.equal(torn.append([encodeRecord(extra)]), end, what);
      torn.close();
      const reopened = KmlLog.open(path);
      assert.deepEqual(readAll(reopened).recs, [...recs, extra], what);
      assert.deepEqual(reopened.verify(), [], what);
      reopened.close();
    }
  });
});

Deno.test("log: a log holding only a torn first record is cut back to the header", async () => {
  await withDir((dir) => {
    const first = encodeRecord(records(401, 1)[0]);
    const path = `${dir}/kml`;
    newLog(dir).close();
    const head = Deno.readFileSync(path);
    for (const n of [1, 4, 50, first.length - 1]) {
      Deno.writeFileSync(path, new Uint8Array([...head, ...first.subarray(0, n)]));
      const log = KmlLog.open(path);
      assert.equal(log.size, 64, `${n} bytes of the first record`);
      assert.equal(Deno.statSync(path).size, 64);
      log.close();
    }
  });
});

/** Byte positions inside a record to damage: lengths, CRC, fixed part, path, trailing length. */
function damageSpots(len: number): number[] {
  return [
    0,
    1,
    3,
    4,
    7,
    8,
    9,
    10,
    12,
    20,
    30,
    45,
    50,
    60,
    70,
    80,
    104,
    106,
    108,
    len - 5,
    len - 4,
    len - 1,
  ];
}

Deno.test("log: one damaged middle record with a sound tail opens, and verify() reports its offset", async () => {
  await withDir((dir) => {
    const recs = records(501, 60, 150);
    const log = newLog(dir);
    const offsets = fill(log, recs, new Rng(502));
    const end = log.size;
    log.close();
    const full = Deno.readFileSync(`${dir}/kml`);
    for (const k of [0, 1, 29, 58]) {
      const at = offsets[k];
      const len = offsets[k + 1] - at;
      for (const spot of damageSpots(len)) {
        const bad = full.slice();
        bad[at + spot] ^= 0xff;
        const path = `${dir}/bad`;
        Deno.writeFileSync(path, bad);
        const opened = KmlLog.open(path);
        const where = `record ${k} byte ${spot}`;
        assert.equal(opened.size, end, `${where}: nothing cut`);
        assert.equal(Deno.statSync(path).size, end, `${where}: nothing cut on disk`);
        const problems = opened.verify();
        assert.equal(problems.length, 1, where);
        assert.equal(problems[0].offset, at, where);
        assert.throws(
          () => [...opened.frames()],
          (e) => e instanceof CorruptLogError && e.offset === at,
          where,
        );
        // Walking backward reaches the damage too, and stops there.
        const seenBack: number[] = [];
        assert.throws(
          () => {
            for (const f of opened.backward()) seenBack.push(f.offset);
          },
          // (A damaged trailing length can send the walk to a wrong start: it reports
          // where it found garbage, never past the damaged record.)
          (e) => e instanceof CorruptLogError && e.offset < at + len,
          where,
        );
        assert.deepEqual(seenBack, offsets.slice(k + 1).reverse(), where);
        // Records before the damage are still readable.
        const before = [...opened.frames(KML_HEADER_BYTES, at)].map((f) => decodeRecord(f.bytes));
        assert.deepEqual(before, recs.slice(0, k), where);
        opened.close();
      }
    }
  });
});

Deno.test("log: damage in the middle plus a torn tail is a CorruptLogError with the offset, nothing cut", async () => {
  await withDir((dir) => {
    const recs = records(601, 50, 150);
    const log = newLog(dir);
    const offsets = fill(log, recs, new Rng(602));
    const end = log.size;
    log.close();
    const full = Deno.readFileSync(`${dir}/kml`);
    const lastStart = offsets.at(-1)!;
    for (const k of [0, 10, 25, 47]) {
      for (const spot of [0, 5, 50, 108]) {
        for (const cut of [1, 30, end - lastStart - 1]) {
          const bad = full.slice(0, lastStart + cut);
          bad[offsets[k] + spot] ^= 0x10;
          const path = `${dir}/bad`;
          Deno.writeFileSync(path, bad);
          const where = `record ${k} byte ${spot}, tail cut at ${cut}`;
          assert.throws(
            () => KmlLog.open(path),
            (e) =>
              e instanceof CorruptLogError && e.offset === offsets[k] &&
              e.message.includes(`offset ${offsets[k]}`) && e.message.includes("fsck --repair"),
            where,
          );
          assert.equal(Deno.statSync(path).size, lastStart + cut, `${where}: file left as it was`);
        }
      }
    }
  });
});

Deno.test("log: a single short valid record between the damage and a torn tail is found", async () => {
  await withDir((dir) => {
    // The smallest records: the valid one starts right after the damaged one.
    const recs = ["a", "b", "c", "d"].map((path, i) => ({
      ...emptyRecord(),
      op: Op.Unlink,
      originHost: "cd".repeat(16),
      originSeq: i + 1,
      path,
    }));
    const log = newLog(dir);
    const offsets = fill(log, recs, new Rng(1));
    log.close();
    const full = Deno.readFileSync(`${dir}/kml`);
    for (const spot of [0, 4, 8, 108, 112]) {
      const bad = full.slice(0, offsets[3] + 50); // "d" torn
      bad[offsets[1] + spot] ^= 0x01; // "b" damaged, "c" valid
      Deno.writeFileSync(`${dir}/bad`, bad);
      assert.throws(
        () => KmlLog.open(`${dir}/bad`),
        (e) => e instanceof CorruptLogError && e.offset === offsets[1],
        `byte ${spot}`,
      );
    }
  });
});

Deno.test("log: damage in the record just before a torn tail is cut as part of the tail", async () => {
  await withDir((dir) => {
    // Nothing valid follows the damage, so it is indistinguishable from a torn batch append.
    const recs = records(701, 20, 100);
    const log = newLog(dir);
    const offsets = fill(log, recs, new Rng(702));
    log.close();
    const full = Deno.readFileSync(`${dir}/kml`);
    const bad = full.slice(0, offsets.at(-1)! + 20);
    bad[offsets.at(-2)! + 50] ^= 1;
    Deno.writeFileSync(`${dir}/kml`, bad);
    const opened = KmlLog.open(`${dir}/kml`);
    assert.equal(opened.size, offsets.at(-2)!);
    assert.deepEqual(readAll(opened).recs, recs.slice(0, -2));
    opened.close();
  });
});

Deno.test("log: a damaged header is refused, never cut", async () => {
  await withDir((dir) => {
    const log = newLog(dir);
    fill(log, records(801, 5), new Rng(802));
    log.close();
    const full = Deno.readFileSync(`${dir}/kml`);
    for (const at of [0, 5, 10, 30, 45, 61]) {
      const bad = full.slice();
      bad[at] ^= 4;
      Deno.writeFileSync(`${dir}/kml`, bad);
      assert.throws(() => KmlLog.open(`${dir}/kml`), FormatError, `header byte ${at}`);
      assert.equal(Deno.statSync(`${dir}/kml`).size, full.length);
    }
    Deno.writeFileSync(`${dir}/kml`, full.subarray(0, 40));
    assert.throws(() => KmlLog.open(`${dir}/kml`), FormatError, "short header");
  });
});
