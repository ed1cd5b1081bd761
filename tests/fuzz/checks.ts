/**
 * What must hold after a campaign (no crash on the server's stderr, nothing
 * changed outside the volume or in its tree, every kind of request sent, no
 * reply that broke the rules), and failures that carry the server's stderr.
 */

import { assert, assertEquals } from "../assert.ts";
import { pictures, type World } from "./world.ts";
import type { Stats } from "./stats.ts";
import { CRASH } from "./settings.ts";

/** Runs `fn`; on failure, adds the server's stderr to the error. */
export async function reporting<T>(
  fn: () => Promise<T>,
  stderr: () => Promise<string>,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const err = await stderr().catch(() => "");
    (e as Error).message += `\nserver stderr (last 4000 characters):\n${err.slice(-4000)}`;
    throw e;
  }
}

export function checkStderr(stderr: string, where: string): void {
  const bad = stderr.split("\n").find((l) => CRASH.test(l));
  assert(
    bad === undefined,
    `${where}: the server's stderr shows a crash: ${bad}\n${stderr.slice(-4000)}`,
  );
}

export function checkUnchanged(w: World, before: ReturnType<typeof pictures>, where: string): void {
  const after = pictures(w);
  assertEquals(after.sentinel, before.sentinel, `${where}: nothing written outside the volume`);
  assertEquals(after.clone, before.clone, `${where}: nothing written to the clone`);
  assertEquals(after.tree, before.tree, `${where}: nothing applied to the volume's tree`);
}

/** Every kind of request went out (a change of the message rules could silently skew the mix). */
export function checkMix(stats: Stats, where: string): void {
  for (const t of ["FileRequest", "RecordsRequest", "PositionRequest"]) {
    const n = stats.sent.get(t) ?? 0;
    assert(n >= stats.requests / 10, `${where}: only ${n} ${t} of ${stats.requests} requests`);
  }
  for (const t of ["CaptureRequest", "PullRequest"]) {
    assert((stats.sent.get(t) ?? 0) > 0, `${where}: no ${t} was sent`);
  }
}

export function checkFindings(stats: Stats, where: string): void {
  assert(
    stats.findings.size === 0,
    `${where}: replies that break the message rules:\n${
      [...stats.findings].map(([k, e]) => `${k} (${stats.findingCounts.get(k)} times), e.g. ${e}`)
        .join("\n")
    }`,
  );
}
