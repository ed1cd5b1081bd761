/**
 * `replicator sync` run by the volume's lento (src/cli/delegated_sync.ts):
 * the command prints and exits as if it had run the sync itself, named
 * peers resolved where the command runs; lento declines malformed requests
 * and requests for another volume (the command then runs them), waits for a
 * locked volume without stalling, and a stopping lento lets the sync it runs
 * finish. The command runs the sync itself when lento does not answer, when
 * the socket is another user's, or when a REPLICATOR_* knob is set; once
 * lento has started, a lost or garbled answer is a failure, not a second run.
 * lento runs in this process on a scripted source (no root needed).
 */

import { openReplica } from "../src/apply/open.ts";
import { runLento } from "../src/capture/lento.ts";
import { takeSyncRequest } from "../src/cli/delegated_sync.ts";
import { UnixRequest } from "../src/fs/unix_socket.ts";
import { readConfig } from "../src/volume/config.ts";
import { layoutOf } from "../src/volume/layout.ts";
import { sleep } from "../src/timer.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { cli, holderAndReplica, listing, put, type Run } from "./helpers.ts";
import { ScriptedSource } from "./scripted_source.ts";

const HERE = { REPLICATOR_SYNC_HERE: "1" };

type Pair = { dir: string; a: string; b: string };
type Take = (request: string) => ReturnType<typeof takeSyncRequest>;

/** What a test sees of the lento it runs for b. */
interface LentoOnB extends Pair {
  /** Syncs lento ran, and the lines it logged. */
  served: () => number;
  logged: string[];
  running: Promise<void>;
}

/**
 * A holder a and its clone b, with lento running for b. `wrap` may replace
 * each sync it takes (e.g. to hold it at a gate, or to change its answer).
 */
async function withLentoOnB(
  fn: (p: LentoOnB) => Promise<void>,
  wrap?: (run: () => Promise<string>, request: string) => () => Promise<string>,
  stop = new AbortController(),
): Promise<void> {
  const p = await holderAndReplica((a) => put(`${a}/f`, "v1"));
  let served = 0;
  const logged: string[] = [];
  let ready!: () => void;
  const armed = new Promise<void>((ok) => (ready = ok));
  const takeSync: Take = (request) => {
    const t = takeSyncRequest(p.b, request);
    if (!("run" in t)) return t;
    served++;
    return { run: wrap ? wrap(t.run, request) : t.run };
  };
  const running = runLento(p.b, {
    source: new ScriptedSource(),
    signal: stop.signal,
    ready,
    log: (l) => logged.push(l),
    takeSync,
  });
  try {
    await armed;
    await fn({ ...p, served: () => served, logged, running });
  } finally {
    stop.abort();
    const stopped = await Promise.race([running.then(() => true), sleep(5000, false)]);
    await Deno.remove(p.dir, { recursive: true });
    assert(stopped, "lento did not stop within 5 s of its signal");
  }
}

/** Code, stdout and stderr, with the one path that differs between two pairs made alike. */
function shown(r: Run, dir: string): string {
  return `${r.code}\n${r.stdout}\n${r.stderr}`.replaceAll(dir, "DIR");
}

