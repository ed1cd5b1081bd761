/**
 * A full scan merges the walk and the index in path order (SQLite's UTF-8
 * byte order). Names where that order and JavaScript's string order disagree
 * (beyond U+FFFF against U+E000..U+FFFF), and names sorting around "/", must
 * neither make spurious changes nor hide real ones. A name that is not UTF-8
 * cannot be recorded: it is reported, not skipped in silence.
 */

import { assertEquals, assertMatch } from "./assert.ts";
import { cli, holderAndReplica, pair, put } from "./helpers.ts";
import { openReplica } from "../src/apply/open.ts";
import { scan, scanNew } from "../src/capture/scan.ts";
import { Op } from "../src/kml/record.ts";

const NAMES = ["a/x", "a.txt", "a0", "a-b/y", "é", "ｶ", "ｶｶ/k", "😀", "😀x/inner/f", "z"];

Deno.test("a full scan in path order: names sorting around '/' and beyond U+FFFF", async () => {
  const { a } = await pair();
  for (const n of NAMES) put(`${a}/${n}`, `content of ${n}\n`);
  assertEquals((await cli(["init", a, "--host", "alpha"])).code, 0);
  const vol = openReplica(a);
  try {
    const visited: string[] = [];
    const quiet = scan(vol.root, vol.state, (p) => visited.push(p));
    assertEquals([quiet.changes, quiet.updates.size], [[], 0], "an unchanged tree: nothing");
    assertEquals(visited.length, new Set(visited).size, "each path walked once");
    assertEquals(visited.includes("😀x/inner/f") && visited.includes("ｶｶ/k"), true);

    put(`${a}/ｶｶ/k`, "changed\n");
    Deno.removeSync(`${a}/😀x/inner/f`);
    put(`${a}/a/new`, "new\n");
    const found = scan(vol.root, vol.state);
    const described = found.changes.map((c) => `${Op[c.op]} ${c.path}`).sort();
    assertEquals(described, [
      "Setattr a", // its mtime, moved by the new entry
      "Setattr 😀x/inner",
      "Store a/new",
      "Store ｶｶ/k",
      "Unlink 😀x/inner/f",
    ]);
  } finally {
    vol.close();
  }
});

Deno.test("a first scan recorded in chunks of 2 entries: parents first, hard links across chunks, nothing left over", async () => {
  const { a } = await pair();
  put(`${a}/d/e/f`, "f\n");
  put(`${a}/d/g`, "g\n");
  put(`${a}/z/late`, "late\n");
  Deno.linkSync(`${a}/d/g`, `${a}/z/g-again`);
  Deno.linkSync(`${a}/d/g`, `${a}/zz`);
  assertEquals((await cli(["init", a, "--host", "alpha"])).code, 0);
  const vol = openReplica(a);
  try {
    vol.state.transaction(() => { // as if init had recorded nothing yet
      for (const [p] of [...vol.state.ordered()]) vol.state.deleteEntry(p);
    });
    const ops: string[] = [];
    for (const found of scanNew(vol.root, vol.state, 2)) {
      vol.recordLocal(found.changes, found.updates);
      ops.push(
        ...found.changes.map((c) => `${Op[c.op]} ${c.path}${c.target ? ` ${c.target}` : ""}`),
      );
    }
    assertEquals(ops, [
      "Mkdir d",
      "Mkdir d/e",
      "Store d/e/f",
      "Store d/g",
      "Mkdir z",
      "Link z/g-again d/g",
      "Store z/late",
      "Link zz d/g",
    ]);
    const again = scan(vol.root, vol.state);
    assertEquals([again.changes, again.updates.size], [[], 0], "the index is complete");
  } finally {
    vol.close();
  }
});

Deno.test("a name that is not UTF-8 is reported (exit 1), not silently skipped; the rest syncs", async () => {
  const { a, b } = await holderAndReplica((a) => put(`${a}/keep`, "k"));
  put(`${a}/d/good`, "fine\n");
  const bad = await new Deno.Command("bash", {
    args: ["-c", `printf x > "$1/d/$(printf 'bad\\377\\376name')"`, "_", a],
  }).output();
  assertEquals(bad.code, 0);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 1, r.stderr);
  assertMatch(r.stderr, /skipping d\/bad\\xff\\xfename: its name is not UTF-8; rename it/);
  assertEquals(Deno.readTextFileSync(`${b}/d/good`), "fine\n");
});
