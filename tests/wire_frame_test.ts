/**
 * The wire protocol's frames (docs/protocol.md): golden bytes written from
 * the document's table by hand (not from the encoder), any chunking of the
 * stream, and a hostile peer's frames refused before their payload is
 * buffered.
 */

import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  encodeFrame,
  FLAG_DEFLATE,
  FLAG_END,
  type Frame,
  FrameDecoder,
  HEADER_BYTES,
  MAX_PAYLOAD,
  MsgType,
  ProtocolError,
  readFrames,
} from "../src/wire/frame.ts";
import { decodeJson, encodeJson, MAX_JSON } from "../src/wire/json.ts";
import {
  decodeMessage,
  encodeMessage,
  type Message,
  PROTOCOL_VERSION,
} from "../src/wire/messages.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => new Uint8Array(s.match(/../g)!.map((x) => parseInt(x, 16)));
const text = (s: string) => new TextEncoder().encode(s);

/** Frames and their bytes, from the table in docs/protocol.md. */
const GOLDEN: [string, Frame, string][] = [
  [
    "BYE, END, call 1, no payload",
    { type: MsgType.Bye, flags: FLAG_END, call: 1, payload: new Uint8Array() },
    "00000000" + "0d" + "01" + "0000" + "01000000",
  ],
  [
    "DATA, call 5, 'abc'",
    { type: MsgType.Data, flags: 0, call: 5, payload: text("abc") },
    "03000000" + "07" + "00" + "0000" + "05000000" + "616263",
  ],
  [
    "DATA, deflated, last of call 7",
    { type: MsgType.Data, flags: FLAG_END | FLAG_DEFLATE, call: 7, payload: text("abc") },
    "03000000" + "07" + "03" + "0000" + "07000000" + "616263",
  ],
  [
    'RECORDS?, call 0x01020304, {"offset":64}',
    {
      type: MsgType.RecordsRequest,
      flags: 0,
      call: 0x01020304,
      payload: encodeJson({ offset: 64 }),
    },
    "0d000000" + "04" + "00" + "0000" + "04030201" + "7b226f6666736574223a36347d",
  ],
  [
    "HELLO outside any call (call 0)",
    { type: MsgType.Hello, flags: 0, call: 0, payload: text("{}") },
    "02000000" + "01" + "00" + "0000" + "00000000" + "7b7d",
  ],
];

Deno.test("wire frames: golden bytes, both ways", () => {
  for (const [what, frame, bytes] of GOLDEN) {
    assertEquals(hex(encodeFrame(frame)), bytes, what);
    const d = new FrameDecoder();
    assertEquals(d.push(unhex(bytes)), [frame], what);
    d.end();
  }
});

Deno.test("wire frames: a stream cut at every byte decodes to the same frames", () => {
  const all = GOLDEN.map(([, f]) => f);
  const stream = new Uint8Array(GOLDEN.flatMap(([, , b]) => [...unhex(b)]));
  for (let cut = 0; cut <= stream.length; cut++) {
    const d = new FrameDecoder();
    const got = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
    d.end();
    assertEquals(got, all, `cut at ${cut}`);
  }
  // And one byte at a time.
  const d = new FrameDecoder();
  const got: Frame[] = [];
  for (const b of stream) got.push(...d.push(Uint8Array.of(b)));
  assertEquals(got, all);
});

Deno.test("wire frames: random frames in random chunks round-trip", () => {
  let seed = 12345;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const frames: Frame[] = [];
  for (let i = 0; i < 300; i++) {
    const payload = new Uint8Array(rnd(3) === 0 ? rnd(200_000) : rnd(40));
    for (let j = 0; j < payload.length; j += 97) payload[j] = rnd(256);
    frames.push({ type: 4 + rnd(10), flags: rnd(2), call: 1 + rnd(1000), payload });
  }
  const bytes = new Uint8Array(frames.reduce((n, f) => n + HEADER_BYTES + f.payload.length, 0));
  let at = 0;
  for (const f of frames) {
    bytes.set(encodeFrame(f), at);
    at += HEADER_BYTES + f.payload.length;
  }
  const d = new FrameDecoder();
  const got: Frame[] = [];
  for (let i = 0; i < bytes.length;) {
    const n = 1 + rnd(70_000);
    got.push(...d.push(bytes.subarray(i, i + n)));
    i += n;
  }
  d.end();
  assertEquals(got.length, frames.length);
  for (let i = 0; i < frames.length; i++) assertEquals(got[i], frames[i], `frame ${i}`);
});

