/**
 * The bench's replicator-vs-rsync tables (parts "local" and "ssh" of
 * bench/main.ts; run them with `bash bench/run.sh`).
 *
 * Local: init (setup, timed on its own), initial copy (clone vs `rsync -a`,
 * and vs `rsync -a --fsync`: the cost of durability), no-op sync, incremental
 * sync (10 modified, 2 renamed, 2 deleted files), directory to directory.
 * Over ssh: the same copy and syncs, pulling from a throwaway sshd on
 * 127.0.0.1 (tools/sshd.ts); both servers run under GNU time (the
 * --remote-cmd wrapper, --rsync-path), so both ends' peak RSS is reported.
 * Every timing is repeated BENCH_REPS times and the median reported; every
 * run is followed by a check that the destination equals the source.
 *
 * Environment (all optional; defaults under --quick in brackets):
 *   BENCH_FILES     number of small files (default 20000 [2000])
 *   BENCH_MIN_KIB / BENCH_MAX_KIB   small file size range (default 1..8 KiB)
 *   BENCH_BIG       number of big files (default 20 [2])
 *   BENCH_BIG_MIB   size of a big file (default 8 MiB)
 *   BENCH_REPS      repetitions per timing (default 3 [1])
 *   BENCH_PROFILE   1: after the timings, run each replicator case once more
 *                   under --cpu-prof and print where the time goes
 *   BENCH_SSH       0: skip the part over ssh; 1: fail if it cannot run
 *   BENCH_SSH_COPY_RATIO  target for the initial copy over ssh (default 1.25)
 *   BENCH_HUGE_GIB  N > 0: also clone a tree of one N GiB file over ssh
 *                   (and rsync it), reporting both ends' peak RSS
 *
 * @module
 */

import { summarize } from "./profsum.ts";
import { haveSshd, type Sshd, startSshd } from "../tools/sshd.ts";
import { V8_FLAGS } from "../src/memory.ts";
import {
  DENO,
  ENTRY,
  env,
  FLOOR_COPY,
  flush,
  grid,
  judge,
  log,
  MAX_RSS_MB,
  mb,
  median,
  MOD,
  notRunning,
  PARENT,
  type PartResult,
  q,
  QUICK,
  raw,
  readIfExists,
  repl,
  rmrf,
  Rng,
  type Row,
  SEED,
  type ServerTiming,
  sh,
  skip,
  table,
  timed,
  type Timing,
  verdict,
  verify,
  WORK,
} from "./common.ts";

const FILES = env("BENCH_FILES", q(2000, 20000));
const MIN_KIB = env("BENCH_MIN_KIB", 1);
const MAX_KIB = env("BENCH_MAX_KIB", 8);
const BIG = env("BENCH_BIG", q(2, 20));
const BIG_MIB = env("BENCH_BIG_MIB", 8);
const REPS = Math.max(1, env("BENCH_REPS", q(1, 3)));
const PROFILE = Deno.env.get("BENCH_PROFILE") === "1";
const SSH_COPY_RATIO = env("BENCH_SSH_COPY_RATIO", 1.25);
const HUGE_GIB = env("BENCH_HUGE_GIB", 0);

const SRC = `${WORK}/src`;
const HUGE = `${WORK}/huge-src`;
const PROF = `${WORK}/prof`;
/** GNU time's output for the server side of a run over ssh (appended to by each connection). */
const SERVER_TIME = `${WORK}/ssh-server-time`;
const SERVER_TIME_FMT = "%e %M";

// ---------------------------------------------------------------- helpers

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

/** `rsync -a` (initial copy); syncs add --delete, or deletions would never reach the copy. */
const rsync = (from: string, to: string, del = true, fsync = false) => [
  "rsync",
  "-a",
  ...(del ? ["--delete"] : []),
  ...(fsync ? ["--fsync"] : []),
  "--exclude=.replicator",
  `${from}/`,
  `${to}/`,
];

