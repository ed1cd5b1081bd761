/**
 * The operations a user runs, as functions: the public API behind the CLI.
 *
 * @example
 * ```ts
 * init("/srv/a", { host: "alpha" });
 * await clone("/srv/a", "/srv/b", { host: "beta" });
 * const [report] = await sync("/srv/b", ["/srv/a"]);
 * ```
 * @module
 */

import { absolutePath } from "./fs/paths.ts";

import { findRoot, isReplica, Volume } from "./volume/volume.ts";
import { openReplica } from "./apply/open.ts";
import {
  type PeerOptions,
  randomId,
  readConfig,
  type VolumeConfig,
  writeConfig,
} from "./volume/config.ts";
import { layoutOf } from "./volume/layout.ts";
import { decodeRecord, encodeRecord, type KmlRecord, NO_DIGEST, Op } from "./kml/record.ts";
import { capture } from "./capture/capture.ts";
import { type Change, scan } from "./capture/scan.ts";
import { type SyncReport, syncVolumes, syncWith } from "./sync/sync.ts";
import type { ServerOptions } from "./sync/connect.ts";
import type { Peer } from "./sync/peer.ts";
// The network side (sessions, ssh, https) is imported where it is used: local
// commands do not load it at start-up.
import type { SshConnection, SshOptions } from "./transport/ssh.ts";
import type { HttpsOptions } from "./transport/websocket.ts";
import type { Progress } from "./sync/pull.ts";
import { flushLento } from "./capture/lento_client.ts";
import type { ExpectEntry } from "./expect/expect.ts";
import { PeerMismatchError, ReplicatorError, UsageError } from "./errors.ts";

/** Options naming this replica. */
export interface HostOptions {
  host?: string;
  /** Called as files are fetched (for a progress display). */
  progress?: Progress;
}

/** Makes `dir` a new volume whose replica holds the permit (epoch 1), recording what is already there. */
export function init(dir: string, opts: HostOptions = {}): void {
  const command = commandLine(["init", absolutePath(dir)], opts);
  const vol = Volume.create(dir, randomId(), opts.host ?? Deno.hostname(), command);
  try {
    exitHereForTests("created");
    const [permit] = vol.ownRecords([{ ...noChange(), op: Op.Permit, target: vol.hostId }], 1);
    vol.commitRecords([permit], [encodeRecord(permit)]);
    capture(vol);
    vol.finishCreating();
  } finally {
    vol.close();
  }
}

/**
 * Makes `dir` a new replica of the volume at `source` (without the permit) and
 * fills it. A directory left by an interrupted clone is cloned into again.
 */
export async function clone(
  source: string,
  dir: string,
  opts: HostOptions & RemoteOptions = {},
): Promise<SyncReport> {
  if (isRemote(source)) return await cloneRemote(source, dir, opts);
  const src = openReplica(localPath(source));
  let vol: Volume | undefined;
  try {
    const command = commandLine(["clone", src.root, absolutePath(dir)], opts);
    vol = Volume.create(dir, src.config.volumeId, opts.host ?? Deno.hostname(), command);
    exitHereForTests("created");
    const report = await syncVolumes(vol, src, { progress: opts.progress });
    vol.finishCreating();
    return report;
  } finally {
    vol?.close();
    src.close();
  }
}

/**
 * Serves the replica containing `dir` over stdin and stdout (what an ssh
 * peer runs), for one session. Resolves true if it ended with BYE.
 */
export async function serveStdio(dir: string, opts: ServerOptions = {}): Promise<boolean> {
  findRoot(dir); // not a replica: say so now, not to the client
  const { serveReplica } = await import("./sync/connect.ts");
  const { streamChannel } = await import("./wire/session.ts");
  return await serveReplica(streamChannel(Deno.stdin.readable, Deno.stdout.writable), dir, opts);
}

/** How `serve --listen` runs. */
export interface ListenServeOptions extends ServerOptions {
  /** HOST:PORT */
  listen: string;
  /** The token clients must present; null: none. */
  token: string | null;
  cert?: string;
  key?: string;
  signal: AbortSignal;
  onListen?: (port: number) => void;
}

/** Serves the replica containing `dir` over HTTPS until `signal` aborts. */
export async function serveHttps(dir: string, opts: ListenServeOptions): Promise<void> {
  const root = findRoot(dir);
  const { serveReplica } = await import("./sync/connect.ts");
  const { listen, parseListen } = await import("./transport/listen.ts");
  await listen({
    ...parseListen(opts.listen),
    token: opts.token,
    cert: opts.cert,
    key: opts.key,
    signal: opts.signal,
    log: opts.log,
    onListen: opts.onListen,
    session: async (ch, from) => {
      await serveReplica(ch, root, {
        readOnly: opts.readOnly,
        log: (line) => opts.log?.(`${from}: ${line}`),
      });
    },
  });
}

