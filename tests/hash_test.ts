/**
 * hashFile, which a scan uses on files it found by walking: whatever a racing
 * user swaps in between the walk and the read is not followed (at any level
 * of the path), not waited on, and not read without bound.
 */

import { assertEquals, assertThrows } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { hashBytes, hashFile } from "../src/fs/hash.ts";
import { cString, libc, O_CLOEXEC, O_DIRECTORY, O_RDONLY } from "../src/fs/libc.ts";

const bytes = new TextEncoder().encode("the recorded content");

/** Runs `fn` with a descriptor of directory `dir`. */
function withDir<T>(dir: string, fn: (fd: number) => T): T {
  const fd = libc().open(cString(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  try {
    return fn(fd);
  } finally {
    libc().close(fd);
  }
}

Deno.test("hashFile hashes a file that still holds the size it was statted with", async () => {
  const dir = await tempDir();
  Deno.mkdirSync(`${dir}/d`);
  Deno.writeFileSync(`${dir}/d/f`, bytes);
  withDir(dir, (fd) => {
    assertEquals(hashFile(fd, "d/f", "d/f", bytes.length), hashBytes(bytes));
    // Written to since: longer or shorter than statted, it is not hashed as that version.
    assertEquals(hashFile(fd, "d/f", "d/f", bytes.length - 1), null);
    assertEquals(hashFile(fd, "d/f", "d/f", bytes.length + 1), null);
  });
});

Deno.test("hashFile refuses a symlink at any level, a FIFO and a device, without blocking", async () => {
  const dir = await tempDir();
  const outside = await tempDir();
  Deno.writeFileSync(`${outside}/target`, bytes);
  Deno.symlinkSync(`${outside}/target`, `${dir}/link`);
  Deno.symlinkSync(outside, `${dir}/dirlink`);
  Deno.symlinkSync("/dev/zero", `${dir}/zero`);
  const mk = await new Deno.Command("mkfifo", { args: [`${dir}/fifo`] }).output();
  assertEquals(mk.code, 0);
  withDir(dir, (fd) => {
    for (const [rel, size] of [["link", 20], ["dirlink/target", 20], ["zero", 10], ["fifo", 0]]) {
      assertThrows(
        () => hashFile(fd, rel as string, rel as string, size as number),
        Deno.errors.NotFound,
      );
    }
    assertThrows(() => hashFile(fd, "missing", "missing", 1), Deno.errors.NotFound);
  });
});
