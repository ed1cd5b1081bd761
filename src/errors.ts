/**
 * Typed errors. Each carries the process exit status the CLI uses for it and a
 * message that says what went wrong and what to do.
 *
 * @module
 */

/** Exit statuses of the command line (see README "Exit status"). */
export const Exit = {
  ok: 0,
  failed: 1,
  usage: 2,
  conflicts: 3,
  busy: 75,
} as const;

/** Base class: an error the user can act on, with its exit status. */
export class ReplicatorError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = Exit.failed) {
    super(message);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** The command line was malformed. */
export class UsageError extends ReplicatorError {
  constructor(message: string) {
    super(message, Exit.usage);
  }
}

/** Another run holds the volume. */
export class BusyError extends ReplicatorError {
  constructor(dir: string) {
    super(
      `${dir} is busy: another replicator run holds it; try again when it has finished`,
      Exit.busy,
    );
  }
}

/** No `.replicator/` was found at or above a directory. */
export class VolumeNotFoundError extends ReplicatorError {
  constructor(dir: string) {
    super(
      `${dir} is not inside a replicator volume (no .replicator/ found); ` +
        `run 'replicator init' or 'replicator clone' first`,
    );
  }
}

/** A peer is not a replica of the same volume, or not a replica at all. */
export class PeerMismatchError extends ReplicatorError {}

/** A KML file is damaged somewhere other than a torn tail. */
export class CorruptLogError extends ReplicatorError {
  readonly offset: number;
  constructor(path: string, offset: number, reason: string) {
    super(
      `${path}: corrupt record at byte offset ${offset} (${reason}); ` +
        `run 'replicator fsck --repair' to cut the log there and re-fetch from peers`,
    );
    this.offset = offset;
  }
}

/** A record or metadata file failed to decode. */
export class FormatError extends ReplicatorError {}

/** A peer sent something unsafe or inconsistent. */
export class HostilePeerError extends ReplicatorError {}

/**
 * A system call on a path failed. Carries the errno and its name, so callers
 * decide on the cause (a vanished entry, a full disk) rather than the text.
 */
export class FsError extends ReplicatorError {
  constructor(
    readonly op: string,
    readonly path: string,
    readonly errno: number,
    readonly code: string,
    detail = "",
  ) {
    super(`cannot ${op} ${path}: ${code}${detail ? ` (${detail})` : FsError.hint(code)}`);
  }

  private static hint(code: string): string {
    if (code === "ENOSPC" || code === "EDQUOT") {
      return " (no space left; free some and run it again)";
    }
    if (code === "EROFS") return " (read-only filesystem)";
    if (code === "EACCES" || code === "EPERM") return " (permission denied)";
    return "";
  }
}

/** A path crosses a symlink or a non-directory where a real directory is needed. */
export class NotConfinedError extends FsError {}

/**
 * True if `e` says there is no regular file at a path: missing, or a symlink
 * or a non-directory on the way (Beneath never follows those).
 */
export function noFileThere(e: unknown): boolean {
  if (e instanceof Deno.errors.NotFound) return true;
  return e instanceof FsError && ["ENOENT", "ENOTDIR", "ELOOP"].includes(e.code);
}

/**
 * A file in `.replicator/` is unsafe (a symlink, or not the kind of file it
 * must be) or damaged. The message names the file and the command to run.
 */
export class MetadataError extends ReplicatorError {
  /** The metadata file concerned. */
  readonly file: string;
  constructor(file: string, message: string) {
    super(message);
    this.file = file;
  }
}
