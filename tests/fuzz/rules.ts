/**
 * The wire's rules asked cheaply: whether a payload decodes as a message of a
 * type, and whether a decoder holds only whole frames.
 */

import type { FrameDecoder, MsgType } from "../../src/wire/frame.ts";
import { decodeMessage, type Message } from "../../src/wire/messages.ts";

/** The message, or null where the rules refuse `payload` as a message of `type`. */
export function tryDecode(type: MsgType, payload: Uint8Array): Message | null {
  // Most tries fail: a stack trace for each would cost more than the rest of a frame.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return decodeMessage(type, payload);
  } catch {
    return null;
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** True if the message rules accept `payload` as a message of `type`. */
export function decodes(type: MsgType, payload: Uint8Array): boolean {
  return tryDecode(type, payload) !== null;
}

/** True if nothing is left in the decoder (a message holds whole frames only). */
export function endsClean(d: FrameDecoder): boolean {
  try {
    d.end();
    return true;
  } catch {
    return false;
  }
}
