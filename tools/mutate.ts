/**
 * A small mutation check: does the test suite notice when a feature is broken?
 *
 *     deno run -A tools/mutate.ts [--only NAME[,NAME...]] [--list] [--check]
 *                                 [--no-baseline] [--keep]
 *
 * Each mutant below is one textual replacement in one file, standing for a
 * plausible bug (a check skipped, a reserve too small, a build that claims
 * success). For each, the repository's files (git ls-files, tracked and
 * untracked-but-not-ignored, as they are in the working tree) are copied to a
 * scratch directory with a node_modules symlink, the replacement is applied,
 * and the mutant's test command runs there. A failing command *kills* the
 * mutant; a passing one means the suite passes with the feature broken: the
 * mutant *survived*. Prints one line per mutant, then "N killed, M survived";
 * exits 1 if any survived, 2 if the list is out of date or a baseline fails.
 *
 * `find` must occur exactly once in `file`: when the code changes, the list
 * fails loudly here instead of quietly testing nothing (`--check` checks only
 * that, in a second). Before the mutants, every distinct test command runs
 * once on an unmutated copy (the baseline): a command that fails there cannot
 * kill anything meaningfully. Commands needing QEMU (root) are "not run"
 * elsewhere.
 *
 * Adding a mutant: one entry in MUTANTS, with the test files that should kill
 * it (not the whole suite: the point is to know which test guards what).
 *
 * @module
 */

import { parseArgs } from "node:util";

/** What a mutant runs: test files through `deno test`, or the QEMU run of the shim. */
type Run = { tests: string[] } | { qemu: true };

interface Mutant {
  /** Short unique name (for --only). */
  name: string;
  /** The bug it stands for, in a few words. */
  why: string;
  /** Repository-relative file to change. */
  file: string;
  /** Exact text that must occur exactly once in `file`. */
  find: string;
  /** What replaces it. */
  replace: string;
  run: Run;
  /** Seconds before the command is killed (a timeout counts as killed, and is shown). */
  timeoutS?: number;
}

const tests = (...files: string[]): Run => ({ tests: files });

