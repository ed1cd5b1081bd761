/**
 * lento for real (fanotify, as root): it records changes as they happen, the
 * same records a scan would make, a sync uses them instead of scanning, and a
 * restart catches what changed while it was down.
 */

import { openReplica } from "../src/apply/open.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./assert.ts";
import { asNobody, cli, json, listing, pair, put } from "./helpers.ts";
import { capture } from "../src/capture/capture.ts";
import { flushLento } from "../src/capture/lento_client.ts";
import { haveOpenssl, makeTls, startServer } from "./https_server.ts";

const MOD = new URL("../mod.ts", import.meta.url).pathname;

/** Starts `replicator lento -v -C dir` and waits for its first rescan. */
async function startLento(dir: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MOD, "lento", "-v", "-C", dir],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const deadline = Date.now() + 15_000;
  while (!/rescanned/.test(seen)) {
    const chunk = await Promise.race([
      lines.read(),
      new Promise<{ done: true; value: undefined }>((ok) =>
        setTimeout(() => ok({ done: true, value: undefined }), Math.max(0, deadline - Date.now()))
      ),
    ]);
    if (chunk.done) {
      child.kill("SIGTERM");
      const err = await new Response(child.stderr).text();
      throw new Error(`lento did not start: ${seen} ${err}`);
    }
    seen += chunk.value;
  }
  // Keep reading its -v lines, so a test can see what it did later.
  const reading = (async () => {
    for (let chunk; !(chunk = await lines.read()).done;) seen += chunk.value;
  })().catch(() => {});
  return {
    /** Its -v output so far. */
    output: () => seen,
    async stop(): Promise<number> {
      child.kill("SIGTERM");
      const code = (await child.status).code;
      await reading;
      lines.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
      return code;
    },
  };
}

/** The same edits, on any volume. */
function edit(root: string): void {
  put(`${root}/new.txt`, "created");
  put(`${root}/keep.txt`, "rewritten");
  Deno.mkdirSync(`${root}/dir/sub`, { recursive: true });
  put(`${root}/dir/sub/inner`, "deep");
  Deno.renameSync(`${root}/old`, `${root}/moved`);
  Deno.chmodSync(`${root}/moved/a`, 0o600);
  Deno.removeSync(`${root}/gone.txt`);
  Deno.symlinkSync("keep.txt", `${root}/link`);
}

function seed(root: string): void {
  put(`${root}/keep.txt`, "v1");
  put(`${root}/gone.txt`, "bye");
  put(`${root}/old/a`, "a");
  put(`${root}/old/b`, "b");
}

type Rec = { op: string; path: string; target: string; mode: number; size: number; digest: string };
function recordsAfterInit(log: Rec[], initCount: number): string[] {
  return log.slice(initCount).map((r) =>
    `${r.op} ${r.path} ${r.target} ${r.mode} ${r.size} ${r.digest}`
  )
    .sort();
}

Deno.test({
  name: "lento records what a scan would, and sync uses it instead of scanning",
  ignore: Deno.uid() !== 0,
  sanitizeResources: false,
  fn: async () => {
    const { dir, a, b } = await pair();
    seed(a);
    await cli(["init", a, "--host", "alpha"]);
    await cli(["clone", a, b, "--host", "beta"]);
    const twin = `${dir}/twin`;
    Deno.mkdirSync(twin);
    seed(twin);
    await cli(["init", twin, "--host", "twin"]);
    const initCount = json<Rec[]>(await cli(["log", "-C", a, "--json"])).length;

    const sock = `${a}/.replicator/lento.sock`;
    const lento = await startLento(a);
    assert(Deno.lstatSync(sock).isSocket, "lento listens on .replicator/lento.sock");
    edit(a);
    const [r] = json<{ capture: string; peerCapture: string; received: number }[]>(
      await cli(["sync", "-C", b, a, "--json"]),
    );
    assertEquals(r.peerCapture, "lento", "the writer was not scanned");
    assertEquals(listing(b), listing(a));
    if (haveOpenssl()) {
      // serve --listen hands off to lento too, without blocking its event loop.
      const server = await startServer(await makeTls(), a);
      put(`${a}/over-https`, "x");
      const [h] = json<{ peerCapture: string }[]>(
        await cli(["sync", "-C", b, server.url, ...server.args, "--json"]),
      );
      assertEquals((await server.stop()).code, 0);
      assertEquals(h.peerCapture, "lento", "the https server did not scan");
      assertEquals(listing(b), listing(a));
    }
    assertEquals(await lento.stop(), 0);
    assertThrows(() => Deno.lstatSync(sock), Deno.errors.NotFound);

    edit(twin);
    if (haveOpenssl()) put(`${twin}/over-https`, "x");
    const vol = openReplica(twin);
    capture(vol); // scan capture of the same edits
    vol.close();
    const viaLento = recordsAfterInit(
      json<Rec[]>(await cli(["log", "-C", a, "--json"])),
      initCount,
    );
    const viaScan = recordsAfterInit(
      json<Rec[]>(await cli(["log", "-C", twin, "--json"])),
      initCount,
    );
    assertEquals(viaLento, viaScan);
  },
});

