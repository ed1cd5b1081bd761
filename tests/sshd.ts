/**
 * A real sshd on 127.0.0.1 for the ssh transport's tests: throwaway host and
 * client keys, a free port, and a `replicator` command on the "remote" side
 * that runs this checkout. Skipped (null) where sshd is not installed.
 *
 * The code lives in tools/sshd.ts, shared with the benchmark over ssh.
 */

export { freePort, haveSshd, type Sshd, startSshd, waitForPort } from "../tools/sshd.ts";