export const MUTANTS: Mutant[] = [
  // ---- capture ------------------------------------------------------------
  {
    name: "lento-overflow-ignored",
    why: "lento treats only the start-up (no hints) as a rescan; real OVERFLOW hints are ignored",
    file: "src/capture/lento.ts",
    find: 'const overflow = hints === null || hints.some((h) => h.kind === "overflow");',
    replace: "const overflow = hints === null;",
    run: tests("tests/lento_overflow_test.ts"),
  },
  {
    name: "fanotify-read-error-fatal",
    why:
      "one failed read of the fanotify group stops lento (the kernel dropped an event: a rescan is due)",
    file: "src/capture/fanotify.ts",
    find: "if (++this.#readFailures >= MAX_FAILURES) {",
    replace: "if (true) {",
    run: tests("tests/fanotify_test.ts"),
  },
  {
    name: "lento-socket-world-writable",
    why: "lento's socket keeps the process umask: another user may ask it to run a sync",
    file: "src/capture/lento.ts",
    find: "const umask = Deno.umask(0o077);",
    replace: "const umask = Deno.umask(0o000);",
    run: tests("tests/lento_sync_test.ts"),
  },
  {
    name: "delegated-sync-any-owner",
    why: "a sync is handed to whatever listens on lento.sock, whoever owns it",
    file: "src/cli/delegated_sync.ts",
    find: "line, Deno.uid() ?? -1);",
    replace: "line);",
    run: tests("tests/lento_sync_test.ts"),
  },
  {
    name: "delegated-sync-ignores-knobs",
    why: "a sync with a REPLICATOR_* knob set is run by lento, which does not have it",
    file: "src/cli/delegated_sync.ts",
    find: 'k.startsWith("REPLICATOR_") && k !== "REPLICATOR_TOKEN"',
    replace: "false",
    run: tests("tests/lento_sync_test.ts"),
  },
  {
    name: "lento-answer-one-write",
    why: "lento writes a long answer with one write, which the socket takes only in part",
    file: "src/capture/lento.ts",
    find: "for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));",
    replace: "await conn.write(bytes);",
    run: tests("tests/lento_sync_test.ts"),
  },
  {
    name: "delegated-sync-rerun-after-start",
    why:
      "a command whose lento started the sync but did not answer runs it again, hiding what it did",
    file: "src/cli/delegated_sync.ts",
    find: "      { failure: lostAnswer(conn.tooLong) };",
    replace: "      null;",
    run: tests("tests/lento_sync_test.ts"),
  },
  {
    name: "delegated-sync-peer-names-sent",
    why: "named peers travel by name and lento resolves them (against its own directory)",
    file: "src/replica.ts",
    find: "paths: targets.map((t) => localPath(t.url))",
    replace: "paths: targets.map((t) => t.stored ? t.label : localPath(t.url))",
    run: tests("tests/lento_sync_test.ts"),
  },
  {
    name: "lento-syncs-locked-volumes",
    why:
      "lento runs a sync whose peer is locked at once, waiting for the lock with its event loop stalled",
    file: "src/cli/delegated_sync.ts",
    find: "        await untilFree(locks);\n",
    replace: "",
    run: tests("tests/lento_sync_test.ts"),
  },
  {
    name: "lento-syncs-other-volume",
    why:
      "lento runs a sync asked for another volume (its directory was moved, a new one took its place)",
    file: "src/cli/delegated_sync.ts",
    find: "Deno.realPathSync(root) !== request.root || host !== request.host",
    replace: "Deno.realPathSync(root) !== request.root",
    run: tests("tests/lento_sync_test.ts"),
  },
  {
    name: "lento-cli-runs-no-syncs",
    why: "replicator lento is started without the sync handler: every sync stays in a cold process",
    file: "src/cli/main.ts",
    find: "      takeSync: (request) => takeSyncRequest(dir, request),\n",
    replace: "",
    run: tests("tests/lento_test.ts"),
  },
  {
    name: "lento-stops-mid-sync",
    why: "a stopping lento exits while a sync it runs is under way",
    file: "src/capture/lento.ts",
    find: "    await syncs.close();\n",
    replace: "",
    run: tests("tests/lento_sync_test.ts"),
  },
  {
    name: "place-replaces-racing-file",
    why: "a step's rename replaces a file the user made at the path after the step's check",
    file: "src/apply/steps.ts",
    find: "return ctx.t.rename(from, path, !replace);",
    replace: "return ctx.t.rename(from, path, false);",
    run: tests("tests/steps_race_test.ts"),
  },
  {
    name: "place-new-name-replaces",
    why: "a place step's first try at a new name replaces what the user just made there",
    file: "src/apply/steps.ts",
    find: "ctx.t.rename(`${STAGING}/${s.staged}`, s.path, true);",
    replace: "ctx.t.rename(`${STAGING}/${s.staged}`, s.path, false);",
    run: tests("tests/steps_race_test.ts"),
  },
  {
    name: "no-wants-skips-unwant",
    why: "a row's old want is kept because the batch thinks nothing is wanted",
    file: "src/apply/txn.ts",
    find: "const wants = state.anyWanted();",
    replace: "const wants = false;",
    run: tests("tests/sync_test.ts"),
  },
  {
    name: "beneath-within-keeps-moved-dir",
    why: "a directory held by `within` is still used after a rename moved it",
    file: "src/fs/beneath.ts",
    find: "this.#forget(); // a held directory may have moved",
    replace: "// no forget",
    run: tests("tests/beneath_test.ts"),
  },
  {
    name: "finish-staged-ignores-mode",
    why: "a staged file keeps the mode it was created with when only its mode differs",
    file: "src/apply/stage.ts",
    find: "if (chown || st.perm !== perm) {",
    replace: "if (chown) {",
    run: tests("tests/stage_finish_test.ts"),
  },
  {
    name: "libc-syscall-wrong-number",
    why: "a function made of syscall(2) calls another system call than its own",
    file: "src/fs/libc.ts",
    find: "write: [1, (fd, buf, n) => [fd, buf, n, 0, null]],",
    replace: "write: [0, (fd, buf, n) => [fd, buf, n, 0, null]],",
    run: tests("tests/libc_test.ts"),
  },
  {
    name: "libc-syscall-buffer-as-number",
    why: "a buffer passed to syscall(2) goes as something other than its address",
    file: "src/fs/libc.ts",
    find: "if (a instanceof Uint8Array) return Deno.UnsafePointer.value(Deno.UnsafePointer.of(a));",
    replace: "if (a instanceof Uint8Array) return a.byteLength;",
    run: tests("tests/libc_test.ts"),
  },
  {
    name: "beneath-within-evicts-in-use",
    why: "a full `within` closes the directories it holds, one of them in use by the call",
    file: "src/fs/beneath.ts",
    find: "if (held.size >= HELD_AT_MOST) return;",
    replace: "if (held.size >= HELD_AT_MOST) this.#forget();",
    run: tests("tests/beneath_test.ts"),
  },
  {
    name: "superseded-want-kept",
    why: "content a later record replaced stays wanted, and is fetched again by every sync",
    file: "src/apply/txn.ts",
    find: "if (wants && (placed || (e.digest && state.wantedAt(p)?.digest === e.digest))) {",
    replace: "if (wants && e.digest && state.wantedAt(p)?.digest === e.digest) {",
    run: tests("tests/sync_test.ts"),
  },
  {
    name: "lento-flush-no-drain",
    why: "lento answers a flush without waiting for events its source still holds",
    file: "src/capture/lento.ts",
    find: "return source.queued() && performance.now() < until ? DRAIN_POLL_MS : 0;",
    replace: "return 0;",
    run: tests("tests/lento_flush_test.ts"),
  },
  {
    name: "lento-flush-unbounded",
    why: "a source that never runs dry (a busy filesystem) holds a sync's flush forever",
    file: "src/capture/lento.ts",
    find: "return source.queued() && performance.now() < until ? DRAIN_POLL_MS : 0;",
    replace: "return source.queued() ? DRAIN_POLL_MS : 0;",
    run: tests("tests/lento_flush_test.ts"),
    timeoutS: 120,
  },
  {
    name: "scan-renames-off",
    why: "scan capture never pairs a vanished path with a new one of the same inode",
    file: "src/capture/scan.ts",
    find: "if (gone.size === 0) return renames;",
    replace: "if (gone.size >= 0) return renames;",
    run: tests("tests/lento_overflow_test.ts"), // also cli_test.ts (a directory rename)
  },
  {
    name: "scan-same-size-edit-unhashed",
    why: "a file edited in place to the same size (only its mtime moved) is not hashed again",
    file: "src/capture/scan.ts",
    find: "return before.size !== s.size || !sameMtime(before, s) ||",
    replace: "return before.size !== s.size ||",
    run: tests("tests/lento_overflow_test.ts"), // also crash_test.ts, sync_test.ts, cli_test.ts
  },
  // ---- KML and Expect -------------------------------------------------------
  {
    name: "kml-crc-unchecked",
    why: "a KML record whose CRC32C does not match is accepted",
    file: "src/kml/record.ts",
    find:
      'if (crc32c(bytes.subarray(8, len - 4)) !== v.getUint32(4, true)) return "checksum mismatch";',
    replace: 'if (crc32c(bytes.subarray(8, len - 4)) === -1) return "checksum mismatch";',
    run: tests("tests/kml_format_test.ts", "tests/kml_property_test.ts"),
  },
  {
    name: "kml-torn-tail-kept",
    why: "opening a KML whose last append was torn does not cut the partial record",
    file: "src/kml/log.ts",
    find: "    this.truncate(cut);",
    replace: "    void cut;",
    run: tests("tests/kml_format_test.ts", "tests/kml_property_test.ts"),
  },
  {
    name: "expect-checksum-unchecked",
    why: "a damaged Expect file (checksum mismatch) is read as if it were whole",
    file: "src/expect/expect.ts",
    find: "if (v.getUint32(12, true) !== checksum(b)) {",
    replace: "if (v.getUint32(12, true) === -1) {",
    run: tests("tests/expect_test.ts"),
  },
  // ---- build ----------------------------------------------------------------
  {
    name: "compile-exits-0-without-building",
    why: "compile.sh says it built dist/replicator without running deno compile",
    file: "compile.sh",
    find:
      "if node_modules/.bin/deno compile --quiet --allow-all --no-prompt --v8-flags=--expose-gc \\",
    replace: "if true || deno compile \\",
    run: tests("tests/compile_test.ts"),
  },
  {
    name: "compile-never-builds",
    why: "compile.sh never runs deno compile and always says no denort could be found",
    file: "compile.sh",
    find:
      "if node_modules/.bin/deno compile --quiet --allow-all --no-prompt --v8-flags=--expose-gc \\",
    replace: 'if echo "cannot download denort" >"$log"; false && deno compile \\',
    run: tests("tests/compile_test.ts"),
  },
  {
    name: "compile-without-permissions",
    why: "the binary is compiled without --allow-all (it would prompt or fail at run time)",
    file: "compile.sh",
    find: "--allow-all --no-prompt",
    replace: "--no-prompt",
    run: tests("tests/compile_test.ts"),
  },
  {
    name: "compile-blames-denort-for-everything",
    why: "compile.sh hides a real compile error behind 'no denort'",
    file: "compile.sh",
    find: "if grep -qiE 'denort|download|dns|connect|network|fetch' \"$log\"; then",
    replace: "if true; then",
    run: tests("tests/compile_test.ts"),
  },
  // ---- the kernel module (QEMU) ----------------------------------------------
  {
    name: "presto-overflow-reserve-48",
    why: "the ring keeps a 48-byte header free instead of a whole 56-byte OVERFLOW record",
    file: "shim/presto.c",
    find: "u32 need = presto_rec_len(len1, len2) + presto_rec_len(0, 0);",
    replace: "u32 need = presto_rec_len(len1, len2) + PRESTO_EVENT_HDR_LEN;",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-overflow-flush-unchecked",
    why: "read() queues the pending OVERFLOW record without checking it fits (over unread records)",
    file: "shim/presto.c",
    find: "if (!r->pending_lost || presto_free_locked(r) < presto_rec_len(0, 0))",
    replace: "if (!r->pending_lost)",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-read-error-as-count",
    why: "read() returns -EFAULT through a u32: a huge byte count instead of an error",
    file: "shim/presto.c",
    find: "\tif (err)\n\t\treturn err;\n\treturn n;",
    replace: "\treturn err ? err : n;",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-truncate-unreported",
    why: "a truncate by path (no write-close follows) waits for a close that never comes",
    file: "shim/presto.c",
    find: "if (data_type == FSNOTIFY_EVENT_DENTRY)",
    replace: "if (data_type == FSNOTIFY_EVENT_DENTRY && 0)",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-truncate-iversion-unchecked",
    why:
      "after a truncate, the close ignores the i_version: a store through a later mapping is lost",
    file: "shim/presto.c",
    find: "return inode_peek_iversion(inode) != w->stamp ?",
    replace: "return false ?",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-mmap-stamp-unchecked",
    why: "a close reports only seen MODIFYs: writes through a shared mmap are lost",
    file: "shim/presto.c",
    find: "if (presto_ctime_ns(inode) != (s64)w->stamp)",
    replace: "if (false)",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-racy-stamp-trusted",
    why: "a ctime taken in its own tick is trusted: a store in that tick goes unreported",
    file: "shim/presto.c",
    find: "if ((w->flags & PRESTO_WF_RACY) && i_size_read(inode) > 0)",
    replace: "if (false)",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-wtab-dropped-early",
    why: "the first close drops the entry while another writer still has the file",
    file: "shim/presto.c",
    find: "if (atomic_read(&inode->i_writecount) <= 1)\n\t\t\tpresto_wtab_del(r, w);",
    replace: "presto_wtab_del(r, w);",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-restamp-while-mapped",
    why: "a truncate restarts the entry while a writable mapping may still store",
    file: "shim/presto.c",
    find: "if (!mapping_writably_mapped(inode->i_mapping))",
    replace: "if (true)",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-clock-step-ignored",
    why: "a store after the clock was set back onto the file's ctime goes unreported",
    file: "shim/presto.c",
    find: "if (presto_clock_offset() != w->clock)",
    replace: "if (false)",
    run: { qemu: true },
    timeoutS: 1200,
  },
  {
    name: "presto-disconnected-outside",
    why: "a file opened by handle (a dentry cut from its parents) counts as outside",
    file: "shim/presto.c",
    find: "where = d == d->d_sb->s_root ? PRESTO_OUTSIDE : -ESTALE;",
    replace: "where = PRESTO_OUTSIDE;",
    run: { qemu: true },
    timeoutS: 1200,
  },
  // ---- the apply engine and pull (src/apply/*, src/sync/pull.ts) -------------
  {
    name: "prefetch-leftover-trusted",
    why: "content an earlier run left in .replicator/fetch is installed without hashing it again",
    file: "src/sync/prefetch.ts",
    find: "ok = hashOpenFile(f) === w.digest;",
    replace: "ok = true;",
    run: tests("tests/transport_contract_test.ts"),
  },
  {
    name: "prefetch-whole-part-trusted",
    why: "a part file an earlier run left at the record's size is staged without hashing it",
    file: "src/sync/prefetch.ts",
    find: "// A leftover that is whole needs no round trip: its hash says if it is right.",
    replace: "if (from === w.size && from > 0) return void this.#fresh.set(w.digest, part);",
    run: tests("tests/transport_contract_test.ts"),
  },
  {
    name: "local-copy-unbounded",
    why: "a local copy reads the source to its end: a file a writer keeps growing fills the disk",
    file: "src/sync/copy.ts",
    find: "feedRawFile(input, h, limit, output.write.bind(output));",
    replace: "feedRawFile(input, h, Infinity, output.write.bind(output));",
    run: tests("tests/local_copy_test.ts"),
  },
  {
    name: "clone-not-cut",
    why: "a clone of a file that grew since its record is staged whole",
    file: "src/sync/copy.ts",
    find: "if (output.stat().size > limit) output.truncate(limit);",
    replace: "",
    run: tests("tests/local_copy_test.ts"),
  },
  {
    name: "clone-grown",
    why:
      "a file that grew since its record is cloned whole (its extents, its quota) before being cut",
    file: "src/sync/copy.ts",
    find: "if (input.opened().size !== limit || !output.cloneFrom(input)) return false;",
    replace: "if (!output.cloneFrom(input)) return false;",
    run: tests("tests/local_copy_test.ts"),
  },
  {
    name: "clone-never",
    why: "large files are always copied through the process, never cloned where the filesystem can",
    file: "src/sync/copy.ts",
    find: "const CLONE_FROM = 1 << 20;",
    replace: "const CLONE_FROM = Infinity;",
    run: tests("tests/local_copy_test.ts"),
  },
  {
    name: "coalesce-reports-early",
    why: "a frame is reported written before the write carrying it ends: no backpressure",
    file: "src/wire/coalesce.ts",
    find: "    previous = batch.done;\n    return batch.done;",
    replace: "    previous = batch.done;\n    return Promise.resolve();",
    run: tests("tests/coalesce_test.ts"),
  },
  {
    name: "prefetch-digest-unchecked",
    why: "fetched content is kept whatever it hashes to: the receiver trusts the sender",
    file: "src/sync/prefetch.ts",
    find: 'if (h.digest("hex") === w.digest && got.size === w.size) {',
    replace: "if (got.size === w.size) {",
    run: tests("tests/adversarial_test.ts", "tests/hostile_peer_test.ts"),
  },
  {
    name: "remove-without-cas",
    why: "a remote unlink removes whatever is at the path, a local edit included",
    file: "src/apply/steps.ts",
    find: "if (same(cur, s.pre)) return t.unlink(s.path);",
    replace: "if (cur) return t.unlink(s.path);",
    run: tests("tests/integrity_test.ts"),
  },
  {
    name: "place-without-cas",
    why: "installing the holder's version replaces a local change instead of keeping it",
    file: "src/apply/steps.ts",
    find: 'if (!same(cur, pre) && !(cur.type === "d" && pre?.type === "d")) {',
    replace: 'if (cur.type === "l" && pre === undefined) {',
    run: tests("tests/integrity_test.ts"),
  },
  {
    name: "move-without-cas",
    why: "a remote rename moves the local version of its source along",
    file: "src/apply/steps.ts",
    find: "if (s.pre && same(from, s.pre)) {",
    replace: "if (s.pre && from) {",
    run: tests("tests/integrity_test.ts"),
  },
  {
    name: "recovery-replaces-later-step",
    why: "a re-run step does not see that a later step of the batch already replaced its entry",
    file: "src/apply/steps.ts",
    find:
      "  if (same(cur, s.pre)) return t.unlink(s.path);\n  if (supersededAt(ctx, k, s.path, cur)) return;",
    replace: "  if (same(cur, s.pre)) return t.unlink(s.path);",
    run: tests("tests/crash_steps_test.ts"),
  },
  {
    name: "recovery-commits-twice",
    why: "a batch re-run after its records were committed appends and indexes them again",
    file: "src/apply/txn.ts",
    find: 'if (vol.kml.size !== end || vol.state.getMeta("kml_end") !== String(end)) {',
    replace: "if (end >= 0) {",
    run: tests("tests/crash_steps_test.ts"),
  },
  {
    name: "beneath-follows-symlinks",
    why: "paths inside the volume are resolved through symlinks (rule 6)",
    file: "src/fs/beneath.ts",
    find: "const RESOLVE_ALL = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;",
    replace: "const RESOLVE_ALL = RESOLVE_NO_MAGICLINKS;",
    run: tests("tests/beneath_test.ts", "tests/adversarial_test.ts"),
  },
  {
    name: "txn-made-dirs-not-synced",
    why: "directories a transaction had to make are not fsynced with their parents (rule 9)",
    file: "src/apply/txn.ts",
    find: "for (const d of t.takeMade()) rel.add(d);",
    replace: "t.takeMade();",
    run: tests("tests/durability_test.ts"),
  },
  {
    name: "wanted-placed-unsynced",
    why: "wanted content is renamed into place before its bytes are on disk (rule 10)",
    file: "src/apply/wanted.ts",
    find: "finishStaged(f, null, w.perm, mtimeNsOf(w), true)",
    replace: "finishStaged(f, null, w.perm, mtimeNsOf(w), false)",
    run: tests("tests/durability_test.ts"),
  },
  {
    name: "wanted-dir-unsynced",
    why: "the row of installed wanted content is written before its directory entry is on disk",
    file: "src/apply/wanted.ts",
    find: "  syncChangedDirs(t, w.path);\n",
    replace: "",
    run: tests("tests/durability_test.ts"),
  },
  {
    name: "fsync-blocks-on-fifo",
    why: "a staged file swapped for a FIFO is opened blocking to be fsynced: the sync hangs",
    file: "src/fs/durable.ts",
    find: "openForSync(path, O_NOFOLLOW | O_NONBLOCK);",
    replace: "openForSync(path, O_NOFOLLOW);",
    run: tests("tests/durability_test.ts"),
  },
  {
    name: "walk-lists-through-symlink",
    why: "the walk opens a directory by its path: one swapped for a symlink mid-walk is listed",
    file: "src/capture/walk.ts",
    find: "const fd = openBeneath(top.fd, rel, O_RDONLY | O_DIRECTORY);",
    replace: "const fd = libc().open(cString(dir), O_RDONLY | O_DIRECTORY);",
    run: tests("tests/walk_test.ts"),
  },
  {
    name: "scan-hash-waits-on-fifo",
    why: "a file swapped for a FIFO after the walk is opened blocking: the scan hangs",
    file: "src/fs/hash.ts",
    find: "openBeneath(rootFd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)",
    replace: "openBeneath(rootFd, rel, O_RDONLY | O_NOFOLLOW)",
    run: tests("tests/hash_test.ts"),
    timeoutS: 60,
  },
  {
    name: "walk-non-utf8-silent",
    why: "a file whose name is not UTF-8 is left out of every scan without a word (rule 10)",
    file: "src/capture/walk.ts",
    find: "for (const name of listed.notUtf8) {",
    replace: "for (const name of [] as string[]) {",
    run: tests("tests/scan_order_test.ts"),
  },
  {
    name: "presto-non-utf8-as-path",
    why: "a Presto event whose path is not UTF-8 becomes a path hint naming nothing, not a rescan",
    file: "src/capture/presto.ts",
    find: "if (e.path === PATH_NOT_UTF8 || e.path2 === PATH_NOT_UTF8) {",
    replace: "if (e.path === PATH_NOT_UTF8 && e.path2 === PATH_NOT_UTF8) {",
    run: tests("tests/presto_abi_test.ts"),
  },
  {
    name: "wrapper-code-cache-not-written",
    why: "the wrapper makes a new bundle but never lets Deno write its code cache",
    file: "replicator",
    find: 'REPLICATOR_WRITE_CODE_CACHE=1 "$deno" run',
    replace: 'true || REPLICATOR_WRITE_CODE_CACHE=1 "$deno" run',
    run: tests("tests/wrapper_test.ts"),
  },
  {
    name: "paths-dotdot-accepted",
    why: "a record path with a '..' component passes the path check (rule 6)",
    file: "src/fs/paths.ts",
    find: "const NOT_NORMALISED = /(?:^|\\/)\\.{0,2}(?:\\/|$)/;",
    replace: "const NOT_NORMALISED = /(?:^|\\/)\\.?(?:\\/|$)/;",
    run: tests("tests/paths_test.ts", "tests/adversarial_test.ts"),
  },
  {
    name: "pull-sequence-gaps-accepted",
    why: "a relayed record far ahead in its origin's sequence is applied, skipping the rest",
    file: "src/sync/pull.ts",
    find: "if (r.originSeq !== last + 1 && r.originHost !== peer.who.hostId) {",
    replace: "if (r.originSeq < 0) {",
    run: tests("tests/integrity_test.ts"),
  },
  {
    name: "setuid-kept",
    why: "setuid and setgid bits replicate onto received files",
    file: "src/apply/plan.ts",
    find: "return mode & (vol.config.keepSetid ? 0o7777 : 0o1777);",
    replace: "return mode & 0o7777;",
    run: tests("tests/integrity_test.ts"),
  },
  {
    name: "wanted-forgotten",
    why: "content that could not be fetched is not remembered as wanted",
    file: "src/apply/txn.ts",
    find: "    state.want({ ...w, ...attrs });",
    replace: "    void attrs;",
    run: tests("tests/adversarial_test.ts", "tests/diskfull_test.ts"),
  },
];

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const DENO = `${ROOT}/node_modules/.bin/deno`;
const dec = new TextDecoder();

