/**
 * A real sshd on 127.0.0.1 for the ssh transport's tests: throwaway host and
 * client keys, a free port, and a `replicator` command on the "remote" side
 * that runs this checkout. Skipped (null) where sshd is not installed.
 */

import { tempDir } from "./helpers.ts";

const SSHD = "/usr/sbin/sshd";
const MOD = new URL("../mod.ts", import.meta.url).pathname;

/** A running sshd and what a client needs to reach it. */
export interface Sshd {
  port: number;
  /** The --ssh value: the client key and the host's known key, nothing from ~/.ssh. */
  ssh: string;
  /** The --remote-cmd value: runs this checkout's CLI. */
  remoteCmd: string;
  /** ssh:// URL of `path` on this "host". */
  url(path: string): string;
  dir: string;
  stop(): Promise<void>;
}

/** True where an sshd can be started. */
export function haveSshd(): boolean {
  try {
    return Deno.statSync(SSHD).isFile && Deno.uid() === 0;
  } catch {
    return false;
  }
}

/** Starts sshd; call stop() when done. */
export async function startSshd(): Promise<Sshd> {
  const dir = await tempDir();
  const keygen = async (name: string) => {
    const out = await new Deno.Command("ssh-keygen", {
      args: ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/${name}`],
      stdin: "null",
    }).output();
    if (!out.success) throw new Error(`ssh-keygen ${name} failed`);
  };
  await keygen("host_key");
  await keygen("id");
  Deno.copyFileSync(`${dir}/id.pub`, `${dir}/authorized_keys`);
  const port = freePort();
  Deno.writeTextFileSync(
    `${dir}/sshd_config`,
    [
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
    ].join("\n") + "\n",
  );
  const hostKey = Deno.readTextFileSync(`${dir}/host_key.pub`).trim();
  Deno.writeTextFileSync(`${dir}/known_hosts`, `[127.0.0.1]:${port} ${hostKey}\n`);
  const remoteCmd = `${dir}/replicator`;
  Deno.writeTextFileSync(
    remoteCmd,
    `#!/bin/sh\nexec '${Deno.execPath()}' run --allow-all --no-prompt --quiet '${MOD}' "$@"\n`,
  );
  Deno.chmodSync(remoteCmd, 0o755);
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

/** A TCP port nobody listens on right now. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`sshd did not listen on port ${port}`);
}
