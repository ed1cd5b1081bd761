/**
 * Prefetching: the content a batch needs is copied from the peer into
 * `.replicator/fetch/` before the batch's synchronous apply, so that only the
 * transport waits on the network and the apply engine runs as it does for a
 * local peer.
 *
 * - The receiver hashes: bytes arrive in `<digest>.part`, and staging takes
 *   that file only if this run saw all of it hash to the digest; otherwise
 *   the peer changed it since its record (it stays wanted) or lied (nothing
 *   of it is used). A verified file is not renamed: it goes from there
 *   straight into staging, one rename per file.
 * - Resumable: a transfer cut off is resumed from what arrived (its bytes
 *   hashed again first), and started over once if the whole does not match.
 * - Several files travel at once (REPLICATOR_PARALLEL, default 32: one
 *   round trip per file would otherwise pace a tree of small files), each
 *   through a bounded window of frames; at most 4 of them larger than one
 *   frame, so what may be queued stays under 100 MiB (4 × 16 frames of
 *   1 MiB, and one frame for each of the others).
 * - Everything goes through Beneath: nothing is written outside the volume.
 *
 * @module
 */

import { Beneath } from "../fs/beneath.ts";
import type { Volume } from "../volume/volume.ts";
import { type Amount, type ContentSource, type Progress, stagedMode } from "../apply/mod.ts";
import { copyHashing } from "./copy.ts";
import { feedOpenFile, type Hash, hashOpenFile, newHash } from "../fs/hash.ts";
import { CHUNK_BYTES, gone, type Peer } from "./peer.ts";
import { META_DIR } from "../volume/layout.ts";
import type { RawFile } from "../fs/raw_file.ts";
import { FsError } from "../errors.ts";

/** Content to fetch: where the peer has it, and what it must hash to. */
export interface Want {
  path: string;
  digest: string;
  size: number;
}

/** Counters of one pull's transfers, for its result and the progress display. */
export interface Transfer {
  done: Amount;
  total: Amount;
  progress?: Progress;
}

const DIR = `${META_DIR}/fetch`;

/** Files fetched at once: REPLICATOR_PARALLEL, default 32 (at most 32). */
function parallel(): number {
  const n = Number(Deno.env.get("REPLICATOR_PARALLEL") ?? "32");
  return Number.isInteger(n) && n > 0 && n <= 32 ? n : 32;
}

/** Files of more than one frame fetched at once (each may queue 16 frames of 1 MiB). */
const LARGE_AT_ONCE = 4;

/** At most `n` of the calls made through it run at once. */
class Gate {
  #free: number;
  #waiting: (() => void)[] = [];

  constructor(n: number) {
    this.#free = n;
  }

  async run<T>(call: () => Promise<T>): Promise<T> {
    while (this.#free === 0) await new Promise<void>((go) => this.#waiting.push(go));
    this.#free--;
    try {
      return await call();
    } finally {
      this.#free++;
      this.#waiting.shift()?.();
    }
  }
}

/** Where a pull's content comes from: fetched ahead (a session), or copied as staged (local). */
export interface ContentCache {
  /** Gets what `wants` names ready for staging; counts into `xfer`. */
  fill(wants: Want[], xfer: Transfer): Promise<void>;
  /** The source staging takes content from. */
  source(): ContentSource;
  /** Removes what is left once the pull has finished. */
  clear(): void;
}

/** The fetch directory of one volume during one pull. */
export class FetchCache implements ContentCache {
  /** Digest -> its file here, hashed by this run (fetched, or a leftover checked). */
  #fresh = new Map<string, string>();
  /** Uses left per digest in the batch being applied: the last one takes the file. */
  #uses = new Map<string, number>();

  constructor(readonly vol: Volume, readonly peer: Peer) {}

  /**
   * Fetches what `wants` names and is not here yet; counts into `xfer` (a
   * content several wants share travels once, and counts for each).
   */
  async fill(wants: Want[], xfer: Transfer): Promise<void> {
    this.#uses.clear();
    for (const w of wants) this.#uses.set(w.digest, (this.#uses.get(w.digest) ?? 0) + 1);
    const todo: Want[] = [];
    // One descriptor of the root serves every transfer (Beneath's calls are synchronous).
    const t = Beneath.open(this.vol.root);
    try {
      if (t.stat(DIR)?.type !== "d") t.mkdir(DIR, 0o700);
      // What an earlier run left here, listed once rather than looked up per file.
      const present = new Set([...Deno.readDirSync(t.abs(DIR))].map((e) => e.name));
      const seen = new Set<string>();
      for (const w of wants) {
        if (seen.has(w.digest)) continue;
        seen.add(w.digest);
        const left = present.has(w.digest) && this.#leftOver(t, w);
        if (this.#fresh.has(w.digest) || left) this.#count(w, xfer, 0);
        else todo.push(w);
      }
      const large = new Gate(LARGE_AT_ONCE);
      const worker = async () => {
        for (let w; (w = todo.shift());) {
          const fetch = this.#fetch.bind(this, t, w, xfer, present.has(`${w.digest}.part`));
          await (w.size > CHUNK_BYTES ? large.run(fetch) : fetch());
        }
      };
      await Promise.all(Array.from({ length: Math.min(parallel(), todo.length) }, worker));
    } finally {
      t.close();
    }
  }

  /**
   * True if an earlier run left `w`'s content complete here: hashed again, as
   * a crash may have left it torn (a wrong one is dropped and fetched again).
   */
  #leftOver(t: Beneath, w: Want): boolean {
    const rel = `${DIR}/${w.digest}`;
    if (t.stat(rel)?.type !== "f") return false;
    const f = t.openFile(rel);
    let ok: boolean;
    try {
      ok = hashOpenFile(f) === w.digest;
    } finally {
      f.close();
    }
    if (ok) this.#fresh.set(w.digest, rel);
    else t.tryUnlink(rel);
    return ok;
  }

