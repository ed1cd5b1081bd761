/**
 * Part "startup" of the bench: how long a command takes before it does
 * anything. Median of BENCH_STARTUP_RUNS runs (default 10 [5 under --quick])
 * each of `deno run -A` of an empty script (Deno's own floor), `replicator
 * --help` (loading the program) and `replicator status -C V` on a volume of
 * five files (opening a volume: the cheapest real command), interleaved so
 * load spikes hit all three alike. Target: status ≤ BENCH_STATUS_MAX_S (0.15 s).
 *
 * @module
 */

import {
  DENO,
  env,
  grid,
  log,
  median,
  type PartResult,
  q,
  repl,
  sh,
  timed,
  type Timing,
  verdict,
  WORK,
} from "./common.ts";

const RUNS = Math.max(1, env("BENCH_STARTUP_RUNS", q(5, 10)));
const STATUS_MAX_S = env("BENCH_STATUS_MAX_S", 0.15);

export function startupPart(): PartResult {
  const empty = `${WORK}/startup/empty.ts`;
  const vol = `${WORK}/startup/vol`;
  Deno.mkdirSync(vol, { recursive: true });
  Deno.writeTextFileSync(empty, "");
  for (let i = 0; i < 5; i++) Deno.writeTextFileSync(`${vol}/f${i}.txt`, `file ${i}\n`);
  sh(repl("init", vol, "--host", "startup"));
  const cases: { name: string; argv: string[]; runs: Timing[] }[] = [
    { name: "deno run -A empty.ts", argv: [DENO, "run", "-A", "--quiet", empty], runs: [] },
    { name: "replicator --help", argv: repl("--help"), runs: [] },
    { name: "replicator status -C V", argv: repl("status", "-C", vol), runs: [] },
  ];
  for (const c of cases) sh(c.argv); // warm the module cache (and the page cache)
  sh(["sync"]);
  for (let i = 0; i < RUNS; i++) {
    for (const c of cases) c.runs.push(timed(c.argv, { noFlush: true }));
  }
  const lines = [["command", "median s", "min s", "max s", "peak RSS MB"]];
  for (const c of cases) {
    const walls = c.runs.map((t) => t.wall);
    lines.push([
      c.name,
      median(walls).toFixed(3),
      Math.min(...walls).toFixed(3),
      Math.max(...walls).toFixed(3),
      (Math.max(...c.runs.map((t) => t.rssKiB)) / 1024).toFixed(1),
    ]);
    log(`startup: ${c.name}: ${walls.map((w) => w.toFixed(3)).join(" ")}`);
  }
  const [deno, help, status] = cases.map((c) => median(c.runs.map((t) => t.wall)));
  const ok = status <= STATUS_MAX_S;
  console.log(`\n== startup: median of ${RUNS} runs each (interleaved), V = a volume of 5 files`);
  console.log(grid(lines));
  console.log(
    `replicator --help is ${((help - deno) * 1000).toFixed(0)} ms above Deno's floor; ` +
      `status ${status.toFixed(3)} s (target <= ${STATUS_MAX_S} s): ${verdict(ok)}`,
  );
  return { name: "startup", skipped: null, miss: ok ? 0 : 1 };
}

if (import.meta.main) {
  console.error("bench/startup.ts is a part of the bench: run `bash bench/run.sh`");
  Deno.exit(2);
}
