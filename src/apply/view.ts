/**
 * What this replica expects at each path while a batch is planned: the index
 * (what it last recorded or applied) with the batch's earlier steps played
 * over it. Every step's precondition is read from here, so a compare-and-swap
 * at execution time tells the replica's own state from a local change.
 *
 * Paths the batch touched live in `overlay` (null: nothing there). Others are
 * mapped back through the batch's renames to their path before the batch and
 * read from the index; below a path the batch created or removed, nothing is
 * left of the index (a "cut").
 *
 * @module
 */

import { isWithin, parentOf } from "../fs/paths.ts";
import type { Entry } from "../volume/state.ts";

/** A directory a step creates on its way (its inode is not known before). */
const IMPLICIT_DIR: Entry = {
  type: "d",
  ino: -1,
  perm: 0o755,
  size: 0,
  mtimeSec: 0,
  mtimeNsec: 0,
  digest: "",
  target: "",
  uid: -1,
  gid: -1,
};

/** One entry of the batch's history, newest last. */
type Event = { rename: [string, string] } | { cut: string };

/** The index as the batch so far leaves it. */
export class View {
  private readonly overlay = new Map<string, Entry | null>();
  private readonly history: Event[] = [];
  /** Paths cut so far; while there was no rename, a lookup only checks ancestors here. */
  private readonly cuts = new Set<string>();
  /** Every proper ancestor of a path ever put in `overlay`: where `set` must look for entries below. */
  private readonly parents = new Set<string>();
  private renames = 0;

  /**
   * `indexed(p)` reads the index row of `p` as it was before the batch;
   * `indexedBelow(p)` every row strictly below `p`.
   */
  constructor(
    private readonly indexed: (p: string) => Entry | undefined,
    private readonly indexedBelow: (p: string) => Iterable<[string, Entry]> = () => [],
  ) {}

  /** Every entry expected strictly below `p` now (from the index and the batch). */
  below(p: string): [string, Entry][] {
    const out = new Map<string, Entry>();
    const from = this.origin(p);
    if (from !== null) {
      for (const [q, e] of this.indexedBelow(from)) {
        const now = p + q.slice(from.length);
        if (!this.overlay.has(now)) out.set(now, e);
      }
    }
    for (const [q, e] of this.overlay) {
      if (q !== p && isWithin(q, p)) e ? out.set(q, e) : out.delete(q);
    }
    return [...out];
  }

  /** Where `p` was before the batch, or null if the batch made or removed it (or an ancestor). */
  private origin(p: string): string | null {
    let q = p;
    for (let k = this.history.length - 1; k >= 0; k--) {
      const ev = this.history[k];
      if ("cut" in ev) {
        if (isWithin(q, ev.cut)) return null;
      } else if (isWithin(q, ev.rename[1])) {
        q = ev.rename[0] + q.slice(ev.rename[1].length);
      }
    }
    return q;
  }

  /** The entry expected at `p` now, or null if nothing is. */
  get(p: string): Entry | null {
    const o = this.overlay.get(p);
    if (o !== undefined) return o;
    if (this.renames === 0) {
      for (let q = parentOf(p); q !== ""; q = parentOf(q)) if (this.cuts.has(q)) return null;
      return this.indexed(p) ?? null;
    }
    let q = p;
    for (let k = this.history.length - 1; k >= 0; k--) {
      const ev = this.history[k];
      if ("cut" in ev) {
        if (q !== ev.cut && isWithin(q, ev.cut)) return null;
      } else if (isWithin(q, ev.rename[1])) {
        q = ev.rename[0] + q.slice(ev.rename[1].length);
      }
    }
    return this.indexed(q) ?? null;
  }

  /** Something new (or nothing) is at `p`; nothing of the old index remains below it. */
  set(p: string, e: Entry | null): void {
    // Only a path some overlay entry was put below can have entries below it:
    // checking first keeps a batch of new files linear, not quadratic.
    if (this.parents.has(p)) {
      for (const q of [...this.overlay.keys()]) {
        if (q !== p && isWithin(q, p)) this.overlay.delete(q);
      }
    }
    this.put(p, e);
    this.history.push({ cut: p });
    this.cuts.add(p);
  }

  /** Only the attributes of `p` changed: what is below it stays. */
  update(p: string, e: Entry): void {
    this.put(p, e);
  }

  private put(p: string, e: Entry | null): void {
    this.overlay.set(p, e);
    for (let q = parentOf(p); q !== "" && !this.parents.has(q); q = parentOf(q)) {
      this.parents.add(q);
    }
  }

  /**
   * Missing parents of `p` become directories (as the step will make them),
   * so a later Mkdir of one finds it there instead of replacing it.
   */
  makeParents(p: string): void {
    const missing: string[] = [];
    for (let q = parentOf(p); q !== "" && this.get(q) === null; q = parentOf(q)) missing.push(q);
    for (const q of missing) this.put(q, { ...IMPLICIT_DIR });
  }

  /** `from` (and all below it) moved to `to`, replacing what was there. */
  move(from: string, to: string): void {
    const moving: [string, Entry | null][] = [];
    for (const [q, e] of this.overlay) if (isWithin(q, from)) moving.push([q, e]);
    const moved = this.get(from);
    for (const q of [...this.overlay.keys()]) {
      if (isWithin(q, to) || isWithin(q, from)) this.overlay.delete(q);
    }
    this.history.push({ cut: to }, { rename: [from, to] }, { cut: from });
    this.renames++;
    for (const [q, e] of moving) this.put(to + q.slice(from.length), e);
    this.put(to, moved);
    this.put(from, null);
  }

  /** Every path the batch touched, with what is expected there at its end. */
  touched(): Map<string, Entry | null> {
    return this.overlay;
  }
}
