/**
 * One contract, three transports: the same scenarios run with the peer as a
 * local directory, over ssh (a real sshd on 127.0.0.1) and over https (a real
 * `serve --listen`), as litestream runs one suite against every replica
 * client. What a user sees must not depend on how the peer is reached.
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
  pair,
  put,
  type Run,
  smallTree,
} from "./helpers.ts";
import { haveSshd, type Sshd, startSshd } from "./sshd.ts";
import { haveOpenssl, makeTls, type Server, startServer } from "./https_server.ts";
import { tryLockNoFollow } from "../src/fs/nofollow.ts";
import { layoutOf } from "../src/volume/layout.ts";

/** How the scenarios reach a replica at a path. */
interface Reach {
  /** The peer argument and extra arguments for a replica at `dir`. */
  peer(dir: string): Promise<string[]>;
  stop(): Promise<void>;
}

interface Transport {
  name: string;
  ignore: boolean;
  start(): Promise<Reach>;
}

const TRANSPORTS: Transport[] = [
  {
    name: "local",
    ignore: false,
    start: () => Promise.resolve({ peer: (dir) => Promise.resolve([dir]), stop: async () => {} }),
  },
  {
    name: "ssh",
    ignore: !haveSshd(),
    start: async () => {
      const s: Sshd = await startSshd();
      return {
        peer: (dir) => Promise.resolve([s.url(dir), "--ssh", s.ssh, "--remote-cmd", s.remoteCmd]),
        stop: () => s.stop(),
      };
    },
  },
  {
    name: "https",
    ignore: !haveOpenssl(),
    start: async () => {
      const tls = await makeTls();
      const servers = new Map<string, Server>();
      return {
        peer: async (dir) => {
          if (!servers.has(dir)) servers.set(dir, await startServer(tls, dir));
          const s = servers.get(dir)!;
          return [s.url, ...s.args];
        },
        stop: async () => {
          for (const s of servers.values()) assertEquals((await s.stop()).code, 0);
        },
      };
    },
  },
];

/** `replicator sync -C from <to, as the transport reaches it>`. */
async function syncTo(reach: Reach, from: string, to: string, ...more: string[]): Promise<Run> {
  return await cli(["sync", "-C", from, ...await reach.peer(to), ...more]);
}

type Scenario = (reach: Reach) => Promise<void>;

