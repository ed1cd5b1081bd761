/** Sync behaviour through the API: coalescing, hostile peers, unreadable files, big files. */

import { openReplica } from "../src/apply/open.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { asNobody, cli, json, listing, pair, put } from "./helpers.ts";
import { capture } from "../src/capture/capture.ts";
import { encodeRecord, Op } from "../src/kml/record.ts";
import { scan } from "../src/capture/scan.ts";
import { pull } from "../src/sync/pull.ts";
import { localPeer } from "../src/sync/peer.ts";

Deno.test("a file written 100 times travels once", async () => {
  const { a, b } = await pair();
  put(`${a}/hot`, "v0");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  const vol = openReplica(a);
  try {
    for (let i = 1; i <= 100; i++) {
      put(`${a}/hot`, `version ${i}`);
      assertEquals(capture(vol).recorded, 1);
    }
  } finally {
    vol.close();
  }
  const [r] = json<{ received: number; fetched: number; applied: number }[]>(
    await cli(["sync", "-C", b, a, "--json"]),
  );
  assertEquals([r.received, r.fetched], [100, 1]);
  assertEquals(Deno.readTextFileSync(`${b}/hot`), "version 100");
  assertEquals(listing(b), listing(a));
});

/** Appends a record to `a`'s log as if `a` had written it. */
function forge(a: string, op: Op, path: string, target = ""): void {
  const vol = openReplica(a);
  try {
    const [r] = vol.ownRecords([{
      op,
      path,
      target,
      mode: 0o100644,
      size: 1,
      mtimeNs: 0n,
      digest: "0".repeat(64),
      uid: -1,
      gid: -1,
      owner: "",
      group: "",
    }]);
    vol.commitRecords([r], [encodeRecord(r)]);
  } finally {
    vol.close();
  }
}

Deno.test("a hostile peer's path that escapes the volume is refused and nothing is applied", async () => {
  for (const evil of ["../escaped", "/etc/evil", "a/../../escaped", ".replicator/kml", "a//b"]) {
    const { dir, a, b } = await pair();
    put(`${a}/ok`, "1");
    await cli(["init", a, "--host", "alpha"]);
    await cli(["clone", a, b, "--host", "beta"]);
    const before = listing(b);
    const kmlBefore = Deno.readFileSync(`${b}/.replicator/kml`);
    put(`${a}/ok2`, "2");
    forge(a, Op.Mkdir, evil);
    const r = await cli(["sync", "-C", b, a]);
    assertEquals(r.code, 1, `${evil}: ${r.stderr}`);
    assertMatch(r.stderr, /refusing unsafe path/);
    assertEquals(listing(b), before, "nothing applied");
    assertEquals(Deno.readFileSync(`${b}/.replicator/kml`), kmlBefore);
    assert(![...Deno.readDirSync(dir)].some((e) => e.name === "escaped"));
  }
});

Deno.test("records from a host that did not hold the permit never overwrite anything", async () => {
  const { a, b } = await pair();
  put(`${a}/f`, "holder's");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  forge(b, Op.Unlink, "f"); // beta never held the permit
  const [r] = json<{ rejected: number }[]>(await cli(["sync", "-C", a, b, "--json"]));
  assertEquals(r.rejected, 1);
  assertEquals(Deno.readTextFileSync(`${a}/f`), "holder's");
});

Deno.test({
  name: "an unreadable file is reported and the rest still syncs",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const { dir, a, b } = await pair();
    put(`${a}/readable`, "yes");
    put(`${a}/secret`, "no");
    const nobody = await asNobody(dir);
    assertEquals((await nobody(["init", a, "--host", "alpha"])).code, 0);
    assertEquals((await nobody(["clone", a, b, "--host", "beta"])).code, 0);
    put(`${a}/more`, "added");
    put(`${a}/secret`, "changed");
    await new Deno.Command("chown", { args: ["-R", "65534:65534", a] }).output();
    Deno.chmodSync(`${a}/secret`, 0o000);
    const r = await nobody(["sync", "-C", b, a]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /secret/);
    assertEquals(Deno.readTextFileSync(`${b}/more`), "added");
    assertEquals(Deno.readTextFileSync(`${b}/secret`), "no");
    Deno.chmodSync(`${a}/secret`, 0o644);
    assertEquals((await nobody(["sync", "-C", b, a])).code, 0);
    assertEquals(Deno.readTextFileSync(`${b}/secret`), "changed");
  },
});

