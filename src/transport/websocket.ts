/**
 * The https transport: one WebSocket per session, each binary message
 * exactly one frame (docs/protocol.md). The client sends its bearer token on
 * the upgrade request; `serve --listen` (src/transport/listen.ts) checks it
 * before anything else happens.
 *
 * @module
 */

import { ReplicatorError } from "../errors.ts";
import { type Frame, FrameDecoder, ProtocolError } from "../wire/frame.ts";
import type { Channel } from "../wire/session.ts";
import { sleep } from "../timer.ts";

/** Bytes queued for sending before send() waits (the only flow control a WebSocket offers). */
const SEND_WINDOW = 8 << 20;
/**
 * Bytes received and not yet taken before the peer counts as flooding: a
 * WebSocket reads eagerly, so this is what bounds the memory a peer can fill.
 */
const RECEIVE_LIMIT = 256 << 20;

/** The https peer could not be reached, or refused us. */
export class HttpsError extends ReplicatorError {}

/** A channel over an open WebSocket. */
export function wsChannel(ws: WebSocket): Channel {
  ws.binaryType = "arraybuffer";
  const queue: (Frame | Error | null)[] = [];
  let queued = 0;
  let wake: (() => void) | undefined;
  const put = (x: Frame | Error | null) => {
    queue.push(x);
    wake?.();
  };
  ws.onmessage = (e) => {
    try {
      const f = oneFrame(e.data);
      queued += f.payload.length;
      if (queued > RECEIVE_LIMIT) {
        throw new ProtocolError(
          "limit",
          `more than ${RECEIVE_LIMIT} bytes sent ahead of the reader`,
        );
      }
      put(f);
    } catch (err) {
      put(err as Error);
      ws.onmessage = null;
    }
  };
  ws.onclose = () => put(null);
  ws.onerror = () => put(null);
  async function* frames(): AsyncGenerator<Frame> {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((r) => wake = r);
      const x = queue.shift()!;
      if (x === null) return;
      if (x instanceof Error) throw x;
      queued -= x.payload.length;
      yield x;
    }
  }
  return {
    send: async (bytes) => {
      while (ws.bufferedAmount > SEND_WINDOW && ws.readyState === WebSocket.OPEN) {
        await sleep(5);
      }
      if (ws.readyState !== WebSocket.OPEN) throw new Error("the WebSocket is closed");
      ws.send(bytes);
    },
    frames: frames(),
    close: () => {
      try {
        ws.close();
      } catch { /* closed */ }
    },
  };
}

/** The one frame a message holds; a protocol error if it holds anything else. */
function oneFrame(data: unknown): Frame {
  if (!(data instanceof ArrayBuffer)) {
    throw new ProtocolError("protocol", "a text message (frames travel as binary messages)");
  }
  const d = new FrameDecoder();
  const frames = d.push(new Uint8Array(data));
  d.end();
  if (frames.length !== 1) {
    throw new ProtocolError("protocol", `a message with ${frames.length} frames (one per message)`);
  }
  return frames[0];
}

/** How a client reaches an https peer. */
export interface HttpsOptions {
  /** The bearer token (--token-file, REPLICATOR_TOKEN). */
  token?: string;
  /** A PEM file of the CA to trust besides the system's (--ca-file). */
  caFile?: string;
}

/** True for a host name that means this machine. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\./.test(host);
}

/** Opens a WebSocket to `url` (https://, or http:// on loopback only). */
export async function openWebSocket(url: string, opts: HttpsOptions): Promise<Channel> {
  const u = new URL(url);
  if (u.protocol === "http:" && !isLoopback(u.hostname)) {
    throw new HttpsError(
      `${url}: plain http is allowed only to this machine (127.0.0.1); use https://`,
    );
  }
  u.protocol = u.protocol === "http:" ? "ws:" : "wss:";
  let client: Deno.HttpClient | undefined;
  if (opts.caFile) {
    let ca: string;
    try {
      ca = Deno.readTextFileSync(opts.caFile);
    } catch (e) {
      throw new HttpsError(`cannot read --ca-file ${opts.caFile}: ${(e as Error).message}`);
    }
    client = Deno.createHttpClient({ caCerts: [ca] });
  }
  const headers = opts.token ? { Authorization: `Bearer ${opts.token}` } : undefined;
  // Deno's WebSocket takes headers and an HTTP client as a second argument.
  const init = { headers, client } as unknown as string[];
  const ws = new WebSocket(u.href, init);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = (e) => reject(new Error((e as ErrorEvent).message ?? "connection failed"));
    });
  } catch (e) {
    const status = await statusOf(url, headers, client);
    client?.close();
    throw explainHttps(url, (e as Error).message, status);
  }
  const ch = wsChannel(ws);
  let closed = false;
  return {
    ...ch,
    close: () => {
      if (closed) return;
      closed = true;
      ch.close();
      client?.close();
    },
  };
}

/**
 * The HTTP status a plain GET of `url` gets (the WebSocket's own error does not
 * always carry it, e.g. over HTTP/2); null if that fails too.
 */
async function statusOf(
  url: string,
  headers: Record<string, string> | undefined,
  client: Deno.HttpClient | undefined,
): Promise<number | null> {
  try {
    const res = await fetch(url, { headers, client, signal: AbortSignal.timeout(5000) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return null;
  }
}

/** One line for a WebSocket that did not open (`status`: what a GET of the URL got). */
export function explainHttps(url: string, message: string, status: number | null): HttpsError {
  if (status === 401 || /\b401\b/.test(message)) {
    return new HttpsError(
      `${url}: authentication failed: check the token (--token-file or REPLICATOR_TOKEN)`,
    );
  }
  if (/certificate|UnknownIssuer|tls|TLS/.test(message)) {
    return new HttpsError(
      `${url}: the server's certificate is not trusted (${message}); ` +
        `give its CA with --ca-file`,
    );
  }
  if (/refused|unreachable|dns|resolve|timed out/i.test(message)) {
    return new HttpsError(
      `${url}: cannot connect (${message}); check the address and that ` +
        `'replicator serve --listen' runs there`,
    );
  }
  return new HttpsError(`${url}: ${message}`);
}
