/**
 * The fuzzer: runs one session over a connection (the handshake, a window of
 * calls in flight, the server's own calls answered, the last frame) and
 * checks every reply against what the rules make of its request.
 */

import { inflateRawSync } from "node:zlib";
import { FLAG_DEFLATE, FLAG_END, type Frame, MsgType, SEND_BYTES } from "../../src/wire/frame.ts";
import { decodeMessage, type Message } from "../../src/wire/messages.ts";
import { checkFrame, frameLength } from "../../src/kml/record.ts";
import { bytes, chance, int, pick, weighted } from "./random.ts";
import { concat, dec, equalBytes, frame, hex, jsonBytes, text } from "./bytes.ts";
import { readKml } from "./world.ts";
import { timed } from "./watchdog.ts";
import { decodes } from "./rules.ts";
import { jsonText } from "./corpus.ts";
import { Draws, type Ending, type Pending } from "./draws.ts";
import { KEEP_GOING, WINDOW } from "./settings.ts";

/** A request, for a failure's message. */
const what = (p: Pending) => `${MsgType[p.request]} ${dec.decode(p.payload.subarray(0, 120))}`;
/** Text a handler error may not show: a bug in the server rather than a refusal. */
const JS_BUG =
  /TypeError|ReferenceError|RangeError|SyntaxError|is not a function|Cannot read prop|undefined|Maximum call stack/;

/** One session: sends what Draws makes, reads and checks what comes back. */
export class Fuzzer extends Draws {
  #pending = new Map<number, Pending>();