Deno.test({
  name: "replicator lento runs the sync that replicator sync asks of it",
  ignore: Deno.uid() !== 0,
  sanitizeResources: false,
  fn: async () => {
    const { a, b } = await pair();
    seed(a);
    await cli(["init", a, "--host", "alpha"]);
    await cli(["clone", a, b, "--host", "beta"]);
    const lento = await startLento(b);
    try {
      edit(a);
      const r = await cli(["sync", "-C", b, a, "-v"]);
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, /received \d+ records/);
      assertEquals(listing(b), listing(a));
      assertMatch(lento.output(), /lento: ran a sync a client asked for/);
    } finally {
      assertEquals(await lento.stop(), 0);
    }
  },
});

Deno.test({
  name: "lento answers a flush only once every change made before it is recorded",
  ignore: Deno.uid() !== 0,
  sanitizeResources: false,
  fn: async () => {
    const { a } = await pair();
    put(`${a}/f`, "0");
    await cli(["init", a, "--host", "alpha"]);
    const lento = await startLento(a);
    try {
      // Each change is followed at once by the flush: it answers from what the
      // kernel had queued, with no quiet period to hide a missed event.
      for (let round = 1; round <= 25; round++) {
        put(`${a}/f`, `${round}`);
        if (round % 5 === 0) put(`${a}/new-${round}`, "n");
        assert(await flushLento(a), `round ${round}: lento did not answer`);
        const vol = openReplica(a);
        try {
          assertEquals(vol.state.getEntry("f")?.size, String(round).length, `round ${round}`);
          const fresh = vol.state.getEntry(`new-${round}`);
          if (round % 5 === 0) assert(fresh, `round ${round}: new-${round} not recorded`);
        } finally {
          vol.close();
        }
      }
    } finally {
      assertEquals(await lento.stop(), 0);
    }
  },
});

Deno.test({
  name: "lento rescans on start: nothing changed while it was down is missed",
  ignore: Deno.uid() !== 0,
  sanitizeResources: false,
  fn: async () => {
    const { a } = await pair();
    put(`${a}/f`, "1");
    await cli(["init", a, "--host", "alpha"]);
    put(`${a}/while-down`, "2");
    // A socket left by a lento that was killed: unanswered (syncs scan), replaced by the next.
    const sock = `${a}/.replicator/lento.sock`;
    await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `Deno.listen({ transport: "unix", path: ${JSON.stringify(sock)} });
        Deno.kill(Deno.pid, "SIGKILL");`,
      ],
    }).output();
    assert(Deno.lstatSync(sock).isSocket);
    assertEquals(await flushLento(a), false);
    const lento = await startLento(a);
    const log = json<Rec[]>(await cli(["log", "-C", a, "--json"]));
    assert(log.some((e) => e.op === "store" && e.path === "while-down"));
    const second = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MOD, "lento", "-C", a],
      stdin: "null",
    }).output();
    assertEquals(second.code, 75, "a second lento on the same volume is refused");
    assertMatch(new TextDecoder().decode(second.stderr), /lento already runs/);
    assertEquals(await lento.stop(), 0);
  },
});

Deno.test({
  name: "lento without Presto or fanotify exits 1 saying sync will scan",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const { dir, a } = await pair();
    put(`${a}/f`, "1");
    await cli(["init", a, "--host", "alpha"]);
    const out = await (await asNobody(dir))(["lento", "-C", a]);
    assertEquals(out.code, 1);
    assertMatch(out.stderr, /no change capture .*'replicator sync' will scan instead/);
  },
});
