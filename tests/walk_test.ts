/**
 * The walk lists each directory beneath the walk's own descriptor of the
 * root: a directory a racing user swaps for a symlink to elsewhere while the
 * walk runs is reported unreadable, never listed through the link; a scoped
 * scan (lento's) does not look through a parent that is a symlink either
 * (its check of the parents and its stat are now one confined resolution;
 * the race between the two that this closes is not reproduced here).
 */

import { assert, assertEquals } from "./assert.ts";
import { put, tempDir } from "./helpers.ts";
import { walkInOrder } from "../src/capture/walk.ts";
import { scanScope } from "../src/capture/scope.ts";

Deno.test("a directory swapped for a symlink mid-walk is not listed through it", async () => {
  const root = await tempDir();
  const outside = await tempDir();
  put(`${root}/a/b/inside`, "in");
  put(`${outside}/b/secret`, "out");
  const out = { unreadable: [] as string[], problems: [] as string[] };
  const seen: string[] = [];
  for (const [path] of walkInOrder(root, out)) {
    seen.push(path);
    if (path === "a/b") {
      // Listed a/ already, about to list a/b: a/ becomes a link to a tree with a b/ too.
      Deno.renameSync(`${root}/a`, `${root}/a-moved`);
      Deno.symlinkSync(outside, `${root}/a`);
    }
  }
  assert(!seen.includes("a/b/secret"), `listed through the link: ${seen.join(", ")}`);
  assertEquals(out.unreadable, ["a/b"]);
  assert(/cannot list a\/b: a path component is a symlink/.test(out.problems.join("\n")));
});

Deno.test("a scoped scan does not look through a parent that is a symlink", async () => {
  const root = await tempDir();
  const outside = await tempDir();
  put(`${outside}/b/secret`, "out");
  Deno.symlinkSync(outside, `${root}/a`);
  const none = { get: () => undefined, under: () => [] };
  const found = scanScope(root, none, ["a/b/secret", "a/b"]);
  const named = found.changes.map((c) => c.path);
  assert(!named.some((p) => p.startsWith("a/b")), `recorded through the link: ${named.join(", ")}`);
  assertEquals(found.problems, []);
});