function runArgs(run: Run): string[] {
  return "qemu" in run
    ? ["bash", "tests/shim/run-qemu.sh"]
    : [DENO, "test", "-A", "--parallel", ...run.tests];
}

function runLabel(run: Run): string {
  return "qemu" in run ? "tests/shim/run-qemu.sh" : run.tests.join(" ");
}

function count(haystack: string, needle: string): number {
  let n = 0;
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + 1)) n++;
  return n;
}

/** Every mutant's `find` occurs exactly once; returns the problems. */
function checkList(mutants: Mutant[]): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const m of mutants) {
    if (names.has(m.name)) problems.push(`${m.name}: duplicate name`);
    names.add(m.name);
    let text: string;
    try {
      text = Deno.readTextFileSync(`${ROOT}/${m.file}`);
    } catch (e) {
      problems.push(`${m.name}: cannot read ${m.file}: ${(e as Error).message}`);
      continue;
    }
    const n = count(text, m.find);
    if (n !== 1) {
      problems.push(
        `${m.name}: ${JSON.stringify(m.find)} occurs ${n} times in ${m.file} (must be once: ` +
          `update the mutant to the code)`,
      );
    }
    if (m.find === m.replace) problems.push(`${m.name}: replace equals find`);
    if (!("qemu" in m.run)) {
      for (const t of m.run.tests) {
        try {
          Deno.statSync(`${ROOT}/${t}`);
        } catch {
          problems.push(`${m.name}: no test file ${t}`);
        }
      }
    }
  }
  return problems;
}

