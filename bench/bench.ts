/**
 * Benchmark: replicator vs `rsync -a`, local directory to directory.
 *
 * Run through bench/run.sh (which installs rsync and GNU time if missing).
 * Cases: init (setup, timed on its own), initial copy (clone vs rsync),
 * no-op sync, incremental sync (10 modified, 2 renamed, 2 deleted files).
 * Every timing is repeated BENCH_REPS times (default 3) and the median is
 * reported; every run is followed by a check that the destination equals
 * the source (metadata listing + `diff -r`), which fails the bench loudly.
 *
 * Environment (all optional):
 *   BENCH_DIR       parent of the work directory (default $TMPDIR or /tmp)
 *   BENCH_FILES     number of small files (default 20000)
 *   BENCH_MIN_KIB / BENCH_MAX_KIB   small file size range (default 1..8 KiB)
 *   BENCH_BIG       number of big files (default 20)
 *   BENCH_BIG_MIB   size of a big file (default 8 MiB)
 *   BENCH_REPS      repetitions per timing (default 3)
 *   BENCH_SEED      PRNG seed (default 42)
 *   BENCH_PROFILE   1: after the timings, run each replicator case once more
 *                   under --cpu-prof and print where the time goes
 *   BENCH_KEEP      1: keep the work directory
 *   BENCH_STRICT    1: exit 1 if any line is a MISS
 *   BENCH_MAX_RATIO (default 1.5), BENCH_MAX_RSS_MB (default 300): targets
 *   BENCH_SSH       0: skip the part over ssh; 1: fail if it cannot run
 *                   (default: run it where sshd can be started, as root)
 *   BENCH_SSH_COPY_RATIO  target for the initial copy over ssh (default 1.25)
 *   BENCH_HUGE_GIB  N > 0: also clone a tree of one N GiB file over ssh
 *                   (and rsync it), reporting both ends' peak RSS
 *
 * Over ssh (second table): a throwaway sshd on 127.0.0.1 (tools/sshd.ts);
 * the replicator clones and syncs from ssh://root@127.0.0.1:PORT/…/src, rsync
 * pulls with `-e` set to the same ssh command. Both servers run under GNU
 * time (the --remote-cmd wrapper, --rsync-path), so both ends' peak RSS is
 * reported.
 *
 * @module
 */

import { summarize } from "./profsum.ts";
import { haveSshd, type Sshd, startSshd } from "../tools/sshd.ts";

