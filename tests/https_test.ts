/**
 * The https transport against a real `serve --listen` on 127.0.0.1 with a
 * certificate from a throwaway CA: token checks, --read-only, TLS trust, a
 * clean stop on SIGTERM, and refusals of insecure set-ups.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { cli, holderAndReplica, json, listing, put, smallTree } from "./helpers.ts";
import { haveOpenssl, makeTls, startServer } from "./https_server.ts";
import { openReplica } from "../src/apply/open.ts";

const ignore = !haveOpenssl();

Deno.test({
  name: "https: syncs both ways with a token; a wrong or missing token is one line, exit 1",
  ignore,
  fn: async () => {
    const tls = await makeTls();
    const { a, b } = await holderAndReplica(smallTree);
    const server = await startServer(tls, a);
    try {
      put(`${a}/docs/more`, "more\n");
      let r = await cli(["sync", "-C", b, server.url, ...server.args, "--json"]);
      assertEquals([r.code, r.stderr], [0, ""]);
      assertEquals(json<{ peerName: string }[]>(r)[0].peerName, "alpha");
      assertEquals(listing(b), listing(a));
      for (const env of [{ REPLICATOR_TOKEN: "wrong" }, { REPLICATOR_TOKEN: "" }]) {
        r = await cli(["sync", "-C", b, server.url, "--ca-file", tls.ca], { env });
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /^replicator: https:\/\/127\.0\.0\.1:\d+\/: authentication failed/);
        assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
      }
      r = await cli(["sync", "-C", b, server.url, "--token-file", tls.token]);
      assertEquals(r.code, 1, r.stderr);
      assertMatch(r.stderr, /certificate is not trusted .* give its CA with --ca-file/);
    } finally {
      const { code, stderr } = await server.stop();
      assertEquals(code, 0, `a clean stop on SIGTERM: ${stderr}`);
      assertMatch(stderr, /authentication failed/, "the server logs refused clients");
    }
    openReplica(a).close(); // the server released the lock
  },
});

Deno.test({
  name: "https: a --read-only server gives its changes and takes none",
  ignore,
  fn: async () => {
    const tls = await makeTls();
    const { a, b } = await holderAndReplica(smallTree);
    // The writer (a) syncs with a read-only edge (b): a pulls from b, b takes nothing.
    const server = await startServer(tls, b, "--read-only");
    try {
      put(`${a}/new`, "from the writer\n");
      const r = await cli(["sync", "-C", a, server.url, ...server.args, "--json"]);
      assertEquals([r.code, r.stderr], [0, ""]);
      assertEquals(json<{ sent: number | null }[]>(r)[0].sent, null);
      assert(!listing(b)["new"], "the read-only side took nothing");
    } finally {
      assertEquals((await server.stop()).code, 0);
    }
  },
});

Deno.test({
  name: "https: insecure set-ups are refused with what to do",
  ignore,
  fn: async () => {
    const { a, b } = await holderAndReplica(smallTree);
    let r = await cli(["serve", "--listen", "127.0.0.1:1", "-C", a], {
      env: { REPLICATOR_TOKEN: "" },
    });
    assertEquals(r.code, 2, r.stderr);
    assertMatch(r.stderr, /needs a token \(--token-file F or REPLICATOR_TOKEN\)/);
    r = await cli(["serve", "--listen", "0.0.0.0:1", "-C", a, "--insecure-no-auth"]);
    assertEquals(r.code, 2, r.stderr);
    assertMatch(r.stderr, /without TLS is allowed on 127\.0\.0\.1 only/);
    r = await cli(["sync", "-C", b, "http://192.0.2.1:8443/"]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /plain http is allowed only to this machine/);
  },
});
