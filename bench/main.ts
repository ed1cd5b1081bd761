/**
 * The bench's one entry point (through bench/run.sh): every part of issue 10
 * in one run, or a small smoke version with --quick (or BENCH_QUICK=1).
 *
 *   startup  start-up of deno, `replicator --help`, `replicator status`  (startup.ts)
 *   local    replicator vs rsync (and rsync --fsync), directory to directory (bench.ts)
 *   ssh      the same over ssh on 127.0.0.1                                 (bench.ts)
 *   lento    sync with lento capturing on both sides vs rsync, two sizes   (lento.ts)
 *   scale    init/clone/no-op sync time and peak RSS on large trees         (scale.ts)
 *
 * BENCH_PARTS (default all, in that order) chooses parts, e.g. "lento scale".
 * Exit status: 0 done; 1 a MISS with BENCH_STRICT=1; 2 something broke (a
 * command failed, a copy differs from its source, a required part could not
 * run); the work directory is then kept. Verdicts never fail a run otherwise.
 *
 * @module
 */

import {
  buildEntry,
  checkout,
  DENO,
  KEEP,
  loadavg,
  log,
  type PartResult,
  QUICK,
  repl,
  rmrf,
  sh,
  STRICT,
  WORK,
} from "./common.ts";
import { localPart, profilePart, sshPart } from "./bench.ts";
import { startupPart } from "./startup.ts";
import { lentoPart } from "./lento.ts";
import { scalePart } from "./scale.ts";

const PARTS: Record<string, () => PartResult | Promise<PartResult>> = {
  startup: startupPart,
  local: localPart,
  ssh: sshPart,
  lento: lentoPart,
  scale: scalePart,
};

const USAGE = `usage: bash bench/run.sh [--quick]   (see bench/README.md)
  --quick   every part at a tiny size (CI's smoke run); also BENCH_QUICK=1
  BENCH_PARTS="${Object.keys(PARTS).join(" ")}" chooses parts`;

function parts(): string[] {
  const v = Deno.env.get("BENCH_PARTS")?.trim();
  const names = v ? v.split(/[\s,]+/) : Object.keys(PARTS);
  const bad = names.filter((n) => !(n in PARTS));
  if (bad.length > 0) throw new Error(`BENCH_PARTS: unknown part(s) ${bad.join(", ")}\n${USAGE}`);
  return names;
}

async function main(): Promise<number> {
  for (const a of Deno.args) {
    if (a === "-h" || a === "--help") {
      console.log(USAGE);
      return 0;
    }
    if (a !== "--quick") {
      console.error(`bench: unknown argument ${a}\n${USAGE}`);
      return 2;
    }
  }
  const names = parts();
  const t0 = performance.now();
  rmrf(WORK);
  Deno.mkdirSync(WORK, { recursive: true });
  const load0 = loadavg();
  const { commit, dirty } = checkout();
  log(`work dir ${WORK}; replicator ${commit}${dirty}; parts ${names.join(" ")}`);
  buildEntry();
  sh(repl("--help")); // warm Deno's module cache so no timing pays for it
  const deno = sh([DENO, "--version"]).out.split(" (")[0];
  console.log(
    `bench${QUICK ? " --quick" : ""}: replicator ${commit}${dirty} (${deno}) vs ${
      sh(["rsync", "--version"]).out.split("\n")[0]
    }`,
  );
  console.log(`machine: ${navigator.hardwareConcurrency} CPUs (shared), loadavg ${load0}`);

  const results: PartResult[] = [];
  for (const n of names) results.push(await PARTS[n]());
  if (names.includes("local")) profilePart();

  const ran = results.filter((r) => r.skipped === null);
  const skipped = results.filter((r) => r.skipped !== null);
  const miss = results.reduce((a, r) => a + r.miss, 0);
  const mins = ((performance.now() - t0) / 60000).toFixed(1);
  console.log(
    `\nbench${QUICK ? " --quick" : ""} done in ${mins} min (loadavg now ${loadavg()}): ran ${
      ran.map((r) => r.detail ? `${r.name} (${r.detail})` : r.name).join(", ") || "nothing"
    }; skipped ${skipped.map((r) => `${r.name} (${r.skipped})`).join(", ") || "none"}; ${
      miss === 0 ? "all PASS" : `${miss} MISS`
    }${miss > 0 && !STRICT ? " (verdicts only)" : ""}${
      ran.length > 0 ? "; every copy verified equal to its source" : ""
    }`,
  );
  if (!KEEP) rmrf(WORK);
  else console.log(`kept ${WORK}`);
  return STRICT && miss > 0 ? 1 : 0;
}

main().then(Deno.exit, (e) => {
  console.error(`\nBENCH FAILED: ${(e as Error).message}`);
  try {
    if (Deno.statSync(WORK).isDirectory) console.error(`work dir kept for inspection: ${WORK}`);
  } catch { /* failed before it was made */ }
  Deno.exit(2);
});
