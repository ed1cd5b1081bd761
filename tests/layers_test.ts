/**
 * The import graph is one-way: each layer of src/ imports only from layers
 * below it, so the apply engine (which owns the integrity invariants) is not
 * reached around, and volume/ never reaches up into sync or apply.
 */

import { assertEquals } from "./assert.ts";

const SRC = new URL("../src/", import.meta.url).pathname;

/** Layers, lowest first. A module may import from its own layer or any below. */
const LAYERS: string[][] = [
  ["errors.ts", "memory.ts", "timer.ts", "fs", "kml", "expect", "wire", "transport"],
  ["volume"],
  ["capture", "apply"],
  ["sync"],
  ["replica.ts", "fsck.ts"],
  ["cli"],
];

function layerOf(rel: string): number {
  const top = rel.split("/")[0];
  const i = LAYERS.findIndex((l) => l.includes(top));
  if (i < 0) throw new Error(`src/${rel}: not in any layer; add it to LAYERS in this test`);
  return i;
}

function* modules(dir = ""): Generator<string> {
  for (const e of Deno.readDirSync(SRC + dir)) {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory) yield* modules(rel);
    else if (e.name.endsWith(".ts")) yield rel;
  }
}

Deno.test("src/ imports only downwards (fs, kml, expect, wire < volume < capture, apply < sync < replica < cli)", () => {
  const upward: string[] = [];
  for (const rel of modules()) {
    const text = Deno.readTextFileSync(SRC + rel);
    for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/gms)) {
      const target = new URL(m[1], `file://${SRC}${rel}`).pathname;
      if (!target.startsWith(SRC)) continue;
      const to = target.slice(SRC.length);
      if (layerOf(to) > layerOf(rel)) upward.push(`${rel} imports ${to}`);
    }
  }
  assertEquals(upward, []);
});
