/**
 * What a failed command tells its user, and the exit status it calls for:
 * one mapping for a command run here and for a sync a lento ran for it.
 *
 * @module
 */

import { Exit, ReplicatorError, UsageError } from "../errors.ts";

/** A failure as the command line reports it. */
export interface Failure {
  /** The line after "replicator: ". */
  message: string;
  exitCode: number;
  /** The usage text belongs after the message. */
  usage: boolean;
}

/** How the command line reports `e`. */
export function failureOf(e: unknown): Failure {
  const message = (e as Error)?.message ?? String(e);
  if (e instanceof ReplicatorError) {
    return { message, exitCode: e.exitCode, usage: e instanceof UsageError };
  }
  const failed = (text: string) => ({ message: text, exitCode: Exit.failed, usage: false });
  if (e instanceof Deno.errors.PermissionDenied) {
    return failed(`${message}; check the permissions of the volume's files`);
  }
  const os = /\(os error (\d+)\)/.exec(message);
  if (os || e instanceof Deno.errors.NotFound) {
    // The system refused (disk full, I/O error, a file that vanished): nothing
    // committed is lost, and an interrupted batch is finished by the next run.
    return failed(`${message}; ${osHint(Number(os?.[1]))}`);
  }
  if ((e as { code?: string })?.code === "ERR_SQLITE_ERROR") {
    // Damage SQLite finds after the open (the open itself names the file).
    return failed(
      `the state database (.replicator/state.db) failed: ${message}; ` +
        `run 'replicator fsck --repair'`,
    );
  }
  return failed(`unexpected error: ${(e as Error)?.stack ?? e}`);
}

/** What to do after the system refused an operation with errno `n`. */
function osHint(n: number): string {
  if (n === 28 || n === 122) return "free some space, then run the same command again";
  if (n === 5) return "an I/O error: check the disk (dmesg), then run the same command again";
  return "run the same command again; the work it did is kept or finished then";
}
