/**
 * Lento: the capture daemon of one volume. It arms an event source (the
 * Presto device, else fanotify), rescans once (so nothing changed while it
 * was down is missed), then turns each batch of events into KML records with
 * a scoped scan, exactly as scan capture would record them. An overflow
 * means a full rescan.
 *
 * While it runs it holds `.replicator/lento.pid` (flock) with its pid in it;
 * `sync` sends it SIGUSR2 (not SIGUSR1: that one opens V8's inspector) and waits for `.replicator/lento.ack` to change,
 * after which everything written before the signal is in the KML and sync
 * need not scan (see lento_client.ts).
 *
 * @module
 */

import type { EventSource, Hint } from "./events.ts";
import { capture } from "./capture.ts";
import { findRoot } from "../volume/volume.ts";
import { openReplica } from "../apply/open.ts";
import { layoutOf } from "../volume/layout.ts";
import { tryLock } from "../fs/libc.ts";
import { BusyError, ReplicatorError } from "../errors.ts";

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
}

/** Collects more events for this long after the first of a batch. */
const BATCH_MS = 20;
/** A drain after SIGUSR2 ends when the source has been quiet this long. */
const QUIET_MS = 5;

/** Runs lento for the volume containing `dir` until `opts.signal` aborts. */
export async function runLento(dir: string, opts: LentoOptions = {}): Promise<void> {
  const root = findRoot(dir);
  const layout = layoutOf(root);
  const release = tryLock(layout.lentoPid);
  if (!release) throw new BusyError(`${root} (lento already runs for it)`);
  try {
    Deno.writeTextFileSync(layout.lentoPid, `${Deno.pid}\n`);
    const source = opts.source ?? await openSource(root);
    try {
      await serve(root, source, opts);
    } finally {
      source.close();
    }
  } finally {
    release();
  }
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

async function serve(root: string, source: EventSource, opts: LentoOptions): Promise<void> {
  const log = opts.log ?? (() => {});
  const flush = new Signal();
  const onFlush = () => flush.fire();
  Deno.addSignalListener("SIGUSR2", onFlush);
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
      // Take what else arrives: for BATCH_MS, or until quiet when a sync is waiting.
      for (;;) {
        const more = await Promise.race([pending, sleep(flush.wanted ? QUIET_MS : BATCH_MS)]);
        if (more === "timeout" || more.length === 0) break;
        hints.push(...more);
        pending = source.next();
      }
      const flushing = flush.take();
      if (hints.length > 0) await recordRetrying(root, hints, log, source.name, stopped);
      if (flushing) acknowledge(root);
    }
  } finally {
    Deno.removeSignalListener("SIGUSR2", onFlush);
  }
}

/** A SIGUSR2 seen and not yet answered; `fired` resolves when one arrives. */
class Signal {
  wanted = false;
  fired!: Promise<"flush">;
  private resolve!: () => void;
  constructor() {
    this.reset();
  }
  fire(): void {
    this.wanted = true;
    this.resolve();
  }
  /** Returns whether a flush was wanted, and re-arms. */
  take(): boolean {
    const was = this.wanted;
    if (was) this.reset();
    return was;
  }
  private reset(): void {
    this.wanted = false;
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
    if (await Promise.race([stopped, sleep(100)]) === "stop") return;
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

/** Tells a waiting sync that everything signalled for is recorded. */
function acknowledge(root: string): void {
  const ack = layoutOf(root).lentoAck;
  const n = readCounter(ack) + 1;
  Deno.writeTextFileSync(`${ack}.tmp`, `${n}\n`);
  Deno.renameSync(`${ack}.tmp`, ack);
}

/** The acknowledgement counter in `path` (0 if absent). */
export function readCounter(path: string): number {
  try {
    return Number(Deno.readTextFileSync(path).trim()) || 0;
  } catch {
    return 0;
  }
}

function sleep(ms: number): Promise<"timeout"> {
  return new Promise((ok) => setTimeout(() => ok("timeout"), ms));
}
