/**
 * Hostile peers over the wire (tests/hostile_server.ts behind a real sshd):
 * each lie or breach is refused with a clear error, nothing is written
 * outside the volume, the local replica stays consistent, and an honest sync
 * afterwards completes.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { cli, listing, makeSentinel, pair, put, snapshot } from "./helpers.ts";
import { haveSshd, type Sshd, startSshd } from "./sshd.ts";

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
