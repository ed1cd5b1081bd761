/**
 * Hostile input over the wire, against real servers: random and mutated
 * frames sent to `serve --stdio` (child processes, one session each, many
 * thousands of frames per session) and to one `serve --listen` (many
 * WebSocket sessions). The client borrows the identity of a clone of the
 * served replica, so its HELLO gets past the handshake; some sessions fuzz
 * the handshake itself.
 *
 * Most frames are well-framed requests whose values pass the message rules
 * but are hostile (offsets off a record boundary or past the log, paths
 * through symlinks out of the volume, names too long for the system, ids of
 * nobody, JSON with duplicate keys, escapes and odd number spellings, bytes
 * flipped), at most 32 in flight: each must get a reply of the right type
 * (or ERROR) and the session goes on. A DATA reply must be exactly the bytes
 * of a regular file of the volume; a RECORDS reply exactly the log's bytes.
 * Every session ends with one frame that breaks a rule (a field value the
 * rules refuse: "../x", "/etc/passwd", ".replicator/kml", a NUL, a 5000-byte
 * name, a negative or fractional offset, an id of the wrong length; random
 * header bytes, unknown types, wrong call parity, lengths over 4 MiB, ...),
 * a BYE, or an end of stream: the server answers a broken rule with ERROR on
 * call 0 and closes. When the server pulls from us (PULL?) its calls get
 * ERROR or replies that carry no valid record.
 *
 * What must hold: no crash (stderr never shows an unexpected error or a stack
 * trace; a `serve --stdio` exits 0 after BYE and 1 otherwise; the https
 * server is alive at the end and exits 0 on SIGTERM), every reply within the
 * message rules, nothing written outside the volume (a sentinel tree beside
 * it and the clone are unchanged) and nothing applied to the volume (its tree
 * is unchanged apart from `.replicator/`). Every wait is bounded: a hung
 * server fails the test.
 *
 * FUZZ_SEED=N replays a run (failures name the session); FUZZ_FRAMES=N sets
 * the frames per transport (default 100 000); FUZZ_KEEP_GOING=1 counts
 * replies that break the message rules and fails at the end, not the first.
 */

import { assert, assertEquals } from "./assert.ts";
import { prng } from "./helpers.ts";
import { haveOpenssl, makeTls, startServer } from "./https_server.ts";
import { MsgType } from "../src/wire/frame.ts";
import { frameLength } from "../src/kml/record.ts";
import { chance, int, sessionSeed } from "./fuzz/random.ts";
import { equalBytes, frame, jsonBytes } from "./fuzz/bytes.ts";
import { makeWorld, pictures, type World } from "./fuzz/world.ts";
import { stopWatchdog, timed } from "./fuzz/watchdog.ts";
import { StdioConn } from "./fuzz/stdio_conn.ts";
import { WsConn } from "./fuzz/ws_conn.ts";
import { Stats } from "./fuzz/stats.ts";
import { Fuzzer } from "./fuzz/fuzzer.ts";
import { checkFindings, checkMix, checkStderr, checkUnchanged, reporting } from "./fuzz/checks.ts";
import { SEED, TARGET } from "./fuzz/settings.ts";

/** Set when a campaign failed: the other one stops at its next session. */
let stopping = false;

/**
 * Sessions of `serve --stdio`, one process each, until TARGET frames went
 * out: a lane per pair of replicas, side by side (a session mostly waits on
 * its pipes, so two overlap well).
 */
async function stdioCampaign(worlds: World[], stats: Stats): Promise<string> {
  const before = worlds.map(pictures);
  const exits = new Map<string, number>();
  let failed: { e: unknown } | undefined;
  const live = new Set<StdioConn>();
  await Promise.allSettled(worlds.map(async (w, lane) => {
    // Lane l runs sessions l, l + lanes, ...: each session's frames follow from its number.
    for (let s = lane; stats.frames < TARGET && !failed && !stopping; s += worlds.length) {
      const r = prng(sessionSeed(1, s));
      const conn = new StdioConn(w.vol);
      live.add(conn);
      const fz = new Fuzzer(w, r, stats, conn, `serve --stdio session ${s}`);
      // Each process costs a runtime's start-up: few sessions, many frames each.
      const fuzzHandshake = chance(r, 0.2);
      const budget = 8000 + int(r, 8000);
      try {
        const { end, kind } = await reporting(
          () => fz.run(budget, fuzzHandshake),
          () => conn.kill(),
        );
        const { code, stderr } = await conn.exit();
        stats.sessions++;
        stats.bump(exits, `${code}`);
        checkStderr(stderr, fz.label);
        assertEquals(
          code,
          end === "bye" ? 0 : 1,
          `${fz.label} (FUZZ_SEED=${SEED}) ended by ${kind}: exit status\n${stderr}`,
        );
      } catch (e) {
        if (!failed) {
          // The first failure is the one to report; the other lane stops now.
          failed = { e };
          for (const c of live) if (c !== conn) c.abort();
        }
        throw e;
      } finally {
        live.delete(conn);
      }
    }
  }));
  if (failed) throw failed.e;
  if (stopping) throw new Error("stopped early: the other campaign failed");
  checkMix(stats, "serve --stdio");
  worlds.forEach((w, i) => checkUnchanged(w, before[i], "serve --stdio"));
  return `  exit statuses: ${[...exits].map(([k, v]) => `${k}:${v}`).join(" ")}`;
}

