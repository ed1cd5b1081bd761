/**
 * The ssh transport: `ssh://[user@]host[:port]/path` runs
 * `ssh … REMOTE-CMD serve --stdio -C path` and speaks the protocol over its
 * stdin and stdout, as rsync does over ssh: no open port beyond sshd.
 *
 * ssh's own failures (authentication, host key, connection refused, a remote
 * command not found) are turned into one line that says what to do.
 *
 * @module
 */

import { ReplicatorError } from "../errors.ts";
import { type Channel, streamChannel } from "../wire/session.ts";
import { sleep } from "../timer.ts";

/** An ssh:// URL taken apart. */
export interface SshTarget {
  user?: string;
  host: string;
  port?: number;
  /** The replica's directory on the host (relative: from the login's home). */
  path: string;
}

/** How to run ssh. */
export interface SshOptions {
  /** The ssh command and its options, as one string (`ssh -i key -o …`). */
  ssh?: string;
  /** replicator's path on the host (default `replicator`). */
  remoteCmd?: string;
}

/** ssh could not reach the replica on the other host. */
export class SshError extends ReplicatorError {}

/** Parses `ssh://[user@]host[:port]/path`; `/~/path` is relative to the login's home. */
export function parseSshUrl(url: string): SshTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SshError(`${url} is not a URL; write ssh://[user@]host[:port]/path`);
  }
  if (u.protocol !== "ssh:" || !u.hostname || u.pathname.length < 2) {
    throw new SshError(`${url}: write ssh://[user@]host[:port]/path`);
  }
  const raw = decodeURIComponent(u.pathname);
  return {
    user: u.username ? decodeURIComponent(u.username) : undefined,
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: u.port ? Number(u.port) : undefined,
    path: raw.startsWith("/~/") ? raw.slice(3) : raw,
  };
}

/** The argv that runs the server on the host. */
export function sshArgv(t: SshTarget, opts: SshOptions = {}): string[] {
  const ssh = splitWords(opts.ssh ?? "ssh");
  if (ssh.length === 0) throw new SshError("--ssh is empty; give the ssh command, e.g. 'ssh'");
  const remote = [opts.remoteCmd ?? "replicator", "serve", "--stdio", "-C", t.path]
    .map(shellQuote).join(" ");
  return [
    ...ssh,
    "-o",
    "BatchMode=yes", // never a password prompt under cron (an earlier -o BatchMode wins)
    ...(t.port ? ["-p", String(t.port)] : []),
    "--",
    t.user ? `${t.user}@${t.host}` : t.host,
    remote,
  ];
}

/** A running ssh connection. */
export interface SshConnection {
  channel: Channel;
  /** The error to report for `e`, naming ssh's own failure if ssh failed. */
  explain(e: unknown): Promise<unknown>;
  /** Waits for ssh to end (killing it if it does not within a few seconds). */
  close(): Promise<void>;
}

const STDERR_KEEP = 16 * 1024;

/** Starts ssh to `t`. */
export function openSsh(t: SshTarget, opts: SshOptions = {}): SshConnection {
  const [cmd, ...args] = sshArgv(t, opts);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
      .spawn();
  } catch (e) {
    throw new SshError(`cannot run ${cmd}: ${(e as Error).message}; install ssh or give --ssh`);
  }
  const stderr = collect(child.stderr);
  const channel = streamChannel(child.stdout, child.stdin);
  // Bounded waits: an --ssh wrapper's children may hold the pipes after it ends.
  const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, sleep(ms, null)]);
  return {
    channel,
    explain: async (e) => {
      const status = await within(child.status, 5000);
      if (!status) return e;
      const text = await within(stderr, 1000) ?? "";
      return explainSsh(t, opts, status.code, text) ?? e;
    },
    close: async () => {
      channel.close();
      if (!(await within(child.status, 5000))) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        await child.status;
      }
      await within(stderr, 1000);
    },
  };
}

/** One line for an ssh run that ended with `code` and said `stderr`; null if ssh did not fail. */
export function explainSsh(
  t: SshTarget,
  opts: SshOptions,
  code: number,
  stderr: string,
): SshError | null {
  const lines = stderr.split("\n").map((l) => l.trim()).filter(Boolean);
  const last = lines.at(-1) ?? `exit status ${code}`;
  const where = t.user ? `${t.user}@${t.host}` : t.host;
  const has = (re: RegExp) => lines.some((l) => re.test(l));
  if (code === 127 || has(/command not found|No such file or directory/) && code !== 255) {
    const cmd = opts.remoteCmd ?? "replicator";
    return new SshError(
      `ssh ${where}: the command '${cmd}' was not found there; install replicator on that host ` +
        `or give its path with --remote-cmd`,
    );
  }
  if (code !== 255) {
    // The remote replicator's own error, which it printed as one line.
    const own = lines.filter((l) => l.startsWith("replicator: ")).at(-1);
    return own ? new SshError(`${where}: ${own.slice("replicator: ".length)}`) : null;
  }
  let hint = "check the host, the port and your ssh configuration (run the ssh command by hand)";
  if (has(/Permission denied|Too many authentication failures/)) {
    hint = "authentication failed: check the user and the key (--ssh 'ssh -i KEY')";
  } else if (has(/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/)) {
    hint = "the host key is unknown or changed: check it and add it to known_hosts";
  } else if (has(/Connection refused|No route to host|Could not resolve|timed out/)) {
    hint = "the host cannot be reached: check its name and port, and that sshd runs there";
  }
  return new SshError(`ssh ${where} failed: ${last}; ${hint}`);
}

/** Splits a command string into words, honouring single and double quotes and backslashes. */
export function splitWords(s: string): string[] {
  const out: string[] = [];
  let word = "";
  let inWord = false;
  let quote = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = "";
      else if (c === "\\" && quote === '"' && i + 1 < s.length) word += s[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < s.length) {
      word += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new SshError(`--ssh '${s}': a quote is not closed`);
  if (inWord) out.push(word);
  return out;
}

/** A word as the remote shell reads it back unchanged. */
export function shellQuote(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`;
}

/** The first STDERR_KEEP bytes of a stream, as text (the rest is drained). */
async function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  let kept = 0;
  for await (const c of stream) {
    if (kept < STDERR_KEEP) {
      chunks.push(c.subarray(0, STDERR_KEEP - kept));
      kept += Math.min(c.length, STDERR_KEEP - kept);
    }
  }
  const all = new Uint8Array(kept);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all);
}
