/**
 * Summarises a V8 .cpuprofile (from `deno run --cpu-prof`): where the wall
 * time went, by function (self time) and by replicator function (inclusive
 * time: the time any sample had that function on its stack).
 *
 *   deno run -A bench/profsum.ts FILE.cpuprofile [TOP]
 *
 * V8 samples the JS thread on a timer, so time blocked in a synchronous op
 * (a syscall such as fsync/syncfs, or SQLite) is charged to the JS function
 * that made the call; "(program)" and "(garbage collector)" are V8's own.
 *
 * @module
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface Node {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function label(cf: CallFrame): string {
  const name = cf.functionName || "(anonymous)";
  if (!cf.url) return name;
  const m = cf.url.match(/\/(src\/.*|mod\.ts|bench\/.*)$/);
  const where = m ? m[1] : cf.url.replace(/^.*\//, "");
  return `${name} ${where}:${cf.lineNumber + 1}`;
}

/** A text report: top self-time functions and inclusive time of replicator functions. */
export function summarize(p: Profile, top = 15): string {
  const byId = new Map<number, Node>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) byId.set(n.id, n);
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let total = 0;
  // the delta at i is the time since the previous sample; charge it to sample i
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000; // ms until the next sample
    total += dt;
    const leaf = byId.get(p.samples[i])!;
    const l = label(leaf.callFrame);
    self.set(l, (self.get(l) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!;
      if (!n.callFrame.url.includes("/src/") && !n.callFrame.url.endsWith("/mod.ts")) continue;
      const k = label(n.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + dt);
    }
  }
  const fmt = (m: Map<string, number>, n: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) =>
      `  ${(v / 1000).toFixed(3).padStart(8)} s ${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`
    ).join("\n");
  return [
    `sampled ${(total / 1000).toFixed(3)} s of JS-thread time (${p.samples.length} samples)`,
    `self time (top ${top}):`,
    fmt(self, top),
    `inclusive time of replicator functions (top ${top + 10}):`,
    fmt(incl, top + 10),
  ].join("\n");
}

if (import.meta.main) {
  const [file, top] = Deno.args;
  if (!file) {
    console.error("usage: deno run -A bench/profsum.ts FILE.cpuprofile [TOP]");
    Deno.exit(2);
  }
  console.log(summarize(JSON.parse(Deno.readTextFileSync(file)), top ? Number(top) : 15));
}
