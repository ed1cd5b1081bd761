/**
 * Part "lento" of the bench: a sync after a few changes while lento captures
 * on both replicas, against `rsync -a --delete` of the same change, at
 * several tree sizes. Per size (BENCH_LENTO_FILES, default "20000 200000"
 * ["2000 20000" under --quick]): a tree of files of 1–2 KiB, `replicator
 * init` and `clone`, an rsync copy, one no-op sync of each tool without lento
 * (the scan lento saves), then `replicator lento -v -C DIR` started on the
 * source and on the destination and waited for until each has rescanned.
 * Each round (BENCH_LENTO_REPS, 5, after one untimed warm-up round) rewrites
 * BENCH_LENTO_CHANGES (10) files in the source, then times `replicator sync
 * -C DST SRC` (which the destination's lento runs: src/cli/delegated_sync.ts)
 * and `rsync -a --delete --exclude=.replicator SRC/ RSYNC_DST/`, then rewrites
 * other files and times the sync kept in the command (REPLICATOR_SYNC_HERE=1,
 * for information); medians are reported.
 * Both copies are verified against the source at the end; the lentos are
 * stopped with SIGTERM and must exit 0.
 *
 * Targets: rsync/replicator ≥ BENCH_LENTO_SPEEDUP (20) at the largest size,
 * and time(largest)/time(smallest) ≤ BENCH_LENTO_GROWTH (1.2) for the
 * replicator: its work follows the changes, not the tree. Needs root
 * (fanotify; or /dev/presto); BENCH_LENTO=0 skips it, =1 fails if it cannot run.
 *
 * @module
 */

import {
  env,
  envList,
  flush,
  generateTree,
  grid,
  log,
  median,
  noRoomFor,
  notRunning,
  type PartResult,
  q,
  repl,
  Rng,
  SEED,
  sh,
  skip,
  timed,
  type Timing,
  type Tree,
  verdict,
  verify,
  WORK,
} from "./common.ts";

const SIZES = envList("BENCH_LENTO_FILES", q([2000, 20000], [20000, 200000]));
const CHANGES = Math.max(1, env("BENCH_LENTO_CHANGES", 10));
const REPS = Math.max(1, env("BENCH_LENTO_REPS", 5));
const SPEEDUP = env("BENCH_LENTO_SPEEDUP", 20);
const GROWTH = env("BENCH_LENTO_GROWTH", 1.2);
/** How long a lento may take to arm and rescan before the bench gives up on it. */
const READY_S = env("BENCH_LENTO_READY_S", 1800);
const MIN_BYTES = 1024;
const MAX_BYTES = 2048;

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
const rsync = (src: string, dst: string) => [
  "rsync",
  "-a",
  "--delete",
  "--exclude=.replicator",
  `${src}/`,
  `${dst}/`,
];

/** A `replicator lento -v -C DIR` child, its output kept (and drained, so it never blocks). */
class Lento {
  private child: Deno.ChildProcess;
  private out = "";
  private err = "";
  private exited: Deno.CommandStatus | null = null;
  private pumps: Promise<void>[];
  readonly started = performance.now();

  constructor(readonly dir: string) {
    const [cmd, ...args] = repl("lento", "-v", "-C", dir);
    this.child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
    this.child.status.then((s) => (this.exited = s));
    const pump = async (s: ReadableStream<Uint8Array>, to: (t: string) => void) => {
      for await (const t of s.pipeThrough(new TextDecoderStream())) to(t);
    };
    this.pumps = [
      pump(this.child.stdout, (t) => (this.out += t)),
      pump(this.child.stderr, (t) => (this.err += t)),
    ];
  }

  /** Waits until it has armed its event source and rescanned; returns the seconds that took. */
  async ready(): Promise<number> {
    while (!this.out.includes("rescanned")) {
      if (this.exited) {
        throw new Error(`${this.what()} exited (${this.exited.code}) before it was ready`);
      }
      if (performance.now() - this.started > READY_S * 1000) {
        throw new Error(`${this.what()} not ready after ${READY_S} s (BENCH_LENTO_READY_S)`);
      }
      await sleep(20);
    }
    return (performance.now() - this.started) / 1000;
  }

