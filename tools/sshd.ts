/**
 * A throwaway sshd on 127.0.0.1: its own host and client keys, a free port,
 * and a `replicator` wrapper (the --remote-cmd) that runs a given mod.ts on
 * the "remote" side. Used by the ssh tests (tests/sshd.ts) and by the
 * benchmark over ssh (bench/bench.ts), which runs the committed revision it
 * measures on both ends and wraps the server in GNU time.
 *
 * @module
 */

import { V8_FLAGS } from "../src/memory.ts";

const SSHD = "/usr/sbin/sshd";
const CHECKOUT_MOD = new URL("../mod.ts", import.meta.url).pathname;

/** A running sshd and what a client needs to reach it. */
export interface Sshd {
  port: number;
  /** The --ssh value: the client key and the host's known key, nothing from ~/.ssh. */
  ssh: string;
  /** The --remote-cmd value: runs the chosen mod.ts. */
  remoteCmd: string;
  /** ssh:// URL of `path` on this "host". */
  url(path: string): string;
  dir: string;
  stop(): Promise<void>;
}

/** What the remote side runs, and where the keys go. */
export interface SshdOptions {
  /** The mod.ts the --remote-cmd wrapper runs (default: this checkout's). */
  mod?: string;
  /** Words the wrapper puts before deno, e.g. `/usr/bin/time -o FILE` to measure the server. */
  wrap?: string[];
  /** Parent of the directory for keys, config and wrapper (default: the system's temp dir). */
  parent?: string;
}

/** True where an sshd can be started. */
export function haveSshd(): boolean {
  try {
    return Deno.statSync(SSHD).isFile && Deno.uid() === 0;
  } catch {
    return false;
  }
}

/** Starts sshd; call stop() when done (it also removes the keys' directory). */
export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  const dir = await Deno.makeTempDir({ prefix: "replicator-sshd-", dir: opts.parent });
  await keygen(dir, "host_key");
  await keygen(dir, "id");
  Deno.copyFileSync(`${dir}/id.pub`, `${dir}/authorized_keys`);
  const port = freePort();
  Deno.writeTextFileSync(`${dir}/sshd_config`, sshdConfig(dir, port));
  const hostKey = Deno.readTextFileSync(`${dir}/host_key.pub`).trim();
  Deno.writeTextFileSync(`${dir}/known_hosts`, `[127.0.0.1]:${port} ${hostKey}\n`);
  const remoteCmd = `${dir}/replicator`;
  writeWrapper(remoteCmd, opts.mod ?? CHECKOUT_MOD, opts.wrap ?? []);
  Deno.mkdirSync("/run/sshd", { recursive: true });
  const child = new Deno.Command(SSHD, {
    args: ["-D", "-e", "-f", `${dir}/sshd_config`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitForPort(port);
  const ssh = `ssh -F /dev/null -i ${dir}/id -o IdentitiesOnly=yes ` +
    `-o UserKnownHostsFile=${dir}/known_hosts -o StrictHostKeyChecking=yes`;
  return {
    port,
    ssh,
    remoteCmd,
    dir,
    url: (path) => `ssh://root@127.0.0.1:${port}${path}`,
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function keygen(dir: string, name: string): Promise<void> {
  const out = await new Deno.Command("ssh-keygen", {
    args: ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/${name}`],
    stdin: "null",
  }).output();
  if (!out.success) throw new Error(`ssh-keygen ${name} failed`);
}

function sshdConfig(dir: string, port: number): string {
  return [
    `ListenAddress 127.0.0.1`,
    `Port ${port}`,
    `HostKey ${dir}/host_key`,
    `AuthorizedKeysFile ${dir}/authorized_keys`,
    `PidFile ${dir}/sshd.pid`,
    `StrictModes no`,
    `UsePAM no`,
    `PermitRootLogin prohibit-password`,
    `PasswordAuthentication no`,
    `KbdInteractiveAuthentication no`,
    `LogLevel ERROR`,
  ].join("\n") + "\n";
}

/** The remote command: this Deno running `mod` (sshd starts it with a bare environment). */
function writeWrapper(path: string, mod: string, wrap: string[]): void {
  const argv = [
    ...wrap,
    Deno.execPath(),
    "run",
    "--allow-all",
    "--no-prompt",
    "--quiet",
    `--v8-flags=${V8_FLAGS}`,
    mod,
  ];
  Deno.writeTextFileSync(path, `#!/bin/sh\nexec ${argv.map(quote).join(" ")} "$@"\n`);
  Deno.chmodSync(path, 0o755);
}

/** A word as sh reads it back unchanged. */
function quote(w: string): string {
  return `'${w.replaceAll("'", `'\\''`)}'`;
}

/** A TCP port nobody listens on right now. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

/** Resolves once something listens on 127.0.0.1:`port` (a server just started). */
export async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nothing listens on port ${port} after 10 s`);
}
