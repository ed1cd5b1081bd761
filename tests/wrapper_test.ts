/**
 * `./replicator`, the way the README runs the program from source: it runs
 * mod.ts bundled into dist/replicator.js, bundles again when a source
 * changed after the bundle was made (and lets Deno write the new bundle's V8
 * code cache), and runs mod.ts itself where it cannot bundle (saying so once).
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { existsSync, put, tempDir } from "./helpers.ts";
import { DatabaseSync } from "node:sqlite";

const REPO = new URL("..", import.meta.url).pathname;

/** A copy of the program (sources, wrapper, the pinned deno through a symlink). */
function copyProgram(to: string): void {
  for (const rel of ["mod.ts", "deno.json", "replicator"]) {
    Deno.copyFileSync(REPO + rel, `${to}/${rel}`);
  }
  Deno.chmodSync(`${to}/replicator`, 0o755);
  const copy = (rel: string) => {
    if (Deno.statSync(REPO + rel).isDirectory) {
      Deno.mkdirSync(`${to}/${rel}`);
      for (const e of Deno.readDirSync(REPO + rel)) copy(`${rel}/${e.name}`);
    } else Deno.copyFileSync(REPO + rel, `${to}/${rel}`);
  };
  copy("src");
  Deno.symlinkSync(`${REPO}node_modules`, `${to}/node_modules`);
}

/** Bytes of Deno's V8 code cache for the module at `path` (0 if none). */
function codeCacheBytes(path: string): number {
  const info = new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).outputSync();
  const { denoDir } = JSON.parse(new TextDecoder().decode(info.stdout)) as { denoDir: string };
  const db = new DatabaseSync(`${denoDir}/v8_code_cache_v2`, { readOnly: true });
  try {
    const row = db.prepare("SELECT length(data) AS n FROM codecache WHERE specifier = ?")
      .get(`file://${Deno.realPathSync(path)}`) as { n: number } | undefined;
    return row?.n ?? 0;
  } finally {
    db.close();
  }
}

async function run(program: string, ...args: string[]) {
  const out = await new Deno.Command(`${program}/replicator`, { args, stdin: "null" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("./replicator runs the bundle, makes it again when a source changes, and runs mod.ts where it cannot", async () => {
  const dir = await tempDir();
  try {
    const program = `${dir}/program`;
    Deno.mkdirSync(program);
    copyProgram(program);
    const vol = `${dir}/vol`;
    put(`${vol}/a.txt`, "a");
    const bundle = `${program}/dist/replicator.js`;

    let r = await run(program, "init", vol, "--host", "alpha");
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stderr, "", "bundling is silent");
    const first = Deno.statSync(bundle).mtime!.getTime();
    // Deno's V8 code cache holds the new bundle: no quick run writes it on its own.
    assert(codeCacheBytes(bundle) > 10_000, "the bundle's code cache was not written");
    // What runs is the bundle, and a fresh one is reused.
    const mark = 'console.error("ran the bundle");\n';
    Deno.writeTextFileSync(bundle, mark + Deno.readTextFileSync(bundle));
    const marked = Deno.statSync(bundle).mtime!.getTime();
    r = await run(program, "clone", vol, `${dir}/copy`, "--host", "beta");
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stderr, "ran the bundle\n");
    assertEquals(Deno.statSync(bundle).mtime!.getTime(), marked, "a fresh bundle is reused");

    // A changed source is bundled again, even one given an old mtime (as
    // `cp -p` or `rsync -a` of older sources would): the new text must show.
    const output = `${program}/src/cli/output.ts`;
    const text = Deno.readTextFileSync(output);
    assert(text.includes("unpublished"), "src/cli/output.ts changed; pick another marker");
    await new Promise((ok) => setTimeout(ok, 20)); // a ctime after the bundle's time
    Deno.writeTextFileSync(output, text.replaceAll("unpublished", "UNPUBLISHED-MARK"));
    const old = new Date(first - 86_400_000);
    Deno.utimeSync(output, old, old);
    r = await run(program, "status", "-C", vol);
    assertEquals(r.code, 0, r.stderr);
    assert(Deno.statSync(bundle).mtime!.getTime() > first, "not bundled again");
    assert(Deno.readTextFileSync(bundle).includes("UNPUBLISHED-MARK"), "the bundle is stale");

    // A bundling failure is said once, not on every (cron) run, and tried
    // again once a source changes.
    const broken = `${program}/src/timer.ts`;
    const good = Deno.readTextFileSync(broken);
    await new Promise((ok) => setTimeout(ok, 20));
    Deno.writeTextFileSync(broken, good + "\nexport const = ;\n");
    r = await run(program, "--help");
    assertMatch(r.stderr, /replicator: bundling mod\.ts failed, running it unbundled/);
    r = await run(program, "--help");
    assert(!r.stderr.includes("bundling mod.ts failed"), `said again: ${r.stderr}`);
    await new Promise((ok) => setTimeout(ok, 20));
    Deno.writeTextFileSync(broken, good);
    r = await run(program, "status", "-C", vol);
    assertEquals([r.code, r.stderr], [0, ""]);
    assert(
      !existsSync(`${program}/dist/bundle-failed.log`),
      "the failure is forgotten once mended",
    );

    // Nowhere to bundle: mod.ts itself runs, the same program.
    Deno.removeSync(`${program}/dist`, { recursive: true });
    Deno.writeTextFileSync(`${program}/dist`, "a file where dist/ would be");
    put(`${vol}/b.txt`, "b");
    r = await run(program, "sync", "-C", `${dir}/copy`, vol);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(Deno.readTextFileSync(`${dir}/copy/b.txt`), "b");
    r = await run(program, "--help");
    assertMatch(r.stdout, /replicator/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
