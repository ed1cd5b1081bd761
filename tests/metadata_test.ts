/**
 * Metadata in `.replicator/`: never followed through a symlink, never a
 * signal to a pid named there, and every kind of damage gives one clear line
 * naming the file and the command to run, which then repairs it.
 */

import { assert, assertEquals, assertMatch, assertNotEquals } from "./assert.ts";
import { cli, json, listing, pair, put, type Run } from "./helpers.ts";
import { writeFileAtomic } from "../src/fs/durable.ts";
import { diffTree } from "../src/capture/scan.ts";
import type { Seen } from "../src/capture/walk.ts";

/** A failure a user can act on: exit 1, the pattern, and no stack trace. */
function assertClear(r: Run, pattern: RegExp): void {
  assertEquals(r.code, 1, `exit status; stderr: ${r.stderr}`);
  assertMatch(r.stderr, pattern);
  assert(!/^\s+at /m.test(r.stderr), `no stack trace: ${r.stderr}`);
  assert(!/unexpected error/.test(r.stderr), r.stderr);
}

/** A holder `a` and its clone `b`, with a change on `a` waiting to be synced. */
async function replicas(): Promise<{ dir: string; a: string; b: string }> {
  const p = await pair();
  put(`${p.a}/f`, "one");
  assertEquals((await cli(["init", p.a, "--host", "alpha"])).code, 0);
  assertEquals((await cli(["clone", p.a, p.b, "--host", "beta"])).code, 0);
  put(`${p.a}/f`, "two");
  put(`${p.a}/g`, "new");
  return p;
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch { /* not there */ }
}

