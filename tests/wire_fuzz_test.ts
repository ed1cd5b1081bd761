/**
 * Hostile input over the wire, against real servers: random and mutated
 * frames sent to `serve --stdio` (child processes, one session each, many
 * thousands of frames per session) and to one `serve --listen` (many
 * WebSocket sessions). The client borrows the identity of a clone of the
 * served replica, so its HELLO gets past the handshake; some sessions fuzz
 * the handshake itself.
 *
 * Most frames are well-framed requests whose values pass the message rules
 * but are hostile (offsets off a record boundary or past the log, paths
 * through symlinks out of the volume, names too long for the system, ids of
 * nobody, JSON with duplicate keys, escapes and odd number spellings, bytes
 * flipped), at most 32 in flight: each must get a reply of the right type
 * (or ERROR) and the session goes on. A DATA reply must be exactly the bytes
 * of a regular file of the volume; a RECORDS reply exactly the log's bytes.
 * Every session ends with one frame that breaks a rule (a field value the
 * rules refuse: "../x", "/etc/passwd", ".replicator/kml", a NUL, a 5000-byte
 * name, a negative or fractional offset, an id of the wrong length; random
 * header bytes, unknown types, wrong call parity, lengths over 4 MiB, ...),
 * a BYE, or an end of stream: the server answers a broken rule with ERROR on
 * call 0 and closes. When the server pulls from us (PULL?) its calls get
 * ERROR or replies that carry no valid record.
 *
 * What must hold: no crash (stderr never shows an unexpected error or a stack
 * trace; a `serve --stdio` exits 0 after BYE and 1 otherwise; the https
 * server is alive at the end and exits 0 on SIGTERM), every reply within the
 * message rules, nothing written outside the volume (a sentinel tree beside
 * it and the clone are unchanged) and nothing applied to the volume (its tree
 * is unchanged apart from `.replicator/`). Every wait is bounded: a hung
 * server fails the test.
 *
 * FUZZ_SEED=N replays a run (failures name the session); FUZZ_FRAMES=N sets
 * the frames per transport (default 100 000); FUZZ_KEEP_GOING=1 counts
 * replies that break the message rules and fails at the end, not the first.
 */

import { assert, assertEquals } from "./assert.ts";
import { cli, makeSentinel, pair, prng, put, snapshot } from "./helpers.ts";
import { haveOpenssl, makeTls, startServer } from "./https_server.ts";
import { inflateRawSync } from "node:zlib";
import {
  encodeFrame,
  FLAG_DEFLATE,
  FLAG_END,
  type Frame,
  FrameDecoder,
  HEADER_BYTES,
  MAX_PAYLOAD,
  MsgType,
  SEND_BYTES,
} from "../src/wire/frame.ts";
import { MAX_JSON } from "../src/wire/json.ts";
import { decodeMessage, type Message } from "../src/wire/messages.ts";
import { checkFrame, frameLength } from "../src/kml/record.ts";

const MOD = new URL("../mod.ts", import.meta.url).pathname;
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? "1302") >>> 0;
const TARGET = Number(Deno.env.get("FUZZ_FRAMES") ?? "100000");
/** Longest wait for one reply, a close or an exit: a hung server fails the test. */
const WAIT_MS = 15_000;
/** Calls of ours in flight at once (the server allows 64). */
const WINDOW = 32;
/** What the server's stderr must never show. */
const CRASH = /unexpected error|Uncaught|panicked| {4}at /;
/** FUZZ_KEEP_GOING=1: a reply that breaks the message rules is counted, not fatal. */
const KEEP_GOING = Deno.env.get("FUZZ_KEEP_GOING") === "1";

// ---------------------------------------------------------------------------
// Randomness

type Rng = () => number;
const int = (r: Rng, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)];
const chance = (r: Rng, p: number) => r() < p;
const hexId = (r: Rng) => Array.from({ length: 32 }, () => "0123456789abcdef"[int(r, 16)]).join("");
const bytes = (r: Rng, n: number) => Uint8Array.from({ length: n }, () => int(r, 256));
/** A weighted choice: [weight, value] pairs. */
function weighted<T>(r: Rng, xs: readonly [number, T][]): T {
  let x = r() * xs.reduce((a, [w]) => a + w, 0);
  for (const [w, v] of xs) if ((x -= w) < 0) return v;
  return xs[xs.length - 1][1];
}
/** A seed per transport and session, so one session replays alone. */
const sessionSeed = (transport: number, s: number) =>
  (SEED ^ Math.imul(transport * 1_000_003 + s + 1, 0x9e3779b1)) >>> 0;

const enc = new TextEncoder();
const dec = new TextDecoder();
const text = (s: string) => enc.encode(s);
const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const equalBytes = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((x, i) => x === b[i]);
const hex = (b: Uint8Array, max = 80) =>
  [...b.subarray(0, max)].map((x) => x.toString(16).padStart(2, "0")).join("") +
  (b.length > max ? `… (${b.length} bytes)` : "");
const frame = (type: number, call: number, payload: Uint8Array, flags = FLAG_END) =>
  encodeFrame({ type, flags, call, payload });
/** A header written by hand: any field, valid or not. */
function rawHeader(length: number, type: number, flags: number, zero: number, call: number) {
  const b = new Uint8Array(HEADER_BYTES);
  const v = new DataView(b.buffer);
  v.setUint32(0, length >>> 0, true);
  v.setUint8(4, type & 0xff);
  v.setUint8(5, flags & 0xff);
  v.setUint16(6, zero & 0xffff, true);
  v.setUint32(8, call >>> 0, true);
  return b;
}

