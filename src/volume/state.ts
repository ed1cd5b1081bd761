/**
 * The state database (`.replicator/state.db`, SQLite): the index of the tree as
 * last recorded, the highest record applied per origin host, and a few values
 * derived from the KML. The KML is the truth; everything here except the index
 * can be rebuilt from it (see Volume.reconcile).
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Stat } from "../fs/stat.ts";
import { MetadataError } from "../errors.ts";

/** Kind of a tree entry. */
export type EntryType = "f" | "d" | "l";

/** What the index remembers of one path. */
export interface Entry {
  type: EntryType;
  ino: number;
  /** Permission bits (st_mode & 0o7777). */
  perm: number;
  size: number;
  /** Modification time (0 for directories indexed before version 0.3: unknown). */
  mtimeSec: number;
  mtimeNsec: number;
  /** SHA-256 hex for files, "" otherwise. */
  digest: string;
  /** Link target for symlinks, "" otherwise. */
  target: string;
  /** Owner and group ids (-1: not known, in rows older than owners). */
  uid: number;
  gid: number;
}

/** The index row for an entry as stat sees it. */
export function entryOf(st: Stat, digest: string, target: string): Entry {
  return {
    type: st.type as EntryType,
    ino: st.ino,
    perm: st.perm,
    size: st.type === "f" ? st.size : 0,
    mtimeSec: st.mtimeSec,
    mtimeNsec: st.mtimeNsec,
    digest,
    target,
    uid: st.uid,
    gid: st.gid,
  };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS entries (
  path TEXT PRIMARY KEY, type TEXT NOT NULL, ino INTEGER NOT NULL, perm INTEGER NOT NULL,
  size INTEGER NOT NULL, mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
  digest TEXT NOT NULL, target TEXT NOT NULL,
  uid INTEGER NOT NULL DEFAULT -1, gid INTEGER NOT NULL DEFAULT -1) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_ino ON entries (ino);
CREATE TABLE IF NOT EXISTS origins (host TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wanted (
  path TEXT PRIMARY KEY, digest TEXT NOT NULL, size INTEGER NOT NULL, perm INTEGER NOT NULL,
  mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL) WITHOUT ROWID;
`;

/** The columns of an index row, in the order RowArray gives them. */
const COLUMNS = "path, type, ino, perm, size, mtime_s, mtime_ns, digest, target, uid, gid";

/** Columns added since the first schema, with their definitions (for older databases). */
const ADDED = [
  ["uid", "INTEGER NOT NULL DEFAULT -1"],
  ["gid", "INTEGER NOT NULL DEFAULT -1"],
];

/** Typed access to the state database. */
export class State {
  private readonly db: DatabaseSync;
  private readonly statements = new Map<string, StatementSync>();

  /** Opens (or creates) the database; the caller has checked that `path` is no symlink. */
  constructor(readonly path: string) {
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(path);
      db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
      db.exec(SCHEMA);
      const have = new Set(
        (db.prepare("PRAGMA table_info(entries)").all() as { name: string }[]).map((c) => c.name),
      );
      for (const [name, def] of ADDED) {
        if (!have.has(name)) db.exec(`ALTER TABLE entries ADD COLUMN ${name} ${def}`);
      }
    } catch (e) {
      try {
        db?.close();
      } catch { /* already unusable */ }
      throw damagedState(path, e as Error);
    }
    this.db = db;
  }

  close(): void {
    this.db.close();
  }

  /** SQLite's quick_check: [] if the database is sound, else what is wrong. */
  damage(): string[] {
    const rows = this.db.prepare("PRAGMA quick_check").all() as Record<string, unknown>[];
    const found = rows.map((r) => String(Object.values(r)[0]));
    return found.length === 1 && found[0] === "ok" ? [] : found;
  }

  /** A prepared statement, prepared once per connection. */
  private sql(text: string): StatementSync {
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  /** Runs `fn` in one SQLite transaction. */
  transaction<T>(fn: () => T): T {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.db.exec("COMMIT");
      return out;
    } catch (e) {
      this.db.exec("ROLLBACK");
      throw e;
    }
  }

  getEntry(path: string): Entry | undefined {
    const [r] = this.rows("WHERE path = ?", [path]);
    return r && entryOfRow(r);
  }

  /** True if the index has no row (nothing recorded yet). */
  indexIsEmpty(): boolean {
    return this.sql("SELECT 1 FROM entries LIMIT 1").get() === undefined;
  }

  /**
   * Every row in path order (SQLite compares text as UTF-8 bytes), read in
   * pages of 2048 rows from where the last one ended: node:sqlite's row by
   * row iteration costs three times as much per row.
   */
  *ordered(): Generator<[string, Entry]> {
    let page = this.rows("ORDER BY path LIMIT 2048", []);
    while (page.length > 0) {
      for (const r of page) yield [r[0], entryOfRow(r)];
      page = this.rows("WHERE path > ? ORDER BY path LIMIT 2048", [page[page.length - 1][0]]);
    }
  }

  /** Every file row with inode `ino` (the names of a hard-linked file). */
  withInode(ino: number): [string, Entry][] {
    return this.rows("WHERE ino = ? AND type = 'f'", [String(ino)]).map((
      r,
    ) => [r[0], entryOfRow(r)]);
  }

  /** Every row strictly below directory `dir`. */
  entriesUnder(dir: string): [string, Entry][] {
    return this.rows("WHERE path >= ? AND path < ?", [dir + "/", dir + "0"])
      .map((r) => [r[0], entryOfRow(r)]);
  }

  /**
   * Index rows as arrays, made into plain Entry objects of one shape by the
   * callers: faster to load, and faster to read in a scan, than SQLite's row
   * objects. (node:sqlite has setReturnArrays; Deno's bundled types lag behind.)
   */
  private rows(where: string, params: string[]): RowArray[] {
    const st = this.sql(`SELECT ${COLUMNS} FROM entries ${where}`) as StatementSync & {
      setReturnArrays(on: boolean): void;
    };
    st.setReturnArrays(true);
    return st.all(...params) as unknown as RowArray[];
  }

  putEntry(path: string, e: Entry): void {
    this.sql(`INSERT OR REPLACE INTO entries (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(
        path,
        e.type,
        e.ino,
        e.perm,
        e.size,
        e.mtimeSec,
        e.mtimeNsec,
        e.digest,
        e.target,
        e.uid,
        e.gid,
      );
  }

  deleteEntry(path: string): void {
    this.sql("DELETE FROM entries WHERE path = ?").run(path);
  }

  /** Deletes the rows of everything strictly below `path`. */
  deleteBelow(path: string): void {
    this.sql("DELETE FROM entries WHERE path >= ? AND path < ?").run(path + "/", path + "0");
  }

  /** Deletes the rows of `path` and of everything below it. */
  deleteTree(path: string): void {
    this.sql("DELETE FROM entries WHERE path = ? OR (path >= ? AND path < ?)")
      .run(path, path + "/", path + "0");
  }

  /**
   * Moves `from` and everything under it to `to`, replacing what was there.
   * Does nothing if nothing is recorded at `from` (a rename that was a no-op).
   */
  renameEntries(from: string, to: string): void {
    const known = this.sql(
      "SELECT 1 FROM entries WHERE path = ? OR (path >= ? AND path < ?) LIMIT 1",
    ).get(from, from + "/", from + "0");
    if (!known) return;
    this.sql("DELETE FROM entries WHERE path = ? OR (path >= ? AND path < ?)")
      .run(to, to + "/", to + "0");
    this.sql(
      "UPDATE entries SET path = ? || substr(path, ?) WHERE path = ? OR (path >= ? AND path < ?)",
    ).run(to, from.length + 1, from, from + "/", from + "0");
  }

  /** Files whose content a record named but which could not be installed (retried by pulls). */
  wanted(): Wanted[] {
    return this.sql(
      "SELECT path, digest, size, perm, mtime_s AS mtimeSec, mtime_ns AS mtimeNsec FROM wanted",
    ).all() as unknown as Wanted[];
  }

  /** True if any content is wanted. */
  anyWanted(): boolean {
    return this.sql("SELECT 1 FROM wanted LIMIT 1").get() !== undefined;
  }

  /** The content wanted at `path`, if any. */
  wantedAt(path: string): Wanted | undefined {
    return this.sql(
      "SELECT path, digest, size, perm, mtime_s AS mtimeSec, mtime_ns AS mtimeNsec FROM wanted WHERE path = ?",
    ).get(path) as unknown as Wanted | undefined;
  }

  want(w: Wanted): void {
    this.sql("INSERT OR REPLACE INTO wanted VALUES (?, ?, ?, ?, ?, ?)")
      .run(w.path, w.digest, w.size, w.perm, w.mtimeSec, w.mtimeNsec);
  }

  unwant(path: string): void {
    this.sql("DELETE FROM wanted WHERE path = ?").run(path);
  }

  /** Moves wanted content at or below `from` to `to` (a rename was applied). */
  renameWanted(from: string, to: string): void {
    this.sql(
      "UPDATE OR REPLACE wanted SET path = ? || substr(path, ?) WHERE path = ? OR (path >= ? AND path < ?)",
    ).run(to, from.length + 1, from, from + "/", from + "0");
  }

  /** Highest origin sequence number applied per origin host. */
  origins(): Map<string, number> {
    const rows = this.sql("SELECT host, seq FROM origins").all() as unknown as {
      host: string;
      seq: number;
    }[];
    return new Map(rows.map((r) => [r.host, r.seq]));
  }

  /** Raises the applied sequence number of `host` to at least `seq`. */
  noteOrigin(host: string, seq: number): void {
    this.sql(
      "INSERT INTO origins VALUES (?, ?) ON CONFLICT(host) DO UPDATE SET seq = max(seq, excluded.seq)",
    ).run(host, seq);
  }

  /** Forgets the recorded tree: the next scan records everything again. */
  clearIndex(): void {
    this.db.exec("DELETE FROM entries");
  }

  clearDerived(): void {
    this.db.exec(
      "DELETE FROM origins; DELETE FROM meta WHERE key IN ('kml_end','permit_epoch','permit_holder');",
    );
  }

  getMeta(key: string): string | undefined {
    const r = this.sql("SELECT value FROM meta WHERE key = ?").get(key) as
      | { value: string }
      | undefined;
    return r?.value;
  }

  setMeta(key: string, value: string | number): void {
    this.sql("INSERT OR REPLACE INTO meta VALUES (?, ?)").run(key, String(value));
  }

  /** Every meta entry whose key starts with `prefix`, keyed by the rest. */
  metaByPrefix(prefix: string): Map<string, string> {
    const rows = this.sql("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?")
      .all(prefix.length, prefix) as { key: string; value: string }[];
    return new Map(rows.map((r) => [r.key.slice(prefix.length), r.value]));
  }
}

/** The error for a state database SQLite cannot use. */
export function damagedState(path: string, cause: Error): MetadataError {
  return new MetadataError(
    path,
    `${path} is damaged (${cause.message}); run 'replicator fsck --repair' to rebuild it ` +
      `from the KML and the tree`,
  );
}

/** Content a record named for `path` that is not installed yet. */
export interface Wanted {
  path: string;
  digest: string;
  size: number;
  perm: number;
  mtimeSec: number;
  mtimeNsec: number;
}

/** A row as SELECTed with setReturnArrays, in COLUMNS order. */
type RowArray = [
  string,
  EntryType,
  number,
  number,
  number,
  number,
  number,
  string,
  string,
  number,
  number,
];

function entryOfRow(r: RowArray): Entry {
  return {
    type: r[1],
    ino: r[2],
    perm: r[3],
    size: r[4],
    mtimeSec: r[5],
    mtimeNsec: r[6],
    digest: r[7],
    target: r[8],
    uid: r[9],
    gid: r[10],
  };
}
