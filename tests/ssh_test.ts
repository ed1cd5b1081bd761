/**
 * What only the ssh transport has, against a real sshd on 127.0.0.1
 * (tests/sshd.ts): ssh's own failures as one clear line, a transfer cut off
 * and resumed, connections cut at random byte offsets in either direction,
 * clone from an ssh:// URL. What every transport shares is in
 * transport_contract_test.ts.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { createHash } from "node:crypto";
import {
  changeEveryKind,
  cli,
  existsSync,
  holderAndReplica,
  json,
  listing,
  prng,
  put,
  type Run,
  smallTree,
} from "./helpers.ts";
import { haveSshd, type Sshd, startSshd } from "./sshd.ts";

const ignore = !haveSshd();
const CUT_PIPE = new URL("./cut_pipe.ts", import.meta.url).pathname;
/** A dropped connection shows as silence (the ssh wrapper keeps the pipe open): notice it soon. */
const QUICK = { REPLICATOR_TIMEOUT: "2" };

/** Runs `test` with a fresh sshd. */
function withSshd(test: (s: Sshd) => Promise<void>): () => Promise<void> {
  return async () => {
    const s = await startSshd();
    try {
      await test(s);
    } finally {
      await s.stop();
    }
  };
}

/** `replicator sync -C from URL-of-to` through `s`, with extra arguments. */
function syncSsh(s: Sshd, from: string, to: string, ...more: string[]): Promise<Run> {
  return cli(["sync", "-C", from, s.url(to), "--ssh", s.ssh, "--remote-cmd", s.remoteCmd, ...more]);
}

/** smallTree() plus a 3 MiB file, so transfers take several frames. */
function treeWithBig(a: string): void {
  smallTree(a);
  put(`${a}/big`, new Uint8Array(3 << 20).map((_, i) => i * 7));
}

Deno.test({
  name: "ssh: its failures are one line that says what to do, exit 1",
  ignore,
  fn: withSshd(async (s) => {
    const { a, b, dir } = await holderAndReplica(treeWithBig);
    const cases: [string, string[], RegExp][] = [
      [
        "wrong key",
        ["--ssh", s.ssh.replace(`${s.dir}/id`, `${s.dir}/host_key`), "--remote-cmd", s.remoteCmd],
        /failed: .*authentication failed: check the user and the key/,
      ],
      [
        "unknown host key",
        ["--ssh", s.ssh.replace(`${s.dir}/known_hosts`, "/dev/null"), "--remote-cmd", s.remoteCmd],
        /host key is unknown or changed/,
      ],
      [
        "remote command missing",
        ["--ssh", s.ssh, "--remote-cmd", "/nonexistent/replicator"],
        /the command '\/nonexistent\/replicator' was not found there; install replicator/,
      ],
    ];
    for (const [what, args, re] of cases) {
      const r = await cli(["sync", "-C", a, s.url(b), ...args]);
      assertEquals(r.code, 1, `${what}: ${r.stderr}`);
      assertMatch(r.stderr, re, what);
      assertEquals(r.stderr.trim().split("\n").length, 1, `${what}: one line: ${r.stderr}`);
    }
    const refused = s.url(b).replace(`:${s.port}/`, `:1/`);
    let r = await cli(["sync", "-C", a, refused, "--ssh", s.ssh, "--remote-cmd", s.remoteCmd]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /cannot be reached: check its name and port/);
    r = await syncSsh(s, a, `${dir}/nothing-here`);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /is not inside a replicator volume/);
  }),
});

/**
 * An --ssh that passes at most `up` bytes to the server and `down` bytes
 * back: the connection drops there, as a network would.
 */
function cutSsh(s: Sshd, up: number, down: number): string {
  const script = `${s.dir}/cut-ssh`;
  const cut = `'${Deno.execPath()}' run --allow-all --quiet '${CUT_PIPE}'`;
  Deno.writeTextFileSync(
    script,
    `#!/bin/bash\nup=$1; down=$2; shift 2\n${cut} "$up" | ssh "$@" | ${cut} "$down"\n`,
  );
  Deno.chmodSync(script, 0o755);
  return `${script} ${up} ${down} ${s.ssh.replace(/^ssh /, "")}`;
}

Deno.test({
  name: "ssh: a large file cut off mid-transfer resumes from what arrived",
  ignore,
  fn: withSshd(async (s) => {
    const { a, b } = await holderAndReplica(treeWithBig);
    const size = 24 << 20;
    put(`${a}/huge`, new Uint8Array(size).map((_, i) => (i * 131) >> 3));
    let r = await cli([
      "sync",
      "-C",
      b,
      s.url(a),
      "--ssh",
      cutSsh(s, 1 << 30, 10 << 20),
      "--remote-cmd",
      s.remoteCmd,
    ], { env: QUICK });
    assertEquals(r.code, 1, r.stderr);
    const parts = [...Deno.readDirSync(`${b}/.replicator/fetch`)].map((e) => e.name);
    assertEquals(parts.length, 1, `one partial transfer is kept: ${parts}`);
    assert(parts[0].endsWith(".part"));
    const kept = Deno.statSync(`${b}/.replicator/fetch/${parts[0]}`).size;
    assert(kept > 4 << 20 && kept < size, `part of the file arrived (${kept} bytes)`);
    r = await syncSsh(s, b, a, "--json");
    assertEquals([r.code, r.stderr], [0, ""]);
    const [report] = json<{ receivedBytes: number }[]>(r);
    assert(
      report.receivedBytes <= size - kept + (1 << 20),
      `only the rest travelled again: ${report.receivedBytes} of ${size} bytes, ${kept} kept`,
    );
    assertEquals(listing(b), listing(a));
    assert(!existsSync(`${b}/.replicator/fetch`), "nothing left over");
  }),
});

