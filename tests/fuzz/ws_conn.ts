/**
 * A connection to `serve --listen`: one WebSocket session over TLS, with a
 * client written here (each binary message one frame of ours).
 */

import { FrameDecoder } from "../../src/wire/frame.ts";
import { type Arrival, type Conn, Queue } from "./conn.ts";
import { chance, int, type Rng } from "./random.ts";
import { concat, dec, text } from "./bytes.ts";
import { timed } from "./watchdog.ts";

/**
 * One WebSocket session with `serve --listen`, over a client written here
 * (RFC 6455): TCP_NODELAY, and a ping whenever it is about to wait after a
 * message came in, so that the ACK leaves at once. (The server's small writes
 * otherwise wait for a delayed ACK, 40 ms at every pause of the client.)
 */
export class WsConn implements Conn {
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
