/**
 * Copies stdin to stdout as it arrives, up to N bytes (the first argument),
 * then exits: a connection that drops after N bytes, for the transport tests.
 */

let left = Number(Deno.args[0]);
const out = Deno.stdout.writable.getWriter();
for await (const chunk of Deno.stdin.readable) {
  const part = chunk.subarray(0, left);
  if (part.length > 0) await out.write(part);
  left -= part.length;
  if (left <= 0) break;
}
Deno.exit(0);
