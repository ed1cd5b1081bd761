/**
 * The Expect file format v1 (docs/expect.md): golden bytes, round trips with a
 * seeded PRNG, and detection of every single-bit flip and every wrong size.
 */

import assert from "node:assert/strict";
import {
  decodeExpect,
  encodeExpect,
  EXPECT_VERSION,
  type ExpectEntry,
  newExpect,
} from "../src/expect/expect.ts";
import { crc32c } from "../src/kml/crc32c.ts";
import { writeFileAtomic } from "../src/fs/durable.ts";
import { FormatError } from "../src/errors.ts";
import { crc32cSlow } from "./helpers.ts";

/** Two entries, given out of order: the encoding sorts them by host. */
const ENTRIES: ExpectEntry[] = [
  {
    host: "bb".repeat(16),
    incarnation: "0123456789abcdef0123456789abcdef",
    readSeq: 5,
    readOffset: 1000,
    confirmedSeq: 2,
    confirmedOffset: 300,
  },
  {
    host: "aa".repeat(16),
    incarnation: "fedcba9876543210fedcba9876543210",
    readSeq: 0x0102030405,
    readOffset: 64,
    confirmedSeq: 0,
    confirmedOffset: 64,
  },
];

/**
 * Frozen encoding of ENTRIES: header, then the "aa…" entry, then the "bb…" entry,
 * each ending with its 8 reserved zero bytes.
 */
const GOLDEN = [
  "52455850 0100 0000 02000000 ef9346fd",
  // host aa…, incarnation fedc…, readSeq, readOffset 64, confirmedSeq 0, confirmedOffset 64
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa fedcba9876543210fedcba9876543210",
  "0504030201000000 4000000000000000 0000000000000000 4000000000000000 0000000000000000",
  // host bb…, incarnation 0123…, readSeq 5, readOffset 1000, confirmedSeq 2, confirmedOffset 300
  "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb 0123456789abcdef0123456789abcdef",
  "0500000000000000 e803000000000000 0200000000000000 2c01000000000000 0000000000000000",
].join("").replace(/\s+/g, "");

const EMPTY_GOLDEN = "524558500100000000000000e5bc589d";

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function fromHex(h: string): Uint8Array {
  return new Uint8Array(h.match(/../g)!.map((x) => parseInt(x, 16)));
}

/** mulberry32: a tiny deterministic PRNG. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x100000000;
  };
}

function randomEntries(next: () => number, n: number): ExpectEntry[] {
  const hex = (bytes: number) =>
    Array.from({ length: bytes }, () => Math.floor(next() * 256).toString(16).padStart(2, "0"))
      .join("");
  const num = () => {
    const k = Math.floor(next() * 4);
    if (k === 0) return [0, 64, 0xffffffff, Number.MAX_SAFE_INTEGER][Math.floor(next() * 4)];
    if (k === 1) return Math.floor(next() * 10_000);
    return Math.floor(next() * 2 ** 21) * 2 ** 32 + Math.floor(next() * 2 ** 32);
  };
  const hosts = new Set<string>();
  while (hosts.size < n) hosts.add(hex(16));
  return [...hosts].map((host) => ({
    host,
    incarnation: hex(16),
    readSeq: num(),
    readOffset: num(),
    confirmedSeq: num(),
    confirmedOffset: num(),
  }));
}

const byHost = (a: ExpectEntry, b: ExpectEntry) => a.host < b.host ? -1 : a.host > b.host ? 1 : 0;

Deno.test("expect: version and the entry of a host never exchanged with", () => {
  assert.equal(EXPECT_VERSION, 1);
  assert.deepEqual(newExpect("cd".repeat(16)), {
    host: "cd".repeat(16),
    incarnation: "0".repeat(32),
    readSeq: 0,
    readOffset: 64,
    confirmedSeq: 0,
    confirmedOffset: 64,
  });
});

/** The hex in the fenced code block after `<!-- marker -->` in docs/expect.md. */
function docHex(marker: string): string {
  const doc = Deno.readTextFileSync(new URL("../docs/expect.md", import.meta.url));
  const at = doc.indexOf(`<!-- ${marker} -->`);
  assert.notEqual(at, -1, `marker ${marker} not found`);
  const block = /```[a-z]*\n([\s\S]*?)```/.exec(doc.slice(at));
  assert.ok(block, `no code block after ${marker}`);
  return block[1].replace(/\s+/g, "");
}

Deno.test("expect golden bytes: empty file, and the examples in docs/expect.md", () => {
  const bytes = encodeExpect([]);
  assert.equal(toHex(bytes), EMPTY_GOLDEN);
  assert.deepEqual(decodeExpect(fromHex(EMPTY_GOLDEN)), []);
  assert.equal(docHex("expect-empty-hex"), EMPTY_GOLDEN);
  assert.equal(docHex("expect-two-entries-hex"), GOLDEN);
});

