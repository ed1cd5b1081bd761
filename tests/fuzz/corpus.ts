/**
 * Hostile values: names that look like the volume's own, random odd paths,
 * field sets the message rules refuse, valid JSON spelt in unusual ways, and
 * bytes flipped.
 */

import { MsgType } from "../../src/wire/frame.ts";
import { chance, int, pick, type Rng, weighted } from "./random.ts";
import { text } from "./bytes.ts";
import type { World } from "./world.ts";

export const LOOKALIKES = [
  ".replicatorx",
  ".replicator ",
  "x/.replicator",
  "d/.replicator/kml",
  "...",
  "..x",
  "x..",
  " f",
  "f ",
  "F",
  "f\n",
  "d\\g",
  "..\\x",
  "%2e%2e/x",
  "~",
  "~root",
  "$HOME",
  "*",
  "d/*",
  "?",
  "\x7f",
  "\x01\x02",
  "u\u0308ni\u0308/c\u0327", // ünï/ç decomposed: another name
  "\ufeff",
  "f\u200b",
  "proc/self/root/etc/passwd",
  "dev/zero",
];

/** A path of odd names (no "", "." or ".." component: the rules would refuse it). */
export function randomName(r: Rng): string {
  const alphabet = "ab.\\ \t\n\x01~-_ü☃\u00a0";
  const parts: string[] = [];
  for (let n = 1 + int(r, 3); n > 0; n--) {
    let s = "";
    for (let i = 1 + int(r, 8); i > 0; i--) s += alphabet[int(r, alphabet.length)];
    parts.push(s === "." || s === ".." ? s + "x" : s);
  }
  return parts.join("/");
}

/** Field sets that break the message rules. */
export function badFields(r: Rng, type: MsgType, w: World): [string, unknown][] {
  const offset = () =>
    pick(r, [-1, -64, 1.5, 64.5, "64", null, true, [], {}, 2 ** 53, 2 ** 64, 1e300, -0.5]);
  const path = () =>
    pick(r, [
      "../x",
      "../sentinel/victim",
      "/etc/passwd",
      ".replicator/kml",
      ".replicator",
      ".replicator/volume.json",
      "a\0b",
      "f\0",
      "x".repeat(5000),
      "",
      ".",
      "..",
      "a//b",
      "d/",
      "./f",
      "d/../f",
      "d/./g",
      "d/e/../../../x",
      "/",
      "//",
      123,
      null,
      ["f"],
    ]);
  const id = () =>
    pick<unknown>(r, [
      w.cloneHost.slice(1),
      w.cloneHost + "0",
      w.cloneHost.toUpperCase(),
      "g".repeat(32),
      "",
      0,
      null,
      " " + w.cloneHost.slice(1),
    ]);
  const extra = (fs: [string, unknown][]): [string, unknown][] =>
    chance(r, 0.5) ? [...fs, [pick(r, ["x", "Path", "offset ", "__proto__"]), 1]] : fs.slice(1);
  switch (type) {
    case MsgType.RecordsRequest:
      return chance(r, 0.7) ? [["offset", offset()]] : extra([["offset", 64]]);
    case MsgType.FileRequest:
      return weighted<() => [string, unknown][]>(r, [
        [5, () => [["path", path()], ["from", 0], ["compress", false]]],
        [2, () => [["path", "f"], ["from", offset()], ["compress", true]]],
        [1, () => [["path", "f"], ["from", 0], ["compress", pick(r, [1, "true", null, 0])]]],
        [1, () => extra([["path", "f"], ["from", 0], ["compress", false]])],
      ])();
    case MsgType.PositionRequest:
      return chance(r, 0.7)
        ? [["host", id()], ["incarnation", chance(r, 0.5) ? id() : w.cloneHost]]
        : extra([["host", w.cloneHost], ["incarnation", w.cloneHost]]);
    default:
      return [[pick(r, ["x", "offset", "path"]), pick(r, [1, null, "", {}])]];
  }
}

export function badIdentityField(r: Rng): Record<string, unknown> {
  return pick<Record<string, unknown>>(r, [
    { host: "x" },
    { volume: "A".repeat(32) },
    { incarnation: 1 },
    { protocol: "1" },
    { protocol: -1 },
    { protocol: 1.5 },
    { epoch: -1 },
    { epoch: 2 ** 53 },
    { name: null },
    { name: 5 },
    { extra: true },
    { readOnly: false },
    { volume: undefined }, // dropped by JSON: a missing field
  ]);
}

/** A JSON object of `fields` spelt in one of many valid ways. */
export function jsonText(r: Rng, fields: [string, unknown][]): Uint8Array {
  const entries = [...fields];
  if (chance(r, 0.2)) entries.reverse();
  const sp = () => chance(r, 0.1) ? pick(r, [" ", "\n", "\t", "\r\n  "]) : "";
  const str = (s: string) => {
    if (s.length > 300 || !chance(r, 0.15)) return JSON.stringify(s);
    // Escapes: \uXXXX for some characters, \/ for slashes.
    let out = '"';
    for (const ch of s) {
      if (ch === "/" && chance(r, 0.5)) out += "\\/";
      else if (chance(r, 0.3) && ch.length === 1) {
        const u = ch.charCodeAt(0).toString(16).padStart(4, "0");
        out += `\\u${chance(r, 0.5) ? u : u.toUpperCase()}`;
      } else out += JSON.stringify(ch).slice(1, -1);
    }
    return out + '"';
  };
  const val = (v: unknown) => {
    if (typeof v === "string") return str(v);
    if (typeof v === "number" && Number.isInteger(v) && chance(r, 0.15)) {
      return pick(r, [`${v}.0`, `${v}e0`, `${v}00e-2`, `${v}.000E+0`, v === 0 ? "-0" : `${v}`]);
    }
    return JSON.stringify(v);
  };
  const parts: string[] = [];
  for (const [k, v] of entries) {
    if (chance(r, 0.04)) {
      // A duplicate key, hostile first: JSON.parse keeps the last.
      const decoy = k === "path"
        ? '"../../etc/passwd"'
        : k === "offset" || k === "from"
        ? "-1"
        : '"x"';
      parts.push(`${str(k)}:${decoy}`);
    }
    parts.push(`${sp()}${str(k)}${sp()}:${sp()}${val(v)}${sp()}`);
  }
  return text(`${chance(r, 0.02) ? "\ufeff" : ""}${sp()}{${parts.join(",")}}${sp()}`);
}

/** `b` with `n` bytes changed. */
export function flipped(r: Rng, b: Uint8Array, n: number): Uint8Array {
  const out = b.slice();
  if (!out.length) return out;
  for (let i = 0; i < n; i++) {
    const at = int(r, out.length);
    out[at] = chance(r, 0.5) ? out[at] ^ (1 << int(r, 8)) : int(r, 256);
  }
  return out;
}
