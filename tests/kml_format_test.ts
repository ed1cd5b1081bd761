/**
 * Golden-bytes tests of the KML format v1 (docs/kml.md). The hex literals were
 * computed once from the encoder, cross-checked with an independent bitwise
 * CRC32C, and frozen: a change to any of them is a change of the on-disk format.
 */

import assert from "node:assert/strict";
import { crc32c } from "../src/kml/crc32c.ts";
import {
  checkFrame,
  decodeRecord,
  emptyRecord,
  encodeRecord,
  type KmlRecord,
  MAX_PATH_BYTES,
  Op,
  RECORD_FIXED,
  RECORD_MIN,
  RECORD_VERSION,
  RECORD_VERSION_OWNED,
} from "../src/kml/record.ts";
import { decodeHeader, encodeHeader, KML_HEADER_BYTES, KML_VERSION } from "../src/kml/log.ts";
import { FormatError } from "../src/errors.ts";
import { crc32cSlow } from "./helpers.ts";

const HOST = "00112233445566778899aabbccddeeff";
const BASE: KmlRecord = {
  ...emptyRecord(),
  originHost: HOST,
  originSeq: 42,
  epoch: 3,
  timeNs: 1700000000123456789n,
};

/** One fixed record per op, with the fields that op uses. */
const FIXTURES: Record<string, KmlRecord> = {
  store: {
    ...BASE,
    op: Op.Store,
    mode: 0o100644,
    size: 1234,
    mtimeNs: 1699999999000000001n,
    digest: "a5".repeat(32),
    path: "docs/a.txt",
  },
  mkdir: { ...BASE, op: Op.Mkdir, mode: 0o40755, path: "docs" },
  rmdir: { ...BASE, op: Op.Rmdir, path: "old" },
  unlink: { ...BASE, op: Op.Unlink, path: "docs/a.txt" },
  rename: { ...BASE, op: Op.Rename, path: "a", target: "b/c" },
  symlink: { ...BASE, op: Op.Symlink, mode: 0o120777, mtimeNs: -5n, path: "ln", target: "../t" },
  setattr: { ...BASE, op: Op.Setattr, mode: 0o100600, mtimeNs: 1n, path: "x y" },
  permit: { ...BASE, op: Op.Permit, epoch: 4, target: "ffeeddccbbaa99887766554433221100" },
};

/** Frozen encodings of FIXTURES. The fixed part is split at its field boundaries. */
const GOLDEN: Record<string, string> = {
  store: [
    "7a000000 e2ef253b 01 01 0000 a4810000 2a00000000000000",
    "00112233445566778899aabbccddeeff 0300000000000000 15cd853dfe9c9717",
    "d204000000000000 01368ffafd9c9717",
    "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5",
    "0a00 0000 646f63732f612e747874 7a000000",
  ].join(""),
  mkdir: [
    "74000000 34d01d5f 01 02 0000 ed410000 2a00000000000000",
    "00112233445566778899aabbccddeeff 0300000000000000 15cd853dfe9c9717",
    "0000000000000000 0000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0400 0000 646f6373 74000000",
  ].join(""),
  rmdir: [
    "73000000 47d1408e 01 03 0000 00000000 2a00000000000000",
    "00112233445566778899aabbccddeeff 0300000000000000 15cd853dfe9c9717",
    "0000000000000000 0000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0300 0000 6f6c64 73000000",
  ].join(""),
  unlink: [
    "7a000000 a733d068 01 04 0000 00000000 2a00000000000000",
    "00112233445566778899aabbccddeeff 0300000000000000 15cd853dfe9c9717",
    "0000000000000000 0000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0a00 0000 646f63732f612e747874 7a000000",
  ].join(""),
  rename: [
    "74000000 f1fb101a 01 05 0000 00000000 2a00000000000000",
    "00112233445566778899aabbccddeeff 0300000000000000 15cd853dfe9c9717",
    "0000000000000000 0000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100 0300 61 622f63 74000000",
  ].join(""),
  symlink: [
    "76000000 ca635b49 01 06 0000 ffa10000 2a00000000000000",
    "00112233445566778899aabbccddeeff 0300000000000000 15cd853dfe9c9717",
    "0000000000000000 fbffffffffffffff",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0200 0400 6c6e 2e2e2f74 76000000",
  ].join(""),
  setattr: [
    "73000000 cabaf4c2 01 07 0000 80810000 2a00000000000000",
    "00112233445566778899aabbccddeeff 0300000000000000 15cd853dfe9c9717",
    "0000000000000000 0100000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0300 0000 782079 73000000",
  ].join(""),
  permit: [
    "90000000 9c35c1cc 01 08 0000 00000000 2a00000000000000",
    "00112233445566778899aabbccddeeff 0400000000000000 15cd853dfe9c9717",
    "0000000000000000 0000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000 2000 6666656564646363626261613939383837373636353534343333323231313030 90000000",
  ].join(""),
};

