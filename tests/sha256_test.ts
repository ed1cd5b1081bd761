/** The TypeScript SHA-256 (used before node:crypto is loaded) gives node:crypto's digests. */

import { assertEquals } from "./assert.ts";
import { createHash } from "node:crypto";
import { Sha256 } from "../src/fs/sha256.ts";

Deno.test("Sha256: the FIPS 180-4 example and node:crypto's digests, fed in any pieces", () => {
  const abc = new Sha256().update(new TextEncoder().encode("abc")).digest("hex");
  assertEquals(abc, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Lengths around the padding boundaries (55/56/64 bytes) and several blocks.
  for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 70_000]) {
    const bytes = new Uint8Array(n).map((_, i) => (i * 31 + n) & 255);
    const want = createHash("sha256").update(bytes).digest("hex");
    for (const cut of [0, 1, 63, Math.floor(n / 2), n]) {
      const h = new Sha256().update(bytes.subarray(0, cut)).update(bytes.subarray(cut));
      assertEquals(h.digest("hex"), want, `${n} bytes cut at ${cut}`);
    }
  }
});
