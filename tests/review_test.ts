/**
 * Regressions from a review of the apply engine (issue 7): each test
 * reproduces a defect found by attacking the engine or racing it as a user
 * would (all fixed); the comment above each says what was wrong and where.
 */

import { assert, assertEquals } from "./assert.ts";
import { cli, holderAndReplica, listing, put } from "./helpers.ts";
import { openReplica } from "../src/apply/open.ts";
import { capture } from "../src/capture/capture.ts";
import { pull } from "../src/sync/pull.ts";
import { localPeer } from "../src/sync/peer.ts";

async function log(dir: string): Promise<string> {
  return (await cli(["log", "-C", dir])).stdout;
}

/** The listing without mtimes of symlinks and directories (compare content and types). */
function shape(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, d] of Object.entries(listing(root))) {
    const f = d.split(" ");
    out[p] = f[0] === "file" ? `file ${f[1]} ${f[2]} ${f[4]}` : `${f[0]} ${f[1]}`;
  }
  return out;
}

// Was bug 1 (scan order, src/capture/scan.ts diffTree `remove`): an entry that a
// directory rename brought to a path, then replaced there by another type, is
// unlinked only by the final remove(""), i.e. AFTER the record that creates the
// new entry. The holder's KML says "rename c -> log; symlink log/b; unlink log/b":
// every replica applying it deletes the new symlink (and the holder's index
// loses its row, so only the holder's next scan records it again).
Deno.test("review 1: scan orders the unlink of a renamed-in entry after its replacement", async () => {
  const { a, b } = await holderAndReplica((a) => put(`${a}/c/b`, "file b\n"));
  Deno.renameSync(`${a}/c`, `${a}/log`);
  Deno.removeSync(`${a}/log/b`);
  Deno.symlinkSync("target", `${a}/log/b`);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 0, r.stderr);
  const kml = await log(a);
  const lines = kml.trim().split("\n").slice(-3).map((l) => l.split("\t").slice(3).join(" "));
  // The removal of the old log/b must come before the symlink that replaces it.
  assert(
    lines.indexOf("unlink log/b") < lines.indexOf("symlink log/b -> target"),
    `records in an order that cannot be applied:\n${kml}`,
  );
  assertEquals(shape(b), shape(a));
});

// Was bug 2 (src/apply/steps.ts keepAside): the conflict copy's name is
// `${name}.conflict-<host>-<stamp>` without regard to NAME_MAX. For a legal
// 240-byte name the rename fails with ENAMETOOLONG, the step fails, and so does
// every later sync (exit 1 forever): the holder's version never arrives.
Deno.test("review 2: a conflict on a long file name is kept and the holder's version arrives", async () => {
  const name = "n".repeat(240);
  const { a, b } = await holderAndReplica((a) => put(`${a}/${name}`, "v1\n"));
  put(`${b}/${name}`, "beta's edit\n");
  put(`${a}/${name}`, "holder's v2\n");
  await cli(["sync", "-C", b, a]);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 0, r.stderr.slice(0, 300));
  assertEquals(Deno.readTextFileSync(`${b}/${name}`), "holder's v2\n");
  const kept = Object.entries(listing(b)).filter(([p]) => p !== name);
  assertEquals(kept.length, 1, "one conflict copy");
});

// Was bug 3 (src/apply/steps.ts move(), the `s.pre?.type === "d"` branch, and
// src/apply/plan.ts rename()): when the source directory of a holder's rename is
// not on the replica (the user removed it), the step only reports "its files
// will be fetched" — but nothing is made wanted: finalize() drops the rows and
// the files under the new name never arrive (a file rename in the same state is
// fetched). Later syncs exit 0 and report nothing: content silently forgotten.
Deno.test("review 3: a renamed directory the replica lacks arrives under its new name", async () => {
  const { a, b } = await holderAndReplica((a) => {
    put(`${a}/d/f`, "file f\n");
    put(`${a}/g`, "file g\n");
  });
  Deno.removeSync(`${b}/d`, { recursive: true });
  Deno.removeSync(`${b}/g`);
  Deno.renameSync(`${a}/d`, `${a}/e`);
  Deno.renameSync(`${a}/g`, `${a}/h`);
  await cli(["sync", "-C", b, a]);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(Deno.readTextFileSync(`${b}/h`), "file g\n"); // the file rename: fetched
  assertEquals(listing(b)["e/f"]?.split(" ").at(-1), listing(a)["e/f"].split(" ").at(-1));
});

