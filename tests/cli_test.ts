/** End-to-end tests of the command line, run as a user runs it. */

import { openReplica } from "../src/apply/open.ts";
import { assert, assertEquals, assertMatch, assertNotEquals } from "./assert.ts";
import { cli, json, listing, pair, put, tempDir } from "./helpers.ts";
import { setMtimeNs } from "../src/fs/libc.ts";
import { tryLockNoFollow } from "../src/fs/nofollow.ts";
import { capture } from "../src/capture/capture.ts";

Deno.test("init and clone replicate every kind of entry exactly", async () => {
  const { a, b } = await pair();
  put(`${a}/plain.txt`, "hello\n");
  put(`${a}/empty`, "");
  put(`${a}/with space/new\nline/naïve ☃.txt`, "unicode");
  Deno.mkdirSync(`${a}/empty dir`);
  Deno.chmodSync(`${a}/empty dir`, 0o700);
  put(`${a}/bin/tool`, "#!/bin/sh\n");
  Deno.chmodSync(`${a}/bin/tool`, 0o751);
  Deno.symlinkSync("plain.txt", `${a}/link`);
  Deno.symlinkSync("/nonexistent/outside", `${a}/dangling`);
  setMtimeNs(`${a}/plain.txt`, 1_600_000_000_123_456_789n);
  assertEquals((await cli(["init", a, "--host", "alpha"])).code, 0);
  const r = await cli(["clone", a, b, "--host", "beta"]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stdout + r.stderr, "", "clone is quiet on success");
  assertEquals(listing(b), listing(a));
  assert(listing(b)["plain.txt"].includes(" 1600000000123456789 "), "mtime kept to the ns");
});

Deno.test("sync runs both ways and either side can start it", async () => {
  const { a, b } = await pair();
  put(`${a}/f`, "v1");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  put(`${a}/f`, "v2");
  put(`${a}/g/h`, "new");
  let r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(listing(b), listing(a));
  Deno.removeSync(`${a}/g`, { recursive: true });
  Deno.chmodSync(`${a}/f`, 0o600);
  r = await cli(["sync", "-C", a, b]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(listing(b), listing(a));
  r = await cli(["sync", "-C", a, b]);
  assertEquals([r.code, r.stdout, r.stderr], [0, "", ""], "nothing to do: silent");
});

Deno.test("a directory rename is one record and re-sends no file", async () => {
  const { a, b } = await pair();
  for (let i = 0; i < 20; i++) put(`${a}/dir/sub/f${i}`, `content ${i}`);
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  const before = json<unknown[]>(await cli(["log", "-C", a, "--json"])).length;
  Deno.renameSync(`${a}/dir`, `${a}/moved dir`);
  const r = await cli(["sync", "-C", b, a, "--json"]);
  const [report] = json<{ received: number; fetched: number }[]>(r);
  const log = json<{ op: string; path: string; target: string }[]>(
    await cli(["log", "-C", a, "--json"]),
  );
  assertEquals(log.length, before + 1);
  assertEquals(log.at(-1)!.op, "rename");
  assertEquals([log.at(-1)!.path, log.at(-1)!.target], ["dir", "moved dir"]);
  assertEquals([report.received, report.fetched], [1, 0]);
  assertEquals(listing(b), listing(a));
});

Deno.test("records relay through a middle replica and apply once", async () => {
  const dir = await tempDir();
  const [a, b, c] = ["a", "b", "c"].map((n) => `${dir}/${n}`);
  Deno.mkdirSync(a);
  put(`${a}/one`, "1");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  await cli(["clone", b, c, "--host", "gamma"]);
  assertEquals(listing(c), listing(a));
  put(`${a}/two`, "2");
  await cli(["sync", "-C", b, a]);
  await cli(["sync", "-C", c, b]);
  assertEquals(listing(c), listing(a));
  const r = json<{ received: number }[]>(await cli(["sync", "-C", c, a, "--json"]));
  assertEquals(r[0].received, 0, "records reached by two paths apply once");
  const logC = json<{ originHost: string; originSeq: number }[]>(
    await cli(["log", "-C", c, "--json"]),
  );
  const keys = logC.map((e) => `${e.originHost}:${e.originSeq}`);
  assertEquals(new Set(keys).size, keys.length, "no record twice in C's log");
});

Deno.test("a replica without the permit keeps its changes and conflict copies", async () => {
  const { a, b } = await pair();
  put(`${a}/shared.txt`, "from alpha v1");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  put(`${b}/shared.txt`, "beta's edit");
  put(`${b}/beta-only.txt`, "mine");
  let r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(Deno.readTextFileSync(`${a}/shared.txt`), "from alpha v1", "not published");
  assert(!listing(a)["beta-only.txt"]);
  const st = json<{ pending: { op: string; path: string }[] }>(
    await cli(["status", "-C", b, "--json"]),
  );
  assertEquals(st.pending.map((p) => p.path).sort(), ["beta-only.txt", "shared.txt"]);
  put(`${a}/shared.txt`, "from alpha v2");
  r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 3, "conflicts kept: exit 3");
  assertMatch(
    r.stderr,
    /conflict: kept the local version as shared\.txt\.conflict-beta-\d{8}T\d{6}Z/,
  );
  assertEquals(Deno.readTextFileSync(`${b}/shared.txt`), "from alpha v2");
  const copies = [...Deno.readDirSync(b)].map((e) => e.name).filter((n) =>
    n.includes(".conflict-")
  );
  assertEquals(copies.length, 1);
  assertEquals(Deno.readTextFileSync(`${b}/${copies[0]}`), "beta's edit", "nothing lost");
  const st2 = json<{ conflicts: string[] }>(await cli(["status", "-C", b, "--json"]));
  assertEquals(st2.conflicts, copies);
  assertEquals(Deno.readTextFileSync(`${b}/beta-only.txt`), "mine");
});

