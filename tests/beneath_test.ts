/**
 * Confinement by construction: every Beneath operation refuses a path with a
 * symlink or a non-directory in any component, and never follows a final
 * symlink, so nothing outside the tree is created, changed or read.
 */

import { assert, assertEquals, assertThrows } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { Beneath } from "../src/fs/beneath.ts";
import { FsError, NotConfinedError } from "../src/errors.ts";

async function setup(): Promise<{ t: Beneath; vol: string; outside: string }> {
  const dir = await tempDir();
  const vol = `${dir}/vol`;
  const outside = `${dir}/outside`;
  Deno.mkdirSync(`${vol}/real`, { recursive: true });
  Deno.mkdirSync(outside);
  Deno.writeTextFileSync(`${outside}/secret`, "outside");
  Deno.writeTextFileSync(`${vol}/real/f`, "inside");
  Deno.writeTextFileSync(`${vol}/plain`, "a file");
  Deno.symlinkSync(outside, `${vol}/link`);
  Deno.symlinkSync(`${outside}/secret`, `${vol}/filelink`);
  return { t: Beneath.open(vol), vol, outside };
}

function outsideState(outside: string): string {
  const names = [...Deno.readDirSync(outside)].map((e) => e.name).sort();
  const st = Deno.statSync(`${outside}/secret`);
  return JSON.stringify([names, Deno.readTextFileSync(`${outside}/secret`), st.mode, st.mtime]);
}

Deno.test("no operation passes through a symlinked or non-directory component", async () => {
  const { t, outside } = await setup();
  const before = outsideState(outside);
  try {
    const attempts: [string, () => unknown][] = [
      ["makeParents", () => t.makeParents("link/new/file")],
      ["mkdir", () => t.mkdir("link/d", 0o755)],
      ["rename into", () => t.rename("real/f", "link/f")],
      ["rename out of", () => t.rename("link/secret", "real/stolen")],
      ["unlink", () => t.unlink("link/secret")],
      ["symlink", () => t.symlink("x", "link/s")],
      ["link", () => t.link("link/secret", "real/hard")],
      ["chmod", () => t.chmod("link/secret", 0o777)],
      ["setMtime", () => t.setMtime("link/secret", 0n)],
      ["openFile", () => t.openFile("link/secret")],
      ["under a file", () => t.mkdir("plain/d", 0o755)],
    ];
    for (const [name, attempt] of attempts) {
      assertThrows(attempt, FsError, undefined, name);
    }
    assertThrows(() => t.makeParents("link/new/file"), NotConfinedError);
    assertEquals(t.stat("link/secret"), null, "stat does not see through a symlink");
    assertEquals(t.blockedParent("link/x/y"), "link");
    assertEquals(t.blockedParent("plain/x"), "plain");
    assertEquals(t.blockedParent("real/f2"), null);
  } finally {
    t.close();
  }
  assertEquals(outsideState(outside), before, "nothing outside changed");
});

Deno.test("final symlinks are never followed", async () => {
  const { t, outside } = await setup();
  const before = outsideState(outside);
  try {
    assertThrows(() => t.openFile("filelink"), FsError, "ELOOP", "open");
    assertThrows(() => t.chmod("filelink", 0o777), FsError);
    t.setMtime("filelink", 1_000_000_000n); // the link's own time
    assertEquals(t.stat("filelink")!.mtimeSec, 1);
    assertEquals(t.stat("filelink")!.type, "l");
    assertEquals(t.readlink("filelink"), `${outside}/secret`);
    t.unlink("filelink"); // removes the link, not its target
  } finally {
    t.close();
  }
  assertEquals(outsideState(outside), before);
});

