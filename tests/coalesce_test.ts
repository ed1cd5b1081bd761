/**
 * Coalesced writes (src/wire/coalesce.ts): frames sent while a write is
 * under way share the next one, in order; each frame's promise settles with
 * the write that carried it; a failed write fails only its own frames. Then
 * the same through a real pipe to `cat`, many frames at once: every byte
 * arrives, in order.
 */

import { assert, assertEquals } from "./assert.ts";
import { coalescing } from "../src/wire/coalesce.ts";

/** A sink whose writes finish when the test says so, recording what each carried. */
function manualSink() {
  const writes: { bytes: number[]; finish: (err?: Error) => void }[] = [];
  const write = (b: Uint8Array) =>
    new Promise<void>((ok, fail) =>
      writes.push({ bytes: [...b], finish: (err) => err ? fail(err) : ok() })
    );
  return { writes, write };
}

const turn = () => new Promise((r) => setTimeout(r, 0));
const bytes = (...b: number[]) => new Uint8Array(b);

Deno.test("coalesce: frames sent in one turn go out in one write, in order", async () => {
  const sink = manualSink();
  const send = coalescing(sink.write);
  const sent = [send(bytes(1)), send(bytes(2, 3)), send(bytes(4))];
  await turn();
  assertEquals(sink.writes.map((w) => w.bytes), [[1, 2, 3, 4]]);
  sink.writes[0].finish();
  await Promise.all(sent);
});

Deno.test("coalesce: frames sent during a write wait for it, then share the next", async () => {
  const sink = manualSink();
  const send = coalescing(sink.write);
  let firstDone = false;
  const first = send(bytes(1)).then(() => firstDone = true);
  await turn();
  assertEquals(sink.writes.length, 1, "an idle stream writes at once");
  let laterDone = false;
  const later = Promise.all([send(bytes(2)), send(bytes(3))]).then(() => laterDone = true);
  await turn();
  assertEquals(sink.writes.length, 1, "nothing more is written before the first write ends");
  assert(!firstDone && !laterDone, "no frame is reported written before its write ends");
  sink.writes[0].finish();
  await first;
  await turn();
  assertEquals(sink.writes.map((w) => w.bytes), [[1], [2, 3]]);
  assert(!laterDone, "the second batch is still under way");
  sink.writes[1].finish();
  await later;
});

Deno.test("coalesce: a failed write fails its own frames, and the next batch is written", async () => {
  const sink = manualSink();
  const send = coalescing(sink.write);
  const failed = send(bytes(1));
  await turn();
  const next = send(bytes(2));
  sink.writes[0].finish(new Error("broken pipe"));
  let err: unknown;
  try {
    await failed;
  } catch (e) {
    err = e;
  }
  assertEquals((err as Error)?.message, "broken pipe");
  await turn();
  assertEquals(sink.writes.map((w) => w.bytes), [[1], [2]]);
  sink.writes[1].finish();
  await next;
});

Deno.test("coalesce: a batch stops growing at 256 KiB; order is kept across batches", async () => {
  const sink = manualSink();
  const send = coalescing(sink.write);
  const frame = (k: number) => new Uint8Array(100 * 1024).fill(k);
  const sent = [1, 2, 3, 4, 5].map((k) => send(frame(k)));
  for (let i = 0; i < 3; i++) {
    await turn();
    sink.writes[i].finish();
  }
  await Promise.all(sent);
  const firsts = sink.writes.map((w) => [w.bytes.length / 1024, w.bytes[0], w.bytes.at(-1)]);
  assertEquals(firsts, [[200, 1, 2], [200, 3, 4], [100, 5, 5]]);
});

Deno.test("coalesce: through a real pipe, 5000 frames sent at once arrive whole and in order", async () => {
  const child = new Deno.Command("cat", { stdin: "piped", stdout: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  const send = coalescing((b) => writer.write(b));
  const expected: number[] = [];
  const sent: Promise<void>[] = [];
  for (let i = 0; i < 5000; i++) {
    const f = new Uint8Array(1 + (i % 300)).fill(i % 251);
    expected.push(...f);
    sent.push(send(f));
  }
  const reading = new Response(child.stdout).arrayBuffer();
  await Promise.all(sent);
  await writer.close();
  const got = new Uint8Array(await reading);
  await child.status;
  assertEquals(got.length, expected.length);
  assert(got.every((b, i) => b === expected[i]), "bytes arrive in the order they were sent");
});
