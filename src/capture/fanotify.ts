/**
 * The fanotify event source: change capture on hosts without the Presto
 * module, through Linux fanotify called with Deno FFI. Needs root
 * (CAP_SYS_ADMIN for a filesystem mark, CAP_DAC_READ_SEARCH for
 * open_by_handle_at) and Linux 5.9 or later (FAN_REPORT_DFID_NAME).
 *
 * What the kernel gives: one fanotify group, initialised with
 * FAN_REPORT_DFID_NAME, and a FAN_MARK_FILESYSTEM mark on each filesystem
 * the volume spans. Every event names a directory by its file handle plus an
 * entry name ("." when the event is about the directory itself); a
 * filesystem mark sees the whole filesystem, so the events of the volume
 * have to be picked out by their directory handles.
 *
 * Mapping handles to paths: at open, the volume's directories are walked
 * (never following symlinks, never entering `.replicator/`) and each one's
 * handle from name_to_handle_at(2) is kept in a tree of directories (handle
 * -> node, node -> parent + name), so a renamed directory moves its whole
 * subtree in O(1). The tree follows the events: a directory created or moved
 * in is bound (and walked, if new), a deleted one is dropped, and a
 * directory that was moved away is looked up again (see below) and rebound
 * where it is now, or dropped if it left the volume.
 * A handle the tree does not know is resolved with open_by_handle_at(2) on
 * the filesystem + readlink of /proc/self/fd/N, which gives the directory's
 * current path: inside the volume it is bound and the event kept (this is
 * the case of a directory created and renamed, or filled, before its own
 * events were read); outside the volume or in `.replicator/` the handle is
 * remembered as outside and its events ignored; a handle of a directory that
 * no longer exists (ESTALE) is ignored too, because its removal or move is
 * itself an event in its parent, which names the path. A handle that cannot
 * be resolved for any other reason becomes an "overflow" hint: the caller
 * rescans rather than miss a change. (name_to_handle_at takes flags 0: it
 * never follows a final symlink, and rejects AT_SYMLINK_NOFOLLOW with
 * EINVAL; the fd open_by_handle_at resolves against is O_RDONLY, as an
 * O_PATH fd gives EBADF.)
 *
 * Events are read after the fact, so a directory that moved twice before
 * its events were read can have an event named under its later path (or a
 * directory that left the volume under its old path): such extra paths are
 * harmless, the scoped scan finds nothing there. What matters is that every
 * changed path is named, and the random-operation test checks exactly that
 * against full scans.
 *
 * Hints: each batch (everything readable at once, up to 4 MiB of records)
 * becomes one "paths" hint naming every path an event touched (directory +
 * name; a rename names both paths, from its MOVED_FROM and MOVED_TO events),
 * preceded by an "overflow" hint if the kernel's queue overflowed
 * (FAN_Q_OVERFLOW, the default limit of 16384 events: the directory tree is
 * then rebuilt by a new walk) or a handle could not be resolved; its `lost`
 * counts those notices, as fanotify does not say how many events were
 * dropped. The source only names paths: lento's scoped scan decides what
 * changed.
 *
 * The mask: FAN_CLOSE_WRITE (a file written), FAN_MODIFY (writes through a
 * descriptor that stays open, truncate(2), which has no close), FAN_ATTRIB
 * (chmod, utimes, link count), FAN_CREATE, FAN_DELETE, FAN_MOVED_FROM,
 * FAN_MOVED_TO, FAN_DELETE_SELF and FAN_MOVE_SELF (directories only: with
 * directory handles the kernel reports them for directories), FAN_ONDIR and
 * FAN_EVENT_ON_CHILD. Linux 6.1 (Debian 12) accepts this mask with
 * FAN_REPORT_DFID_NAME on a filesystem mark.
 *
 * Waiting without blocking the event loop, and how close() stops it, is
 * poller.ts (the same scheme as the Presto reader): the group is
 * FAN_NONBLOCK, next() waits in poll(2) on the fanotify fd and an eventfd on
 * a worker thread, then reads with a plain read(2), which returns at once.
 * close() removes the marks and writes the eventfd: the pending next()
 * resolves with [].
 *
 * Not covered: a filesystem mounted inside the volume after open is not
 * watched until the next overflow or reopen (mounts present at open are), a
 * directory reachable twice (bind mounts inside the volume) is reported
 * under one of its paths. An event naming an entry whose name is not UTF-8
 * counts as lost: the rescan that follows reports the name (no record can
 * hold it).
 *
 * @module
 */

