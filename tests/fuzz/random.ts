/**
 * Randomness: draws from a seeded generator (integers, picks, chances,
 * weighted choices, ids and bytes) and the seed of each session, so that one
 * session replays alone.
 */

import { SEED } from "./settings.ts";

export type Rng = () => number;
export const int = (r: Rng, n: number) => Math.floor(r() * n);
export const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)];
export const chance = (r: Rng, p: number) => r() < p;
export const hexId = (r: Rng) =>
  Array.from({ length: 32 }, () => "0123456789abcdef"[int(r, 16)]).join("");
export const bytes = (r: Rng, n: number) => Uint8Array.from({ length: n }, () => int(r, 256));
/** A weighted choice: [weight, value] pairs. */
export function weighted<T>(r: Rng, xs: readonly [number, T][]): T {
  let x = r() * xs.reduce((a, [w]) => a + w, 0);
  for (const [w, v] of xs) if ((x -= w) < 0) return v;
  return xs[xs.length - 1][1];
}
/** A seed per transport and session, so one session replays alone. */
export const sessionSeed = (transport: number, s: number) =>
  (SEED ^ Math.imul(transport * 1_000_003 + s + 1, 0x9e3779b1)) >>> 0;
