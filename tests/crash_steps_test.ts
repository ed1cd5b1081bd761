/**
 * Deterministic crash points (issue 7, rules 2 and 9): a sync is killed at every
 * step boundary of its transactions, not at random moments.
 *
 * The engine honours REPLICATOR_CRASH_AT (the process SIGKILLs itself there):
 *   commit   after the transaction file is written, before any step
 *   step:N   right after the N-th step of a transaction (1-based; the first
 *            transaction that reaches N)
 *   steps    all steps done, before the KML append
 *   append   after the KML append, before Expect and state
 *   expect   after the Expect is written, before the transaction file is removed
 * and REPLICATOR_FAIL_AT=append|fsync, which makes that point throw an I/O error
 * (the sync exits 1).
 *
 * Each batch is built from a seeded random sequence of holder operations that
 * always includes the patterns that break a naive redo: log -> log.1 then a new
 * log, a directory replaced by a file, a file renamed over another, a path
 * deleted and re-created, a file replaced by a directory; A records them in
 * several captures, so B receives the whole history in one pull. For every crash
 * point the scenario is rebuilt from scratch (same seed, same operations), the
 * sync is run with the crash point, and then:
 *   - before recovery, every file in B is a whole version A once wrote;
 *   - a normal sync exits 0 and B equals A exactly (listing());
 *   - no .replicator/txn, txn.records or staged file is left;
 *   - `fsck` of both replicas exits 0, `status` of B lists nothing pending
 *     (recovery left the index agreeing with the tree);
 *   - a sentinel tree beside the volumes is unchanged.
 * The number of steps is found by raising N until a run is no longer killed.
 *
 * CRASH_SEQS (default 3) sets the number of batches, CRASH_OPS (default 10) the
 * operations per batch, CRASH_SEED the seed. Odd batches use
 * REPLICATOR_BATCH_RECORDS=8 (several transactions in one pull).
 *
 * A second test needs nothing from the engine: under strace, the sync of such a
 * batch is SIGKILLed at the entry of every invocation of every syscall that
 * changes an entry, a mode, a time or data (rename, mkdir, unlink, symlink,
 * chmod, utimensat, ftruncate, fdatasync, write, ...: counted once on an
 * uninterrupted run), and fails with EIO on fsync/fdatasync and ENOSPC on write;
 * each outcome gets the same checks. STRACE_SEQS (default 1) and STRACE_OPS
 * (default 6) scale it; it is skipped (and says so) where strace cannot trace.
 * The volumes live on /dev/shm when there is one (REPLICATOR_TEST_TMP overrides):
 * a SIGKILL loses no page cache, so fsyncs only cost time here.
 */

import { createHash } from "node:crypto";
import { assert } from "./assert.ts";
import {
  listing,
  makeSentinel,
  prng,
  put,
  scratchDir,
  snapshot,
  spawnCli,
  straceUnusable,
  syncUnderStrace,
} from "./helpers.ts";
import { clone, fsck, init, log as kmlLog, status, sync } from "../mod.ts";
import { openReplica } from "../src/apply/open.ts";
import { capture } from "../src/capture/capture.ts";

const SEQS = Number(Deno.env.get("CRASH_SEQS") ?? "3");
const OPS = Number(Deno.env.get("CRASH_OPS") ?? "10");
const SEED = Number(Deno.env.get("CRASH_SEED") ?? "4242");

const enc = new TextEncoder();
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** One batch: its seed, its op log, and every content A ever held (for "whole version"). */
interface Batch {
  seed: number;
  env: Record<string, string>;
  log: string[];
  versions: Set<string>;
  /** Records in A's log: a bound on the steps of the pull (a kill at every N would loop). */
  records: number;
  /** Operations in the batch (default CRASH_OPS). */
  ops?: number;
}

/** The volumes of one rebuilt scenario. */
interface Scene {
  root: string;
  a: string;
  b: string;
  sentinel: string;
}