function isDir(p: string): boolean {
  try {
    return Deno.statSync(p).isDirectory;
  } catch {
    return false;
  }
}

/** Whether this rsync can fsync what it writes (3.2.0 and later). */
function rsyncHasFsync(): boolean {
  return sh(["rsync", "--help"]).out.includes("--fsync");
}

// ---------------------------------------------------------------- tree

const smallFiles: string[] = []; // volume-relative
const bigFiles: string[] = [];
let generated = false;

function fanout(): number {
  // three levels of directories, ~40 files per leaf directory
  return Math.max(2, Math.ceil(Math.cbrt(FILES / 40)));
}

/** The source tree both parts use (once per run). */
function generate(): void {
  if (generated) return;
  generated = true;
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
  flush();
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

// ---------------------------------------------------------------- cases

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
  /** rsync `src` to `to`; `del` adds --delete (syncs), `fsync` --fsync. */
  rsync(to: string, del: boolean, fsync?: boolean): string[];
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
  rsync: (to, del, fsync) => rsync(SRC, to, del, fsync),
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

/**
 * The initial copy. With `also.fsync`, each repetition also times `rsync -a
 * --fsync` into a fresh directory (a row whose ratio is for information: the
 * replicator's copy is durable, plain rsync's is not); with `also.floor`,
 * bench/floor_copy.ts (a row of the floor against rsync: what any copy with
 * the replicator's guarantees pays in this runtime).
 */
function caseClone(
  m: Mode,
  name = "initial copy",
  reps = REPS,
  maxRatio?: number,
  also: { fsync?: boolean; floor?: boolean } = {},
): Row[] {
  const row: Row = { name, repl: [], rsync: [], maxRatio };
  const durable: Row = { name: `${name} vs rsync --fsync`, repl: row.repl, rsync: [], info: true };
  const floor: Row = { name: `${name}: floor_copy.ts`, repl: [], rsync: row.rsync, info: true };
  for (let i = 0; i < reps; i++) {
    m.dst = `${WORK}/dst-${m.tag}replicator-${i + 1}`;
    m.dst2 = `${WORK}/dst-${m.tag}rsync-${i + 1}`;
    row.repl.push(m.timed(m.clone(m.dst, `${m.tag}dst${i}`)));
    verify(`${say(m)}clone rep ${i + 1}`, m.dst, m.src);
    row.rsync.push(m.timed(m.rsync(m.dst2, false)));
    verify(`${say(m)}rsync initial rep ${i + 1}`, m.dst2, m.src);
    let more = "";
    if (also.fsync) {
      const dst = `${WORK}/dst-${m.tag}rsync-fsync-${i + 1}`;
      durable.rsync.push(m.timed(m.rsync(dst, false, true)));
      verify(`${say(m)}rsync --fsync initial rep ${i + 1}`, dst, m.src);
      more += `, rsync --fsync ${durable.rsync.at(-1)!.wall.toFixed(2)} s`;
    }
    if (also.floor) {
      const dst = `${WORK}/dst-${m.tag}floor-${i + 1}`;
      floor.repl.push(m.timed([DENO, "run", "-A", "--quiet", FLOOR_COPY, m.src, dst]));
      verify(`${say(m)}floor copy rep ${i + 1}`, dst, m.src);
      more += `, floor ${floor.repl.at(-1)!.wall.toFixed(2)} s`;
    }
    log(
      `${say(m)}${name} rep ${i + 1}: replicator ${row.repl.at(-1)!.wall.toFixed(2)} s, rsync ${
        row.rsync.at(-1)!.wall.toFixed(2)
      } s${more}`,
    );
  }
  return [row, ...(also.fsync ? [durable] : []), ...(also.floor ? [floor] : [])];
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

/** An sshd whose --remote-cmd runs MOD (the measured revision) under GNU time. */
async function startBenchSshd(): Promise<{ sshd: Sshd; cipher: string; floor: number }> {
  const sshd = await startSshd({
    mod: ENTRY,
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
  try {
    // One untimed round trip: warms the server's module cache (sshd starts it
    // with its own environment) and names the cipher ssh negotiates.
    const r = sh(ssh("-v", sshd.remoteCmd, "--help"));
    const cipher = r.err.match(/kex: server->client cipher: (\S+)/)?.[1] ?? "unknown";
    return { sshd, cipher, floor: sshFloor(ssh("true")) };
  } catch (e) {
    await sshd.stop();
    throw e;
  }
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
    ...caseClone(m, "initial copy", REPS, SSH_COPY_RATIO),
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
  return [init, ...caseClone(m, `initial copy, 1 x ${HUGE_GIB} GiB`, 1, SSH_COPY_RATIO)];
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
      j.hasRsync ? `<=${j.maxRatio} ${verdict(j.ratioOk)}` : "n/a",
      j.rr.toFixed(1),
      mb(j.rrServer),
      mb(j.sr),
      mb(j.srServer),
      verdict(j.rssOk),
      verdict(j.ratioOk && j.rssOk),
    ]);
  }
  return { text: grid(lines), miss };
}

// ---------------------------------------------------------------- profiling

function profiled(name: string, args: string[]): void {
  const dir = `${PROF}/${name}`;
  Deno.mkdirSync(dir, { recursive: true });
  const t = timed([
    DENO,
    "run",
    "-A",
    "--quiet",
    `--v8-flags=${V8_FLAGS}`,
    "--cpu-prof",
    `--cpu-prof-dir=${dir}`,
    MOD,
    ...args,
  ]);
  const file = [...Deno.readDirSync(dir)].find((e) => e.name.endsWith(".cpuprofile"))!.name;
  console.log(
    `\n### profile: ${name} (${t.wall.toFixed(2)} s wall under the profiler; ${dir}/${file})`,
  );
  console.log(summarize(JSON.parse(Deno.readTextFileSync(`${dir}/${file}`))));
}

/** BENCH_PROFILE=1: init, clone, no-op and incremental sync once more under --cpu-prof. */
export function profilePart(): void {
  if (!PROFILE) return;
  generate();
  if (!isDir(`${SRC}/.replicator`)) throw new Error("BENCH_PROFILE needs the part 'local'");
  rmrf(`${WORK}/prof-src-meta`);
  // init: on a copy of the metadata-less source
  Deno.renameSync(`${SRC}/.replicator`, `${WORK}/prof-src-meta`);
  profiled("init", ["init", SRC, "--host", "src-prof"]);
  rmrf(`${SRC}/.replicator`);
  Deno.renameSync(`${WORK}/prof-src-meta`, `${SRC}/.replicator`);
  const cl = `${WORK}/dst-prof`;
  profiled("clone", ["clone", SRC, cl, "--host", "dst-prof"]);
  verify("profiled clone", cl, SRC);
  profiled("noop-sync", ["sync", "-C", local.dst, SRC]);
  verify("profiled no-op", local.dst, SRC);
  mutate(100);
  profiled("incremental-sync", ["sync", "-C", local.dst, SRC]);
  verify("profiled incremental", local.dst, SRC);
}

// ---------------------------------------------------------------- parts

/** Part "local": the four cases directory to directory, plus rsync --fsync and the floor for the copy. */
export function localPart(): PartResult {
  generate();
  const also = { fsync: rsyncHasFsync(), floor: true };
  const rows = [caseInit(), ...caseClone(local, "initial copy", REPS, undefined, also)];
  rows.push(caseNoop(local), caseIncremental(local, 0));
  const { text, miss } = table(rows);
  const totalMiB = (FILES * (MIN_KIB + MAX_KIB) / 2 / 1024 + BIG * BIG_MIB).toFixed(0);
  console.log(`\n== local: replicator vs rsync, directory to directory`);
  console.log(
    `tree: ${FILES} files of ${MIN_KIB}-${MAX_KIB} KiB in 3 directory levels + ${BIG} x ${BIG_MIB} MiB (~${totalMiB} MiB), seed ${SEED}`,
  );
  console.log(
    `median of ${REPS}; page cache warm, 'sync' before each run; wall = harness clock around /usr/bin/time;`,
  );
  console.log(`RSS = peak (%M) of the process tree's largest process\n`);
  console.log(text);
  const copy = judge(rows[1]);
  if (also.fsync) {
    const durable = judge(rows[2]);
    console.log(
      `durability of a cold copy: rsync --fsync takes ${
        (durable.sw / copy.sw).toFixed(2)
      }x plain rsync; the replicator's copy (syncfs) takes ${copy.ratio.toFixed(2)}x rsync, ${
        durable.ratio.toFixed(2)
      }x rsync --fsync`,
    );
  } else {
    console.log(`(this rsync has no --fsync: the durable copy's row is left out)`);
  }
  const floor = judge(rows[also.fsync ? 3 : 2]);
  console.log(
    `the floor of a durable, confined, hashed copy in this runtime (bench/floor_copy.ts) takes ${
      floor.ratio.toFixed(2)
    }x rsync; the replicator's copy takes ${(copy.rw / floor.rw).toFixed(2)}x that floor`,
  );
  if (!QUICK) console.log(`\nall runs (wall/peak RSS):\n${raw(rows)}`);
  return { name: "local", skipped: null, miss };
}

/** Part "ssh": the copy and syncs over ssh (and BENCH_HUGE_GIB); skipped where sshd cannot run. */
export async function sshPart(): Promise<PartResult> {
  const why = notRunning(
    "BENCH_SSH",
    haveSshd(),
    "the part over ssh needs root and /usr/sbin/sshd",
  );
  if (why) return skip("ssh", why);
  if (HUGE_GIB > 0) checkHugeSpace();
  generate();
  if (!isDir(`${SRC}/.replicator`)) {
    throw new Error("the part over ssh needs the part 'local' first (it initialises the source)");
  }
  const { sshd, cipher, floor } = await startBenchSshd();
  let rows: Row[];
  try {
    log(`sshd on 127.0.0.1:${sshd.port}, cipher ${cipher}, 'ssh HOST true' ${floor.toFixed(3)} s`);
    rows = sshCases(sshd);
    if (HUGE_GIB > 0) rows.push(...hugeCases(sshd));
  } finally {
    await sshd.stop();
  }
  const version = sh(["ssh", "-V"]).err.trim();
  console.log(`\n== ssh: replicator vs rsync, pulling over ssh on 127.0.0.1`);
  console.log(
    `${version}; both ends on this host; cipher ${cipher}; 'ssh HOST true' takes ${
      floor.toFixed(3)
    } s (median of 5): a floor every run pays`,
  );
  if (!QUICK) {
    console.log(
      [
        `  SSH = ${sshd.ssh}`,
        `  replicator clone URL DST | sync -C DST URL, --ssh "$SSH" --remote-cmd W`,
        `    URL = ${sshd.url(SRC)}`,
        `    (W runs ${ENTRY} under /usr/bin/time)`,
        `  rsync -a [--delete] --exclude=.replicator -e "$SSH -p ${sshd.port}" \\`,
        `    --rsync-path="/usr/bin/time … rsync" root@127.0.0.1:${SRC}/ DST/`,
      ].join("\n"),
    );
  }
  console.log(
    `RSS MB = client's peak (the tool or its ssh, the larger); srv MB = the server's (under GNU time)\n`,
  );
  const t = sshTable(rows);
  console.log(t.text);
  if (!QUICK) console.log(`\nall runs over ssh (wall/peak RSS client+srv server):\n${raw(rows)}`);
  return { name: "ssh", skipped: null, miss: t.miss };
}

if (import.meta.main) {
  console.error("bench/bench.ts is a part of the bench: run `bash bench/run.sh` (bench/README.md)");
  Deno.exit(2);
}