Deno.test("expect golden bytes: two entries, sorted by host, field by field", () => {
  const bytes = encodeExpect(ENTRIES);
  assert.equal(toHex(bytes), GOLDEN);
  assert.equal(bytes.length, 16 + 2 * 72);
  assert.deepEqual(decodeExpect(fromHex(GOLDEN)), [ENTRIES[1], ENTRIES[0]]);
  const v = new DataView(bytes.buffer);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), "REXP");
  assert.equal(v.getUint16(4, true), 1);
  assert.equal(v.getUint16(6, true), 0);
  assert.equal(v.getUint32(8, true), 2);
  // The CRC covers bytes 0..11 followed by 16..end.
  const covered = new Uint8Array([...bytes.subarray(0, 12), ...bytes.subarray(16)]);
  assert.equal(v.getUint32(12, true), crc32cSlow(covered));
  assert.equal(v.getUint32(12, true), crc32c(covered));
  // Second entry (host bb…) at 16 + 72.
  assert.equal(toHex(bytes.subarray(88, 104)), "bb".repeat(16));
  assert.equal(toHex(bytes.subarray(104, 120)), ENTRIES[0].incarnation);
  assert.equal(v.getBigUint64(120, true), 5n);
  assert.equal(v.getBigUint64(128, true), 1000n);
  assert.equal(v.getBigUint64(136, true), 2n);
  assert.equal(v.getBigUint64(144, true), 300n);
  assert.ok(bytes.subarray(80, 88).every((x) => x === 0), "entry 0 reserved bytes are zero");
  assert.ok(bytes.subarray(152, 160).every((x) => x === 0), "entry 1 reserved bytes are zero");
});

Deno.test("expect: 1000 random files round-trip, sorted, independent of input order", () => {
  const next = rng(0x52455850);
  let total = 0;
  for (let i = 0; i < 1000; i++) {
    const entries = randomEntries(next, Math.floor(next() * 12));
    const bytes = encodeExpect(entries);
    assert.equal(bytes.length, 16 + 72 * entries.length);
    const back = decodeExpect(bytes);
    assert.deepEqual(back, [...entries].sort(byHost));
    const shuffled = [...entries].reverse();
    assert.deepEqual(encodeExpect(shuffled), bytes, "equal content gives equal bytes");
    assert.deepEqual(encodeExpect(back), bytes);
    total += entries.length;
  }
  assert.ok(total > 4000);
});

Deno.test("expect: every single-bit flip is detected", () => {
  const next = rng(99);
  const files = [
    encodeExpect([]),
    encodeExpect([newExpect("01".repeat(16))]),
    encodeExpect(ENTRIES),
    encodeExpect(randomEntries(next, 7)),
  ];
  let flips = 0;
  for (const bytes of files) {
    const original = decodeExpect(bytes);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      bytes[bit >> 3] ^= 1 << (bit & 7);
      assert.throws(() => decodeExpect(bytes), FormatError, `bit ${bit} of ${bytes.length} bytes`);
      bytes[bit >> 3] ^= 1 << (bit & 7);
      flips++;
    }
    assert.deepEqual(decodeExpect(bytes), original);
  }
  assert.equal(flips, 8 * (16 + 88 + 160 + 16 + 7 * 72));
});

Deno.test("expect: a file of the wrong size is refused", () => {
  const bytes = encodeExpect(ENTRIES);
  // Every truncation.
  for (let n = 0; n < bytes.length; n++) {
    assert.throws(() => decodeExpect(bytes.subarray(0, n)), FormatError, `first ${n} bytes`);
  }
  // Extra bytes, including a whole extra entry's worth.
  for (const extra of [1, 8, 71, 72, 144]) {
    const longer = new Uint8Array(bytes.length + extra);
    longer.set(bytes);
    assert.throws(() => decodeExpect(longer), /wrong size/, `${extra} extra bytes`);
  }
  // A count that disagrees with the size, even with the CRC recomputed.
  const counted = bytes.slice();
  const v = new DataView(counted.buffer);
  v.setUint32(8, 3, true);
  v.setUint32(12, crc32c(counted.subarray(16), crc32c(counted.subarray(0, 12))), true);
  assert.throws(() => decodeExpect(counted), /wrong size/);
});

Deno.test("expect: an unknown version is refused even with a valid CRC", () => {
  const bytes = encodeExpect(ENTRIES);
  const v = new DataView(bytes.buffer);
  v.setUint16(4, 2, true);
  v.setUint32(12, crc32c(bytes.subarray(16), crc32c(bytes.subarray(0, 12))), true);
  assert.throws(() => decodeExpect(bytes), /Expect version 2 is not supported/);
  assert.throws(() => decodeExpect(new TextEncoder().encode("RKML")), /bad magic/);
});

Deno.test("expect: replaced atomically on disk, no temporary file left behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "expect_test_" });
  try {
    const path = `${dir}/expect`;
    writeFileAtomic(path, encodeExpect([]));
    assert.deepEqual(decodeExpect(Deno.readFileSync(path)), []);
    writeFileAtomic(path, encodeExpect(ENTRIES));
    assert.equal(toHex(Deno.readFileSync(path)), GOLDEN);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["expect"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
