/**
 * What every part of the bench shares: the configuration (--quick, the work
 * directory, the measured revision), running a command under GNU time (wall
 * time and peak RSS), checking that a copy equals its source, generating
 * trees, checking free space, and the tables with their PASS/MISS verdicts.
 *
 * @module
 */

import { V8_FLAGS } from "../src/memory.ts";

// ---------------------------------------------------------------- configuration

/** `--quick` (or BENCH_QUICK=1): every part at a tiny size; verdicts never fail the run. */
export const QUICK = Deno.args.includes("--quick") || Deno.env.get("BENCH_QUICK") === "1";

/** The quick default or the full one. */
export const q = <T>(quick: T, full: T): T => QUICK ? quick : full;

/** A non-negative number from the environment, else `d`. */
export function env(k: string, d: number): number {
  const v = Deno.env.get(k);
  if (v === undefined || v === "") return d;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${k}=${v} is not a number`);
  return n;
}

/** A list of positive integers ("20000 200000" or "20000,200000") from the environment. */
export function envList(k: string, d: number[]): number[] {
  const v = Deno.env.get(k);
  if (v === undefined || v.trim() === "") return d;
  const ns = v.trim().split(/[\s,]+/).map(Number);
  if (ns.some((n) => !Number.isInteger(n) || n <= 0)) {
    throw new Error(`${k}=${v} is not a list of positive integers`);
  }
  return ns;
}

export const KEEP = Deno.env.get("BENCH_KEEP") === "1";
export const STRICT = Deno.env.get("BENCH_STRICT") === "1";
/** Progress lines on stderr: on by default, off under --quick (CI wants the tables only). */
export const VERBOSE = Deno.env.get("BENCH_VERBOSE") === "1" ||
  (!QUICK && Deno.env.get("BENCH_VERBOSE") !== "0");
export const SEED = env("BENCH_SEED", 42);
export const MAX_RATIO = env("BENCH_MAX_RATIO", 1.5);
export const MAX_RSS_MB = env("BENCH_MAX_RSS_MB", 300);

export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const DENO = Deno.env.get("DENO") ?? `${REPO}/node_modules/.bin/deno`;
export const PARENT = Deno.env.get("BENCH_DIR") || Deno.env.get("TMPDIR") || "/tmp";
/**
 * A new work directory per run, and nothing deleted until the run is over:
 * on ext4, creating thousands of files within minutes of deleting thousands
 * is several times slower (inode allocation skips "recently deleted" inodes,
 * ext4's recently_deleted()), which would make later runs slower.
 */
export const WORK = `${PARENT}/replicator-bench-${
  new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "")
}`;
/** Which replicator to measure: a git revision (default HEAD), exported to WORK, or "worktree". */
export const REV = Deno.env.get("BENCH_REV") || "HEAD";
const CODE = REV === "worktree" ? REPO : `${WORK}/replicator`;
/** bench/floor_copy.ts of the measured revision: the least a copy with its guarantees does. */
export const FLOOR_COPY = `${CODE}/bench/floor_copy.ts`;
/** The measured revision's source entry point (profiles are taken on it, for line numbers). */
export const MOD = `${CODE}/mod.ts`;
/** What `./replicator` runs: mod.ts bundled into one file (made by {@link buildEntry}). */
export const ENTRY = `${CODE}/dist/replicator.js`;

/** The replicator as a user runs it (`./replicator` without its shell: the bundle, its V8 flags). */
export const repl = (...args: string[]) => [
  DENO,
  "run",
  "-A",
  "--quiet",
  `--v8-flags=${V8_FLAGS}`,
  ENTRY,
  ...args,
];

/** Makes {@link ENTRY} as `./replicator` does (it bundles mod.ts when the bundle is stale). */
export function buildEntry(): void {
  sh([`${CODE}/replicator`, "--help"]);
  try {
    Deno.statSync(ENTRY);
  } catch {
    throw new Error(`${CODE}/replicator did not make ${ENTRY}`);
  }
}

/**
 * Why a part that needs something this host may lack does not run, or null
 * if it runs. Its knob: "0" skips it, "1" fails the bench if it cannot run;
 * unset, it runs where it can, and must under --quick as root or in CI (CI set).
 */
export function notRunning(knob: string, can: boolean, need: string): string | null {
  const v = Deno.env.get(knob) ?? "";
  if (v === "0") return `${knob}=0`;
  if (can) return null;
  const ci = Deno.env.get("CI") ?? "";
  if (v === "1") throw new Error(`${need} (${knob}=1)`);
  if (QUICK && (Deno.uid() === 0 || (ci !== "" && ci !== "0" && ci !== "false"))) {
    throw new Error(`${need} (required under --quick as root or in CI; ${knob}=0 skips it)`);
  }
  return `${need} (${knob}=0 skips it without this note)`;
}

// ---------------------------------------------------------------- PRNG

/** xoshiro128** seeded through splitmix32: the same bytes on every run. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  constructor(seed: number) {
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next() | 1;
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return r;
  }
  int(lo: number, hi: number): number {
    return lo + (this.u32() % (hi - lo + 1));
  }
  fill(b: Uint8Array): void {
    const words = new Uint32Array(b.buffer, b.byteOffset, b.byteLength >>> 2);
    for (let i = 0; i < words.length; i++) words[i] = this.u32();
    for (let i = words.length * 4; i < b.length; i++) b[i] = this.u32() & 0xff;
  }
}
function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

// ---------------------------------------------------------------- helpers

/** Runs argv to completion; throws with its output on a nonzero exit unless allowFail. */
export function sh(
  argv: string[],
  opts: { allowFail?: boolean } = {},
): { code: number; out: string; err: string } {
  const r = new Deno.Command(argv[0], { args: argv.slice(1), stdout: "piped", stderr: "piped" })
    .outputSync();
  const out = new TextDecoder().decode(r.stdout);
  const err = new TextDecoder().decode(r.stderr);
  if (r.code !== 0 && !opts.allowFail) {
    throw new Error(`command failed (exit ${r.code}): ${argv.join(" ")}\n${out}${err}`);
  }
  return { code: r.code, out, err };
}

export function rmrf(p: string): void {
  try {
    Deno.removeSync(p, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

export function readIfExists(p: string): string {
  try {
    return Deno.readTextFileSync(p);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "";
    throw e;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A progress line on stderr (not under --quick unless BENCH_VERBOSE=1). */
export function log(msg: string): void {
  if (VERBOSE) console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

/** Flush dirty pages so no run pays for the previous one's writeback. */
export function flush(): void {
  sh(["sync"]);
}

export function loadavg(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

export const verdict = (ok: boolean) => ok ? "PASS" : "MISS";

/** One measured run. */
export interface Timing {
  wall: number; // seconds, harness monotonic clock
  timeWall: number; // seconds, GNU time %e
  rssKiB: number; // GNU time %M
  stdout: string;
  stderr: string;
  /** Over ssh: the server side, from GNU time on the remote command. */
  server?: ServerTiming;
}

export interface ServerTiming {
  wall: number; // seconds, GNU time %e (the longest connection)
  rssKiB: number; // GNU time %M (the largest of all connections)
  connections: number; // server processes started for this run
}

/**
 * Runs argv under /usr/bin/time -f '%e %M' (after sync(1), unless
 * `noFlush`); fails loudly on an exit status not in `okCodes`.
 */
export function timed(
  argv: string[],
  opts: { noFlush?: boolean; okCodes?: number[] } = {},
): Timing {
  if (!opts.noFlush) flush();
  const tf = Deno.makeTempFileSync({ dir: WORK, prefix: "time-" });
  const t0 = performance.now();
  const r = new Deno.Command("/usr/bin/time", {
    args: ["-f", "%e %M", "-o", tf, ...argv],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const wall = (performance.now() - t0) / 1000;
  const stdout = new TextDecoder().decode(r.stdout);
  const stderr = new TextDecoder().decode(r.stderr);
  const timeOut = Deno.readTextFileSync(tf).trim().split("\n").pop()!;
  Deno.removeSync(tf);
  if (!(opts.okCodes ?? [0]).includes(r.code)) {
    throw new Error(`FAILED (exit ${r.code}): ${argv.join(" ")}\n${stdout}${stderr}`);
  }
  const [e, m] = timeOut.split(/\s+/).map(Number);
  return { wall, timeWall: e, rssKiB: m, stdout, stderr };
}

// ---------------------------------------------------------------- verification

/** Sorted listing: files with size, mode, ns mtime; dirs and symlinks with mode/target. */
function listing(dir: string): string[] {
  const r = sh([
    "find",
    dir,
    "-mindepth",
    "1",
    "(",
    "-path",
    `${dir}/.replicator`,
    "-prune",
    ")",
    "-o",
    "(",
    "-type",
    "d",
    "-printf",
    "%P d %m\\n",
    ")",
    "-o",
    "(",
    "-type",
    "l",
    "-printf",
    "%P l %l\\n",
    ")",
    "-o",
    "-printf",
    "%P %y %s %m %T@\\n",
  ]);
  return r.out.split("\n").filter((l) => l !== "").sort();
}

/** Throws unless `dst` equals `src` (metadata listing, then `diff -r`), .replicator/ aside. */
export function verify(label: string, dst: string, src: string): void {
  const a = listing(src);
  const b = listing(dst);
  const bad: string[] = [];
  const sa = new Set(a), sb = new Set(b);
  for (const l of a) if (!sb.has(l)) bad.push(`  only in source:      ${l}`);
  for (const l of b) if (!sa.has(l)) bad.push(`  only in destination: ${l}`);
  if (bad.length > 0) {
    throw new Error(
      `VERIFY FAILED (${label}): ${dst} differs from ${src} (${bad.length} lines)\n${
        bad.slice(0, 20).join("\n")
      }`,
    );
  }
  const d = sh(["diff", "-r", "-q", "--no-dereference", "--exclude=.replicator", src, dst], {
    allowFail: true,
  });
  if (d.code !== 0) {
    throw new Error(
      `VERIFY FAILED (${label}): contents differ\n${
        (d.out + d.err).split("\n").slice(0, 20).join("\n")
      }`,
    );
  }
}

// ---------------------------------------------------------------- trees

/** Files per leaf directory of a generated tree (and leaves per top directory stay below it). */
const PER_DIR = 500;

/** A generated tree of `files` files: file i is at `${root}/${pathOf(i)}`. */
export interface Tree {
  root: string;
  files: number;
  pathOf(i: number): string;
}

/** Where file i of `files` lives: two levels, d<a>/e<b>/f<i>, at most PER_DIR entries a directory. */
function layout(files: number): (i: number) => string {
  const leaves = Math.max(1, Math.ceil(files / PER_DIR));
  const top = Math.ceil(Math.sqrt(leaves));
  return (i) => {
    const leaf = i % leaves;
    return `d${leaf % top}/e${Math.floor(leaf / top)}/f${i}`;
  };
}

/** Writes `files` files of `minBytes`–`maxBytes` pseudo-random bytes under `root`. */
export function generateTree(
  root: string,
  files: number,
  minBytes: number,
  maxBytes: number,
  seed: number,
): Tree {
  const pathOf = layout(files);
  const rng = new Rng(seed);
  const buf = new Uint8Array(maxBytes);
  const made = new Set<string>();
  for (let i = 0; i < files; i++) {
    const p = `${root}/${pathOf(i)}`;
    const dir = p.slice(0, p.lastIndexOf("/"));
    if (!made.has(dir)) {
      Deno.mkdirSync(dir, { recursive: true });
      made.add(dir);
    }
    const b = buf.subarray(0, rng.int(minBytes, maxBytes));
    rng.fill(b);
    Deno.writeFileSync(p, b);
  }
  log(`generated ${root}: ${files} files of ${minBytes}-${maxBytes} bytes in ${made.size} dirs`);
  return { root, files, pathOf };
}

/**
 * Why `copies` copies of a tree of `files` files of up to `fileBytes` bytes
 * (plus a replicator's metadata in `replicas` of them) would not fit in
 * PARENT, or null if they fit with 1 GiB and 5 % to spare.
 */
export function noRoomFor(
  copies: number,
  replicas: number,
  files: number,
  fileBytes: number,
): string | null {
  const [bsize, bavail, favail] = sh(["stat", "-f", "-c", "%S %a %d", PARENT]).out.trim()
    .split(" ").map(Number);
  const block = bsize || 4096;
  const dirs = Math.ceil(files / PER_DIR) + 1;
  const perCopy = files * Math.ceil(fileBytes / block) * block + dirs * block;
  const meta = 1024; // bytes of .replicator/ per file and replica, generously
  const need = (copies * perCopy + replicas * files * meta) * 1.05 + 2 ** 30;
  const have = bavail * block;
  const inodes = copies * (files + dirs) * 1.05;
  const gib = (x: number) => (x / 2 ** 30).toFixed(1);
  if (have < need) {
    return `needs ~${gib(need)} GiB free in ${PARENT} (${copies} copies; ${block}-byte blocks), ` +
      `there are ${gib(have)} GiB`;
  }
  if (favail < inodes) {
    return `needs ~${Math.ceil(inodes)} free inodes in ${PARENT}, there are ${favail}`;
  }
  return null;
}

// ---------------------------------------------------------------- report

/** A line of a table: the replicator's runs against rsync's. */
export interface Row {
  name: string;
  repl: Timing[];
  rsync: Timing[];
  /** Target for the ratio replicator/rsync (default BENCH_MAX_RATIO). */
  maxRatio?: number;
  /** The ratio is for information: no verdict on it. */
  info?: boolean;
}

/** A row's medians, peaks and verdicts; RSS counts both ends of a run over ssh. */
export function judge(r: Row) {
  const maxRatio = r.maxRatio ?? MAX_RATIO;
  const peak = (ts: Timing[], f: (t: Timing) => number | undefined) =>
    ts.length > 0 && ts.every((t) => f(t) !== undefined)
      ? Math.max(...ts.map(f) as number[]) / 1024
      : NaN;
  const rw = median(r.repl.map((t) => t.wall));
  const rr = peak(r.repl, (t) => t.rssKiB);
  const rrServer = peak(r.repl, (t) => t.server?.rssKiB);
  const hasRsync = r.rsync.length > 0;
  const sw = hasRsync ? median(r.rsync.map((t) => t.wall)) : NaN;
  const ratio = rw / sw;
  const judged = hasRsync && !r.info;
  const ratioOk = judged ? ratio <= maxRatio : true;
  const rssOk = rr < MAX_RSS_MB && !(rrServer >= MAX_RSS_MB);
  return {
    maxRatio,
    rw,
    rr,
    rrServer,
    hasRsync,
    judged,
    sw,
    sr: peak(r.rsync, (t) => t.rssKiB),
    srServer: peak(r.rsync, (t) => t.server?.rssKiB),
    ratio,
    ratioOk,
    rssOk,
  };
}

/** Aligned columns: the first left-aligned, the others right-aligned. */
export function grid(lines: string[][]): string {
  const w = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  const fmt = (l: string[]) =>
    l.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
  const out = [fmt(lines[0]), w.map((n) => "-".repeat(n)).join("  "), ...lines.slice(1).map(fmt)];
  return out.join("\n");
}

export const mb = (x: number) => Number.isNaN(x) ? "-" : x.toFixed(1);

/** The replicator against rsync, one row per case, with ratio and RSS verdicts. */
export function table(rows: Row[]): { text: string; miss: number } {
  const head = [
    "case",
    "replicator s",
    "rsync s",
    "ratio",
    "repl RSS MB",
    "rsync RSS MB",
    "ratio<=" + MAX_RATIO,
    "RSS<" + MAX_RSS_MB,
    "verdict",
  ];
  const lines: string[][] = [head];
  let miss = 0;
  for (const r of rows) {
    const j = judge(r);
    if (!j.ratioOk || !j.rssOk) miss++;
    lines.push([
      r.name,
      j.rw.toFixed(3),
      j.hasRsync ? j.sw.toFixed(3) : "-",
      j.hasRsync ? j.ratio.toFixed(2) : "n/a",
      j.rr.toFixed(1),
      mb(j.sr),
      j.judged ? verdict(j.ratioOk) : j.hasRsync ? "info" : "n/a",
      verdict(j.rssOk),
      verdict(j.ratioOk && j.rssOk),
    ]);
  }
  return { text: grid(lines), miss };
}

/** wall/peak RSS of every run; over ssh also the server's peak (and its count if not one). */
export function raw(rows: Row[]): string {
  const one = (t: Timing) => {
    let s = `${t.wall.toFixed(3)}s/${(t.rssKiB / 1024).toFixed(0)}MB`;
    if (t.server) {
      s += `+srv${(t.server.rssKiB / 1024).toFixed(0)}MB`;
      if (t.server.connections !== 1) s += `(${t.server.connections} connections)`;
    }
    return s;
  };
  const out: string[] = [];
  for (const r of rows) {
    const f = (ts: Timing[]) => ts.map(one).join(" ");
    out.push(
      `  ${r.name}: replicator [${f(r.repl)}]` + (r.rsync.length ? ` rsync [${f(r.rsync)}]` : ""),
    );
  }
  return out.join("\n");
}

/** How a part went, for the run's last line. */
export interface PartResult {
  name: string;
  /** Why it did not run; null if it ran. */
  skipped: string | null;
  /** What ran, e.g. "2000, 20000 files" (or which sizes were skipped). */
  detail?: string;
  miss: number;
}

/** A part that did not run, with a one-line reason (printed now). */
export function skip(name: string, why: string): PartResult {
  console.log(`\n== ${name}: skipped: ${why}`);
  return { name, skipped: why, miss: 0 };
}

// ---------------------------------------------------------------- set-up

/** Exports REV into WORK (unless "worktree"); returns the commit and a note on uncommitted changes. */
export function checkout(): { commit: string; dirty: string } {
  if (REV === "worktree") {
    const commit =
      sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], { allowFail: true }).out.trim() +
      " worktree";
    const st = sh(["git", "-C", REPO, "status", "--porcelain", "src", "mod.ts"], {
      allowFail: true,
    });
    return { commit, dirty: st.out.trim() ? " (with uncommitted changes in src)" : "" };
  }
  // a fixed snapshot: others may be editing the working tree while this runs
  const commit = sh(["git", "-C", REPO, "rev-parse", "--short", REV]).out.trim();
  Deno.mkdirSync(CODE, { recursive: true });
  sh([
    "bash",
    "-o",
    "pipefail",
    "-c",
    `git -C "${REPO}" archive "${REV}" mod.ts src deno.json replicator bench/floor_copy.ts | tar -x -C "${CODE}"`,
  ]);
  Deno.symlinkSync(`${REPO}/node_modules`, `${CODE}/node_modules`); // the wrapper's deno
  return { commit, dirty: "" };
}
