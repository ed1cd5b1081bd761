/**
 * Part "scale" of the bench: time and peak memory on large trees. Per size
 * (BENCH_SCALE_FILES, default "200000 1000000" ["20000" under --quick]): a
 * tree of that many 1 KiB files (at most ~500 entries a directory), then
 * `replicator init`, `replicator clone SRC DST` against `rsync -a` into a
 * fresh directory, and a no-op `replicator sync -C DST SRC` against a no-op
 * `rsync -a --delete`; once each. Targets: clone/rsync ≤ BENCH_MAX_RATIO (1.5)
 * and every replicator run's peak RSS < BENCH_MAX_RSS_MB (300). A size whose
 * three copies do not fit on the disk is skipped with a note. Both copies are
 * verified against the source after the no-op syncs.
 *
 * @module
 */

import {
  envList,
  flush,
  generateTree,
  log,
  noRoomFor,
  type PartResult,
  q,
  QUICK,
  raw,
  repl,
  type Row,
  SEED,
  table,
  timed,
  verify,
  WORK,
} from "./common.ts";

const SIZES = envList("BENCH_SCALE_FILES", q([20000], [200000, 1000000]));
const FILE_BYTES = 1024;

function oneSize(files: number): Row[] {
  const dir = `${WORK}/scale-${files}`;
  const src = `${dir}/src`, dst = `${dir}/dst`, rdst = `${dir}/dst-rsync`;
  generateTree(src, files, FILE_BYTES, FILE_BYTES, SEED + 1 + files);
  flush();
  const n = files.toLocaleString("en-US");
  const init: Row = { name: `init, ${n} files`, repl: [], rsync: [] };
  const copy: Row = { name: `initial copy, ${n} files`, repl: [], rsync: [] };
  const noop: Row = { name: `no-op sync, ${n} files`, repl: [], rsync: [] };
  init.repl.push(timed(repl("init", src, "--host", "src")));
  log(`scale ${files}: init ${init.repl[0].wall.toFixed(1)} s`);
  copy.repl.push(timed(repl("clone", src, dst, "--host", "dst")));
  copy.rsync.push(timed(["rsync", "-a", "--exclude=.replicator", `${src}/`, `${rdst}/`]));
  log(
    `scale ${files}: clone ${copy.repl[0].wall.toFixed(1)} s, rsync ${
      copy.rsync[0].wall.toFixed(1)
    } s`,
  );
  noop.repl.push(timed(repl("sync", "-C", dst, src)));
  noop.rsync.push(
    timed(["rsync", "-a", "--delete", "--exclude=.replicator", `${src}/`, `${rdst}/`]),
  );
  log(
    `scale ${files}: no-op sync ${noop.repl[0].wall.toFixed(1)} s, rsync ${
      noop.rsync[0].wall.toFixed(1)
    } s`,
  );
  verify(`scale ${files}: replicator's copy`, dst, src);
  verify(`scale ${files}: rsync's copy`, rdst, src);
  return [init, copy, noop];
}

/** Part "scale". */
export function scalePart(): PartResult {
  const rows: Row[] = [];
  const notes: string[] = [];
  const ran: number[] = [];
  for (const files of SIZES) {
    const why = noRoomFor(3, 2, files, FILE_BYTES);
    if (why) {
      notes.push(`${files} files skipped: ${why}`);
      continue;
    }
    rows.push(...oneSize(files));
    ran.push(files);
  }
  console.log(`\n== scale: trees of 1 KiB files, once each; 'sync' before each timed run`);
  console.log(
    `rsync: 'rsync -a' into a fresh directory, then 'rsync -a --delete' for the no-op sync`,
  );
  for (const n of notes) console.log(n);
  if (rows.length === 0) return { name: "scale", skipped: notes.join("; "), miss: 0 };
  const { text, miss } = table(rows);
  console.log(text);
  if (!QUICK) console.log(`\nall runs (wall/peak RSS):\n${raw(rows)}`);
  console.log(`both copies verified equal to the source after the no-op syncs`);
  return {
    name: "scale",
    skipped: null,
    detail: ran.join(", ") + " files" + (notes.length ? `; ${notes.length} size(s) skipped` : ""),
    miss,
  };
}

if (import.meta.main) {
  console.error("bench/scale.ts is a part of the bench: run `bash bench/run.sh`");
  Deno.exit(2);
}
