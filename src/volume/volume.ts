/**
 * A replica of a volume on this host: its config, KML, Expect, state and lock.
 * Opening a volume takes the lock, cuts a torn KML tail, finishes or undoes an
 * interrupted transaction, and brings the state database up to the KML.
 *
 * @module
 */

import { absolutePath } from "../fs/paths.ts";
import { Beneath } from "../fs/beneath.ts";
import { KML_HEADER_BYTES, KmlLog } from "../kml/log.ts";
import { type Change, decodeRecord, encodeRecord, type KmlRecord, Op } from "../kml/record.ts";
import { decodeExpect, encodeExpect, type ExpectEntry } from "../expect/expect.ts";
import { fsyncDir, writeFileAtomic } from "../fs/durable.ts";
import { FormatError, MetadataError, ReplicatorError, VolumeNotFoundError } from "../errors.ts";
import { checkMeta, createFresh, readRegular, readRegularText } from "../fs/nofollow.ts";
import { checkLayout, type Layout, layoutOf, META_DIR } from "./layout.ts";
import { randomId, readConfig, type VolumeConfig, writeConfig } from "./config.ts";
import { acquireLock } from "./lock.ts";
import { printable } from "../wire/messages.ts";
import { type Entry, State } from "./state.ts";

/** Who holds the write permit, as this replica knows it. */
export interface Permit {
  epoch: number;
  /** Host id of the holder, "" if no permit record has been seen. */
  holder: string;
}

/**
 * True if `dir` is a replica's root (it holds `.replicator`). Anything by that
 * name counts, so that a planted symlink is refused by the open, not walked past
 * to a volume further up.
 */
export function isReplica(dir: string): boolean {
  try {
    Deno.lstatSync(`${dir}/${META_DIR}`);
    return true;
  } catch {
    return false;
  }
}

function alreadyReplica(root: string): ReplicatorError {
  return new ReplicatorError(`${root} is already a replica (it has ${META_DIR}/)`);
}

/**
 * New, or left by an interrupted init or clone: marked so, or nothing written
 * into it yet (killed before the marker).
 */
function incomplete(l: Layout): boolean {
  if (checkMeta(l.creating)) return true;
  return [...Deno.readDirSync(l.meta)].every((e) => e.name === "lock");
}

/** Refuses a replica whose creation did not finish, naming the command to run again. */
export function refuseIncomplete(l: Layout): void {
  if (!incomplete(l)) return;
  let command = "replicator init' or 'replicator clone";
  try {
    command = readRegularText(l.creating).trim() || command;
  } catch { /* an empty directory: no marker yet */ }
  throw new MetadataError(
    l.creating,
    `${l.root} was left half-made by an interrupted '${command}'; run it again ` +
      `(it makes the replica again, keeping the files already there)`,
  );
}

/** Writes the creating marker, holding the command line to run again. */
function markCreating(l: Layout, command: string): void {
  const f = createFresh(l.creating);
  try {
    f.writeSync(new TextEncoder().encode(command + "\n"));
    f.syncSync();
  } finally {
    f.close();
  }
  fsyncDir(l.meta);
}

/** The host id an interrupted creation had already chosen, if it got that far. */
function previousHostId(l: Layout): string | undefined {
  try {
    return readConfig(l.config).hostId;
  } catch {
    return undefined;
  }
}

/** Removes what an interrupted creation left in `.replicator/` (the lock stays: it is held). */
function clearForRedo(l: Layout): void {
  for (const e of Deno.readDirSync(l.meta)) {
    if (e.name === "lock") continue;
    Deno.removeSync(`${l.meta}/${e.name}`, { recursive: true }); // never follows links
  }
  fsyncDir(l.meta);
}

/** Finds the volume root at or above `dir` (like git's -C). */
export function findRoot(dir: string): string {
  let d = absolutePath(dir);
  for (;;) {
    if (isReplica(d)) return d;
    const up = absolutePath(`${d}/..`);
    if (up === d) throw new VolumeNotFoundError(absolutePath(dir));
    d = up;
  }
}

/**
 * Called when the KML holds this host's own records past the state's end (a
 * capture died between its append and its index update): brings the index up
 * to them. Supplied by the layer above (volume/ imports nothing above it).
 */
export type IndexOwnTail = (vol: Volume, own: KmlRecord[]) => void;

/** An open, locked replica. Close it to release the lock. */
export class Volume {
  #tree: Beneath | undefined;

  private constructor(
    readonly layout: Layout,
    public config: VolumeConfig,
    readonly kml: KmlLog,
    readonly state: State,
    private readonly release: () => void,
  ) {}

