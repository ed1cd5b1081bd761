/**
 * Regression tests for the integrity defects of issue 7, one per defect, run
 * through the command line as a user would: a local edit is never lost, a
 * re-run batch never undoes a later step, content that did not arrive stays
 * wanted, sequences are not skipped, setuid bits do not replicate.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { cli, json, listing, pair, put, spawnCli } from "./helpers.ts";
import { encodeRecord, Op } from "../src/kml/record.ts";
import { KmlLog } from "../src/kml/log.ts";
import { openReplica } from "../src/apply/open.ts";

/** Names of conflict copies of `name` in directory `dir`. */
function conflicts(dir: string, name: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
    n.startsWith(`${name}.conflict-`)
  );
}

async function holderAndReplica(files: Record<string, string>) {
  const p = await pair();
  for (const [name, text] of Object.entries(files)) put(`${p.a}/${name}`, text);
  assertEquals((await cli(["init", p.a, "--host", "alpha"])).code, 0);
  assertEquals((await cli(["clone", p.a, p.b, "--host", "beta"])).code, 0);
  return p;
}

Deno.test("defect 1: a local edit of a file the holder renames and rewrites is kept", async () => {
  const { a, b } = await holderAndReplica({ c: "holder's c\n" });
  put(`${b}/c`, "beta's own edit of c\n");
  Deno.renameSync(`${a}/c`, `${a}/a`);
  Deno.writeTextFileSync(`${a}/a`, "appended\n", { append: true });
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 3, r.stderr);
  const copies = conflicts(b, "c");
  assertEquals(copies.length, 1);
  assertEquals(Deno.readTextFileSync(`${b}/${copies[0]}`), "beta's own edit of c\n");
  assertEquals(Deno.readTextFileSync(`${b}/a`), "holder's c\nappended\n");
});

Deno.test("defect 1b: a local edit of a file the holder deletes is kept as a conflict copy", async () => {
  const { a, b } = await holderAndReplica({ gone: "v1" });
  put(`${b}/gone`, "edited on beta");
  Deno.removeSync(`${a}/gone`);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 3, r.stderr);
  const copies = conflicts(b, "gone");
  assertEquals(copies.length, 1);
  assertEquals(Deno.readTextFileSync(`${b}/${copies[0]}`), "edited on beta");
  assert(!listing(b)["gone"]);
});

Deno.test("defect 2: an edit made while the sync fetches is kept, not overwritten", async () => {
  const { a, b, dir } = await holderAndReplica({ doc: "v1" });
  put(`${a}/doc`, "holder's v2");
  const release = `${dir}/release`;
  const child = spawnCli(["sync", "-C", b, a], { REPLICATOR_PAUSE_AT: `staged:${release}` });
  // Wait until the holder's content is staged, then edit as a user would.
  for (let i = 0; i < 3000; i++) {
    try {
      if ([...Deno.readDirSync(`${b}/.replicator/staging`)].length > 0) break;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 10));
  }
  put(`${b}/doc`, "beta typed this during the sync");
  Deno.writeTextFileSync(release, "");
  const status = await child.status;
  assertEquals(status.code, 3, new TextDecoder().decode((await child.output()).stderr));
  const copies = conflicts(b, "doc");
  assertEquals(copies.length, 1);
  assertEquals(Deno.readTextFileSync(`${b}/${copies[0]}`), "beta typed this during the sync");
  assertEquals(Deno.readTextFileSync(`${b}/doc`), "holder's v2");
});

Deno.test("defect 5: a batch killed after its steps is finished without undoing a later step", async () => {
  const { a, b } = await holderAndReplica({ log: "old log\n" });
  Deno.renameSync(`${a}/log`, `${a}/log.1`);
  put(`${a}/log`, "new log\n");
  const killed = await cli(["sync", "-C", b, a], { env: { REPLICATOR_CRASH_AT: "steps" } });
  assert(killed.code !== 0, "the crash point was reached");
  const r = await cli(["sync", "-C", b, a]);
  assertEquals([r.code, r.stderr], [0, ""]);
  assertEquals(Deno.readTextFileSync(`${b}/log`), "new log\n");
  assertEquals(Deno.readTextFileSync(`${b}/log.1`), "old log\n");
  assertEquals(listing(b), listing(a));
  assertEquals((await cli(["fsck", "-C", b])).code, 0);
});

Deno.test("defect 5b: an error after the steps (EIO on the KML append) is recovered by the next run", async () => {
  const { a, b } = await holderAndReplica({ x: "1", d: "" });
  Deno.removeSync(`${a}/d`);
  Deno.mkdirSync(`${a}/d`);
  put(`${a}/d/inner`, "in d");
  Deno.renameSync(`${a}/x`, `${a}/y`);
  put(`${a}/x`, "a new x");
  const failed = await cli(["sync", "-C", b, a], { env: { REPLICATOR_FAIL_AT: "append" } });
  assertEquals(failed.code, 1);
  assertMatch(failed.stderr, /EIO/);
  assert(!/\n\s+at /.test(failed.stderr), "no stack trace");
  const r = await cli(["sync", "-C", b, a]);
  assertEquals([r.code, r.stderr], [0, ""]);
  assertEquals(listing(b), listing(a));
});