import { ReplicatorError } from "../errors.ts";
import { META_DIR } from "../volume/layout.ts";
import type { EventSource, Hint } from "./events.ts";
import {
  AT_FDCWD,
  cString,
  Errno,
  errno,
  errnoName,
  type Lib,
  libc,
  O_CLOEXEC,
  O_DIRECTORY,
  O_PATH,
  O_RDONLY,
} from "../fs/libc.ts";
import { MAX_FAILURES, Poller } from "./poller.ts";

/** fanotify cannot be used here (not root, old kernel, unsupported filesystem). */
export class FanotifyUnavailableError extends ReplicatorError {}

// fanotify_init(2) flags
const FAN_CLOEXEC = 0x1;
const FAN_NONBLOCK = 0x2;
const FAN_CLASS_NOTIF = 0x0;
const FAN_REPORT_DIR_FID = 0x400;
const FAN_REPORT_NAME = 0x800;
const FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME;
const O_LARGEFILE = 0o100000;

// fanotify_mark(2) flags
const FAN_MARK_ADD = 0x1;
const FAN_MARK_FLUSH = 0x80;
const FAN_MARK_FILESYSTEM = 0x100;

// event bits
const FAN_MODIFY = 0x2;
const FAN_ATTRIB = 0x4;
const FAN_CLOSE_WRITE = 0x8;
const FAN_MOVED_FROM = 0x40;
const FAN_MOVED_TO = 0x80;
const FAN_CREATE = 0x100;
const FAN_DELETE = 0x200;
const FAN_DELETE_SELF = 0x400;
const FAN_MOVE_SELF = 0x800;
const FAN_Q_OVERFLOW = 0x4000;
const FAN_EVENT_ON_CHILD = 0x0800_0000;
const FAN_ONDIR = 0x4000_0000;

/** The events the source asks for (see the module notes). */
export const FANOTIFY_MASK = FAN_CLOSE_WRITE | FAN_MODIFY | FAN_ATTRIB | FAN_CREATE |
  FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_DELETE_SELF | FAN_MOVE_SELF | FAN_ONDIR |
  FAN_EVENT_ON_CHILD;

// info record types
const INFO_FID = 1;
const INFO_DFID_NAME = 2;
const INFO_DFID = 3;
const INFO_OLD_DFID_NAME = 10;
const INFO_NEW_DFID_NAME = 12;

const MAX_HANDLE_SZ = 128;

const { EPERM, ENOENT, EINTR, EAGAIN, ENOTDIR, EINVAL, EMFILE, ENOSYS, ELOOP } = Errno;
const { EOPNOTSUPP, ENODEV, EXDEV, ESTALE } = Errno;

const READ_BUFFER_BYTES = 64 * 1024;
/** Reads taken into one batch at most (64 KiB each). */
const MAX_READS_PER_BATCH = 64;
/** Remembered outside handles, forgotten all at once beyond this. */
const MAX_OUTSIDE = 65_536;
/** Poll timeout: close() wakes the poll at once; this only bounds a lost wakeup. */
const POLL_MS = 1000;

const NEEDS_ROOT = "fanotify needs root (CAP_SYS_ADMIN); run lento as root, " +
  "load the presto module, or let sync scan";

// ---------------------------------------------------------------- parsing

/** One information record of an event: a directory (or object) handle and a name. */
export interface FanotifyInfo {
  /** FAN_EVENT_INFO_TYPE_*: 1 FID, 2 DFID_NAME, 3 DFID, 10 OLD_DFID_NAME, 12 NEW_DFID_NAME. */
  type: number;
  /** The filesystem id (8 bytes) as a key. */
  fsid: string;
  /** struct file_handle as the kernel wrote it: handle_bytes, handle_type, f_handle. */
  handle: Uint8Array;
  /** The entry name ("" if the record has none; "." for the directory itself). */
  name: string;
}

