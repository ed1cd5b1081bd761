/**
 * A connection to one `serve --stdio` child process: frames over its pipes,
 * written in chunks cut anywhere; its exit status and stderr at the end.
 */

import { FrameDecoder } from "../../src/wire/frame.ts";
import { type Arrival, type Conn, Queue } from "./conn.ts";
import { chance, int, type Rng } from "./random.ts";
import { concat, text } from "./bytes.ts";
import { MOD, WAIT_MS } from "./settings.ts";

/** One `serve --stdio` process. */
export class StdioConn implements Conn {
  readonly transport = "stdio";
  readonly child: Deno.ChildProcess;
  readonly stderr: Promise<string>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #queue = new Queue();

  constructor(dir: string) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--no-prompt", "--quiet", MOD, "serve", "--stdio", "-C", dir],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.stderr = new Response(this.child.stderr).text();
    this.#pump();
  }

  async #pump(): Promise<void> {
    const d = new FrameDecoder();
    try {
      for await (const chunk of this.child.stdout) {
        for (const f of d.push(chunk)) this.#queue.push(f);
      }
      d.end();
      this.#queue.push(null);
    } catch (e) {
      this.#queue.push(new Error(`the server's stdout broke framing: ${(e as Error).message}`));
    }
  }

  /** The units as one byte stream, written in a few chunks cut anywhere. */
  async send(units: (Uint8Array | string)[], r: Rng): Promise<void> {
    const all = concat(units.map((u) => typeof u === "string" ? text(u) : u));
    const cuts = [0];
    const n = chance(r, 0.3) ? 1 + int(r, 4) : 0;
    for (let i = 0; i < n; i++) cuts.push(int(r, all.length + 1));
    if (chance(r, 0.05)) cuts.push(1, 2, 3, 5, 8, 11); // a dribbled header
    cuts.push(all.length);
    cuts.sort((x, y) => x - y);
    for (let i = 1; i < cuts.length; i++) {
      if (cuts[i] === cuts[i - 1]) continue;
      try {
        await this.#writer.write(all.subarray(cuts[i - 1], cuts[i]));
      } catch {
        return; // the server closed its end (after a broken rule): fine
      }
    }
  }

  next(what: () => string): Promise<Arrival> {
    return this.#queue.next(what);
  }

  async end(): Promise<void> {
    await this.#writer.close().catch(() => {});
  }

  abort(): void {
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
  }

  /** Exit status and stderr, or a failure if the process does not exit in time. */
  async exit(): Promise<{ code: number; stderr: string }> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), WAIT_MS));
    const st = await Promise.race([this.child.status, timeout]);
    clearTimeout(timer);
    if (!st) {
      this.child.kill("SIGKILL");
      await this.child.status;
      throw new Error(`serve --stdio did not exit within ${WAIT_MS} ms: ${await this.stderr}`);
    }
    return { code: st.code, stderr: await this.stderr };
  }

  /** Kills a process whose session failed the test; its stderr. */
  async kill(): Promise<string> {
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.child.status;
    return await this.stderr;
  }
}
