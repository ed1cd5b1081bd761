/**
 * A hostile `replicator serve --stdio`, run by ssh as the --remote-cmd of the
 * hostile-peer tests: it serves the real replica, but lies or breaks the
 * protocol as MODE says.
 *
 *   deno run -A tests/hostile_server.ts MODE serve --stdio -C DIR
 *
 * wrong-volume   WELCOME names another volume
 * garbage        answers HELLO with random bytes
 * mute           never answers HELLO
 * lying-data     flips a byte in every DATA frame
 * bad-records    RECORDS holds a well-formed record for the path "../escape"
 * oversized      answers the first call with a frame header of 5 MiB
 * stall          says WELCOME, then nothing
 * deflate-bomb   answers FILE? with a DEFLATE frame that unpacks to 16 MiB
 */

import { openReplica } from "../src/apply/open.ts";
import { encodeRecord, Op } from "../src/kml/record.ts";
import { deflateRawSync } from "node:zlib";
import { encodeFrame, FLAG_DEFLATE, MsgType } from "../src/wire/frame.ts";
import { awaitHello } from "../src/wire/handshake.ts";
import type { Message } from "../src/wire/messages.ts";
import { type Handler, Reply, Session, streamChannel } from "../src/wire/session.ts";
import { identityOf } from "../src/sync/peer.ts";
import { fromWire, remotePeer, toWire } from "../src/sync/remote.ts";
import { volumeHandler } from "../src/sync/serve.ts";

const [mode, , , , dir] = Deno.args;

if (mode === "mute") {
  for await (const _ of Deno.stdin.readable) {
    /* reads, never answers, until the client hangs up */
  }
  Deno.exit(0);
}
const vol = openReplica(dir);
const ch = streamChannel(Deno.stdin.readable, Deno.stdout.writable);
const me = toWire(identityOf(vol));

if (mode === "garbage") {
  await ch.frames[Symbol.asyncIterator]().next();
  await ch.send(crypto.getRandomValues(new Uint8Array(40)));
  Deno.exit(0);
}

const hello = await awaitHello(ch, () =>
  Promise.resolve({
    welcome: {
      ...me,
      volume: mode === "wrong-volume" ? "ab".repeat(16) : me.volume,
      readOnly: false,
    },
  }));
if (!hello) Deno.exit(1);

const honest = volumeHandler(vol, {
  server: true,
  peer: () => remotePeer(session, fromWire(hello.hello), "client"),
});

/** The handler MODE calls for. */
function handler(): Handler {
  switch (mode) {
    case "lying-data":
      return (m, reply) => honest(m, lyingReply(reply));
    case "bad-records":
      return async (m, reply) => {
        if (m.type !== MsgType.RecordsRequest) return await honest(m, reply);
        const r = encodeRecord({
          op: Op.Store,
          path: "../escape",
          target: "",
          mode: 0o100644,
          originSeq: 1_000_000,
          originHost: vol.hostId,
          epoch: 1,
          timeNs: 0n,
          size: 1,
          mtimeNs: 0n,
          digest: "11".repeat(32),
          uid: -1,
          gid: -1,
          owner: "",
          group: "",
        });
        await reply.frame(MsgType.Records, r, true);
      };
    case "oversized":
      return async (_m, reply) => {
        const head = encodeFrame({
          type: MsgType.Data,
          flags: 0,
          call: reply.call,
          payload: new Uint8Array(),
        });
        new DataView(head.buffer).setUint32(0, 5 << 20, true);
        await ch.send(head);
      };
    case "stall":
      return () => new Promise(() => {});
    case "deflate-bomb":
      return async (m, reply) => {
        if (m.type !== MsgType.FileRequest) return await honest(m, reply);
        const bomb = deflateRawSync(new Uint8Array(16 << 20));
        await reply.frame(MsgType.Data, bomb, false, FLAG_DEFLATE);
        await reply.frame(MsgType.Data, new Uint8Array(), true);
      };
    default:
      return honest;
  }
}

/** A reply whose DATA frames have their first byte flipped. */
function lyingReply(reply: Reply): Reply {
  const lie = Object.create(reply) as Reply;
  lie.frame = (type: MsgType, payload: Uint8Array, end: boolean) => {
    if (type === MsgType.Data && payload.length > 0) {
      payload = payload.slice();
      payload[0] ^= 0xff;
    }
    return reply.frame(type, payload, end);
  };
  lie.message = (m: Message) => reply.message(m);
  return lie;
}

const session: Session = new Session(ch, "server", { peer: "client", handler: handler() });
try {
  await session.start(hello.rest);
} catch { /* the client hung up */ }
vol.close();