// ---------------------------------------------------------------------------
// The replicas

/** A served replica `vol` (alpha), its clone (beta, whose identity the fuzzer borrows). */
interface World {
  dir: string;
  vol: string;
  clone: string;
  sentinel: string;
  volumeId: string;
  cloneHost: string;
  serverHost: string;
  kml: Uint8Array;
  /** Offsets where a record starts, and the log's end. */
  boundaries: Set<number>;
  /** The volume's regular files and their bytes. */
  files: Map<string, Uint8Array>;
  /** Paths in the volume that exist but are no regular file, or lead through a symlink. */
  others: string[];
}

async function makeWorld(): Promise<World> {
  const { dir, a, b } = await pair();
  const sentinel = `${dir}/sentinel`;
  makeSentinel(sentinel);
  const r = prng(SEED);
  const files = new Map<string, Uint8Array>([
    ["f", text("hi\n")],
    ["empty", new Uint8Array()],
    ["d/g", text("gee\n")],
    ["d/e/h", text("deep\n")],
    ["sp ace", text("x")],
    ["ünï/ç", text("unicode\n")],
    [".hidden", text("dot\n")],
    ["-dash", text("dash\n")],
    ["blob", bytes(r, 3000)],
    ["text", text("a line that deflates well\n".repeat(500))],
  ]);
  for (const [p, c] of files) put(`${a}/${p}`, c);
  Deno.symlinkSync("../sentinel", `${a}/escape`);
  Deno.symlinkSync("/etc", `${a}/abs`);
  Deno.symlinkSync("f", `${a}/selflink`);
  Deno.symlinkSync("d", `${a}/dirlink`);
  Deno.symlinkSync("nowhere", `${a}/dangling`);
  let run = await cli(["init", a, "--host", "alpha"]);
  assertEquals(run.code, 0, run.stderr);
  run = await cli(["clone", a, b, "--host", "beta"]);
  assertEquals(run.code, 0, run.stderr);
  const cfg = (d: string) => JSON.parse(Deno.readTextFileSync(`${d}/.replicator/volume.json`));
  const [ca, cb] = [cfg(a), cfg(b)];
  assertEquals(ca.volumeId, cb.volumeId);
  const w: World = {
    dir,
    vol: a,
    clone: b,
    sentinel,
    volumeId: cb.volumeId,
    cloneHost: cb.hostId,
    serverHost: ca.hostId,
    kml: new Uint8Array(),
    boundaries: new Set(),
    files,
    others: [
      "d",
      "d/e",
      "ünï",
      "escape",
      "abs",
      "selflink",
      "dirlink",
      "dangling",
      "escape/victim",
      "escape/file1",
      "escape/sub/inner",
      "escape/link",
      "abs/passwd",
      "abs/hostname",
      "dirlink/g",
      "selflink/x",
    ],
  };
  readKml(w);
  return w;
}

/** (Re)reads the served replica's log and where its records start. */
function readKml(w: World): void {
  w.kml = Deno.readFileSync(`${w.vol}/.replicator/kml`);
  w.boundaries = new Set();
  let at = 64;
  while (at < w.kml.length) {
    w.boundaries.add(at);
    at += frameLength(w.kml.subarray(at));
  }
  assertEquals(at, w.kml.length, "the log ends at a record boundary");
  w.boundaries.add(at);
}

/** Snapshots of what must not change: outside the volume, and the volume's tree. */
function pictures(w: World) {
  const tree = Object.fromEntries(
    Object.entries(snapshot(w.vol)).filter(([k]) =>
      k !== ".replicator" && !k.startsWith(".replicator/")
    ),
  );
  return { sentinel: snapshot(w.sentinel), clone: snapshot(w.clone), tree };
}

// ---------------------------------------------------------------------------
// Connections: a frame stream to and from one server session

/** Something that arrived: a frame, the end of the stream (null), or broken framing. */
type Arrival = Frame | null | Error;

/** Waits that must end in time, checked by one watchdog (a timer each would cost more than a frame). */
interface Deadline {
  at: number;
  fire: () => void;
}
const deadlines = new Set<Deadline>();
let watchdog: ReturnType<typeof setInterval> | undefined;

function watch(d: Deadline): void {
  deadlines.add(d);
  watchdog ??= setInterval(() => {
    const now = Date.now();
    for (const x of deadlines) {
      if (now > x.at) {
        deadlines.delete(x);
        x.fire();
      }
    }
  }, 250);
}

/** Stops the watchdog (the end of the test). */
function stopWatchdog(): void {
  clearInterval(watchdog);
  watchdog = undefined;
}

/** `p`, or a failure (after `onTimeout`) if it has not settled within WAIT_MS: a hang fails. */
function timed<T>(p: Promise<T>, what: () => string, onTimeout = () => {}): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const d: Deadline = {
      at: Date.now() + WAIT_MS,
      fire: () => {
        onTimeout();
        reject(new Error(`nothing within ${WAIT_MS} ms: ${what()}`));
      },
    };
    watch(d);
    p.then((v) => {
      deadlines.delete(d);
      resolve(v);
    }, (e) => {
      deadlines.delete(d);
      reject(e);
    });
  });
}

