/**
 * Copying from a local peer takes no more than the record's size: a file a
 * writer keeps growing cannot fill the disk, and what is staged is hashed as
 * it landed. Files of 1 MiB or more are cloned where the filesystem can
 * (btrfs here, on a loop device: needs root, mkfs.btrfs and a kernel with
 * btrfs; without them that test prints why it is skipped and passes).
 */

import { createHash } from "node:crypto";
import { assert, assertEquals } from "./assert.ts";
import { sh, tempDir, unmount } from "./helpers.ts";
import { Beneath } from "../src/fs/beneath.ts";
import { LocalCopy } from "../src/sync/local_copy.ts";
import { copyHashing } from "../src/sync/copy.ts";
import type { Taken } from "../src/apply/mod.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Stages `src` below `dir` as `dest` the way a pull from a local peer does, recorded as `recorded`. */
async function take(dir: string, recorded: Uint8Array, dest = "dest"): Promise<Taken> {
  const t = Beneath.open(dir);
  const copy = new LocalCopy(dir, "peer", (p) => t.openRaw(p));
  const digest = sha(recorded);
  const xfer = { done: { files: 0, bytes: 0 }, total: { files: 1, bytes: recorded.length } };
  await copy.fill([{ path: "src", digest, size: recorded.length }], xfer);
  try {
    return copy.source().take(t, "src", digest, dest, 0o440);
  } finally {
    t.close();
  }
}

/** `n` bytes that differ from one MiB to the next. */
function content(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 4096) b[i] = (i >> 12) + seed;
  return b;
}

/** Checks what a take staged in `dir`: `expected`'s bytes, writable, and the digest of what landed. */
function assertStaged(dir: string, got: Taken, expected: Uint8Array, why: string): void {
  assertEquals(got.file.stat().size, expected.length, `${why}: the staged file, still open`);
  got.file.close();
  const staged = Deno.readFileSync(`${dir}/dest`);
  assertEquals(sha(staged), sha(expected), `${why}: staged bytes`);
  assertEquals(got.digest, sha(staged), `${why}: the digest is of what was staged`);
  assertEquals(Deno.statSync(`${dir}/dest`).mode! & 0o777, 0o640, `${why}: staged writable`);
}

for (const size of [10, 3 << 20]) {
  Deno.test(`a local copy of ${size} bytes stops at the recorded size`, async () => {
    const recorded = content(size, 1);
    // Grew into other bytes since it was recorded: the copy takes no more, and does not match.
    const dir = await tempDir();
    Deno.writeFileSync(`${dir}/src`, content(size + (1 << 20), 2));
    const other = await take(dir, recorded);
    assertStaged(dir, other, content(size + (1 << 20), 2).subarray(0, size), "grew");
    assertEquals(other.digest === sha(recorded), false, "not the recorded content");

    // Appended to since: what is staged is exactly the recorded content.
    const dir2 = await tempDir();
    const appended = new Uint8Array(size + 5);
    appended.set(recorded);
    Deno.writeFileSync(`${dir2}/src`, appended);
    assertStaged(dir2, await take(dir2, recorded), recorded, "appended");

    // Shorter than recorded: all of it, and it does not match.
    const dir3 = await tempDir();
    Deno.writeFileSync(`${dir3}/src`, recorded.subarray(0, size - 1));
    const short = await take(dir3, recorded);
    assertStaged(dir3, short, recorded.subarray(0, size - 1), "shorter");
    assertEquals(short.digest === sha(recorded), false);
  });
}

/** Bytes in use on the filesystem at `dir`, after a sync (btrfs allocates when it writes back). */
async function used(dir: string): Promise<number> {
  await sh("sync", []);
  const r = await sh("df", ["-B1", "--output=used", dir]);
  return Number(r.stdout.trim().split("\n")[1]);
}

/** A btrfs on a loop device mounted at `dir`: why not, or null. */
async function mountBtrfs(img: string, dir: string): Promise<string | null> {
  if (Deno.uid() !== 0) return "not root: cannot mount a loop device";
  Deno.writeFileSync(img, new Uint8Array());
  Deno.truncateSync(img, 512 << 20);
  const mkfs = await sh("mkfs.btrfs", ["-q", "-f", img]).catch((e) => ({
    code: 1,
    stderr: `${e}`,
  }));
  if (mkfs.code !== 0) return `mkfs.btrfs failed: ${mkfs.stderr.trim()}`;
  Deno.mkdirSync(dir);
  const r = await sh("mount", ["-o", "loop", img, dir]);
  return r.code === 0 ? null : `mount -o loop of a btrfs failed: ${r.stderr.trim()}`;
}

Deno.test("a large local copy on btrfs is a clone: shared extents, hashed as it landed", async () => {
  const base = await tempDir();
  const dir = `${base}/mnt`;
  const why = await mountBtrfs(`${base}/btrfs.img`, dir);
  if (why) {
    console.log(`clone test: SKIPPED (${why})`);
    return;
  }
  try {
    const recorded = content(64 << 20, 3);
    Deno.writeFileSync(`${dir}/src`, recorded);
    const before = await used(dir);
    assertStaged(dir, await take(dir, recorded), recorded, "cloned");
    const grown = await used(dir) - before;
    assert(grown < 8 << 20, `a 64 MiB clone took ${grown} bytes more: not shared`);

    // Grew since it was recorded: copied (a clone would take all of it), the recorded size only.
    Deno.removeSync(`${dir}/dest`);
    const appended = new Uint8Array(recorded.length + 100);
    appended.set(recorded);
    Deno.writeFileSync(`${dir}/src`, appended);
    const before2 = await used(dir);
    assertStaged(dir, await take(dir, recorded), recorded, "grew: copied");
    assert(await used(dir) - before2 >= recorded.length, "grew: a copy of its own");

    // Grew between the open and the clone: the clone is cut back to the recorded size.
    Deno.removeSync(`${dir}/dest`);
    Deno.writeFileSync(`${dir}/src`, recorded);
    const t = Beneath.open(dir);
    try {
      const input = t.openRaw("src");
      assertEquals(input.opened().size, recorded.length);
      Deno.writeFileSync(`${dir}/src`, new Uint8Array(100), { append: true });
      const got = copyHashing(input, () => t.createRaw("dest", 0o640), recorded.length);
      assertStaged(dir, got, recorded, "cloned, then cut");
    } finally {
      t.close();
    }

    // A file btrfs will not clone (no copy-on-write for it: chattr +C) is copied instead.
    Deno.removeSync(`${dir}/dest`);
    Deno.removeSync(`${dir}/src`);
    Deno.writeFileSync(`${dir}/src`, new Uint8Array());
    const chattr = await sh("chattr", ["+C", `${dir}/src`]);
    assertEquals(chattr.code, 0, `chattr +C: ${chattr.stderr}`);
    Deno.writeFileSync(`${dir}/src`, recorded);
    const before3 = await used(dir);
    assertStaged(dir, await take(dir, recorded), recorded, "not cloned: copied");
    assert(await used(dir) - before3 >= recorded.length, "not cloned: a copy of its own");
  } finally {
    await unmount(dir);
  }
});