/** Sessions over WebSockets with one `serve --listen`, until TARGET frames went out. */
async function httpsCampaign([w]: World[], stats: Stats): Promise<string> {
  const before = pictures(w);
  const tls = await makeTls();
  const token = Deno.readTextFileSync(tls.token).split("\n")[0].trim();
  const ca = Deno.readTextFileSync(tls.ca);
  const server = await startServer(tls, w.vol);
  let stopped: Promise<{ code: number; stderr: string }> | undefined;
  const stop = () =>
    stopped ??= timed(server.stop(), () => "serve --listen does not stop on SIGTERM", () => {
      try {
        server.child.kill("SIGKILL");
      } catch { /* gone */ }
    });
  // The next session's WebSocket opens while the current one runs (until its
  // HELLO the server holds nothing).
  let next: Promise<WsConn> | undefined;
  const preopen = () => {
    const p = WsConn.open(server.port, token, ca);
    p.catch(() => {}); // awaited by the next session; until then its failure is not unhandled
    return p;
  };
  try {
    await reporting(async () => {
      next = preopen();
      for (let s = 0; stats.frames < TARGET; s++) {
        if (stopping) throw new Error("stopped early: the other campaign failed");
        const conn = await next!;
        next = preopen();
        const r = prng(sessionSeed(2, s));
        const fz = new Fuzzer(w, r, stats, conn, `serve --listen session ${s}`);
        const fuzzHandshake = chance(r, 0.25);
        const budget = 200 + int(r, 1200);
        await fz.run(budget, fuzzHandshake);
        stats.sessions++;
      }
      // Still up, and still serving: a plain session after the fuzz.
      let alive = true;
      server.child.status.then(() => alive = false);
      await new Promise((res) => setTimeout(res, 50));
      assert(alive, "the https server is still running after the fuzz");
      const conn = await next!;
      next = undefined;
      const last = new Fuzzer(w, prng(SEED), new Stats(), conn, "serve --listen, last session");
      await conn.send([frame(MsgType.Hello, 0, jsonBytes(last.hello()))], prng(SEED));
      const welcome = await conn.next(() => "after the fuzz");
      assert(
        welcome && !(welcome instanceof Error) && welcome.type === MsgType.Welcome,
        "WELCOME after the fuzz",
      );
      await conn.send([frame(MsgType.RecordsRequest, 1, jsonBytes({ offset: 64 }))], prng(SEED));
      const records = await conn.next(() => "after the fuzz");
      assert(records && !(records instanceof Error) && records.type === MsgType.Records);
      assert(equalBytes(records.payload, w.kml.subarray(64)), "the log, unchanged");
      // A window (protocol 2's limit): the records up to the one reaching 1 byte, the first.
      const ask = jsonBytes({ offset: 64, limit: 1 });
      await conn.send([frame(MsgType.RecordsRequest, 5, ask)], prng(SEED));
      const first = await conn.next(() => "a window of the log");
      assert(first && !(first instanceof Error) && first.type === MsgType.Records);
      const len = frameLength(w.kml.subarray(64));
      assert(len < w.kml.length - 64, "the log holds more than one record");
      assert(equalBytes(first.payload, w.kml.subarray(64, 64 + len)), "one record, whole");
      await conn.send([frame(MsgType.Bye, 3, new Uint8Array())], prng(SEED));
      assertEquals(await conn.next(() => "after BYE"), null);
    }, async () => (await stop()).stderr);
  } finally {
    await next?.then((c) => c.end(), () => {});
    const { code, stderr } = await stop();
    await Deno.remove(tls.dir, { recursive: true });
    checkStderr(stderr, "serve --listen");
    assertEquals(code, 0, `serve --listen stops cleanly on SIGTERM:\n${stderr.slice(-4000)}`);
  }
  checkMix(stats, "serve --listen");
  checkUnchanged(w, before, "serve --listen");
  return "  the server was up at the end and exited 0 on SIGTERM";
}

Deno.test({
  name: "wire fuzz: serve --stdio and serve --listen refuse random and mutated frames cleanly",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const started = performance.now();
    stopping = false;
    // The campaigns run side by side, each with its own replicas (two lanes
    // of stdio sessions, one https server): a session mostly waits for the
    // other side, so together they keep both cores busy.
    const campaigns: [string, (w: World[], s: Stats) => Promise<string>, number][] = [
      ["serve --stdio", stdioCampaign, 2],
    ];
    if (haveOpenssl()) campaigns.push(["serve --listen", httpsCampaign, 1]);
    else console.log("wire fuzz: no openssl here, serve --listen is not fuzzed");
    const worlds = await Promise.all(
      campaigns.map(([, , n]) => Promise.all(Array.from({ length: n }, () => makeWorld()))),
    );
    const stats = campaigns.map(() => new Stats());
    using _cleanup = {
      [Symbol.dispose]: () => {
        for (const w of worlds.flat()) Deno.removeSync(w.dir, { recursive: true });
      },
    };
    const results = await Promise.allSettled(
      campaigns.map(async ([, run], i) => {
        const t = performance.now();
        try {
          return await run(worlds[i], stats[i]);
        } catch (e) {
          stopping = true;
          throw e;
        } finally {
          stats[i].ms = performance.now() - t;
        }
      }),
    );
    const failures: string[] = [];
    results.forEach((res, i) => {
      console.log(stats[i].line(campaigns[i][0]));
      if (res.status === "fulfilled") console.log(res.value);
      else failures.push(`${campaigns[i][0]}: ${(res.reason as Error).message}`);
    });
    // Replies that broke the message rules (counted with FUZZ_KEEP_GOING=1).
    stats.forEach((st, i) => {
      try {
        checkFindings(st, campaigns[i][0]);
      } catch (e) {
        failures.push((e as Error).message);
      }
    });
    stopWatchdog();
    console.log(`wire fuzz: ${Math.round(performance.now() - started)} ms`);
    assert(failures.length === 0, failures.join("\n\n"));
  },
});
