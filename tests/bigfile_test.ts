/** A file of several GiB replicates exactly, in bounded memory. */

import { createHash } from "node:crypto";
import { assert, assertEquals } from "./assert.ts";
import { cli, tempDir } from "./helpers.ts";

const GIB = Number(Deno.env.get("BIG_FILE_GIB") ?? "3");
const MOD = new URL("../mod.ts", import.meta.url).pathname;

function sha256(path: string): string {
  const h = createHash("sha256");
  const f = Deno.openSync(path);
  const buf = new Uint8Array(4 << 20);
  for (let n; (n = f.readSync(buf)) !== null && n > 0;) h.update(buf.subarray(0, n));
  f.close();
  return h.digest("hex");
}

Deno.test(`a ${GIB} GiB file replicates exactly with peak RSS under 300 MB`, async () => {
  const dir = await tempDir();
  const a = `${dir}/a`;
  const b = `${dir}/b`;
  Deno.mkdirSync(a);
  const f = Deno.openSync(`${a}/huge.img`, { write: true, create: true });
  const size = GIB * 1024 ** 3;
  f.truncateSync(size); // sparse; distinct data at a few places
  for (const at of [0, size / 3, size / 2 + 12345, size - 4096]) {
    f.seekSync(Math.floor(at), Deno.SeekMode.Start);
    f.writeSync(crypto.getRandomValues(new Uint8Array(4096)));
  }
  f.close();
  assertEquals((await cli(["init", a, "--host", "alpha"])).code, 0);
  const out = await new Deno.Command("/usr/bin/time", {
    args: [
      "-f",
      "%M",
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      MOD,
      "clone",
      a,
      b,
      "--host",
      "beta",
    ],
    stdin: "null",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assertEquals(out.code, 0, stderr);
  const peakKiB = Number(stderr.split("\n").at(-1));
  assert(peakKiB > 0 && peakKiB < 300 * 1024, `peak RSS ${peakKiB} KiB`);
  assertEquals(Deno.statSync(`${b}/huge.img`).size, size);
  assertEquals(sha256(`${b}/huge.img`), sha256(`${a}/huge.img`));
  await Deno.remove(dir, { recursive: true });
});