Deno.test("lento runs the sync, and the command prints and exits as if it had", async () => {
  await withLentoOnB(async ({ a, b, served }) => {
    assertEquals(Deno.lstatSync(`${b}/.replicator/lento.sock`).mode! & 0o777, 0o700);
    put(`${a}/f`, "v2");
    put(`${a}/new/g`, "g");
    const byLento = await cli(["sync", "-C", b, a, "-v"]);
    assertEquals(served(), 1, "lento did not run it");
    assertEquals(byLento.code, 0, byLento.stderr);
    assertMatch(byLento.stdout, /recorded 0 local changes, received \d+ records \(2 files/);
    assertEquals(listing(b), listing(a));

    put(`${a}/f`, "v3");
    const [r] = JSON.parse((await cli(["sync", "-C", b, a, "--json"])).stdout);
    assertEquals(served(), 2);
    assertEquals([r.peer, r.fetched, r.conflicts], [a, 1, []]);

    // The same run in this process says the same.
    put(`${a}/f`, "v4");
    const here = await cli(["sync", "-C", b, a, "-v"], { env: HERE });
    assertEquals(served(), 2, "a REPLICATOR_* knob keeps the sync in the command");
    assertEquals([here.code, here.stderr], [byLento.code, byLento.stderr]);
    assertMatch(here.stdout, /recorded 0 local changes, received \d+ records \(1 files/);
    assertEquals(listing(b), listing(a));
  });
});

Deno.test("a named peer is the directory the command would reach, not lento's", async () => {
  await withLentoOnB(async ({ a, b, served }) => {
    // Stored as typed, relative: resolved against the command's directory (lento's is elsewhere).
    assertEquals((await cli(["peer", "add", "up", "../a"], { cwd: b })).code, 0);
    put(`${a}/f`, "v2");
    const r = await cli(["sync"], { cwd: b });
    assertEquals(served(), 1);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(listing(b), listing(a));
    // Odd names are only labels now: the request carries paths.
    assertEquals((await cli(["peer", "add", "site:a", a], { cwd: b })).code, 0);
    put(`${a}/f`, "v3");
    const named = await cli(["sync", "site:a"], { cwd: b });
    assertEquals([served(), named.code], [2, 0], named.stderr);
    assertEquals(listing(b), listing(a));
  });
});

Deno.test("failures and conflicts reach the command as they would have been printed", async () => {
  await withLentoOnB(async ({ dir, a, b, served }) => {
    // One peer is not a replica: named as given, exit 1, the other still synced.
    put(`${a}/f`, "v2");
    Deno.mkdirSync(`${dir}/plain`);
    const args = ["sync", "-C", "b", "plain", "a"];
    const byLento = await cli(args, { cwd: dir });
    assertEquals(served(), 1);
    const here = await cli(args, { cwd: dir, env: HERE });
    assertEquals(byLento.code, 1);
    assertMatch(byLento.stderr, /^replicator: peer plain: .*not a replica/);
    assertEquals(shown(byLento, dir), shown(here, dir));
    assertEquals(listing(b), listing(a));

    // One peer, a failure of the whole run: its message and exit status.
    const lone = await cli(["sync", "-C", b, `${dir}/plain`]);
    assertEquals(served(), 2);
    const loneHere = await cli(["sync", "-C", b, `${dir}/plain`], { env: HERE });
    assertEquals(shown(lone, dir), shown(loneHere, dir));

    // A local change on the replica that lacks the permit: kept, exit 3.
    put(`${a}/f`, "v3");
    put(`${b}/f`, "mine");
    const conflict = await cli(["sync", "-C", b, a]);
    assertEquals(served(), 3);
    assertEquals(conflict.code, 3, conflict.stderr);
    assertMatch(conflict.stderr, /conflict: kept the local version as f\.conflict-/);
  });
});

Deno.test("an answer far larger than a socket's buffer arrives whole", async () => {
  const many = Array.from({ length: 40_000 }, (_, i) => `dir/conflict-${i}.conflict-beta-x`);
  await withLentoOnB(async ({ a, b, served }) => {
    put(`${a}/f`, "v2");
    const r = await cli(["sync", "-C", b, a, "--json"]);
    assertEquals([served(), r.code], [1, 3], r.stderr.slice(0, 500));
    assertEquals(JSON.parse(r.stdout)[0].conflicts.length, many.length);
  }, (run) => async () => {
    const o = JSON.parse(await run());
    o.outcomes[0].local.pull.conflicts = many; // ~1.5 MB of answer
    return JSON.stringify(o);
  });
});

Deno.test("lento declines malformed requests and other volumes, waits for locks, and goes on", async () => {
  await withLentoOnB(async ({ a, b, served, logged }) => {
    const sock = `${b}/.replicator/lento.sock`;
    const ask = async (line: string) => {
      const conn = UnixRequest.send(sock, `${line}\n`);
      assert(conn, "no lento listening");
      try {
        return await conn.line(performance.now() + 5000);
      } finally {
        conn.close();
      }
    };
    const root = Deno.realPathSync(b);
    const host = readConfig(layoutOf(b).config).hostId;
    const req = (o: object) => `sync ${JSON.stringify({ root, host, peers: [a], ...o })}`;
    for (const bad of ["sync {not json", req({ peers: [7] }), req({ peers: ["../a"] })]) {
      assertEquals(await ask(bad), "declined", bad);
    }
    assertEquals(await ask(req({ host: "0".repeat(32) })), "declined", "another replica");
    assertEquals(await ask(req({ root: `${root}-moved` })), "declined", "another directory");
    assertEquals(served(), 0);
    assert(logged.some((l) => /declined a sync of another volume/.test(l)), logged.join("\n"));

    // The peer is locked: lento waits for it, and goes on answering meanwhile.
    const held = openReplica(a);
    put(`${a}/f`, "v2");
    const command = cli(["sync", "-C", b, a]);
    await sleep(700);
    const t0 = performance.now();
    const meanwhile = UnixRequest.send(sock, "flush\n");
    assertEquals(await meanwhile?.line(performance.now() + 5000), "flushed");
    meanwhile?.close();
    const waited = performance.now() - t0;
    assert(waited < 500, `a flush took ${waited.toFixed(0)} ms while a sync waited for a lock`);
    await sleep(300);
    held.close();
    const r = await command;
    assertEquals([served(), r.code], [1, 0], r.stderr);
    assertEquals(listing(b), listing(a));

    const flushed = UnixRequest.send(sock, "flush\n");
    assertEquals(
      await flushed?.line(performance.now() + 5000),
      "flushed",
      "lento stopped answering",
    );
    flushed?.close();
  });
});

/** Reads from `c` up to the end of its first line (a request). */
async function requestOf(c: Deno.UnixConn): Promise<void> {
  const buf = new Uint8Array(4096);
  for (let n; (n = await c.read(buf)) !== null;) if (buf.subarray(0, n).includes(10)) return;
}

/** Serves `answer` on `path` (0700) to each request; stop it when done. */
function fakeLento(path: string, answer: string): () => Promise<void> {
  const umask = Deno.umask(0o077);
  const l = Deno.listen({ transport: "unix", path });
  Deno.umask(umask);
  const served: Promise<void>[] = [];
  const loop = (async () => {
    for await (const c of l) {
      const reply = requestOf(c).then(() => c.write(new TextEncoder().encode(answer)))
        .then(() => {}, () => {});
      served.push(reply.finally(() => c.close()));
    }
  })();
  return async () => {
    l.close();
    await loop.catch(() => {});
    await Promise.allSettled(served);
  };
}

Deno.test("what the command does when lento's answer is not the sync's outcome", async () => {
  const { dir, a, b } = await holderAndReplica((a) => put(`${a}/f`, "v1"));
  const sock = `${b}/.replicator/lento.sock`;
  try {
    // Declined, or no answer: the command runs the sync itself.
    let stop = fakeLento(sock, "declined\n");
    put(`${a}/f`, "v2");
    const declined = await cli(["sync", "-C", b, a, "-v"]);
    await stop();
    assertEquals(declined.code, 0, declined.stderr);
    assertMatch(declined.stdout, /received \d+ records/);
    assertEquals(listing(b), listing(a));

    // Started, then gone or garbled: lento did something, and no second run hides it.
    for (const answer of ["started\n", "started\n{not json\n"]) {
      stop = fakeLento(sock, answer);
      put(`${a}/f`, `v3 ${answer.length}`);
      const lost = await cli(["sync", "-C", b, a]);
      await stop();
      assertEquals(lost.code, 1, answer);
      assertMatch(lost.stderr, /lento ran the sync, but .*; .*run 'replicator status'/);
      assert(listing(b)["f"] !== listing(a)["f"], "the command ran the sync again");
    }

    if (Deno.uid() === 0) {
      // A socket another user owns is never asked: its answer would be taken as the sync's.
      stop = fakeLento(sock, `started\n{"outcomes":[]}\n`);
      Deno.chownSync(sock, 65534, 65534);
      put(`${a}/f`, "v4");
      const foreign = await cli(["sync", "-C", b, a, "-v"]);
      await stop();
      assertEquals(foreign.code, 0, foreign.stderr);
      assertMatch(foreign.stdout, /received \d+ records/, "the foreign socket's answer was used");
      assertEquals(listing(b), listing(a));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a stopping lento lets the sync it runs finish and answer", async () => {
  const stop = new AbortController();
  let began!: () => void;
  const beginning = new Promise<void>((ok) => (began = ok));
  await withLentoOnB(async ({ a, b, served, running }) => {
    let lentoDone = false;
    void running.then(() => (lentoDone = true));
    put(`${a}/f`, "v2");
    const command = cli(["sync", "-C", b, a, "-v"]);
    await beginning;
    stop.abort(); // SIGTERM, as `replicator lento` takes it
    await sleep(100);
    assert(!lentoDone, "lento stopped with a sync under way");
    const done = await command;
    assertEquals(served(), 1);
    assertEquals(done.code, 0, done.stderr);
    assertMatch(done.stdout, /received \d+ records \(1 files/);
    assertEquals(listing(b), listing(a));
  }, (run) => async () => {
    began();
    await sleep(500); // lento is told to stop meanwhile
    return await run();
  }, stop);
});
