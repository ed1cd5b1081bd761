/**
 * SHA-256 of whole files, streamed in bounded memory. node:crypto computes
 * it once `loadHashing()` has run (commands that hash many files await it
 * first); until then Sha256 does, with the same result: importing
 * node:crypto up front would cost every command, `status` and `--help`
 * too, the start-up of the Node compatibility layer.
 *
 * @module
 */

import { Sha256 } from "./sha256.ts";

/** An incremental SHA-256: node:crypto's, or Sha256. */
export interface Hash {
  update(data: Uint8Array): Hash;
  digest(encoding: "hex"): string;
}

let nodeCrypto: typeof import("node:crypto") | undefined;

/** Loads node:crypto for every later hash of this process. */
export async function loadHashing(): Promise<void> {
  nodeCrypto ??= await import("node:crypto");
}

/**
 * Loads node:crypto if `bytes` of content are about to be hashed: below
 * 1 MiB, Sha256 hashes them in less time than loading node:crypto takes.
 */
export async function loadHashingFor(bytes: number): Promise<void> {
  if (bytes >= 1 << 20) await loadHashing();
}

/** A new SHA-256. */
export function newHash(): Hash {
  return nodeCrypto ? nodeCrypto.createHash("sha256") : new Sha256();
}

/** Shared read buffer: allocating 1 MiB per small file would dominate. */
const buf = new Uint8Array(1 << 20);

/** Hex SHA-256 of the file at `path`: in one read if `sizeHint` is small, else in 1 MiB pieces. */
export function hashFile(path: string, sizeHint = Infinity): string {
  if (sizeHint <= buf.length) return hashBytes(Deno.readFileSync(path));
  const f = Deno.openSync(path, { read: true });
  try {
    return hashOpenFile(f);
  } finally {
    f.close();
  }
}

/** Hex SHA-256 of the rest of an open file. */
export function hashOpenFile(f: Deno.FsFile): string {
  const h = newHash();
  feedOpenFile(f, h);
  return h.digest("hex");
}

/** Feeds the rest of an open file to the hash `h`; returns the bytes fed. */
export function feedOpenFile(f: Deno.FsFile, h: Hash): number {
  let fed = 0;
  for (;;) {
    const n = f.readSync(buf);
    if (n === null || n === 0) return fed;
    h.update(buf.subarray(0, n));
    fed += n;
  }
}

/** Hex SHA-256 of bytes in memory. */
export function hashBytes(b: Uint8Array): string {
  return newHash().update(b).digest("hex");
}
