/**
 * What a sync makes durable, and in which order (rules 9 and 10), watched
 * with strace, which prints the path behind each descriptor:
 * - a transaction fsyncs every directory whose entries it changed before its
 *   transaction file goes; where it had to make a directory again (a local
 *   `rm -rf` on a replica without the permit is kept as it is, rule 4, so
 *   the index still lists the directory), also the directory holding it;
 * - content still wanted from an earlier pull is fsynced before it is
 *   renamed into place, and its directory after, before its row is written.
 * Those two are skipped (and say so) where strace cannot trace. And flushing
 * by path: a staged file a racing user swaps for a FIFO makes the sync fail,
 * not hang on it, while a replica reached through a symlink still syncs.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  cli,
  existsSync,
  holderAndReplica,
  listing,
  put,
  spawnCli,
  straceUnusable,
  syncUnderStrace,
} from "./helpers.ts";
import { openReplica } from "../src/apply/open.ts";
import { capture } from "../src/capture/capture.ts";
import { pull } from "../src/sync/pull.ts";
import { localPeer } from "../src/sync/peer.ts";

/**
 * The lines strace printed for `replicator sync -C b a` (`trace`: strace's
 * -e trace= list), or null where strace cannot trace.
 */
async function tracedSync(
  a: string,
  b: string,
  log: string,
  trace: string,
): Promise<string[] | null> {
  if (await straceUnusable()) return null;
  const out = await syncUnderStrace(b, a, ["-y", "-o", log, "-e", `trace=${trace}`]);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  return Deno.readTextFileSync(log).split("\n");
}

/** The paths `replicator sync -C b a` fsyncs (syncfs and fdatasync too), or null without strace. */
async function fsyncedBySync(a: string, b: string, log: string): Promise<string[] | null> {
  const lines = await tracedSync(a, b, log, "fsync,fdatasync,syncfs");
  return lines?.flatMap((l) => {
    const m = l.match(/(?:fsync|fdatasync|syncfs)\(\d+<([^>]*)>\)\s+=\s+0/);
    return m ? [m[1]] : [];
  }) ?? null;
}

Deno.test("a sync fsyncs each directory whose entries it changed, and the parent of any it made", async (t) => {
  const { dir, a, b } = await holderAndReplica((a) => {
    put(`${a}/top/mid/leaf/old`, "old");
    put(`${a}/other/kept`, "kept");
  });
  // On the replica (no permit): the local removal of top/ is kept as it is, unrecorded.
  Deno.removeSync(`${b}/top`, { recursive: true });
  put(`${a}/top/mid/leaf/new`, "new");
  put(`${a}/other/next`, "next");
  const synced = await fsyncedBySync(a, b, `${dir}/strace.log`);
  if (!synced) {
    console.log("skipped: strace cannot trace here");
    await t.step({ name: "strace unavailable", ignore: true, fn: () => {} });
    return;
  }
  const real = Deno.realPathSync(b);
  for (const d of ["other", "top/mid/leaf", "top/mid", "top", ""]) {
    const path = d ? `${real}/${d}` : real;
    assert(synced.includes(path), `${path} was not fsynced; fsynced: ${synced.join(", ")}`);
  }
  assert(synced.includes(`${real}/.replicator`), "the metadata directory was not fsynced");
  assertEquals(Deno.readTextFileSync(`${b}/top/mid/leaf/new`), "new");
  assertEquals(Deno.readTextFileSync(`${b}/other/next`), "next");
});

