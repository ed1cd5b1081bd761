/** compile.sh builds dist/replicator, or fails with one clear sentence (no stack trace). */

import { assert, assertEquals, assertMatch } from "./assert.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function compile(env: Record<string, string>) {
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}/compile.sh`],
    env,
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("compile.sh refuses a DENORT_BIN that is not there, in one sentence", async () => {
  const r = await compile({ DENORT_BIN: "/nonexistent/denort" });
  assertEquals(r.code, 1);
  assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  assertMatch(r.stderr, /^compile\.sh: DENORT_BIN=\/nonexistent\/denort is not an executable file/);
});

Deno.test("compile.sh without DENORT_BIN builds a working binary or says why not", async () => {
  const r = await compile({ DENORT_BIN: "" });
  if (r.code === 0) {
    const help = await new Deno.Command(`${ROOT}/dist/replicator`, { args: ["--help"] }).output();
    assertEquals(help.code, 0);
    assert(new TextDecoder().decode(help.stdout).includes("replicator init"));
  } else {
    assertEquals(r.code, 1);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertMatch(r.stderr, /no Deno runtime base .* set DENORT_BIN/);
    assert(!/\bat \S+:\d+/.test(r.stderr), "no stack trace");
  }
});