const env = (k: string, d: number) => {
  const v = Deno.env.get(k);
  if (v === undefined || v === "") return d;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${k}=${v} is not a number`);
  return n;
};

const FILES = env("BENCH_FILES", 20000);
const MIN_KIB = env("BENCH_MIN_KIB", 1);
const MAX_KIB = env("BENCH_MAX_KIB", 8);
const BIG = env("BENCH_BIG", 20);
const BIG_MIB = env("BENCH_BIG_MIB", 8);
const REPS = Math.max(1, env("BENCH_REPS", 3));
const SEED = env("BENCH_SEED", 42);
const MAX_RATIO = env("BENCH_MAX_RATIO", 1.5);
const MAX_RSS_MB = env("BENCH_MAX_RSS_MB", 300);
const PROFILE = Deno.env.get("BENCH_PROFILE") === "1";
const KEEP = Deno.env.get("BENCH_KEEP") === "1";
const STRICT = Deno.env.get("BENCH_STRICT") === "1";
const SSH = Deno.env.get("BENCH_SSH") ?? "";
const SSH_COPY_RATIO = env("BENCH_SSH_COPY_RATIO", 1.25);
const HUGE_GIB = env("BENCH_HUGE_GIB", 0);

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const DENO = Deno.env.get("DENO") ?? `${REPO}/node_modules/.bin/deno`;
const PARENT = Deno.env.get("BENCH_DIR") || Deno.env.get("TMPDIR") || "/tmp";
/**
 * A new work directory per run, and nothing deleted until the run is over:
 * on ext4, creating thousands of files within minutes of deleting thousands
 * is several times slower (inode allocation skips "recently deleted" inodes,
 * ext4's recently_deleted()), which would make later repetitions slower.
 */
const WORK = `${PARENT}/replicator-bench-${
  new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "")
}`;
/** Which replicator to measure: a git revision (default HEAD), exported to WORK, or "worktree". */
const REV = Deno.env.get("BENCH_REV") || "HEAD";
const CODE = REV === "worktree" ? REPO : `${WORK}/replicator`;
const MOD = `${CODE}/mod.ts`;
const SRC = `${WORK}/src`;
const HUGE = `${WORK}/huge-src`;
const PROF = `${WORK}/prof`;
/** GNU time's output for the server side of a run over ssh (appended to by each connection). */
const SERVER_TIME = `${WORK}/ssh-server-time`;
const SERVER_TIME_FMT = "%e %M";

// ---------------------------------------------------------------- PRNG

/** xorshift128+ style 32-bit generator (deterministic across runs). */
class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  constructor(seed: number) {
    // splitmix32 to spread the seed
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
  /** xoshiro128** */
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

function sh(
  argv: string[],
  opts: { allowFail?: boolean; quiet?: boolean } = {},
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

function rmrf(p: string): void {
  try {
    Deno.removeSync(p, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function log(msg: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

/** Flush dirty pages so no run pays for the previous one's writeback. */
function flush(): void {
  sh(["sync"]);
}

interface Timing {
  wall: number; // seconds, harness monotonic clock
  timeWall: number; // seconds, GNU time %e
  rssKiB: number; // GNU time %M
  stdout: string;
  stderr: string;
  /** Over ssh: the server side, from GNU time on the remote command. */
  server?: ServerTiming;
}

interface ServerTiming {
  wall: number; // seconds, GNU time %e (the longest connection)
  rssKiB: number; // GNU time %M (the largest of all connections)
  connections: number; // server processes started for this run
}

/** Runs argv under /usr/bin/time -f '%e %M'; fails loudly on a nonzero exit. */
function timed(argv: string[], okCodes = [0]): Timing {
  flush();
  const tf = Deno.makeTempFileSync({ dir: WORK, prefix: "time-" });
  const t0 = performance.now();
  const r = new Deno.Command("/usr/bin/time", {
    args: ["-f", "%e %M", "-o", tf, ...argv],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const wall = (performance.now() - t0) / 1000;
  const stdout = new TextDecoder().decode(r.stdout);
  const stderr = new TextDecoder().decode(r.stderr);
  const timeOut = Deno.readTextFileSync(tf).trim().split("\n").pop()!;
  Deno.removeSync(tf);
  if (!okCodes.includes(r.code)) {
    throw new Error(`FAILED (exit ${r.code}): ${argv.join(" ")}\n${stdout}${stderr}`);
  }
  const [e, m] = timeOut.split(/\s+/).map(Number);
  return { wall, timeWall: e, rssKiB: m, stdout, stderr };
}

/** timed(), for a run over ssh: also reads what GNU time wrote on the server side. */
function timedSsh(argv: string[]): Timing {
  rmrf(SERVER_TIME);
  const t = timed(argv);
  t.server = serverTiming();
  return t;
}

/**
 * The server's GNU time lines. ssh ends after its remote command, so they
 * are normally there when the client is; a client that does not wait for
 * ssh to end gets a few seconds' grace.
 */
function serverTiming(): ServerTiming {
  for (let i = 0; i < 100; i++) {
    const lines = readIfExists(SERVER_TIME).split("\n")
      .map((l) => l.match(/^(\d+(?:\.\d+)?) (\d+)$/)).filter((m) => m !== null);
    if (lines.length > 0) {
      return {
        wall: Math.max(...lines.map((m) => Number(m[1]))),
        rssKiB: Math.max(...lines.map((m) => Number(m[2]))),
        connections: lines.length,
      };
    }
    sh(["sleep", "0.05"]);
  }
  throw new Error(`no server timing in ${SERVER_TIME}: did the remote command run?`);
}

function readIfExists(p: string): string {
  try {
    return Deno.readTextFileSync(p);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "";
    throw e;
  }
}

const repl = (...args: string[]) => [DENO, "run", "-A", MOD, ...args];
/** `rsync -a` (initial copy); syncs add --delete, or deletions would never reach the copy. */
const rsync = (from: string, to: string, del = true) => [
  "rsync",
  "-a",
  ...(del ? ["--delete"] : []),
  "--exclude=.replicator",
  `${from}/`,
  `${to}/`,
];

// ---------------------------------------------------------------- tree

const smallFiles: string[] = []; // volume-relative
const bigFiles: string[] = [];

function fanout(): number {
  // three levels of directories, ~40 files per leaf directory
  return Math.max(2, Math.ceil(Math.cbrt(FILES / 40)));
}

function generate(): void {
  const rng = new Rng(SEED);
  const f = fanout();
  const leaves: string[] = [];
  for (let a = 0; a < f; a++) {
    for (let b = 0; b < f; b++) {
      for (let c = 0; c < f; c++) leaves.push(`d${a}/d${b}/d${c}`);
    }
  }
  for (const l of leaves) Deno.mkdirSync(`${SRC}/${l}`, { recursive: true });
  const buf = new Uint8Array(Math.max(MAX_KIB * 1024, 1 << 20));
  let bytes = 0;
  for (let i = 0; i < FILES; i++) {
    const p = `${leaves[i % leaves.length]}/f${String(i).padStart(6, "0")}.bin`;
    const size = rng.int(MIN_KIB * 1024, MAX_KIB * 1024);
    const b = buf.subarray(0, size);
    rng.fill(b);
    Deno.writeFileSync(`${SRC}/${p}`, b);
    smallFiles.push(p);
    bytes += size;
  }
  if (BIG > 0) Deno.mkdirSync(`${SRC}/big`);
  for (let i = 0; i < BIG; i++) {
    const p = `big/big${String(i).padStart(3, "0")}.bin`;
    const fh = Deno.openSync(`${SRC}/${p}`, { write: true, createNew: true });
    let left = BIG_MIB << 20;
    while (left > 0) {
      const n = Math.min(left, buf.length);
      rng.fill(buf.subarray(0, n));
      let w = 0;
      while (w < n) w += fh.writeSync(buf.subarray(w, n));
      left -= n;
      bytes += n;
    }
    fh.close();
    bigFiles.push(p);
  }
  log(
    `generated ${FILES} small files in ${leaves.length} leaf dirs (fanout ${f}, 3 levels) + ${BIG} x ${BIG_MIB} MiB: ${
      (bytes / 2 ** 20).toFixed(0)
    } MiB`,
  );
}

/** One batch of source changes: 10 modified (one big if any), 2 renamed, 2 deleted. */
function mutate(round: number): string {
  const rng = new Rng(SEED * 1000 + round);
  const pick = () => smallFiles.splice(rng.int(0, smallFiles.length - 1), 1)[0];
  const modified: string[] = [];
  const nSmallMod = BIG > 0 ? 9 : 10;
  for (let i = 0; i < nSmallMod; i++) modified.push(pick());
  const buf = new Uint8Array(Math.max(MAX_KIB * 1024, 1 << 20));
  for (const p of modified) {
    const b = buf.subarray(0, rng.int(MIN_KIB * 1024, MAX_KIB * 1024));
    rng.fill(b);
    Deno.writeFileSync(`${SRC}/${p}`, b);
  }
  if (BIG > 0) {
    const p = bigFiles[round % bigFiles.length];
    const fh = Deno.openSync(`${SRC}/${p}`, { write: true, truncate: true });
    let left = BIG_MIB << 20;
    while (left > 0) {
      const n = Math.min(left, buf.length);
      rng.fill(buf.subarray(0, n));
      let w = 0;
      while (w < n) w += fh.writeSync(buf.subarray(w, n));
      left -= n;
    }
    fh.close();
    modified.push(p);
  }
  const renamed: string[] = [];
  for (let i = 0; i < 2; i++) {
    const from = pick();
    const to = `${
      smallFiles[rng.int(0, smallFiles.length - 1)].replace(/\/[^/]+$/, "")
    }/renamed-r${round}-${i}.bin`;
    Deno.renameSync(`${SRC}/${from}`, `${SRC}/${to}`);
    renamed.push(`${from} -> ${to}`);
  }
  const deleted: string[] = [];
  for (let i = 0; i < 2; i++) {
    const p = pick();
    Deno.removeSync(`${SRC}/${p}`);
    deleted.push(p);
  }
  // put modified and renamed files back in the pool for later rounds
  smallFiles.push(...modified.filter((p) => !p.startsWith("big/")));
  smallFiles.push(...renamed.map((r) => r.split(" -> ")[1]));
  return `${modified.length} modified, ${renamed.length} renamed, ${deleted.length} deleted`;
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

function verify(label: string, dst: string, src = SRC): void {
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

// ---------------------------------------------------------------- cases

interface Row {
  name: string;
  repl: Timing[];
  rsync: Timing[];
  /** Target for the ratio replicator/rsync (default BENCH_MAX_RATIO). */
  maxRatio?: number;
}

/** How a section runs both tools: directory to directory, or pulling over ssh. */
interface Mode {
  /** Prefix of log lines, verify labels, destination directories and host names. */
  tag: string;
  src: string;
  /** The replicator's and rsync's destinations of the latest initial copy: what the syncs update. */
  dst: string;
  dst2: string;
  clone(dst: string, host: string): string[];
  sync(dst: string): string[];
  /** rsync `src` to `to`; `del` adds --delete (syncs). */
  rsync(to: string, del: boolean): string[];
  timed(argv: string[]): Timing;
}

/** The mode's tag for humans: "ssh huge " for "ssh-huge-". */
const say = (m: Mode) => m.tag.replaceAll("-", " ");

const local: Mode = {
  tag: "",
  src: SRC,
  dst: `${WORK}/dst-replicator`,
  dst2: `${WORK}/dst-rsync`,
  clone: (dst, host) => repl("clone", SRC, dst, "--host", host),
  sync: (dst) => repl("sync", "-C", dst, SRC),
  rsync: (to, del) => rsync(SRC, to, del),
  timed: (argv) => timed(argv),
};

function caseInit(): Row {
  const row: Row = { name: "init (setup, source)", repl: [], rsync: [] };
  for (let i = 0; i < REPS; i++) {
    rmrf(`${SRC}/.replicator`);
    row.repl.push(timed(repl("init", SRC, "--host", "src")));
    log(`init rep ${i + 1}: ${row.repl.at(-1)!.wall.toFixed(2)} s`);
  }
  return row;
}

function caseClone(m: Mode, name = "initial copy", reps = REPS, maxRatio?: number): Row {
  const row: Row = { name, repl: [], rsync: [], maxRatio };
  for (let i = 0; i < reps; i++) {
    m.dst = `${WORK}/dst-${m.tag}replicator-${i + 1}`;
    m.dst2 = `${WORK}/dst-${m.tag}rsync-${i + 1}`;
    row.repl.push(m.timed(m.clone(m.dst, `${m.tag}dst${i}`)));
    verify(`${say(m)}clone rep ${i + 1}`, m.dst, m.src);
    row.rsync.push(m.timed(m.rsync(m.dst2, false)));
    verify(`${say(m)}rsync initial rep ${i + 1}`, m.dst2, m.src);
    log(
      `${say(m)}${name} rep ${i + 1}: replicator ${row.repl.at(-1)!.wall.toFixed(2)} s, rsync ${
        row.rsync.at(-1)!.wall.toFixed(2)
      } s`,
    );
  }
  return row;
}

function caseNoop(m: Mode): Row {
  const row: Row = { name: "no-op sync", repl: [], rsync: [] };
  for (let i = 0; i < REPS; i++) {
    row.repl.push(m.timed(m.sync(m.dst)));
    verify(`${say(m)}no-op sync rep ${i + 1}`, m.dst, m.src);
    row.rsync.push(m.timed(m.rsync(m.dst2, true)));
    verify(`${say(m)}rsync no-op rep ${i + 1}`, m.dst2, m.src);
    log(
      `${say(m)}no-op rep ${i + 1}: replicator ${row.repl.at(-1)!.wall.toFixed(2)} s, rsync ${
        row.rsync.at(-1)!.wall.toFixed(2)
      } s`,
    );
  }
  return row;
}

/** `firstRound`: each section gets its own batches of changes. */
function caseIncremental(m: Mode, firstRound: number): Row {
  const row: Row = { name: "incremental (10M 2R 2D)", repl: [], rsync: [] };
  for (let i = 0; i < REPS; i++) {
    const what = mutate(firstRound + i);
    row.repl.push(m.timed(m.sync(m.dst)));
    verify(`${say(m)}incremental sync rep ${i + 1}`, m.dst, m.src);
    row.rsync.push(m.timed(m.rsync(m.dst2, true)));
    verify(`${say(m)}rsync incremental rep ${i + 1}`, m.dst2, m.src);
    log(
      `${say(m)}incremental rep ${i + 1} (${what}): replicator ${
        row.repl.at(-1)!.wall.toFixed(2)
      } s, rsync ${row.rsync.at(-1)!.wall.toFixed(2)} s`,
    );
  }
  return row;
}

// ---------------------------------------------------------------- over ssh

/** The pull from `src` over ssh, for both tools: the same ssh command, both servers under time. */
function sshMode(s: Sshd, src: string): Mode {
  const opts = ["--ssh", s.ssh, "--remote-cmd", s.remoteCmd];
  return {
    tag: "ssh-",
    src,
    dst: "",
    dst2: "",
    clone: (dst, host) => repl("clone", s.url(src), dst, "--host", host, ...opts),
    sync: (dst) => repl("sync", "-C", dst, s.url(src), ...opts),
    rsync: (to, del) => [
      "rsync",
      "-a",
      ...(del ? ["--delete"] : []),
      "--exclude=.replicator",
      "-e",
      `${s.ssh} -p ${s.port}`,
      `--rsync-path=/usr/bin/time -f '${SERVER_TIME_FMT}' -a -o ${SERVER_TIME} rsync`,
      `root@127.0.0.1:${src}/`,
      `${to}/`,
    ],
    timed: timedSsh,
  };
}

/** Whether to run the part over ssh: on by default where it can run, loudly if asked for. */
function sshWanted(): boolean {
  if (SSH === "0") return false;
  if (haveSshd()) return true;
  const why = "the part over ssh needs root and /usr/sbin/sshd";
  if (SSH === "1") throw new Error(`${why} (BENCH_SSH=1)`);
  log(`${why}: skipped (BENCH_SSH=0 skips it without this note)`);
  return false;
}

/** An sshd whose --remote-cmd runs MOD (the measured revision) under GNU time. */
async function startBenchSshd(): Promise<{ sshd: Sshd; cipher: string; floor: number }> {
  const sshd = await startSshd({
    mod: MOD,
    wrap: ["/usr/bin/time", "-f", SERVER_TIME_FMT, "-a", "-o", SERVER_TIME],
    parent: WORK,
  });
  // sshd.ssh quotes nothing: a BENCH_DIR with spaces would break it for both tools alike
  const ssh = (...cmd: string[]) => [
    ...sshd.ssh.split(" "),
    "-p",
    String(sshd.port),
    "root@127.0.0.1",
    ...cmd,
  ];
  // One untimed round trip: warms the server's module cache (sshd starts it
  // with its own environment) and names the cipher ssh negotiates.
  const r = sh(ssh("-v", sshd.remoteCmd, "--help"));
  const cipher = r.err.match(/kex: server->client cipher: (\S+)/)?.[1] ?? "unknown";
  return { sshd, cipher, floor: sshFloor(ssh("true")) };
}

/** Median wall time of `ssh HOST true`: connection set-up, which every run over ssh pays. */
function sshFloor(argv: string[]): number {
  const walls: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    sh(argv);
    walls.push((performance.now() - t0) / 1000);
  }
  return median(walls);
}

/** The three cases over ssh, from the same source as the local part. */
function sshCases(s: Sshd): Row[] {
  const m = sshMode(s, SRC);
  return [
    caseClone(m, "initial copy", REPS, SSH_COPY_RATIO),
    caseNoop(m),
    caseIncremental(m, REPS),
  ];
}

/** BENCH_HUGE_GIB: a tree of one big file, initialised locally, cloned over ssh once. */
function hugeCases(s: Sshd): Row[] {
  generateHuge();
  flush();
  const init: Row = { name: `init (local, 1 x ${HUGE_GIB} GiB)`, repl: [], rsync: [] };
  init.repl.push(timed(repl("init", HUGE, "--host", "huge")));
  log(`init of the ${HUGE_GIB} GiB tree: ${init.repl[0].wall.toFixed(2)} s`);
  const m = { ...sshMode(s, HUGE), tag: "ssh-huge-" };
  return [init, caseClone(m, `initial copy, 1 x ${HUGE_GIB} GiB`, 1, SSH_COPY_RATIO)];
}

/** One file of HUGE_GIB GiB of pseudo-random bytes, incompressible like the rest of the tree. */
function generateHuge(): void {
  Deno.mkdirSync(HUGE);
  const rng = new Rng(SEED + 1);
  const buf = new Uint8Array(1 << 20);
  const fh = Deno.openSync(`${HUGE}/huge.bin`, { write: true, createNew: true });
  for (let left = Math.round(HUGE_GIB * 1024); left > 0; left--) {
    rng.fill(buf);
    let w = 0;
    while (w < buf.length) w += fh.writeSync(buf.subarray(w));
  }
  fh.close();
  log(`generated ${HUGE}/huge.bin: ${HUGE_GIB} GiB`);
}

/** Fails before any work if the huge case's three copies (source, two clones) would not fit. */
function checkHugeSpace(): void {
  const avail = Number(sh(["df", "-B1", "--output=avail", PARENT]).out.trim().split("\n").pop());
  const need = (3 * HUGE_GIB + 1) * 2 ** 30;
  if (avail < need) {
    throw new Error(
      `BENCH_HUGE_GIB=${HUGE_GIB} needs ~${(need / 2 ** 30).toFixed(0)} GiB free in ${PARENT}, ` +
        `there are ${(avail / 2 ** 30).toFixed(1)} GiB`,
    );
  }
}

// ---------------------------------------------------------------- profiling

function profiled(name: string, args: string[]): void {
  const dir = `${PROF}/${name}`;
  Deno.mkdirSync(dir, { recursive: true });
  flush();
  const t = timed([DENO, "run", "-A", "--cpu-prof", `--cpu-prof-dir=${dir}`, MOD, ...args]);
  const file = [...Deno.readDirSync(dir)].find((e) => e.name.endsWith(".cpuprofile"))!.name;
  console.log(
    `\n### profile: ${name} (${t.wall.toFixed(2)} s wall under the profiler; ${dir}/${file})`,
  );
  console.log(summarize(JSON.parse(Deno.readTextFileSync(`${dir}/${file}`))));
}

