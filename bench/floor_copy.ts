/**
 * The floor of a cold copy in this runtime, for the "local" part's row
 * "initial copy: floor": the least that a copy with the replicator's
 * guarantees does per file, and nothing more (no log, no plan, no
 * transaction file, no Expect). Per file: open the source confined beneath
 * its root (openat2), create the staged copy with the source's mode, copy it
 * while hashing it (SHA-256), set its mtime, rename it into its directory
 * without replacing anything (renameat2 RENAME_NOREPLACE), and write one
 * index row (SQLite, one transaction per 4096 files). Directories are made
 * with their modes and get their mtimes last; one syncfs(2) ends the copy.
 * Trees of regular files and directories only (what the bench generates).
 * The copy is verified like the others; its metadata goes to .replicator/.
 *
 *   deno run -A bench/floor_copy.ts SRC DST
 *
 * @module
 */

import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { cString, libc, O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_WRONLY } from "../src/fs/libc.ts";
import { openBeneath, openRoot } from "../src/fs/beneath.ts";
import { statAt } from "../src/fs/stat.ts";

const RENAME_NOREPLACE = 1;
const AT_SYMLINK_NOFOLLOW = 0x100;
const UTIME_OMIT = (1 << 30) - 2;
const ROWS_PER_TXN = 4096;
const encoder = new TextEncoder();

/** The directories (parents first) and files below `root`, relative, .replicator/ left out. */
function walk(root: string): { dirs: string[]; files: string[] } {
  const dirs: string[] = [];
  const files: string[] = [];
  const visit = (rel: string) => {
    for (const e of Deno.readDirSync(rel ? `${root}/${rel}` : root)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (!rel && e.name === ".replicator") continue;
      if (e.isDirectory) {
        dirs.push(p);
        visit(p);
      } else if (e.isFile) files.push(p);
    }
  };
  visit("");
  return { dirs, files };
}

/** A struct timespec[2] that leaves atime alone and sets mtime. */
function mtimeOnly(sec: number, nsec: number): Uint8Array {
  const t = new BigInt64Array([0n, BigInt(UTIME_OMIT), BigInt(sec), BigInt(nsec)]);
  return new Uint8Array(t.buffer);
}

function must(ok: boolean, what: string): void {
  if (!ok) throw new Error(`floor copy: ${what} failed`);
}

function copyTree(src: string, dst: string): number {
  const { dirs, files } = walk(src);
  const L = libc();
  Deno.mkdirSync(`${dst}/.replicator/staging`, { recursive: true });
  const db = new DatabaseSync(`${dst}/.replicator/index.db`);
  db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
  db.exec(
    "CREATE TABLE entries (path TEXT PRIMARY KEY, digest TEXT, size INT, mode INT, mtime INT)",
  );
  const row = db.prepare("INSERT INTO entries VALUES (?, ?, ?, ?, ?)");
  const sroot = openRoot(src);
  const droot = openRoot(dst);
  const staging = openBeneath(droot, ".replicator/staging", O_RDONLY | O_DIRECTORY);
  const dirMtimes: [string, Uint8Array][] = [];
  for (const d of dirs) {
    const st = statAt(sroot, d, d)!;
    must(L.mkdirat(droot, cString(d), st.perm) === 0, `mkdir ${d}`);
    dirMtimes.push([d, mtimeOnly(st.mtimeSec, st.mtimeNsec)]);
  }
  const dirFds = new Map<string, number>([["", droot]]);
  const buf = new Uint8Array(1 << 20);
  db.exec("BEGIN");
  files.forEach((p, n) => {
    const slash = p.lastIndexOf("/");
    const parent = slash < 0 ? "" : p.slice(0, slash);
    let dirFd = dirFds.get(parent);
    if (dirFd === undefined) {
      dirFd = openBeneath(droot, parent, O_RDONLY | O_DIRECTORY);
      dirFds.set(parent, dirFd);
    }
    const input = openBeneath(sroot, p, O_RDONLY);
    const st = statAt(input, "", p, true)!;
    const staged = String(n);
    const output = openBeneath(staging, staged, O_WRONLY | O_CREAT | O_EXCL, st.perm);
    must(input >= 0 && output >= 0, `open ${p}`);
    const h = createHash("sha256");
    for (let got; (got = Number(L.read(input, buf, BigInt(buf.length)))) > 0;) {
      const piece = buf.subarray(0, got);
      h.update(piece);
      must(Number(L.write(output, piece, BigInt(got))) === got, `write ${p}`);
    }
    must(L.futimens(output, mtimeOnly(st.mtimeSec, st.mtimeNsec)) === 0, `futimens ${p}`);
    L.close(input);
    L.close(output);
    const name = encoder.encode(`${p.slice(slash + 1)}\0`); // cString's one buffer holds `staged`
    must(L.renameat2(staging, cString(staged), dirFd, name, RENAME_NOREPLACE) === 0, `rename ${p}`);
    row.run(p, h.digest("hex"), st.size, st.perm, st.mtimeSec);
    if ((n + 1) % ROWS_PER_TXN === 0) db.exec("COMMIT; BEGIN");
  });
  db.exec("COMMIT");
  const top = statAt(sroot, "", src, true)!;
  dirMtimes.unshift([".", mtimeOnly(top.mtimeSec, top.mtimeNsec)]);
  must(L.fchmod(droot, top.perm) === 0, "chmod of the copy's root");
  for (const [d, times] of dirMtimes.reverse()) {
    must(L.utimensat(droot, cString(d), times, AT_SYMLINK_NOFOLLOW) === 0, `utimensat ${d}`);
  }
  must(L.syncfs(droot) === 0, "syncfs");
  for (const fd of dirFds.values()) L.close(fd);
  L.close(staging);
  L.close(sroot);
  db.close();
  return files.length;
}

if (import.meta.main) {
  const [src, dst] = Deno.args;
  if (!src || !dst) {
    console.error("usage: deno run -A bench/floor_copy.ts SRC DST");
    Deno.exit(2);
  }
  Deno.mkdirSync(dst);
  copyTree(src, dst);
}
