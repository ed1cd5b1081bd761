/**
 * node:zlib, imported when DATA is first deflated or inflated: loading the
 * Node compatibility layer behind it costs every command tens of
 * milliseconds of start-up, and only `--compress` needs it.
 *
 * @module
 */

let loaded: typeof import("node:zlib") | undefined;

/** The node:zlib module, loaded on the first call. */
export async function zlib(): Promise<typeof import("node:zlib")> {
  loaded ??= await import("node:zlib");
  return loaded;
}
