/**
 * Volume-relative paths: the only kind a record may carry (rule 6: nothing is
 * written outside the volume, whatever a peer sends).
 *
 * @module
 */

import { HostilePeerError } from "../errors.ts";

/** Name of the metadata directory at the volume root: never content, never replicated. */
export const META_DIR = ".replicator";

/** A component "", "." or "..": at the start or after a "/", and then a "/" or the end. */
const NOT_NORMALISED = /(?:^|\/)\.{0,2}(?:\/|$)/;

/**
 * Throws HostilePeerError unless `p` is relative, normalised ("a/b", no "",
 * "." or ".." component, no NUL, no trailing "/") and outside `.replicator/`.
 * (Checked for every record and every file fetched: it allocates nothing
 * unless it refuses.)
 */
export function checkRelativePath(p: string): void {
  const why = p.length === 0
    ? "empty"
    : p.includes("\0")
    ? "contains NUL"
    : p.charCodeAt(0) === 0x2f
    ? "absolute"
    : NOT_NORMALISED.test(p)
    ? "not normalised"
    : isWithin(p, META_DIR)
    ? "inside the metadata directory"
    : "";
  if (why) throw new HostilePeerError(`refusing unsafe path ${JSON.stringify(p)}: ${why}`);
}

/** Parent of a relative path ("" for a top-level name). */
export function parentOf(p: string): string {
  const i = p.lastIndexOf("/");
  return i < 0 ? "" : p.slice(0, i);
}

/** True if `p` is `dir` or inside it. */
export function isWithin(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir + "/");
}

/**
 * `p` as an absolute path, "." and ".." resolved lexically (as node:path's
 * resolve does, which costs start-up time to load).
 */
export function absolutePath(p: string): string {
  const parts: string[] = [];
  for (const part of (p.startsWith("/") ? p : `${Deno.cwd()}/${p}`).split("/")) {
    if (part === "..") parts.pop();
    else if (part !== "" && part !== ".") parts.push(part);
  }
  return "/" + parts.join("/");
}
