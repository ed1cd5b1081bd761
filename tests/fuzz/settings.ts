/**
 * The run's settings: what the environment chooses (FUZZ_SEED, FUZZ_FRAMES,
 * FUZZ_KEEP_GOING), the program under test, and the bounds every wait and
 * every window of calls keeps.
 */

export const MOD = new URL("../../mod.ts", import.meta.url).pathname;
export const SEED = Number(Deno.env.get("FUZZ_SEED") ?? "1302") >>> 0;
export const TARGET = Number(Deno.env.get("FUZZ_FRAMES") ?? "100000");
/** Longest wait for one reply, a close or an exit: a hung server fails the test. */
export const WAIT_MS = 15_000;
/** Calls of ours in flight at once (the server allows 64). */
export const WINDOW = 32;
/** What the server's stderr must never show. */
export const CRASH = /unexpected error|Uncaught|panicked| {4}at /;
/** FUZZ_KEEP_GOING=1: a reply that breaks the message rules is counted, not fatal. */
export const KEEP_GOING = Deno.env.get("FUZZ_KEEP_GOING") === "1";