/** The repository's files as in the working tree (tracked, and untracked but not ignored). */
async function repoFiles(): Promise<string[]> {
  const out = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: ROOT,
  }).output();
  if (out.code !== 0) throw new Error(`git ls-files failed: ${dec.decode(out.stderr)}`);
  const own = (f: string) => f !== "" && f !== "node_modules" && !f.startsWith("node_modules/");
  return [...new Set(dec.decode(out.stdout).split("\0").filter(own))];
}

/** A scratch copy of the repository (world-readable: some tests run the CLI as nobody). */
async function scratchCopy(files: string[]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "replicator-mutant-" });
  try {
    fillCopy(dir, files);
  } catch (e) {
    Deno.removeSync(dir, { recursive: true });
    throw e;
  }
  return dir;
}

function fillCopy(dir: string, files: string[]): void {
  Deno.chmodSync(dir, 0o755);
  for (const f of files) {
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(`${ROOT}/${f}`);
    } catch {
      continue; // deleted in the working tree, not yet in the index
    }
    const slash = f.lastIndexOf("/");
    if (slash > 0) Deno.mkdirSync(`${dir}/${f.slice(0, slash)}`, { recursive: true, mode: 0o755 });
    if (st.isSymlink) Deno.symlinkSync(Deno.readLinkSync(`${ROOT}/${f}`), `${dir}/${f}`);
    else if (st.isFile) Deno.copyFileSync(`${ROOT}/${f}`, `${dir}/${f}`);
  }
  Deno.symlinkSync(Deno.realPathSync(`${ROOT}/node_modules`), `${dir}/node_modules`);
}