Deno.test("a file renamed on the writer while its content was deferred still arrives", async () => {
  const { a, b } = await pair();
  put(`${a}/keep`, "k");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  put(`${a}/doc.txt`, "the content");
  const va = openReplica(a);
  capture(va); // recorded as "store doc.txt"
  Deno.renameSync(`${a}/doc.txt`, `${a}/renamed.txt`); // before beta fetched it
  const vb = openReplica(b);
  const first = await pull(vb, localPeer(va));
  vb.close();
  va.close();
  assertEquals(first.deferred, ["doc.txt"], "the content could not be had");
  const r = await cli(["sync", "-C", b, a, "--json"]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(Deno.readTextFileSync(`${b}/renamed.txt`), "the content");
  assertEquals(listing(b), listing(a));
});

Deno.test("a pull in many small transactions still fetches each file once and converges", async () => {
  const { a, b } = await pair();
  for (let i = 0; i < 12; i++) put(`${a}/dir/f${i}`, `v0 ${i}`);
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  const va = openReplica(a);
  for (let round = 1; round <= 5; round++) {
    const dir = round > 2 ? "moved" : "dir";
    for (let i = 0; i < 12; i += 2) put(`${a}/${dir}/f${i}`, `v${round} ${i}`);
    if (round === 2) Deno.renameSync(`${a}/dir`, `${a}/moved`);
    if (round === 3) put(`${a}/moved/new`, "late");
    capture(va);
  }
  va.close();
  const env = { REPLICATOR_BATCH_RECORDS: "5" };
  const [r] = json<{ received: number; fetched: number }[]>(
    await cli(["sync", "-C", b, a, "--json"], { env }),
  );
  assert(r.received > 20, `only ${r.received} records: the test needs several batches`);
  assertEquals(r.fetched, 7, "the 6 rewritten files and the new one, each once");
  assertEquals(listing(b), listing(a));
  assertEquals((await cli(["fsck", "-C", b])).code, 0);
});

Deno.test({
  name: "a file that could not be written is reported, the rest syncs, and the next sync brings it",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const { a, b } = await pair();
    put(`${a}/locked/f`, "v1");
    put(`${a}/other`, "o1");
    await cli(["init", a, "--host", "alpha"]);
    await cli(["clone", a, b, "--host", "beta"]);
    put(`${a}/locked/f`, "v2");
    put(`${a}/other`, "o2");
    const immutable = (on: boolean) =>
      new Deno.Command("chattr", { args: [on ? "+i" : "-i", `${b}/locked`] }).output();
    assertEquals((await immutable(true)).code, 0);
    try {
      const r = await cli(["sync", "-C", b, a]);
      assertEquals(r.code, 1);
      assertMatch(r.stderr, /locked\/f: .*retried by the next sync/);
      assertEquals(Deno.readTextFileSync(`${b}/other`), "o2", "the rest synced");
      assertEquals(Deno.readTextFileSync(`${b}/locked/f`), "v1", "the old version is whole");
      const again = await cli(["sync", "-C", b, a]);
      assertEquals(again.code, 1, "still not writable: still reported");
      assertMatch(again.stderr, /locked\/f: still not applied/);
    } finally {
      await immutable(false);
    }
    const r = await cli(["sync", "-C", b, a]);
    assertEquals([r.code, r.stderr], [0, ""]);
    assertEquals(listing(b), listing(a));
    const st = json<{ pending: unknown[] }>(await cli(["status", "-C", b, "--json"]));
    assertEquals(st.pending, [], "nothing looks locally changed afterwards: " + JSON.stringify(st));
  },
});

Deno.test("a capture killed between its append and its index update records nothing twice", async () => {
  const { a } = await pair();
  put(`${a}/f`, "1");
  await cli(["init", a, "--host", "alpha"]);
  put(`${a}/f`, "2");
  put(`${a}/g`, "new");
  let vol = openReplica(a);
  const found = scan(vol.root, vol.state);
  const records = vol.ownRecords(found.changes);
  vol.kml.append(records.map(encodeRecord)); // ... and the process dies here
  vol.close();
  vol = openReplica(a); // recovery
  try {
    assertEquals(capture(vol).recorded, 0, "the records already in the log are not made again");
    put(`${a}/g`, "changed after");
    assertEquals(capture(vol).recorded, 1);
  } finally {
    vol.close();
  }
});

