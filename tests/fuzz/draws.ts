/**
 * What a fuzzer session sends, drawn at random: HELLOs (valid or not),
 * requests that keep the session, and frames that end it, each with what the
 * server must do with it. The base of the Fuzzer, which runs the session.
 */

import {
  FLAG_END,
  type Frame,
  FrameDecoder,
  HEADER_BYTES,
  MAX_PAYLOAD,
  MsgType,
} from "../../src/wire/frame.ts";
import { MAX_JSON } from "../../src/wire/json.ts";
import { decodeMessage, type Message, PROTOCOL_VERSION } from "../../src/wire/messages.ts";
import { bytes, chance, hexId, int, pick, type Rng, weighted } from "./random.ts";
import { concat, frame, hex, jsonBytes, rawHeader, text } from "./bytes.ts";
import type { World } from "./world.ts";
import type { Conn } from "./conn.ts";
import type { Stats } from "./stats.ts";
import {
  badFields,
  badIdentityField,
  flipped,
  jsonText,
  LOOKALIKES,
  randomName,
} from "./corpus.ts";
import { decodes, endsClean, tryDecode } from "./rules.ts";
import { SEED } from "./settings.ts";

/** What a reply to one of our calls must be. */
export type Want =
  | { is: "bytes"; bytes: Uint8Array; orError?: boolean } // exactly these bytes (or ERROR if orError)
  | { is: "error" } // ERROR, and no bytes before it
  | { is: "records" } // whole records or ERROR (the log may grow meanwhile)
  | { is: "message" }; // its reply message (POSITION, RESULT) or ERROR

export interface Pending {
  request: MsgType;
  reply: MsgType;
  want: Want;
  /** The request's payload (for messages). */
  payload: Uint8Array;
  /** FILE? asked for deflated DATA. */
  compress: boolean;
  got: Uint8Array[];
}

/** A request the fuzzer made: its payload and what the rules make of it. */
interface Generated {
  type: MsgType;
  payload: Uint8Array;
  m: Message;
}

/** How a session ends, from our side. */
export type Ending = "error" | "remote" | "bye" | "eof" | "refused" | "refused-error";

export const REPLY_TO = new Map<MsgType, MsgType>([
  [MsgType.RecordsRequest, MsgType.Records],
  [MsgType.FileRequest, MsgType.Data],
  [MsgType.PositionRequest, MsgType.Position],
  [MsgType.CaptureRequest, MsgType.Result],
  [MsgType.PullRequest, MsgType.Result],
]);
export const REQUESTS = [...REPLY_TO.keys(), MsgType.Bye];

/** The frames a session sends; the Fuzzer extends it with the session itself. */
export class Draws {
  /** The last units sent, for a failure's report. */
  trail: (Uint8Array | string)[] = [];
  /** Our calls in flight (a random call id must not be one of them). */
  protected inFlight = new Set<number>();
  protected nextCall = 1;
  protected randomCalls = false;
  /** A CAPTURE? or PULL? is in flight: the log may grow. */
  protected slow = false;

  constructor(
    readonly w: World,
    readonly r: Rng,
    readonly stats: Stats,
    readonly conn: Conn,
    readonly label: string,
  ) {}

  fail(why: string): never {
    throw new Error(
      `${this.label} (FUZZ_SEED=${SEED}): ${why}\nlast units sent, oldest first:\n` +
        this.trail.slice(-48).map((u) =>
          typeof u === "string" ? `text message ${JSON.stringify(u.slice(0, 80))}` : hex(u)
        ).join("\n"),
    );
  }

  // -- identities ----------------------------------------------------------