/**
 * Builds A (base tree), its clone B, then runs the batch's operations on A with
 * captures in between, so that B has a whole history to pull. Deterministic.
 */
async function build(batch: Batch): Promise<Scene> {
  const root = await scratchDir();
  try {
    return await buildIn(root, batch);
  } catch (e) {
    Deno.removeSync(root, { recursive: true });
    throw e;
  }
}

async function buildIn(root: string, batch: Batch): Promise<Scene> {
  const s: Scene = { root, a: `${root}/a`, b: `${root}/b`, sentinel: `${root}/sentinel` };
  makeSentinel(s.sentinel);
  const random = prng(batch.seed);
  let clock = 1_650_000_000;
  let counter = 0;
  const log: string[] = [];
  const versions = new Set<string>();
  const write = (p: string, how: "new" | "append" = "new") => {
    const abs = `${s.a}/${p}`;
    const n = ++counter;
    const body = enc.encode(`${p} v${n} ` + "x".repeat(Math.floor(random() * 3000)) + "\n");
    if (how === "append") Deno.writeFileSync(abs, body, { append: true });
    else put(abs, body);
    clock += 7;
    Deno.utimeSync(abs, clock, clock);
    versions.add(sha(Deno.readFileSync(abs)));
  };
  const pick = <T>(xs: T[]): T | undefined =>
    xs.length ? xs[Math.floor(random() * xs.length)] : undefined;
  const tree = () => listing(s.a);
  const files = () => Object.keys(tree()).filter((p) => tree()[p].startsWith("file "));
  const dirs = () => Object.keys(tree()).filter((p) => tree()[p].startsWith("dir "));
  const exists = (p: string) => tree()[p] !== undefined;
  const rm = (p: string) => Deno.removeSync(`${s.a}/${p}`, { recursive: true });
  const mv = (from: string, to: string) => Deno.renameSync(`${s.a}/${from}`, `${s.a}/${to}`);
  const recordNow = () => {
    const vol = openReplica(s.a);
    try {
      capture(vol);
    } finally {
      vol.close();
    }
    log.push("  (capture)");
  };
  const maybeRecord = () => {
    if (random() < 0.6) recordNow();
  };

  for (const p of ["log", "x", "y", "z", "dir/a", "dir/b", "keep/k", "sub/deep/f", "w"]) write(p);
  await init(s.a, { host: "alpha" });
  await clone(s.a, s.b, { host: "beta" });

  const patterns: Record<string, () => void> = {
    rotate: () => {
      const t = tree();
      if (t["log.1"] && !t["log.1"].startsWith("file ")) rm("log.1");
      if (t["log"] && !t["log"].startsWith("file ")) rm("log");
      if (!t["log"]?.startsWith("file ")) write("log");
      mv("log", "log.1");
      log.push("mv log log.1");
      maybeRecord();
      write("log");
      log.push("write log (new)");
    },
    dirToFile: () => {
      const d = exists("dir") && tree()["dir"].startsWith("dir ") ? "dir" : pick(dirs());
      if (!d) return;
      rm(d);
      log.push(`rm -r ${d}`);
      maybeRecord();
      write(d);
      log.push(`write ${d} (dir replaced by a file)`);
    },
    renameOver: () => {
      const fs = files();
      const from = pick(fs);
      const to = pick(fs.filter((f) => f !== from));
      if (!from || !to) return;
      mv(from, to);
      log.push(`mv ${from} ${to} (over a file)`);
    },
    recreate: () => {
      const p = pick(files());
      if (!p) return;
      rm(p);
      log.push(`rm ${p}`);
      maybeRecord();
      write(p);
      log.push(`write ${p} (re-created)`);
    },
    fileToDir: () => {
      const p = pick(files().filter((f) => !f.includes("/")));
      if (!p) return;
      rm(p);
      Deno.mkdirSync(`${s.a}/${p}`);
      write(`${p}/inner`);
      log.push(`rm ${p}; mkdir ${p}; write ${p}/inner (file replaced by a dir)`);
    },
    dirToLink: () => {
      const d = pick(dirs());
      if (!d) return;
      rm(d);
      Deno.symlinkSync("log", `${s.a}/${d}`);
      log.push(`rm -r ${d}; ln -s log ${d}`);
    },
    renameDir: () => {
      const d = pick(dirs().filter((x) => !x.includes("/")));
      if (!d || exists(`${d}-moved`)) return;
      mv(d, `${d}-moved`);
      log.push(`mv ${d} ${d}-moved`);
    },
    write: () => {
      const p = pick(files());
      if (!p) return;
      write(p);
      log.push(`write ${p}`);
    },
    append: () => {
      const p = pick(files());
      if (!p) return;
      write(p, "append");
      log.push(`append ${p}`);
    },
    create: () => {
      const d = pick(["", ...dirs()]);
      const p = `${d ? d + "/" : ""}n${counter}`;
      write(p);
      log.push(`create ${p}`);
    },
    chmod: () => {
      const p = pick(files());
      if (!p) return;
      const mode = pick([0o600, 0o755, 0o640])!;
      Deno.chmodSync(`${s.a}/${p}`, mode);
      log.push(`chmod ${mode.toString(8)} ${p}`);
    },
    delete: () => {
      const p = pick(Object.keys(tree()));
      if (!p) return;
      rm(p);
      log.push(`rm -r ${p}`);
    },
  };
  const required = ["rotate", "dirToFile", "renameOver", "recreate", "fileToDir"];
  const extra = Object.keys(patterns);
  const order = [...required];
  while (order.length < (batch.ops ?? OPS)) order.push(pick(extra)!);
  // Shuffle (Fisher-Yates with the batch's PRNG).
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (const name of order) {
    patterns[name]();
    maybeRecord();
  }
  recordNow();
  batch.records = (await kmlLog(s.a)).length;
  batch.log = log;
  for (const v of versions) batch.versions.add(v);
  return s;
}

