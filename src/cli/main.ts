/**
 * The command line: parses arguments, calls the API in src/replica.ts, prints
 * results and maps errors to exit statuses. Silent when nothing happened.
 *
 * @module
 */

import { type OptionSpec, parseArgs } from "./args.ts";
import { absolutePath } from "../fs/paths.ts";
import {
  clone,
  init,
  listPeers,
  log,
  readTokenFile,
  type RemoteOptions,
  serveHttps,
  serveStdio,
  setPeer,
  status,
  sync,
} from "../replica.ts";
import { Exit, ReplicatorError, UsageError } from "../errors.ts";
import { type Failure, failureOf } from "./failure.ts";
import { syncByLento, takeSyncRequest } from "./delegated_sync.ts";
import { printLog, printStatus, printSyncReports, toJson } from "./output.ts";
import { progressBar } from "./progress.ts";
import { loadHashing } from "../fs/hash.ts";

const USAGE = `usage:
  replicator init [DIR] [--host NAME]
  replicator clone SOURCE [DIR] [--host NAME]
  replicator sync [PEER...] [-C DIR]
  replicator status [-C DIR] [--json] [--ids]
  replicator log [-C DIR] [--json] [--ids]
  replicator fsck [-C DIR] [--repair]
  replicator lento [-C DIR] [-v]
  replicator serve --stdio [-C DIR] [--read-only]
  replicator serve --listen HOST:PORT [-C DIR] [--read-only] [--token-file F | --insecure-no-auth]
                   [--tls-cert F --tls-key F]
  replicator peer (add NAME URL | remove NAME | list) [-C DIR]
      (add: --ssh, --remote-cmd, --token-file, --ca-file are kept for that peer)
options: -C DIR, --json, -v, --host NAME, --ssh CMD, --remote-cmd PATH, --token-file F,
  --ca-file F (https peers: a CA to trust), --compress (file content deflated on the wire)`;