Deno.test("defect 7: a relayed record with a far sequence number does not block the holder", async () => {
  const { dir, a, b } = await holderAndReplica({ f: "1" });
  const c = `${dir}/c`;
  assertEquals((await cli(["clone", a, c, "--host", "gamma"])).code, 0);
  // gamma relays a forged record claiming alpha's origin with sequence 2^52.
  const va = openReplica(a);
  const holder = va.hostId;
  const epoch = va.permit().epoch;
  va.close();
  const log = KmlLog.open(`${c}/.replicator/kml`);
  log.append([encodeRecord({
    op: Op.Store,
    originHost: holder,
    originSeq: 2 ** 52,
    epoch,
    timeNs: 0n,
    mode: 0o100644,
    size: 0,
    mtimeNs: 0n,
    digest: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    path: "forged",
    target: "",
    uid: -1,
    gid: -1,
    owner: "",
    group: "",
  })]);
  log.close();
  const relayed = await cli(["sync", "-C", b, c]);
  assertEquals(relayed.code, 1, "a gap is reported");
  assertMatch(relayed.stderr, /held back/);
  assert(!listing(b)["forged"], "the forged record is not applied");
  put(`${a}/f`, "2, written after the forgery");
  const r = await cli(["sync", "-C", b, a]);
  assertEquals([r.code, r.stderr], [0, ""]);
  assertEquals(Deno.readTextFileSync(`${b}/f`), "2, written after the forgery");
});

Deno.test({
  name: "defect 8: setuid and setgid bits are dropped on receipt",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const { a, b } = await holderAndReplica({ tool: "#!/bin/sh\n" });
    Deno.chmodSync(`${a}/tool`, 0o6755);
    Deno.mkdirSync(`${a}/shared`);
    Deno.chmodSync(`${a}/shared`, 0o2775);
    const r = await cli(["sync", "-C", b, a]);
    assertEquals([r.code, r.stderr], [0, ""]);
    assertEquals(Deno.lstatSync(`${b}/tool`).mode! & 0o7777, 0o755);
    assertEquals(Deno.lstatSync(`${b}/shared`).mode! & 0o7777, 0o775);
  },
});

Deno.test("defect 9: a wanted file whose parent is a local symlink or file arrives; the local entry is kept", async () => {
  const { dir, a, b } = await holderAndReplica({ "p/f": "v1", "q/g": "v1" });
  Deno.mkdirSync(`${dir}/elsewhere`);
  Deno.removeSync(`${b}/p`, { recursive: true });
  Deno.symlinkSync(`${dir}/elsewhere`, `${b}/p`);
  Deno.removeSync(`${b}/q`, { recursive: true });
  put(`${b}/q`, "a file where the holder has a directory");
  put(`${a}/p/f`, "v2");
  put(`${a}/q/g`, "v2");
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 3, r.stderr);
  assertEquals(
    [...Deno.readDirSync(`${dir}/elsewhere`)],
    [],
    "nothing written through the symlink",
  );
  assertEquals(Deno.readTextFileSync(`${b}/p/f`), "v2");
  assertEquals(Deno.readTextFileSync(`${b}/q/g`), "v2");
  assertEquals(conflicts(b, "p").length + conflicts(b, "q").length, 2);
  const again = await cli(["sync", "-C", b, a]);
  assertEquals([again.code, again.stderr], [0, ""], "converged");
});