Deno.test("a replica seeded by other means keeps identical files (nothing fetched) and conflicts only on differences", async () => {
  const { a, b } = await pair();
  for (let i = 0; i < 10; i++) put(`${a}/d/f${i}`, `content ${i}`);
  await cli(["init", a, "--host", "alpha"]);
  for (let i = 0; i < 10; i++) put(`${b}/d/f${i}`, i === 7 ? "edited here" : `content ${i}`);
  const r = await cli(["clone", a, b, "--host", "beta", "--json"]);
  assertEquals(r.code, 3, "one conflict");
  const [report] = JSON.parse(r.stdout) as { fetched: number; conflicts: string[] }[];
  assertEquals(report.fetched, 1, "only the file that differs travels");
  assertEquals(report.conflicts.length, 1);
  assertMatch(report.conflicts[0], /^d\/f7\.conflict-beta-/);
  const [again] = json<{ fetched: number }[]>(await cli(["sync", "-C", b, a, "--json"]));
  assertEquals(again.fetched, 0);
  const copies = [...Deno.readDirSync(`${b}/d`)].filter((e) => e.name.includes(".conflict-"));
  assertEquals(copies.length, 1);
  assertEquals(listing(b)["d"], listing(a)["d"], "the directory's mode and mtime too");
  Deno.removeSync(`${b}/d/${copies[0].name}`); // (this changes d's mtime here)
  const withoutD = (l: Record<string, string>) => ({ ...l, d: "" });
  assertEquals(
    withoutD(listing(b)),
    withoutD(listing(a)),
    "mtimes and modes taken from the writer",
  );
});

Deno.test("the holder's rename onto a path changed here keeps the local version", async () => {
  const { a, b } = await pair();
  put(`${a}/from`, "holder's");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  put(`${b}/to`, "local, unpublished");
  Deno.renameSync(`${a}/from`, `${a}/to`);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 3, r.stderr);
  assertEquals(Deno.readTextFileSync(`${b}/to`), "holder's");
  const copy = [...Deno.readDirSync(b)].find((e) => e.name.startsWith("to.conflict-beta-"));
  assert(copy, "conflict copy made");
  assertEquals(Deno.readTextFileSync(`${b}/${copy.name}`), "local, unpublished");
  assert(!listing(b)["from"]);
});

Deno.test("a directory the holder replaced by a file keeps local files as a conflict copy", async () => {
  const { a, b } = await pair();
  put(`${a}/d/x`, "holder's file");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  put(`${b}/d/local`, "only here");
  Deno.removeSync(`${a}/d`, { recursive: true });
  put(`${a}/d`, "now a file");
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 3, r.stderr);
  assertEquals(Deno.readTextFileSync(`${b}/d`), "now a file");
  const copy = [...Deno.readDirSync(b)].find((e) => e.name.startsWith("d.conflict-beta-"));
  assert(copy, "conflict copy made");
  assertEquals(Deno.readTextFileSync(`${b}/${copy.name}/local`), "only here", "nothing lost");
});

Deno.test("the same content needed by two batches arrives in both places in one sync", async () => {
  const { a, b } = await pair();
  put(`${a}/keep`, "k");
  await cli(["init", a, "--host", "alpha"]);
  await cli(["clone", a, b, "--host", "beta"]);
  put(`${a}/x1`, "the same content");
  put(`${a}/y`, "other");
  put(`${a}/x2`, "the same content");
  const r = await cli(["sync", "-C", b, a, "--json"], { env: { REPLICATOR_BATCH_RECORDS: "1" } });
  assertEquals([r.code, r.stderr], [0, ""]);
  assertEquals(listing(b), listing(a));
});

Deno.test("content a later record replaced is no longer wanted: the next sync fetches nothing", async () => {
  const { a, b } = await pair();
  put(`${a}/f`, "version 1");
  put(`${a}/g`, "other");
  await cli(["init", a, "--host", "alpha"]);
  const va = openReplica(a);
  try {
    put(`${a}/f`, "version 2, longer");
    assertEquals(capture(va).recorded, 1);
  } finally {
    va.close();
  }
  // One record per window: the first version of f is looked for alone, and is gone by then.
  const env = { REPLICATOR_WINDOW_BYTES: "1" };
  const made = await cli(["clone", a, b, "--host", "beta"], { env });
  assertEquals(made.code, 0, made.stderr);
  assertEquals(Deno.readTextFileSync(`${b}/f`), "version 2, longer");
  const vb = openReplica(b);
  try {
    assertEquals(vb.state.wanted(), [], "the first version is not wanted any more");
  } finally {
    vb.close();
  }
  const [r] = json<{ fetched: number; fetchedBytes: number }[]>(
    await cli(["sync", "-C", b, a, "--json"]),
  );
  assertEquals([r.fetched, r.fetchedBytes], [0, 0]);
  assertEquals(listing(b), listing(a));
});
