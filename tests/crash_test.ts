/**
 * Kills a running sync (SIGKILL) at random moments during a large transfer and
 * checks after each kill that nothing is partial, nothing is lost, fsck is
 * clean, and a re-run converges.
 */

import { createHash } from "node:crypto";
import { assert, assertEquals } from "./assert.ts";
import { cli, listing, put, spawnCli, tempDir } from "./helpers.ts";

const FILES = 120;
const SMALL = 48 * 1024;
const BIG = [0, 1, 2].map((i) => `big/b${i}`);
const BIG_SIZE = 6 * 1024 * 1024;
const ROUNDS = Number(Deno.env.get("CRASH_ROUNDS") ?? "12");
/** Small transactions, so that kills also land between the batches of one pull. */
const env = { REPLICATOR_BATCH_RECORDS: "40" };

/** Deterministic content of `name` at version `v`. */
function content(name: string, v: number): Uint8Array {
  const size = name.startsWith("big/") ? BIG_SIZE : SMALL + (name.length * 97) % 4096;
  const out = new Uint8Array(size);
  const seed = createHash("sha256").update(`${name}@${v}`).digest();
  for (let i = 0; i < size; i += 32) out.set(seed.subarray(0, Math.min(32, size - i)), i);
  out[0] = v & 0xff;
  return out;
}

function digest(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

function names(): string[] {
  return [...Array.from({ length: FILES }, (_, i) => `d${i % 7}/f${i}`), ...BIG];
}

/** Writes version `v` of everything on the source, plus a new, a renamed and a deleted file. */
function writeVersion(a: string, v: number, allowed: Map<string, Set<string>>): void {
  for (const n of names()) {
    const c = content(n, v);
    put(`${a}/${n}`, c);
    allow(allowed, n, digest(c));
  }
  const extra = content(`new${v}`, v);
  put(`${a}/new${v}`, extra);
  allow(allowed, `new${v}`, digest(extra));
  if (v > 1) {
    Deno.renameSync(`${a}/new${v - 1}`, `${a}/moved${v}`);
    allow(allowed, `moved${v}`, digest(content(`new${v - 1}`, v - 1)));
  }
  if (v > 2) Deno.removeSync(`${a}/moved${v - 1}`);
}

function allow(allowed: Map<string, Set<string>>, name: string, d: string): void {
  if (!allowed.has(name)) allowed.set(name, new Set());
  allowed.get(name)!.add(d);
}

/** Every file in the tree is one whole version that the source wrote under that name. */
function checkWhole(b: string, allowed: Map<string, Set<string>>, when: string): void {
  for (const [p, desc] of Object.entries(listing(b))) {
    if (desc.startsWith("dir")) continue;
    assert(allowed.has(p), `${when}: unexpected entry ${p} in the tree`);
    assert(allowed.get(p)!.has(desc.split(" ")[4]), `${when}: ${p} is not a whole version`);
  }
}

Deno.test({
  name: `SIGKILL at ${ROUNDS} random moments of a large sync leaves every file whole`,
  sanitizeResources: false,
  fn: async () => {
    const dir = await tempDir();
    const a = `${dir}/a`;
    const b = `${dir}/b`;
    const allowed = new Map<string, Set<string>>();
    writeVersion(a, 1, allowed);
    assertEquals((await cli(["init", a, "--host", "alpha"])).code, 0);
    assertEquals((await cli(["clone", a, b, "--host", "beta"])).code, 0);
    let seed = Number(Deno.env.get("CRASH_SEED") ?? "20261125");
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    // Calibrate: how long does one round's sync take on this machine? A round that
    // finishes before its kill (the machine got faster) lowers the estimate and is
    // made up for, so that ROUNDS kills land mid-run however busy the machine is.
    writeVersion(a, 2, allowed);
    const t0 = performance.now();
    assertEquals((await cli(["sync", "-C", b, a], { env })).code, 0);
    let full = performance.now() - t0;
    let killed = 0;
    for (let v = 3; killed < ROUNDS && v < 3 + 3 * ROUNDS; v++) {
      writeVersion(a, v, allowed);
      const started = performance.now();
      const child = spawnCli(["sync", "-C", b, a], env);
      const delay = Math.floor(random() * full);
      await new Promise((ok) => setTimeout(ok, delay));
      try {
        child.kill("SIGKILL");
      } catch { /* it had finished */ }
      const end = await child.output();
      if (end.signal === "SIGKILL") killed++;
      else {
        assertEquals(end.code, 0, new TextDecoder().decode(end.stderr));
        full = Math.min(full, performance.now() - started);
      }
      checkWhole(b, allowed, `round ${v}, killed after ${delay} ms, before recovery`);
      for (const side of [a, b]) {
        const f = await cli(["fsck", "-C", side], { env });
        assertEquals([f.code, f.stderr], [0, ""], `fsck of ${side} after a kill at ${delay} ms`);
      }
      checkWhole(b, allowed, `round ${v}, after recovery`);
      const r = await cli(["sync", "-C", b, a], { env });
      assertEquals(r.code, 0, `${dir}: round ${v} after kill at ${delay}: ${r.stderr}`);
      assertEquals(listing(b), listing(a), `round ${v}: re-run converges`);
    }
    assertEquals(killed, ROUNDS, `only ${killed} runs were killed mid-way`);
  },
});
