/**
 * A user racing a step: what appears at a path between the step's check and
 * its rename is a local change, kept aside as a conflict copy, never
 * replaced (rule 8). The race is made deterministic by creating the file
 * from inside the tree's rename, just before the real one runs. And a place
 * step at a new name, which tries its no-replace rename before it looks:
 * each way that rename can fail leads to what the full step does.
 */

import { assertEquals } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { Beneath } from "../src/fs/beneath.ts";
import { newOutcome, runStep, STAGING, type Step, type StepContext } from "../src/apply/steps.ts";
import { entryOf } from "../src/volume/state.ts";
import { FsError } from "../src/errors.ts";

/** A tree whose next rename to `path` finds a file the user just wrote there. */
function racedAt(root: string, path: string): Beneath {
  const t = Beneath.open(root);
  const rename = t.rename.bind(t);
  let raced = false;
  t.rename = (from, to, noReplace) => {
    if (to === path && !raced) {
      raced = true;
      Deno.writeTextFileSync(`${root}/${path}`, "the user's");
    }
    rename(from, to, noReplace);
  };
  return t;
}

function context(t: Beneath, step: Step): StepContext {
  return { t, host: "here", stamp: "20261130T000000Z", steps: [step], out: newOutcome() };
}

/** Names in `dir`, and what each file holds. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of Deno.readDirSync(dir)) out[e.name] = Deno.readTextFileSync(`${dir}/${e.name}`);
  return out;
}

/** A tree with the holder's file staged (as "0/0") for d/f, where nothing is yet. */
async function stagedTree(): Promise<string> {
  const root = await tempDir();
  Deno.mkdirSync(`${root}/${STAGING}/0`, { recursive: true });
  Deno.mkdirSync(`${root}/d`);
  Deno.writeTextFileSync(`${root}/${STAGING}/0/0`, "the holder's");
  return root;
}

/** Runs the step that places the staged file at d/f, in `t`, then closes `t`; what it did. */
function placeAtF(t: Beneath): StepContext {
  try {
    const post = entryOf(t.stat(`${STAGING}/0/0`)!, "", "");
    const ctx = context(t, { kind: "place", i: 0, path: "d/f", staged: "0/0", pre: null, post });
    runStep(ctx, 0);
    return ctx;
  } finally {
    t.close();
  }
}

/** The holder's file is at d/f and nothing was kept aside. */
function placedCleanly(root: string, ctx: StepContext): void {
  assertEquals(ctx.out.kept, []);
  assertEquals(contents(`${root}/d`), { f: "the holder's" });
}

Deno.test("a file created where a place step installs, after its check, is kept aside", async () => {
  const root = await stagedTree();
  const ctx = placeAtF(racedAt(root, "d/f"));
  const kept = "f.conflict-here-20261130T000000Z";
  assertEquals(ctx.out.kept, [`d/${kept}`]);
  assertEquals(contents(`${root}/d`), { f: "the holder's", [kept]: "the user's" });
});

Deno.test("a file created where a move step moves to, after its check, is kept aside", async () => {
  const root = await tempDir();
  Deno.mkdirSync(`${root}/d`);
  Deno.writeTextFileSync(`${root}/d/old`, "the holder's");
  const t = racedAt(root, "d/new");
  try {
    const pre = entryOf(t.stat("d/old")!, "", "");
    const ctx = context(t, { kind: "move", i: 0, path: "d/old", to: "d/new", pre, preTo: null });
    runStep(ctx, 0);
    const kept = "new.conflict-here-20261130T000000Z";
    assertEquals(ctx.out.kept, [`d/${kept}`]);
    assertEquals(contents(`${root}/d`), { new: "the holder's", [kept]: "the user's" });
  } finally {
    t.close();
  }
});

Deno.test("where the filesystem has no RENAME_NOREPLACE (EINVAL), a place step renames as before", async () => {
  const root = await stagedTree();
  const t = Beneath.open(root);
  const rename = t.rename.bind(t);
  t.rename = (from, to, noReplace) => {
    if (noReplace) throw new FsError("rename", to, 22, "EINVAL");
    rename(from, to, noReplace);
  };
  placedCleanly(root, placeAtF(t));
});

Deno.test("a place step at a new name whose directory is missing makes it, then places", async () => {
  const root = await stagedTree();
  Deno.removeSync(`${root}/d`);
  placedCleanly(root, placeAtF(Beneath.open(root)));
});

Deno.test("a place step run again after it was done (a crash in between) changes nothing", async () => {
  const root = await stagedTree();
  const t = Beneath.open(root);
  try {
    const post = entryOf(t.stat(`${STAGING}/0/0`)!, "", "");
    const step: Step = { kind: "place", i: 0, path: "d/f", staged: "0/0", pre: null, post };
    const run = () => {
      const ctx = context(t, step);
      runStep(ctx, 0);
      return ctx;
    };
    run();
    placedCleanly(root, run());
    // Placed, then replaced by the user before the re-run: the user's file stays as it is.
    Deno.writeTextFileSync(`${root}/d/f.new`, "the user's");
    Deno.renameSync(`${root}/d/f.new`, `${root}/d/f`);
    assertEquals(run().out.kept, []);
    assertEquals(contents(`${root}/d`), { f: "the user's" });
  } finally {
    t.close();
  }
});

Deno.test("a place step at a new name below a symlink keeps it aside, writing nothing through it", async () => {
  const root = await stagedTree();
  const outside = await tempDir();
  Deno.removeSync(`${root}/d`);
  Deno.symlinkSync(outside, `${root}/d`);
  const ctx = placeAtF(Beneath.open(root));
  const kept = "d.conflict-here-20261130T000000Z";
  assertEquals(ctx.out.kept, [kept]);
  assertEquals(Deno.readLinkSync(`${root}/${kept}`), outside);
  assertEquals([...Deno.readDirSync(outside)], []);
  assertEquals(contents(`${root}/d`), { f: "the holder's" });
});
