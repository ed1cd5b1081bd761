/**
 * Which record paths are refused (src/fs/paths.ts): the rule every path a
 * peer sends passes through, as a table of names that look alike.
 */

import { assertEquals } from "./assert.ts";
import { checkRelativePath } from "../src/fs/paths.ts";
import { HostilePeerError } from "../src/errors.ts";

/** The reason checkRelativePath gives for `p`, or "" if it accepts it. */
function verdict(p: string): string {
  try {
    checkRelativePath(p);
    return "";
  } catch (e) {
    if (!(e instanceof HostilePeerError)) throw e;
    return e.message.slice(e.message.lastIndexOf(": ") + 2);
  }
}

Deno.test("paths: names that only look like '.', '..' or the metadata directory are accepted", () => {
  const fine = [
    "a",
    "a/b/c",
    "...",
    ".hidden",
    "a/..b",
    "a/b..",
    "..a/b",
    "a./.b",
    "x/.replicator",
  ];
  fine.push(".replicator2", ".replicatorx/y", "é/ü", "a b/c\td");
  assertEquals(fine.map(verdict), fine.map(() => ""));
});

Deno.test("paths: empty, absolute, NUL, non-normalised and metadata paths are refused", () => {
  const cases: [string, string][] = [
    ["", "empty"],
    ["/a", "absolute"],
    ["/", "absolute"],
    ["a\0b", "contains NUL"],
    [".", "not normalised"],
    ["..", "not normalised"],
    ["a/", "not normalised"],
    ["a//b", "not normalised"],
    ["a/./b", "not normalised"],
    ["a/../b", "not normalised"],
    ["a/..", "not normalised"],
    ["../a", "not normalised"],
    ["./a", "not normalised"],
    [".replicator", "inside the metadata directory"],
    [".replicator/kml", "inside the metadata directory"],
  ];
  assertEquals(cases.map(([p]) => [p, verdict(p)]), cases);
});