function profileAll(): void {
  rmrf(`${WORK}/prof-src-meta`);
  // init: on a copy of the metadata-less source
  Deno.renameSync(`${SRC}/.replicator`, `${WORK}/prof-src-meta`);
  profiled("init", ["init", SRC, "--host", "src-prof"]);
  rmrf(`${SRC}/.replicator`);
  Deno.renameSync(`${WORK}/prof-src-meta`, `${SRC}/.replicator`);
  const cl = `${WORK}/dst-prof`;
  profiled("clone", ["clone", SRC, cl, "--host", "dst-prof"]);
  verify("profiled clone", cl);
  profiled("noop-sync", ["sync", "-C", local.dst, SRC]);
  verify("profiled no-op", local.dst);
  mutate(100);
  profiled("incremental-sync", ["sync", "-C", local.dst, SRC]);
  verify("profiled incremental", local.dst);
}

// ---------------------------------------------------------------- report

/** A row's medians, peaks and verdicts; RSS counts both ends of a run over ssh. */
function judge(r: Row) {
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
  const ratioOk = hasRsync ? ratio <= maxRatio : true;
  const rssOk = rr < MAX_RSS_MB && !(rrServer >= MAX_RSS_MB);
  return {
    maxRatio,
    rw,
    rr,
    rrServer,
    hasRsync,
    sw,
    sr: peak(r.rsync, (t) => t.rssKiB),
    srServer: peak(r.rsync, (t) => t.server?.rssKiB),
    ratio,
    ratioOk,
    rssOk,
  };
}