/** How to reach peers on other hosts. */
export type RemoteOptions = SshOptions & HttpsOptions & {
  /** Ask for file content deflated where it helps. */
  compress?: boolean;
};

/** True for a peer on another host (ssh://, https://, http://). */
function isRemote(peer: string): boolean {
  return /^(ssh|https?):\/\//.test(peer);
}

/** A connection to a peer on another host, whatever the transport (ssh's shape). */
type Dialed = SshConnection;

async function dial(url: string, opts: RemoteOptions): Promise<Dialed> {
  if (url.startsWith("ssh://")) {
    const { openSsh, parseSshUrl } = await import("./transport/ssh.ts");
    return openSsh(parseSshUrl(url), opts);
  }
  const { openWebSocket } = await import("./transport/websocket.ts");
  const channel = await openWebSocket(url, opts);
  return {
    channel,
    explain: (e) => Promise.resolve(e),
    close: () => Promise.resolve(channel.close()),
  };
}

/**
 * Runs `use` with a session to the replica at `url`, for the open replica
 * `local` (null: a clone). Ends the session and the connection after it;
 * a failure is told as the transport explains it (ssh's own, say).
 */
async function withRemotePeer<T>(
  url: string,
  local: Volume | null,
  opts: RemoteOptions,
  use: (peer: Peer) => Promise<T>,
): Promise<T> {
  const conn = await dial(url, opts);
  const { connect } = await import("./sync/connect.ts");
  try {
    const peer = await connect(conn.channel, local, url, { compress: opts.compress });
    try {
      return await use(peer);
    } finally {
      await peer.close();
    }
  } catch (e) {
    throw await conn.explain(e);
  } finally {
    await conn.close();
  }
}

/** Clones the replica at a URL: this side pulls; the peer takes nothing yet. */
function cloneRemote(url: string, dir: string, opts: HostOptions & RemoteOptions) {
  return withRemotePeer(url, null, withPeerOptions(opts), async (peer) => {
    const command = commandLine(["clone", url, absolutePath(dir)], opts);
    const vol = Volume.create(dir, peer.who.volumeId, opts.host ?? Deno.hostname(), command);
    try {
      exitHereForTests("created");
      const report = await syncWith(vol, peer, { progress: opts.progress, oneWay: true });
      vol.finishCreating();
      return report;
    } finally {
      vol.close();
    }
  });
}

/** A peer that could not be synced (the others still were). */
export interface PeerFailure {
  peer: string;
  error: ReplicatorError;
}

/** How a sync reaches its peers. */
export type SyncOptions = RemoteOptions & { progress?: Progress };

/**
 * Syncs the volume containing `dir` with each peer (default: its named peers):
 * a directory, a file:// URL, or ssh://[user@]host[:port]/path.
 * With several peers, one that fails (busy, unreachable, not a replica) is
 * reported and the others are still synced; with one, its error is thrown.
 */
export async function sync(
  dir: string,
  peers: string[] = [],
  opts: SyncOptions = {},
): Promise<(SyncReport | PeerFailure)[]> {
  const root = findRoot(dir);
  // volume.json is replaced atomically: reading it needs no lock.
  const targets = targetsOf(readConfig(layoutOf(root).config), peers);
  if (targets.length === 0) {
    throw new UsageError(
      "no peer given and none configured; name one, or add one with 'replicator peer add NAME URL'",
    );
  }
  const out: (SyncReport | PeerFailure)[] = [];
  for (const { label, url, stored } of targets) {
    try {
      out.push(
        isRemote(url)
          ? await syncRemote(root, url, withPeerOptions(opts, stored))
          : await syncOne(root, localPath(url), opts),
      );
    } catch (e) {
      if (targets.length === 1 || !(e instanceof ReplicatorError)) throw e;
      out.push({ peer: label, error: e });
    }
  }
  return out;
}

/** A peer a sync reaches: how a failure names it, its URL, and a named peer's stored options. */
interface Target {
  /** Its name if it is a named peer, else the peer as given. */
  label: string;
  url: string;
  stored?: PeerOptions;
}

/** The peers a sync with `peers` reaches (none given: the named ones), named ones by their URL. */
function targetsOf(config: VolumeConfig, peers: string[]): Target[] {
  const named = config.peers;
  return (peers.length > 0 ? peers : Object.keys(named)).map((p) =>
    Object.hasOwn(named, p)
      ? { label: p, url: named[p], stored: config.peerOptions?.[p] ?? {} }
      : { label: p, url: p }
  );
}