class Queue {
  #q: Arrival[] = [];
  #head = 0;
  #wake?: () => void;

  push(x: Arrival): void {
    this.#q.push(x);
    this.#wake?.();
  }

  get empty(): boolean {
    return this.#head === this.#q.length;
  }

  /** The next arrival; throws if none comes within WAIT_MS. */
  async next(what: () => string): Promise<Arrival> {
    if (this.#head === this.#q.length) {
      try {
        await timed(new Promise<void>((resolve) => this.#wake = resolve), what);
      } finally {
        this.#wake = undefined;
      }
    }
    const x = this.#q[this.#head++];
    if (this.#head > 1024) {
      this.#q = this.#q.slice(this.#head);
      this.#head = 0;
    }
    return x;
  }
}

interface Conn {
  readonly transport: "stdio" | "https";
  /** Sends units: bytes (a frame, several, or garbage) or text (a text message over https). */
  send(units: (Uint8Array | string)[], r: Rng): Promise<void>;
  /** The next frame, null at the end, an Error for broken framing; throws after WAIT_MS. */
  next(what: () => string): Promise<Arrival>;
  /** Ends the stream from our side. */
  end(): Promise<void>;
  /** Cuts the connection (a hung server). */
  abort(): void;
}

/** One `serve --stdio` process. */
class StdioConn implements Conn {
  readonly transport = "stdio";
  readonly child: Deno.ChildProcess;
  readonly stderr: Promise<string>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #queue = new Queue();

  constructor(dir: string) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--no-prompt", "--quiet", MOD, "serve", "--stdio", "-C", dir],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.stderr = new Response(this.child.stderr).text();
    this.#pump();
  }

  async #pump(): Promise<void> {
    const d = new FrameDecoder();
    try {
      for await (const chunk of this.child.stdout) {
        for (const f of d.push(chunk)) this.#queue.push(f);
      }
      d.end();
      this.#queue.push(null);
    } catch (e) {
      this.#queue.push(new Error(`the server's stdout broke framing: ${(e as Error).message}`));
    }
  }

  /** The units as one byte stream, written in a few chunks cut anywhere. */
  async send(units: (Uint8Array | string)[], r: Rng): Promise<void> {
    const all = concat(units.map((u) => typeof u === "string" ? text(u) : u));
    const cuts = [0];
    const n = chance(r, 0.3) ? 1 + int(r, 4) : 0;
    for (let i = 0; i < n; i++) cuts.push(int(r, all.length + 1));
    if (chance(r, 0.05)) cuts.push(1, 2, 3, 5, 8, 11); // a dribbled header
    cuts.push(all.length);
    cuts.sort((x, y) => x - y);
    for (let i = 1; i < cuts.length; i++) {
      if (cuts[i] === cuts[i - 1]) continue;
      try {
        await this.#writer.write(all.subarray(cuts[i - 1], cuts[i]));
      } catch {
        return; // the server closed its end (after a broken rule): fine
      }
    }
  }

  next(what: () => string): Promise<Arrival> {
    return this.#queue.next(what);
  }

  async end(): Promise<void> {
    await this.#writer.close().catch(() => {});
  }

  abort(): void {
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
  }

  /** Exit status and stderr, or a failure if the process does not exit in time. */
  async exit(): Promise<{ code: number; stderr: string }> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), WAIT_MS));
    const st = await Promise.race([this.child.status, timeout]);
    clearTimeout(timer);
    if (!st) {
      this.child.kill("SIGKILL");
      await this.child.status;
      throw new Error(`serve --stdio did not exit within ${WAIT_MS} ms: ${await this.stderr}`);
    }
    return { code: st.code, stderr: await this.stderr };
  }

  /** Kills a process whose session failed the test; its stderr. */
  async kill(): Promise<string> {
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.child.status;
    return await this.stderr;
  }
}

/**
 * One WebSocket session with `serve --listen`, over a client written here
 * (RFC 6455): TCP_NODELAY, and a ping whenever it is about to wait after a
 * message came in, so that the ACK leaves at once. (The server's small writes
 * otherwise wait for a delayed ACK, 40 ms at every pause of the client.)
 */
class WsConn implements Conn {
  readonly transport = "https";
  #conn: Deno.TlsConn;
  #queue = new Queue();
  /** One decoder for the connection; each message must leave it empty. */
  #decoder = new FrameDecoder();
  #writing: Promise<unknown> = Promise.resolve();
  /** A message came in since we last wrote. */
  #heard = false;
  #closed = false;
  #sentClose = false;

  private constructor(conn: Deno.TlsConn, rest: Uint8Array) {
    this.#conn = conn;
    this.#pump(rest);
  }