  /** Counts `w` done, for each of its uses; `streamed` of its bytes were counted as they came. */
  #count(w: Want, xfer: Transfer, streamed: number): void {
    const uses = this.#uses.get(w.digest) ?? 1;
    xfer.done.files += uses;
    xfer.done.bytes += w.size * uses - streamed;
    xfer.progress?.(xfer.done, xfer.total);
  }

  /** The source staging takes fetched content from. */
  source(): ContentSource {
    return {
      hostName: this.peer.who.hostName,
      take: (t, _path, digest, dest, perm) => {
        const rel = this.#fresh.get(digest);
        if (!rel) throw new Deno.errors.NotFound(`${digest} was not fetched`);
        const left = (this.#uses.get(digest) ?? 1) - 1;
        this.#uses.set(digest, left);
        const file = fetched(t, rel);
        if (left <= 0) {
          try {
            t.rename(rel, dest, true); // the descriptor goes with it
          } catch (e) {
            file.close();
            throw e;
          }
          this.#fresh.delete(digest); // gone from here: a later batch fetches it again
          // Hashed when it arrived (or, left by an earlier run, by fill).
          return { digest, file };
        }
        // Shared with a later record of the batch: copy it (hashing the copy).
        return copyHashing(file, () => t.createRaw(dest, stagedMode(perm)));
      },
    };
  }

  /** Removes what is left, and the directory: called once a pull has finished. */
  clear(): void {
    clearFetchDir(this.vol.root);
  }

  /** Fetches one file into the cache (or finds the peer no longer has it). */
  async #fetch(t: Beneath, w: Want, xfer: Transfer, partLeft: boolean): Promise<void> {
    const part = `${DIR}/${w.digest}.part`;
    for (let attempt = 0; attempt < 2; attempt++) {
      const h = newHash();
      const from = partLeft && attempt === 0 ? rehash(t, part, w.size, h) : 0;
      // A leftover that is whole needs no round trip: its hash says if it is right.
      const got = from === w.size && from > 0
        ? { size: from }
        : await this.#receive(t, part, w, from, h, xfer);
      if (got === "gone") return t.tryUnlink(part);
      // The size too: the hash covers what this transfer read and appended, so
      // any other writer's bytes in the file would show as a longer file.
      if (h.digest("hex") === w.digest && got.size === w.size) {
        this.#fresh.set(w.digest, part);
        this.#count(w, xfer, w.size - from);
        return;
      }
      t.tryUnlink(part);
      if (from === 0) return; // changed on the peer since its record: stays wanted
    }
  }

  /**
   * Appends the peer's bytes from `from` to `part`; the part's size then, or
   * "gone" if the peer has no such file.
   */
  async #receive(
    t: Beneath,
    part: string,
    w: Want,
    from: number,
    h: Hash,
    xfer: Transfer,
  ): Promise<{ size: number } | "gone"> {
    const out = t.openAppend(part);
    let have = from;
    try {
      for await (const chunk of this.peer.read(w.path, from)) {
        // More than the record's size cannot hash to its digest: stop taking it.
        if (have + chunk.length > w.size) return "gone";
        h.update(chunk);
        out.write(chunk);
        have += chunk.length;
        xfer.done.bytes += chunk.length;
        if (have < w.size) xfer.progress?.(xfer.done, xfer.total);
      }
      return { size: out.stat().size };
    } catch (e) {
      if (gone(e)) return "gone";
      throw e;
    } finally {
      out.close();
    }
  }
}

/** The fetched file `rel`, open; Deno.errors.NotFound if there is no regular file there. */
function fetched(t: Beneath, rel: string): RawFile {
  try {
    return t.openRaw(rel);
  } catch (e) {
    if (e instanceof FsError) throw new Deno.errors.NotFound(`${rel} was not fetched`);
    throw e;
  }
}

/** Removes the fetch directory of the volume at `root`, with whatever an earlier pull left in it. */
export function clearFetchDir(root: string): void {
  const t = Beneath.open(root);
  try {
    if (t.stat(DIR)?.type !== "d") return;
    for (const e of Deno.readDirSync(t.abs(DIR))) t.unlink(`${DIR}/${e.name}`);
    t.rmdir(DIR);
  } finally {
    t.close();
  }
}

/** Hashes what a part file holds; returns its size (0 if none, or if it is too long). */
function rehash(t: Beneath, part: string, size: number, h: Hash): number {
  const st = t.stat(part);
  if (!st) return 0;
  if (st.type !== "f" || st.size > size) {
    t.tryUnlink(part);
    return 0;
  }
  const f = t.openFile(part);
  try {
    return feedOpenFile(f, h);
  } finally {
    f.close();
  }
}
