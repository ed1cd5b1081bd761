/**
 * Lento: the capture daemon of one volume. It arms an event source (the
 * Presto device, else fanotify), rescans once (so nothing changed while it
 * was down is missed), then turns each batch of events into KML records with
 * a scoped scan, exactly as scan capture would record them. An overflow
 * means a full rescan.
 *
 * While it runs it holds `.replicator/lento.pid` (flock, with its pid in it
 * for people) and listens on `.replicator/lento.sock`: a sync sends "flush" and
 * waits for "flushed", after which everything written before the request is
 * in the KML and sync need not scan (see lento_client.ts).
 *
 * @module
 */

import type { EventSource, Hint } from "./events.ts";
import { capture } from "./capture.ts";
import { findRoot } from "../volume/volume.ts";
import { openReplica } from "../apply/open.ts";
import { layoutOf } from "../volume/layout.ts";
import { checkMeta, tryLockNoFollow } from "../fs/nofollow.ts";
import { BusyError, ReplicatorError } from "../errors.ts";
import {
  FLUSH_DONE,
  FLUSH_REQUEST,
  SYNC_DECLINED,
  SYNC_REQUEST,
  SYNC_STARTED,
} from "./lento_client.ts";
import { sleep } from "../timer.ts";

/** No event source could be armed. */
export class NoCaptureSourceError extends ReplicatorError {}

/** How lento reports what it does. */
export interface LentoOptions {
  /** Use this source instead of opening /dev/presto or fanotify (tests). */
  source?: EventSource;
  /** Stops lento when aborted. */
  signal?: AbortSignal;
  /** Called with a line per batch recorded (-v). */
  log?: (line: string) => void;
  /** Called once armed and rescanned (tests, readiness). */
  ready?: () => void;
  /**
   * Takes the sync a client asks for (the request line after "sync "): how
   * to run it (the answer line it returns), or why not; without it every
   * such request is declined, and the client runs its sync itself.
   */
  takeSync?: (request: string) => { run: () => Promise<string> } | { declined: string };
}

/** Collects more events for this long after the first of a batch. */
const BATCH_MS = 20;

/** Runs lento for the volume containing `dir` until `opts.signal` aborts. */
export async function runLento(dir: string, opts: LentoOptions = {}): Promise<void> {
  const root = findRoot(dir);
  const layout = layoutOf(root);
  const release = tryLockNoFollow(layout.lentoPid, `${Deno.pid}\n`);
  if (!release) throw new BusyError(`${root} (lento already runs for it)`);
  try {
    const source = opts.source ?? await openSource(root);
    try {
      await serve(root, source, listenForFlushes(layout.lentoSock, opts.log), opts);
    } finally {
      source.close();
    }
  } finally {
    release();
  }
}

/**
 * Listens on `path` (a stale socket of a dead lento is replaced; anything
 * else there is refused). The lento.pid lock is held, so no other lento uses it.
 * The socket is made 0700: only this user (and root) may connect, since a
 * sync asked for runs with this process's rights.
 */
function listenForFlushes(path: string, log?: (l: string) => void): Deno.UnixListener | null {
  if (checkMeta(path, "socket")) Deno.removeSync(path);
  const umask = Deno.umask(0o077);
  try {
    return Deno.listen({ transport: "unix", path });
  } catch (e) {
    // E.g. a path longer than a socket address holds (108 bytes): syncs then scan.
    log?.(`cannot listen on ${path} (${(e as Error).message}); syncs will scan this volume`);
    return null;
  } finally {
    Deno.umask(umask);
  }
}

/** The longest request line read (a sync's names its peers). */
const MAX_REQUEST_BYTES = 64 << 10;

/**
 * Reads one request line from `conn`: a "flush" is queued on `flush`, a
 * "sync ..." run by `syncs`; anything else is closed.
 */
