/**
 * Model-based property test of the integrity promise (issue 7), in-process
 * through the public API.
 *
 * Replica A holds the permit (init), B is a clone that never holds it. Random
 * holder operations on A (create, write, append, truncate, rename files and
 * directories, replace a directory by a file or a symlink and back, delete,
 * chmod, mkdir, symlink) are interleaved with random local edits on B (write,
 * append, create files, also at paths the holder touches) and random syncs.
 * After every sync:
 *
 * (a) every byte sequence B wrote and did not publish still exists in B, at its
 *     path or in a conflict copy (B never holds the permit: nothing it writes is
 *     ever published, so nothing it writes may ever be lost);
 * (b) apart from conflict copies and B's unpublished files, B's tree equals A's
 *     (listing(): types, modes, bytes, mtimes, link targets); a fresh clone of A
 *     equals A exactly; the sync changed nothing in A, and A equals the model;
 * (c) a sentinel tree outside both volumes is unchanged; sync reported no error.
 *
 * SEED (default fixed), ROUNDS (default 30) and OPS (ops per round, default 15)
 * scale it; rounds are split over HISTORIES (default 3) independent volume pairs.
 * A failure prints the seed and the whole op log of its history for replay. The
 * engine detects renames by inode number, so a seed replays the same operations
 * but, where the filesystem reuses inode numbers, not always the same records. The
 * volumes live on /dev/shm when there is one (REPLICATOR_TEST_TMP overrides).
 */

import { createHash } from "node:crypto";
import { clone, init, sync } from "../mod.ts";
import { assert } from "./assert.ts";
import { listing, makeSentinel, prng, scratchDir, snapshot } from "./helpers.ts";

const SEED = Number(Deno.env.get("SEED") ?? "7007");
const ROUNDS = Number(Deno.env.get("ROUNDS") ?? "30");
const OPS = Number(Deno.env.get("OPS") ?? "15");
const HISTORIES = Math.max(1, Math.min(ROUNDS, Number(Deno.env.get("HISTORIES") ?? "3")));

/** Names drawn at every level: few, so that holder and replica collide often. */
const NAMES = ["a", "b", "c", "d", "log", "log.1"];
const MAX_DEPTH = 3;
const FILE_MODES = [0o644, 0o600, 0o640, 0o755, 0o700, 0o444];
const DIR_MODES = [0o755, 0o750, 0o700];
const LINK_TARGETS = ["a", "log", "../b", "d/c", "nowhere", "."];

type Node =
  | { t: "f"; data: Uint8Array; mode: number }
  | { t: "d"; mode: number }
  | { t: "l"; target: string };

const enc = new TextEncoder();
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const depth = (p: string) => p.split("/").length;
const under = (p: string, dir: string) => p === dir || p.startsWith(dir + "/");
const isConflictPath = (p: string) => p.split("/").some((c) => c.includes(".conflict-"));

class History {
  readonly a: string;
  readonly b: string;
  readonly sentinel: string;
  /** A's tree as the holder made it. */
  readonly model = new Map<string, Node>();
  /** What B wrote and never published: content digest -> where and when. */
  readonly unpublished = new Map<string, string>();
  readonly log: string[] = [];
  readonly failures: string[] = [];
  private counter = 0;
  private clock = 1_700_000_000;
  syncs = 0;
  ops = 0;
  /** A's listing at the last clone check. */
  private clonedA = "";

  constructor(readonly dir: string, readonly random: () => number, readonly id: number) {
    this.a = `${dir}/a`;
    this.b = `${dir}/b`;
    this.sentinel = `${dir}/sentinel`;
  }

  pick<T>(xs: T[]): T | undefined {
    return xs.length ? xs[Math.floor(this.random() * xs.length)] : undefined;
  }

  int(n: number): number {
    return Math.floor(this.random() * n);
  }

  /** Fresh bytes, unique (a counter inside), of a random size. */
  bytes(who: string): Uint8Array {
    const n = ++this.counter;
    const head = `${who}#${n}:`;
    const size = this.pick([0, 1, 17, 300, 4096, 9000])!;
    const out = new Uint8Array(head.length + size);
    out.set(enc.encode(head));
    for (let i = head.length; i < out.length; i++) out[i] = 97 + ((n * 31 + i * 7) % 26);
    return out;
  }

