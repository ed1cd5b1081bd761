/**
 * lento's answer to a sync's flush, against a scripted event source (no root
 * needed): it answers once the source holds nothing more (no quiet period),
 * never before events the kernel still held are recorded, and a source that
 * never runs dry does not hold the sync longer than one batch.
 */

import { openReplica } from "../src/apply/open.ts";
import { runLento } from "../src/capture/lento.ts";
import { flushLento } from "../src/capture/lento_client.ts";
import { init } from "../src/replica.ts";
import { sleep } from "../src/timer.ts";
import { assert, assertEquals } from "./assert.ts";
import { put, tempDir } from "./helpers.ts";
import { ScriptedSource } from "./scripted_source.ts";

async function withLento(fn: (root: string, source: ScriptedSource) => Promise<void>) {
  const root = await tempDir();
  put(`${root}/f`, "old");
  init(root, { host: "alpha" });
  const source = new ScriptedSource();
  const stop = new AbortController();
  let ready!: () => void;
  const armed = new Promise<void>((ok) => (ready = ok));
  const running = runLento(root, { source, signal: stop.signal, ready });
  try {
    await armed;
    await fn(root, source);
  } finally {
    stop.abort();
    const stopped = await Promise.race([running.then(() => true), sleep(3000, false)]);
    await Deno.remove(root, { recursive: true });
    assert(stopped, "lento did not stop within 3 s of its signal");
  }
}

Deno.test("a flush waits for the events its source still holds, then answers", async () => {
  await withLento(async (root, source) => {
    put(`${root}/f`, "changed");
    source.hold(["f"], 10); // queued in the kernel, read 10 ms later
    assert(await flushLento(root), "lento did not answer");
    const vol = openReplica(root);
    try {
      assertEquals(vol.state.getEntry("f")?.size, "changed".length, "answered before recording");
    } finally {
      vol.close();
    }
  });
});

Deno.test("a flush with nothing queued is answered at once; a jammed source holds it one batch at most", async () => {
  await withLento(async (root, source) => {
    let t0 = performance.now();
    assert(await flushLento(root), "lento did not answer");
    assert(performance.now() - t0 < 1000, `idle answer took ${performance.now() - t0} ms`);
    source.jam();
    t0 = performance.now();
    assert(await flushLento(root), "lento did not answer with a jammed source");
    assert(performance.now() - t0 < 1000, `jammed answer took ${performance.now() - t0} ms`);
  });
});