  /**
   * Opens the volume containing `dir`, waiting briefly for its lock. An
   * interrupted transaction is not finished here: open replicas with
   * `openReplica` (src/apply/), which does that first.
   */
  static open(dir: string, lockWaitMs?: number): Volume {
    const root = findRoot(dir);
    const layout = layoutOf(root);
    checkMeta(layout.meta, "directory");
    const release = acquireLock(layout.lock, root, lockWaitMs);
    try {
      checkLayout(layout);
      refuseIncomplete(layout);
      if (!checkMeta(layout.kml)) {
        throw new MetadataError(
          layout.kml,
          `${layout.kml} is missing; run 'replicator fsck --repair' to start a new, empty log ` +
            `(peers then send what they hold again)`,
        );
      }
      if (!checkMeta(layout.state)) {
        throw new MetadataError(
          layout.state,
          `${layout.state} is missing; run 'replicator fsck --repair' to rebuild it from the KML ` +
            `and the tree`,
        );
      }
      const config = readConfig(layout.config);
      const kml = KmlLog.open(layout.kml);
      const vol = new Volume(layout, config, kml, new State(layout.state), release);
      if (kml.header.volumeId !== config.volumeId) {
        throw new FormatError(`${layout.kml} belongs to another volume`);
      }
      return vol;
    } catch (e) {
      release();
      throw e;
    }
  }