/** Runs `fn` with the batch's environment (REPLICATOR_BATCH_RECORDS) set in this process. */
async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.keys(env).map((k) => [k, Deno.env.get(k)] as const);
  for (const [k, v] of Object.entries(env)) Deno.env.set(k, v);
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

/**
 * What one crash point left wrong (empty: all good). The recovery sync, fsck and
 * status run in this process (through the API) to keep the test fast.
 */
async function afterCrash(s: Scene, batch: Batch, what: string): Promise<string[]> {
  const bad: string[] = [];
  const sentinel = snapshot(s.sentinel);
  // Before recovery: every file is whole (a version A wrote), nothing staged in the tree.
  for (const [p, desc] of Object.entries(listing(s.b))) {
    if (!desc.startsWith("file ")) continue;
    if (!batch.versions.has(desc.split(" ")[4])) {
      bad.push(`before recovery, ${p} is not a whole version`);
    }
  }
  try {
    const reports = await withEnv(batch.env, async () => await sync(s.b, [s.a]));
    for (const r of reports) {
      if ("error" in r) bad.push(`the sync after the crash failed: ${r.error.message}`);
      else {
        const { conflicts, problems } = r.local.pull;
        if (conflicts.length) {
          bad.push(`the sync after the crash made conflict copies: ${conflicts.join(", ")}`);
        }
        if (problems.length) bad.push(`the sync after the crash reports: ${problems.join("; ")}`);
      }
    }
  } catch (e) {
    bad.push(`the sync after the crash throws: ${(e as Error).message}`);
  }
  const la = listing(s.a);
  const lb = listing(s.b);
  const diffs = [...new Set([...Object.keys(la), ...Object.keys(lb)])].sort()
    .filter((p) => la[p] !== lb[p])
    .map((p) => `${p}: A ${la[p] ?? "absent"} / B ${lb[p] ?? "absent"}`);
  if (diffs.length) bad.push(`B differs from A after recovery: ${diffs.slice(0, 8).join("; ")}`);
  for (const m of ["txn", "txn.records"]) {
    try {
      Deno.lstatSync(`${s.b}/.replicator/${m}`);
      bad.push(`.replicator/${m} left behind`);
    } catch { /* absent: good */ }
  }
  try {
    const left = [...Deno.readDirSync(`${s.b}/.replicator/staging`)];
    if (left.length) bad.push(`staging not empty: ${left.map((e) => e.name).join(", ")}`);
  } catch { /* no staging: good */ }
  for (const [name, dir] of [["A", s.a], ["B", s.b]]) {
    try {
      const problems = await fsck(dir);
      if (problems.length) {
        bad.push(`fsck of ${name}: ${problems.map((p) => p.message).join("; ")}`);
      }
    } catch (e) {
      bad.push(`fsck of ${name} throws: ${(e as Error).message}`);
    }
  }
  try {
    const pending = (await status(s.b)).pending;
    if (pending.length) {
      bad.push(`B lists local changes it never made: ${JSON.stringify(pending).slice(0, 300)}`);
    }
  } catch (e) {
    bad.push(`status of B throws: ${(e as Error).message}`);
  }
  const after = snapshot(s.sentinel);
  if (JSON.stringify(after) !== JSON.stringify(sentinel)) bad.push("the sentinel outside changed");
  return bad.map((x) => `${what}: ${x}`);
}