/** The worked example of docs/kml.md. */
const EXAMPLE: KmlRecord = {
  ...emptyRecord(),
  op: Op.Mkdir,
  originHost: HOST,
  originSeq: 1,
  epoch: 1,
  timeNs: 1700000000000000000n,
  mode: 0o40755,
  path: "a",
};
const EXAMPLE_HEX = [
  "7100000017e7319601020000ed410000010000000000000000112233445566778899aabbccdd",
  "eeff010000000000000000002a36fe9c97170000000000000000000000000000000000000000",
  "00000000000000000000000000000000000000000000000000000000010000006171000000",
].join("");

const HEADER = { volumeId: "0f".repeat(16), incarnation: "f0".repeat(16) };
const HEADER_HEX =
  "524b4d4c 0100 4000 0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0" +
  "0000000000000000000000000000000000000000 3393db0c";

const enc = new TextEncoder();

/** Bytes of a hex literal (spaces ignored); independent of the hex helpers under test. */
function unhex(s: string): Uint8Array {
  const h = s.replace(/\s+/g, "");
  assert.match(h, /^([0-9a-f]{2})*$/, "hex literal");
  return new Uint8Array(h.match(/../g)!.map((x) => parseInt(x, 16)));
}

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The fenced code block that follows `<!-- marker -->` in a document. */
function blockAfter(doc: string, marker: string): string {
  const at = doc.indexOf(`<!-- ${marker} -->`);
  assert.notEqual(at, -1, `marker ${marker} not found in docs/kml.md`);
  const m = /```[a-z]*\n([\s\S]*?)```/.exec(doc.slice(at));
  assert.ok(m, `no code block after marker ${marker}`);
  return m[1];
}

const DOC = Deno.readTextFileSync(new URL("../docs/kml.md", import.meta.url));

Deno.test("crc32c check value: '123456789' gives 0xe3069283", () => {
  assert.equal(crc32c(enc.encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  // 32 zero bytes and 32 0xff bytes: the RFC 3720 (iSCSI) test vectors.
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
});

Deno.test("crc32c: slicing-by-8 agrees with a bitwise reference at every length and split", () => {
  const data = new Uint8Array(300);
  for (let i = 0; i < data.length; i++) data[i] = (i * 151 + 7) & 0xff;
  for (let n = 0; n <= data.length; n++) {
    const part = data.subarray(0, n);
    assert.equal(crc32c(part), crc32cSlow(part), `length ${n}`);
  }
  // Continuing from a previous value equals one pass over the concatenation.
  for (const cut of [0, 1, 7, 8, 9, 100, 299, 300]) {
    const whole = crc32c(data);
    assert.equal(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut))), whole, `cut ${cut}`);
  }
});

Deno.test("format constants match docs/kml.md", () => {
  assert.equal(RECORD_VERSION, 1);
  assert.equal(KML_VERSION, 1);
  assert.equal(KML_HEADER_BYTES, 64);
  assert.equal(RECORD_FIXED, 108);
  assert.equal(RECORD_MIN, 112);
  assert.equal(MAX_PATH_BYTES, 4096);
  assert.deepEqual(
    [Op.Store, Op.Mkdir, Op.Rmdir, Op.Unlink, Op.Rename, Op.Symlink, Op.Setattr, Op.Permit],
    [1, 2, 3, 4, 5, 6, 7, 8],
  );
});