Deno.test("wire frames: a hostile header is refused before its payload arrives", () => {
  const header = (length: number, type: number, flags: number, zero: number, call: number) => {
    const b = new Uint8Array(HEADER_BYTES);
    const v = new DataView(b.buffer);
    v.setUint32(0, length, true);
    v.setUint8(4, type);
    v.setUint8(5, flags);
    v.setUint16(6, zero, true);
    v.setUint32(8, call, true);
    return b;
  };
  const cases: [string, Uint8Array, string, string][] = [
    ["4 GiB - 1 frame", header(0xffff_ffff, MsgType.Data, 0, 0, 1), "limit", "limit is"],
    ["one byte over the limit", header(MAX_PAYLOAD + 1, MsgType.Data, 0, 0, 1), "limit", "limit"],
    ["type 0", header(0, 0, 0, 0, 1), "protocol", "unknown message type 0"],
    ["type 14", header(0, 14, 0, 0, 1), "protocol", "unknown message type 14"],
    ["type 255", header(0, 255, 0, 0, 1), "protocol", "unknown message type 255"],
    ["unknown flag", header(0, MsgType.Data, 0x04, 0, 1), "protocol", "unknown flags 0x4"],
    ["DEFLATE off DATA", header(0, MsgType.Records, 0x02, 0, 1), "protocol", "unknown flags 0x2"],
    ["reserved bytes", header(0, MsgType.Data, 0, 1, 1), "protocol", "reserved"],
    ["DATA outside a call", header(0, MsgType.Data, 0, 0, 0), "protocol", "outside any call"],
  ];
  for (const [what, bytes, code, says] of cases) {
    const e = assertThrows(() => new FrameDecoder().push(bytes), ProtocolError, says, what);
    assertEquals((e as ProtocolError).code, code, what);
    assert(e.message.includes("at byte 0"), `${what}: ${e.message}`);
  }
  // After good frames, the position of the bad one is named.
  const d = new FrameDecoder();
  const good = encodeFrame(GOLDEN[1][1]);
  const e = assertThrows(() => d.push(new Uint8Array([...good, ...header(0, 99, 0, 0, 1)])));
  assert(e.message.includes(`at byte ${good.length}`), e.message);
});

Deno.test("wire frames: a stream that stops inside a frame is a protocol error", () => {
  const bytes = encodeFrame(GOLDEN[2][1]);
  for (const n of [1, HEADER_BYTES - 1, HEADER_BYTES, bytes.length - 1]) {
    const d = new FrameDecoder();
    assertEquals(d.push(bytes.subarray(0, n)), []);
    assertThrows(() => d.end(), ProtocolError, "ended inside a frame", `${n} bytes`);
  }
});

Deno.test("wire frames: the encoder refuses what the decoder would refuse", () => {
  const f = (o: Partial<Frame>): Frame => ({ ...GOLDEN[1][1], ...o });
  assertThrows(() => encodeFrame(f({ payload: new Uint8Array(MAX_PAYLOAD + 1) })), RangeError);
  assertThrows(() => encodeFrame(f({ type: 14 as MsgType })), RangeError);
  assertThrows(() => encodeFrame(f({ flags: 4 })), RangeError);
  assertThrows(() => encodeFrame(f({ call: 0 })), RangeError);
  assertThrows(() => encodeFrame(f({ call: 2 ** 32 })), RangeError);
  assertEquals(
    encodeFrame(f({ payload: new Uint8Array(MAX_PAYLOAD) })).length,
    HEADER_BYTES + MAX_PAYLOAD,
  );
});

Deno.test("wire frames: readFrames over a ReadableStream, and its truncated end", async () => {
  const bytes = new Uint8Array(GOLDEN.flatMap(([, , b]) => [...unhex(b)]));
  const chunks = (b: Uint8Array) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < b.length; i += 5) c.enqueue(b.slice(i, i + 5));
        c.close();
      },
    });
  const got: Frame[] = [];
  for await (const f of readFrames(chunks(bytes))) got.push(f);
  assertEquals(got, GOLDEN.map(([, f]) => f));
  let err: unknown;
  try {
    for await (const _ of readFrames(chunks(bytes.subarray(0, bytes.length - 1)))) { /* drain */ }
  } catch (e) {
    err = e;
  }
  assert(err instanceof ProtocolError, String(err));
});

Deno.test("wire JSON payloads: exactly the listed fields, UTF-8, bounded", () => {
  assertEquals(decodeJson(encodeJson({ offset: 64 }), "RECORDS?", ["offset"]), { offset: 64 });
  assertEquals(
    decodeJson(encodeJson(null), "POSITION", ["seq", "offset"], { nullable: true }),
    null,
  );
  const bad: [string, Uint8Array, string][] = [
    ["extra field", encodeJson({ offset: 1, x: 2 }), "unknown fields x"],
    ["missing field", encodeJson({}), "missing fields offset"],
    ["array", text("[1]"), "not a JSON object"],
    ["null where not allowed", text("null"), "not a JSON object"],
    ["not JSON", text("{offset:1}"), "not UTF-8 JSON"],
    ["bad UTF-8", new Uint8Array([0x7b, 0xff, 0x7d]), "not UTF-8 JSON"],
    ["too large", new Uint8Array(MAX_JSON + 1).fill(0x20), "JSON payload of"],
  ];
  for (const [what, bytes, says] of bad) {
    assertThrows(() => decodeJson(bytes, "RECORDS?", ["offset"]), ProtocolError, says, what);
  }
  assertThrows(() => encodeJson({ s: "x".repeat(MAX_JSON) }), RangeError);
});