  /** Its peak RSS so far (VmHWM), in MB. */
  peakMB(): number {
    try {
      const m = Deno.readTextFileSync(`/proc/${this.child.pid}/status`).match(/VmHWM:\s+(\d+)/);
      return m ? Number(m[1]) / 1024 : NaN;
    } catch {
      return NaN;
    }
  }

  /** SIGTERM, and it must exit 0. */
  async stop(): Promise<void> {
    if (!this.exited) {
      try {
        this.child.kill("SIGTERM");
      } catch { /* exited meanwhile */ }
    }
    const s = await this.child.status;
    await Promise.all(this.pumps);
    if (s.code !== 0) throw new Error(`${this.what()} exited ${s.code} on SIGTERM`);
  }

  private what(): string {
    const tail = (this.out + this.err).trim().split("\n").slice(-10).join("\n");
    return `replicator lento -C ${this.dir}:\n${tail}\n(lento)`;
  }
}

/** Rewrites CHANGES distinct files of `tree` with new content of 1–2 KiB. */
function change(tree: Tree, round: number): void {
  const rng = new Rng(SEED * 7919 + tree.files + round);
  const picked = new Set<number>();
  const buf = new Uint8Array(MAX_BYTES);
  while (picked.size < Math.min(CHANGES, tree.files)) picked.add(rng.int(0, tree.files - 1));
  for (const i of picked) {
    const b = buf.subarray(0, rng.int(MIN_BYTES, MAX_BYTES));
    rng.fill(b);
    Deno.writeFileSync(`${tree.root}/${tree.pathOf(i)}`, b);
  }
}

interface SizeResult {
  files: number;
  sync: Timing[];
  rsync: Timing[];
  /** The sync run by the command itself (REPLICATOR_SYNC_HERE=1), not by lento. */
  here: Timing[];
  scan: Timing;
  rsyncNoop: Timing;
  ready: number;
  lentoMB: number[];
}

async function oneSize(files: number): Promise<SizeResult> {
  const dir = `${WORK}/lento-${files}`;
  const src = `${dir}/src`, dst = `${dir}/dst`, rdst = `${dir}/dst-rsync`;
  const tree = generateTree(src, files, MIN_BYTES, MAX_BYTES, SEED + files);
  flush();
  const setup = [
    timed(repl("init", src, "--host", "src")),
    timed(repl("clone", src, dst, "--host", "dst")),
    timed(["rsync", "-a", "--exclude=.replicator", `${src}/`, `${rdst}/`]),
  ];
  log(
    `lento ${files}: init, clone, rsync copy: ${setup.map((t) => t.wall.toFixed(1)).join(", ")} s`,
  );
  const scan = timed(repl("sync", "-C", dst, src));
  const rsyncNoop = timed(rsync(src, rdst));
  const lentos = [new Lento(src), new Lento(dst)];
  const r: SizeResult = {
    files,
    sync: [],
    rsync: [],
    here: [],
    scan,
    rsyncNoop,
    ready: 0,
    lentoMB: [],
  };
  let error: unknown = null;
  try {
    r.ready = Math.max(...await Promise.all(lentos.map((l) => l.ready())));
    log(`lento ${files}: both lentos armed and rescanned after ${r.ready.toFixed(1)} s`);
    // Round 0 warms up, untimed; rounds 1..REPS are timed (single rounds swing by up to
    // 2x here: more of them make a steadier median).
    for (let round = 0; round <= REPS; round++) {
      change(tree, round);
      const sync = timed(repl("sync", "-C", dst, src));
      await sleep(200); // the destination's lento records what the sync installed
      const copy = timed(rsync(src, rdst));
      // The same, with the sync kept in the command (not run by the destination's lento).
      change(tree, round + 1000);
      const here = timed(["env", "REPLICATOR_SYNC_HERE=1", ...repl("sync", "-C", dst, src)]);
      await sleep(200);
      sh(rsync(src, rdst)); // untimed: each timed rsync copies one round's changes only
      if (round > 0) {
        r.sync.push(sync);
        r.rsync.push(copy);
        r.here.push(here);
      }
      log(
        `lento ${files} ${round > 0 ? `round ${round}` : "warm-up round"}: replicator ` +
          `${sync.wall.toFixed(3)} s, rsync ${copy.wall.toFixed(3)} s, ` +
          `replicator with the sync in the command ${here.wall.toFixed(3)} s`,
      );
    }
    r.lentoMB = lentos.map((l) => l.peakMB());
  } catch (e) {
    error = e;
  }
  for (const l of lentos) {
    try {
      await l.stop();
    } catch (e) {
      error ??= e; // else the first error is the one to report
    }
  }
  if (error) throw error;
  verify(`lento ${files}: replicator's copy`, dst, src);
  verify(`lento ${files}: rsync's copy`, rdst, src);
  return r;
}

