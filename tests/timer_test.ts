/**
 * src/timer.ts: timers fire, cancelled ones do not, and a cancelled timer
 * does not hold the process open (a sync must not linger for its lento
 * timeout after the answer came).
 */

import { after, every, sleep } from "../src/timer.ts";
import { assert, assertEquals } from "./assert.ts";

Deno.test("after fires once after its delay; a cancelled one never fires", async () => {
  const fired: string[] = [];
  const t0 = performance.now();
  after(30, () => fired.push("kept"));
  const cancel = after(10, () => fired.push("cancelled"));
  cancel();
  await sleep(60);
  assertEquals(fired, ["kept"]);
  assert(performance.now() - t0 >= 30);
});

Deno.test("sleep resolves with its value after the delay", async () => {
  const t0 = performance.now();
  assertEquals(await sleep(20, "timeout"), "timeout");
  assert(performance.now() - t0 >= 19, "resolved early");
});

Deno.test("every ticks until stopped, and not after", async () => {
  let ticks = 0;
  const stop = every(10, () => ticks++);
  await sleep(75);
  stop();
  const seen = ticks;
  assert(seen >= 3 && seen <= 8, `ticks in 75 ms at 10 ms: ${seen}`);
  await sleep(40);
  assertEquals(ticks, seen);
});

Deno.test("a cancelled timer does not keep the process alive; a pending one does", async () => {
  const url = new URL("../src/timer.ts", import.meta.url).href;
  const run = async (code: string) => {
    const t0 = performance.now();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", `import { after } from "${url}"; ${code}`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    return { ms: performance.now() - t0, out: new TextDecoder().decode(out.stdout) };
  };
  const cancelled = await run(`after(5000, () => console.log("fired"))();`);
  assertEquals(cancelled.out, "");
  assert(cancelled.ms < 4000, `the process waited ${cancelled.ms} ms for a cancelled timer`);
  const pending = await run(`after(300, () => console.log("fired"));`);
  assertEquals(pending.out, "fired\n");
});
