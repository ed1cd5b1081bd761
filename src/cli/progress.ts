/**
 * A one-line progress bar on stderr, shown only on a terminal, only for
 * transfers that take a while, and never with --json.
 *
 * @module
 */

import type { Progress } from "../sync/pull.ts";

/** A bar appears once a transfer has run this long (REPLICATOR_PROGRESS_AFTER_MS, default 1000). */
const FIRST_AFTER_MS = Number(Deno.env.get("REPLICATOR_PROGRESS_AFTER_MS") ?? "1000");
const EVERY_MS = 200;
const enc = new TextEncoder();

/** A Progress callback drawing a bar, or undefined where none should appear. */
export function progressBar(flags: { json?: boolean }): Progress | undefined {
  if (flags.json || !Deno.stderr.isTerminal()) return undefined;
  const start = Date.now();
  let last = 0;
  return (done, total) => {
    const now = Date.now();
    const finished = done.files === total.files;
    if (now - start < FIRST_AFTER_MS || (!finished && now - last < EVERY_MS)) return;
    last = now;
    const share = total.bytes > 0 ? done.bytes / total.bytes : 1;
    const bar = "#".repeat(Math.round(share * 30)).padEnd(30, ".");
    const mb = (n: number) => (n / 1048576).toFixed(1);
    const line = `\r[${bar}] ${done.files}/${total.files} files, ${mb(done.bytes)}/${
      mb(total.bytes)
    } MiB`;
    Deno.stderr.writeSync(enc.encode(finished ? `${line}\n` : line));
  };
}