for (const [name, rec] of Object.entries(FIXTURES)) {
  Deno.test(`golden bytes: ${name} record encodes to the frozen hex and decodes back`, () => {
    const golden = unhex(GOLDEN[name]);
    const bytes = encodeRecord(rec);
    assert.equal(toHex(bytes), toHex(golden));
    assert.equal(checkFrame(golden), null);
    assert.deepEqual(decodeRecord(golden), rec);

    // The layout of docs/kml.md, read back field by field from the frozen bytes.
    const v = new DataView(golden.buffer, golden.byteOffset, golden.byteLength);
    const len = golden.length;
    const n1 = enc.encode(rec.path).length;
    const n2 = enc.encode(rec.target).length;
    assert.equal(len, 108 + n1 + n2 + 4);
    assert.equal(v.getUint32(0, true), len);
    assert.equal(v.getUint32(len - 4, true), len);
    assert.equal(v.getUint32(4, true), crc32cSlow(golden.subarray(8, len - 4)));
    assert.equal(golden[8], 1);
    assert.equal(golden[9], rec.op);
    assert.equal(v.getUint16(10, true), 0);
    assert.equal(v.getUint32(12, true), rec.mode);
    assert.equal(v.getBigUint64(16, true), BigInt(rec.originSeq));
    assert.equal(toHex(golden.subarray(24, 40)), rec.originHost);
    assert.equal(v.getBigUint64(40, true), BigInt(rec.epoch));
    assert.equal(v.getBigInt64(48, true), rec.timeNs);
    assert.equal(v.getBigUint64(56, true), BigInt(rec.size));
    assert.equal(v.getBigInt64(64, true), rec.mtimeNs);
    assert.equal(toHex(golden.subarray(72, 104)), rec.digest);
    assert.equal(v.getUint16(104, true), n1);
    assert.equal(v.getUint16(106, true), n2);
    assert.deepEqual(golden.subarray(108, 108 + n1), enc.encode(rec.path));
    assert.deepEqual(golden.subarray(108 + n1, 108 + n1 + n2), enc.encode(rec.target));
  });
}

Deno.test("golden bytes: Permit carries the holder id as 32 hex characters and the new epoch", () => {
  const b = unhex(GOLDEN.permit);
  const v = new DataView(b.buffer);
  assert.equal(v.getUint16(104, true), 0, "Permit has no path");
  assert.equal(v.getUint16(106, true), 32, "holder id is 32 bytes of text");
  assert.equal(new TextDecoder().decode(b.subarray(108, 140)), FIXTURES.permit.target);
  assert.equal(v.getBigUint64(40, true), 4n);
});

Deno.test("worked example: encoder output equals the hex in docs/kml.md", () => {
  const bytes = encodeRecord(EXAMPLE);
  assert.equal(toHex(bytes), EXAMPLE_HEX);
  assert.equal(bytes.length, 113);
  assert.equal(blockAfter(DOC, "worked-example-hex").replace(/\s+/g, ""), EXAMPLE_HEX);
  assert.deepEqual(decodeRecord(unhex(EXAMPLE_HEX)), EXAMPLE);
});

Deno.test("worked example: the field-by-field dump in docs/kml.md is contiguous and matches", () => {
  const lines = blockAfter(DOC, "worked-example-fields").trim().split("\n").slice(1);
  let expectOffset = 0;
  let hex = "";
  for (const line of lines) {
    const [offset, bytes] = line.split("|").map((s) => s.trim());
    assert.equal(Number(offset), expectOffset, `line "${line}"`);
    const b = bytes.replace(/\s+/g, "");
    assert.match(b, /^([0-9a-f]{2})+$/);
    hex += b;
    expectOffset += b.length / 2;
  }
  assert.equal(expectOffset, 113);
  assert.equal(hex, EXAMPLE_HEX);
});