Deno.test("errors: missing volume, foreign peer, usage, busy", async () => {
  const { dir, a, b } = await pair();
  let r = await cli(["status", "-C", dir]);
  assertEquals(r.code, 1);
  assertMatch(r.stderr, /not inside a replicator volume.*replicator init/);
  r = await cli(["frobnicate"]);
  assertEquals(r.code, 2);
  r = await cli(["status", "--no-such-flag"]);
  assertEquals(r.code, 2);
  await cli(["init", a, "--host", "alpha"]);
  Deno.mkdirSync(b);
  await cli(["init", b, "--host", "other"]);
  r = await cli(["sync", "-C", a, b]);
  assertEquals(r.code, 1);
  assertMatch(r.stderr, /replica of another volume/);
  r = await cli(["sync", "-C", a, dir]);
  assertEquals(r.code, 1);
  assertMatch(r.stderr, /is not a replica/);
  const lock = `${a}/.replicator/lock`;
  const holder = new Deno.Command("flock", { args: [lock, "sleep", "30"] }).spawn();
  for (let release; (release = tryLockNoFollow(lock));) { // wait until the other process holds it
    release();
    await new Promise((ok) => setTimeout(ok, 20));
  }
  r = await cli(["status", "-C", a], { env: { REPLICATOR_LOCK_WAIT: "0.5" } });
  holder.kill();
  await holder.status;
  assertEquals(r.code, 75);
  assertMatch(r.stderr, /busy/);
});