  /**
   * Creates the metadata of a new replica in `dir` (which may hold files).
   * `volumeId` is new for `init`, the source's for `clone`; `command` is the
   * command line that creates it, named if it is interrupted. A replica left
   * half-made by an interrupted run is made again (its host id kept).
   * Call finishCreating() once its first commit is done.
   */
  static create(dir: string, volumeId: string, hostName: string, command: string): Volume {
    const root = absolutePath(dir);
    Deno.mkdirSync(root, { recursive: true });
    const layout = layoutOf(root);
    try {
      Deno.mkdirSync(layout.meta);
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    checkMeta(layout.meta, "directory");
    if (!incomplete(layout)) throw alreadyReplica(root);
    const release = acquireLock(layout.lock, root);
    try {
      // Under the lock, again: a concurrent run may have finished it meanwhile.
      if (!incomplete(layout)) throw alreadyReplica(root);
      checkLayout(layout);
      const hostId = previousHostId(layout) ?? randomId();
      clearForRedo(layout);
      markCreating(layout, command);
      const config: VolumeConfig = { format: 1, volumeId, hostId, hostName, peers: {} };
      writeConfig(layout.config, config);
      writeFileAtomic(layout.expect, encodeExpect([]));
      const kml = KmlLog.create(layout.kml, { volumeId, incarnation: randomId() });
      const vol = new Volume(layout, config, kml, new State(layout.state), release);
      vol.reconcile(() => {});
      return vol;
    } catch (e) {
      release();
      throw e;
    }
  }

  /** Marks the replica complete: the last step of `init` and `clone`. */
  finishCreating(): void {
    Deno.removeSync(this.layout.creating);
    fsyncDir(this.layout.meta);
  }

  get root(): string {
    return this.layout.root;
  }

  get hostId(): string {
    return this.config.hostId;
  }

  /**
   * The volume's tree, opened on first use and closed with the volume: for
   * reads that serve a peer one file after another (a descriptor of the root
   * each time would cost a path resolution per file).
   */
  tree(): Beneath {
    this.#tree ??= Beneath.open(this.root);
    return this.#tree;
  }

  close(): void {
    this.#tree?.close();
    this.state.close();
    this.kml.close();
    this.release();
  }

  /** The current permit as learnt from the log. */
  permit(): Permit {
    return {
      epoch: Number(this.state.getMeta("permit_epoch") ?? "0"),
      holder: this.state.getMeta("permit_holder") ?? "",
    };
  }

  /** Remembers the name host `id` gave itself in a handshake: status and log show names. */
  rememberHost(id: string, name: string): void {
    const key = `host_name:${id}`;
    const clean = printable(name);
    if (clean && this.state.getMeta(key) !== clean) this.state.setMeta(key, clean);
  }

  /** Names of the hosts this replica has met, by id, its own included. */
  hostNames(): Map<string, string> {
    const names = this.state.metaByPrefix("host_name:");
    names.set(this.hostId, this.config.hostName);
    return names;
  }

  /** Holder of the permit in `epoch`, or "" if unknown. */
  holderOf(epoch: number): string {
    return this.state.getMeta(`permit:${epoch}`) ?? "";
  }

  holdsPermit(): boolean {
    return this.permit().holder === this.hostId;
  }

  readExpect(): ExpectEntry[] {
    const path = this.layout.expect;
    try {
      return decodeExpect(readRegular(path));
    } catch (e) {
      if (!(e instanceof FormatError || e instanceof Deno.errors.NotFound)) throw e;
      throw new MetadataError(
        path,
        `${path} is damaged (${(e as Error).message}); run 'replicator fsck --repair' to reset ` +
          `it (peers' logs are then read again from the start; nothing is applied twice)`,
      );
    }
  }

  writeExpect(entries: ExpectEntry[]): void {
    writeFileAtomic(this.layout.expect, encodeExpect(entries));
  }

  /** Turns changes made here into this host's records (sequence, epoch, time). */
  ownRecords(changes: Change[], epoch = this.permit().epoch): KmlRecord[] {
    let seq = Math.max(
      this.state.origins().get(this.hostId) ?? 0,
      Number(this.state.getMeta("own_seq") ?? "0"),
    );
    const now = BigInt(Date.now()) * 1_000_000n;
    return changes.map((c) => ({
      ...c,
      originHost: this.hostId,
      originSeq: ++seq,
      epoch,
      timeNs: now,
    }));
  }

  /**
   * Appends records (already encoded as `frames`) durably, then updates the
   * derived state and runs `alsoInState` in the same SQLite transaction.
   */
  commitRecords(records: KmlRecord[], frames: Uint8Array[], alsoInState?: () => void): void {
    if (frames.length > 0) this.kml.append(frames);
    this.state.transaction(() => {
      this.noteRecords(records);
      alsoInState?.();
      this.state.setMeta("kml_end", this.kml.size);
    });
  }

  /** Records local changes as this host's records, with their index updates. */
  recordLocal(changes: Change[], updates: Map<string, Entry | null>): KmlRecord[] {
    const records = this.ownRecords(changes);
    this.commitRecords(records, records.map(encodeRecord), () => this.applyIndex(updates));
    return records;
  }

  /** Writes index rows (null deletes). Call inside a state transaction. */
  applyIndex(updates: Map<string, Entry | null>): void {
    for (const [p, e] of updates) {
      if (e) this.state.putEntry(p, e);
      else this.state.deleteEntry(p);
    }
  }

  /**
   * Brings origins and permit up to the end of the KML: records appended
   * before a crash, after which the state was not updated, are replayed.
   */
  reconcile(indexOwn: IndexOwnTail): void {
    const end = Number(this.state.getMeta("kml_end") ?? "0");
    const incarnation = this.state.getMeta("kml_incarnation");
    if (end === this.kml.size && incarnation === this.kml.header.incarnation) return;
    this.state.transaction(() => {
      let from = end;
      if (end > this.kml.size || end === 0 || incarnation !== this.kml.header.incarnation) {
        this.state.clearDerived();
        from = KML_HEADER_BYTES;
      }
      const records: KmlRecord[] = [];
      for (const f of this.kml.frames(from)) records.push(decodeRecord(f.bytes));
      this.noteRecords(records);
      // Own records past the state's end: a capture died between its append and its index
      // update. Bring the index to what they say (where the disk still agrees), so the
      // next scan does not record the same changes again.
      const own = records.filter((r) => r.originHost === this.hostId && r.op !== Op.Permit);
      if (from === end && own.length > 0) indexOwn(this, own);
      this.state.setMeta("kml_end", this.kml.size);
      this.state.setMeta("kml_incarnation", this.kml.header.incarnation);
    });
  }

  /** Derived state of appended records: highest sequence per origin, the permit. */
  private noteRecords(records: KmlRecord[]): void {
    const highest = new Map<string, number>();
    for (const r of records) {
      highest.set(r.originHost, Math.max(highest.get(r.originHost) ?? 0, r.originSeq));
      if (r.op === Op.Permit && r.epoch > this.permit().epoch) {
        this.state.setMeta("permit_epoch", r.epoch);
        this.state.setMeta("permit_holder", r.target);
        this.state.setMeta(`permit:${r.epoch}`, r.target);
      }
    }
    for (const [host, seq] of highest) this.state.noteOrigin(host, seq);
    // Never reused, even if fsck cuts the log: peers skip sequence numbers they have seen.
    const own = highest.get(this.hostId) ?? 0;
    if (own > Number(this.state.getMeta("own_seq") ?? "0")) this.state.setMeta("own_seq", own);
  }
}