/**
 * Runs one crash point on a freshly built scene and checks the outcome: "done"
 * if the run was not killed and exited 0 (the point was not reached), "failed" if
 * it exited non-zero (recorded as a failure unless an exit 1 was expected).
 */
async function crashAt(
  batch: Batch,
  env: Record<string, string>,
  what: string,
  failures: string[],
  expect: "killed" | "exit1" = "killed",
): Promise<"killed" | "done" | "failed"> {
  const s = await build(batch);
  try {
    const child = spawnCli(["sync", "-C", s.b, s.a], { ...batch.env, ...env });
    const end = await child.output();
    const stderr = new TextDecoder().decode(end.stderr);
    const done = end.code === 0 && !end.signal;
    if (expect === "killed" && end.signal !== "SIGKILL" && !done) {
      failures.push(
        `${what}: expected a SIGKILL, got exit ${end.code} (${end.signal}): ${stderr.trim()}`,
      );
    }
    if (expect === "exit1") {
      if (end.code !== 1) {
        failures.push(
          `${what}: expected exit 1, got ${end.code} (${end.signal}): ${stderr.trim()}`,
        );
      }
      if (/\n\s+at .*:\d+:\d+/.test(stderr)) {
        failures.push(`${what}: stack trace on stderr: ${stderr.slice(0, 300)}`);
      } else if (end.code === 1 && stderr.trim() === "") {
        failures.push(`${what}: exit 1 without a message`);
      }
    }
    failures.push(...await afterCrash(s, batch, what));
    return end.signal === "SIGKILL" ? "killed" : end.code === 0 ? "done" : "failed";
  } finally {
    Deno.removeSync(s.root, { recursive: true });
  }
}

