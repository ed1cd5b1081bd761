/**
 * Hostile peers over the wire (tests/hostile_server.ts behind a real sshd):
 * each lie or breach is refused with a clear error, nothing is written
 * outside the volume, the local replica stays consistent, and an honest sync
 * afterwards completes.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  cli,
  holderAndReplica,
  listing,
  makeSentinel,
  pair,
  put,
  smallTree,
  snapshot,
} from "./helpers.ts";
import { haveSshd, type Sshd, startSshd } from "./sshd.ts";
import { openReplica } from "../src/apply/open.ts";
import { capture } from "../src/capture/capture.ts";
import { identityOf } from "../src/sync/peer.ts";
import { toWire } from "../src/sync/remote.ts";
import { volumeHandler } from "../src/sync/serve.ts";
import { MsgType } from "../src/wire/frame.ts";
import { sayHello } from "../src/wire/handshake.ts";
import { Session, streamChannel } from "../src/wire/session.ts";

const MOD = new URL("../mod.ts", import.meta.url).pathname;

const HOSTILE = new URL("./hostile_server.ts", import.meta.url).pathname;

/** A --remote-cmd that runs the hostile server in `mode`. */
function hostileCmd(s: Sshd, mode: string): string {
  const path = `${s.dir}/hostile-${mode}`;
  Deno.writeTextFileSync(
    path,
    `#!/bin/sh\nexec '${Deno.execPath()}' run --allow-all --quiet '${HOSTILE}' ${mode} "$@"\n`,
  );
  Deno.chmodSync(path, 0o755);
  return path;
}

/** `sync -C b` with the replica `a` through `s`, the server being `remoteCmd`. */
function syncVia(s: Sshd, b: string, a: string, remoteCmd: string, env?: Record<string, string>) {
  return cli(["sync", "-C", b, s.url(a), "--ssh", s.ssh, "--remote-cmd", remoteCmd], { env });
}

const CASES: [string, number, RegExp][] = [
  ["wrong-volume", 1, /is a replica of another volume/],
  ["garbage", 1, /^replicator: ssh:\/\/\S+: protocol error: a frame of \d+ bytes/],
  ["bad-records", 1, /^replicator: peer alpha: refusing unsafe path "\.\.\/escape"/],
  ["oversized", 1, /^replicator: ssh:\/\/\S+ \(alpha\): protocol error: a frame of 5242880 bytes/],
  ["stall", 1, /sent nothing for \d+ s/],
  ["mute", 1, /did not answer HELLO for 10 s/],
  ["deflate-bomb", 1, /protocol error: DATA: bad deflated payload/],
  // The lie is caught by the receiver's hash: nothing is installed, the content stays wanted.
  ["lying-data", 0, /^$/],
];

Deno.test({
  name: "hostile peers over the wire are refused; nothing is written outside or lost",
  ignore: !haveSshd(),
  fn: async () => {
    const s = await startSshd();
    try {
      for (const [mode, code, re] of CASES) {
        const { dir, a, b } = await pair();
        put(`${a}/docs/readme`, "hello\n");
        assertEquals((await cli(["init", a, "--host", "alpha"])).code, 0);
        assertEquals((await cli(["clone", a, b, "--host", "beta"])).code, 0);
        put(`${a}/docs/readme`, "changed on the writer\n");
        put(`${a}/new`, "a new file\n");
        makeSentinel(`${dir}/sentinel`);
        const outside = snapshot(`${dir}/sentinel`);
        const before = listing(b);
        const timeout = mode === "stall" ? "0.2" : "5";
        const r = await syncVia(s, b, a, hostileCmd(s, mode), { REPLICATOR_TIMEOUT: timeout });
        assertEquals(r.code, code, `${mode}: ${r.stderr}`);
        assertMatch(r.stderr, re, `${mode}: ${r.stderr}`);
        assert(!/unexpected error|\n\s+at /.test(r.stderr), `${mode}: no stack trace: ${r.stderr}`);
        assertEquals(snapshot(`${dir}/sentinel`), outside, `${mode}: nothing outside`);
        if (mode === "lying-data") {
          assertEquals(listing(b)["new"], undefined, "the lied content was not installed");
        } else assertEquals(listing(b), before, `${mode}: nothing applied`);
        assertEquals((await cli(["fsck", "-C", b])).code, 0, `${mode}: b is consistent`);
        const honest = await syncVia(s, b, a, s.remoteCmd);
        assertEquals([honest.code, honest.stderr], [0, ""], `${mode}: an honest sync completes`);
        assertEquals(listing(b), listing(a), mode);
      }
    } finally {
      await s.stop();
    }
  },
});

Deno.test("a client's second PULL? while one runs is refused; the served replica stays exact", async () => {
  const { a, b } = await holderAndReplica(smallTree);
  for (let i = 0; i < 6; i++) put(`${a}/g${i}`, new Uint8Array(3 << 20).fill(i + 1));
  const va = openReplica(a);
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MOD, "serve", "--stdio", "-C", b],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(server.stderr).text();
  // A regression must fail, not hang CI: the server is killed after a minute.
  const guard = setTimeout(() => server.kill("SIGKILL"), 60_000);
  try {
    capture(va);
    const ch = streamChannel(server.stdout, server.stdin);
    const { rest } = await sayHello(ch, toWire(identityOf(va)), "beta");
    const session = new Session(ch, "client", {
      peer: "beta",
      handler: volumeHandler(va, { server: false }),
    });
    session.start(rest).catch(() => {});
    const pull = () => session.ask({ type: MsgType.PullRequest }, MsgType.Result);
    const [first, second] = await Promise.allSettled([pull(), pull()]);
    assertEquals(first.status, "fulfilled", String((first as PromiseRejectedResult).reason));
    assertEquals(second.status, "rejected");
    assertMatch(
      String((second as PromiseRejectedResult).reason),
      /one CAPTURE\? or PULL\? at a time/,
    );
    await session.close(true);
  } finally {
    va.close();
    await server.status;
    clearTimeout(guard);
  }
  assertEquals(await stderr, "");
  assertEquals(listing(b), listing(a), "every file whole, as its record says");
  assertEquals((await cli(["fsck", "-C", b])).code, 0);
});
