/**
 * Volume-relative paths: the only kind a record may carry (rule 6: nothing is
 * written outside the volume, whatever a peer sends).
 *
 * @module
 */

import { HostilePeerError } from "../errors.ts";

/** Name of the metadata directory at the volume root: never content, never replicated. */
export const META_DIR = ".replicator";

/**
 * Throws HostilePeerError unless `p` is relative, normalised ("a/b", no "",
 * "." or ".." component, no NUL, no trailing "/") and outside `.replicator/`.
 */
export function checkRelativePath(p: string): void {
  const bad = (why: string) =>
    new HostilePeerError(`refusing unsafe path ${JSON.stringify(p)}: ${why}`);
  if (p.length === 0) throw bad("empty");
  if (p.includes("\0")) throw bad("contains NUL");
  if (p.startsWith("/")) throw bad("absolute");
  for (const part of p.split("/")) {
    if (part === "" || part === "." || part === "..") throw bad("not normalised");
  }
  if (p === META_DIR || p.startsWith(META_DIR + "/")) throw bad("inside the metadata directory");
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