/** Aligned columns: the first left-aligned, the others right-aligned. */
function grid(lines: string[][]): string {
  const w = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  const fmt = (l: string[]) =>
    l.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
  const out = [fmt(lines[0]), w.map((n) => "-".repeat(n)).join("  "), ...lines.slice(1).map(fmt)];
  return out.join("\n");
}

const mb = (x: number) => Number.isNaN(x) ? "-" : x.toFixed(1);

function table(rows: Row[]): { text: string; miss: number } {
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
      j.hasRsync ? (j.ratioOk ? "PASS" : "MISS") : "n/a",
      j.rssOk ? "PASS" : "MISS",
      j.ratioOk && j.rssOk ? "PASS" : "MISS",
    ]);
  }
  return { text: grid(lines), miss };
}

/** The table over ssh: per-row ratio targets, and the server side's peak RSS of both tools. */
function sshTable(rows: Row[]): { text: string; miss: number } {
  const head = [
    "case",
    "replicator s",
    "rsync s",
    "ratio",
    "target",
    "repl RSS MB",
    "repl srv MB",
    "rsync RSS MB",
    "rsync srv MB",
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
      j.hasRsync ? `<=${j.maxRatio} ${j.ratioOk ? "PASS" : "MISS"}` : "n/a",
      j.rr.toFixed(1),
      mb(j.rrServer),
      mb(j.sr),
      mb(j.srServer),
      j.rssOk ? "PASS" : "MISS",
      j.ratioOk && j.rssOk ? "PASS" : "MISS",
    ]);
  }
  return { text: grid(lines), miss };
}