Deno.test("wanted content is fsynced before it is placed, and its directory before its row", async (t) => {
  const { dir, a, b } = await holderAndReplica((a) => put(`${a}/keep`, "k"));
  // A records doc.txt, then its bytes change unrecorded: beta's pull finds other bytes
  // than the record's digest, and wants the recorded content.
  put(`${a}/docs/doc.txt`, "the content");
  const va = openReplica(a);
  capture(va);
  const before = Deno.statSync(`${a}/docs/doc.txt`);
  Deno.writeTextFileSync(`${a}/docs/doc.txt`, "other bytes");
  const vb = openReplica(b);
  const first = await pull(vb, localPeer(va));
  vb.close();
  va.close();
  assertEquals(first.deferred, ["docs/doc.txt"]);
  // Back as recorded (same inode, size and mtime): A's next scan records nothing, so the
  // content arrives through beta's wanted list, not through a record.
  Deno.writeTextFileSync(`${a}/docs/doc.txt`, "the content");
  Deno.utimeSync(`${a}/docs/doc.txt`, before.atime!, before.mtime!);
  const lines = await tracedSync(a, b, `${dir}/strace.log`, "fsync,rename,renameat2");
  if (!lines) {
    console.log("skipped: strace cannot trace here");
    await t.step({ name: "strace unavailable", ignore: true, fn: () => {} });
    return;
  }
  assertEquals(Deno.readTextFileSync(`${b}/docs/doc.txt`), "the content");
  const real = Deno.realPathSync(b);
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  const synced = at(new RegExp(`fsync\\(\\d+<${real}/\\.replicator/staging/wanted>\\)`));
  const placed = at(
    new RegExp(
      `renameat2\\(\\d+<${real}/\\.replicator/staging>, "wanted", \\d+<${real}/docs>, "doc.txt"`,
    ),
  );
  const dirSynced = lines.findIndex((l, i) =>
    i > placed && l.includes(`fsync(`) && l.includes(`<${real}/docs>)`)
  );
  assert(placed >= 0, `the wanted file was not renamed into place:\n${lines.join("\n")}`);
  assert(synced >= 0 && synced < placed, "the wanted file was not fsynced before it was placed");
  assert(dirSynced > placed, "its directory was not fsynced after it was placed");
});

Deno.test("a staged file swapped for a FIFO mid-sync fails that sync with an error, not a hang", async () => {
  const { a, b, dir } = await holderAndReplica((a) => put(`${a}/keep`, "k"));
  put(`${a}/doc`, "the holder's new file");
  const release = `${dir}/release`;
  const child = spawnCli(["sync", "-C", b, a], { REPLICATOR_PAUSE_AT: `staged:${release}` });
  let staged: string | undefined;
  for (let i = 0; i < 3000 && !staged; i++) {
    try {
      const bucket = `${b}/.replicator/staging/0`;
      const names = [...Deno.readDirSync(bucket)].map((e) => e.name);
      if (names.length > 0) staged = `${bucket}/${names[0]}`;
    } catch { /* not yet */ }
    if (!staged) await new Promise((r) => setTimeout(r, 10));
  }
  assert(staged, "nothing was staged");
  // As a racing user could: the staged file becomes a FIFO nobody writes to.
  Deno.removeSync(staged);
  const mk = await new Deno.Command("mkfifo", { args: [staged] }).output();
  assertEquals(mk.code, 0);
  Deno.writeTextFileSync(release, "");
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const out = await child.output();
  clearTimeout(timer);
  const err = new TextDecoder().decode(out.stderr);
  assert(out.signal === null, "the sync hung on the FIFO and was killed");
  assertEquals(out.code, 1, err);
  assertMatch(err, /not a regular file|EINVAL|ENXIO/);
  // Nothing of that batch was applied, and the next sync recovers and converges.
  assert(!existsSync(`${b}/doc`), "the batch was applied although it failed");
  const r = await cli(["sync", "-C", b, a]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(listing(b), listing(a));
});

Deno.test("a replica reached through a symlink syncs: its directories are fsynced through the link", async () => {
  const { a, b, dir } = await holderAndReplica((a) => put(`${a}/keep`, "k"));
  put(`${a}/top-level`, "new at the root");
  Deno.symlinkSync(b, `${dir}/via-link`);
  const r = await cli(["sync", "-C", `${dir}/via-link`, a]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(listing(b), listing(a));
});