  /** A distinct mtime for every write, so a scan never misses a change within one clock tick. */
  touch(abs: string): void {
    this.clock += 1 + this.int(5);
    Deno.utimeSync(abs, this.clock, this.clock);
  }

  entries(t?: Node["t"]): string[] {
    return [...this.model.entries()].filter(([, n]) => !t || n.t === t).map(([p]) => p).sort();
  }

  /** Directories (the root as "") that can take a new entry. */
  dirs(): string[] {
    return ["", ...this.entries("d")].filter((d) => d === "" || depth(d) < MAX_DEPTH);
  }

  freePath(): string | undefined {
    for (let tries = 0; tries < 10; tries++) {
      const d = this.pick(this.dirs())!;
      const p = d ? `${d}/${this.pick(NAMES)}` : this.pick(NAMES)!;
      if (!this.model.has(p)) return p;
    }
    return undefined;
  }

  abs(p: string): string {
    return `${this.a}/${p}`;
  }

  removeModel(p: string): void {
    for (const k of [...this.model.keys()]) if (under(k, p)) this.model.delete(k);
  }

  writeFile(p: string, data: Uint8Array, mode = 0o644): void {
    Deno.writeFileSync(this.abs(p), data);
    Deno.chmodSync(this.abs(p), mode);
    this.touch(this.abs(p));
    this.model.set(p, { t: "f", data, mode });
  }

  /** One random holder operation on A; returns its description. */
  holderOp(): string {
    const kind = this.pick([
      "create",
      "create",
      "mkdir",
      "write",
      "append",
      "truncate",
      "renameFile",
      "renameDir",
      "dirToFile",
      "dirToLink",
      "toDir",
      "delete",
      "chmod",
      "symlink",
    ])!;
    const files = this.entries("f");
    const dirs = this.entries("d");
    switch (kind) {
      case "write": {
        const p = this.pick(files);
        if (!p) break;
        const n = this.model.get(p) as { mode: number };
        this.writeFile(p, this.bytes("A"), n.mode);
        return `A write ${p}`;
      }
      case "append": {
        const p = this.pick(files);
        if (!p) break;
        const n = this.model.get(p) as { t: "f"; data: Uint8Array; mode: number };
        const more = this.bytes("A+");
        Deno.writeFileSync(this.abs(p), more, { append: true });
        this.touch(this.abs(p));
        const data = new Uint8Array(n.data.length + more.length);
        data.set(n.data);
        data.set(more, n.data.length);
        this.model.set(p, { ...n, data });
        return `A append ${p} (${more.length} bytes)`;
      }
      case "truncate": {
        const p = this.pick(files);
        if (!p) break;
        const n = this.model.get(p) as { t: "f"; data: Uint8Array; mode: number };
        const len = this.int(n.data.length + 1);
        Deno.truncateSync(this.abs(p), len);
        this.touch(this.abs(p));
        this.model.set(p, { ...n, data: n.data.slice(0, len) });
        return `A truncate ${p} to ${len}`;
      }
      case "renameFile": {
        const p = this.pick([...files, ...this.entries("l")]);
        if (!p) break;
        // Onto an existing file (renamed over) or onto a free name.
        const over = this.random() < 0.4 ? this.pick(files.filter((f) => f !== p)) : undefined;
        const to = over ?? this.freePath();
        if (!to || under(to, p)) break;
        Deno.renameSync(this.abs(p), this.abs(to));
        const node = this.model.get(p)!;
        this.model.delete(p);
        this.model.set(to, node);
        return `A rename ${p} -> ${to}${over ? " (over a file)" : ""}`;
      }
      case "renameDir": {
        const p = this.pick(dirs);
        if (!p) break;
        const to = this.freePath();
        if (!to || under(to, p)) break;
        const moved = this.entries().filter((k) => under(k, p));
        if (moved.some((k) => depth(to) + depth(k) - depth(p) > MAX_DEPTH + 1)) break;
        Deno.renameSync(this.abs(p), this.abs(to));
        for (const k of moved) {
          const node = this.model.get(k)!;
          this.model.delete(k);
          this.model.set(to + k.slice(p.length), node);
        }
        return `A rename dir ${p} -> ${to}`;
      }
      case "dirToFile": {
        const p = this.pick(dirs);
        if (!p) break;
        Deno.removeSync(this.abs(p), { recursive: true });
        this.removeModel(p);
        this.writeFile(p, this.bytes("A"));
        return `A replace dir ${p} by a file`;
      }
      case "dirToLink": {
        const p = this.pick(dirs);
        if (!p) break;
        Deno.removeSync(this.abs(p), { recursive: true });
        this.removeModel(p);
        const target = this.pick(LINK_TARGETS)!;
        Deno.symlinkSync(target, this.abs(p));
        this.model.set(p, { t: "l", target });
        return `A replace dir ${p} by symlink -> ${target}`;
      }
      case "toDir": {
        const p = this.pick([...files, ...this.entries("l")]);
        if (!p || depth(p) >= MAX_DEPTH) break;
        Deno.removeSync(this.abs(p));
        this.model.delete(p);
        Deno.mkdirSync(this.abs(p));
        Deno.chmodSync(this.abs(p), 0o755);
        this.model.set(p, { t: "d", mode: 0o755 });
        const child = `${p}/${this.pick(NAMES)}`;
        this.writeFile(child, this.bytes("A"));
        return `A replace ${p} by a dir with ${child}`;
      }
      case "delete": {
        const p = this.pick(this.entries());
        if (!p) break;
        Deno.removeSync(this.abs(p), { recursive: true });
        this.removeModel(p);
        return `A delete ${p}`;
      }
      case "chmod": {
        const p = this.pick([...files, ...dirs]);
        if (!p) break;
        const n = this.model.get(p)!;
        const mode = this.pick(n.t === "d" ? DIR_MODES : FILE_MODES)!;
        Deno.chmodSync(this.abs(p), mode);
        this.model.set(p, { ...n, mode } as Node);
        return `A chmod ${mode.toString(8)} ${p}`;
      }
      case "mkdir": {
        const p = this.freePath();
        if (!p || depth(p) >= MAX_DEPTH) break;
        Deno.mkdirSync(this.abs(p));
        Deno.chmodSync(this.abs(p), 0o755);
        this.model.set(p, { t: "d", mode: 0o755 });
        return `A mkdir ${p}`;
      }
      case "symlink": {
        const p = this.freePath();
        if (!p) break;
        const target = this.pick(LINK_TARGETS)!;
        Deno.symlinkSync(target, this.abs(p));
        this.model.set(p, { t: "l", target });
        return `A symlink ${p} -> ${target}`;
      }
    }
    const p = this.freePath();
    if (!p) return "A (nothing)";
    this.writeFile(p, this.bytes("A"));
    return `A create ${p}`;
  }

