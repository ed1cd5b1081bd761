/**
 * dirNames (getdents64): every name, across several 64 KiB reads of a large
 * directory, decoded as UTF-8, with "." and ".." left out.
 */

import { assertEquals } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { dirNames } from "../src/fs/dir_names.ts";
import { cString, libc, O_CLOEXEC, O_DIRECTORY, O_RDONLY } from "../src/fs/libc.ts";

Deno.test("dirNames lists a directory larger than one read, names in UTF-8 included", async () => {
  const dir = await tempDir();
  const want: string[] = ["é-accent", "ｶタカナ", "😀-emoji", "plain"];
  for (let i = 0; i < 3000; i++) want.push(`a-fairly-long-file-name-number-${i}`);
  for (const n of want) Deno.writeTextFileSync(`${dir}/${n}`, "");
  Deno.mkdirSync(`${dir}/sub`);
  want.push("sub");
  const fd = libc().open(cString(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  try {
    const got = dirNames(fd, dir);
    assertEquals(got.notUtf8, []);
    assertEquals(got.names.length, want.length, "no name lost or repeated across reads");
    assertEquals(got.names.sort(), want.sort());
  } finally {
    libc().close(fd);
  }
});
