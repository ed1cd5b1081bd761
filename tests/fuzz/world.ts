/**
 * The world a campaign fuzzes: a served replica with files, directories and
 * symlinks of every kind, its clone (whose identity the fuzzer borrows), a
 * sentinel tree beside them, and snapshots of what must not change.
 */

import { assertEquals } from "../assert.ts";
import { cli, makeSentinel, pair, prng, put, snapshot } from "../helpers.ts";
import { frameLength } from "../../src/kml/record.ts";
import { bytes } from "./random.ts";
import { text } from "./bytes.ts";
import { SEED } from "./settings.ts";

/** A served replica `vol` (alpha), its clone (beta, whose identity the fuzzer borrows). */
export interface World {
  dir: string;
  vol: string;
  clone: string;
  sentinel: string;
  volumeId: string;
  cloneHost: string;
  serverHost: string;
  kml: Uint8Array;
  /** Offsets where a record starts, and the log's end. */
  boundaries: Set<number>;
  /** The volume's regular files and their bytes. */
  files: Map<string, Uint8Array>;
  /** Paths in the volume that exist but are no regular file, or lead through a symlink. */
  others: string[];
}

export async function makeWorld(): Promise<World> {
  const { dir, a, b } = await pair();
  const sentinel = `${dir}/sentinel`;
  makeSentinel(sentinel);
  const r = prng(SEED);
  const files = new Map<string, Uint8Array>([
    ["f", text("hi\n")],
    ["empty", new Uint8Array()],
    ["d/g", text("gee\n")],
    ["d/e/h", text("deep\n")],
    ["sp ace", text("x")],
    ["ünï/ç", text("unicode\n")],
    [".hidden", text("dot\n")],
    ["-dash", text("dash\n")],
    ["blob", bytes(r, 3000)],
    ["text", text("a line that deflates well\n".repeat(500))],
  ]);
  for (const [p, c] of files) put(`${a}/${p}`, c);
  Deno.symlinkSync("../sentinel", `${a}/escape`);
  Deno.symlinkSync("/etc", `${a}/abs`);
  Deno.symlinkSync("f", `${a}/selflink`);
  Deno.symlinkSync("d", `${a}/dirlink`);
  Deno.symlinkSync("nowhere", `${a}/dangling`);
  let run = await cli(["init", a, "--host", "alpha"]);
  assertEquals(run.code, 0, run.stderr);
  run = await cli(["clone", a, b, "--host", "beta"]);
  assertEquals(run.code, 0, run.stderr);
  const cfg = (d: string) => JSON.parse(Deno.readTextFileSync(`${d}/.replicator/volume.json`));
  const [ca, cb] = [cfg(a), cfg(b)];
  assertEquals(ca.volumeId, cb.volumeId);
  const w: World = {
    dir,
    vol: a,
    clone: b,
    sentinel,
    volumeId: cb.volumeId,
    cloneHost: cb.hostId,
    serverHost: ca.hostId,
    kml: new Uint8Array(),
    boundaries: new Set(),
    files,
    others: [
      "d",
      "d/e",
      "ünï",
      "escape",
      "abs",
      "selflink",
      "dirlink",
      "dangling",
      "escape/victim",
      "escape/file1",
      "escape/sub/inner",
      "escape/link",
      "abs/passwd",
      "abs/hostname",
      "dirlink/g",
      "selflink/x",
    ],
  };
  readKml(w);
  return w;
}

/** (Re)reads the served replica's log and where its records start. */
export function readKml(w: World): void {
  w.kml = Deno.readFileSync(`${w.vol}/.replicator/kml`);
  w.boundaries = new Set();
  let at = 64;
  while (at < w.kml.length) {
    w.boundaries.add(at);
    at += frameLength(w.kml.subarray(at));
  }
  assertEquals(at, w.kml.length, "the log ends at a record boundary");
  w.boundaries.add(at);
}

/** Snapshots of what must not change: outside the volume, and the volume's tree. */
export function pictures(w: World) {
  const tree = Object.fromEntries(
    Object.entries(snapshot(w.vol)).filter(([k]) =>
      k !== ".replicator" && !k.startsWith(".replicator/")
    ),
  );
  return { sentinel: snapshot(w.sentinel), clone: snapshot(w.clone), tree };
}
