/**
 * replicator: keeps a directory tree identical on many hosts, InterMezzo style
 * (a per-volume modification log, per-peer Expect pointers, one writer).
 *
 * Run as a program, this is the `replicator` command line.
 *
 * @module
 */

export { clone, init, listPeers, log, setPeer, status, sync } from "./src/replica.ts";
export type { LogEntry, PeerFailure, Status } from "./src/replica.ts";
export { fsck } from "./src/fsck.ts";
export { loadHashing } from "./src/fs/hash.ts";
export type { SyncReport } from "./src/sync/sync.ts";
export { Volume } from "./src/volume/volume.ts";
export * from "./src/kml/mod.ts";
export * from "./src/errors.ts";
export { decodeExpect, encodeExpect, type ExpectEntry } from "./src/expect/expect.ts";
export { main } from "./src/cli/main.ts";

import { main } from "./src/cli/main.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
