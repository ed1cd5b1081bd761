/**
 * Content from a replica open in this same process: nothing is fetched
 * ahead; staging copies each file straight from the peer's tree (confined
 * beneath its root) into its staged name, hashing as it copies. Fetching
 * ahead only pays where a transfer has latency to hide.
 *
 * @module
 */

import { type ContentSource, stagedMode } from "../apply/mod.ts";
import { clearFetchDir, type ContentCache, type Transfer, type Want } from "./prefetch.ts";
import { copyHashing } from "./copy.ts";
import type { RawFile } from "../fs/raw_file.ts";

/** Copies content as it is staged, from a peer's `openLocal`. */
export class LocalCopy implements ContentCache {
  #xfer: Transfer | undefined;
  /** The size each content of the batch being staged is recorded with: a copy takes no more. */
  #sizes = new Map<string, number>();

  constructor(
    readonly root: string,
    readonly hostName: string,
    readonly openLocal: (path: string) => RawFile,
  ) {}

  fill(wants: Want[], xfer: Transfer): Promise<void> {
    this.#xfer = xfer;
    this.#sizes.clear(); // kept across batches, it grew by an entry per file of the pull
    for (const w of wants) this.#sizes.set(w.digest, w.size);
    return Promise.resolve();
  }

  source(): ContentSource {
    return {
      hostName: this.hostName,
      take: (t, path, digest, dest, perm) => {
        const size = this.#sizes.get(digest);
        const create = () => t.createRaw(dest, stagedMode(perm));
        const got = copyHashing(this.openLocal(path), create, size);
        const xfer = this.#xfer;
        if (xfer) { // counted as the record says, as a fetch counts it
          xfer.done.files++;
          xfer.done.bytes += size ?? 0;
          xfer.progress?.(xfer.done, xfer.total);
        }
        return got;
      },
    };
  }

  /** A fetch directory an earlier pull over the network left is of no use now. */
  clear(): void {
    clearFetchDir(this.root);
  }
}