Deno.test("peer add, list, remove; sync with no PEER uses the named peers", async () => {
  const { a, b } = await pair();
  put(`${a}/x`, "1");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  assertEquals((await cli(["peer", "add", "origin", `file://${a}`, "-C", b])).code, 0);
  assertEquals(json(await cli(["peer", "list", "-C", b, "--json"])), { origin: `file://${a}` });
  put(`${a}/y`, "2");
  const r = await cli(["sync", "-C", b]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(listing(b), listing(a));
  assertEquals((await cli(["peer", "remove", "origin", "-C", b])).code, 0);
  assertEquals((await cli(["sync", "-C", b])).code, 2);
  assertEquals((await cli(["peer", "remove", "origin", "-C", b])).code, 1);
});

Deno.test("a torn KML tail is cut on open; a corrupt middle record is found by fsck and repaired", async () => {
  const { a, b } = await pair();
  for (let i = 0; i < 5; i++) put(`${a}/f${i}`, `${i}`);
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  const vol = openReplica(a);
  for (const name of ["y", "z"]) {
    put(`${a}/${name}`, name); // recorded on the writer, not yet sent
    capture(vol);
  }
  vol.close();
  const kml = `${a}/.replicator/kml`;
  const good = Deno.readFileSync(kml);
  Deno.writeFileSync(kml, new Uint8Array([1, 2, 3, 4, 5, 6, 7]), { append: true });
  let r = await cli(["fsck", "-C", a]);
  assertEquals([r.code, r.stderr], [0, ""]);
  assertEquals(Deno.readFileSync(kml), good, "torn tail cut back");
  const log = json<{ offset: number }[]>(await cli(["log", "-C", a, "--json"]));
  const yRecord = log.length - 2;
  const bad = Deno.readFileSync(kml);
  bad[log[yRecord].offset + 30] ^= 0x10;
  Deno.writeFileSync(kml, bad);
  r = await cli(["fsck", "-C", a]);
  assertEquals(r.code, 1);
  assertMatch(r.stderr, new RegExp(`offset ${log[yRecord].offset}`));
  r = await cli(["fsck", "-C", a, "--repair"]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals((await cli(["fsck", "-C", a])).code, 0);
  put(`${a}/after`, "repair");
  r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(listing(b), listing(a), "records cut by the repair are published again");
  assert(listing(b)["y"] && listing(b)["z"]);
});

Deno.test("--json output of status, log and sync is one JSON document", async () => {
  const { a, b } = await pair();
  put(`${a}/x`, "1");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  const st = json<{ permit: { held: boolean; epoch: number }; hostName: string }>(
    await cli(["status", "-C", a, "--json"]),
  );
  assertEquals([st.permit.held, st.permit.epoch, st.hostName], [true, 1, "alpha"]);
  const stb = json<{ permit: { held: boolean } }>(await cli(["status", "-C", b, "--json"]));
  assertEquals(stb.permit.held, false);
  const log = json<{ op: string }[]>(await cli(["log", "-C", a, "--json"]));
  assertEquals(log.map((e) => e.op), ["permit", "store"]);
  const s = json<{ received: number }[]>(await cli(["sync", "-C", b, a, "--json"]));
  assertNotEquals(s.length, 0);
  type Expect = { host: string; readOffset: number; confirmedOffset: number };
  const sa = json<{ kml: { bytes: number }; expect: Expect[] }>(
    await cli(["status", "-C", a, "--json"]),
  );
  const sb = json<{ hostId: string; kml: { bytes: number }; expect: Expect[] }>(
    await cli(["status", "-C", b, "--json"]),
  );
  assertEquals(sa.expect.map((e) => e.host), [sb.hostId]);
  assertEquals(sb.expect[0].readOffset, sa.kml.bytes, "b has read all of a's log");
  assertEquals(sa.expect[0].confirmedOffset, sa.kml.bytes, "and a knows it");
  assertEquals(sa.expect[0].readOffset, sb.kml.bytes, "a has read all of b's log");
});

Deno.test({
  name: "a progress bar appears on a terminal, and not without one",
  ignore: !(() => {
    try {
      return Deno.statSync("/usr/bin/script").isFile;
    } catch {
      return false;
    }
  })(),
  fn: async () => {
    const { a, b } = await pair();
    for (let i = 0; i < 20; i++) put(`${a}/f${i}`, "x".repeat(100_000));
    await cli(["init", a, "--host", "alpha"]);
    const mod = new URL("../mod.ts", import.meta.url).pathname;
    const command = `${Deno.execPath()} run -A --quiet ${mod} clone ${a} ${b} --host beta`;
    const out = await new Deno.Command("script", {
      args: ["-qec", command, "/dev/null"],
      env: { REPLICATOR_PROGRESS_AFTER_MS: "0" },
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assertEquals(out.code, 0, text);
    assertMatch(text, /\[#+\] 20\/20 files, 1\.9\/1\.9 MiB/);
    const { b: c } = await pair();
    const plain = await cli(["clone", a, c, "--host", "gamma"], {
      env: { REPLICATOR_PROGRESS_AFTER_MS: "0" },
    });
    assertEquals([plain.code, plain.stderr], [0, ""]);
  },
});

Deno.test("a peer that fails does not stop the sync with the others", async () => {
  const { dir, a, b } = await pair();
  put(`${a}/x`, "1");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  put(`${a}/x`, "2");
  Deno.mkdirSync(`${dir}/not-a-replica`);
  const r = await cli(["sync", "-C", b, `${dir}/not-a-replica`, a]);
  assertEquals(r.code, 1);
  assertMatch(r.stderr, /peer .*not-a-replica: .*is not a replica/);
  assertEquals(Deno.readTextFileSync(`${b}/x`), "2", "the good peer was synced");
  const alone = await cli(["sync", "-C", b, `${dir}/not-a-replica`]);
  assertEquals(alone.code, 1);
  assertMatch(alone.stderr, /^replicator: .*is not a replica/);
});

Deno.test("status and log name hosts by the names their handshakes gave, ids on request", async () => {
  const { a, b } = await pair();
  put(`${a}/f`, "x");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  put(`${a}/g`, "y");
  assertEquals((await cli(["sync", "-C", b, a])).code, 0);
  const status = await cli(["status", "-C", b]);
  assertMatch(status.stdout, /permit: held by alpha \(epoch 1\)/);
  assertMatch(status.stdout, /^host alpha: read \d+ records of its log/m);
  const ids = await cli(["status", "-C", b, "--ids"]);
  const alphaId = json<{ expect: { host: string }[] }>(await cli(["status", "-C", b, "--json"]))
    .expect[0].host;
  assertMatch(ids.stdout, new RegExp(`^host alpha \\(${alphaId}\\): read`, "m"));
  const log = await cli(["log", "-C", a]);
  assertMatch(log.stdout, /\talpha:1\tepoch 1\tpermit\tholder alpha$/m);
  assertMatch((await cli(["status", "-C", a])).stdout, /^host beta: read/m);
});
