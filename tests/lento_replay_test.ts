/**
 * Lento itself consumes what the Presto module emitted under QEMU: its real
 * loop (runLento) reads the captured device output (tests/shim/capture-main.bin)
 * through the Presto source, from a pipe standing in for /dev/presto, while the
 * same operations are done here; the KML records it appends equal what a full
 * scan records. (Why replay on the host: see presto_replay_test.ts.)
 */

import { closeFd, pipe, writeAll } from "./pipe.ts";
import { openReplica } from "../src/apply/open.ts";
import { assertEquals } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { mainScenario } from "./presto_scenario.ts";
import { init } from "../src/replica.ts";
import { capture } from "../src/capture/capture.ts";
import { runLento } from "../src/capture/lento.ts";
import { PrestoSource } from "../src/capture/presto_source.ts";
import { decodeRecord, Op } from "../src/kml/record.ts";

const FIXTURE = new URL("./shim/capture-main.bin", import.meta.url).pathname;

/** What a volume's log says after its init, without origins and times. */
function recordsAfter(root: string, skip: number): string[] {
  const vol = openReplica(root);
  try {
    return [...vol.kml.frames()].slice(skip).map((f) => decodeRecord(f.bytes)).map((r) =>
      `${Op[r.op]} ${r.path} ${r.target} ${r.mode} ${r.size} ${r.digest}`
    );
  } finally {
    vol.close();
  }
}

async function scenarioRoot(): Promise<{ root: string; outside: string }> {
  const dir = await tempDir();
  Deno.mkdirSync(`${dir}/outside`);
  init(`${dir}/vol`, { host: "replay" });
  return { root: `${dir}/vol`, outside: `${dir}/outside` };
}

Deno.test("lento turns the module's captured events into the records a scan makes", async () => {
  const scanned = await scenarioRoot();
  const initRecords = recordsAfter(scanned.root, 0).length;
  mainScenario(scanned.root, scanned.outside);
  const vol = openReplica(scanned.root);
  capture(vol);
  vol.close();
  const expected = recordsAfter(scanned.root, initRecords);

  const live = await scenarioRoot();
  const [r, w] = pipe();
  const stop = new AbortController();
  let ready: () => void;
  const armed = new Promise<void>((ok) => (ready = ok));
  const lines: string[] = [];
  const running = runLento(live.root, {
    source: PrestoSource.fromFd(r),
    signal: stop.signal,
    ready: () => ready(),
    log: (l) => lines.push(l),
  });
  await armed; // the start-up rescan is done: from here on only events count
  mainScenario(live.root, live.outside);
  const bytes = Deno.readFileSync(FIXTURE);
  writeAll(w, bytes);
  const deadline = Date.now() + 10_000;
  while (recordsAfter(live.root, initRecords).length < expected.length && Date.now() < deadline) {
    await new Promise((ok) => setTimeout(ok, 20));
  }
  stop.abort();
  await running;
  closeFd(w);
  assertEquals(recordsAfter(live.root, initRecords), expected, lines.join("\n"));
});