/** Every file under `dir` with its bytes, for before/after comparison. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const visit = (rel: string) => {
    for (const e of Deno.readDirSync(`${dir}${rel}`)) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory) visit(p);
      else if (e.isFile) out[p] = [...Deno.readFileSync(`${dir}${p}`)].join(",");
      else out[p] = e.isSymlink ? `-> ${Deno.readLinkSync(`${dir}${p}`)}` : "other";
    }
  };
  visit("");
  return out;
}

const METADATA = [
  "expect.tmp",
  "txn",
  "txn.records",
  "kml",
  "lock",
  "state.db",
  "state.db-wal",
  "expect",
  "volume.json",
  "lento.pid",
  "staging",
  "fetch",
];

for (const name of METADATA) {
  Deno.test(`a peer whose .replicator/${name} is a symlink is refused; nothing outside changes`, async () => {
    const { dir, a, b } = await replicas();
    const outside = `${dir}/outside`;
    const meta = `${b}/.replicator`;
    Deno.mkdirSync(outside);
    // The sentinel is a working copy where there is one, so following the link would "work".
    if (name === "staging" || name === "fetch") put(`${outside}/${name}/00/file`, "sentinel");
    else {
      try {
        Deno.copyFileSync(`${meta}/${name}`, `${outside}/${name}`);
        Deno.removeSync(`${meta}/${name}`);
      } catch {
        put(`${outside}/${name}`, "sentinel");
      }
    }
    Deno.symlinkSync(`${outside}/${name}`, `${meta}/${name}`);
    const before = snapshot(outside);
    const refused = new RegExp(`${meta}/${name.replaceAll(".", "\\.")} is a symbolic link`);
    const r = await cli(["sync", "-C", a, b]);
    assertClear(r, refused);
    assertMatch(r.stderr, /remove it/);
    assertClear(await cli(["fsck", "-C", b, "--repair"]), refused);
    assertEquals(snapshot(outside), before, "nothing outside the volume changed");
  });
}

Deno.test("a replica whose .replicator is a symlink is refused, not used or walked past", async () => {
  const { dir, a, b } = await replicas();
  Deno.renameSync(`${b}/.replicator`, `${dir}/meta`);
  Deno.symlinkSync(`${dir}/meta`, `${b}/.replicator`);
  const before = snapshot(`${dir}/meta`);
  assertClear(await cli(["sync", "-C", a, b]), /\.replicator is a symbolic link, not a directory/);
  assertClear(await cli(["status", "-C", b]), /\.replicator is a symbolic link/);
  assertEquals(snapshot(`${dir}/meta`), before);
});

Deno.test("an atomic write replaces a symlink planted at its temporary name, never its target", async () => {
  const { dir } = await pair();
  put(`${dir}/sentinel`, "keep me");
  Deno.symlinkSync(`${dir}/sentinel`, `${dir}/file.tmp`);
  writeFileAtomic(`${dir}/file`, new TextEncoder().encode("new"));
  assertEquals(Deno.readTextFileSync(`${dir}/sentinel`), "keep me");
  assertEquals(Deno.readTextFileSync(`${dir}/file`), "new");
});

Deno.test("a forged lento.pid held under flock is never signalled: sync scans instead", async () => {
  const { a, b } = await replicas();
  const victim = new Deno.Command("sleep", { args: ["1000"] }).spawn();
  const pidFile = `${a}/.replicator/lento.pid`; // the writer's: its changes need capturing
  Deno.writeTextFileSync(pidFile, `${victim.pid}\n`);
  const holder = new Deno.Command("flock", { args: ["-n", pidFile, "sleep", "1000"] }).spawn();
  try {
    await new Promise((ok) => setTimeout(ok, 200)); // flock has taken the lock
    const r = await cli(["sync", "-C", b, a, "--json"]);
    const [report] = json<{ peerCapture: string }[]>(r);
    assertEquals(report.peerCapture, "scan");
    assertEquals(listing(b), listing(a));
    const state = Deno.readTextFileSync(`/proc/${victim.pid}/stat`).split(" ")[2];
    assertNotEquals(state, "Z", "the process named in lento.pid is alive");
  } finally {
    victim.kill("SIGKILL");
    holder.kill("SIGKILL");
    await victim.status;
    await holder.status;
  }
});

Deno.test("a lento.sock that is a symlink to another socket is never connected to", async () => {
  const { dir, a, b } = await replicas();
  const listener = Deno.listen({ transport: "unix", path: `${dir}/elsewhere.sock` });
  let connections = 0;
  const accepting = (async () => {
    for await (const c of listener) {
      connections++;
      c.close();
    }
  })();
  Deno.symlinkSync(`${dir}/elsewhere.sock`, `${b}/.replicator/lento.sock`);
  const r = await cli(["sync", "-C", a, b]);
  assertClear(r, /lento\.sock is a symbolic link/);
  listener.close();
  await accepting.catch(() => {});
  assertEquals(connections, 0);
});

Deno.test("a corrupt state.db: one line naming it; fsck reports it; fsck --repair rebuilds it keeping local changes", async () => {
  const { a, b } = await replicas();
  assertEquals((await cli(["sync", "-C", b, a])).code, 0);
  put(`${b}/mine`, "a local file on the non-holder");
  put(`${b}/g`, "NEW"); // same size as the record's "new", but written here: a local change
  const db = `${b}/.replicator/state.db`;
  for (const s of ["-wal", "-shm"]) removeIfThere(db + s);
  Deno.writeTextFileSync(db, "this is not a database, but it is long enough to look like a header");
  const r = await cli(["status", "-C", b]);
  assertClear(r, new RegExp(`${db}.*run 'replicator fsck --repair'`));
  assertEquals(r.stderr.trim().split("\n").length, 1, "one line");
  const check = await cli(["fsck", "-C", b]);
  assertClear(check, /state\.db: the state database is damaged.*run 'replicator fsck --repair'/);
  const repair = await cli(["fsck", "-C", b, "--repair"]);
  assertEquals(repair.code, 0, repair.stderr);
  assertMatch(
    repair.stderr,
    /repaired: rebuilt it from the KML and the tree \(\d+ entries matched/,
  );
  const st = json<{ pending: { op: string; path: string }[] }>(
    await cli(["status", "-C", b, "--json"]),
  );
  assertEquals(
    st.pending,
    [{ op: "store", path: "g" }, { op: "store", path: "mine" }],
    "the local changes, and only they, are pending",
  );
  assertEquals((await cli(["fsck", "-C", b])).code, 0);
  put(`${a}/later`, "after the repair");
  assertEquals((await cli(["sync", "-C", b, a])).code, 0);
  assertEquals(Deno.readTextFileSync(`${b}/later`), "after the repair");
  assertEquals(Deno.readTextFileSync(`${b}/mine`), "a local file on the non-holder");
  assertEquals(Deno.readTextFileSync(`${b}/g`), "NEW");
});

Deno.test("a corrupt state.db on the holder: fsck --repair rebuilds it and nothing is recorded twice", async () => {
  const { a, b } = await replicas();
  put(`${a}/dir/sub/x`, "x");
  put(`${a}/dir/y`, "y");
  Deno.mkdirSync(`${a}/empty`);
  assertEquals((await cli(["sync", "-C", b, a])).code, 0);
  // Renames, links, attribute changes and deletions: the rebuild replays them all.
  Deno.renameSync(`${a}/dir`, `${a}/moved`);
  Deno.symlinkSync("moved/y", `${a}/link`);
  Deno.chmodSync(`${a}/moved/sub/x`, 0o600);
  Deno.chmodSync(`${a}/empty`, 0o700);
  Deno.removeSync(`${a}/g`);
  assertEquals((await cli(["sync", "-C", b, a])).code, 0);
  const records = json<unknown[]>(await cli(["log", "-C", a, "--json"])).length;
  const db = `${a}/.replicator/state.db`;
  for (const s of ["-wal", "-shm"]) removeIfThere(db + s);
  Deno.writeFileSync(db, new Uint8Array(4096).fill(7));
  assertClear(await cli(["sync", "-C", b, a]), /state\.db is damaged/);
  assertEquals((await cli(["fsck", "-C", a, "--repair"])).code, 0);
  assertEquals(json<unknown[]>(await cli(["log", "-C", a, "--json"])).length, records);
  const [r] = json<{ received: number }[]>(await cli(["sync", "-C", b, a, "--json"]));
  assertEquals(r.received, 0, "the unchanged tree was adopted, not recorded again");
  assertEquals(listing(b), listing(a));
});

Deno.test("a missing state.db is refused, not silently made empty; fsck --repair rebuilds it", async () => {
  const { a, b } = await replicas();
  assertEquals((await cli(["sync", "-C", b, a])).code, 0);
  for (const s of ["", "-wal", "-shm"]) removeIfThere(`${b}/.replicator/state.db${s}`);
  assertClear(
    await cli(["status", "-C", b]),
    /state\.db is missing; run 'replicator fsck --repair'/,
  );
  assertClear(await cli(["fsck", "-C", b]), /the state database is missing/);
  assertEquals((await cli(["fsck", "-C", b, "--repair"])).code, 0);
  const st = json<{ pending: unknown[] }>(await cli(["status", "-C", b, "--json"]));
  assertEquals(st.pending, []);
  put(`${a}/f`, "three");
  const [r] = json<{ conflicts: unknown[] }[]>(await cli(["sync", "-C", b, a, "--json"]));
  assertEquals(listing(b), listing(a));
  assertEquals(r.conflicts, [], "the rebuilt index knew f: no conflict copy");
});

Deno.test("a missing KML is named with the command to run; fsck --repair starts a new log and sync converges", async () => {
  const { a, b } = await replicas();
  assertEquals((await cli(["sync", "-C", b, a])).code, 0);
  Deno.removeSync(`${b}/.replicator/kml`);
  assertClear(await cli(["sync", "-C", b, a]), /kml is missing; run 'replicator fsck --repair'/);
  const repair = await cli(["fsck", "-C", b, "--repair"]);
  assertEquals(repair.code, 0, repair.stderr);
  assertMatch(repair.stderr, /repaired: started a new, empty log/);
  put(`${a}/after`, "later");
  assertEquals((await cli(["sync", "-C", b, a])).code, 0);
  assertEquals(listing(b), listing(a));
});

Deno.test("a missing volume.json says how to recover, without a stack trace", async () => {
  const { a, b } = await replicas();
  Deno.removeSync(`${b}/.replicator/volume.json`);
  assertClear(await cli(["status", "-C", b]), /volume\.json is missing.*'replicator clone'/);
  assertClear(await cli(["sync", "-C", a, b]), /volume\.json is missing/);
});

for (
  const [what, damage] of [
    ["unparseable", (m: string) => Deno.writeTextFileSync(`${m}/txn`, "{ not json")],
    ["of the wrong length", (m: string) => {
      Deno.writeTextFileSync(
        `${m}/txn`,
        JSON.stringify({ version: 1, kmlSize: 64, recordBytes: 500, steps: [], expect: [] }),
      );
      Deno.writeFileSync(`${m}/txn.records`, new Uint8Array(7));
      Deno.mkdirSync(`${m}/staging/00`, { recursive: true });
      Deno.writeTextFileSync(`${m}/staging/00/x`, "staged");
    }],
  ] as const
) {
  Deno.test(`a damaged interrupted batch (${what}): the error says fsck --repair, which resolves it`, async () => {
    const { a, b } = await replicas();
    const meta = `${b}/.replicator`;
    damage(meta);
    assertClear(await cli(["sync", "-C", a, b]), /txn.* run 'replicator fsck --repair'/);
    const repair = await cli(["fsck", "-C", b, "--repair"]);
    assertEquals(repair.code, 0, repair.stderr);
    assertMatch(repair.stderr, /repaired: discarded the interrupted batch/);
    for (const n of ["txn", "txn.records", "staging"]) {
      assertEquals(Deno.lstatSync(`${meta}`).isDirectory, true);
      let gone = false;
      try {
        Deno.lstatSync(`${meta}/${n}`);
      } catch {
        gone = true;
      }
      assert(gone, `${n} removed`);
    }
    const r = await cli(["sync", "-C", a, b]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(listing(b), listing(a));
  });
}

Deno.test("a corrupt Expect: the error names it and fsck --repair; after the repair sync converges", async () => {
  const { a, b } = await replicas();
  const expect = `${b}/.replicator/expect`;
  const bytes = Deno.readFileSync(expect);
  bytes[bytes.length - 1] ^= 0xff;
  Deno.writeFileSync(expect, bytes);
  assertClear(
    await cli(["sync", "-C", b, a]),
    new RegExp(`${expect} is damaged .*run 'replicator fsck --repair'`),
  );
  const check = await cli(["fsck", "-C", b]);
  assertClear(check, /expect: the Expect file is damaged.*fsck --repair/);
  assertEquals((await cli(["fsck", "-C", b, "--repair"])).code, 0);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(listing(b), listing(a));
});

Deno.test("an interrupted init is refused with the command to re-run, which then finishes it", async () => {
  const { a } = await pair();
  put(`${a}/f`, "content");
  const killed = await cli(["init", a, "--host", "alpha"], {
    env: { REPLICATOR_EXIT_AT: "created" },
  });
  assertEquals(killed.code, 99, "the test hook stopped init after creating .replicator/");
  const r = await cli(["status", "-C", a]);
  assertClear(
    r,
    new RegExp(`interrupted 'replicator init ${a} --host alpha'; run it again \\(it makes`),
  );
  assertClear(await cli(["fsck", "-C", a]), /interrupted 'replicator init/);
  const again = await cli(["init", a, "--host", "alpha"]);
  assertEquals(again.code, 0, again.stderr);
  const st = json<{ permit: { held: boolean }; pending: unknown[] }>(
    await cli(["status", "-C", a, "--json"]),
  );
  assertEquals([st.permit.held, st.pending], [true, []]);
  assertClear(await cli(["init", a]), /already a replica/);
});

Deno.test("two inits racing on one directory leave one sound replica", async () => {
  const { a } = await pair();
  for (let i = 0; i < 20; i++) put(`${a}/f${i}`, `${i}`);
  const runs = await Promise.all([cli(["init", a]), cli(["init", a]), cli(["init", a])]);
  const codes = runs.map((r) => r.code).sort();
  assertEquals(codes.filter((c) => c === 0).length, 1, runs.map((r) => r.stderr).join(""));
  for (const r of runs.filter((r) => r.code !== 0)) {
    assertMatch(r.stderr, /already a replica|busy/);
  }
  assertEquals((await cli(["fsck", "-C", a])).code, 0);
  const st = json<{ permit: { held: boolean }; pending: unknown[] }>(
    await cli(["status", "-C", a, "--json"]),
  );
  assertEquals([st.permit.held, st.pending], [true, []]);
});

Deno.test("a directory left by an interrupted clone can be cloned into again", async () => {
  const { dir, a, b } = await pair();
  put(`${a}/f`, "content");
  put(`${a}/d/g`, "more");
  await cli(["init", a, "--host", "alpha"]);
  const killed = await cli(["clone", a, b, "--host", "beta"], {
    env: { REPLICATOR_EXIT_AT: "created" },
  });
  assertEquals(killed.code, 99);
  put(`${b}/f`, "content"); // as if fetched before the kill
  assertClear(
    await cli(["sync", "-C", b, a]),
    /interrupted 'replicator clone .*'; run it again \(it makes/,
  );
  const again = await cli(["clone", a, b, "--host", "beta"]);
  assertEquals(again.code, 0, again.stderr);
  assertEquals(listing(b), listing(a));
  // Killed even before the marker was written: an empty .replicator/ is made again too.
  const c = `${dir}/c`;
  Deno.mkdirSync(`${c}/.replicator`, { recursive: true });
  assertEquals((await cli(["clone", a, c])).code, 0);
  assertEquals(listing(c), listing(a));
});

Deno.test("syncing a replica with itself through a symlink or a copy says so (exit 1), not busy", async () => {
  const { dir, a } = await replicas();
  Deno.symlinkSync(a, `${dir}/alias`);
  assertClear(await cli(["sync", "-C", a, `${dir}/alias`]), /is this same replica/);
  await new Deno.Command("cp", { args: ["-a", a, `${dir}/copy`] }).output();
  assertClear(await cli(["sync", "-C", a, `${dir}/copy`]), /is this same replica/);
});

Deno.test("a file gone, or swapped for a directory or symlink, between the walk and its hashing is not seen, not a problem", async () => {
  const { a } = await pair();
  const ghost = {
    type: "f",
    perm: 0o644,
    ino: 12345,
    size: 5,
    mtimeSec: 1,
    mtimeNsec: 0,
    target: "",
  } as Seen;
  put(`${a}/was-a-dir`, "now a file"); // its child "was-a-dir/x" was walked before
  Deno.mkdirSync(`${a}/dir-now`); // a file when walked, a directory when read
  Deno.symlinkSync(`${a}/was-a-dir`, `${a}/link-now`);
  const found = diffTree(a, new Map(), {
    seen: new Map(
      ["ghost", "was-a-dir/x", "dir-now", "link-now"].map((p) => [p, { ...ghost }]),
    ),
    unreadable: [],
    problems: [],
  });
  assertEquals([found.changes, found.problems, found.updates.size], [[], [], 0]);
  // Other read errors stay problems (here: a name longer than a directory entry allows).
  const odd = diffTree(a, new Map(), {
    seen: new Map([["n".repeat(300), { ...ghost }]]),
    unreadable: [],
    problems: [],
  });
  assertEquals(odd.problems.length, 1);
  assertMatch(odd.problems[0], /cannot read n+: .*ENAMETOOLONG/);
});
