/**
 * A session: calls in both directions over one channel of frames
 * (docs/protocol.md, "Decisions"). Each side numbers its own calls (the
 * client odd, the server even), so either may ask while the other is asking;
 * replies are streams of frames ending with `END`.
 *
 * One read loop takes every frame: a reply goes to the inbox of its call (the
 * loop waits while an inbox is full, so a slow consumer slows the peer
 * instead of filling memory); a request starts the handler, whose reply
 * frames go out as it makes them.
 *
 * @example
 * ```ts
 * const s = new Session(channel, "client", { peer: "beta", handler });
 * s.start();
 * const reply = await s.ask({ type: MsgType.PositionRequest, host, incarnation });
 * ```
 *
 * @module
 */

import { BusyError, Exit, ReplicatorError } from "../errors.ts";
import { encodeFrame, FLAG_END, type Frame, MsgType, ProtocolError, readFrames } from "./frame.ts";
import {
  changesVolume,
  decodeMessage,
  encodeMessage,
  type ErrorCode,
  type Message,
  printable,
} from "./messages.ts";
import { every } from "../timer.ts";
import { coalescing } from "./coalesce.ts";

/** Where frames travel: a byte stream (ssh) or a WebSocket (https). */
export interface Channel {
  /** Sends one encoded frame; resolves when the transport has taken it. */
  send(frame: Uint8Array): Promise<void>;
  /** The peer's frames in order; ends when it closes; throws ProtocolError on bad bytes. */
  frames: AsyncIterable<Frame>;
  /** Closes both directions. */
  close(): void;
}

/** A channel over a pair of byte streams (stdio, a pipe, ssh); frames sent together share a write. */
export function streamChannel(
  readable: ReadableStream<Uint8Array>,
  writable: WritableStream<Uint8Array>,
): Channel {
  const writer = writable.getWriter();
  return {
    send: coalescing((bytes) => writer.write(bytes)),
    frames: readFrames(readable),
    close: () => {
      writer.close().catch(() => {});
      readable.cancel().catch(() => {});
    },
  };
}

/** The peer answered a call with ERROR. */
export class RemoteError extends ReplicatorError {
  readonly code: ErrorCode;
  constructor(peer: string, code: ErrorCode, message: string) {
    super(`${peer}: ${printable(message, 1024)}`, code === "busy" ? Exit.busy : Exit.failed);
    this.code = code;
  }
}

/** The connection ended or stalled before the session did. */
export class ConnectionError extends ReplicatorError {}

/** Types a peer may send as a request. */
const REQUESTS = new Set([
  MsgType.RecordsRequest,
  MsgType.FileRequest,
  MsgType.PositionRequest,
  MsgType.CaptureRequest,
  MsgType.PullRequest,
  MsgType.Bye,
]);
/** Calls either side may have in flight (docs/protocol.md, "Limits"). */
export const MAX_CALLS = 64;
/** Reply frames queued for one call before the read loop waits for its consumer. */
const INBOX_FRAMES = 16;

/** Answers one request: sends the reply's frames. */
export type Handler = (request: Message, reply: Reply) => Promise<void>;

/** How a session runs. */
export interface SessionOptions {
  /** The peer's name, for messages. */
  peer: string;
  /** Answers the peer's requests; none: every request is refused. */
  handler?: Handler;
  /** Silence tolerated while a call of ours is outstanding (default 60 s, REPLICATOR_TIMEOUT). */
  timeoutMs?: number;
}

/** The silence limit: REPLICATOR_TIMEOUT seconds, default 60. */
export function timeoutMs(): number {
  const s = Number(Deno.env.get("REPLICATOR_TIMEOUT") ?? "60");
  return Number.isFinite(s) && s > 0 ? s * 1000 : 60_000;
}

/** One call's reply frames, as they arrive. */
class Inbox {
  #frames: Frame[] = [];
  #failed?: Error;
  #wake?: () => void;
  #room?: () => void;