const ID_A = "00112233445566778899aabbccddeeff";
const ID_B = "ffeeddccbbaa99887766554433221100";

Deno.test("wire messages: golden HELLO payload, and each message round-trips", () => {
  const hello: Message = {
    type: MsgType.Hello,
    protocol: PROTOCOL_VERSION,
    volume: ID_A,
    host: ID_B,
    name: "web1",
    incarnation: ID_A,
    epoch: 3,
  };
  assertEquals(
    new TextDecoder().decode(encodeMessage(hello)),
    `{"protocol":2,"volume":"${ID_A}","host":"${ID_B}","name":"web1",` +
      `"incarnation":"${ID_A}","epoch":3}`,
  );
  const all: Message[] = [
    hello,
    { ...hello, type: MsgType.Welcome, readOnly: true },
    { type: MsgType.Error, code: "busy", message: "another run holds it" },
    { type: MsgType.RecordsRequest, offset: 64 },
    { type: MsgType.RecordsRequest, offset: 64, limit: 8 << 20 },
    { type: MsgType.FileRequest, path: "dir/file name", from: 1 << 20, compress: true },
    { type: MsgType.PositionRequest, host: ID_A, incarnation: ID_B },
    { type: MsgType.Position, position: { seq: 7, offset: 900 } },
    { type: MsgType.Position, position: null },
    { type: MsgType.CaptureRequest },
    { type: MsgType.PullRequest },
    { type: MsgType.Result, result: { received: 2, problems: [] } },
  ];
  for (const m of all) assertEquals(decodeMessage(m.type, encodeMessage(m)), m, MsgType[m.type]);
});

Deno.test("wire messages: a hostile peer's fields are refused with what is wrong", () => {
  const j = (o: unknown) => text(JSON.stringify(o));
  const hello = {
    protocol: 1,
    volume: ID_A,
    host: ID_B,
    name: "x",
    incarnation: ID_A,
    epoch: 0,
  };
  const bad: [string, MsgType, Uint8Array, string][] = [
    ["id not hex", MsgType.Hello, j({ ...hello, host: "../../etc" }), "host is not 32 hex"],
    ["id upper case", MsgType.Hello, j({ ...hello, volume: ID_A.toUpperCase() }), "volume"],
    ["negative epoch", MsgType.Hello, j({ ...hello, epoch: -1 }), "epoch is not"],
    ["float offset", MsgType.RecordsRequest, j({ offset: 1.5 }), "offset is not"],
    ["huge offset", MsgType.RecordsRequest, j({ offset: 2 ** 60 }), "offset is not"],
    ["string offset", MsgType.RecordsRequest, j({ offset: "64" }), "offset is not"],
    ["negative limit", MsgType.RecordsRequest, j({ offset: 64, limit: -1 }), "limit is not"],
    ["unknown field", MsgType.RecordsRequest, j({ offset: 64, max: 1 }), "unknown fields max"],
    [
      "absolute path",
      MsgType.FileRequest,
      j({ path: "/etc/passwd", from: 0, compress: false }),
      "absolute",
    ],
    [
      "dot-dot path",
      MsgType.FileRequest,
      j({ path: "a/../../b", from: 0, compress: false }),
      "not normalised",
    ],
    ["NUL in path", MsgType.FileRequest, j({ path: "a\0b", from: 0, compress: false }), "NUL"],
    [
      "metadata path",
      MsgType.FileRequest,
      j({ path: ".replicator/kml", from: 0, compress: false }),
      "metadata",
    ],
    ["unknown error code", MsgType.Error, j({ code: "oops", message: "" }), "code is not"],
    ["readOnly not bool", MsgType.Welcome, j({ ...hello, readOnly: 1 }), "readOnly"],
    ["DATA is bytes", MsgType.Data, text("{}"), "carries bytes"],
    ["RECORDS is bytes", MsgType.Records, text("{}"), "carries bytes"],
    ["Result not object", MsgType.Result, text("[]"), "not a JSON object"],
  ];
  for (const [what, type, payload, says] of bad) {
    assertThrows(() => decodeMessage(type, payload), ProtocolError, says, what);
  }
});