/** wall/peak RSS of every run; over ssh also the server's peak (and its count if not one). */
function raw(rows: Row[]): string {
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

// ---------------------------------------------------------------- main

/** The part over ssh: its rows and the lines that say how it ran. */
async function overSsh(): Promise<{ rows: Row[]; header: string }> {
  const { sshd, cipher, floor } = await startBenchSshd();
  try {
    log(`sshd on 127.0.0.1:${sshd.port}, cipher ${cipher}, 'ssh HOST true' ${floor.toFixed(3)} s`);
    const rows = sshCases(sshd);
    if (HUGE_GIB > 0) rows.push(...hugeCases(sshd));
    const version = sh(["ssh", "-V"]).err.trim();
    const header = [
      `over ssh: ${version}; sshd on 127.0.0.1:${sshd.port}, both ends on this host; cipher ${cipher}`,
      `  'ssh HOST true' takes ${floor.toFixed(3)} s (median of 5): a floor every run below pays`,
      `  SSH = ${sshd.ssh}`,
      `  replicator clone URL DST | sync -C DST URL, --ssh "$SSH" --remote-cmd W`,
      `    URL = ${sshd.url(SRC)}`,
      `    (W runs ${MOD} under /usr/bin/time)`,
      `  rsync -a [--delete] --exclude=.replicator -e "$SSH -p ${sshd.port}" \\`,
      `    --rsync-path="/usr/bin/time … rsync" root@127.0.0.1:${SRC}/ DST/`,
      `RSS MB = client's peak (the tool or its ssh, the larger); srv MB = the server's (under GNU time)`,
    ].join("\n");
    return { rows, header };
  } finally {
    await sshd.stop();
  }
}

/** Exports REV into CODE (unless "worktree"); returns the commit and a note on uncommitted changes. */
function checkout(): { commit: string; dirty: string } {
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
    `git -C "${REPO}" archive "${REV}" mod.ts src deno.json | tar -x -C "${CODE}"`,
  ]);
  return { commit, dirty: "" };
}