  hello(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      protocol: PROTOCOL_VERSION,
      volume: this.w.volumeId,
      host: this.w.cloneHost,
      name: "fuzz-client",
      incarnation: hexId(this.r),
      epoch: 0,
      ...extra,
    };
  }

  /** A HELLO, valid or not, with what the server must do with it. */
  fuzzedHello(): { units: (Uint8Array | string)[]; expect: "welcome" | Ending } {
    const r = this.r;
    const zero = "0".repeat(32);
    const names = [
      "x".repeat(4096),
      "",
      "ünï ☃ \u202e",
      "tab\tbell\x07esc\x1b[31m",
      "line\nreplicator: forged",
      'back\\slash "quote"',
    ];
    const variant = weighted<() => Record<string, unknown> | Uint8Array | string>(r, [
      [3, () => this.hello({ name: pick(r, names) })],
      [2, () => this.hello({ volume: zero, host: zero, name: "", incarnation: zero })],
      [1, () => this.hello({ epoch: pick(r, [0, 1, 2 ** 53 - 1]) })],
      [1, () => this.hello({ incarnation: zero })],
      [1, () => this.hello({ host: zero })],
      [2, () => this.hello({ protocol: pick(r, [0, 1, PROTOCOL_VERSION + 1, 99, 2 ** 31]) })],
      [2, () => this.hello({ volume: hexId(r) })],
      [1, () => this.hello({ volume: zero })],
      [2, () => this.hello({ host: this.w.serverHost })],
      [3, () => this.hello(badIdentityField(r))],
      [1, () => this.hello({ name: "x".repeat(4097) })],
      [1, () => bytes(r, int(r, 40))],
      [1, () => ""],
      [1, () => frame(MsgType.Hello, 1 + 2 * int(r, 100), jsonBytes(this.hello()))],
      [1, () => frame(MsgType.FileRequest, 1, jsonBytes({ path: "f", from: 0 }))],
      [1, () => frame(MsgType.Welcome, 0, jsonBytes({ ...this.hello(), readOnly: false }))],
      [1, () => frame(MsgType.Error, 0, jsonBytes({ code: "internal", message: "fuzz" }))],
      [1, () => frame(MsgType.Hello, 0, jsonBytes(this.hello())).subarray(0, 30)],
      [2, () => flipped(r, frame(MsgType.Hello, 0, jsonBytes(this.hello())), 3)],
      [2, () => frame(MsgType.Hello, 0, jsonText(r, Object.entries(this.hello())))],
    ])();
    let unit: Uint8Array | string;
    if (variant instanceof Uint8Array || typeof variant === "string") unit = variant;
    else unit = frame(MsgType.Hello, 0, jsonBytes(variant), chance(r, 0.2) ? 0 : FLAG_END);
    if (this.conn.transport === "stdio" && typeof unit === "string") unit = text(unit);
    return { units: [unit], expect: this.#helloVerdict(unit) };
  }

  /** What the server must answer to `unit` as the first thing a session sends. */
  #helloVerdict(unit: Uint8Array | string): "welcome" | Ending {
    if (typeof unit === "string") return "refused";
    const d = new FrameDecoder();
    let frames: Frame[];
    try {
      frames = d.push(unit);
    } catch {
      return "refused";
    }
    const f = frames[0];
    if (!f || frames.length > 1 || f.call !== 0 || f.type !== MsgType.Hello) return "refused";
    let m: Message;
    try {
      m = decodeMessage(f.type, f.payload);
    } catch {
      return "refused";
    }
    const h = m as Extract<Message, { type: MsgType.Hello }>;
    if (h.protocol !== PROTOCOL_VERSION) return "refused-error";
    const zero = "0".repeat(32);
    if (h.volume === zero && h.host === zero) return "welcome";
    if (h.volume !== this.w.volumeId || h.host === this.w.serverHost) return "refused-error";
    return "welcome";
  }

  // -- requests that keep the session ----------------------------------------

  #call(): number {
    if (this.randomCalls) {
      for (;;) {
        const c = (int(this.r, 2 ** 31) * 2 + 1) >>> 0;
        if (!this.inFlight.has(c)) return c;
      }
    }
    const c = this.nextCall;
    this.nextCall += 2;
    return c;
  }

  /** One request the message rules accept, and what its reply must be. */
  keepRequest(slow = false): { unit: Uint8Array; call: number; pending: Pending } {
    const r = this.r;
    let req: Generated;
    if (slow) req = this.#generate(chance(r, 0.4) ? MsgType.CaptureRequest : MsgType.PullRequest);
    else {
      // Drawn from a pool, a slot made anew now and then: making a request
      // costs the client more than sending it.
      const i = int(r, this.#pool.length);
      this.#pool[i] ??= this.#generate();
      req = this.#pool[i];
      if (chance(r, 0.15)) this.#pool[i] = undefined;
    }
    const { type, payload, m } = req;
    this.stats.bump(this.stats.sent, MsgType[type]);
    const call = this.#call();
    return {
      unit: frame(type, call, payload, chance(r, 0.1) ? 0 : FLAG_END),
      call,
      pending: {
        request: type,
        reply: REPLY_TO.get(type)!,
        want: this.#want(m),
        payload,
        compress: m.type === MsgType.FileRequest && m.compress,
        got: [],
      },
    };
  }

  /** Requests made so far, drawn again with fresh call ids. */
  #pool: (Generated | undefined)[] = new Array(256);

  /** One request the message rules accept (of `type`, or a type drawn by weight). */
  #generate(only?: MsgType): Generated {
    const r = this.r;
    for (let tries = 1;; tries++) {
      if (tries > 200) {
        // The message rules changed under the fuzzer: it would only send one kind.
        this.fail("the message rules refuse 200 requests in a row that should pass them");
      }
      const type = only ?? weighted<MsgType>(r, [
        // Weighed by what they cost the server: a RECORDS? that reads the
        // log and a FILE? of a real file take about ten times the others.
        [30, MsgType.FileRequest],
        [45, MsgType.RecordsRequest],
        [25, MsgType.PositionRequest],
      ]);
      let payload = jsonText(r, this.#fields(type));
      if (chance(r, 0.06)) {
        // Bytes flipped: kept only where the message rules still pass.
        for (let i = 0; i < 5; i++) {
          const p = flipped(r, payload, 1 + int(r, 2));
          if (decodes(type, p)) {
            payload = p;
            break;
          }
        }
      }
      const m = tryDecode(type, payload);
      if (m) return { type, payload, m };
    }
  }

  #fields(type: MsgType): [string, unknown][] {
    const r = this.r;
    const w = this.w;
    switch (type) {
      case MsgType.RecordsRequest: {
        const starts = [...w.boundaries];
        const end = w.kml.length;
        const offset = weighted<() => number>(r, [
          // A RECORDS? that reads the log costs the server five times a refusal.
          [0.4, () => pick(r, starts)],
          [0.1, () => end],
          [6, () => int(r, 64)],
          [0.5, () => pick(r, starts) + 1 + int(r, 40)],
          [6, () => end + 1 + int(r, 1 << 20)],
          [3, () => pick(r, [2 ** 32, 2 ** 32 + 64, 2 ** 53 - 1, 2 ** 31 - 1])],
        ])();
        return [["offset", offset]];
      }
      case MsgType.FileRequest: {
        const known = [...w.files.keys()];
        const path = weighted<() => string>(r, [
          // A FILE? of a real file costs the server five times a refusal.
          [0.6, () => pick(r, known)],
          [6, () => pick(r, w.others)],
          [4, () => pick(r, LOOKALIKES)],
          [1, () => "n".repeat(256 + int(r, 200))],
          [0.6, () => ("a/".repeat(2047) + "b").slice(0, 4096 - int(r, 3))],
          [1, () => `d/${"x".repeat(255)}/${"y".repeat(255)}`],
          [4, () => randomName(r)],
        ])();
        const size = w.files.get(path)?.length ?? 100;
        const from = weighted<() => number>(r, [
          [6, () => 0],
          [3, () => int(r, size + 1)],
          [2, () => size + 1 + int(r, 1000)],
          [1, () => pick(r, [2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53 - 1])],
        ])();
        return [["path", path], ["from", from], ["compress", chance(r, 0.3)]];
      }
      case MsgType.PositionRequest: {
        const id = () =>
          pick(r, [w.cloneHost, w.serverHost, w.volumeId, "0".repeat(32), "f".repeat(32)]);
        return [
          ["host", chance(r, 0.6) ? id() : hexId(r)],
          ["incarnation", chance(r, 0.3) ? id() : hexId(r)],
        ];
      }
      default:
        return [];
    }
  }

  #want(m: Message): Want {
    const w = this.w;
    switch (m.type) {
      case MsgType.RecordsRequest:
        if (this.slow) return { is: "records" };
        return w.boundaries.has(m.offset)
          ? { is: "bytes", bytes: w.kml.subarray(m.offset) }
          : { is: "error" };
      case MsgType.FileRequest: {
        const c = w.files.get(m.path);
        // Past 2^31 the system may refuse the seek (EINVAL): a clean refusal too.
        return c
          ? {
            is: "bytes",
            bytes: c.subarray(Math.min(m.from, c.length)),
            orError: m.from > 2 ** 31,
          }
          : { is: "error" };
      }
      default:
        return { is: "message" };
    }
  }

  // -- frames that end the session -------------------------------------------

  /** One unit that breaks a rule (or a BYE, or nothing then the end of the stream). */
  ending(): { units: (Uint8Array | string)[]; expect: Ending; kind: string } {
    const r = this.r;
    const https = this.conn.transport === "https";
    const odd = () => this.#call();
    for (;;) {
      const [kind, make] = weighted<[string, () => Uint8Array | string | null]>(r, [
        [30, ["bad-field", () => this.#badField(odd())]],
        [12, ["random-bytes", () => bytes(r, 1 + int(r, 64))]],
        [5, ["unknown-type", () => rawHeader(0, pick(r, [0, 14, 15, 99, 255]), 1, 0, odd())]],
        [4, ["bad-flags", () =>
          concat([
            rawHeader(2, MsgType.PositionRequest, 2 + int(r, 254), 0, odd()),
            text("{}"),
          ])]],
        [4, [
          "reserved-bytes",
          () =>
            concat([
              rawHeader(2, MsgType.CaptureRequest, 1, 1 + int(r, 0xffff), odd()),
              text("{}"),
            ]),
        ]],
        [4, ["over-4MiB-header", () =>
          concat([
            rawHeader(MAX_PAYLOAD + 1 + int(r, 2 ** 31), MsgType.Data, 0, 0, odd()),
            bytes(r, int(r, 100)),
          ])]],
        [0.3, ["over-4MiB-payload", () => {
          const b = new Uint8Array(HEADER_BYTES + MAX_PAYLOAD + 1).fill(int(r, 256));
          b.set(rawHeader(MAX_PAYLOAD + 1, MsgType.Data, 0, 0, odd()));
          return b;
        }]],
        [4, [
          "json-over-64KiB",
          () =>
            frame(MsgType.FileRequest, odd(), text(`{"path":"${"p".repeat(MAX_JSON)}","from":0}`)),
        ]],
        [6, ["even-call", () =>
          frame(
            pick(r, [
              MsgType.Records,
              MsgType.Data,
              MsgType.Error,
              MsgType.FileRequest,
              MsgType.Bye,
            ]),
            2 + 2 * int(r, 2 ** 30),
            pick(r, [new Uint8Array(), jsonBytes({ code: "internal", message: "x" })]),
          )]],
        [6, ["not-a-request", () =>
          frame(
            pick(r, [
              MsgType.Welcome,
              MsgType.Records,
              MsgType.Data,
              MsgType.Position,
              MsgType.Result,
              MsgType.Error,
            ]),
            odd(),
            pick(r, [
              new Uint8Array(),
              text("null"),
              jsonBytes({ code: "internal", message: "x" }),
            ]),
          )]],
        [3, ["call-0", () =>
          pick(r, [
            rawHeader(0, pick(r, REQUESTS), 1, 0, 0),
            frame(MsgType.Hello, 0, jsonBytes(this.hello())),
            frame(MsgType.Welcome, 0, jsonBytes({ ...this.hello(), readOnly: true })),
            frame(MsgType.Error, 0, text(pick(r, ['{"code":"nope","message":""}', "{}", "x"]))),
          ])]],
        [2, [
          "error-call-0",
          () =>
            frame(
              MsgType.Error,
              0,
              jsonBytes({ code: pick(r, ["internal", "busy"]), message: "fuzz bye" }),
            ),
        ]],
        [2, ["truncated", () => {
          const f = this.keepRequest().unit;
          return f.subarray(0, 1 + int(r, f.length - 1));
        }]],
        [https ? 3 : 0, ["text-message", () => pick(r, ["", "hello", '{"offset":64}'])]],
        [https ? 2 : 0, [
          "two-frames",
          () => concat([this.keepRequest().unit, this.keepRequest().unit]),
        ]],
        [https ? 1 : 0, [
          "trailing-bytes",
          () => concat([this.keepRequest().unit, bytes(r, 1 + int(r, 11))]),
        ]],
        [https ? 1 : 0, ["empty-message", () => new Uint8Array()]],
        [5, [
          "bye",
          () =>
            frame(
              MsgType.Bye,
              odd(),
              chance(r, 0.5) ? new Uint8Array() : bytes(r, int(r, 50)),
              int(r, 2),
            ),
        ]],
        [2, ["eof", () => null]],
      ]);
      const unit = make();
      if (unit === null) return { units: [], expect: "eof", kind };
      const expect = this.#endVerdict(unit);
      if (expect === null) continue; // by chance a frame the rules accept: draw again
      return { units: [unit], expect, kind };
    }
  }

  /** A request with a field value the message rules refuse. */
  #badField(call: number): Uint8Array {
    const r = this.r;
    const type = pick(r, [
      MsgType.FileRequest,
      MsgType.FileRequest,
      MsgType.RecordsRequest,
      MsgType.PositionRequest,
      MsgType.CaptureRequest,
      MsgType.PullRequest,
    ]);
    for (;;) {
      const p = weighted<() => Uint8Array>(r, [
        [6, () => jsonBytes(Object.fromEntries(badFields(r, type, this.w)))],
        [2, () => flipped(r, jsonText(r, this.#fields(type)), 1 + int(r, 3))],
        [1, () => bytes(r, int(r, 30))],
        [1, () => text(pick(r, ["", "null", "[]", "1", '"x"', "{", '{"offset":64', "\ufeff"]))],
        [1, () => new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])], // not UTF-8
      ])();
      if (!decodes(type, p)) return frame(type, call, p);
    }
  }

  /** What the server must do with `unit` after the handshake; null if it breaks no rule. */
  #endVerdict(unit: Uint8Array | string): Ending | null {
    if (typeof unit === "string") return "error"; // a text message
    const d = new FrameDecoder();
    let frames: Frame[];
    try {
      frames = d.push(unit);
    } catch {
      return "error";
    }
    // A partial frame: over https a message that is not one whole frame, over
    // stdio a stream that ends inside a frame (we end it after the last unit).
    if (frames.length === 0) return "error";
    if (frames.length > 1 || !endsClean(d)) return this.conn.transport === "https" ? "error" : null;
    const f = frames[0];
    if (f.call === 0) {
      if (f.type !== MsgType.Error || !decodes(f.type, f.payload)) return "error";
      return "remote"; // the peer says the session failed: the server closes
    }
    if ((f.call & 1) === 0) return "error"; // a reply to a call of the server's not in flight
    if (!REQUESTS.includes(f.type)) return "error";
    if (f.type === MsgType.Bye) return "bye";
    return decodes(f.type, f.payload) ? null : "error";
  }
}