/** Part "lento": needs root (fanotify). */
export async function lentoPart(): Promise<PartResult> {
  const why = notRunning("BENCH_LENTO", Deno.uid() === 0, "the lento part needs root (fanotify)");
  if (why) return skip("lento", why);
  const results: SizeResult[] = [];
  const notes: string[] = [];
  for (const files of SIZES) {
    const why = noRoomFor(3, 2, files, MAX_BYTES);
    if (why) {
      notes.push(`${files} files skipped: ${why}`);
      continue;
    }
    results.push(await oneSize(files));
  }
  console.log(
    `\n== lento: sync after ${CHANGES} changed files, lento capturing on both replicas, vs rsync -a --delete`,
  );
  console.log(
    `files of 1-2 KiB; median of ${REPS} rounds after a warm-up round; 'sync' before each timed run`,
  );
  for (const n of notes) console.log(n);
  if (results.length === 0) return { name: "lento", skipped: notes.join("; "), miss: 0 };
  const lines = [[
    "files",
    "replicator s",
    "rsync s",
    "rsync/repl",
    "sync in command s",
    "repl RSS MB",
    "lento RSS MB src/dst",
    "lentos ready s",
    "no lento: repl scan s",
    "rsync no-op s",
  ]];
  for (const r of results) {
    const [s, t] = [median(r.sync.map((x) => x.wall)), median(r.rsync.map((x) => x.wall))];
    lines.push([
      String(r.files),
      s.toFixed(3),
      t.toFixed(3),
      `${(t / s).toFixed(1)}x`,
      median(r.here.map((x) => x.wall)).toFixed(3),
      (Math.max(...r.sync.map((x) => x.rssKiB)) / 1024).toFixed(1),
      r.lentoMB.map((m) => m.toFixed(0)).join("/"),
      r.ready.toFixed(1),
      r.scan.wall.toFixed(3),
      r.rsyncNoop.wall.toFixed(3),
    ]);
  }
  console.log(grid(lines));
  let miss = 0;
  const big = results.at(-1)!;
  const med = (r: SizeResult) => median(r.sync.map((x) => x.wall));
  const speedup = median(big.rsync.map((x) => x.wall)) / med(big);
  miss += speedup >= SPEEDUP ? 0 : 1;
  console.log(
    `rsync/replicator at ${big.files} files: ${speedup.toFixed(1)}x (target >= ${SPEEDUP}x): ${
      verdict(speedup >= SPEEDUP)
    }`,
  );
  if (results.length > 1) {
    const small = results[0];
    const growth = med(big) / med(small);
    miss += growth <= GROWTH ? 0 : 1;
    console.log(
      `replicator time(${big.files})/time(${small.files}) = ${
        growth.toFixed(2)
      } (target <= ${GROWTH}): ${verdict(growth <= GROWTH)}`,
    );
  }
  console.log(`both copies verified equal to the source after the last round`);
  return {
    name: "lento",
    skipped: null,
    detail: results.map((r) => r.files).join(", ") + " files" +
      (notes.length ? `; ${notes.length} size(s) skipped` : ""),
    miss,
  };
}

if (import.meta.main) {
  console.error(
    "bench/lento.ts is now a part of the bench: run `bash bench/run.sh` (all parts) or\n" +
      "`BENCH_PARTS=lento BENCH_LENTO_FILES=200000 bash bench/run.sh` (bench/README.md)",
  );
  Deno.exit(2);
}
