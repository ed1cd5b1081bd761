/**
 * Benchmark: sync after a few changes with lento capturing (fanotify), against
 * `rsync -a` of the same change, on a large tree. Run as root (fanotify):
 *
 *   node_modules/.bin/deno run -A bench/lento.ts
 *
 * Environment: LENTO_FILES (default 200000 files of 1–2 KiB), LENTO_CHANGES
 * (default 10), LENTO_REPS (default 3), BENCH_DIR (parent of the work dir),
 * BENCH_KEEP=1 keeps it. Target: rsync / replicator ≥ 10.
 *
 * @module
 */

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const DENO = `${REPO}/node_modules/.bin/deno`;
const FILES = Number(Deno.env.get("LENTO_FILES") ?? "200000");
const CHANGES = Number(Deno.env.get("LENTO_CHANGES") ?? "10");
const REPS = Number(Deno.env.get("LENTO_REPS") ?? "3");
const WORK = `${Deno.env.get("BENCH_DIR") ?? "/tmp"}/replicator-lento-bench-${Date.now()}`;
const SRC = `${WORK}/src`;
const DST = `${WORK}/dst`;
const RSYNC_DST = `${WORK}/dst-rsync`;

function log(msg: string): void {
  console.error(`[lento-bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

async function run(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const s = (performance.now() - t0) / 1000;
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return s;
}

const replicator = (...args: string[]) =>
  run(DENO, ["run", "-A", "--quiet", `${REPO}/mod.ts`, ...args]);

function pathOf(i: number): string {
  return `${SRC}/d${i % 100}/e${Math.floor(i / 100) % 40}/f${i}`;
}

function generate(): void {
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  const buf = new Uint8Array(2048);
  for (let i = 0; i < FILES; i++) {
    const p = pathOf(i);
    if (i < 4000) Deno.mkdirSync(p.slice(0, p.lastIndexOf("/")), { recursive: true });
    for (let k = 0; k < 16; k++) buf[k] = rnd() & 0xff;
    Deno.writeFileSync(p, buf.subarray(0, 1024 + (rnd() % 1024)));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function waitForRescan(child: Deno.ChildProcess): Promise<void> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("rescanned")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`lento exited: ${seen}`);
    seen += value;
  }
  reader.releaseLock();
}

Deno.mkdirSync(WORK, { recursive: true });
log(`generating ${FILES} files in ${SRC}`);
generate();
log(`init: ${(await replicator("init", SRC, "--host", "src")).toFixed(1)} s`);
log(`clone: ${(await replicator("clone", SRC, DST, "--host", "dst")).toFixed(1)} s`);
log(
  `rsync copy: ${
    (await run("rsync", ["-a", "--exclude=.replicator", `${SRC}/`, `${RSYNC_DST}/`])).toFixed(1)
  } s`,
);
const noopScan = await replicator("sync", "-C", DST, SRC);
const rsyncNoop = await run("rsync", [
  "-a",
  "--delete",
  "--exclude=.replicator",
  `${SRC}/`,
  `${RSYNC_DST}/`,
]);

const lento = new Deno.Command(DENO, {
  args: ["run", "-A", "--quiet", `${REPO}/mod.ts`, "lento", "-v", "-C", SRC],
  stdin: "null",
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const t0 = performance.now();
await waitForRescan(lento);
log(`lento armed (fanotify) and rescanned in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

const ours: number[] = [];
const theirs: number[] = [];
for (let rep = 0; rep < REPS; rep++) {
  for (let k = 0; k < CHANGES; k++) {
    const i = (rep * 7919 + k * 104729) % FILES;
    Deno.writeTextFileSync(pathOf(i), `changed in round ${rep}, file ${k}\n`);
  }
  ours.push(await replicator("sync", "-C", DST, SRC));
  theirs.push(
    await run("rsync", ["-a", "--delete", "--exclude=.replicator", `${SRC}/`, `${RSYNC_DST}/`]),
  );
  log(
    `round ${rep + 1}: replicator ${ours.at(-1)!.toFixed(3)} s, rsync ${
      theirs.at(-1)!.toFixed(3)
    } s`,
  );
}
lento.kill("SIGTERM");
await lento.status;

const check = await new Deno.Command("diff", {
  args: ["-rq", "--exclude=.replicator", SRC, DST],
}).output();
if (!check.success) {
  throw new Error(`destination differs:\n${new TextDecoder().decode(check.stdout)}`);
}

const r = median(ours);
const q = median(theirs);
console.log(
  `\ntree: ${FILES} files of 1-2 KiB; ${CHANGES} files changed per round; median of ${REPS}`,
);
console.log(
  `no-op sync without lento (scan):  replicator ${noopScan.toFixed(3)} s, rsync ${
    rsyncNoop.toFixed(3)
  } s`,
);
console.log(`sync after ${CHANGES} changes, lento capturing: replicator ${r.toFixed(3)} s`);
console.log(`rsync -a of the same change:                 rsync ${q.toFixed(3)} s`);
console.log(
  `rsync / replicator = ${(q / r).toFixed(1)}x (target >= 10x): ${q / r >= 10 ? "PASS" : "MISS"}`,
);
if (Deno.env.get("BENCH_KEEP") !== "1") await Deno.remove(WORK, { recursive: true });