Deno.test({
  name: `crash at every step boundary of ${SEQS} batches of random holder operations converges`,
  sanitizeResources: false,
  fn: async () => {
    const failures: string[] = [];
    let points = 0;
    let steps = 0;
    for (let k = 0; k < SEQS; k++) {
      const batch: Batch = {
        seed: SEED + k,
        env: k % 2 ? { REPLICATOR_BATCH_RECORDS: "8" } : {},
        log: [],
        versions: new Set(),
        records: 0,
      };
      const before = failures.length;
      const tag = (p: string) =>
        `batch ${k} (CRASH_SEED=${batch.seed}${k % 2 ? ", REPLICATOR_BATCH_RECORDS=8" : ""}) ${p}`;
      const honoured = async (point: string) => {
        points++;
        const got = await crashAt(
          batch,
          { REPLICATOR_CRASH_AT: point },
          tag(`CRASH_AT=${point}`),
          failures,
        );
        if (got === "done") {
          failures.push(
            tag(`REPLICATOR_CRASH_AT=${point} was not honoured: the sync was not killed`),
          );
        }
        return got === "killed";
      };
      if (await honoured("commit")) {
        let n = 1;
        for (; n <= 2 * batch.records + 2; n++) {
          const what = tag(`CRASH_AT=step:${n}`);
          if (
            await crashAt(batch, { REPLICATOR_CRASH_AT: `step:${n}` }, what, failures) !== "killed"
          ) break;
          points++;
        }
        steps += n - 1;
        if (n > 2 * batch.records + 2) {
          failures.push(tag(`step:N killed the sync for every N up to ${n - 1}: N is ignored?`));
        }
        if (n === 1) failures.push(tag("step:1 was never reached: a batch with no steps?"));
        for (const p of ["steps", "append", "expect"]) await honoured(p);
      }
      for (const p of ["append", "fsync"]) {
        points++;
        await crashAt(batch, { REPLICATOR_FAIL_AT: p }, tag(`FAIL_AT=${p}`), failures, "exit1");
      }
      if (failures.length > before) {
        failures.push(tag(`op log:\n    ${batch.log.join("\n    ")}`));
      }
    }
    console.log(
      `crash steps: ${SEQS} batches, ${points} crash/failure points exercised, ${steps} steps found`,
    );
    assert(failures.length === 0, `${failures.length} failures:\n${failures.join("\n")}`);
  },
});

// --- Engine-independent crash points: strace fault injection -------------------------
//
// The same batches, killed (SIGKILL on syscall entry, so the call never happens) at
// every invocation of each syscall that changes the tree or the metadata, and failed
// (EIO on fsync/fdatasync, ENOSPC on write) at each of those: this needs no help from
// the engine, so it checks rules 2 and 9 today, at a finer grain than the steps.

const STRACE_SEQS = Number(Deno.env.get("STRACE_SEQS") ?? "1");
const STRACE_OPS = Number(Deno.env.get("STRACE_OPS") ?? "6");
/** Syscalls killed at: every one that changes a directory entry, a mode or time, or data. */
const KILL = [
  "rename",
  "renameat",
  "renameat2",
  "mkdir",
  "mkdirat",
  "rmdir",
  "unlink",
  "unlinkat",
  "symlink",
  "symlinkat",
  "linkat",
  "chmod",
  "fchmod",
  "fchmodat",
  "utimensat",
  "ftruncate",
  "fdatasync",
  "write",
];
/** Syscalls failed, with the error, and at most how many invocations of each. */
const FAIL: [string, string, number][] = [["fdatasync", "EIO", 4], ["fsync", "EIO", 6], [
  "write",
  "ENOSPC",
  12,
]];

/** strace arguments that make the `n`-th `sc` system call do `action` (signal=…, error=…). */
function injectAt(sc: string, action: string, n: number): string[] {
  return ["-o", "/dev/null", "-e", `trace=${sc}`, "-e", `inject=${sc}:${action}:when=${n}`];
}