// Was bug 4 (src/apply/txn.ts setDirAttrs, and same() in src/apply/steps.ts, which
// compares directories by inode only): a local permission change of a directory
// (status lists it: "unpublished: setattr d") is reverted without a word when the
// holder merely adds a file to that directory: the dir-attribute pass chmods
// every directory of the batch to the index's bits with no compare-and-swap.
Deno.test("review 4: a local chmod of a directory survives the holder adding a file to it", async () => {
  const { a, b } = await holderAndReplica((a) => put(`${a}/d/f`, "f\n"));
  Deno.chmodSync(`${b}/d`, 0o700);
  assert((await cli(["status", "-C", b])).stdout.includes("unpublished: setattr d"));
  put(`${a}/d/new`, "new\n");
  await cli(["sync", "-C", b, a]);
  assertEquals(Deno.readTextFileSync(`${b}/d/new`), "new\n");
  assertEquals(Deno.statSync(`${b}/d`).mode! & 0o7777, 0o700, "the local chmod was reverted");
});

// Was bug 5 (src/apply/steps.ts remove(), rule 9): recovery re-runs a committed batch
// from its first step. The holder replaced directory d by a file d: steps
// "remove d/x, remove d (a directory), place d (file)". Killed after the steps;
// the user then edits the new file d; the re-run's "remove d" finds a file that
// is neither its `pre` (a directory) nor exactly a later step's `post` (edited),
// so it moves the edit to d.conflict-…: the path d is left empty, nothing is
// wanted, and B never has a d again (the holder's version is not fetched either).
Deno.test("review 5: an edit after a crash is not moved off a path the batch itself re-created", async () => {
  const { a, b } = await holderAndReplica((a) => put(`${a}/d/x`, "d/x\n"));
  Deno.removeSync(`${a}/d`, { recursive: true });
  put(`${a}/d`, "d is a file now\n");
  const killed = await cli(["sync", "-C", b, a], { env: { REPLICATOR_CRASH_AT: "steps" } });
  assert(killed.code !== 0);
  assertEquals(Deno.readTextFileSync(`${b}/d`), "d is a file now\n");
  Deno.writeTextFileSync(`${b}/d`, "beta edited d after the crash\n", { append: true });
  await cli(["sync", "-C", b, a]);
  await cli(["sync", "-C", b, a]);
  assert(
    listing(b)["d"]?.startsWith("file "),
    `nothing at d: ${JSON.stringify(Object.keys(listing(b)))}`,
  );
});

// Was bug 6 (scan order, src/capture/scan.ts Emitter.emitThrough): emitThrough takes
// rename k off the queue (next++) and only then handles the parents of its
// target; handling a parent runs beforeChangeAt(parent), which re-enters
// emitThrough and pushes LATER renames first. Here "rename m -> p/t" is emitted
// after "rename y -> p/t/u" (and after "setattr p/t"): a replica creates p/t for
// u, then the move of m finds a non-empty p/t, keeps it aside as a conflict copy
// (the holder's own u inside) and never has p/t/u; later syncs exit 0. A fresh
// clone of the holder (which replays the log) silently lacks p/t/u (exit 0).
Deno.test("review 6: scan emits a directory rename before a rename into it", async () => {
  const { dir, a, b } = await holderAndReplica((a) => {
    put(`${a}/a/f`, "f\n");
    put(`${a}/m/k`, "k\n");
    put(`${a}/p/g`, "g\n");
    put(`${a}/y`, "y\n");
  });
  Deno.renameSync(`${a}/m`, `${a}/p/t`);
  Deno.renameSync(`${a}/y`, `${a}/p/t/u`);
  Deno.renameSync(`${a}/a/f`, `${a}/z`);
  Deno.renameSync(`${a}/p/g`, `${a}/zz`);
  const r = await cli(["sync", "-C", b, a]);
  const kml = await log(a);
  const at = (s: string) => kml.split("\n").findIndex((l) => l.endsWith(s));
  assert(at("rename\tm -> p/t") < at("rename\ty -> p/t/u"), `unappliable order:\n${kml}`);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(shape(b), shape(a));
  assertEquals((await cli(["clone", a, `${dir}/c`, "--host", "gamma"])).code, 0);
  assertEquals(shape(`${dir}/c`), shape(a), "a fresh clone differs from the holder");
});

