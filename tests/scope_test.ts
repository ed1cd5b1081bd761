/**
 * A scoped scan over the paths that events name records exactly what a full
 * scan records: the property lento's capture relies on.
 */

import { assertEquals } from "./assert.ts";
import { put, tempDir } from "./helpers.ts";
import { mapIndex, scan } from "../src/capture/scan.ts";
import { type IndexView, scanScope } from "../src/capture/scope.ts";
import type { Entry } from "../src/volume/state.ts";
import { isWithin } from "../src/fs/paths.ts";
import { Op } from "../src/kml/record.ts";

function view(index: Map<string, Entry>): IndexView {
  return {
    get: (p) => index.get(p),
    under: (d) => [...index].filter(([q]) => q !== d && isWithin(q, d)),
  };
}

function canonical(changes: { op: Op; path: string; target: string; digest: string }[]): string[] {
  return changes.map((c) => `${Op[c.op]} ${c.path} ${c.target} ${c.digest}`).sort();
}

Deno.test("scoped scans of event paths equal full scans over 300 random rounds", async () => {
  const root = await tempDir();
  let seed = 7;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const index = new Map<string, Entry>();
  const files = () => [...index].filter(([, e]) => e.type === "f").map(([p]) => p);
  const dirs = () => [...index].filter(([, e]) => e.type === "d").map(([p]) => p);
  const pick = <T>(xs: T[]) => xs[rnd(xs.length)];
  let n = 0;
  for (let round = 0; round < 300; round++) {
    const touched: string[] = [];
    for (let k = 1 + rnd(4); k > 0; k--) {
      const dir = rnd(3) === 0 || dirs().length === 0 ? "" : pick(dirs());
      const fresh = `${dir ? dir + "/" : ""}${rnd(2) ? "f" : "d"} ${n++}`;
      try {
        switch (rnd(9)) {
          case 0:
            put(`${root}/${fresh}`, `new ${n}`);
            touched.push(fresh);
            break;
          case 1:
            Deno.mkdirSync(`${root}/${fresh}`);
            put(`${root}/${fresh}/inner`, "x");
            touched.push(fresh, `${fresh}/inner`);
            break;
          case 2: {
            const f = pick(files());
            if (f) put(`${root}/${f}`, `changed ${n}`), touched.push(f);
            break;
          }
          case 3: {
            const f = pick(files());
            if (f) Deno.chmodSync(`${root}/${f}`, 0o600 + rnd(0o100)), touched.push(f);
            break;
          }
          case 4: {
            const f = pick(files());
            if (f) Deno.removeSync(`${root}/${f}`), touched.push(f);
            break;
          }
          case 5: {
            const f = pick([...files(), ...dirs()]);
            if (f && !isWithin(fresh, f)) {
              Deno.renameSync(`${root}/${f}`, `${root}/${fresh}`), touched.push(f, fresh);
            }
            break;
          }
          case 6: {
            const d = pick(dirs());
            if (d && rnd(2)) Deno.removeSync(`${root}/${d}`, { recursive: true }), touched.push(d);
            else if (d) { // replace the directory by another one at the same path
              Deno.renameSync(`${root}/${d}`, `${root}/moved ${n}`);
              Deno.mkdirSync(`${root}/${d}`);
              touched.push(d, `moved ${n}`);
            }
            break;
          }
          case 7:
            Deno.symlinkSync(`target ${n}`, `${root}/${fresh}`);
            touched.push(fresh);
            break;
          default: {
            const f = pick(files());
            if (f) Deno.utimeSync(`${root}/${f}`, 1_000_000 + n, 1_000_000 + n), touched.push(f);
          }
        }
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e; // picked a path a previous op removed
      }
    }
    const full = scan(root, mapIndex(index));
    const scoped = scanScope(root, view(index), touched);
    assertEquals(
      canonical(scoped.changes),
      canonical(full.changes),
      `round ${round}: ${touched.join(" | ")}`,
    );
    assertEquals(new Map([...scoped.updates].sort()), new Map([...full.updates].sort()));
    for (const [p, e] of full.updates) e ? index.set(p, e) : index.delete(p);
  }
});
