/**
 * `serve --listen`: an HTTPS server whose only resource is the WebSocket a
 * session runs over. The bearer token is checked (in constant time) before
 * the upgrade; a wrong one gets 401 and nothing else.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import type { Channel } from "../wire/session.ts";
import { isLoopback, wsChannel } from "./websocket.ts";

/** How the server listens. */
export interface ListenOptions {
  hostname: string;
  port: number;
  /** The token clients must send; null: none (--insecure-no-auth). */
  token: string | null;
  /** PEM certificate chain and key; both or neither (then loopback only). */
  cert?: string;
  key?: string;
  /** Runs one session; resolves when it has ended. */
  session: (ch: Channel, from: string) => Promise<void>;
  /** Aborting stops the server: no new sessions, open ones are closed. */
  signal: AbortSignal;
  log?: (line: string) => void;
  /** Called once listening, with the port (0 in the options: the one chosen). */
  onListen?: (port: number) => void;
}

/** "HOST:PORT" (or "[v6]:PORT") as --listen takes it. */
export function parseListen(s: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  const port = Number(m?.[3]);
  if (!m || !(port >= 0 && port < 65536)) {
    throw new UsageError(`--listen ${s}: give HOST:PORT, e.g. 0.0.0.0:8443`);
  }
  return { hostname: m[1] ?? m[2], port };
}

/** Serves until the signal aborts; resolves once every session has ended. */
export async function listen(opts: ListenOptions): Promise<void> {
  if (!opts.cert && !isLoopback(opts.hostname)) {
    throw new UsageError(
      `serving without TLS is allowed on 127.0.0.1 only; give --tls-cert and --tls-key ` +
        `to listen on ${opts.hostname}`,
    );
  }
  const open = new Set<Channel>();
  const sessions = new Set<Promise<void>>();
  const server = Deno.serve({
    hostname: opts.hostname,
    port: opts.port,
    cert: opts.cert,
    key: opts.key,
    signal: opts.signal,
    onListen: (addr) => opts.onListen?.((addr as Deno.NetAddr).port),
    onError: (e) => {
      opts.log?.(`request failed: ${(e as Error).message}`);
      return new Response("internal error\n", { status: 500 });
    },
  }, (req, info) => {
    const from = (info.remoteAddr as Deno.NetAddr).hostname;
    if (!authorized(req, opts.token)) {
      opts.log?.(`${from}: authentication failed`);
      return new Response("authentication failed\n", { status: 401 });
    }
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("replicator: connect with 'replicator sync https://…'\n", {
        status: 426,
      });
    }
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
    const ch = wsChannel(socket);
    socket.addEventListener("open", () => {
      open.add(ch);
      const s = opts.session(ch, from)
        .catch((e) => opts.log?.(`${from}: ${(e as Error).message}`))
        .finally(() => {
          open.delete(ch);
          sessions.delete(s);
        });
      sessions.add(s);
    });
    return response;
  });
  opts.signal.addEventListener("abort", () => {
    for (const ch of open) ch.close();
  });
  await server.finished;
  await Promise.allSettled([...sessions]);
}

/** True if `req` carries the token (compared in constant time), or none is required. */
function authorized(req: Request, token: string | null): boolean {
  if (token === null) return true;
  const m = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "");
  if (!m) return false;
  const enc = new TextEncoder();
  const a = enc.encode(m[1]);
  const b = enc.encode(token);
  // Compared in a time that depends only on the expected token's length.
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i];
  return diff === 0;
}