  /** One random local edit on B (a replica without the permit). */
  replicaEdit(): string {
    const tree = listing(this.b);
    const usable = Object.keys(tree).filter((p) => !isConflictPath(p));
    const files = usable.filter((p) => tree[p].startsWith("file "));
    const dirs = ["", ...usable.filter((p) => tree[p].startsWith("dir "))];
    let kind = this.pick(["write", "append", "create", "create"])!;
    if (files.length === 0) kind = "create";
    let p: string | undefined;
    if (kind === "create") {
      for (let tries = 0; tries < 10 && !p; tries++) {
        const d = this.pick(dirs)!;
        const cand = d ? `${d}/${this.pick(NAMES)}` : this.pick(NAMES)!;
        if (!tree[cand] || tree[cand].startsWith("file ")) p = cand;
      }
      if (!p) return "B (nothing)";
    } else p = this.pick(files)!;
    const abs = `${this.b}/${p}`;
    let old: Uint8Array | undefined;
    try {
      old = Deno.readFileSync(abs);
      this.unpublished.delete(sha(old)); // B replaces its own edit: that one is superseded
    } catch { /* new file */ }
    const mine = this.bytes("B");
    const data = kind === "append" && old ? concat(old, mine) : mine;
    Deno.writeFileSync(abs, data);
    this.touch(abs);
    const what = `B ${kind} ${p}`;
    this.unpublished.set(sha(data), `${what} (op ${this.ops})`);
    return what;
  }

