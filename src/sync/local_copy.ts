/**
 * Content from a replica open in this same process: nothing is fetched
 * ahead; staging copies each file straight from the peer's tree (confined
 * beneath its root) into its staged name, hashing as it copies. Fetching
 * ahead only pays where a transfer has latency to hide.
 *
 * @module
 */

import type { ContentSource } from "../apply/mod.ts";
import { clearFetchDir, type ContentCache, type Transfer, type Want } from "./prefetch.ts";
import { copyHashing } from "./copy.ts";

/** Copies content as it is staged, from a peer's `openLocal`. */
export class LocalCopy implements ContentCache {
  #xfer: Transfer | undefined;

  constructor(
    readonly root: string,
    readonly hostName: string,
    readonly openLocal: (path: string) => Deno.FsFile,
  ) {}

  fill(_wants: Want[], xfer: Transfer): Promise<void> {
    this.#xfer = xfer;
    return Promise.resolve();
  }

  source(): ContentSource {
    return {
      hostName: this.hostName,
      take: (t, path, _digest, dest, perm) => {
        const input = this.openLocal(path);
        const size = input.statSync().size;
        const digest = copyHashing(input, t.createFile(dest, perm));
        const xfer = this.#xfer;
        if (xfer) {
          xfer.done.files++;
          xfer.done.bytes += size;
          xfer.progress?.(xfer.done, xfer.total);
        }
        return digest;
      },
    };
  }

  /** A fetch directory an earlier pull over the network left is of no use now. */
  clear(): void {
    clearFetchDir(this.root);
  }
}