async function takeRequest(conn: Deno.UnixConn, flush: Flush, syncs: Syncs): Promise<void> {
  let buf = new Uint8Array(256);
  let got = 0;
  try {
    for (;;) {
      if (got === buf.length) {
        if (buf.length >= MAX_REQUEST_BYTES) break;
        const more = new Uint8Array(buf.length * 16);
        more.set(buf);
        buf = more;
      }
      const n = await conn.read(buf.subarray(got));
      if (n === null) break;
      got += n;
      const nl = buf.subarray(0, got).indexOf(10);
      if (nl < 0) continue;
      const line = new TextDecoder().decode(buf.subarray(0, nl));
      if (line === FLUSH_REQUEST) return flush.request(conn);
      if (line.startsWith(`${SYNC_REQUEST} `)) {
        return syncs.run(conn, line.slice(SYNC_REQUEST.length + 1));
      }
      break;
    }
  } catch { /* the client went away */ }
  conn.close();
}

/** The syncs clients asked this lento to run, until each has answered. */
class Syncs {
  private running = new Set<Promise<void>>();
  private closed = false;
  constructor(
    private takeSync: LentoOptions["takeSync"],
    private log: (l: string) => void,
  ) {}

  /** Runs the sync `request` asks for and answers on `conn` (see src/cli/delegated_sync.ts). */
  run(conn: Deno.UnixConn, request: string): void {
    const taken = this.take(request);
    const done = (async () => {
      try {
        if ("declined" in taken) {
          this.log(`declined ${taken.declined}: the command runs its sync itself`);
          return await writeLine(conn, SYNC_DECLINED);
        }
        await writeLine(conn, SYNC_STARTED);
        const answer = await taken.run();
        this.log("ran a sync a client asked for");
        await writeLine(conn, answer);
      } catch {
        /* the client went away: the sync itself has run */
      } finally {
        conn.close();
      }
    })();
    this.running.add(done);
    done.finally(() => this.running.delete(done));
  }

  private take(request: string): ReturnType<NonNullable<LentoOptions["takeSync"]>> {
    if (!this.takeSync) return { declined: "a sync: this lento runs none" };
    if (this.closed) return { declined: "a sync: lento is stopping" };
    try {
      return this.takeSync(request);
    } catch (e) {
      return { declined: `a sync (${(e as Error).message})` };
    }
  }

