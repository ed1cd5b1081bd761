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
import { Errno, errno, errnoName, O_NOFOLLOW, O_NONBLOCK, O_RDONLY } from "./libc.ts";
import { notConfined, openBeneath } from "./beneath.ts";
import { RawFile } from "./raw_file.ts";
import { FsError } from "../errors.ts";

const { ENOENT } = Errno;

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
 * 4 MiB, Sha256 hashes them in less time than loading node:crypto takes
 * (35–65 ms; Sha256 ~95 MB/s, node:crypto ~760 MB/s).
 */
export async function loadHashingFor(bytes: number): Promise<void> {
  if (bytes >= 4 << 20) await loadHashing();
}

/** A new SHA-256. */
export function newHash(): Hash {
  return nodeCrypto ? nodeCrypto.createHash("sha256") : new Sha256();
}

/** Shared read buffer (hashing and copying): allocating 1 MiB per small file would dominate. */
const buf = new Uint8Array(1 << 20);

/**
 * Hex SHA-256 of the regular file `rel` below the directory open as
 * `rootFd` (`label` names it in errors), statted as holding `size` bytes:
 * null if it holds another number of bytes now (it changed since). It is
 * opened as Beneath opens (no symlink anywhere on the way, nothing outside),
 * without waiting on a FIFO swapped in, and at most `size` + 1 bytes are
 * read. Throws Deno.errors.NotFound if no regular file is there any more.
 */
export function hashFile(rootFd: number, rel: string, label: string, size: number): string | null {
  const fd = openBeneath(rootFd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    const e = errno();
    if (e === ENOENT || notConfined(e)) {
      throw new Deno.errors.NotFound(`${label}: ${errnoName(e)}`);
    }
    throw new FsError("read", label, e, errnoName(e));
  }
  const f = new RawFile(fd, label);
  try {
    if (f.opened().type !== "f") throw new Deno.errors.NotFound(`${label}: not a regular file`);
    const h = newHash();
    return feedRawFile(f, h, size + 1) === size ? h.digest("hex") : null;
  } finally {
    f.close();
  }
}

/**
 * Feeds `f` from where it stands to the hash `h`, at most `limit` bytes, and
 * each piece to `each` as well; returns the bytes fed.
 */
export function feedRawFile(
  f: RawFile,
  h: Hash,
  limit: number,
  each?: (piece: Uint8Array) => void,
): number {
  let fed = 0;
  for (
    let n;
    fed < limit && (n = f.read(buf.subarray(0, Math.min(buf.length, limit - fed)))) > 0;
  ) {
    const piece = buf.subarray(0, n);
    h.update(piece);
    each?.(piece);
    fed += n;
  }
  return fed;
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