  async syncAndCheck(where: string): Promise<void> {
    this.syncs++;
    const aBefore = listing(this.a);
    const sentinelBefore = snapshot(this.sentinel);
    const problems: string[] = [];
    try {
      const reports = await sync(this.b, [this.a]);
      for (const r of reports) {
        if ("error" in r) problems.push(`peer failure: ${r.error.message}`);
        else problems.push(...r.local.pull.problems, ...(r.remote.pull?.problems ?? []));
      }
    } catch (e) {
      problems.push(`sync threw: ${(e as Error).message}`);
    }
    const fail = (msg: string) => this.failures.push(`${where}: ${msg}`);
    if (problems.length) fail(`sync reported problems: ${problems.join("; ")}`);
    const aAfter = listing(this.a);
    if (!sameTree(aBefore, aAfter)) {
      fail(`the sync changed the holder's tree: ${diff(aBefore, aAfter)}`);
    }
    const fromModel = this.modelListing();
    const aNoTimes = stripTimes(aAfter);
    if (!sameTree(fromModel, aNoTimes)) {
      fail(`A differs from the model: ${diff(fromModel, aNoTimes)}`);
    }

    // (a) nothing B wrote and did not publish is lost.
    const present = new Set<string>();
    const b = listing(this.b);
    for (const desc of Object.values(b)) {
      if (desc.startsWith("file ")) present.add(desc.split(" ")[4]);
    }
    for (const [h, what] of this.unpublished) {
      if (!present.has(h)) fail(`local edit lost: "${what}" exists nowhere in B`);
    }

    // (b) B equals A, apart from conflict copies and B's unpublished files.
    const local = new Set(
      Object.entries(b).filter(([, d]) =>
        d.startsWith("file ") && this.unpublished.has(d.split(" ")[4])
      )
        .map(([p]) => p),
    );
    const kept = Object.keys(b).filter((p) => isConflictPath(p) || local.has(p));
    const bDiffs: string[] = [];
    for (const p of new Set([...Object.keys(aAfter), ...Object.keys(b)])) {
      if (isConflictPath(p) || local.has(p)) continue;
      // A directory B still needs for something it keeps, where A has nothing.
      if (!aAfter[p] && b[p]?.startsWith("dir ") && kept.some((k) => k.startsWith(p + "/"))) {
        continue;
      }
      // A directory holding what B keeps has B's own mtime: B added entries to it.
      const sameButTime = aAfter[p]?.startsWith("dir ") && b[p]?.startsWith("dir ") &&
        aAfter[p].split(" ")[1] === b[p].split(" ")[1];
      if (sameButTime && kept.some((k) => k.slice(0, k.lastIndexOf("/")) === p)) continue;
      if (aAfter[p] !== b[p]) {
        bDiffs.push(`${p}: A ${aAfter[p] ?? "absent"} / B ${b[p] ?? "absent"}`);
      }
    }
    if (bDiffs.length) fail(`B differs from A: ${bDiffs.join("; ")}`);

    // A fresh clone of A equals A exactly (A unchanged since the last clone: same result).
    const c = `${this.dir}/c`;
    const aKey = JSON.stringify(aAfter);
    if (aKey !== this.clonedA) {
      this.clonedA = aKey;
      await this.checkClone(c, aAfter, fail);
    }

    // (c) nothing outside the volumes changed.
    const sentinelAfter = snapshot(this.sentinel);
    if (!sameTree(sentinelBefore, sentinelAfter)) {
      fail(`the sentinel outside changed: ${diff(sentinelBefore, sentinelAfter)}`);
    }
    const top = [...Deno.readDirSync(this.dir)].map((e) => e.name).sort().join(",");
    if (top !== "a,b,sentinel") fail(`new entries beside the volumes: ${top}`);
  }

  /** Clones A afresh into `c` and compares. */
  async checkClone(
    c: string,
    aAfter: Record<string, string>,
    fail: (m: string) => void,
  ): Promise<void> {
    try {
      await clone(this.a, c, { host: "gamma" });
      const lc = listing(c);
      if (!sameTree(lc, aAfter)) fail(`a fresh clone differs from A: ${diff(aAfter, lc)}`);
    } catch (e) {
      fail(`clone threw: ${(e as Error).message}`);
    } finally {
      try {
        Deno.removeSync(c, { recursive: true });
      } catch { /* the clone failed before making it */ }
    }
  }