async function main(): Promise<number> {
  rmrf(WORK);
  Deno.mkdirSync(SRC, { recursive: true });
  const load0 = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  const { commit, dirty } = checkout();
  log(
    `work dir ${WORK}; replicator ${commit}${dirty}; ${navigator.hardwareConcurrency} CPUs, load ${load0}`,
  );
  const ssh = sshWanted();
  if (ssh && HUGE_GIB > 0) checkHugeSpace();
  if (!ssh && HUGE_GIB > 0) log(`BENCH_HUGE_GIB is a case over ssh: skipped with it`);
  // warm Deno's module cache so no timing pays for transpiling
  sh(repl("--help"));
  generate();
  flush();

  const rows = [caseInit(), caseClone(local), caseNoop(local), caseIncremental(local, 0)];
  const remote = ssh ? await overSsh() : null;

  const load1 = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  const { text, miss: localMiss } = table(rows);
  const totalMiB = (FILES * (MIN_KIB + MAX_KIB) / 2 / 1024 + BIG * BIG_MIB).toFixed(0);
  console.log(`\nreplicator ${commit}${dirty} vs ${sh(["rsync", "--version"]).out.split("\n")[0]}`);
  console.log(
    `tree: ${FILES} files of ${MIN_KIB}-${MAX_KIB} KiB in 3 directory levels + ${BIG} x ${BIG_MIB} MiB (~${totalMiB} MiB), seed ${SEED}`,
  );
  console.log(
    `machine: ${navigator.hardwareConcurrency} CPUs (shared), loadavg before ${load0}, after ${load1}; median of ${REPS}; page cache warm, 'sync' before each run`,
  );
  console.log(
    `wall = harness clock around /usr/bin/time; RSS = peak (%M) of the process tree's largest process\n`,
  );
  console.log(text);
  console.log(`\nall runs (wall/peak RSS):\n${raw(rows)}`);
  let miss = localMiss;
  if (remote) {
    const t = sshTable(remote.rows);
    miss += t.miss;
    console.log(`\n${remote.header}\n`);
    console.log(t.text);
    console.log(`\nall runs over ssh (wall/peak RSS client+srv server):\n${raw(remote.rows)}`);
  }
  console.log(
    `\n${
      miss === 0 ? "ALL PASS" : `${miss} line(s) MISS`
    }; every destination verified equal to the source after every run`,
  );

  if (PROFILE) profileAll();
  if (!KEEP) rmrf(WORK);
  else log(`kept ${WORK}`);
  return STRICT && miss > 0 ? 1 : 0;
}

main().then(Deno.exit, (e) => {
  console.error(`\nBENCH FAILED: ${(e as Error).message}`);
  console.error(`work dir kept for inspection: ${WORK}`);
  Deno.exit(2);
});