/**
 * The peers a sync of the volume configured as `config` with `peers`
 * reaches, as it would reach them: each local directory's absolute path (a
 * named peer's URL resolved here, as the sync resolves it), with the label a
 * failure names it by; null if any is on another host, or none is given or
 * named.
 */
export function localTargets(
  config: VolumeConfig,
  peers: string[],
): { paths: string[]; labels: string[] } | null {
  const targets = targetsOf(config, peers);
  if (targets.length === 0 || targets.some((t) => isRemote(t.url))) return null;
  return { paths: targets.map((t) => localPath(t.url)), labels: targets.map((t) => t.label) };
}

/**
 * `opts` completed by a named peer's stored options (the command line's win);
 * the token, last, from REPLICATOR_TOKEN.
 */
function withPeerOptions(opts: SyncOptions, stored: PeerOptions = {}): SyncOptions {
  let token = opts.token;
  if (token === undefined && stored.tokenFile) token = readTokenFile(stored.tokenFile);
  token ??= Deno.env.get("REPLICATOR_TOKEN")?.trim() || undefined;
  return {
    ...opts,
    ssh: opts.ssh ?? stored.ssh,
    compress: opts.compress ?? stored.compress,
    remoteCmd: opts.remoteCmd ?? stored.remoteCmd,
    caFile: opts.caFile ?? stored.caFile,
    token,
  };
}

/** The token in `file` (its first line). */
export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read the token file ${file}: ${(e as Error).message}`);
  }
  const token = text.split("\n")[0].trim();
  if (!token) throw new UsageError(`the token file ${file} is empty`);
  return token;
}

/** Syncs with a replica on another host. */
async function syncRemote(root: string, url: string, opts: SyncOptions): Promise<SyncReport> {
  if (url.startsWith("ssh://")) {
    const { parseSshUrl } = await import("./transport/ssh.ts");
    parseSshUrl(url); // a malformed URL is a usage error, before locking
  }
  const journaled = await flushLento(root);
  const vol = openReplica(root);
  try {
    return await withRemotePeer(
      url,
      vol,
      opts,
      (peer) => syncWith(vol, peer, { progress: opts.progress, journaled }),
    );
  } finally {
    vol.close();
  }
}

async function syncOne(root: string, peerRoot: string, opts: SyncOptions): Promise<SyncReport> {
  if (!isReplica(peerRoot)) {
    throw new PeerMismatchError(
      `${peerRoot} is not a replica (it has no .replicator/); check the peer's path`,
    );
  }
  // A side whose lento runs has its changes recorded already: no scan there.
  // (Asked first: the lentos record while this process checks the pair.)
  const flushed = Promise.all([flushLento(root), flushLento(peerRoot)]);
  try {
    refuseSelf(root, peerRoot);
  } catch (e) {
    await flushed; // a request is harmless; leave no socket behind
    throw e;
  }
  const [journaled, remoteJournaled] = await flushed;
  // Lock in path order, so two runs syncing the same pair in opposite directions cannot deadlock.
  const [first, second] = root < peerRoot ? [root, peerRoot] : [peerRoot, root];
  const a = openReplica(first);
  try {
    const b = openReplica(second);
    try {
      const [local, remote] = root === first ? [a, b] : [b, a];
      return await syncVolumes(local, remote, {
        progress: opts.progress,
        journaled,
        remoteJournaled,
      });
    } finally {
      b.close();
    }
  } finally {
    a.close();
  }
}

/**
 * A peer that is this replica under another name (a symlinked path, a copy
 * with the same host id) is refused before locking: locking it twice would
 * only say "busy".
 */
function refuseSelf(root: string, peerRoot: string): void {
  const same = () => new PeerMismatchError(`${peerRoot} is this same replica (${root})`);
  if (Deno.realPathSync(root) === Deno.realPathSync(peerRoot)) throw same();
  let ids: string[];
  try {
    ids = [root, peerRoot].map((r) => readConfig(layoutOf(r).config).hostId);
  } catch {
    return; // unreadable config: the open says what is wrong
  }
  if (ids[0] === ids[1]) throw same();
}

