/**
 * Test helpers: run the CLI as a user does (deno run of mod.ts), make trees,
 * and describe a tree exactly for comparison between replicas.
 */

import { createHash } from "node:crypto";
import { lstatNs, mtimeNsOf } from "../src/fs/stat.ts";
import { V8_FLAGS } from "../src/memory.ts";
import { assertEquals } from "./assert.ts";

const MOD = new URL("../mod.ts", import.meta.url).pathname;

/** Result of one CLI run. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `replicator ARGS...` and waits for it. */
export async function cli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--no-prompt", "--quiet", `--v8-flags=${V8_FLAGS}`, MOD, ...args],
    cwd: opts.cwd,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs the program `cmd` with `args` and waits for it (standard input closed). */
export async function sh(cmd: string, args: string[]): Promise<Run> {
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Unmounts `dir`, lazily if it is busy. */
export async function unmount(dir: string): Promise<void> {
  if ((await sh("umount", [dir])).code !== 0) await sh("umount", ["-l", dir]);
}

/** Spawns `replicator ARGS...` without waiting (for kill tests). */
export function spawnCli(args: string[], env?: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--no-prompt", "--quiet", `--v8-flags=${V8_FLAGS}`, MOD, ...args],
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "replicator-test-" });
}

/** Writes a file, creating parents. */
export function put(path: string, content: string | Uint8Array): void {
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  if (typeof content === "string") Deno.writeTextFileSync(path, content);
  else Deno.writeFileSync(path, content);
}

/**
 * Every entry under `root` (except .replicator/) with type, permission bits,
 * content hash or link target, mtime in ns, and owner:group.
 */
export function listing(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (rel: string) => {
    const names = [...Deno.readDirSync(rel ? `${root}/${rel}` : root)].map((e) => e.name).sort();
    for (const name of names) {
      if (!rel && name === ".replicator") continue;
      const p = rel ? `${rel}/${name}` : name;
      const st = lstatNs(`${root}/${p}`)!;
      if (st.type === "d") {
        out[p] = `dir ${st.perm.toString(8)} ${mtimeNsOf(st)} ${st.uid}:${st.gid}`;
        visit(p);
      } else if (st.type === "l") {
        out[p] = `link ${Deno.readLinkSync(`${root}/${p}`)} ${mtimeNsOf(st)} ${st.uid}:${st.gid}`;
      } else {
        const h = createHash("sha256").update(Deno.readFileSync(`${root}/${p}`)).digest("hex");
        out[p] = `file ${st.perm.toString(8)} ${st.size} ${mtimeNsOf(st)} ${h} ${st.uid}:${st.gid}`;
      }
    }
  };
  visit("");
  return out;
}