/** Invocations of each syscall in `names` by one uninterrupted sync of the batch, and its exit. */
async function countSyscalls(
  batch: Batch,
  names: string[],
): Promise<{ counts: Map<string, number>; run: Deno.CommandOutput }> {
  const s = await build(batch);
  const out = `${s.root}/strace.out`;
  try {
    const run = await syncUnderStrace(
      s.b,
      s.a,
      ["-o", out, "-e", `trace=${names.join(",")}`],
      batch.env,
    );
    const counts = new Map<string, number>();
    for (const line of Deno.readTextFileSync(out).split("\n")) {
      const m = /^\d+\s+([a-z0-9_]+)\(/.exec(line);
      if (m) counts.set(m[1], (counts.get(m[1]) ?? 0) + 1);
    }
    return { counts, run };
  } finally {
    Deno.removeSync(s.root, { recursive: true });
  }
}

Deno.test({
  name:
    `strace: SIGKILL or an I/O error at every tree- or metadata-changing syscall of a sync converges`,
  sanitizeResources: false,
  fn: async () => {
    const why = await straceUnusable();
    if (why) {
      console.log(`crash steps (strace): SKIPPED (${why})`);
      return;
    }
    const failures: string[] = [];
    let kills = 0;
    let errors = 0;
    for (let k = 0; k < STRACE_SEQS; k++) {
      const batch: Batch = {
        seed: SEED + 100 + k,
        env: k % 2 ? { REPLICATOR_BATCH_RECORDS: "8" } : {},
        log: [],
        versions: new Set(),
        records: 0,
        ops: STRACE_OPS,
      };
      const tag = (p: string) =>
        `strace batch ${k} (CRASH_SEED=${batch.seed} STRACE_OPS=${STRACE_OPS}${
          k % 2 ? ", REPLICATOR_BATCH_RECORDS=8" : ""
        }) ${p}`;
      const before = failures.length;
      const { counts, run } = await countSyscalls(batch, [
        ...new Set([...KILL, ...FAIL.map((f) => f[0])]),
      ]);
      if (run.code !== 0) {
        failures.push(
          tag(
            `the uninterrupted sync exits ${run.code}: ${
              new TextDecoder().decode(run.stderr).trim()
            }`,
          ),
        );
      }
      for (const sc of KILL) {
        for (let n = 1; n <= (counts.get(sc) ?? 0); n++) {
          const s = await build(batch);
          try {
            const what = tag(`SIGKILL at ${sc} #${n}`);
            const end = await syncUnderStrace(
              s.b,
              s.a,
              injectAt(sc, "signal=SIGKILL", n),
              batch.env,
            );
            if (end.code === 0) continue; // not reached this time (a count that drifted): nothing to check
            kills++;
            if (end.code !== 137 && end.signal !== "SIGKILL") {
              failures.push(
                `${what}: expected a kill, got exit ${end.code}: ${
                  new TextDecoder().decode(end.stderr).trim()
                }`,
              );
            }
            failures.push(...await afterCrash(s, batch, what));
          } finally {
            Deno.removeSync(s.root, { recursive: true });
          }
        }
      }
      for (const [sc, err, most] of FAIL) {
        const total = counts.get(sc) ?? 0;
        const stride = Math.max(1, Math.ceil(total / most));
        for (let n = 1; n <= total; n += stride) {
          const s = await build(batch);
          try {
            const what = tag(`${err} on ${sc} #${n}`);
            const end = await syncUnderStrace(s.b, s.a, injectAt(sc, `error=${err}`, n), batch.env);
            errors++;
            const stderr = new TextDecoder().decode(end.stderr);
            if (end.code !== 0 && end.code !== 1) {
              failures.push(`${what}: exit ${end.code}, expected 1: ${stderr.trim()}`);
            }
            if (/\n\s+at .*:\d+:\d+/.test(stderr)) {
              failures.push(`${what}: stack trace on stderr: ${stderr.slice(0, 300)}`);
            }
            failures.push(...await afterCrash(s, batch, what));
          } finally {
            Deno.removeSync(s.root, { recursive: true });
          }
        }
      }
      if (failures.length > before) failures.push(tag(`op log:\n    ${batch.log.join("\n    ")}`));
    }
    console.log(
      `crash steps (strace): ${STRACE_SEQS} batches, ${kills} kills, ${errors} injected errors`,
    );
    assert(failures.length === 0, `${failures.length} failures:\n${failures.join("\n")}`);
  },
});
