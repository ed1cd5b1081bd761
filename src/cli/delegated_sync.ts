/**
 * `replicator sync` run by the volume's lento, as InterMezzo's Lento did the
 * replicating itself. Lento's process is warm (its code compiled, its libc
 * symbols bound), so a sync of a few files takes it about half the time a
 * fresh process spends on the same work; the command only starts, asks and
 * prints (docs/design.md, "Lento runs the syncs cron asks for").
 *
 * The exchange on `.replicator/lento.sock`, one UTF-8 line each:
 *
 *   client → lento   sync {"root":ROOT,"host":HOST_ID,"peers":[PATH, ...]}
 *   lento → client   started   (or: declined, and lento closes)
 *   lento → client   {"outcomes":[...]}  or  {"failure":{"message","exitCode","usage"}}
 *
 * ROOT is the volume's real path and HOST_ID its host id, as the command
 * sees them; every PATH is a local peer's absolute path, resolved by the
 * command (a named peer's URL too, against the command's directory).
 *
 * A sync is handed over only when running it in lento cannot differ from
 * running it here: every peer is a local directory (no ssh agent, token or
 * CA of this user's session matters), no REPLICATOR_* knob is set in this
 * environment (lento has its own), no progress bar would be drawn, and the
 * socket belongs to this user: lento makes it 0700, so no other user can ask
 * (root aside, who could run the sync anyway). Lento declines a request for
 * another volume (a directory moved while its lento ran): the command then
 * runs the sync itself, as it does when lento does not answer within 5 s.
 * Before it runs a sync, lento waits for held locks without blocking its
 * event loop (the sync's own wait blocks its thread). Once lento has said
 * "started", the answer is the sync's outcome: a connection that ends before
 * it, or an answer that cannot be read, is a failure (exit 1), never a
 * second run, which would not report what lento did.
 *
 * @module
 */

import { localTargets, type PeerFailure, sync } from "../replica.ts";
import type { SyncReport } from "../sync/sync.ts";
import { findRoot, isReplica } from "../volume/volume.ts";
import { layoutOf } from "../volume/layout.ts";
import { readConfig } from "../volume/config.ts";
import { untilFree } from "../volume/lock.ts";
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

/** A sync request as it travels. */
interface Request {
  root: string;
  host: string;
  peers: string[];
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
  let request: Request;
  let labels: string[];
  let sock: string;
  try {
    const root = findRoot(dir);
    const config = readConfig(layoutOf(root).config);
    const targets = localTargets(config, peers);
    if (!targets || targets.paths.length > MAX_PEERS) return null;
    request = { root: Deno.realPathSync(root), host: config.hostId, peers: targets.paths };
    labels = targets.labels;
    sock = layoutOf(root).lentoSock;
  } catch {
    return null; // the run here says what is wrong
  }
  const line = `${SYNC_REQUEST} ${JSON.stringify(request)}\n`;
  const conn = UnixRequest.send(sock, line, Deno.uid() ?? -1);
  if (!conn) return null;
  try {
    if (await conn.line(performance.now() + START_WAIT_MS) !== SYNC_STARTED) return null;
    const answer = await conn.line(null, MAX_ANSWER_BYTES);
    return (answer !== null && decodeOutcome(answer, request.peers, labels)) ||
      { failure: lostAnswer(conn.tooLong) };
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

/** What the command says when lento started the sync but its answer did not come whole. */
function lostAnswer(tooLong: boolean): Failure {
  const why = tooLong
    ? `its report exceeded ${MAX_ANSWER_BYTES >> 20} MiB`
    : "it stopped before it answered";
  return {
    message: `the volume's lento ran the sync, but ${why}; what it did is kept or is finished by ` +
      `the next sync: run 'replicator status' to see conflicts and wanted files, then sync again`,
    exitCode: Exit.failed,
    usage: false,
  };
}

/**
 * Lento's side: the sync `body` asks for on the volume containing `dir`, as
 * a function that runs it and returns the answer line (it never throws), or
 * why lento declines it (the command then runs it itself).
 */
export function takeSyncRequest(
  dir: string,
  body: string,
): { run: () => Promise<string> } | { declined: string } {
  let request: Request;
  try {
    request = parseRequest(body);
  } catch (e) {
    return { declined: (e as Error).message };
  }
  const root = findRoot(dir);
  const host = readConfig(layoutOf(root).config).hostId;
  if (Deno.realPathSync(root) !== request.root || host !== request.host) {
    return { declined: `a sync of another volume (${request.root})` };
  }
  const locks = [root, ...request.peers.filter(isReplica)].map((v) => layoutOf(v).lock);
  return {
    run: async () => {
      let outcome: SyncOutcome;
      try {
        // The sync waits for a held lock by blocking its thread, lento's: wait here instead.
        await untilFree(locks);
        outcome = { outcomes: await sync(dir, request.peers) };
      } catch (e) {
        outcome = { failure: failureOf(e) };
      }
      return encodeOutcome(outcome);
    },
  };
}

function parseRequest(body: string): Request {
  let r: Partial<Request> | null = null;
  try {
    r = JSON.parse(body);
  } catch { /* said below */ }
  const ok = typeof r?.root === "string" && typeof r.host === "string" &&
    Array.isArray(r.peers) && r.peers.length > 0 && r.peers.length <= MAX_PEERS &&
    r.peers.every((p) => typeof p === "string" && p.startsWith("/"));
  if (!ok) throw new Error("a malformed sync request");
  return r as Request;
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
 * Lento's answer as the command prints it: a failing peer is named as the
 * command would name it (`labels[i]`, not the absolute path `sent[i]`);
 * null if malformed.
 */
function decodeOutcome(answer: string, sent: string[], labels: string[]): SyncOutcome | null {
  try {
    const o = JSON.parse(answer);
    if (o?.failure && typeof o.failure.message === "string") return { failure: o.failure };
    if (!Array.isArray(o?.outcomes)) return null;
    return {
      outcomes: o.outcomes.map((x: SyncReport | WirePeerFailure, i: number) => {
        if (!("error" in x)) return x;
        const peer = x.peer === sent[i] && labels[i] !== undefined ? labels[i] : x.peer;
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
