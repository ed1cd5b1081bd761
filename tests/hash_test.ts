/**
 * hashFile, which a scan uses on files it found by walking: whatever a racing
 * user swaps in between the walk and the read is not followed, not waited
 * on, and not read without bound.
 */

import { assertEquals, assertThrows } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { hashBytes, hashFile } from "../src/fs/hash.ts";

const bytes = new TextEncoder().encode("the recorded content");

Deno.test("hashFile hashes a file that still holds the size it was statted with", async () => {
  const dir = await tempDir();
  Deno.writeFileSync(`${dir}/f`, bytes);
  assertEquals(hashFile(`${dir}/f`, bytes.length), hashBytes(bytes));
  // Written to since: longer or shorter than statted, it is not hashed as that version.
  assertEquals(hashFile(`${dir}/f`, bytes.length - 1), null);
  assertEquals(hashFile(`${dir}/f`, bytes.length + 1), null);
});

Deno.test("hashFile refuses a symlink, a FIFO and a device swapped in, without blocking", async () => {
  const dir = await tempDir();
  Deno.writeFileSync(`${dir}/target`, bytes);
  Deno.symlinkSync(`${dir}/target`, `${dir}/link`);
  assertThrows(() => hashFile(`${dir}/link`, bytes.length), Deno.errors.NotFound);
  const mk = await new Deno.Command("mkfifo", { args: [`${dir}/fifo`] }).output();
  assertEquals(mk.code, 0);
  assertThrows(() => hashFile(`${dir}/fifo`, 0), Deno.errors.NotFound); // opened O_NONBLOCK
  assertThrows(() => hashFile("/dev/zero", 10), Deno.errors.NotFound);
  assertThrows(() => hashFile(`${dir}/missing`, 1), Deno.errors.NotFound);
});