const OPTIONS = {
  C: { type: "string", short: "C" },
  json: { type: "boolean" },
  ids: { type: "boolean" },
  verbose: { type: "boolean", short: "v" },
  host: { type: "string" },
  repair: { type: "boolean" },
  ssh: { type: "string" },
  "remote-cmd": { type: "string" },
  "token-file": { type: "string" },
  stdio: { type: "boolean" },
  listen: { type: "string" },
  "read-only": { type: "boolean" },
  "insecure-no-auth": { type: "boolean" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "ca-file": { type: "string" },
  compress: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies Record<string, OptionSpec>;

type Flags = {
  C?: string;
  json?: boolean;
  verbose?: boolean;
  ids?: boolean;
  host?: string;
  repair?: boolean;
  ssh?: string;
  "remote-cmd"?: string;
  stdio?: boolean;
  listen?: string;
  "read-only"?: boolean;
  "token-file"?: string;
  "insecure-no-auth"?: boolean;
  "tls-cert"?: string;
  "tls-key"?: string;
  "ca-file"?: string;
  compress?: boolean;
};

/** Runs the CLI with `args`; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(args);
    if (values.help) {
      console.log(USAGE);
      return Exit.ok;
    }
    const [command, ...rest] = positionals;
    if (!command) throw new UsageError("no command given");
    return await run(command, rest, values);
  } catch (e) {
    return reportFailure(failureOf(e));
  }
}

/** Says what failed (with the usage, for a usage error); returns the exit status. */
function reportFailure(failure: Failure): number {
  console.error(`replicator: ${failure.message}`);
  if (failure.usage) console.error(USAGE);
  return failure.exitCode;
}

function parse(args: string[]): { values: Flags & { help?: boolean }; positionals: string[] } {
  try {
    return parseArgs(args, OPTIONS) as { values: Flags; positionals: string[] };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * Commands that may hash much load node:crypto first (a sync's scan and pull
 * load it when what they hash is large; `status` hashes only what changed,
 * with the fallback).
 */
const HASHING = new Set(["init", "clone", "fsck", "lento"]);

async function run(command: string, rest: string[], f: Flags): Promise<number> {
  const dir = f.C ?? ".";
  if (HASHING.has(command)) await loadHashing();
  switch (command) {
    case "init":
      arity(rest, 0, 1);
      init(rest[0] ?? dir, { host: f.host });
      if (f.verbose) console.log(`initialised ${rest[0] ?? dir}; this replica holds the permit`);
      return Exit.ok;
    case "clone": {
      arity(rest, 1, 2);
      const report = await clone(rest[0], rest[1] ?? dir, {
        host: f.host,
        progress: progressBar(f),
        ...remoteOptions(f),
      });
      return printSyncReports([report], f);
    }
    case "sync":
      return await runSync(dir, rest, f);
    case "status":
      arity(rest, 0, 0);
      return printStatus(status(dir), f);
    case "log":
      arity(rest, 0, 0);
      return printLog(log(dir), f);
    case "fsck":
      return await runFsck(dir, rest, f);
    case "peer":
      return runPeer(dir, rest, f);
    case "lento":
      arity(rest, 0, 0);
      return runLentoCommand(dir, f);
    case "serve":
      arity(rest, 0, 0);
      return runServe(dir, f);
    case "lock":
      throw new ReplicatorError(`'${command}' is not available in this version yet`);
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

async function runFsck(dir: string, rest: string[], f: Flags): Promise<number> {
  arity(rest, 0, 0);
  const { fsck } = await import("../fsck.ts");
  const problems = fsck(dir, f.repair);
  if (f.json) console.log(toJson({ problems }));
  else {
    for (const p of problems) {
      const where = p.offset === undefined ? p.file : `${p.file} at offset ${p.offset}`;
      const then = p.repaired
        ? ` (repaired: ${p.fix ?? "done"})`
        : p.fix
        ? "; run 'replicator fsck --repair' to repair it"
        : "";
      console.error(`${where}: ${p.message}${then}`);
    }
  }
  return problems.every((p) => p.repaired) ? Exit.ok : Exit.failed;
}

function runPeer(dir: string, rest: string[], f: Flags): number {
  const [sub, ...args] = rest;
  if (sub === "add" && args.length === 2) {
    setPeer(dir, args[0], args[1], {
      ssh: f.ssh,
      remoteCmd: f["remote-cmd"],
      compress: f.compress,
      tokenFile: f["token-file"] && absolutePath(f["token-file"]),
      caFile: f["ca-file"] && absolutePath(f["ca-file"]),
    });
  } else if (sub === "remove" && args.length === 1) setPeer(dir, args[0], null);
  else if (sub === "list" && args.length === 0) {
    const peers = listPeers(dir);
    if (f.json) console.log(toJson(peers));
    else for (const [name, url] of Object.entries(peers)) console.log(`${name}\t${url}`);
  } else {
    throw new UsageError(
      "peer takes: add NAME URL [--ssh CMD] [--remote-cmd PATH] [--token-file F] [--ca-file F] " +
        "| remove NAME | list",
    );
  }
  return Exit.ok;
}

/** A sync, run by the volume's lento where it may be (src/cli/delegated_sync.ts), else here. */
async function runSync(dir: string, peers: string[], f: Flags): Promise<number> {
  const progress = progressBar(f);
  const remote = remoteOptions(f);
  const byLento = await syncByLento(dir, peers, {
    progress: progress !== undefined,
    remoteOptions: Object.values(remote).some((v) => v !== undefined),
  });
  if (byLento && "failure" in byLento) return reportFailure(byLento.failure);
  return printSyncReports(byLento?.outcomes ?? await sync(dir, peers, { progress, ...remote }), f);
}

/** Runs lento in the foreground until SIGTERM or SIGINT. */
async function runLentoCommand(dir: string, f: Flags): Promise<number> {
  const { runLento } = await import("../capture/lento.ts");
  await untilStopped((signal) =>
    runLento(dir, {
      signal,
      log: f.verbose ? (line) => console.log(`lento: ${line}`) : undefined,
      takeSync: (request) => takeSyncRequest(dir, request),
    })
  );
  return Exit.ok;
}

/** Runs `work` with a signal that SIGTERM or SIGINT aborts (a daemon's clean stop). */
async function untilStopped(work: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const stop = new AbortController();
  const onStop = () => stop.abort();
  Deno.addSignalListener("SIGTERM", onStop);
  Deno.addSignalListener("SIGINT", onStop);
  try {
    await work(stop.signal);
  } finally {
    Deno.removeSignalListener("SIGTERM", onStop);
    Deno.removeSignalListener("SIGINT", onStop);
  }
}

/** How this run reaches peers on other hosts, from its flags. */
function remoteOptions(f: Flags): RemoteOptions {
  return {
    ssh: f.ssh,
    remoteCmd: f["remote-cmd"],
    token: f["token-file"] ? readTokenFile(f["token-file"]) : undefined,
    caFile: f["ca-file"],
    compress: f.compress,
  };
}

/** The token from --token-file (its first line) or REPLICATOR_TOKEN; null if neither. */
function readToken(file?: string): string | null {
  if (file) return readTokenFile(file);
  return Deno.env.get("REPLICATOR_TOKEN")?.trim() || null;
}

/**
 * Serves the replica: over stdin and stdout (`--stdio`, what ssh runs), or
 * over HTTPS (`--listen`) until SIGTERM or SIGINT. Session failures go to
 * stderr (which ssh carries back to the client).
 */
async function runServe(dir: string, f: Flags): Promise<number> {
  const log = (line: string) => console.error(`replicator: ${line}`);
  if (f.stdio) {
    return await serveStdio(dir, { readOnly: f["read-only"], log }) ? Exit.ok : Exit.failed;
  }
  if (!f.listen) throw new UsageError("serve takes --stdio or --listen HOST:PORT");
  const token = readToken(f["token-file"]);
  if (!token && !f["insecure-no-auth"]) {
    throw new UsageError(
      "serve --listen needs a token (--token-file F or REPLICATOR_TOKEN), or --insecure-no-auth",
    );
  }
  if (!f["tls-cert"] !== !f["tls-key"]) {
    throw new UsageError("give both --tls-cert and --tls-key, or neither");
  }
  const pem = (p?: string) => p ? Deno.readTextFileSync(p) : undefined;
  const listen = f.listen;
  await untilStopped((signal) =>
    serveHttps(dir, {
      listen,
      token: f["insecure-no-auth"] ? null : token,
      cert: pem(f["tls-cert"]),
      key: pem(f["tls-key"]),
      readOnly: f["read-only"],
      signal,
      log,
      onListen: (port) => f.verbose && console.log(`serving on port ${port}`),
    })
  );
  return Exit.ok;
}

function arity(rest: string[], min: number, max: number): void {
  if (rest.length < min || rest.length > max) throw new UsageError("wrong number of arguments");
}