Deno.test("a remote attribute change on a locally edited file leaves the edit alone", async () => {
  const { a, b } = await holderAndReplica({ f: "v1" });
  put(`${b}/f`, "beta's");
  Deno.chmodSync(`${a}/f`, 0o600);
  const r = await cli(["sync", "-C", b, a, "--json"]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(Deno.readTextFileSync(`${b}/f`), "beta's");
  const st = json<{ pending: { path: string }[] }>(await cli(["status", "-C", b, "--json"]));
  assert(st.pending.some((p) => p.path === "f"), "still listed as an unpublished change");
});

Deno.test("directory mtimes replicate, and a 200-file directory rename is one record plus a few attribute records", async () => {
  const files: Record<string, string> = {};
  for (let i = 0; i < 200; i++) files[`big/sub/f${i}`] = `file ${i}`;
  const { a, b } = await holderAndReplica(files);
  const before = json<unknown[]>(await cli(["log", "-C", a, "--json"])).length;
  Deno.mkdirSync(`${a}/moved`);
  Deno.renameSync(`${a}/big/sub`, `${a}/moved/sub`);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals([r.code, r.stderr], [0, ""]);
  const log = json<{ op: string; path: string }[]>(await cli(["log", "-C", a, "--json"]));
  const ops = log.slice(before).map((e) => `${e.op} ${e.path}`);
  assertEquals(ops.filter((o) => o.startsWith("rename")), ["rename big/sub"]);
  assert(ops.length <= 5, `one rename, one mkdir and a few setattr: ${ops.join(", ")}`);
  const lb = listing(b);
  assertEquals(lb, listing(a), "directory mtimes included");
  assertEquals(Object.keys(lb).filter((p) => p.startsWith("moved/sub/")).length, 200);
});

Deno.test({
  name: "owners and groups replicate when the receiver runs as root, and a chown is a record",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const { a, b } = await holderAndReplica({ "shared/f": "x", g: "y" });
    const nobody = 65534;
    Deno.chownSync(`${a}/shared/f`, nobody, nobody);
    Deno.chownSync(`${a}/shared`, 1, 1);
    Deno.symlinkSync("f", `${a}/shared/ln`);
    new Deno.Command("chown", { args: ["-h", `${nobody}:${nobody}`, `${a}/shared/ln`] })
      .outputSync();
    const r = await cli(["sync", "-C", b, a]);
    assertEquals([r.code, r.stderr], [0, ""]);
    assertEquals(listing(b), listing(a));
    const st = Deno.lstatSync(`${b}/shared/f`);
    assertEquals([st.uid, st.gid], [nobody, nobody]);
    assertEquals(Deno.lstatSync(`${b}/shared/ln`).uid, nobody, "a symlink's own owner");
    Deno.chownSync(`${a}/g`, 1, nobody);
    const again = await cli(["sync", "-C", b, a]);
    assertEquals([again.code, again.stderr], [0, ""]);
    const g = Deno.lstatSync(`${b}/g`);
    assertEquals([g.uid, g.gid], [1, nobody]);
    const log = json<{ op: string; path: string }[]>(await cli(["log", "-C", a, "--json"]));
    assertEquals(log.at(-1)?.op, "setattr");
  },
});

Deno.test("hard links stay hard links: new names, content changed through one name, names removed", async () => {
  const { dir, a, b } = await holderAndReplica({ "d/f": "one\n" });
  Deno.linkSync(`${a}/d/f`, `${a}/d/g`);
  Deno.mkdirSync(`${a}/e`);
  Deno.linkSync(`${a}/d/f`, `${a}/e/h`);
  let r = await cli(["sync", "-C", b, a, "--json"]);
  assertEquals(r.code, 0, r.stderr);
  const ino = (p: string) => Deno.lstatSync(p).ino;
  assertEquals(ino(`${b}/d/g`), ino(`${b}/d/f`));
  assertEquals(ino(`${b}/e/h`), ino(`${b}/d/f`));
  assertEquals(json<{ fetched: number }[]>(r)[0].fetched, 0, "a link brings no content");
  const log = json<{ op: string; path: string; target: string }[]>(
    await cli(["log", "-C", a, "--json"]),
  );
  assert(log.some((e) => e.op === "link" && e.path === "e/h" && e.target === "d/f"));
  // Content written through one name reaches every name, still one file.
  Deno.writeTextFileSync(`${a}/e/h`, "two\n", { append: true });
  r = await cli(["sync", "-C", b, a]);
  assertEquals([r.code, r.stderr], [0, ""]);
  assertEquals(Deno.readTextFileSync(`${b}/d/g`), "one\ntwo\n");
  assertEquals(ino(`${b}/d/g`), ino(`${b}/d/f`));
  assertEquals(ino(`${b}/e/h`), ino(`${b}/d/f`));
  Deno.removeSync(`${a}/d/f`);
  r = await cli(["sync", "-C", b, a]);
  assertEquals([r.code, r.stderr], [0, ""]);
  assertEquals(ino(`${b}/e/h`), ino(`${b}/d/g`));
  assertEquals(listing(b), listing(a));
  // A fresh clone links them too.
  const c = `${dir}/c`;
  assertEquals((await cli(["clone", a, c, "--host", "gamma"])).code, 0);
  assertEquals(ino(`${c}/e/h`), ino(`${c}/d/g`));
  assertEquals(listing(c), listing(a));
});

Deno.test("a file the replica edited and the holder renamed: the edit is kept, the holder's file arrives at its new name", async () => {
  const { a, b } = await holderAndReplica({ c: "holder's c\n" });
  put(`${b}/c`, "beta's edit of c\n");
  Deno.renameSync(`${a}/c`, `${a}/moved`);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 3, r.stderr);
  const copies = conflicts(b, "c");
  assertEquals(copies.length, 1, "the edit is a conflict copy, not moved along silently");
  assertEquals(Deno.readTextFileSync(`${b}/${copies[0]}`), "beta's edit of c\n");
  assertEquals(Deno.readTextFileSync(`${b}/moved`), "holder's c\n");
  assert(!listing(b)["c"]);
});