// Was bug 7 (src/apply/txn.ts finalize, `if (e.digest) state.unwant(p)`, rule 10):
// content deferred at p stays wanted while the old version stays on disk with
// its row. A later batch with only a Setattr of p (the holder's file went back
// to the recorded content, or was just chmodded) plans an attrs step whose row
// carries the OLD version's digest; finalize sees a row with a digest at p and
// unwants p. The holder's content never arrives: B keeps the old bytes for good,
// now with the holder's mode and mtime, and its index vouches for them.
Deno.test("review 7: a chmod after a deferred store reaches the file when it arrives", async () => {
  const { a, b } = await holderAndReplica((a) => put(`${a}/p`, "X1\n"));
  const va = openReplica(a);
  try {
    put(`${a}/p`, "X2\n");
    capture(va); // store p (X2)
    put(`${a}/p`, "Y!\n"); // changed again before beta fetched it
    const vb = openReplica(b);
    try {
      assertEquals((await pull(vb, localPeer(va))).deferred, ["p"]);
    } finally {
      vb.close();
    }
    put(`${a}/p`, "X2\n"); // back to the recorded content
    Deno.chmodSync(`${a}/p`, 0o600);
    capture(va); // setattr p (0600)
  } finally {
    va.close();
  }
  await cli(["sync", "-C", b, a]);
  await cli(["sync", "-C", b, a]);
  assertEquals(Deno.readTextFileSync(`${b}/p`), "X2\n", "the deferred content was forgotten");
  assertEquals(listing(b)["p"], listing(a)["p"]);
});

// Was a bug (7b: the same loss without any race. B pulls the holder's "store p" through
// replica C, whose user has edited p since: B defers it (wanted). The holder then
// only chmods p; that Setattr reaches B and unwants p. Syncing B with the holder
// itself afterwards brings nothing: B keeps the old bytes for good.
Deno.test("review 7b: a relay's local edit plus a holder chmod make a replica forget content", async () => {
  const { dir, a, b } = await holderAndReplica((a) => put(`${a}/p`, "X1\n"));
  const c = `${dir}/c`;
  assertEquals((await cli(["clone", a, c, "--host", "gamma"])).code, 0);
  put(`${a}/p`, "X2 from the holder\n");
  assertEquals((await cli(["sync", "-C", c, a])).code, 0);
  put(`${c}/p`, "gamma's own edit\n");
  await cli(["sync", "-C", b, c]); // B gets "store p" from C, C has other bytes: deferred
  Deno.chmodSync(`${a}/p`, 0o600);
  await cli(["sync", "-C", c, a]);
  await cli(["sync", "-C", b, c]); // the Setattr arrives
  await cli(["sync", "-C", b, a]);
  await cli(["sync", "-C", b, a]);
  assertEquals(Deno.readTextFileSync(`${b}/p`), "X2 from the holder\n", "B forgot the content");
});

// Was bug 8 (src/apply/plan.ts Setattr case `if (!pre) break`, src/apply/txn.ts
// finalize, rule 11): a want keeps the mode of the record that made it. B edited
// b; the holder renamed b to log and chmodded it. B keeps its edit aside and
// wants log (mode 0644 from the rename). With the records in separate
// transactions (REPLICATOR_BATCH_RECORDS, or any pull where the want is still
// pending), the Setattr finds no row at log and is dropped; the content then
// arrives with 0644 and the index agrees: B's log keeps a different mode for good.
Deno.test("review 8: a Setattr of a wanted path in a later transaction is not lost", async () => {
  const { a, b } = await holderAndReplica((a) => put(`${a}/b`, "b\n"));
  put(`${b}/b`, "beta's edit\n");
  Deno.renameSync(`${a}/b`, `${a}/log`);
  Deno.chmodSync(`${a}/log`, 0o755);
  await cli(["sync", "-C", b, a], { env: { REPLICATOR_BATCH_RECORDS: "1" } });
  await cli(["sync", "-C", b, a]);
  assertEquals(Deno.readTextFileSync(`${b}/log`), "b\n");
  assertEquals(listing(b)["log"], listing(a)["log"]);
});

// Was bug 2b (same place: keepAside builds a path from the host name; `clone --host`
// accepts "be/ta"): the conflict copy's name has a slash in it, the rename fails
// with ENOENT and every sync exits 1; the holder's version never arrives. (Were
// there a directory "f.conflict-be", the local file would go into it.)
Deno.test("review 2b: a host name with a slash does not break every conflict", async () => {
  const { dir, a } = await holderAndReplica((a) => put(`${a}/f`, "v1\n"));
  const b = `${dir}/b2`;
  const made = await cli(["clone", a, b, "--host", "be/ta"]);
  if (made.code !== 0) return; // refusing such a name is a fix too
  put(`${b}/f`, "local\n");
  put(`${a}/f`, "v2\n");
  await cli(["sync", "-C", b, a]);
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(Deno.readTextFileSync(`${b}/f`), "v2\n");
});

