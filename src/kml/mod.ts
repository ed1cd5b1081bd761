/**
 * The KML: records and the log file.
 *
 * @module
 */

export * from "./record.ts";
export * from "./log.ts";
export { crc32c } from "./crc32c.ts";