  async #send(units: (Uint8Array | string)[]): Promise<void> {
    for (const u of units) this.trail.push(u);
    if (this.trail.length > 96) this.trail.splice(0, this.trail.length - 48);
    this.stats.frames += units.length;
    await timed(
      this.conn.send(units, this.r),
      () => "a send (the server reads nothing)",
      () => this.conn.abort(),
    );
  }

  /** Ends the stream from our side (bounded: closing may wait for the writes before). */
  #end(): Promise<void> {
    return timed(this.conn.end(), () => "closing the stream", () => this.conn.abort());
  }

  async #next(): Promise<Frame | null> {
    const x = await this.conn.next(() => `${this.#pending.size} calls outstanding`);
    if (x instanceof Error) this.fail(x.message);
    return x;
  }

  // -- a session ---------------------------------------------------------------

  /** Runs one session of about `budget` frames; returns how it ended. */
  async run(budget: number, fuzzHandshake: boolean): Promise<{ end: Ending; kind: string }> {
    const r = this.r;
    this.randomCalls = chance(r, 0.3);
    this.nextCall = chance(r, 0.2) ? 2 * int(r, 2 ** 30) + 1 : 1;
    let pipelined: Uint8Array[] = [];
    if (fuzzHandshake) {
      const h = this.fuzzedHello();
      const kind = h.expect === "welcome" ? "welcomed" : h.expect;
      this.stats.bump(this.stats.handshakes, kind);
      await this.#send(h.units);
      if (h.expect !== "welcome") {
        if (this.conn.transport === "stdio") await this.#end();
        await this.#expectEnd(h.expect);
        return { end: h.expect, kind: `handshake-${kind}` };
      }
    } else {
      let payload = jsonText(r, Object.entries(this.hello()));
      while (!decodes(MsgType.Hello, payload)) payload = jsonText(r, Object.entries(this.hello()));
      const hello = frame(MsgType.Hello, 0, payload);
      if (chance(r, 0.1)) {
        // Requests pipelined behind the HELLO, before the WELCOME.
        const first = this.#window(1 + int(r, 8), false);
        pipelined = first;
        await this.#send([hello, ...first]);
      } else await this.#send([hello]);
    }
    const welcome = await this.#next();
    if (!welcome || welcome.type !== MsgType.Welcome || welcome.call !== 0) {
      this.fail(
        `no WELCOME: ${
          welcome ? `${MsgType[welcome.type]} ${dec.decode(welcome.payload)}` : "closed"
        }`,
      );
    }
    const wm = decodeMessage(MsgType.Welcome, welcome.payload) as Extract<
      Message,
      { type: MsgType.Welcome }
    >;
    if (wm.volume !== this.w.volumeId || wm.host !== this.w.serverHost || wm.readOnly) {
      this.fail(`WELCOME from someone else: ${dec.decode(welcome.payload)}`);
    }
    if (pipelined.length) await this.#drain();

    // The calls: a sliding window (a new call as soon as one ends), or over
    // stdio sometimes whole windows (every reply read before the next).
    // Calls in flight: mostly many (a session is paced by its round trips), now and then few.
    const limit = chance(r, 0.8) ? WINDOW * 3 / 4 + int(r, WINDOW / 4 + 1) : 1 + int(r, WINDOW);
    const windows = this.conn.transport === "stdio" && chance(r, 0.3);
    let issued = pipelined.length;
    while (issued < budget) {
      if (chance(r, 0.0007)) {
        // CAPTURE? or PULL? (rare: it scans the volume, or asks us for records).
        await this.#drain();
        const units = this.#window(1 + int(r, 4), true);
        issued += units.length;
        await this.#send(units);
        await this.#drain();
        readKml(this.w);
        this.slow = false;
        continue;
      }
      // Over https a new call goes out as soon as one ends (batches stall on
      // the server's Nagle and our delayed ACKs); over stdio in batches, when
      // half the window has come back (fewer, larger writes), or whole windows.
      const room = limit - this.#pending.size;
      const refill = windows
        ? this.#pending.size === 0
        : this.conn.transport === "https" || this.#pending.size <= limit >> 1;
      if (room > 0 && refill) {
        const n = Math.min(windows ? 1 + int(r, room) : room, budget - issued);
        const units = this.#window(n, false);
        issued += n;
        if (issued >= budget && chance(r, 0.2)) {
          // The session's last frame rides behind calls still in flight.
          const e = this.ending();
          this.stats.bump(this.stats.endings, e.kind);
          await this.#send([...units, ...e.units]);
          if (e.expect === "eof" || this.conn.transport === "stdio") await this.#end();
          await this.#expectEnd(e.expect, true);
          return { end: e.expect, kind: e.kind };
        }
        await this.#send(units);
      }
      await this.#step();
    }
    await this.#drain();
    const e = this.ending();
    this.stats.bump(this.stats.endings, e.kind);
    await this.#send(e.units);
    if (e.expect === "eof" || this.conn.transport === "stdio") await this.#end();
    await this.#expectEnd(e.expect);
    return { end: e.expect, kind: e.kind };
  }

  /** `n` requests that keep the session, registered as pending. */
  #window(n: number, slow: boolean): Uint8Array[] {
    const units: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const k = this.keepRequest(slow && i === 0);
      if (
        k.pending.request === MsgType.CaptureRequest || k.pending.request === MsgType.PullRequest
      ) {
        this.slow = true;
      }
      this.#pending.set(k.call, k.pending);
      this.inFlight.add(k.call);
      units.push(k.unit);
      this.stats.requests++;
    }
    // RECORDS? beside CAPTURE? or PULL?: the log may grow meanwhile.
    if (this.slow) {
      for (const p of this.#pending.values()) {
        if (p.request === MsgType.RecordsRequest && p.want.is === "bytes") {
          p.want = { is: "records" };
        }
      }
    }
    return units;
  }

  /** Reads one frame: a reply to a call of ours, or a call of the server's (answered). */
  async #step(): Promise<void> {
    const f = await this.#next();
    if (!f) this.fail(`the server closed with ${this.#pending.size} calls outstanding`);
    if (f.call === 0) {
      this.fail(
        `session-wide ${MsgType[f.type]} ${
          dec.decode(f.payload)
        } while only well-formed requests were sent`,
      );
    }
    if ((f.call & 1) === 0) await this.#answer(f);
    else this.#reply(f, false);
  }

  /** Reads until every call of ours has its last frame. */
  async #drain(): Promise<void> {
    while (this.#pending.size > 0) await this.#step();
  }

  /** One frame of a reply to our call `f.call`. */
  #reply(f: Frame, lenient: boolean): void {
    const p = this.#pending.get(f.call);
    if (!p) {
      if (lenient) return;
      this.fail(`${MsgType[f.type]} for call ${f.call}, which is not in flight`);
    }
    const done = () => {
      this.#pending.delete(f.call);
      this.inFlight.delete(f.call);
      this.stats.replied++;
    };
    if (f.type === MsgType.Error) {
      if (!(f.flags & FLAG_END)) this.fail(`ERROR without END for ${what(p)}`);
      let m: Extract<Message, { type: MsgType.Error }>;
      try {
        m = decodeMessage(f.type, f.payload) as typeof m;
      } catch (e) {
        const why = `the server's ERROR for ${what(p)} breaks the message rules ` +
          `(${(e as Error).message}): ${dec.decode(f.payload.subarray(0, 160))}… ` +
          `(${f.payload.length} bytes)`;
        if (!KEEP_GOING) this.fail(why);
        m = JSON.parse(dec.decode(f.payload));
        const key = `${MsgType[p.request]} answered by an ERROR ${m.code} that breaks the ` +
          `message rules (${(e as Error).message})`;
        if (!this.stats.findings.has(key)) this.stats.findings.set(key, why);
        this.stats.bump(this.stats.findingCounts, key);
      }
      this.stats.bump(this.stats.errorCodes, `${MsgType[p.request]}:${m.code}`);
      if (m.code === "internal") {
        this.stats.internal.add(
          m.message.replace(/\d+/g, "N").replace(/"[^"]*"/g, '"…"').slice(0, 160),
        );
      }
      if (JS_BUG.test(m.message)) {
        this.fail(`an error that looks like a bug for ${what(p)}: ${m.message}`);
      }
      if (p.want.is === "bytes" && !p.want.orError) {
        this.fail(`ERROR ${m.code} (${m.message}) for ${what(p)}`);
      }
      if (p.got.length) this.fail(`ERROR after ${MsgType[p.reply]} frames for ${what(p)}`);
      return done();
    }
    if (f.type !== p.reply) this.fail(`${MsgType[f.type]} in reply to ${what(p)}`);
    if (p.want.is === "error") {
      this.fail(
        `${MsgType[f.type]} "${dec.decode(f.payload.subarray(0, 60))}" for ${
          what(p)
        }: it must be refused`,
      );
    }
    if (f.payload.length > SEND_BYTES) {
      this.fail(`a ${f.payload.length}-byte frame for ${what(p)}`);
    }
    let payload = f.payload;
    if (f.flags & FLAG_DEFLATE) {
      if (!p.compress) this.fail(`a deflated ${MsgType[f.type]} for ${what(p)}, which did not ask`);
      try {
        payload = inflateRawSync(f.payload, { maxOutputLength: SEND_BYTES });
      } catch (e) {
        this.fail(`a deflated DATA that does not inflate (${(e as Error).message}) for ${what(p)}`);
      }
      this.stats.deflated++;
    }
    p.got.push(payload);
    if (!(f.flags & FLAG_END)) {
      if (p.reply !== MsgType.Records && p.reply !== MsgType.Data) {
        this.fail(`${MsgType[f.type]} without END for ${what(p)}`);
      }
      return;
    }
    const all = concat(p.got);
    if (p.want.is === "bytes" && !equalBytes(all, p.want.bytes)) {
      this.fail(
        `${MsgType[f.type]} ${hex(all)} for ${
          what(p)
        }, not the ${p.want.bytes.length} bytes expected`,
      );
    }
    if (p.want.is === "records") {
      for (let i = 0; i < all.length; i += frameLength(all.subarray(i))) {
        const problem = checkFrame(all.subarray(i));
        if (problem) this.fail(`RECORDS with a broken record (${problem}) for ${what(p)}`);
      }
    }
    if (p.want.is === "message") {
      try {
        decodeMessage(f.type, all);
      } catch (e) {
        this.fail(`a malformed ${MsgType[f.type]} for ${what(p)}: ${(e as Error).message}`);
      }
    }
    done();
  }

  /**
   * A call of the server's (while it pulls from us): answered with ERROR, or
   * with a reply that carries no valid record and no position it could use.
   */
  async #answer(f: Frame): Promise<void> {
    const r = this.r;
    if (
      !(f.type === MsgType.RecordsRequest || f.type === MsgType.PositionRequest ||
        f.type === MsgType.FileRequest)
    ) {
      this.fail(`the server sent ${MsgType[f.type]} as a request (call ${f.call})`);
    }
    try {
      decodeMessage(f.type, f.payload);
    } catch (e) {
      this.fail(`the server's ${MsgType[f.type]} breaks the rules: ${(e as Error).message}`);
    }
    this.stats.serverCalls++;
    const err = (code: string, message: string) =>
      frame(MsgType.Error, f.call, jsonBytes({ code, message }));
    const record = () => {
      // A real record of the server's own log with one byte changed: never valid.
      const starts = [...this.w.boundaries].filter((o) => o < this.w.kml.length);
      const at = pick(r, starts);
      const rec = this.w.kml.slice(at, at + frameLength(this.w.kml.subarray(at)));
      rec[int(r, rec.length)] ^= 1 << int(r, 8);
      return rec;
    };
    const units = weighted<() => Uint8Array[]>(r, [
      [5, () => [err("internal", "fuzz: not answering")]],
      [1, () => [err(pick(r, ["changed", "busy", "protocol"]), "fuzz")]],
      [
        1,
        () => [
          frame(
            MsgType.Error,
            f.call,
            text(pick(r, ['{"code":"nope","message":""}', "{}", "null"])),
          ),
        ],
      ],
      [
        1,
        () => [
          frame(pick(r, [MsgType.Data, MsgType.Result, MsgType.Welcome]), f.call, new Uint8Array()),
        ],
      ],
      ...(f.type === MsgType.RecordsRequest
        ? [
          [2, () => [frame(MsgType.Records, f.call, new Uint8Array())]],
          [2, () => [frame(MsgType.Records, f.call, bytes(r, 1 + int(r, 200)))]],
          [
            2,
            () => [
              frame(MsgType.Records, f.call, record(), 0),
              frame(MsgType.Records, f.call, new Uint8Array()),
            ],
          ],
        ] as [number, () => Uint8Array[]][]
        : []),
      ...(f.type === MsgType.PositionRequest
        ? [
          [3, () => [frame(MsgType.Position, f.call, text("null"))]],
          [
            1,
            () => [
              frame(
                MsgType.Position,
                f.call,
                text(pick(r, ['{"seq":-1,"offset":0}', '{"seq":1}', "[]"])),
              ),
            ],
          ],
        ] as [number, () => Uint8Array[]][]
        : []),
      ...(f.type === MsgType.FileRequest
        ? [[
          2,
          () => [
            frame(MsgType.Data, f.call, bytes(r, 1 + int(r, 100)), 0),
            frame(MsgType.Data, f.call, new Uint8Array()),
          ],
        ]] as [number, () => Uint8Array[]][]
        : []),
    ])();
    await this.#send(units);
  }

  /** After the session's last frame: the server must answer and close as `expect` says. */
  async #expectEnd(expect: Ending, lenient = false): Promise<void> {
    let sawError = false;
    for (;;) {
      const f = await this.#next();
      if (f === null) break;
      if (f.call === 0 && f.type === MsgType.Error) {
        if (sawError) this.fail("two session-wide ERRORs");
        sawError = true;
        const m = decodeMessage(f.type, f.payload) as Extract<Message, { type: MsgType.Error }>;
        const ok = expect === "refused-error"
          ? ["protocol", "volume"].includes(m.code)
          : ["protocol", "limit"].includes(m.code);
        if (!ok) {
          this.fail(`session-wide ERROR ${m.code} (${m.message}) where ${expect} was expected`);
        }
        this.stats.bump(this.stats.errorCodes, `session:${m.code}`);
        continue;
      }
      // Replies to calls still in flight may come before (or, racing, right after) the ERROR.
      if (!lenient || f.call === 0) {
        this.fail(
          `${MsgType[f.type]} (call ${f.call}) ${
            dec.decode(f.payload.subarray(0, 80))
          } where the session should end (${expect})`,
        );
      }
      if ((f.call & 1) === 1) this.#reply(f, true);
    }
    if (expect === "error" || expect === "refused-error") {
      if (!sawError) {
        this.fail(`the server closed without the ERROR a broken rule gets (${expect})`);
      }
    }
    if ((expect === "bye" || expect === "eof" || expect === "remote") && sawError) {
      this.fail(`a session-wide ERROR after ${expect}`);
    }
    if (expect === "refused") {
      this.stats.bump(this.stats.handshakes, sawError ? "refused:ERROR" : "refused:closed");
    }
    this.#pending.clear();
    this.inFlight.clear();
  }
}