  modelListing(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [p, n] of this.model) {
      if (n.t === "d") out[p] = `dir ${n.mode.toString(8)}`;
      else if (n.t === "l") out[p] = `link ${n.target}`;
      else out[p] = `file ${n.mode.toString(8)} ${n.data.length} ${sha(n.data)}`;
    }
    return out;
  }
}

function concat(x: Uint8Array, y: Uint8Array): Uint8Array {
  const out = new Uint8Array(x.length + y.length);
  out.set(x);
  out.set(y, x.length);
  return out;
}

/** A listing without mtimes (the model does not know them). */
function stripTimes(l: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, d] of Object.entries(l)) {
    const f = d.split(" ");
    out[p] = f[0] === "file"
      ? `file ${f[1]} ${f[2]} ${f[4]}`
      : f[0] === "link"
      ? `link ${f[1]}`
      : `dir ${f[1]}`;
  }
  return out;
}

function sameTree(x: Record<string, string>, y: Record<string, string>): boolean {
  return diff(x, y) === "";
}

function diff(x: Record<string, string>, y: Record<string, string>): string {
  const out: string[] = [];
  for (const p of [...new Set([...Object.keys(x), ...Object.keys(y)])].sort()) {
    if (x[p] !== y[p]) out.push(`${p}: ${x[p] ?? "absent"} -> ${y[p] ?? "absent"}`);
  }
  return out.slice(0, 12).join("; ") + (out.length > 12 ? ` (+${out.length - 12} more)` : "");
}

Deno.test({
  name:
    `model: ${ROUNDS} rounds x ${OPS} ops of holder changes, replica edits and syncs lose nothing`,
  fn: async () => {
    const perHistory = Math.ceil(ROUNDS / HISTORIES);
    const failed: string[] = [];
    let rounds = 0;
    let syncs = 0;
    let ops = 0;
    for (let hi = 0; hi < HISTORIES; hi++) {
      const seed = SEED + hi;
      const dir = await scratchDir();
      const h = new History(dir, prng(seed), hi);
      try {
        makeSentinel(h.sentinel);
        Deno.mkdirSync(h.a);
        // A starting tree: a few files and directories.
        for (let i = 0; i < 6; i++) h.log.push(`setup: ${h.holderOp()}`);
        await init(h.a, { host: "alpha" });
        await clone(h.a, h.b, { host: "beta" });
        for (let round = 0; round < perHistory && rounds < ROUNDS && !h.failures.length; round++) {
          rounds++;
          h.log.push(`--- round ${round}`);
          for (let k = 0; k < OPS && !h.failures.length; k++) {
            h.ops++;
            const x = h.random();
            if (x < 0.55) h.log.push(h.holderOp());
            else if (x < 0.85) h.log.push(h.replicaEdit());
            else {
              h.log.push("sync B <-> A");
              await h.syncAndCheck(`history ${hi} round ${round} op ${k}`);
            }
          }
          if (!h.failures.length) {
            h.log.push("sync B <-> A (end of round)");
            await h.syncAndCheck(`history ${hi} round ${round} end`);
          }
        }
      } catch (e) {
        h.failures.push(`history ${hi}: test error ${(e as Error).stack}`);
      } finally {
        syncs += h.syncs;
        ops += h.ops;
        if (Deno.env.get("KEEP_TMP")) console.log(`kept ${dir}`);
        else Deno.removeSync(dir, { recursive: true });
      }
      if (h.failures.length) {
        failed.push(
          `history ${hi} (SEED=${seed} OPS=${OPS}): ${h.failures.join("\n  ")}\n` +
            `op log (replay with SEED=${SEED} ROUNDS=${ROUNDS} OPS=${OPS} HISTORIES=${HISTORIES}):\n    ` +
            h.log.join("\n    "),
        );
      }
    }
    console.log(
      `model: ${HISTORIES} histories, ${rounds} rounds, ${ops} ops, ${syncs} syncs checked`,
    );
    assert(
      failed.length === 0,
      `${failed.length} of ${HISTORIES} histories failed:\n${failed.join("\n\n")}`,
    );
  },
});
