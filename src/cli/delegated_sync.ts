/**
 * `replicator sync` run by the volume's lento, as InterMezzo's Lento did the
 * replicating itself. Lento's process is warm (its code compiled, its libc
 * symbols bound), so a sync of a few files takes it about half the time a
 * fresh process spends on the same work; the command only starts, asks and
 * prints (docs/design.md, "Lento runs the syncs cron asks for").
 *
 * The exchange on `.replicator/lento.sock`, one UTF-8 line each:
 *
 *   client → lento   sync {"peers":[PEER, ...]}   (absolute paths or peer names)
 *   lento → client   started
 *   lento → client   {"outcomes":[...]}  or  {"failure":{"message","exitCode","usage"}}
 *
 * A sync is handed over only when running it here could not differ: every
 * peer is a local directory (no ssh agent, token or CA of this user's
 * session matters), no REPLICATOR_* knob is set in this environment (lento
 * has its own), no progress bar would be drawn, and the socket belongs to
 * this user: lento makes it 0700, so no other user can ask (root aside, who
 * could run the sync anyway). If lento does not say "started" in time, or
 * goes away before its answer, the command runs the sync itself: the volume
 * lock and recovery make a second run safe. An answer that cannot be read is
 * a failure (exit 1), not a second run, which would not report what lento did.
 *
 * @module
 */

import { localTargets, type PeerFailure, sync } from "../replica.ts";
import type { SyncReport } from "../sync/sync.ts";
import { findRoot } from "../volume/volume.ts";
import { layoutOf } from "../volume/layout.ts";
import { UnixRequest } from "../fs/unix_socket.ts";
import { SYNC_REQUEST, SYNC_STARTED } from "../capture/lento_client.ts";
import { Exit, ReplicatorError } from "../errors.ts";
import { type Failure, failureOf } from "./failure.ts";

/** How long the command waits for "started" before running the sync itself. */
const START_WAIT_MS = 5000;
/** At most this much answer is read (a report lists conflicts and problems). */
const MAX_ANSWER_BYTES = 64 << 20;
/** At most this many peers in a request. */
const MAX_PEERS = 256;

/** What a sync ended with: per-peer outcomes, or one failure for the whole run. */
export type SyncOutcome = { outcomes: (SyncReport | PeerFailure)[] } | { failure: Failure };

/** What keeps a sync in this process. */
export interface HereReasons {
  /** A progress bar would be drawn (lento's output goes nowhere). */
  progress: boolean;
  /** Options for peers on other hosts were given. */
  remoteOptions: boolean;
}

/**
 * Has the running lento of the volume containing `dir` sync it with `peers`;
 * null if the sync is to run in this process (see the module doc).
 */
export async function syncByLento(
  dir: string,
  peers: string[],
  here: HereReasons,
): Promise<SyncOutcome | null> {
  if (here.progress || here.remoteOptions || knobsSet()) return null;
  let root: string;
  let sent: string[] | null;
  try {
    root = findRoot(dir);
    sent = localTargets(root, peers);
  } catch {
    return null; // the run here says what is wrong
  }
  if (!sent) return null;
  const request = `${SYNC_REQUEST} ${JSON.stringify({ peers: sent })}\n`;
  const conn = UnixRequest.send(layoutOf(root).lentoSock, request, Deno.uid() ?? -1);
  if (!conn) return null;
  try {
    if (await conn.line(performance.now() + START_WAIT_MS) !== SYNC_STARTED) return null;
    const answer = await conn.line(null, MAX_ANSWER_BYTES);
    if (answer === null && !conn.tooLong) return null; // lento went away: run it here
    // Lento ran the sync: running it again would not report what it did.
    return decodeOutcome(answer ?? "", sent, peers) ?? {
      failure: {
        message: `the volume's lento ran the sync, but its report ${
          conn.tooLong ? `exceeded ${MAX_ANSWER_BYTES >> 20} MiB` : "could not be read"
        }; run 'replicator status' to see what it left (conflicts, wanted files)`,
        exitCode: Exit.failed,
        usage: false,
      },
    };
  } finally {
    conn.close();
  }
}

/** True if a REPLICATOR_* setting other than the token is in the environment. */
function knobsSet(): boolean {
  return Object.keys(Deno.env.toObject()).some((k) =>
    k.startsWith("REPLICATOR_") && k !== "REPLICATOR_TOKEN"
  );
}

/**
 * Lento's side: runs the sync `body` asks for on the volume containing
 * `dir`, and returns the answer line (without its newline). Never throws.
 */
export async function serveSyncRequest(dir: string, body: string): Promise<string> {
  let outcome: SyncOutcome;
  try {
    const peers = parseRequest(dir, body);
    outcome = { outcomes: await sync(dir, peers) };
  } catch (e) {
    outcome = { failure: failureOf(e) };
  }
  return encodeOutcome(outcome);
}

/** The peers of a request; a malformed one, or one naming a peer on another host, is refused. */
function parseRequest(dir: string, body: string): string[] {
  let peers: unknown;
  try {
    peers = (JSON.parse(body) as { peers?: unknown })?.peers;
  } catch {
    peers = undefined;
  }
  const ok = Array.isArray(peers) && peers.length <= MAX_PEERS &&
    peers.every((p) => typeof p === "string" && (p.startsWith("/") || /^[^/:]+$/.test(p)));
  if (!ok) throw new ReplicatorError("lento was sent a malformed sync request");
  if (!localTargets(findRoot(dir), peers as string[])) {
    throw new ReplicatorError("lento runs syncs with local peers only");
  }
  return peers as string[];
}

function encodeOutcome(o: SyncOutcome): string {
  const plain = "failure" in o ? o : {
    outcomes: o.outcomes.map((x) =>
      "error" in x
        ? { peer: x.peer, error: { message: x.error.message, code: x.error.exitCode } }
        : x
    ),
  };
  return JSON.stringify(plain, (_k, v) => typeof v === "bigint" ? v.toString() : v);
}

/**
 * Lento's answer as the command prints it: a failing peer is named as it was
 * given (`asked[i]`, not the absolute path `sent[i]`); null if malformed.
 */
function decodeOutcome(answer: string, sent: string[], asked: string[]): SyncOutcome | null {
  try {
    const o = JSON.parse(answer);
    if (o?.failure && typeof o.failure.message === "string") return { failure: o.failure };
    if (!Array.isArray(o?.outcomes)) return null;
    return {
      outcomes: o.outcomes.map((x: SyncReport | WirePeerFailure, i: number) => {
        if (!("error" in x)) return x;
        const peer = x.peer === sent[i] && asked[i] !== undefined ? asked[i] : x.peer;
        return { peer, error: new ReplicatorError(x.error.message, x.error.code) };
      }),
    };
  } catch {
    return null;
  }
}

/** A peer's failure as it travels. */
interface WirePeerFailure {
  peer: string;
  error: { message: string; code: number };
}
