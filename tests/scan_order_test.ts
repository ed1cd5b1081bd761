/**
 * A full scan merges the walk and the index in path order (SQLite's UTF-8
 * byte order). Names where that order and JavaScript's string order disagree
 * (beyond U+FFFF against U+E000..U+FFFF), and names sorting around "/", must
 * neither make spurious changes nor hide real ones.
 */

import { assertEquals } from "./assert.ts";
import { cli, pair, put } from "./helpers.ts";
import { openReplica } from "../src/apply/open.ts";
import { scan } from "../src/capture/scan.ts";
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
