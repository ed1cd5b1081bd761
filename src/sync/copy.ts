/**
 * Copying a file while hashing it, in bounded memory, with its permissions.
 *
 * @module
 */

import { newHash } from "../fs/hash.ts";

/** One buffer for every copy: allocating per file would dominate small files. */
const buf = new Uint8Array(1 << 20);

/**
 * Copies the open file `input` (from its start; closed here) to a new file
 * `dest` with permission bits `perm`, returning the hex SHA-256 of what was
 * copied. A file that fits the buffer is written with one call; larger ones
 * stream through it.
 */
export function copyHashing(input: Deno.FsFile, dest: string, perm: number): string {
  const h = newHash();
  try {
    const first = readSome(input, buf);
    const rest = first === buf.length ? readSome(input, buf.subarray(0, 1)) : 0;
    if (rest === 0) {
      const data = buf.subarray(0, first);
      Deno.writeFileSync(dest, data, { createNew: true, mode: perm });
      return h.update(data).digest("hex");
    }
    // Larger than the buffer: start over and stream.
    input.seekSync(0, Deno.SeekMode.Start);
    const out = Deno.openSync(dest, { write: true, createNew: true });
    try {
      for (let n; (n = readSome(input, buf)) > 0;) {
        const chunk = buf.subarray(0, n);
        h.update(chunk);
        for (let w = 0; w < n;) w += out.writeSync(chunk.subarray(w));
      }
    } finally {
      out.close();
    }
    Deno.chmodSync(dest, perm);
    return h.digest("hex");
  } finally {
    input.close();
  }
}

/**
 * Fills `into` as far as the file allows; returns the bytes read (0 at the
 * end). A short read of a regular file means its end, which saves small files
 * a second read; should a filesystem read short anyway, the copy's hash will
 * not match its record and it is not installed.
 */
function readSome(f: Deno.FsFile, into: Uint8Array): number {
  const n = f.readSync(into);
  return n ?? 0;
}