  /** A WebSocket to the server on `port`, or a failure after WAIT_MS. */
  static async open(port: number, token: string, ca: string): Promise<WsConn> {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
    tcp.setNoDelay(true);
    return await timed(WsConn.#upgrade(tcp, port, token, ca), () => "the WebSocket upgrade", () => {
      try {
        tcp.close();
      } catch { /* closed */ }
    });
  }

  static async #upgrade(tcp: Deno.TcpConn, port: number, token: string, ca: string) {
    const conn = await Deno.startTls(tcp, { hostname: "127.0.0.1", caCerts: [ca] });
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    await writeAll(
      conn,
      text(
        `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          `Authorization: Bearer ${token}\r\n\r\n`,
      ),
    );
    let got = new Uint8Array();
    const buf = new Uint8Array(16 * 1024);
    for (;;) {
      const end = got.findIndex((_, i) =>
        got[i] === 13 && got[i + 1] === 10 && got[i + 2] === 13 && got[i + 3] === 10
      );
      if (end >= 0) {
        const head = dec.decode(got.subarray(0, end));
        if (!head.startsWith("HTTP/1.1 101")) {
          conn.close();
          throw new Error(`the WebSocket upgrade failed: ${head.split("\r\n")[0]}`);
        }
        return new WsConn(conn, got.subarray(end + 4));
      }
      const n = await conn.read(buf);
      if (n === null) throw new Error("the server closed during the WebSocket upgrade");
      got = concat([got, buf.subarray(0, n)]);
    }
  }

  /** Reads WebSocket frames; each binary message must hold exactly one frame of ours. */
  async #pump(rest: Uint8Array): Promise<void> {
    let acc = rest;
    let message: Uint8Array[] = [];
    const buf = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        for (;;) {
          if (acc.length < 2) break;
          const fin = (acc[0] & 0x80) !== 0;
          const op = acc[0] & 0x0f;
          if (acc[1] & 0x80) throw new Error("the server masked a frame");
          let len = acc[1] & 0x7f;
          let at = 2;
          if (len === 126) {
            if (acc.length < 4) break;
            len = (acc[2] << 8) | acc[3];
            at = 4;
          } else if (len === 127) {
            if (acc.length < 10) break;
            len = Number(new DataView(acc.buffer, acc.byteOffset + 2, 8).getBigUint64(0));
            at = 10;
          }
          if (acc.length < at + len) break;
          const payload = acc.slice(at, at + len);
          acc = acc.subarray(at + len);
          if (op === 0x2 || op === 0x0) {
            message.push(payload);
            if (fin) {
              this.#deliver(concat(message));
              message = [];
            }
          } else if (op === 0x1) throw new Error("the server sent a text message");
          else if (op === 0x8) {
            this.#gone();
            if (!this.#sentClose) await this.#control(0x8, payload.subarray(0, 2));
          } else if (op === 0x9) await this.#control(0xa, payload);
        }
        const n = await this.#conn.read(buf);
        if (n === null) break;
        acc = acc.length ? concat([acc, buf.subarray(0, n)]) : buf.slice(0, n);
      }
    } catch (e) {
      if (!this.#closed) {
        const why = (e as Error).message;
        // A reset after the server closed is an end, not broken framing.
        if (!/reset|broken pipe|closed|canceled/i.test(why)) {
          this.#queue.push(new Error(`the WebSocket broke: ${why}`));
        }
      }
    }
    this.#gone();
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }

  #deliver(bytes: Uint8Array): void {
    this.#heard = true;
    const d = this.#decoder;
    try {
      const frames = d.push(bytes);
      d.end();
      if (frames.length !== 1) throw new Error(`${frames.length} frames in one message`);
      this.#queue.push(frames[0]);
    } catch (err) {
      this.#queue.push(new Error(`the server broke framing: ${(err as Error).message}`));
    }
  }

  /** The connection ended: once. */
  #gone(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.push(null);
  }

  #write(bytes: Uint8Array): Promise<unknown> {
    this.#heard = false;
    this.#writing = this.#writing.then(() => writeAll(this.#conn, bytes)).catch(() => {});
    return this.#writing;
  }

  #control(op: number, payload: Uint8Array): Promise<unknown> {
    if (op === 0x8) this.#sentClose = true;
    return this.#write(wsFrame(op, payload, true));
  }

  /** Each unit one message (text for a string); now and then a binary one in fragments. */
  send(units: (Uint8Array | string)[], r: Rng): Promise<void> {
    if (this.#closed || this.#sentClose) return Promise.resolve();
    const out: Uint8Array[] = [];
    for (const u of units) {
      if (typeof u === "string") out.push(wsFrame(0x1, text(u), true));
      else if (u.length > 2 && chance(r, 0.02)) {
        const cut = 1 + int(r, u.length - 1);
        out.push(wsFrame(0x2, u.subarray(0, cut), false), wsFrame(0x0, u.subarray(cut), true));
      } else out.push(wsFrame(0x2, u, true));
    }
    return this.#write(out.length === 1 ? out[0] : concat(out)).then(() => {});
  }

  async next(what: () => string): Promise<Arrival> {
    if (this.#heard && this.#queue.empty && !this.#closed && !this.#sentClose) {
      await this.#control(0x9, new Uint8Array());
    }
    return await this.#queue.next(what);
  }

  abort(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }

  async end(): Promise<void> {
    if (!this.#closed && !this.#sentClose) await this.#control(0x8, new Uint8Array([0x03, 0xe8]));
  }
}

/** A client's WebSocket frame (masked, as RFC 6455 requires of clients). */
function wsFrame(op: number, payload: Uint8Array, fin: boolean): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(head + 4 + n);
  out[0] = (fin ? 0x80 : 0) | op;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  const mask = [0x5a, 0xc3, 0x1e, 0x77];
  out.set(mask, head);
  for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

// ---------------------------------------------------------------------------
// The fuzzer

/** What a reply to one of our calls must be. */
type Want =
  | { is: "bytes"; bytes: Uint8Array; orError?: boolean } // exactly these bytes (or ERROR if orError)
  | { is: "error" } // ERROR, and no bytes before it
  | { is: "records" } // whole records or ERROR (the log may grow meanwhile)
  | { is: "message" }; // its reply message (POSITION, RESULT) or ERROR

interface Pending {
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

/** A request, for a failure's message. */
const what = (p: Pending) => `${MsgType[p.request]} ${dec.decode(p.payload.subarray(0, 120))}`;

/** How a session ends, from our side. */
type Ending = "error" | "remote" | "bye" | "eof" | "refused" | "refused-error";

const REPLY_TO = new Map<MsgType, MsgType>([
  [MsgType.RecordsRequest, MsgType.Records],
  [MsgType.FileRequest, MsgType.Data],
  [MsgType.PositionRequest, MsgType.Position],
  [MsgType.CaptureRequest, MsgType.Result],
  [MsgType.PullRequest, MsgType.Result],
]);
const REQUESTS = [...REPLY_TO.keys(), MsgType.Bye];
/** Text a handler error may not show: a bug in the server rather than a refusal. */
const JS_BUG =
  /TypeError|ReferenceError|RangeError|SyntaxError|is not a function|Cannot read prop|undefined|Maximum call stack/;

class Stats {
  ms = 0;
  sessions = 0;
  frames = 0;
  requests = 0;
  replied = 0;
  endings = new Map<string, number>();
  handshakes = new Map<string, number>();
  errorCodes = new Map<string, number>();
  serverCalls = 0;
  internal = new Set<string>();
  /** Well-framed requests sent, by type. */
  sent = new Map<string, number>();
  /** DATA frames that came deflated. */
  deflated = 0;
  /** Replies that broke the message rules (FUZZ_KEEP_GOING=1). */
  findings = new Map<string, string>();
  findingCounts = new Map<string, number>();
  bump(m: Map<string, number>, k: string): void {
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  line(transport: string): string {
    const show = (m: Map<string, number>) =>
      [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(" ");
    return [
      `wire fuzz ${transport}: seed ${SEED}, ${Math.round(this.ms)} ms, ${this.sessions} ` +
      `sessions, ${this.frames} frames sent ` +
      `(${this.requests} well-framed requests, ${this.replied} replied; ${this.serverCalls} ` +
      `calls of the server answered)`,
      `  requests: ${show(this.sent)}; ${this.deflated} DATA frames came deflated`,
      `  endings: ${show(this.endings)}`,
      `  handshake fuzz: ${show(this.handshakes)}`,
      `  ERROR replies: ${show(this.errorCodes)}`,
      `  internal errors: ${[...this.internal].join(" | ") || "none"}`,
      ...[...this.findings].map(([k, example]) =>
        `  FINDING (${this.findingCounts.get(k)} times): ${k}; e.g. ${example.slice(0, 400)}`
      ),
    ].join("\n");
  }
}

class Fuzzer {
  /** The last units sent, for a failure's report. */
  trail: (Uint8Array | string)[] = [];
  #pending = new Map<number, Pending>();
  #inFlight = new Set<number>();
  #nextCall = 1;
  #randomCalls = false;
  #slow = false;

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

  // -- identities ----------------------------------------------------------

  hello(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      protocol: 1,
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
      [2, () => this.hello({ protocol: pick(r, [0, 2, 99, 2 ** 31]) })],
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
    if (h.protocol !== 1) return "refused-error";
    const zero = "0".repeat(32);
    if (h.volume === zero && h.host === zero) return "welcome";
    if (h.volume !== this.w.volumeId || h.host === this.w.serverHost) return "refused-error";
    return "welcome";
  }

  // -- requests that keep the session ----------------------------------------

  #call(): number {
    if (this.#randomCalls) {
      for (;;) {
        const c = (int(this.r, 2 ** 31) * 2 + 1) >>> 0;
        if (!this.#inFlight.has(c)) return c;
      }
    }
    const c = this.#nextCall;
    this.#nextCall += 2;
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
        if (this.#slow) return { is: "records" };
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

  // -- a session ---------------------------------------------------------------

  /** Runs one session of about `budget` frames; returns how it ended. */
  async run(budget: number, fuzzHandshake: boolean): Promise<{ end: Ending; kind: string }> {
    const r = this.r;
    this.#randomCalls = chance(r, 0.3);
    this.#nextCall = chance(r, 0.2) ? 2 * int(r, 2 ** 30) + 1 : 1;
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
        this.#slow = false;
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
        this.#slow = true;
      }
      this.#pending.set(k.call, k.pending);
      this.#inFlight.add(k.call);
      units.push(k.unit);
      this.stats.requests++;
    }
    // RECORDS? beside CAPTURE? or PULL?: the log may grow meanwhile.
    if (this.#slow) {
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
      this.#inFlight.delete(f.call);
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
    this.#inFlight.clear();
  }
}

// ---------------------------------------------------------------------------
// Hostile values

const LOOKALIKES = [
  ".replicatorx",
  ".replicator ",
  "x/.replicator",
  "d/.replicator/kml",
  "...",
  "..x",
  "x..",
  " f",
  "f ",
  "F",
  "f\n",
  "d\\g",
  "..\\x",
  "%2e%2e/x",
  "~",
  "~root",
  "$HOME",
  "*",
  "d/*",
  "?",
  "\x7f",
  "\x01\x02",
  "u\u0308ni\u0308/c\u0327", // ünï/ç decomposed: another name
  "\ufeff",
  "f\u200b",
  "proc/self/root/etc/passwd",
  "dev/zero",
];

/** A path of odd names (no "", "." or ".." component: the rules would refuse it). */
function randomName(r: Rng): string {
  const alphabet = "ab.\\ \t\n\x01~-_ü☃\u00a0";
  const parts: string[] = [];
  for (let n = 1 + int(r, 3); n > 0; n--) {
    let s = "";
    for (let i = 1 + int(r, 8); i > 0; i--) s += alphabet[int(r, alphabet.length)];
    parts.push(s === "." || s === ".." ? s + "x" : s);
  }
  return parts.join("/");
}

/** Field sets that break the message rules. */
function badFields(r: Rng, type: MsgType, w: World): [string, unknown][] {
  const offset = () =>
    pick(r, [-1, -64, 1.5, 64.5, "64", null, true, [], {}, 2 ** 53, 2 ** 64, 1e300, -0.5]);
  const path = () =>
    pick(r, [
      "../x",
      "../sentinel/victim",
      "/etc/passwd",
      ".replicator/kml",
      ".replicator",
      ".replicator/volume.json",
      "a\0b",
      "f\0",
      "x".repeat(5000),
      "",
      ".",
      "..",
      "a//b",
      "d/",
      "./f",
      "d/../f",
      "d/./g",
      "d/e/../../../x",
      "/",
      "//",
      123,
      null,
      ["f"],
    ]);
  const id = () =>
    pick<unknown>(r, [
      w.cloneHost.slice(1),
      w.cloneHost + "0",
      w.cloneHost.toUpperCase(),
      "g".repeat(32),
      "",
      0,
      null,
      " " + w.cloneHost.slice(1),
    ]);
  const extra = (fs: [string, unknown][]): [string, unknown][] =>
    chance(r, 0.5) ? [...fs, [pick(r, ["x", "Path", "offset ", "__proto__"]), 1]] : fs.slice(1);
  switch (type) {
    case MsgType.RecordsRequest:
      return chance(r, 0.7) ? [["offset", offset()]] : extra([["offset", 64]]);
    case MsgType.FileRequest:
      return weighted<() => [string, unknown][]>(r, [
        [5, () => [["path", path()], ["from", 0], ["compress", false]]],
        [2, () => [["path", "f"], ["from", offset()], ["compress", true]]],
        [1, () => [["path", "f"], ["from", 0], ["compress", pick(r, [1, "true", null, 0])]]],
        [1, () => extra([["path", "f"], ["from", 0], ["compress", false]])],
      ])();
    case MsgType.PositionRequest:
      return chance(r, 0.7)
        ? [["host", id()], ["incarnation", chance(r, 0.5) ? id() : w.cloneHost]]
        : extra([["host", w.cloneHost], ["incarnation", w.cloneHost]]);
    default:
      return [[pick(r, ["x", "offset", "path"]), pick(r, [1, null, "", {}])]];
  }
}

function badIdentityField(r: Rng): Record<string, unknown> {
  return pick<Record<string, unknown>>(r, [
    { host: "x" },
    { volume: "A".repeat(32) },
    { incarnation: 1 },
    { protocol: "1" },
    { protocol: -1 },
    { protocol: 1.5 },
    { epoch: -1 },
    { epoch: 2 ** 53 },
    { name: null },
    { name: 5 },
    { extra: true },
    { readOnly: false },
    { volume: undefined }, // dropped by JSON: a missing field
  ]);
}

function jsonBytes(v: unknown): Uint8Array {
  return text(JSON.stringify(v));
}

/** A JSON object of `fields` spelt in one of many valid ways. */
function jsonText(r: Rng, fields: [string, unknown][]): Uint8Array {
  const entries = [...fields];
  if (chance(r, 0.2)) entries.reverse();
  const sp = () => chance(r, 0.1) ? pick(r, [" ", "\n", "\t", "\r\n  "]) : "";
  const str = (s: string) => {
    if (s.length > 300 || !chance(r, 0.15)) return JSON.stringify(s);
    // Escapes: \uXXXX for some characters, \/ for slashes.
    let out = '"';
    for (const ch of s) {
      if (ch === "/" && chance(r, 0.5)) out += "\\/";
      else if (chance(r, 0.3) && ch.length === 1) {
        const u = ch.charCodeAt(0).toString(16).padStart(4, "0");
        out += `\\u${chance(r, 0.5) ? u : u.toUpperCase()}`;
      } else out += JSON.stringify(ch).slice(1, -1);
    }
    return out + '"';
  };
  const val = (v: unknown) => {
    if (typeof v === "string") return str(v);
    if (typeof v === "number" && Number.isInteger(v) && chance(r, 0.15)) {
      return pick(r, [`${v}.0`, `${v}e0`, `${v}00e-2`, `${v}.000E+0`, v === 0 ? "-0" : `${v}`]);
    }
    return JSON.stringify(v);
  };
  const parts: string[] = [];
  for (const [k, v] of entries) {
    if (chance(r, 0.04)) {
      // A duplicate key, hostile first: JSON.parse keeps the last.
      const decoy = k === "path"
        ? '"../../etc/passwd"'
        : k === "offset" || k === "from"
        ? "-1"
        : '"x"';
      parts.push(`${str(k)}:${decoy}`);
    }
    parts.push(`${sp()}${str(k)}${sp()}:${sp()}${val(v)}${sp()}`);
  }
  return text(`${chance(r, 0.02) ? "\ufeff" : ""}${sp()}{${parts.join(",")}}${sp()}`);
}

/** `b` with `n` bytes changed. */
function flipped(r: Rng, b: Uint8Array, n: number): Uint8Array {
  const out = b.slice();
  if (!out.length) return out;
  for (let i = 0; i < n; i++) {
    const at = int(r, out.length);
    out[at] = chance(r, 0.5) ? out[at] ^ (1 << int(r, 8)) : int(r, 256);
  }
  return out;
}

/** The message, or null where the rules refuse `payload` as a message of `type`. */
function tryDecode(type: MsgType, payload: Uint8Array): Message | null {
  // Most tries fail: a stack trace for each would cost more than the rest of a frame.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return decodeMessage(type, payload);
  } catch {
    return null;
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** True if the message rules accept `payload` as a message of `type`. */
function decodes(type: MsgType, payload: Uint8Array): boolean {
  return tryDecode(type, payload) !== null;
}

/** True if nothing is left in the decoder (a message holds whole frames only). */
function endsClean(d: FrameDecoder): boolean {
  try {
    d.end();
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// The tests

/** Runs `fn`; on failure, adds the server's stderr to the error. */
async function reporting<T>(fn: () => Promise<T>, stderr: () => Promise<string>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const err = await stderr().catch(() => "");
    (e as Error).message += `\nserver stderr (last 4000 characters):\n${err.slice(-4000)}`;
    throw e;
  }
}

/** Set when a campaign failed: the other one stops at its next session. */
let stopping = false;

function checkStderr(stderr: string, where: string): void {
  const bad = stderr.split("\n").find((l) => CRASH.test(l));
  assert(
    bad === undefined,
    `${where}: the server's stderr shows a crash: ${bad}\n${stderr.slice(-4000)}`,
  );
}