const SCENARIOS: Record<string, Scenario> = {
  "changes of every kind converge, whichever side starts": async (reach) => {
    const { a, b } = await holderAndReplica(smallTree);
    put(`${a}/bin/tool.old`, "old");
    assertEquals((await syncTo(reach, a, b)).code, 0);
    changeEveryKind(a, 1);
    Deno.removeSync(`${a}/bin/tool.old`);
    let r = await syncTo(reach, a, b); // the holder starts: the peer pulls from it
    assertEquals([r.code, r.stderr], [0, ""]);
    assertEquals(listing(b), listing(a));
    put(`${a}/bin/tool.old`, "again");
    changeEveryKind(a, 2);
    Deno.removeSync(`${a}/bin/tool.old`);
    r = await syncTo(reach, b, a, "--json"); // the replica starts: it pulls from the peer
    assertEquals([r.code, r.stderr], [0, ""]);
    assertEquals(json<{ peerName: string }[]>(r)[0].peerName, "alpha");
    assertEquals(listing(b), listing(a));
    r = await syncTo(reach, a, b);
    assertEquals([r.code, r.stdout, r.stderr], [0, "", ""], "nothing new: silent");
  },
  "a log read in windows of a few records converges, clone and sync": async (reach) => {
    const { dir, a, b } = await holderAndReplica(smallTree);
    const env = { REPLICATOR_WINDOW_BYTES: "300" }; // one to three records per window
    for (let round = 1; round <= 3; round++) {
      changeEveryKind(a, round);
      put(`${a}/docs/readme`, `back ${round}\n`); // a path stored, moved away and stored again
      const r = await cli(["sync", "-C", b, ...await reach.peer(a)], { env });
      assertEquals([r.code, r.stderr], [0, ""]);
      assertEquals(listing(b), listing(a), `round ${round}`);
    }
    const c = `${dir}/c`;
    const r = await cli(["clone", ...await reach.peer(a), c, "--host", "gamma"], { env });
    assertEquals([r.code, r.stderr], [0, ""]);
    assertEquals(listing(c), listing(a), "a clone replaying the whole log in windows");
  },
  // Over a session the file is fetched ahead (the leftover is hashed again and
  // dropped); from a local replica it is copied as staged (the leftover ignored).
  "a damaged file left in .replicator/fetch by an earlier run is fetched again, not installed":
    async (reach) => {
      const content = "the content the record names\n";
      const digest = createHash("sha256").update(content).digest("hex");
      const leftovers: [string, string][] = [
        [digest, "torn by a crash\n"], // a complete transfer, damaged since
        [`${digest}.part`, "X".repeat(content.length)], // whole in size, wrong in bytes
      ];
      for (const [name, damaged] of leftovers) {
        const { a, b } = await holderAndReplica(smallTree);
        put(`${a}/doc`, content);
        put(`${b}/.replicator/fetch/${name}`, damaged);
        const r = await syncTo(reach, b, a, "--json");
        assertEquals([r.code, r.stderr], [0, ""], name);
        assertEquals(Deno.readTextFileSync(`${b}/doc`), content, name);
        assertEquals(json<{ deferred: string[] }[]>(r)[0].deferred, [], name);
        assert(!existsSync(`${b}/.replicator/fetch`), `nothing left over (${name})`);
      }
    },
  "a replica of another volume is refused and nothing changes": async (reach) => {
    const { a } = await holderAndReplica(smallTree);
    const other = await pair();
    put(`${other.a}/x`, "x");
    assertEquals((await cli(["init", other.a, "--host", "omega"])).code, 0);
    const before = listing(a);
    const r = await syncTo(reach, a, other.a);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /replica of another volume/);
    assertEquals(listing(a), before);
  },
  "a busy peer is exit 75 and the next sync completes": async (reach) => {
    const { a, b } = await holderAndReplica(smallTree);
    put(`${a}/later`, "x");
    await reach.peer(b); // an https server is started before the lock is taken
    const release = tryLockNoFollow(layoutOf(b).lock);
    assert(release, "the test takes b's lock");
    const r = await cli(["sync", "-C", a, ...await reach.peer(b)], {
      env: { REPLICATOR_LOCK_WAIT: "0" },
    });
    release();
    assertEquals(r.code, 75, r.stderr);
    assertMatch(r.stderr, /busy/);
    assertEquals((await syncTo(reach, a, b)).code, 0);
    assertEquals(listing(b), listing(a));
  },
};

for (const t of TRANSPORTS) {
  for (const [name, scenario] of Object.entries(SCENARIOS)) {
    Deno.test({
      name: `contract (${t.name}): ${name}`,
      ignore: t.ignore,
      fn: async () => {
        const reach = await t.start();
        try {
          await scenario(reach);
        } finally {
          await reach.stop();
        }
      },
    });
  }
}

Deno.test({
  name: "named peers keep how to reach them; one unreachable is reported, the others sync",
  ignore: !haveSshd() || !haveOpenssl(),
  fn: async () => {
    const s = await startSshd();
    const tls = await makeTls();
    const { a, b, dir } = await holderAndReplica(smallTree);
    const c = `${dir}/c`;
    assertEquals((await cli(["clone", a, c, "--host", "gamma"])).code, 0);
    const server = await startServer(tls, c);
    try {
      const add = (name: string, ...args: string[]) => cli(["peer", "add", name, ...args, "-C", a]);
      assertEquals(
        (await add("beta", s.url(b), "--ssh", s.ssh, "--remote-cmd", s.remoteCmd)).code,
        0,
      );
      assertEquals((await add("gamma", server.url, ...server.args)).code, 0);
      const unreachable = s.url(b).replace(`:${s.port}/`, ":1/");
      assertEquals((await add("delta", unreachable, "--ssh", s.ssh)).code, 0);
      put(`${a}/news`, "to every peer\n");
      const r = await cli(["sync", "-C", a], { env: { REPLICATOR_TOKEN: "" } });
      assertEquals(r.code, 1, r.stderr);
      assertMatch(
        r.stderr,
        /^replicator: peer delta: ssh \S+ failed: .*cannot be reached/,
      );
      assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
      assertEquals(listing(b), listing(a));
      assertEquals(listing(c), listing(a));
    } finally {
      await s.stop();
      assertEquals((await server.stop()).code, 0);
    }
  },
});