Deno.test("header golden bytes: encode, decode, and the example in docs/kml.md", () => {
  const golden = unhex(HEADER_HEX);
  const bytes = encodeHeader(HEADER);
  assert.equal(bytes.length, 64);
  assert.equal(toHex(bytes), toHex(golden));
  assert.equal(blockAfter(DOC, "header-example-hex").replace(/\s+/g, ""), toHex(golden));
  assert.deepEqual(decodeHeader(golden), HEADER);
  const v = new DataView(golden.buffer);
  assert.equal(new TextDecoder().decode(golden.subarray(0, 4)), "RKML");
  assert.equal(v.getUint16(4, true), 1);
  assert.equal(v.getUint16(6, true), 64);
  assert.ok(golden.subarray(40, 60).every((x) => x === 0), "reserved bytes are zero");
  assert.equal(v.getUint32(60, true), crc32cSlow(golden.subarray(0, 60)));
});

Deno.test("header: bad magic, checksum, version and size are refused", () => {
  const good = encodeHeader(HEADER);
  const badMagic = good.slice();
  badMagic[0] = 0x53;
  assert.throws(() => decodeHeader(badMagic), /bad magic/);
  const badCrc = good.slice();
  badCrc[30] ^= 1;
  assert.throws(() => decodeHeader(badCrc), /checksum/);
  // Version 2 with a correct CRC: refused because of the version, not the checksum.
  const v2 = good.slice();
  new DataView(v2.buffer).setUint16(4, 2, true);
  new DataView(v2.buffer).setUint32(60, crc32c(v2.subarray(0, 60)), true);
  assert.throws(
    () => decodeHeader(v2),
    (e) => e instanceof FormatError && /version 2/.test(e.message),
  );
  assert.throws(() => decodeHeader(good.subarray(0, 63)), FormatError);
  // Every single-bit flip of the header is refused.
  for (let bit = 0; bit < 64 * 8; bit++) {
    const b = good.slice();
    b[bit >> 3] ^= 1 << (bit & 7);
    assert.throws(() => decodeHeader(b), FormatError, `bit ${bit}`);
  }
});

/** `bytes` with its record CRC recomputed (to test checks behind the CRC). */
function reCrc(bytes: Uint8Array): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  v.setUint32(4, crc32c(bytes.subarray(8, bytes.length - 4)), true);
  return bytes;
}

Deno.test("record versioning: an unknown record version or op is refused even with a valid CRC", () => {
  const v2 = unhex(GOLDEN.mkdir);
  v2[8] = 2;
  reCrc(v2);
  assert.throws(() => decodeRecord(v2), /path sizes/, "version 2 without its owner fields");
  const v3 = unhex(GOLDEN.mkdir);
  v3[8] = 3;
  reCrc(v3);
  assert.equal(checkFrame(v3), "unknown record version 3");
  const linkV1 = unhex(GOLDEN.mkdir);
  linkV1[9] = Op.Link;
  reCrc(linkV1);
  assert.throws(() => decodeRecord(linkV1), /a link in version 1/);
  for (const op of [0, 10, 255]) {
    const b = unhex(GOLDEN.mkdir);
    b[9] = op;
    reCrc(b);
    assert.equal(checkFrame(b), null, "frame itself is sound");
    assert.throws(() => decodeRecord(b), /unknown operation/);
  }
});

Deno.test("record decoding: inconsistent path sizes and invalid UTF-8 are refused", () => {
  const sizes = unhex(GOLDEN.rename);
  new DataView(sizes.buffer).setUint16(104, 2, true); // n1 + n2 no longer adds up to len
  reCrc(sizes);
  assert.throws(() => decodeRecord(sizes), /path sizes/);
  const utf8 = unhex(GOLDEN.rename);
  utf8[108] = 0xff; // path "a" becomes a lone 0xff byte
  reCrc(utf8);
  assert.throws(() => decodeRecord(utf8), /UTF-8/);
});