function applyMutant(dir: string, m: Mutant): void {
  const path = `${dir}/${m.file}`;
  const text = Deno.readTextFileSync(path);
  if (count(text, m.find) !== 1) throw new Error(`${m.name}: find does not occur once`);
  Deno.writeTextFileSync(path, text.replace(m.find, () => m.replace));
}

interface Outcome {
  code: number;
  timedOut: boolean;
  seconds: number;
  output: string;
}

/** Runs `args` in `cwd` in its own process group, killed as a group after `timeoutS`. */
async function runIn(cwd: string, args: string[], timeoutS: number): Promise<Outcome> {
  const t0 = performance.now();
  const child = new Deno.Command("setsid", {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      Deno.kill(-child.pid, "SIGKILL"); // setsid made the child a process group leader
    } catch {
      child.kill("SIGKILL");
    }
  }, timeoutS * 1000);
  const out = await child.output();
  clearTimeout(timer);
  return {
    code: out.code,
    timedOut,
    seconds: (performance.now() - t0) / 1000,
    output: dec.decode(out.stdout) + dec.decode(out.stderr),
  };
}

/** The lines of a test run worth showing: failures and the summary. */
function gist(output: string): string {
  const lines = output.split("\n");
  const keep = lines.filter((l) =>
    /\.\.\. FAILED|^(ok|FAILED) \||PRESTO-CHECK FAIL|PRESTO-TEST:|^error:/.test(l)
  );
  return (keep.length > 0 ? keep : lines.slice(-15)).slice(0, 20).map((l) => `      ${l}`)
    .join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string", multiple: true },
      list: { type: "boolean" },
      check: { type: "boolean" },
      "no-baseline": { type: "boolean" },
      keep: { type: "boolean" },
    },
  });
  const only = (values.only ?? []).flatMap((s) => s.split(",")).filter((s) => s !== "");
  for (const n of only) {
    if (!MUTANTS.some((m) => m.name === n)) {
      console.error(`mutate: no mutant named ${n} (--list shows them)`);
      return 2;
    }
  }
  const chosen = only.length > 0 ? MUTANTS.filter((m) => only.includes(m.name)) : MUTANTS;
  if (values.list) {
    for (const m of chosen) console.log(`${m.name}\t${m.file}\t${runLabel(m.run)}\t${m.why}`);
    return 0;
  }
  const problems = checkList(MUTANTS);
  if (problems.length > 0) {
    for (const p of problems) console.error(`mutate: ${p}`);
    return 2;
  }
  if (values.check) {
    console.log(`${MUTANTS.length} mutants, all in sync with the code`);
    return 0;
  }

  const files = await repoFiles();
  const root = Deno.uid() === 0;
  const runnable = (m: Mutant) => !("qemu" in m.run) || root;
  const dirs: string[] = [];
  const scratch = async () => {
    const d = await scratchCopy(files);
    dirs.push(d);
    return d;
  };
  try {
    if (!values["no-baseline"]) {
      const commands = new Map<string, Mutant>();
      for (const m of chosen.filter(runnable)) commands.set(runLabel(m.run), m);
      for (const [label, m] of commands) {
        const dir = await scratch();
        const r = await runIn(dir, runArgs(m.run), m.timeoutS ?? 600);
        console.log(
          `baseline ${r.code === 0 ? "ok  " : "FAIL"} ${label} (${r.seconds.toFixed(1)} s)`,
        );
        if (r.code !== 0) {
          console.log(gist(r.output));
          console.error("mutate: a baseline fails: fix the suite first");
          return 2;
        }
        if (!values.keep) Deno.removeSync(dir, { recursive: true });
      }
    }
    let killed = 0, survived = 0, notRun = 0;
    const t0 = performance.now();
    for (const m of chosen) {
      if (!runnable(m)) {
        notRun++;
        console.log(`NOT RUN   ${m.name} (needs root for QEMU)`);
        continue;
      }
      const dir = await scratch();
      applyMutant(dir, m);
      const r = await runIn(dir, runArgs(m.run), m.timeoutS ?? 300);
      const t = `${r.seconds.toFixed(1)} s`;
      if (r.code !== 0) {
        killed++;
        console.log(
          `KILLED    ${m.name} (${t}${r.timedOut ? ", timed out" : ""}) by ${runLabel(m.run)}`,
        );
        console.log(gist(r.output));
      } else {
        survived++;
        console.log(`SURVIVED  ${m.name} (${t}): ${m.why}; ${runLabel(m.run)} still pass`);
      }
      if (values.keep) console.log(`      kept ${dir}`);
      else Deno.removeSync(dir, { recursive: true });
    }
    const total = ((performance.now() - t0) / 1000).toFixed(0);
    console.log(
      `${killed} killed, ${survived} survived${notRun ? `, ${notRun} not run` : ""} (${total} s)`,
    );
    return survived > 0 ? 1 : 0;
  } finally {
    if (!values.keep) {
      for (const d of dirs) {
        try {
          Deno.removeSync(d, { recursive: true });
        } catch { /* already removed */ }
      }
    }
  }
}

if (import.meta.main) Deno.exit(await main());
