/**
 * Printing results for people (quiet unless something happened) and for
 * programs (--json: one JSON document on stdout).
 *
 * @module
 */

import type { LogEntry, PeerFailure, Status } from "../replica.ts";
import type { SyncReport } from "../sync/sync.ts";
import { Op } from "../kml/record.ts";
import { Exit } from "../errors.ts";

/** Output flags. */
export interface OutputFlags {
  json?: boolean;
  verbose?: boolean;
  /** Name hosts by id (status, log). */
  ids?: boolean;
}

/** How a host is named: its name if known (its id with --ids, or if unknown). */
function hostLabel(id: string, names: Record<string, string>, f: OutputFlags): string {
  const name = names[id];
  if (!id) return "unknown";
  if (f.ids) return name ? `${name} (${id})` : id;
  return name ?? id.slice(0, 8);
}

/** JSON with bigints as strings. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => typeof x === "bigint" ? x.toString() : x, 2);
}

/** Prints sync outcomes; returns the exit status they call for. */
export function printSyncReports(outcomes: (SyncReport | PeerFailure)[], f: OutputFlags): number {
  const failures = outcomes.filter((o): o is PeerFailure => "error" in o);
  const reports = outcomes.filter((o): o is SyncReport => !("error" in o));
  const problems = reports.flatMap((r) => [
    ...r.local.capture.problems,
    ...r.local.pull.problems,
    ...r.remote.capture.problems.map((p) => `peer: ${p}`),
    ...(r.remote.pull?.problems ?? []).map((p) => `peer: ${p}`),
  ]);
  const conflicts = reports.flatMap((r) => [
    ...r.local.pull.conflicts,
    ...(r.remote.pull?.conflicts ?? []).map((c) => `${r.peer}/${c}`),
  ]);
  if (f.json) {
    const failed = failures.map((x) => ({ peer: x.peer, error: x.error.message }));
    console.log(toJson([
      ...failed,
      ...reports.map((r) => ({
        peer: r.peer,
        peerName: r.peerName,
        capture: r.local.capture.via,
        peerCapture: r.remote.capture.via,
        recorded: r.local.capture.recorded,
        received: r.local.pull.received,
        applied: r.local.pull.applied,
        fetched: r.local.pull.fetched,
        fetchedBytes: r.local.pull.fetchedBytes,
        receivedBytes: r.local.pull.receivedBytes,
        sent: r.remote.pull?.received ?? null,
        conflicts: r.local.pull.conflicts,
        peerConflicts: r.remote.pull?.conflicts ?? [],
        deferred: r.local.pull.deferred,
        rejected: r.local.pull.rejected,
        problems: [...r.local.capture.problems, ...r.local.pull.problems],
        peerProblems: [...r.remote.capture.problems, ...(r.remote.pull?.problems ?? [])],
      })),
    ]));
  } else {
    for (const x of failures) console.error(`replicator: peer ${x.peer}: ${x.error.message}`);
    for (const p of problems) console.error(`replicator: ${p}`);
    for (const c of conflicts) {
      console.error(`replicator: conflict: kept the local version as ${c}`);
    }
    if (f.verbose) {
      for (const r of reports) {
        console.log(
          `${r.peer}: recorded ${r.local.capture.recorded} local changes, ` +
            `received ${r.local.pull.received} records (${r.local.pull.fetched} files, ` +
            `${r.local.pull.applied} steps applied), ` +
            (r.remote.pull ? `sent ${r.remote.pull.received}` : "sent nothing (read-only peer)"),
        );
      }
    }
  }
  if (failures.length > 0) return failures[0].error.exitCode;
  if (problems.length > 0) return Exit.failed;
  return conflicts.length > 0 ? Exit.conflicts : Exit.ok;
}

/** Prints status. */
export function printStatus(s: Status, f: OutputFlags): number {
  if (f.json) {
    console.log(toJson(s));
    return Exit.ok;
  }
  console.log(`volume ${s.volumeId} at ${s.root}`);
  console.log(`replica ${s.hostName} (${s.hostId})`);
  console.log(
    s.permit.held
      ? `permit: held by this replica (epoch ${s.permit.epoch})`
      : `permit: held by ${
        hostLabel(s.permit.holder, s.hosts, f)
      } (epoch ${s.permit.epoch}); local changes are kept, not published`,
  );
  for (const [name, url] of Object.entries(s.peers)) console.log(`peer ${name}: ${url}`);
  for (const e of s.expect) {
    console.log(
      `host ${hostLabel(e.host, s.hosts, f)}: read ${e.readSeq} records of its log; ` +
        `it has read ${e.confirmedSeq} of ours`,
    );
  }
  for (const p of s.pending) {
    console.log(
      `${s.permit.held ? "unrecorded" : "unpublished"}: ${p.op} ${p.path}${
        p.target ? ` -> ${p.target}` : ""
      }`,
    );
  }
  for (const c of s.conflicts) console.log(`conflict copy: ${c}`);
  return Exit.ok;
}

/** Prints the log. */
export function printLog(entries: LogEntry[], f: OutputFlags): number {
  if (f.json) {
    console.log(toJson(entries.map((e) => ({ ...e, op: Op[e.op].toLowerCase() }))));
    return Exit.ok;
  }
  const names: Record<string, string> = {};
  for (const e of entries) {
    if (e.originName) names[e.originHost] = e.originName;
    if (e.targetName) names[e.target] = e.targetName;
  }
  for (const e of entries) {
    const what = e.op === Op.Permit
      ? `holder ${hostLabel(e.target, names, f)}`
      : e.path + (e.op === Op.Rename || e.op === Op.Symlink ? ` -> ${e.target}` : "");
    console.log(
      `${e.offset}\t${hostLabel(e.originHost, names, f)}:${e.originSeq}\tepoch ${e.epoch}\t${
        Op[e.op].toLowerCase()
      }\t${what}`,
    );
  }
  return Exit.ok;
}