Deno.test({
  name: "ssh: a whole, right part file left by an earlier run is staged without travelling again",
  ignore,
  fn: withSshd(async (s) => {
    const { a, b } = await holderAndReplica(smallTree);
    const size = 2 << 20;
    const content = new Uint8Array(size).map((_, i) => (i * 31) >> 2);
    put(`${a}/whole`, content);
    const digest = createHash("sha256").update(content).digest("hex");
    Deno.mkdirSync(`${b}/.replicator/fetch`);
    put(`${b}/.replicator/fetch/${digest}.part`, content);
    const r = await syncSsh(s, b, a, "--json");
    assertEquals([r.code, r.stderr], [0, ""]);
    const [report] = json<{ receivedBytes: number; fetched: number }[]>(r);
    assert(report.receivedBytes < 64 * 1024, `only records travelled: ${report.receivedBytes} B`);
    assertEquals(report.fetched, 1, "the leftover counts as fetched");
    assertEquals(Deno.readFileSync(`${b}/whole`), content);
    assertEquals(listing(b), listing(a));
    assert(!existsSync(`${b}/.replicator/fetch`), "nothing left over");
  }),
});

Deno.test({
  name: "ssh: connections cut at random byte offsets leave both replicas consistent",
  ignore,
  fn: withSshd(async (s) => {
    const rand = prng(9);
    for (let round = 0; round < 6; round++) {
      const { a, b } = await holderAndReplica(treeWithBig);
      changeEveryKind(a, round);
      put(`${a}/bulk/${round}`, new Uint8Array(2 << 20).map(() => rand() * 256));
      const [client, server] = round % 2 ? [a, b] : [b, a];
      const upstream = round % 3 === 0;
      const at = Math.floor(rand() * (upstream ? 4000 : 3 << 20));
      const ssh = upstream ? cutSsh(s, at, 1 << 30) : cutSsh(s, 1 << 30, at);
      const cut = await cli([
        "sync",
        "-C",
        client,
        s.url(server),
        "--ssh",
        ssh,
        "--remote-cmd",
        s.remoteCmd,
      ], { env: QUICK });
      const what = `round ${round}: cut ${upstream ? "up" : "down"} at ${at}: ${cut.stderr}`;
      assert(cut.code === 0 || cut.code === 1, what);
      for (const dir of [a, b]) assertEquals((await cli(["fsck", "-C", dir])).code, 0, what);
      const again = await syncSsh(s, client, server);
      assertEquals([again.code, again.stderr], [0, ""], what);
      assertEquals(listing(b), listing(a), what);
    }
  }),
});

Deno.test({
  name: "ssh: clone from an ssh:// URL makes a replica that then syncs both ways",
  ignore,
  fn: withSshd(async (s) => {
    const { a, dir } = await holderAndReplica(treeWithBig);
    const c = `${dir}/c`;
    const r = await cli([
      "clone",
      s.url(a),
      c,
      "--host",
      "gamma",
      "--ssh",
      s.ssh,
      "--remote-cmd",
      s.remoteCmd,
    ]);
    assertEquals([r.code, r.stderr], [0, ""]);
    assertEquals(listing(c), listing(a));
    changeEveryKind(a, 3);
    assertEquals((await syncSsh(s, c, a)).code, 0);
    assertEquals(listing(c), listing(a));
  }),
});

Deno.test({
  name: "ssh: --compress sends compressible content deflated, and it arrives whole",
  ignore,
  fn: withSshd(async (s) => {
    const { a, b } = await holderAndReplica(smallTree);
    const size = 8 << 20;
    put(`${a}/log.txt`, "a line of a very repetitive log file\n".repeat(size / 37));
    put(`${a}/noise`, crypto.getRandomValues(new Uint8Array(1 << 16)));
    const r = await syncSsh(s, b, a, "--compress", "--json");
    assertEquals([r.code, r.stderr], [0, ""]);
    const [report] = json<{ receivedBytes: number; fetchedBytes: number }[]>(r);
    assert(report.fetchedBytes > size, `${report.fetchedBytes} bytes of content`);
    assert(report.receivedBytes < size / 4, `deflated: ${report.receivedBytes} bytes received`);
    assertEquals(listing(b), listing(a));
  }),
});
