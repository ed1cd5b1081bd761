/**
 * askUnixSocket: the first line of the answer, or null for anything else
 * (no socket, a symlink, nobody listening, no whole line in time), never a
 * hang.
 */

import { assertEquals } from "./assert.ts";
import { tempDir } from "./helpers.ts";
import { askUnixSocket } from "../src/fs/unix_socket.ts";

/** A listener at `path` that handles each connection with `serve`; stop it when done. */
function listen(path: string, serve: (c: Deno.UnixConn) => Promise<void>): () => Promise<void> {
  const l = Deno.listen({ transport: "unix", path });
  const served: Promise<void>[] = [];
  const loop = (async () => {
    for await (const c of l) served.push(serve(c).finally(() => c.close()));
  })();
  return async () => {
    l.close();
    await loop.catch(() => {});
    await Promise.allSettled(served);
  };
}

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("the first line of the answer, also when it arrives in pieces", async () => {
  const path = `${await tempDir()}/s`;
  const stop = listen(path, async (c) => {
    const buf = new Uint8Array(64);
    const n = await c.read(buf);
    const asked = new TextDecoder().decode(buf.subarray(0, n ?? 0));
    await c.write(text(`got ${asked.trim()}`));
    await new Promise((r) => setTimeout(r, 50));
    await c.write(text(" and more\nsecond line\n"));
  });
  try {
    assertEquals(await askUnixSocket(path, "flush\n", 5000), "got flush and more");
  } finally {
    await stop();
  }
});

Deno.test("no whole line in time, or a close before one: null, when the time is up", async () => {
  const path = `${await tempDir()}/s`;
  let answer = true;
  const stop = listen(path, async (_c) => {
    if (answer) return; // closes at once, without a line
    await new Promise((r) => setTimeout(r, 1500)); // says nothing meanwhile
  });
  try {
    assertEquals(await askUnixSocket(path, "flush\n", 5000), null, "closed without a line");
    answer = false;
    const t0 = performance.now();
    assertEquals(await askUnixSocket(path, "flush\n", 300), null, "silent");
    const waited = performance.now() - t0;
    assertEquals(waited >= 290 && waited < 1400, true, `waited ${waited} ms`);
  } finally {
    await stop();
  }
});

Deno.test("no socket, a stale one, a symlink to one, or a file: null", async () => {
  const dir = await tempDir();
  assertEquals(await askUnixSocket(`${dir}/none`, "flush\n", 1000), null);
  const stale = `${dir}/stale`;
  const stop = listen(`${dir}/live`, async (c) => void await c.write(text("yes\n")));
  try {
    Deno.symlinkSync(`${dir}/live`, `${dir}/link`);
    Deno.linkSync(`${dir}/live`, stale); // outlives the listener: a socket nobody listens on
    assertEquals(await askUnixSocket(`${dir}/link`, "flush\n", 1000), null, "a symlink");
    assertEquals(await askUnixSocket(`${dir}/live`, "flush\n", 1000), "yes", "the socket itself");
  } finally {
    await stop();
  }
  assertEquals(Deno.lstatSync(stale).isSocket, true);
  assertEquals(await askUnixSocket(stale, "flush\n", 1000), null, "nobody listens");
  Deno.writeTextFileSync(`${dir}/file`, "yes\n");
  assertEquals(await askUnixSocket(`${dir}/file`, "flush\n", 1000), null, "a file");
});
