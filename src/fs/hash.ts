/**
 * SHA-256 of whole files, streamed in bounded memory.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";

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
  const h = createHash("sha256");
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
  return createHash("sha256").update(b).digest("hex");
}