  /** Declines later requests and waits for the syncs under way (a stopping lento lets them finish). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.running]);
  }
}

/** Writes `line` and a newline whole: one write may take only part of a long answer. */
async function writeLine(conn: Deno.UnixConn, line: string): Promise<void> {
  const bytes = new TextEncoder().encode(`${line}\n`);
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** The Presto device if it is there and usable, else fanotify. */
async function openSource(root: string): Promise<EventSource> {
  let presto = "/dev/presto is not there (load presto.ko)";
  try {
    const { openPresto } = await import("./presto.ts");
    const source = openPresto(root);
    if (source) return source;
  } catch (e) {
    presto = `/dev/presto is unusable (${(e as Error).message})`;
  }
  try {
    const { openFanotify } = await import("./fanotify.ts");
    return openFanotify(root);
  } catch (e) {
    throw new NoCaptureSourceError(
      `no change capture for ${root}: ${presto}, and fanotify failed ` +
        `(${(e as Error).message}); 'replicator sync' will scan instead`,
    );
  }
}

async function serve(
  root: string,
  source: EventSource,
  listener: Deno.UnixListener | null,
  opts: LentoOptions,
): Promise<void> {
  const log = opts.log ?? (() => {});
  const flush = new Flush();
  const syncs = new Syncs(opts.takeSync, log);
  const accepting = (async () => {
    try {
      for await (const conn of listener ?? []) void takeRequest(conn, flush, syncs);
    } catch { /* closed */ }
  })();
  const stopped = new Promise<"stop">((ok) => {
    if (opts.signal?.aborted) ok("stop");
    opts.signal?.addEventListener("abort", () => ok("stop"));
  });
  try {
    await recordRetrying(root, null, log, source.name, stopped); // the rescan after arming
    opts.ready?.();
    let pending = source.next();
    for (;;) {
      const first = await Promise.race([pending, stopped, flush.fired]);
      if (first === "stop") return;
      const hints: Hint[] = [];
      if (first !== "flush") {
        if (first.length === 0) return; // the source was closed
        hints.push(...first);
        pending = source.next();
      }
      // Take what else arrives: for BATCH_MS; for a waiting sync, what is queued.
      let until = 0; // the end of a waiting sync's drain, from when it is first seen
      for (;;) {
        if (flush.wanted && until === 0) until = performance.now() + BATCH_MS;
        const ms = flush.wanted ? drainMs(source, until) : BATCH_MS;
        const more = await Promise.race([pending, sleep(ms, "timeout" as const)]);
        if (more === "timeout" && ms === DRAIN_POLL_MS) continue;
        if (more === "timeout" || more.length === 0) break;
        hints.push(...more);
        pending = source.next();
      }
      const waiting = flush.take();
      if (hints.length > 0) await recordRetrying(root, hints, log, source.name, stopped);
      await acknowledge(waiting);
    }
  } finally {
    listener?.close();
    await accepting;
    for (const conn of flush.take()) conn.close(); // unanswered: those syncs scan
    await syncs.close();
    try {
      if (listener && checkMeta(listener.addr.path, "socket")) {
        Deno.removeSync(listener.addr.path);
      }
    } catch { /* a foreign file there now: leave it */ }
  }
}

/** How often a drain for a waiting sync looks at the source again. */
const DRAIN_POLL_MS = 1;

/**
 * How long to wait for the source's pending next() while a sync waits for
 * its flush. Every change made before the request is queued in the kernel
 * already: while the source holds queued events, wait for them (looking again
 * every DRAIN_POLL_MS, as long as the batch lasts); once it holds none, 0
 * still lets a next() that has already settled be taken first.
 */
function drainMs(source: EventSource, until: number): number {
  return source.queued() && performance.now() < until ? DRAIN_POLL_MS : 0;
}

/** Flush requests not yet answered; `fired` resolves when one arrives. */
class Flush {
  private waiting: Deno.UnixConn[] = [];
  fired!: Promise<"flush">;
  private resolve!: () => void;
  constructor() {
    this.reset();
  }
  get wanted(): boolean {
    return this.waiting.length > 0;
  }
  request(conn: Deno.UnixConn): void {
    this.waiting.push(conn);
    this.resolve();
  }
  /** The requests to answer after this round's recording, and re-arms. */
  take(): Deno.UnixConn[] {
    const was = this.waiting;
    if (was.length > 0) this.reset();
    return was;
  }
  private reset(): void {
    this.waiting = [];
    this.fired = new Promise((ok) => (this.resolve = () => ok("flush")));
  }
}

/** record(), waiting while a sync holds the volume (the hints are kept, not lost). */
async function recordRetrying(
  root: string,
  hints: Hint[] | null,
  log: (l: string) => void,
  via: string,
  stopped: Promise<"stop">,
): Promise<void> {
  for (;;) {
    try {
      return record(root, hints, log, via);
    } catch (e) {
      if (!(e instanceof BusyError)) throw e;
    }
    if (await Promise.race([stopped, sleep(100, "timeout" as const)]) === "stop") return;
  }
}

/** Records what `hints` name (null or an overflow: everything), under the volume lock. */
function record(root: string, hints: Hint[] | null, log: (l: string) => void, via: string): void {
  const overflow = hints === null || hints.some((h) => h.kind === "overflow");
  const paths = overflow ? undefined : hints!.flatMap((h) => h.kind === "paths" ? h.paths : []);
  const vol = openReplica(root);
  try {
    const done = capture(vol, paths);
    for (const p of done.problems) log(`problem: ${p}`);
    if (done.recorded > 0 || overflow) {
      log(
        `${via}: ${overflow ? "rescanned" : `${paths!.length} paths`}, recorded ${done.recorded}`,
      );
    }
  } finally {
    vol.close();
  }
}

/** Tells the waiting syncs that everything they asked for is recorded. */
async function acknowledge(waiting: Deno.UnixConn[]): Promise<void> {
  for (const conn of waiting) {
    try {
      await writeLine(conn, FLUSH_DONE);
    } catch { /* the sync gave up waiting; it scans */ }
    conn.close();
  }
}
