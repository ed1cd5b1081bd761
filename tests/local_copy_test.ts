/**
 * Copying from a local peer takes no more than the record's size (plus the
 * byte that tells it grew): a file a writer keeps growing cannot fill the disk.
 */

import { assertEquals } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { Beneath } from "../src/fs/beneath.ts";
import { LocalCopy } from "../src/sync/local_copy.ts";
import { hashBytes } from "../src/fs/hash.ts";

Deno.test("a local copy stops one byte past the recorded size, and the digest then differs", async () => {
  const dir = await tempDir();
  const recorded = new TextEncoder().encode("0123456789");
  Deno.writeFileSync(`${dir}/src`, new Uint8Array(1 << 20).fill(7)); // grew to 1 MiB since
  const digest = hashBytes(recorded);
  const t = Beneath.open(dir);
  const copy = new LocalCopy(dir, "peer", (p) => t.openRaw(p));
  const xfer = { done: { files: 0, bytes: 0 }, total: { files: 1, bytes: 10 } };
  await copy.fill([{ path: "src", digest, size: recorded.length }], xfer);
  try {
    const got = copy.source().take(t, "src", digest, "dest", 0o440);
    assertEquals(got.file.stat().size, recorded.length + 1, "the staged file, still open");
    got.file.close();
    assertEquals(Deno.statSync(`${dir}/dest`).size, recorded.length + 1);
    assertEquals(
      Deno.statSync(`${dir}/dest`).mode! & 0o777,
      0o640,
      "staged with the mode, writable",
    );
    assertEquals(got.digest === digest, false, "not the recorded content");
  } finally {
    t.close();
  }
});
