/**
 * Finishing a staged file through its descriptor: the mtime always, owner
 * and mode only where they differ from what the file was created with, a
 * chown always before the chmod (a chown clears set-id bits).
 */

import { assertEquals } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { Beneath } from "../src/fs/beneath.ts";
import { finishStaged, stagedMode } from "../src/apply/stage.ts";

const MTIME = 1_700_000_000_123_456_789n;

async function staged(perm: number): Promise<{ t: Beneath; dir: string }> {
  const dir = await tempDir();
  const t = Beneath.open(dir);
  const f = t.createRaw("f", stagedMode(perm));
  f.write(new TextEncoder().encode("content"));
  f.close();
  return { t, dir };
}

Deno.test("a staged file gets the record's mtime and mode, also bits the umask took", async () => {
  const old = Deno.umask(0o077);
  let made;
  try {
    made = await staged(0o755);
  } finally {
    Deno.umask(old);
  }
  const { t, dir } = made;
  try {
    assertEquals(Deno.statSync(`${dir}/f`).mode! & 0o7777, 0o700, "created as the umask let it");
    const st = finishStaged(t.openRaw("f"), null, 0o755, MTIME);
    assertEquals([st.perm, st.mtimeSec, st.mtimeNsec], [0o755, 1_700_000_000, 123_456_789]);
    assertEquals(Deno.statSync(`${dir}/f`).mode! & 0o7777, 0o755);
  } finally {
    t.close();
  }
});

Deno.test({
  name: "as root: a staged file gets the record's owner, and its setuid bit after the chown",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const { t, dir } = await staged(0o4755);
    try {
      const st = finishStaged(t.openRaw("f"), { uid: 65534, gid: 65534 }, 0o4755, MTIME);
      assertEquals([st.uid, st.gid, st.perm], [65534, 65534, 0o4755]);
      const disk = Deno.statSync(`${dir}/f`);
      assertEquals([disk.uid, disk.gid, disk.mode! & 0o7777], [65534, 65534, 0o4755]);
      // Owner and mode already right: nothing but the time changes.
      const same = finishStaged(t.openRaw("f"), { uid: 65534, gid: -1 }, 0o4755, MTIME + 1n);
      assertEquals([same.uid, same.gid, same.perm, same.mtimeNsec], [
        65534,
        65534,
        0o4755,
        123_456_790,
      ]);
    } finally {
      t.close();
    }
  },
});