/** The command line that makes a replica, as a user would type it again. */
function commandLine(args: string[], opts: HostOptions): string {
  const words = ["replicator", ...args, ...(opts.host ? ["--host", opts.host] : [])];
  return words.map((w) => /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`)
    .join(" ");
}

/**
 * Test hook: REPLICATOR_EXIT_AT=created makes init and clone exit right after
 * creating `.replicator/`, as if killed there.
 */
function exitHereForTests(point: string): void {
  if (Deno.env.get("REPLICATOR_EXIT_AT") === point) Deno.exit(99);
}

/** A peer as a local path: a path or a file:// URL. */
function localPath(peer: string): string {
  if (peer.startsWith("file://")) return decodeURIComponent(new URL(peer).pathname);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(peer)) {
    throw new ReplicatorError(
      `peer ${peer}: give a directory, or a file://, ssh:// or https:// URL`,
    );
  }
  return absolutePath(peer);
}

/** Status of a replica. */
export interface Status {
  root: string;
  volumeId: string;
  hostId: string;
  hostName: string;
  permit: { epoch: number; holder: string; held: boolean };
  kml: { bytes: number; incarnation: string };
  peers: Record<string, string>;
  expect: ExpectEntry[];
  /** Names of the hosts this replica has met (from handshakes), by id. */
  hosts: Record<string, string>;
  /** Local changes not yet recorded (holder) or not publishable (others). */
  pending: { op: string; path: string; target?: string }[];
  /** Conflict copies present in the tree. */
  conflicts: string[];
}

/** Reports the state of the replica containing `dir`, without changing it. */
export function status(dir: string): Status {
  const vol = openReplica(dir);
  try {
    const conflicts: string[] = []; // one walk serves both the pending changes and the conflict copies
    const found = scan(vol.root, vol.state, (p) => CONFLICT_COPY.test(p) && conflicts.push(p));
    const p = vol.permit();
    return {
      root: vol.root,
      volumeId: vol.config.volumeId,
      hostId: vol.hostId,
      hostName: vol.config.hostName,
      permit: { epoch: p.epoch, holder: p.holder, held: p.holder === vol.hostId },
      kml: { bytes: vol.kml.size, incarnation: vol.kml.header.incarnation },
      peers: vol.config.peers,
      expect: vol.readExpect(),
      hosts: Object.fromEntries(vol.hostNames()),
      pending: found.changes.map(describeChange),
      conflicts: conflicts.sort(),
    };
  } finally {
    vol.close();
  }
}

function describeChange(c: Change): { op: string; path: string; target?: string } {
  const op = Op[c.op].toLowerCase();
  return c.target ? { op, path: c.path, target: c.target } : { op, path: c.path };
}

/** The name of a conflict copy: `NAME.conflict-<host>-<UTC time>`, maybe with `-N`. */
const CONFLICT_COPY = /\.conflict-[^/]+-\d{8}T\d{6}Z(-\d+)?$/;

/** A record with its place in the log, and its origin's name if known. */
export interface LogEntry extends KmlRecord {
  offset: number;
  originName?: string;
  /** A permit record's holder, by name, if known. */
  targetName?: string;
}

/** Every record of the replica's KML, oldest first. */
export function log(dir: string): LogEntry[] {
  const vol = openReplica(dir);
  try {
    const names = vol.hostNames();
    return [...vol.kml.frames()].map((f) => {
      const r = decodeRecord(f.bytes);
      const targetName = r.op === Op.Permit ? names.get(r.target) : undefined;
      return { offset: f.offset, ...r, originName: names.get(r.originHost), targetName };
    });
  } finally {
    vol.close();
  }
}

/** Adds, replaces or removes a named peer, with how to reach it (ssh, token, CA). */
export function setPeer(
  dir: string,
  name: string,
  url: string | null,
  options: PeerOptions = {},
): void {
  const vol = openReplica(dir);
  try {
    if (url === null && !(name in vol.config.peers)) {
      throw new ReplicatorError(`no peer named ${name}`);
    }
    const peers = { ...vol.config.peers };
    const peerOptions = { ...vol.config.peerOptions };
    delete peerOptions[name];
    if (url === null) delete peers[name];
    else peers[name] = url;
    const set = Object.entries(options).filter(([, v]) => v !== undefined);
    if (url !== null && set.length > 0) peerOptions[name] = Object.fromEntries(set);
    vol.config = { ...vol.config, peers, peerOptions };
    writeConfig(vol.layout.config, vol.config);
  } finally {
    vol.close();
  }
}

export type { PeerOptions };

/** The named peers. */
export function listPeers(dir: string): Record<string, string> {
  const vol = openReplica(dir);
  try {
    return vol.config.peers;
  } finally {
    vol.close();
  }
}

function noChange(): Change {
  return {
    op: Op.Store,
    path: "",
    target: "",
    uid: -1,
    gid: -1,
    owner: "",
    group: "",
    mode: 0,
    size: 0,
    mtimeNs: 0n,
    digest: NO_DIGEST,
  };
}