function checkUnchanged(w: World, before: ReturnType<typeof pictures>, where: string): void {
  const after = pictures(w);
  assertEquals(after.sentinel, before.sentinel, `${where}: nothing written outside the volume`);
  assertEquals(after.clone, before.clone, `${where}: nothing written to the clone`);
  assertEquals(after.tree, before.tree, `${where}: nothing applied to the volume's tree`);
}

/** Every kind of request went out (a change of the message rules could silently skew the mix). */
function checkMix(stats: Stats, where: string): void {
  for (const t of ["FileRequest", "RecordsRequest", "PositionRequest"]) {
    const n = stats.sent.get(t) ?? 0;
    assert(n >= stats.requests / 10, `${where}: only ${n} ${t} of ${stats.requests} requests`);
  }
  for (const t of ["CaptureRequest", "PullRequest"]) {
    assert((stats.sent.get(t) ?? 0) > 0, `${where}: no ${t} was sent`);
  }
}

function checkFindings(stats: Stats, where: string): void {
  assert(
    stats.findings.size === 0,
    `${where}: replies that break the message rules:\n${
      [...stats.findings].map(([k, e]) => `${k} (${stats.findingCounts.get(k)} times), e.g. ${e}`)
        .join("\n")
    }`,
  );
}

/**
 * Sessions of `serve --stdio`, one process each, until TARGET frames went
 * out: a lane per pair of replicas, side by side (a session mostly waits on
 * its pipes, so two overlap well).
 */
