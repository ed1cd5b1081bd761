/**
 * Boots Debian's kernel under QEMU with presto.ko and runs the in-guest checks
 * (tests/shim/run-qemu.sh). Needs root to install packages; never loads
 * anything into this machine's kernel.
 */

import { assertEquals, assertMatch } from "./assert.ts";

const SCRIPT = new URL("./shim/run-qemu.sh", import.meta.url).pathname;

Deno.test({
  name: "presto.ko passes its checks in Debian's kernel under QEMU",
  ignore: Deno.uid() !== 0 || Deno.env.get("REPLICATOR_SKIP_QEMU") === "1",
  fn: async () => {
    const out = await new Deno.Command("bash", { args: [SCRIPT], stdin: "null" }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    const summary = stdout.split("\n").filter((l) => l.startsWith("PRESTO-TEST:")).at(-1) ?? "";
    assertEquals(out.code, 0, `${summary}\n${stderr.slice(-4000)}`);
    assertMatch(summary, /^PRESTO-TEST: [1-9]\d* passed, 0 failed$/);
  },
});
