/**
 * A real `replicator serve --listen` on 127.0.0.1 for the https transport's
 * tests, with a private CA and a server certificate made by openssl, and a
 * token file.
 */

import { spawnCli, tempDir } from "./helpers.ts";
import { freePort, waitForPort } from "./sshd.ts";

/** Files of a throwaway CA and a certificate for 127.0.0.1 signed by it. */
export interface Tls {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  token: string;
}

/** True where openssl can make certificates. */
export function haveOpenssl(): boolean {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

/** Makes a CA, a certificate for 127.0.0.1 and a token file. */
export async function makeTls(): Promise<Tls> {
  const dir = await tempDir();
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("openssl", { args, cwd: dir, stderr: "piped" }).output();
    if (!out.success) {
      throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
    }
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=test CA",
  );
  await run("req", ...ec, "-keyout", "key.pem", "-out", "req.csr", "-subj", "/CN=127.0.0.1");
  Deno.writeTextFileSync(`${dir}/ext`, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await run(
    "x509",
    "-req",
    "-in",
    "req.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "cert.pem",
    "-days",
    "2",
    "-extfile",
    "ext",
  );
  Deno.writeTextFileSync(`${dir}/token`, "correct horse battery staple\n", { mode: 0o600 });
  return {
    dir,
    ca: `${dir}/ca.pem`,
    cert: `${dir}/cert.pem`,
    key: `${dir}/key.pem`,
    token: `${dir}/token`,
  };
}

/** A running `serve --listen`. */
export interface Server {
  url: string;
  port: number;
  /** The client arguments that trust this server and present the token. */
  args: string[];
  child: Deno.ChildProcess;
  /** SIGTERM, then its exit status and stderr. */
  stop(): Promise<{ code: number; stderr: string }>;
}

/** Starts `replicator serve --listen 127.0.0.1:PORT -C dir` with TLS and the token, plus `more`. */
export async function startServer(tls: Tls, dir: string, ...more: string[]): Promise<Server> {
  const port = freePort();
  const child = spawnCli([
    "serve",
    "--listen",
    `127.0.0.1:${port}`,
    "-C",
    dir,
    "--token-file",
    tls.token,
    "--tls-cert",
    tls.cert,
    "--tls-key",
    tls.key,
    ...more,
  ]);
  const stderr = new Response(child.stderr).text();
  await waitForPort(port);
  return {
    url: `https://127.0.0.1:${port}/`,
    port,
    args: ["--token-file", tls.token, "--ca-file", tls.ca],
    child,
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const { code } = await child.status;
      return { code, stderr: await stderr };
    },
  };
}