/** JSON of a successful CLI run's stdout. */
export function json<T = unknown>(r: Run): T {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Bit-at-a-time CRC32C, independent of the table-driven implementation under test. */
export function crc32cSlow(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A temporary directory with an empty source replica directory `a` and a path `b` for a clone. */
export async function pair(): Promise<{ dir: string; a: string; b: string }> {
  const dir = await tempDir();
  const a = `${dir}/a`;
  Deno.mkdirSync(a);
  return { dir, a, b: `${dir}/b` };
}

/** A holder `a` ("alpha") made of what `setup` puts there, and its clone `b` ("beta"). */
export async function holderAndReplica(
  setup: (a: string) => void,
): Promise<{ dir: string; a: string; b: string }> {
  const p = await pair();
  setup(p.a);
  assertEquals((await cli(["init", p.a, "--host", "alpha"])).code, 0);
  assertEquals((await cli(["clone", p.a, p.b, "--host", "beta"])).code, 0);
  return p;
}

/** The tree the network tests start from: a text file and a 300 kB executable. */
export function smallTree(a: string): void {
  put(`${a}/docs/readme`, "hello\n");
  put(`${a}/bin/tool`, new Uint8Array(300_000).map((_, i) => i % 251));
  Deno.chmodSync(`${a}/bin/tool`, 0o755);
}

/** Changes of every kind to smallTree() on the holder `a`, different for each `round`. */
export function changeEveryKind(a: string, round: number): void {
  put(`${a}/docs/readme`, `hello ${round}\n`);
  put(`${a}/new${round}/deep/file`, `new ${round}`);
  Deno.renameSync(`${a}/docs`, `${a}/docs${round}`);
  Deno.symlinkSync(`docs${round}/readme`, `${a}/link${round}`);
  Deno.linkSync(`${a}/new${round}/deep/file`, `${a}/hard${round}`);
  Deno.chmodSync(`${a}/bin/tool`, 0o700 + round);
}

/**
 * Hands `dir` to user nobody and returns a runner of `replicator ARGS...` as
 * nobody (root ignores permissions, so tests of permission errors need one).
 * The program runs from a world-readable copy of mod.ts, deno.json and src/:
 * the checkout itself may sit in a directory only root can enter (CI).
 */
export async function asNobody(dir: string): Promise<(args: string[]) => Promise<Run>> {
  await new Deno.Command("chown", { args: ["-R", "65534:65534", dir] }).output();
  Deno.chmodSync(dir, 0o755);
  const mod = readableCopy("mod.ts");
  return async (args) => {
    const out = await new Deno.Command("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        Deno.execPath(),
        "run",
        "-A",
        "--quiet",
        `--v8-flags=${V8_FLAGS}`,
        mod,
        ...args,
      ],
      env: { DENO_DIR: `${dir}/deno-cache`, HOME: dir },
      stdin: "null",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  };
}

/** A seeded PRNG (mulberry32) in [0, 1): the same seed replays the same run. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/**
 * Everything under `dir`, dotfiles and `.replicator/` included, never following
 * symlinks: type, mode, size, mtime, content hash or link target. Two equal
 * snapshots mean nothing under `dir` was written, removed, chmodded or touched.
 */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (rel: string) => {
    const abs = rel ? `${dir}/${rel}` : dir;
    for (const name of [...Deno.readDirSync(abs)].map((e) => e.name).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const st = lstatNs(`${dir}/${p}`)!;
      const mode = st.perm.toString(8);
      if (st.type === "d") {
        out[p] = `dir ${mode} ${mtimeNsOf(st)}`;
        visit(p);
      } else if (st.type === "l") {
        out[p] = `link ${Deno.readLinkSync(`${dir}/${p}`)}`;
      } else {
        const h = createHash("sha256").update(Deno.readFileSync(`${dir}/${p}`)).digest("hex");
        out[p] = `${st.type} ${mode} ${st.size} ${mtimeNsOf(st)} ${h}`;
      }
    }
  };
  const top = lstatNs(dir);
  out["."] = top ? `${top.type} ${top.perm.toString(8)} ${mtimeNsOf(top)}` : "absent";
  if (top?.type === "d") visit("");
  return out;
}

/**
 * Lays out a sentinel tree outside every volume: files, a nested directory, an
 * empty directory and a symlink. Tests hash it (snapshot) before and after.
 */
export function makeSentinel(dir: string): void {
  put(`${dir}/victim`, "sentinel victim: must never change\n");
  put(`${dir}/file1`, "sentinel file 1\n");
  put(`${dir}/file2`, "sentinel file 2\n");
  put(`${dir}/sub/inner`, "sentinel inner\n");
  Deno.mkdirSync(`${dir}/emptydir`);
  Deno.symlinkSync("file1", `${dir}/link`);
  Deno.chmodSync(`${dir}/file2`, 0o600);
}

/**
 * A fresh temporary directory for tests whose subject is not durability: on a
 * tmpfs (/dev/shm) when there is one, where the engine's fsyncs cost nothing
 * (on a busy disk they dominate). REPLICATOR_TEST_TMP names another place.
 */
export async function scratchDir(): Promise<string> {
  let dir = Deno.env.get("REPLICATOR_TEST_TMP");
  if (dir === undefined) {
    try {
      const probe = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "replicator-probe-" });
      Deno.removeSync(probe);
      dir = "/dev/shm";
    } catch { /* no tmpfs there: the default temporary directory */ }
  }
  return await Deno.makeTempDir({ prefix: "replicator-test-", dir });
}

let copied: string | undefined;

/**
 * The path of `rel` (e.g. "mod.ts") in a copy of the program (mod.ts,
 * deno.json, src/) that every user can read, made once per test process.
 */
export function readableCopy(rel: string): string {
  copied ??= copyProgram();
  return `${copied}/${rel}`;
}

function copyProgram(): string {
  const root = new URL("..", import.meta.url).pathname;
  const to = Deno.makeTempDirSync({ prefix: "replicator-program-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(to, { recursive: true }));
  const copy = (rel: string) => {
    const st = Deno.statSync(root + rel);
    if (st.isDirectory) {
      Deno.mkdirSync(`${to}/${rel}`);
      Deno.chmodSync(`${to}/${rel}`, 0o755);
      for (const e of Deno.readDirSync(root + rel)) copy(`${rel}/${e.name}`);
    } else {
      Deno.copyFileSync(root + rel, `${to}/${rel}`);
      Deno.chmodSync(`${to}/${rel}`, 0o644);
    }
  };
  ["mod.ts", "deno.json", "src"].forEach(copy);
  Deno.chmodSync(to, 0o755);
  return to;
}

/** True if something (anything, even a dangling symlink) is at `path`. */
export function existsSync(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs `replicator sync -C b a` (mod.ts) under `strace -f -qq STRACE_ARGS`; stderr piped. */
export async function syncUnderStrace(
  b: string,
  a: string,
  straceArgs: string[],
  env?: Record<string, string>,
): Promise<Deno.CommandOutput> {
  return await new Deno.Command("strace", {
    args: [
      "-f",
      "-qq",
      ...straceArgs,
      Deno.execPath(),
      "run",
      "-A",
      "--no-prompt",
      "--quiet",
      MOD,
      "sync",
      "-C",
      b,
      a,
    ],
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
}

/** Why strace cannot trace here (not installed, ptrace refused), or null if it can. */
export async function straceUnusable(): Promise<string | null> {
  try {
    const r = await new Deno.Command("strace", {
      args: ["-f", "-qq", "-o", "/dev/null", "-e", "trace=none", "true"],
      stdout: "null",
      stderr: "piped",
    }).output();
    return r.code === 0 ? null : `strace cannot trace here: ${new TextDecoder().decode(r.stderr)}`;
  } catch {
    return "strace is not installed";
  }
}