Deno.test("record framing: length bounds, trailing garbage and size limits", () => {
  const golden = unhex(GOLDEN.store);
  // A valid record followed by other bytes (the next record) is still valid.
  const longer = new Uint8Array(golden.length + 50).fill(0xee);
  longer.set(golden);
  assert.equal(checkFrame(longer), null);
  assert.deepEqual(decodeRecord(longer), FIXTURES.store);
  assert.match(checkFrame(new Uint8Array(3)) ?? "", /truncated length/);
  assert.match(checkFrame(new Uint8Array(200)) ?? "", /bad length 0/);
  // The largest record: both strings at the limit.
  const big = { ...BASE, op: Op.Rename, path: "p".repeat(4096), target: "t".repeat(4096) };
  const bigBytes = encodeRecord(big);
  assert.equal(bigBytes.length, 8304);
  assert.deepEqual(decodeRecord(bigBytes), big);
  assert.throws(() => encodeRecord({ ...big, path: "p".repeat(4097) }), FormatError);
  assert.throws(() => encodeRecord({ ...big, target: "é".repeat(2049) }), FormatError);
  assert.throws(() => encodeRecord({ ...BASE, originHost: "XYZ" }), FormatError);
  assert.throws(() => encodeRecord({ ...BASE, digest: "ab" }), FormatError);
});

/** Version 2 records: owner fields after the target; Link exists only in version 2. */
const GOLDEN_V2: [KmlRecord, string][] = [
  [
    {
      ...BASE,
      op: Op.Setattr,
      mode: 0o100640,
      mtimeNs: 1n,
      path: "f",
      uid: 1000,
      gid: 33,
      owner: "ann",
      group: "www-data",
    },
    [
      "88000000 76d389ec 02 07 0000 a0810000 2a00000000000000",
      "00112233445566778899aabbccddeeff 0300000000000000 15cd853dfe9c9717",
      "0000000000000000 0100000000000000",
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100 0000 66",
      "e8030000 21000000 0300 0800 616e6e 7777772d64617461",
      "88000000",
    ].join(""),
  ],
  [
    {
      ...BASE,
      op: Op.Link,
      mode: 0o100644,
      size: 5,
      mtimeNs: 7n,
      digest: "b6".repeat(32),
      path: "l",
      target: "f",
      uid: 0,
      gid: -1,
      owner: "root",
    },
    [
      "82000000 de57b362 02 09 0000 a4810000 2a00000000000000",
      "00112233445566778899aabbccddeeff 0300000000000000 15cd853dfe9c9717",
      "0500000000000000 0700000000000000",
      "b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6",
      "0100 0100 6c 66",
      "00000000 ffffffff 0400 0000 726f6f74",
      "82000000",
    ].join(""),
  ],
];

Deno.test("golden bytes: version 2 records (owner fields, Link) encode to the frozen hex and decode back", () => {
  assert.equal(RECORD_VERSION_OWNED, 2);
  assert.equal(Op.Link, 9);
  for (const [rec, hex] of GOLDEN_V2) {
    const golden = unhex(hex);
    assert.equal(toHex(encodeRecord(rec)), toHex(golden));
    assert.deepEqual(decodeRecord(golden), rec);
    const v = new DataView(golden.buffer, golden.byteOffset, golden.byteLength);
    const len = golden.length;
    assert.equal(v.getUint32(0, true), len);
    assert.equal(v.getUint32(len - 4, true), len);
    assert.equal(v.getUint32(4, true), crc32cSlow(golden.subarray(8, len - 4)));
    assert.equal(golden[8], 2);
    const at = 108 + v.getUint16(104, true) + v.getUint16(106, true);
    assert.equal(v.getUint32(at, true), rec.uid < 0 ? 0xffffffff : rec.uid);
    assert.equal(v.getUint32(at + 4, true), rec.gid < 0 ? 0xffffffff : rec.gid);
    const [n3, n4] = [v.getUint16(at + 8, true), v.getUint16(at + 10, true)];
    assert.equal(new TextDecoder().decode(golden.subarray(at + 12, at + 12 + n3)), rec.owner);
    assert.equal(at + 12 + n3 + n4 + 4, len);
  }
  const plain = decodeRecord(unhex(GOLDEN.store));
  assert.deepEqual([plain.uid, plain.gid, plain.owner, plain.group], [-1, -1, "", ""]);
  assert.equal(
    encodeRecord(plain)[8],
    1,
    "a record without owner fields is still written as version 1",
  );
});