async function stdioCampaign(worlds: World[], stats: Stats): Promise<string> {
  const before = worlds.map(pictures);
  const exits = new Map<string, number>();
  let failed: { e: unknown } | undefined;
  const live = new Set<StdioConn>();
  await Promise.allSettled(worlds.map(async (w, lane) => {
    // Lane l runs sessions l, l + lanes, ...: each session's frames follow from its number.
    for (let s = lane; stats.frames < TARGET && !failed && !stopping; s += worlds.length) {
      const r = prng(sessionSeed(1, s));
      const conn = new StdioConn(w.vol);
      live.add(conn);
      const fz = new Fuzzer(w, r, stats, conn, `serve --stdio session ${s}`);
      // Each process costs a runtime's start-up: few sessions, many frames each.
      const fuzzHandshake = chance(r, 0.2);
      const budget = 8000 + int(r, 8000);
      try {
        const { end, kind } = await reporting(
          () => fz.run(budget, fuzzHandshake),
          () => conn.kill(),
        );
        const { code, stderr } = await conn.exit();
        stats.sessions++;
        stats.bump(exits, `${code}`);
        checkStderr(stderr, fz.label);
        assertEquals(
          code,
          end === "bye" ? 0 : 1,
          `${fz.label} (FUZZ_SEED=${SEED}) ended by ${kind}: exit status\n${stderr}`,
        );
      } catch (e) {
        if (!failed) {
          // The first failure is the one to report; the other lane stops now.
          failed = { e };
          for (const c of live) if (c !== conn) c.abort();
        }
        throw e;
      } finally {
        live.delete(conn);
      }
    }
  }));
  if (failed) throw failed.e;
  if (stopping) throw new Error("stopped early: the other campaign failed");
  checkMix(stats, "serve --stdio");
  worlds.forEach((w, i) => checkUnchanged(w, before[i], "serve --stdio"));
  return `  exit statuses: ${[...exits].map(([k, v]) => `${k}:${v}`).join(" ")}`;
}

