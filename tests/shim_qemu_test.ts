/**
 * Boots Debian's kernel under QEMU with presto.ko and runs the in-guest checks
 * (tests/shim/run-qemu.sh). Needs root to install packages; never loads
 * anything into this machine's kernel.
 */

import { assertEquals, assertMatch } from "./assert.ts";

const SCRIPT = new URL("./shim/run-qemu.sh", import.meta.url).pathname;

/** Runs the guest checks on one kernel ("" for Debian 12's, "trixie" for Debian 13's). */
async function guestChecks(kernel: string): Promise<void> {
  const env = kernel ? { PRESTO_KERNEL: kernel } : undefined;
  const out = await new Deno.Command("bash", { args: [SCRIPT], stdin: "null", env }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  const summary = stdout.split("\n").filter((l) => l.startsWith("PRESTO-TEST:")).at(-1) ?? "";
  assertEquals(out.code, 0, `${summary}\n${stderr.slice(-4000)}`);
  assertMatch(summary, /^PRESTO-TEST: [1-9]\d* passed, 0 failed$/);
}

const ignore = Deno.uid() !== 0 || Deno.env.get("REPLICATOR_SKIP_QEMU") === "1";

Deno.test({
  name: "presto.ko passes its checks in Debian 12's 6.1 kernel under QEMU",
  ignore,
  fn: () => guestChecks(""),
});

Deno.test({
  name:
    "presto.ko passes its checks in Debian 13's 6.12 kernel under QEMU (built in a Debian 13 chroot)",
  ignore,
  fn: () => guestChecks("trixie"),
});
