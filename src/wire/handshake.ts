/**
 * The handshake that opens a session (docs/protocol.md): the client says
 * HELLO with who it is, the server answers WELCOME with who it is, or ERROR
 * and closes. Only then do calls start.
 *
 * @module
 */

import { encodeFrame, FLAG_END, type Frame, MsgType, ProtocolError } from "./frame.ts";
import {
  decodeMessage,
  encodeMessage,
  type ErrorCode,
  type Identity,
  type Message,
  PROTOCOL_VERSION,
} from "./messages.ts";
import { type Channel, ConnectionError, RemoteError, timeoutMs } from "./session.ts";
import { after } from "../timer.ts";

/** The server's identity as WELCOME carries it. */
export type Welcome = Identity & { readOnly: boolean };

/** What a server decides about a HELLO. */
export type Verdict = { welcome: Welcome } | { code: ErrorCode; message: string };

/** Frames of a channel after the handshake, for Session.start(). */
export type Rest = AsyncIterator<Frame>;

/** Client side: sends HELLO, returns the server's WELCOME. Throws RemoteError on ERROR. */
export async function sayHello(
  ch: Channel,
  me: Identity,
  peer: string,
): Promise<{ welcome: Welcome; rest: Rest }> {
  await ch.send(frame({ type: MsgType.Hello, ...me }));
  const rest = ch.frames[Symbol.asyncIterator]();
  let first;
  try {
    first = await within(rest.next(), `${peer} did not answer HELLO`);
  } catch (e) {
    if (e instanceof ProtocolError) throw new ConnectionError(`${peer}: ${e.message}`);
    throw e;
  }
  if (first.done) {
    throw new ConnectionError(`${peer} closed the connection before answering`);
  }
  const f = first.value;
  if (f.call !== 0 || (f.type !== MsgType.Welcome && f.type !== MsgType.Error)) {
    throw new ProtocolError("protocol", `${MsgType[f.type]} in answer to HELLO`);
  }
  const m = decodeMessage(f.type, f.payload);
  if (m.type === MsgType.Error) throw new RemoteError(peer, m.code, m.message);
  const { type: _, ...welcome } = m as Extract<Message, { type: MsgType.Welcome }>;
  if (welcome.protocol !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      "protocol",
      `${peer} speaks protocol ${welcome.protocol}, not ${PROTOCOL_VERSION}`,
    );
  }
  return { welcome, rest };
}

/**
 * Server side: reads HELLO and answers as `decide` says. Returns the client's
 * identity, or null after an ERROR (the caller closes).
 */
export async function awaitHello(
  ch: Channel,
  decide: (hello: Identity) => Promise<Verdict>,
): Promise<{ hello: Identity; rest: Rest } | null> {
  const rest = ch.frames[Symbol.asyncIterator]();
  let hello: Identity;
  try {
    const first = await within(rest.next(), "the client said nothing");
    if (first.done) return null;
    hello = readHello(first.value);
  } catch (e) {
    // Say why before closing, as the session does after the handshake.
    if (e instanceof ProtocolError) {
      await ch.send(frame({ type: MsgType.Error, code: e.code, message: e.message }))
        .catch(() => {});
    }
    throw e;
  }
  const v: Verdict = hello.protocol === PROTOCOL_VERSION
    ? await decide(hello)
    : { code: "protocol", message: `this server speaks protocol ${PROTOCOL_VERSION} only` };
  if ("code" in v) {
    await ch.send(frame({ type: MsgType.Error, code: v.code, message: v.message }));
    return null;
  }
  await ch.send(frame({ type: MsgType.Welcome, ...v.welcome }));
  return { hello, rest };
}

/**
 * `p`, or a ConnectionError saying `what` after the silence limit
 * (REPLICATOR_TIMEOUT, but at least 10 s: the answer to HELLO waits for ssh's
 * log-in and the remote program's start).
 */
async function within<T>(p: Promise<T>, what: string): Promise<T> {
  const ms = Math.max(timeoutMs(), 10_000);
  let cancel = () => {};
  const late = new Promise<never>((_, reject) => {
    cancel = after(
      ms,
      () => reject(new ConnectionError(`${what} for ${Math.round(ms / 1000)} s; check the peer`)),
    );
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    cancel();
  }
}

/** The identity a first frame carries, if it is a HELLO on call 0. */
function readHello(f: Frame): Identity {
  if (f.type !== MsgType.Hello) {
    throw new ProtocolError("protocol", `${MsgType[f.type]} before HELLO`);
  }
  if (f.call !== 0) throw new ProtocolError("protocol", `HELLO on call ${f.call} (not 0)`);
  const { type: _, ...hello } = decodeMessage(f.type, f.payload) as Extract<
    Message,
    { type: MsgType.Hello }
  >;
  return hello;
}

function frame(m: Message): Uint8Array {
  return encodeFrame({ type: m.type, flags: FLAG_END, call: 0, payload: encodeMessage(m) });
}