/** One event record. */
export interface FanotifyEvent {
  mask: number;
  /** An open descriptor of the object (-1 with handle reporting, the normal case). */
  fd: number;
  pid: number;
  infos: FanotifyInfo[];
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** The name of an info whose name is not UTF-8 ("/" is in no real name). */
const NOT_UTF8 = "/";

/**
 * Decodes the records of one read(2) of a fanotify fd. Stops at a record
 * whose length does not fit (the kernel never writes a partial record).
 */
export function parseFanotifyEvents(buf: Uint8Array): FanotifyEvent[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: FanotifyEvent[] = [];
  let off = 0;
  while (off + 24 <= buf.length) {
    const len = v.getUint32(off, true);
    const metaLen = v.getUint16(off + 6, true);
    if (len < 24 || metaLen < 24 || metaLen > len || off + len > buf.length) break;
    const event: FanotifyEvent = {
      mask: Number(v.getBigUint64(off + 8, true) & 0xffff_ffffn),
      fd: v.getInt32(off + 16, true),
      pid: v.getInt32(off + 20, true),
      infos: [],
    };
    for (let i = off + metaLen; i + 4 <= off + len;) {
      const type = buf[i];
      const infoLen = v.getUint16(i + 2, true);
      if (infoLen < 4 || i + infoLen > off + len) break;
      const hasHandle = type === INFO_FID || type === INFO_DFID_NAME || type === INFO_DFID ||
        type === INFO_OLD_DFID_NAME || type === INFO_NEW_DFID_NAME;
      if (hasHandle && infoLen >= 20) {
        const bytes = v.getUint32(i + 12, true);
        const end = i + 20 + bytes;
        if (end <= i + infoLen) {
          let name = "";
          if (
            type === INFO_DFID_NAME || type === INFO_OLD_DFID_NAME || type === INFO_NEW_DFID_NAME
          ) {
            let z = end;
            while (z < i + infoLen && buf[z] !== 0) z++;
            try {
              name = decoder.decode(buf.subarray(end, z));
            } catch {
              name = NOT_UTF8;
            }
          }
          event.infos.push({
            type,
            fsid: latin1(buf.subarray(i + 4, i + 12)),
            handle: buf.slice(i + 12, end),
            name,
          });
        }
      }
      i += infoLen;
    }
    out.push(event);
    off += len;
  }
  return out;
}

function latin1(b: Uint8Array): string {
  return String.fromCharCode(...b);
}

/** The key of a handle: fsid + handle_type + f_handle (handle_bytes is implied). */
const FSID_CHARS = 8;

function keyOf(fsid: string, handle: Uint8Array): string {
  return fsid + latin1(handle.subarray(4));
}

// ---------------------------------------------------------------- the directory tree

interface Dir {
  key: string;
  /** struct file_handle, for open_by_handle_at. */
  handle: Uint8Array;
  name: string;
  parent: Dir | null;
  children: Map<string, Dir>;
}

type Lookup = { path: string; node: Dir | null } | "outside" | "error";

function inMeta(p: string): boolean {
  return p === META_DIR || p.startsWith(META_DIR + "/");
}

function join(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

/** The source's record of the volume's directories by handle. */
class DirTree {
  readonly #root: string;
  /** mount id -> fsid key, for name_to_handle_at results. */
  readonly #mountFsid = new Map<number, string>();
  /** fsid key -> O_RDONLY fd of a directory on that filesystem, for open_by_handle_at. */
  readonly mountFds = new Map<string, number>();
  #byKey = new Map<string, Dir>();
  #outside = new Set<string>();
  #top: Dir | null = null;
  readonly #handleBuf = new Uint8Array(8 + MAX_HANDLE_SZ);
  readonly #mountId = new Int32Array(1);
  readonly #fanFd: number;
  /**
   * While opening: a directory whose filesystem cannot be watched is an
   * error. Afterwards (a mount that appeared later) it is left unwatched.
   */
  strict = true;

  constructor(root: string, fanFd: number) {
    this.#root = root;
    this.#fanFd = fanFd;
  }

  /** Number of directories known (tests). */
  get size(): number {
    return this.#byKey.size;
  }

  /** Forgets everything and walks the volume again. Marks new filesystems. */
  rebuild(): void {
    this.#byKey = new Map();
    this.#outside = new Set();
    this.#top = null;
    const h = this.#nameToHandle(this.#root);
    if (!h) return; // the root is gone: every event resolves as outside
    this.#top = { key: h.key, handle: h.handle, name: "", parent: null, children: new Map() };
    this.#byKey.set(h.key, this.#top);
    this.#walk(this.#top);
  }

  /** Path of a node relative to the root. */
  pathOf(d: Dir): string {
    let p = "";
    for (let n: Dir | null = d; n && n.parent; n = n.parent) p = p ? `${n.name}/${p}` : n.name;
    return p;
  }

  #abs(rel: string): string {
    return rel === "" ? this.#root : `${this.#root}/${rel}`;
  }

  /** Finds the directory of a handle from an event. */
  lookup(fsid: string, handle: Uint8Array): Lookup {
    const key = keyOf(fsid, handle);
    const known = this.#byKey.get(key);
    if (known) return { path: this.pathOf(known), node: known };
    if (this.#outside.has(key)) return "outside";
    const r = this.#resolve(fsid, handle);
    if (r === "gone") return "outside"; // its removal or move is an event in its parent
    if (r === "error") return "error";
    if (r === "outside") {
      this.#rememberOutside(key);
      return "outside";
    }
    return { path: r.rel, node: this.#bindPath(r.rel, key) };
  }

  /** The child `name` of `parent` as the tree knows it. */
  child(parent: Dir, name: string): Dir | undefined {
    return parent.children.get(name);
  }

  /**
   * Binds the directory now at `parent`/`name` (created or moved in); a
   * directory the tree did not know is walked. Returns the node, or null if
   * there is no directory there any more.
   */
  bindChild(parent: Dir, name: string): Dir | null {
    const rel = join(this.pathOf(parent), name);
    if (parent === this.#top && name === META_DIR) return null;
    const h = this.#nameToHandle(this.#abs(rel));
    if (!h) return null;
    const known = this.#byKey.get(h.key);
    if (known) {
      this.#attach(known, parent, name);
      return known;
    }
    const node: Dir = { key: h.key, handle: h.handle, name, parent: null, children: new Map() };
    this.#outside.delete(h.key);
    this.#byKey.set(h.key, node);
    this.#attach(node, parent, name);
    this.#walk(node);
    return node;
  }

  /** Drops a directory and everything the tree knows below it. */
  unbind(d: Dir): void {
    if (d === this.#top) return;
    if (d.parent?.children.get(d.name) === d) d.parent.children.delete(d.name);
    d.parent = null;
    const stack = [d];
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (this.#byKey.get(n.key) === n) this.#byKey.delete(n.key);
      stack.push(...n.children.values());
    }
  }

  /** True if `d` is still in the tree. */
  bound(d: Dir): boolean {
    return this.#byKey.get(d.key) === d;
  }

  /** Checks where a directory that was moved away is now, and rebinds or drops it. */
  relocate(d: Dir): void {
    if (!this.bound(d)) return;
    const r = this.#resolve(d.key.slice(0, FSID_CHARS), d.handle);
    if (typeof r !== "object") return this.unbind(d); // outside, gone or unknowable
    if (r.rel === this.pathOf(d)) return;
    const slash = r.rel.lastIndexOf("/");
    const parent = slash < 0 ? this.#top : this.#bindPath(r.rel.slice(0, slash), null);
    if (!parent || r.rel === "") return this.unbind(d);
    this.#attach(d, parent, r.rel.slice(slash + 1));
  }

  #attach(d: Dir, parent: Dir, name: string): void {
    if (d.parent === parent && d.name === name && parent.children.get(name) === d) return;
    if (d.parent?.children.get(d.name) === d) d.parent.children.delete(d.name);
    const there = parent.children.get(name);
    if (there && there !== d) this.unbind(there);
    d.parent = parent;
    d.name = name;
    parent.children.set(name, d);
  }

  /**
   * Binds every directory on the way to `rel`; returns its node if there is
   * one (with handle `key`, unless `key` is null).
   */
  #bindPath(rel: string, key: string | null): Dir | null {
    if (!this.#top) return null;
    let node: Dir = this.#top;
    if (rel !== "") {
      for (const part of rel.split("/")) {
        const next: Dir | null = node.children.get(part) ?? this.bindChild(node, part);
        if (!next) return null;
        node = next;
      }
    }
    return key === null || node.key === key ? node : null;
  }

  /** Adds the directories below `d` (known ones are moved under it). */
  #walk(d: Dir): void {
    const stack = [d];
    while (stack.length > 0) {
      const n = stack.pop()!;
      const abs = this.#abs(this.pathOf(n));
      let entries: Deno.DirEntry[];
      try {
        entries = [...Deno.readDirSync(abs)];
      } catch {
        continue; // unreadable or gone: events resolve it later
      }
      for (const e of entries) {
        if (!e.isDirectory || e.isSymlink) continue;
        if (n === this.#top && e.name === META_DIR) continue;
        const h = this.#nameToHandle(`${abs}/${e.name}`);
        if (!h) continue;
        let c = this.#byKey.get(h.key);
        if (c) {
          this.#attach(c, n, e.name);
        } else {
          c = { key: h.key, handle: h.handle, name: e.name, parent: null, children: new Map() };
          this.#outside.delete(h.key);
          this.#byKey.set(h.key, c);
          this.#attach(c, n, e.name);
        }
        stack.push(c);
      }
    }
  }

  #rememberOutside(key: string): void {
    if (this.#outside.size >= MAX_OUTSIDE) this.#outside.clear();
    this.#outside.add(key);
  }

  /** name_to_handle_at(2) of an absolute path, not following a final symlink. */
  #nameToHandle(abs: string): { key: string; handle: Uint8Array } | null {
    const b = this.#handleBuf;
    const v = new DataView(b.buffer);
    v.setUint32(0, MAX_HANDLE_SZ, true);
    const path = cString(abs);
    if (libc().name_to_handle_at(AT_FDCWD, path, b, new Uint8Array(this.#mountId.buffer), 0) < 0) {
      const e = errno();
      if (this.strict && e === EOPNOTSUPP) throw markError(abs, e);
      return null;
    }
    const fsid = this.#fsidOfMount(this.#mountId[0], abs);
    if (fsid === null) return null;
    const handle = b.slice(0, 8 + v.getUint32(0, true));
    return { key: keyOf(fsid, handle), handle };
  }

  /**
   * The fsid of a mount seen for the first time (statfs), marking its
   * filesystem if it is a new one.
   */
  #fsidOfMount(mountId: number, abs: string): string | null {
    const have = this.#mountFsid.get(mountId);
    if (have !== undefined) return have;
    const st = new Uint8Array(120);
    if (libc().statfs(cString(abs), st) < 0) return null;
    const fsid = latin1(st.subarray(56, 64));
    if (!this.mountFds.has(fsid)) {
      const fd = libc().open(cString(abs), O_RDONLY | O_DIRECTORY | O_CLOEXEC); // not O_PATH: EBADF
      if (fd < 0) return null;
      const rc = libc().fanotify_mark(
        this.#fanFd,
        FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
        BigInt(FANOTIFY_MASK),
        AT_FDCWD,
        cString(abs),
      );
      if (rc < 0) {
        const e = errno();
        libc().close(fd);
        if (this.strict) throw markError(abs, e);
        return null;
      }
      this.mountFds.set(fsid, fd);
    }
    this.#mountFsid.set(mountId, fsid);
    return fsid;
  }

  /** Where the directory of a handle is now: a volume-relative path, or why not. */
  #resolve(fsid: string, handle: Uint8Array): { rel: string } | "outside" | "gone" | "error" {
    const mountFd = this.mountFds.get(fsid);
    if (mountFd === undefined) return "outside"; // a filesystem the source did not mark
    const fd = libc().open_by_handle_at(mountFd, handle, O_PATH | O_CLOEXEC);
    if (fd < 0) {
      const e = errno();
      return e === ESTALE || e === ENOENT ? "gone" : "error";
    }
    let link: string;
    try {
      link = Deno.readLinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return "error";
    } finally {
      libc().close(fd);
    }
    if (link.endsWith(" (deleted)")) return "gone";
    let rel: string;
    if (link === this.#root) rel = "";
    else if (this.#root === "/") rel = link.slice(1);
    else if (link.startsWith(this.#root + "/")) rel = link.slice(this.#root.length + 1);
    else return "outside";
    return inMeta(rel) ? "outside" : { rel };
  }
}

function markError(path: string, e: number): FanotifyUnavailableError {
  if (e === EPERM) return new FanotifyUnavailableError(NEEDS_ROOT);
  if (e === ENODEV || e === EOPNOTSUPP || e === EXDEV || e === EINVAL) {
    return new FanotifyUnavailableError(
      `fanotify cannot watch the filesystem holding ${path} (${errnoName(e)}: it does not ` +
        `report file handles); load the presto module, or let sync scan`,
    );
  }
  if (e === ENOENT || e === ENOTDIR || e === ELOOP) {
    return new FanotifyUnavailableError(`cannot watch ${path}: it is not a directory`);
  }
  return new FanotifyUnavailableError(
    `cannot place a fanotify mark on ${path} (${errnoName(e)}); load the presto module, ` +
      `or let sync scan`,
  );
}

// ---------------------------------------------------------------- the source

/**
 * Opens a fanotify source on the volume rooted at `root`, armed when it
 * returns (rescan afterwards: the scan plus the events is the complete
 * picture). Throws FanotifyUnavailableError if fanotify cannot be used.
 */
export function openFanotify(root: string): FanotifySource {
  let real: string;
  try {
    real = Deno.realPathSync(root);
    if (!Deno.statSync(real).isDirectory) throw new Deno.errors.NotADirectory(real);
  } catch (e) {
    throw new FanotifyUnavailableError(`cannot watch ${root}: ${(e as Error).message}`);
  }
  let c: Lib;
  try {
    c = libc();
  } catch (e) {
    throw new FanotifyUnavailableError(
      `fanotify is not available (${(e as Error).message}): it needs Linux and FFI permission`,
    );
  }
  const fd = c.fanotify_init(
    FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME,
    O_RDONLY | O_LARGEFILE,
  );
  if (fd < 0) {
    const e = errno();
    if (e === EPERM) throw new FanotifyUnavailableError(NEEDS_ROOT);
    if (e === EINVAL || e === ENOSYS) {
      throw new FanotifyUnavailableError(
        `this kernel has no fanotify with directory handles (${errnoName(e)}; needs Linux 5.9 ` +
          `or later); load the presto module, or let sync scan`,
      );
    }
    throw new FanotifyUnavailableError(
      `fanotify_init failed (${errnoName(e)}${
        e === EMFILE ? ": too many fanotify groups, see fs.fanotify.max_user_groups" : ""
      }); load the presto module, or let sync scan`,
    );
  }
  const tree = new DirTree(real, fd);
  const poller = Poller.open(
    "fanotify",
    fd,
    (e) => new FanotifyUnavailableError(`cannot create an eventfd (${errnoName(e)})`),
    {
      onClose: () =>
        void c.fanotify_mark(fd, FAN_MARK_FLUSH | FAN_MARK_FILESYSTEM, 0n, AT_FDCWD, null),
      onRelease: () => {
        for (const m of tree.mountFds.values()) c.close(m);
      },
    },
  );
  try {
    // The walk marks each filesystem it meets (the root's first) before
    // reading its directories, so nothing done meanwhile is missed.
    tree.rebuild();
    if (tree.size === 0) throw new FanotifyUnavailableError(`cannot watch ${real}: it vanished`);
    tree.strict = false;
  } catch (e) {
    poller.close(); // closes the mount fds, the eventfd and the group
    throw e;
  }
  return new FanotifySource(real, poller, tree);
}

/** A fanotify reader for one volume; made by {@link openFanotify}. */
export class FanotifySource implements EventSource {
  readonly name = "fanotify";
  /** The volume root, symlinks resolved. */
  readonly root: string;
  readonly #poller: Poller;
  readonly #tree: DirTree;
  readonly #buf = new Uint8Array(READ_BUFFER_BYTES);
  /** Reads that failed in a row. */
  #readFailures = 0;

  constructor(root: string, poller: Poller, tree: DirTree) {
    this.root = root;
    this.#poller = poller;
    this.#tree = tree;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#poller.closed;
  }

  /** Number of volume directories the source knows by handle (tests, diagnostics). */
  get knownDirectories(): number {
    return this.#tree.size;
  }

  next(): Promise<Hint[]> {
    return this.#poller.turn(() => this.#next());
  }

  queued(): boolean {
    return this.#poller.queued();
  }

  /** Removes the marks and ends a pending next(). */
  close(): void {
    this.#poller.close();
  }

  async #next(): Promise<Hint[]> {
    const poller = this.#poller;
    while (!poller.closed) {
      const hints = this.#drain();
      if (hints.length > 0) return hints;
      const woke = await poller.wait(POLL_MS);
      if (woke === "closed") break;
      if (woke !== "retry") poller.progress(); // the poll worked (a failed one is counted)
    }
    return [];
  }

  /** Reads everything there is (bounded) and turns it into hints. */
  #drain(): Hint[] {
    const paths = new Set<string>();
    let lost = 0;
    for (let reads = 0; reads < MAX_READS_PER_BATCH && !this.#poller.closed; reads++) {
      const n = Number(libc().read(this.#poller.fd, this.#buf, BigInt(READ_BUFFER_BYTES)));
      if (n <= 0) {
        const e = n < 0 ? errno() : 0;
        if (e === EINTR) continue;
        if (e !== EAGAIN && n < 0) lost += this.#readFailed(e);
        break;
      }
      this.#readFailures = 0;
      for (const ev of parseFanotifyEvents(this.#buf.subarray(0, n))) {
        if (ev.fd >= 0) libc().close(ev.fd);
        if (ev.mask & FAN_Q_OVERFLOW) {
          lost++;
          continue;
        }
        lost += this.#apply(ev, paths);
      }
    }
    if (lost > 0) this.#tree.rebuild(); // the tree may have missed moves: start again
    const hints: Hint[] = [];
    if (lost > 0) hints.push({ kind: "overflow", lost });
    if (paths.size > 0) hints.push({ kind: "paths", paths: [...paths] });
    return hints;
  }

  /**
   * A read that failed (as Presto's reader does, it is counted, and only
   * MAX_FAILURES in a row stop the source): the kernel drops an event it
   * could not copy out, so it counts as lost (a rescan follows). Returns 1.
   */
  #readFailed(e: number): number {
    if (++this.#readFailures >= MAX_FAILURES) {
      this.#poller.fail(`read() keeps failing (${errnoName(e)})`);
    }
    return 1;
  }

  /** Adds the paths of one event and keeps the tree current; returns 1 if it was lost. */
  #apply(ev: FanotifyEvent, paths: Set<string>): number {
    let lost = 0;
    for (const info of ev.infos) {
      const dir = this.#tree.lookup(info.fsid, info.handle);
      if (dir === "outside") continue;
      if (dir === "error") {
        lost = 1;
        continue;
      }
      if (inMeta(dir.path)) continue;
      if (info.name === NOT_UTF8) {
        lost = 1;
        continue;
      }
      const self = info.name === "" || info.name === ".";
      const p = self ? dir.path : join(dir.path, info.name);
      if (inMeta(p)) continue;
      if (p !== "") paths.add(p);
      const node = dir.node;
      if (!node) continue;
      if (self) {
        if (ev.mask & FAN_DELETE_SELF) this.#tree.unbind(node);
        continue;
      }
      if (!(ev.mask & FAN_ONDIR)) continue;
      const isNew = info.type === INFO_NEW_DFID_NAME;
      const isOld = info.type === INFO_OLD_DFID_NAME;
      if (ev.mask & (FAN_MOVED_FROM | FAN_DELETE) || isOld) {
        const c = this.#tree.child(node, info.name);
        if (c && (ev.mask & FAN_DELETE)) this.#tree.unbind(c);
        else if (c) this.#tree.relocate(c); // where it is now: in the volume, or not
      }
      if ((ev.mask & (FAN_CREATE | FAN_MOVED_TO) && !isOld) || isNew) {
        this.#tree.bindChild(node, info.name);
      }
    }
    return lost;
  }
}
