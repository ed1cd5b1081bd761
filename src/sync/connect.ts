/**
 * Both ends of a network sync over one channel: `connect` (the client, whose
 * replica is already open and locked) and `serveReplica` (the server: opens
 * and locks its replica at HELLO, serves until BYE or the channel ends, and
 * only then releases the lock).
 *
 * @module
 */

import { BusyError, ReplicatorError, VolumeNotFoundError } from "../errors.ts";
import { openReplica } from "../apply/open.ts";
import { findRoot, type Volume } from "../volume/volume.ts";
import { flushLento } from "../capture/lento_client.ts";
import { lockWaitMs } from "../volume/lock.ts";
import { awaitHello, sayHello, type Verdict } from "../wire/handshake.ts";
import { type Identity, printable, PROTOCOL_VERSION } from "../wire/messages.ts";
import { type Channel, Session } from "../wire/session.ts";
import { identityOf, type Peer } from "./peer.ts";
import { fromWire, type ReadOptions, remotePeer, toWire } from "./remote.ts";
import { volumeHandler } from "./serve.ts";
import { sleep } from "../timer.ts";

/**
 * The identity a client without a replica says HELLO with (a clone): every
 * id zero. The server welcomes it whatever its volume.
 */
const NEWCOMER: Identity = {
  protocol: PROTOCOL_VERSION,
  volume: "0".repeat(32),
  host: "0".repeat(32),
  name: "",
  incarnation: "0".repeat(32),
  epoch: 0,
};

/** True for the HELLO of a client that has no replica yet. */
function isNewcomer(h: Identity): boolean {
  return h.volume === NEWCOMER.volume && h.host === NEWCOMER.host;
}

/**
 * Opens a session with the server at the other end of `ch`, for the open
 * replica `local` (null: a clone, which has none yet).
 */
export async function connect(
  ch: Channel,
  local: Volume | null,
  label: string,
  opts: ReadOptions = {},
): Promise<Peer> {
  let welcome;
  let rest;
  try {
    const me = local ? toWire(identityOf(local)) : NEWCOMER;
    ({ welcome, rest } = await sayHello(ch, me, label));
  } catch (e) {
    ch.close();
    throw e;
  }
  const session = new Session(ch, "client", {
    peer: `${label} (${printable(welcome.name)})`,
    handler: local ? volumeHandler(local, { server: false }) : undefined,
  });
  session.start(rest).catch(() => {/* reported by the calls it fails */});
  return remotePeer(session, fromWire(welcome), label, opts);
}

/** openReplica, waiting for a busy lock without blocking the event loop (other sessions run). */
async function openWaiting(root: string): Promise<Volume> {
  const deadline = Date.now() + lockWaitMs();
  for (;;) {
    try {
      return openReplica(root, 0);
    } catch (e) {
      if (!(e instanceof BusyError) || Date.now() >= deadline) throw e;
      await sleep(100);
    }
  }
}

/** How a server serves. */
export interface ServerOptions {
  readOnly?: boolean;
  /** Called with what went wrong in a session (the server itself goes on). */
  log?: (line: string) => void;
}

/**
 * Serves the replica at `dir` to the client at the other end of `ch`, until
 * it says BYE or the channel ends. Resolves true after a BYE.
 */
export async function serveReplica(
  ch: Channel,
  dir: string,
  opts: ServerOptions = {},
): Promise<boolean> {
  let vol: Volume | undefined;
  let journaled = false;
  try {
    const hello = await awaitHello(ch, async (h) => {
      const v = await admit(dir, h, (opened, j) => [vol, journaled] = [opened, j]);
      if ("welcome" in v) v.welcome.readOnly = !!opts.readOnly;
      return v;
    });
    if (!hello || !vol) return false;
    const open: Volume = vol;
    if (!isNewcomer(hello.hello)) open.rememberHost(hello.hello.host, hello.hello.name);
    const name = printable(hello.hello.name) || "a newcomer";
    const session: Session = new Session(ch, "server", {
      peer: name,
      handler: volumeHandler(open, {
        server: true,
        readOnly: opts.readOnly,
        journaled,
        // A newcomer has nothing to pull from: its PULL? is refused.
        peer: isNewcomer(hello.hello)
          ? undefined
          : () => remotePeer(session, fromWire(hello.hello), name),
      }),
    });
    try {
      await session.start(hello.rest);
    } catch (e) {
      opts.log?.(`session with ${name} ended: ${(e as Error).message}`);
    }
    await session.settled();
    return session.byeSeen;
  } finally {
    vol?.close();
    ch.close();
  }
}

/**
 * Opens the replica for a client that said `h`: the verdict WELCOME carries,
 * or the ERROR it gets instead.
 */
async function admit(
  dir: string,
  h: Identity,
  opened: (v: Volume, journaled: boolean) => void,
): Promise<Verdict> {
  let vol: Volume;
  let journaled: boolean;
  try {
    const root = findRoot(dir);
    journaled = await flushLento(root); // before the lock: lento takes it to record
    vol = await openWaiting(root);
  } catch (e) {
    if (e instanceof BusyError) return { code: "busy", message: e.message };
    if (e instanceof VolumeNotFoundError) return { code: "volume", message: e.message };
    if (e instanceof ReplicatorError) return { code: "internal", message: e.message };
    throw e;
  }
  if (!isNewcomer(h) && (vol.config.volumeId !== h.volume || vol.hostId === h.host)) {
    const why = vol.hostId === h.host
      ? `${vol.root} is the client's own replica`
      : `${vol.root} is a replica of another volume (${vol.config.volumeId}); check the path`;
    vol.close();
    return { code: "volume", message: why };
  }
  opened(vol, journaled);
  return { welcome: { ...toWire(identityOf(vol)), readOnly: false } };
}