/** Sessions over WebSockets with one `serve --listen`, until TARGET frames went out. */
async function httpsCampaign([w]: World[], stats: Stats): Promise<string> {
  const before = pictures(w);
  const tls = await makeTls();
  const token = Deno.readTextFileSync(tls.token).split("\n")[0].trim();
  const ca = Deno.readTextFileSync(tls.ca);
  const server = await startServer(tls, w.vol);
  let stopped: Promise<{ code: number; stderr: string }> | undefined;
  const stop = () =>
    stopped ??= timed(server.stop(), () => "serve --listen does not stop on SIGTERM", () => {
      try {
        server.child.kill("SIGKILL");
      } catch { /* gone */ }
    });
  // The next session's WebSocket opens while the current one runs (until its
  // HELLO the server holds nothing).
  let next: Promise<WsConn> | undefined;
  const preopen = () => {
    const p = WsConn.open(server.port, token, ca);
    p.catch(() => {}); // awaited by the next session; until then its failure is not unhandled
    return p;
  };
  try {
    await reporting(async () => {
      next = preopen();
      for (let s = 0; stats.frames < TARGET; s++) {
        if (stopping) throw new Error("stopped early: the other campaign failed");
        const conn = await next!;
        next = preopen();
        const r = prng(sessionSeed(2, s));
        const fz = new Fuzzer(w, r, stats, conn, `serve --listen session ${s}`);
        const fuzzHandshake = chance(r, 0.25);
        const budget = 200 + int(r, 1200);
        await fz.run(budget, fuzzHandshake);
        stats.sessions++;
      }
      // Still up, and still serving: a plain session after the fuzz.
      let alive = true;
      server.child.status.then(() => alive = false);
      await new Promise((res) => setTimeout(res, 50));
      assert(alive, "the https server is still running after the fuzz");
      const conn = await next!;
      next = undefined;
      const last = new Fuzzer(w, prng(SEED), new Stats(), conn, "serve --listen, last session");
      await conn.send([frame(MsgType.Hello, 0, jsonBytes(last.hello()))], prng(SEED));
      const welcome = await conn.next(() => "after the fuzz");
      assert(
        welcome && !(welcome instanceof Error) && welcome.type === MsgType.Welcome,
        "WELCOME after the fuzz",
      );
      await conn.send([frame(MsgType.RecordsRequest, 1, jsonBytes({ offset: 64 }))], prng(SEED));
      const records = await conn.next(() => "after the fuzz");
      assert(records && !(records instanceof Error) && records.type === MsgType.Records);
      assert(equalBytes(records.payload, w.kml.subarray(64)), "the log, unchanged");
      await conn.send([frame(MsgType.Bye, 3, new Uint8Array())], prng(SEED));
      assertEquals(await conn.next(() => "after BYE"), null);
    }, async () => (await stop()).stderr);
  } finally {
    await next?.then((c) => c.end(), () => {});
    const { code, stderr } = await stop();
    await Deno.remove(tls.dir, { recursive: true });
    checkStderr(stderr, "serve --listen");
    assertEquals(code, 0, `serve --listen stops cleanly on SIGTERM:\n${stderr.slice(-4000)}`);
  }
  checkMix(stats, "serve --listen");
  checkUnchanged(w, before, "serve --listen");
  return "  the server was up at the end and exited 0 on SIGTERM";
}

