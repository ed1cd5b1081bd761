/**
 * `replicator sync` run by the volume's lento (src/cli/delegated_sync.ts):
 * the command prints and exits as if it had run the sync itself; it runs it
 * itself when lento goes away, when the socket is another user's, or when a
 * REPLICATOR_* knob is set; lento refuses malformed requests and peers on
 * other hosts, and a stopping lento lets the sync it runs finish.
 * lento runs in this process on a scripted source (no root needed).
 */

import { runLento } from "../src/capture/lento.ts";
import { serveSyncRequest } from "../src/cli/delegated_sync.ts";
import { UnixRequest } from "../src/fs/unix_socket.ts";
import { sleep } from "../src/timer.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { cli, holderAndReplica, listing, put, type Run } from "./helpers.ts";
import { ScriptedSource } from "./scripted_source.ts";

const HERE = { REPLICATOR_SYNC_HERE: "1" };

/** A holder a and its clone b, with lento running for b; `served` counts the syncs it ran. */
async function withLentoOnB(
  fn: (p: Pair & { served: () => number; running: Promise<void> }) => Promise<void>,
  gate?: (request: string) => Promise<void>,
  stop = new AbortController(),
): Promise<void> {
  const p = await holderAndReplica((a) => put(`${a}/f`, "v1"));
  let served = 0;
  let ready!: () => void;
  const armed = new Promise<void>((ok) => (ready = ok));
  const running = runLento(p.b, {
    source: new ScriptedSource(),
    signal: stop.signal,
    ready,
    serveSync: async (request) => {
      served++;
      await gate?.(request);
      return await serveSyncRequest(p.b, request);
    },
  });
  try {
    await armed;
    await fn({ ...p, served: () => served, running });
  } finally {
    stop.abort();
    const stopped = await Promise.race([running.then(() => true), sleep(5000, false)]);
    await Deno.remove(p.dir, { recursive: true });
    assert(stopped, "lento did not stop within 5 s of its signal");
  }
}

type Pair = { dir: string; a: string; b: string };

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
    assertEquals(
      shown(lone, dir),
      shown(await cli(["sync", "-C", b, `${dir}/plain`], { env: HERE }), dir),
    );

    // A local change on the replica that lacks the permit: kept, exit 3.
    put(`${a}/f`, "v3");
    put(`${b}/f`, "mine");
    const conflict = await cli(["sync", "-C", b, a]);
    assertEquals(served(), 3);
    assertEquals(conflict.code, 3, conflict.stderr);
    assertMatch(conflict.stderr, /conflict: kept the local version as f\.conflict-/);
  });
});

Deno.test("lento refuses malformed requests and peers on other hosts, and goes on", async () => {
  await withLentoOnB(async ({ b }) => {
    const sock = `${b}/.replicator/lento.sock`;
    const ask = async (line: string) => {
      const conn = UnixRequest.send(sock, `${line}\n`);
      assert(conn, "no lento listening");
      try {
        const started = await conn.line(performance.now() + 5000);
        return [started, await conn.line(performance.now() + 10_000, 1 << 20)];
      } finally {
        conn.close();
      }
    };
    const failure = (line: string | null) => JSON.parse(line ?? "null")?.failure?.message;
    assertEquals((await cli(["peer", "add", "far", "ssh://host/v", "-C", b])).code, 0);
    const [started, answer] = await ask(`sync {"peers":["far"]}`);
    assertEquals(started, "started");
    assertMatch(failure(answer), /local peers only/);
    assertMatch(failure((await ask(`sync {"peers":["ssh://host/v"]}`))[1]), /malformed/);
    assertMatch(failure((await ask("sync {not json"))[1]), /malformed/);
    assertMatch(failure((await ask(`sync {"peers":[7]}`))[1]), /malformed/);
    assertMatch(failure((await ask(`sync {"peers":["../up"]}`))[1]), /malformed/);
    const flushed = UnixRequest.send(sock, "flush\n");
    assertEquals(
      await flushed?.line(performance.now() + 5000),
      "flushed",
      "lento stopped answering",
    );
    flushed?.close();
  });
});

/** Serves `answer` on `path` (0700) to each connection; stop it when done. */
function fakeLento(path: string, answer: string): () => Promise<void> {
  const umask = Deno.umask(0o077);
  const l = Deno.listen({ transport: "unix", path });
  Deno.umask(umask);
  const served: Promise<void>[] = [];
  const loop = (async () => {
    for await (const c of l) {
      served.push(
        c.write(new TextEncoder().encode(answer)).then(() => {}, () => {}).finally(() => c.close()),
      );
    }
  })();
  return async () => {
    l.close();
    await loop.catch(() => {});
    await Promise.allSettled(served);
  };
}

Deno.test("the command runs the sync itself if lento goes away or is another user's, and fails on a garbled answer", async () => {
  const { dir, a, b } = await holderAndReplica((a) => put(`${a}/f`, "v1"));
  const sock = `${b}/.replicator/lento.sock`;
  try {
    let stop = fakeLento(sock, "started\n");
    put(`${a}/f`, "v2");
    const gone = await cli(["sync", "-C", b, a, "-v"]);
    await stop();
    assertEquals(gone.code, 0, gone.stderr);
    assertMatch(gone.stdout, /received \d+ records/);
    assertEquals(listing(b), listing(a));

    // An answer that cannot be read: lento did something, so no second run hides it.
    stop = fakeLento(sock, "started\n{not json\n");
    put(`${a}/f`, "v2b");
    const garbled = await cli(["sync", "-C", b, a]);
    await stop();
    assertEquals(garbled.code, 1);
    assertMatch(
      garbled.stderr,
      /lento ran the sync, but its report could not be read; run 'replicator status'/,
    );
    assertEquals(listing(b)["f"] === listing(a)["f"], false, "the command ran the sync again");

    if (Deno.uid() === 0) {
      // A socket another user owns is never asked: its answer would be taken as the sync's.
      stop = fakeLento(sock, `started\n{"outcomes":[]}\n`);
      Deno.chownSync(sock, 65534, 65534);
      put(`${a}/f`, "v3");
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
  }, async () => {
    began();
    await sleep(500); // lento is told to stop meanwhile
  }, stop);
});