// Was bug 9 (src/capture/scan.ts detectRenames + needsHash): renames are detected by
// inode number alone, and a "renamed" file whose size and mtime match the old row
// is not hashed. On ext4 a deleted file's inode is reused at once; a new file at
// another path with the same size and mtime (cp -p, tar, rsync -t) is recorded as
// "rename x -> keep" with x's old digest, and every replica keeps x's old bytes
// at keep, silently. (Needs a filesystem that reuses inode numbers: /tmp here.)
Deno.test("review 9: a new file that reuses a deleted file's inode is not taken for a rename", async () => {
  const { a, b } = await holderAndReplica((a) => {
    put(`${a}/x`, "AAAA");
    Deno.utimeSync(`${a}/x`, 1_700_000_000, 1_700_000_000);
  });
  const ino = Deno.lstatSync(`${a}/x`).ino;
  Deno.removeSync(`${a}/x`);
  await new Deno.Command("sync").output();
  let reused = false;
  for (let k = 0; k < 500 && !reused; k++) {
    put(`${a}/t${k}`, "BBBB");
    if (Deno.lstatSync(`${a}/t${k}`).ino === ino) {
      Deno.renameSync(`${a}/t${k}`, `${a}/keep`);
      reused = true;
    }
  }
  for (const e of [...Deno.readDirSync(a)]) {
    if (/^t\d+$/.test(e.name)) Deno.removeSync(`${a}/${e.name}`);
  }
  if (!reused) return console.log("review 9: this filesystem did not reuse the inode; not shown");
  Deno.utimeSync(`${a}/keep`, 1_700_000_000, 1_700_000_000); // same size, same mtime (cp -p)
  assertEquals((await cli(["sync", "-C", b, a])).code, 0);
  assertEquals(Deno.readTextFileSync(`${b}/keep`), "BBBB");
});

// Was bug 10 (src/apply/steps.ts move(), the consumedLater() shortcut, rule 10): the
// holder renames a to b and chmods b (records "rename a -> b", "setattr b"). B's
// user has saved a the way editors do (a new inode). The move finds a source that
// is not its `pre`, sees that a later step (the Setattr of b) expects `pre`'s
// inode, and concludes "moved before a crash": it neither keeps a aside nor wants
// b. The Setattr finds nothing at b. Result: exit 0, no conflict reported, and
// the holder's b never arrives (later syncs bring nothing). Without the chmod,
// b is wanted and fetched.
Deno.test("review 10: a rename plus chmod of a file the replica re-saved still delivers the file", async () => {
  const { a, b } = await holderAndReplica((a) => put(`${a}/a`, "holder's a\n"));
  Deno.removeSync(`${b}/a`);
  put(`${b}/a`, "beta saved a (new inode)\n");
  Deno.renameSync(`${a}/a`, `${a}/b`);
  Deno.chmodSync(`${a}/b`, 0o600);
  await cli(["sync", "-C", b, a]);
  await cli(["sync", "-C", b, a]);
  const kept = Object.keys(listing(b));
  assert(
    kept.some((p) => Deno.readTextFileSync(`${b}/${p}`) === "beta saved a (new inode)\n"),
    "local edit lost",
  );
  assertEquals(listing(b)["b"], listing(a)["b"], `the holder's b never arrived: ${kept}`);
});

// Was bug 4b (src/apply/steps.ts place(), "a directory is already there: merge into
// it" does t.chmod(path, post.perm); setDirAttrs does the same): B's user keeps a
// private directory (0700, a secret inside); the holder creates a directory of
// the same name (0755). The sync merges and widens B's private directory to 0755,
// exit 0, no conflict: a local change overwritten (and the secret exposed).
Deno.test("review 4b: merging the holder's new directory into a local one keeps its mode", async () => {
  const { a, b } = await holderAndReplica((a) => put(`${a}/x`, "x\n"));
  Deno.mkdirSync(`${b}/priv`, { mode: 0o700 });
  Deno.chmodSync(`${b}/priv`, 0o700);
  put(`${b}/priv/secret`, "secret\n");
  put(`${a}/priv/pub`, "pub\n");
  Deno.chmodSync(`${a}/priv`, 0o755);
  await cli(["sync", "-C", b, a]);
  assertEquals(Deno.readTextFileSync(`${b}/priv/pub`), "pub\n");
  assertEquals(Deno.statSync(`${b}/priv`).mode! & 0o7777, 0o700, "B's private directory widened");
});