Deno.test({
  name: "wire fuzz: serve --stdio and serve --listen refuse random and mutated frames cleanly",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const started = performance.now();
    stopping = false;
    // The campaigns run side by side, each with its own replicas (two lanes
    // of stdio sessions, one https server): a session mostly waits for the
    // other side, so together they keep both cores busy.
    const campaigns: [string, (w: World[], s: Stats) => Promise<string>, number][] = [
      ["serve --stdio", stdioCampaign, 2],
    ];
    if (haveOpenssl()) campaigns.push(["serve --listen", httpsCampaign, 1]);
    else console.log("wire fuzz: no openssl here, serve --listen is not fuzzed");
    const worlds = await Promise.all(
      campaigns.map(([, , n]) => Promise.all(Array.from({ length: n }, () => makeWorld()))),
    );
    const stats = campaigns.map(() => new Stats());
    using _cleanup = {
      [Symbol.dispose]: () => {
        for (const w of worlds.flat()) Deno.removeSync(w.dir, { recursive: true });
      },
    };
    const results = await Promise.allSettled(
      campaigns.map(async ([, run], i) => {
        const t = performance.now();
        try {
          return await run(worlds[i], stats[i]);
        } catch (e) {
          stopping = true;
          throw e;
        } finally {
          stats[i].ms = performance.now() - t;
        }
      }),
    );
    const failures: string[] = [];
    results.forEach((res, i) => {
      console.log(stats[i].line(campaigns[i][0]));
      if (res.status === "fulfilled") console.log(res.value);
      else failures.push(`${campaigns[i][0]}: ${(res.reason as Error).message}`);
    });
    // Replies that broke the message rules (counted with FUZZ_KEEP_GOING=1).
    stats.forEach((st, i) => {
      try {
        checkFindings(st, campaigns[i][0]);
      } catch (e) {
        failures.push((e as Error).message);
      }
    });
    stopWatchdog();
    console.log(`wire fuzz: ${Math.round(performance.now() - started)} ms`);
    assert(failures.length === 0, failures.join("\n\n"));
  },
});
