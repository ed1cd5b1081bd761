/**
 * compile.sh builds dist/replicator, or fails with one clear sentence (no stack trace).
 *
 * Every run works on a scratch copy of what compile.sh needs (compile.sh,
 * mod.ts, deno.json, package files, src/, and a node_modules symlink), so no
 * dist/ left over from an earlier build can stand in for the one under test,
 * and parallel runs do not share an output file.
 *
 * These machines have no Deno runtime base (denort) and cannot download one;
 * so that the build itself is still tested, one test hands `deno compile` a
 * stand-in base (a small ELF executable, /usr/bin/true) through DENORT_BIN:
 * deno compile then really writes dist/replicator, that base with the
 * program's modules and its run options appended, and the test reads those
 * back (entry point, permissions, the CLI's sources). Where a real denort is
 * available (DENORT_BIN set for the tests, or a cached base in DENO_DIR), the
 * build must succeed and the binary must answer --help.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { V8_FLAGS } from "../src/memory.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const dec = new TextDecoder();

/** A scratch copy of the files compile.sh builds from. */
async function scratch(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "replicator-compile-" });
  const files = ["compile.sh", "mod.ts", "deno.json", "package.json", "package-lock.json", "src"];
  const cp = await new Deno.Command("cp", {
    args: ["-r", ...files.map((f) => `${ROOT}/${f}`), dir],
    stderr: "piped",
  }).output();
  assertEquals(cp.code, 0, dec.decode(cp.stderr));
  Deno.symlinkSync(`${ROOT}/node_modules`, `${dir}/node_modules`);
  return dir;
}

async function compile(dir: string, env: Record<string, string>) {
  const out = await new Deno.Command("bash", {
    args: [`${dir}/compile.sh`],
    env,
    stdin: "null",
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function withScratch(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await scratch();
  try {
    await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

function isExecutableFile(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The pinned deno's version ("2.9.6"). */
async function denoVersion(): Promise<string> {
  const out = await new Deno.Command(`${ROOT}/node_modules/.bin/deno`, { args: ["--version"] })
    .output();
  return dec.decode(out.stdout).split("\n")[0].split(" ")[1];
}

/** A real denort deno compile can use here without a download, if any: how it is found. */
async function denortAvailable(): Promise<string | null> {
  const env = Deno.env.get("DENORT_BIN");
  if (env && isExecutableFile(env)) return `DENORT_BIN=${env}`;
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;
  const release = `${denoDir}/dl/release/v${await denoVersion()}`;
  try {
    for (const e of Deno.readDirSync(release)) {
      if (e.name.startsWith("denort-")) return `${release}/${e.name}`;
    }
  } catch {
    // no cache
  }
  return null;
}

/** A small ELF executable to stand in for denort. */
function standInBase(): string {
  for (const p of ["/usr/bin/true", "/bin/true"]) if (isExecutableFile(p)) return p;
  throw new Error("no /usr/bin/true to stand in for denort");
}

Deno.test("compile.sh refuses a DENORT_BIN that is not there, in one sentence", async () => {
  await withScratch(async (dir) => {
    const r = await compile(dir, { DENORT_BIN: "/nonexistent/denort" });
    assertEquals(r.code, 1);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertMatch(
      r.stderr,
      /^compile\.sh: DENORT_BIN=\/nonexistent\/denort is not an executable file/,
    );
    assert(!isExecutableFile(`${dir}/dist/replicator`), "no binary");
  });
});

Deno.test("compile.sh builds a working binary where a denort is found, else says why not", async () => {
  const available = await denortAvailable();
  await withScratch(async (dir) => {
    const env = available?.startsWith("DENORT_BIN=") ? Deno.env.get("DENORT_BIN")! : "";
    const r = await compile(dir, { DENORT_BIN: env });
    if (available) assertEquals(r.code, 0, `a denort is available (${available}): ${r.stderr}`);
    if (r.code === 0) {
      const bin = `${dir}/dist/replicator`;
      assert(isExecutableFile(bin), `compile.sh exited 0 but ${bin} is not an executable file`);
      assertEquals(r.stdout.trim(), `built dist/replicator (deno ${await denoVersion()})`);
      const help = await new Deno.Command(bin, { args: ["--help"] }).output();
      assertEquals(help.code, 0, dec.decode(help.stderr));
      assert(dec.decode(help.stdout).includes("replicator init"));
    } else {
      // No base (and no download): one sentence naming the way out, and no binary.
      assertEquals(r.code, 1);
      assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
      assertMatch(r.stderr, /no Deno runtime base .* set DENORT_BIN/);
      assert(!/\bat \S+:\d+/.test(r.stderr), "no stack trace");
      assert(!isExecutableFile(`${dir}/dist/replicator`), "a failed build leaves no binary");
    }
  });
});

Deno.test("compile.sh runs deno compile on mod.ts with all permissions (a stand-in base)", async () => {
  const base = standInBase();
  await withScratch(async (dir) => {
    const r = await compile(dir, { DENORT_BIN: base });
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout.trim(), `built dist/replicator (deno ${await denoVersion()})`);
    const bin = `${dir}/dist/replicator`;
    assert(isExecutableFile(bin), `${bin} is not an executable file`);
    const bytes = Deno.readFileSync(bin);
    const baseBytes = Deno.readFileSync(base);
    assert(bytes.length > baseBytes.length, "nothing was appended to the base");
    assertEquals([...bytes.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], "an ELF file");
    const text = new TextDecoder("latin1").decode(bytes);
    assert(text.includes("d3n0l4nd"), "no deno compile payload in dist/replicator");
    // The run options deno compile embeds: entry point and permissions.
    const entry = text.match(/"entrypoint_key":"([^"]*)"/);
    assertEquals(entry?.[1], "mod.ts");
    const perms = text.match(/"permissions":(\{[^{}]*\})/);
    assert(perms, "no permissions in the payload");
    const p = JSON.parse(perms[1]) as Record<string, unknown>;
    for (const k of ["env", "net", "ffi", "read", "run", "sys", "write", "import"]) {
      assertEquals(p[`allow_${k}`], [], `--allow-all: allow_${k} is [] (everything)`);
    }
    assertEquals(p.prompt, false, "--no-prompt");
    const flags = text.match(/"v8_flags":(\[[^\]]*\])/);
    assert(flags && JSON.parse(flags[1]).includes(V8_FLAGS), `the V8 flags ./replicator passes`);
    // The program's own sources are in it (the CLI's usage text).
    assert(text.includes("replicator init"), "the CLI's modules are not in the payload");
  });
});

Deno.test("compile.sh shows deno's own error when the program does not compile", async () => {
  const base = standInBase();
  await withScratch(async (dir) => {
    Deno.writeTextFileSync(`${dir}/mod.ts`, "\nconst broken = ;\n", { append: true });
    const r = await compile(dir, { DENORT_BIN: base, NO_COLOR: "1" });
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /^compile\.sh: deno compile failed:\n/);
    assertMatch(r.stderr, /Expression expected/);
    assert(!r.stderr.includes("no Deno runtime base"), "not blamed on a missing denort");
    assert(!isExecutableFile(`${dir}/dist/replicator`), "a failed build leaves no binary");
  });
});