  push(f: Frame): void {
    this.#frames.push(f);
    this.#wake?.();
  }
  fail(e: Error): void {
    this.#failed ??= e;
    this.#wake?.();
    this.#room?.();
  }
  /** Resolves when the consumer has taken enough to make room. */
  room(): Promise<void> {
    if (this.#frames.length < INBOX_FRAMES || this.#failed) return Promise.resolve();
    return new Promise((r) => this.#room = r);
  }
  async next(): Promise<Frame> {
    while (this.#frames.length === 0) {
      if (this.#failed) throw this.#failed;
      await new Promise<void>((r) => this.#wake = r);
      this.#wake = undefined;
    }
    const f = this.#frames.shift()!;
    if (this.#frames.length < INBOX_FRAMES && this.#room) {
      this.#room();
      this.#room = undefined;
    }
    return f;
  }
}

/** The reply to one request. */
export class Reply {
  #ended = false;
  constructor(private readonly session: Session, readonly call: number) {}

  /** Sends one frame of the reply; `end` marks the last; `flags` adds others (FLAG_DEFLATE). */
  async frame(type: MsgType, payload: Uint8Array, end: boolean, flags = 0): Promise<void> {
    if (this.#ended) throw new Error(`call ${this.call} was answered already`);
    this.#ended = end;
    await this.session.send({
      type,
      flags: flags | (end ? FLAG_END : 0),
      call: this.call,
      payload,
    });
  }
  /** Answers with one control message. */
  message(m: Message): Promise<void> {
    return this.frame(m.type, encodeMessage(m), true);
  }
  /** Answers with ERROR. */
  error(code: ErrorCode, message: string): Promise<void> {
    return this.message({ type: MsgType.Error, code, message });
  }
  get ended(): boolean {
    return this.#ended;
  }
}

/** Calls both ways over one channel. */
export class Session {
  readonly peer: string;
  #channel: Channel;
  #handler?: Handler;
  #nextCall: number;
  #calls = new Map<number, Inbox>();
  /** Silence tolerated per call of ours in flight. */
  #limits = new Map<number, number>();
  /** Calls whose consumer stopped early: their remaining frames are dropped. */
  #dropped = new Set<number>();
  #server: boolean;
  #serving = new Set<number>();
  #handlers = new Set<Promise<void>>();
  #failed?: Error;
  #heard = Date.now();
  #stopWatch?: () => void;
  #timeout: number;
  #loop?: Promise<void>;
  #byeSeen = false;

  constructor(channel: Channel, side: "client" | "server", opts: SessionOptions) {
    this.#channel = channel;
    this.peer = opts.peer;
    this.#handler = opts.handler;
    this.#nextCall = side === "client" ? 1 : 2;
    this.#server = side === "server";
    this.#timeout = opts.timeoutMs ?? timeoutMs();
  }

  /** Starts the read loop; the promise settles when the peer closes (rejects on its faults). */
  start(
    frames: AsyncIterator<Frame> = this.#channel.frames[Symbol.asyncIterator](),
  ): Promise<void> {
    this.#stopWatch = every(Math.min(1000, this.#timeout / 4), () => this.#watch());
    this.#loop = this.#read(frames).finally(() => this.#stopWatch?.());
    return this.#loop;
  }

  /** Resolves once no request of the peer is being answered. */
  async settled(): Promise<void> {
    while (this.#handlers.size > 0) await Promise.allSettled([...this.#handlers]);
  }

  /** True once the peer said BYE. */
  get byeSeen(): boolean {
    return this.#byeSeen;
  }

  /** Sends a request; yields the reply's frames (ERROR becomes a RemoteError). */
  async *call(m: Message): AsyncGenerator<Frame, void, undefined> {
    if (this.#failed) throw this.#failed;
    if (this.#calls.size >= MAX_CALLS) throw new RangeError("too many calls in flight");
    const call = this.#nextCall;
    this.#nextCall += 2;
    const inbox = new Inbox();
    this.#calls.set(call, inbox);
    // The other side works silently on those (a scan, an apply): a longer limit.
    this.#limits.set(call, changesVolume(m.type) ? this.#timeout * 30 : this.#timeout);
    this.#heard = Date.now();
    let ended = false;
    try {
      await this.send({ type: m.type, flags: FLAG_END, call, payload: encodeMessage(m) });
      for (;;) {
        const f = await inbox.next();
        ended = (f.flags & FLAG_END) !== 0 || f.type === MsgType.Error;
        if (f.type === MsgType.Error) {
          const e = decodeMessage(f.type, f.payload) as Extract<Message, { type: MsgType.Error }>;
          throw new RemoteError(this.peer, e.code, e.message);
        }
        yield f;
        if (ended) return;
      }
    } finally {
      if (!ended) this.#dropped.add(call);
      inbox.fail(new Error("the call ended")); // frees a read loop waiting for room
      this.#calls.delete(call);
      this.#limits.delete(call);
    }
  }

  /** A call answered by one control message of type `want`. */
  async ask<T extends MsgType>(m: Message, want: T): Promise<Extract<Message, { type: T }>> {
    for await (const f of this.call(m)) {
      if (f.type !== want || !(f.flags & FLAG_END)) {
        throw new ProtocolError("protocol", `${MsgType[f.type]} in reply to ${MsgType[m.type]}`);
      }
      return decodeMessage(f.type, f.payload) as Extract<Message, { type: T }>;
    }
    throw new ProtocolError("protocol", `no reply to ${MsgType[m.type]}`);
  }

  /** Sends one frame (replies and requests share the channel in frame order). */
  async send(f: Frame): Promise<void> {
    if (this.#failed) throw this.#failed;
    try {
      await this.#channel.send(encodeFrame(f));
    } catch (e) {
      throw this.#fail(new ConnectionError(`the connection to ${this.peer} broke: ${msg(e)}`));
    }
  }

  /** Ends the session: says BYE (client), closes the channel, waits for the read loop. */
  async close(bye = false): Promise<void> {
    if (bye && !this.#failed) {
      await this.send({
        type: MsgType.Bye,
        flags: FLAG_END,
        call: this.#nextCall,
        payload: new Uint8Array(),
      })
        .catch(() => {});
    }
    this.#failed ??= new ConnectionError(`the session with ${this.peer} is closed`);
    this.#stopWatch?.();
    this.#channel.close();
    await this.#loop?.catch(() => {});
  }

  async #read(frames: AsyncIterator<Frame>): Promise<void> {
    try {
      for (;;) {
        const next = await frames.next();
        if (next.done) break;
        this.#heard = Date.now();
        await this.#dispatch(next.value);
        if (this.#byeSeen) break;
      }
      if (!this.#byeSeen && this.#calls.size > 0) {
        throw new ConnectionError(`${this.peer} closed the connection in the middle of a call`);
      }
      this.#fail(new ConnectionError(`${this.peer} closed the connection`));
    } catch (e) {
      const err = e instanceof ProtocolError
        ? new ConnectionError(`${this.peer}: ${e.message}`)
        : e instanceof ReplicatorError
        ? e
        : new ConnectionError(`the connection to ${this.peer} broke: ${msg(e)}`);
      if (e instanceof ProtocolError) {
        await this.send({
          type: MsgType.Error,
          flags: FLAG_END,
          call: 0,
          payload: encodeMessage({ type: MsgType.Error, code: e.code, message: e.message }),
        }).catch(() => {});
      }
      throw this.#fail(err);
    }
  }

  async #dispatch(f: Frame): Promise<void> {
    if (f.call === 0) {
      if (f.type !== MsgType.Error) {
        throw new ProtocolError("protocol", `${MsgType[f.type]} after the handshake`);
      }
      const e = decodeMessage(f.type, f.payload) as Extract<Message, { type: MsgType.Error }>;
      throw new RemoteError(this.peer, e.code, e.message);
    }
    if ((f.call & 1) === (this.#nextCall & 1)) {
      const inbox = this.#calls.get(f.call);
      if (!inbox && this.#dropped.has(f.call)) {
        if (f.flags & FLAG_END || f.type === MsgType.Error) this.#dropped.delete(f.call);
        return;
      }
      if (!inbox) throw new ProtocolError("protocol", `a reply to call ${f.call}, not in flight`);
      inbox.push(f);
      await inbox.room();
      return;
    }
    if (!REQUESTS.has(f.type)) {
      throw new ProtocolError("protocol", `${MsgType[f.type]} is not a request (call ${f.call})`);
    }
    if (f.type === MsgType.Bye) {
      this.#byeSeen = true;
      return;
    }
    if (this.#serving.has(f.call)) {
      throw new ProtocolError("protocol", `call ${f.call} reused while in flight`);
    }
    if (this.#serving.size >= MAX_CALLS) {
      throw new ProtocolError("limit", `more than ${MAX_CALLS} calls in flight`);
    }
    const request = decodeMessage(f.type, f.payload);
    this.#serving.add(f.call);
    const done: Promise<void> = this.#serve(request, new Reply(this, f.call)).finally(() => {
      this.#serving.delete(f.call);
      this.#handlers.delete(done);
    });
    this.#handlers.add(done);
  }

  /** Runs the handler; a failure becomes an ERROR reply (the session goes on). */
  async #serve(request: Message, reply: Reply): Promise<void> {
    try {
      if (!this.#handler) throw new ReplicatorError(`${MsgType[request.type]} is not served here`);
      await this.#handler(request, reply);
      if (!reply.ended) throw new Error(`no reply to ${MsgType[request.type]}`);
    } catch (e) {
      if (this.#failed || reply.ended) return;
      await reply.error(errorCode(e), msg(e)).catch(() => {});
    }
  }

  /**
   * Ends a session whose peer went silent: while a call of ours is in flight,
   * after its limit; a server with nothing to do, after ten times the
   * timeout (a client that hangs must not hold the server's lock forever).
   */
  #watch(): void {
    if (this.#failed) return;
    const idle = this.#server && this.#serving.size === 0 ? this.#timeout * 10 : Infinity;
    const limit = Math.min(idle, ...this.#limits.values());
    const quiet = Date.now() - this.#heard;
    if (quiet < limit) return;
    this.#fail(
      new ConnectionError(
        `${this.peer} sent nothing for ${Math.round(quiet / 1000)} s` +
          (this.#calls.size > 0 ? " while a call was outstanding" : "") +
          `; check the network and the peer, then sync again`,
      ),
    );
    this.#channel.close();
  }

  #fail(e: Error): Error {
    this.#failed ??= e;
    for (const inbox of this.#calls.values()) inbox.fail(this.#failed);
    return this.#failed;
  }
}

/** The ERROR code that describes `e` to the peer. */
export function errorCode(e: unknown): ErrorCode {
  if (e instanceof RemoteError) return e.code;
  if (e instanceof ProtocolError) return e.code;
  if (e instanceof BusyError) return "busy";
  return "internal";
}

function msg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