Deno.test("inside the tree every operation works, and errors carry their errno", async () => {
  const { t, vol } = await setup();
  try {
    t.makeParents("a/b/c/file");
    assertEquals(t.stat("a/b/c")!.type, "d");
    // What it made is listed, for the caller to make durable; what was there is not.
    t.makeParents("a/b/d/file");
    assertEquals([...t.takeMade()].sort(), ["", "a", "a/b", "a/b/c", "a/b/d"]);
    assertEquals(t.takeMade().size, 0, "taken once");
    t.rename("real/f", "a/b/c/file");
    t.link("a/b/c/file", "a/hard");
    assertEquals(t.stat("a/hard")!.ino, t.stat("a/b/c/file")!.ino);
    t.chmod("a/hard", 0o600);
    assertEquals(t.stat("a/b/c/file")!.perm, 0o600);
    t.setMtime("a/hard", 1_234_567_890_123_456_789n);
    assertEquals([t.stat("a/hard")!.mtimeSec, t.stat("a/hard")!.mtimeNsec], [
      1234567890,
      123456789,
    ]);
    const f = t.openFile("a/hard");
    const buf = new Uint8Array(16);
    assertEquals(new TextDecoder().decode(buf.subarray(0, f.readSync(buf)!)), "inside");
    f.close();
    const busy = assertThrows(() => t.rmdir("a"), FsError) as FsError;
    assertEquals(busy.code, "ENOTEMPTY");
    const taken = assertThrows(() => t.rename("a/hard", "a/b/c/file", true), FsError) as FsError;
    assertEquals(taken.code, "EEXIST");
    assert(Deno.lstatSync(`${vol}/a/hard`).isFile, "a failed no-replace rename changes nothing");
  } finally {
    t.close();
  }
});

/** Descriptors this process has open on `dir` or below it (the runtime's own come and go). */
function openFds(dir: string): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith(dir)) n++;
    } catch { /* closed meanwhile */ }
  }
  return n;
}

Deno.test("within shares each directory's resolution until a name changes, and closes what it held", async () => {
  const { t, vol } = await setup();
  try {
    const before = openFds(vol);
    t.within(() => {
      assertEquals(t.stat("real/f")?.type, "f");
      assertEquals(t.stat("real/g"), null);
      assertEquals(
        openFds(vol),
        before + 1,
        "the directory stays open, once, for the rest of the call",
      );
      // A failure is held too, until a name changes: a directory made here is then seen.
      assertEquals(t.stat("new/f"), null);
      t.makeParents("new/f");
      assertEquals(t.stat("new")?.type, "d");
      t.within(() => assertEquals(t.stat("new/f"), null, "nested: the same resolutions"));
      Deno.writeTextFileSync(`${vol}/new/f`, "x");
      assertEquals(t.stat("new/f")?.type, "f");
      // After a rename a held directory is resolved afresh: "real" is not where it was.
      assertEquals(t.stat("real/f")?.type, "f");
      t.rename("real", "moved");
      assertEquals(t.stat("real/f"), null, "not followed to the directory's new name");
      assertEquals(t.stat("moved/f")?.type, "f");
    });
    assertEquals(openFds(vol), before, "all closed when the call returns");
    assertThrows(() => t.within(() => t.stat("moved/f") && t.rmdir("moved")), FsError);
    assertEquals(openFds(vol), before, "and when it throws");
  } finally {
    t.close();
  }
});

Deno.test("within holds at most 64 directories and never closes one a call is using", async () => {
  const { t, vol } = await setup();
  try {
    for (let i = 0; i < 70; i++) Deno.mkdirSync(`${vol}/d${i}`);
    Deno.writeTextFileSync(`${vol}/d0/f`, "moved");
    const before = openFds(vol);
    t.within(() => {
      for (let i = 0; i < 64; i++) assertEquals(t.stat(`d${i}/f`)?.type, i === 0 ? "f" : undefined);
      assertEquals(openFds(vol), before + 64);
      t.rename("d0/f", "d65/f"); // d0 held, d65 one past the limit
    });
    assertEquals(Deno.readTextFileSync(`${vol}/d65/f`), "moved");
    assertEquals(openFds(vol), before);
  } finally {
    t.close();
  }
});
