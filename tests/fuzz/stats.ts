/**
 * What a campaign counts: sessions, frames, requests by type, replies, how
 * sessions ended, ERROR codes, internal errors, and (FUZZ_KEEP_GOING=1) the
 * replies that broke the message rules; and its printed summary.
 */

import { SEED } from "./settings.ts";

export class Stats {
  ms = 0;
  sessions = 0;
  frames = 0;
  requests = 0;
  replied = 0;
  endings = new Map<string, number>();
  handshakes = new Map<string, number>();
  errorCodes = new Map<string, number>();
  serverCalls = 0;
  internal = new Set<string>();
  /** Well-framed requests sent, by type. */
  sent = new Map<string, number>();
  /** DATA frames that came deflated. */
  deflated = 0;
  /** Replies that broke the message rules (FUZZ_KEEP_GOING=1). */
  findings = new Map<string, string>();
  findingCounts = new Map<string, number>();
  bump(m: Map<string, number>, k: string): void {
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  line(transport: string): string {
    const show = (m: Map<string, number>) =>
      [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(" ");
    return [
      `wire fuzz ${transport}: seed ${SEED}, ${Math.round(this.ms)} ms, ${this.sessions} ` +
      `sessions, ${this.frames} frames sent ` +
      `(${this.requests} well-framed requests, ${this.replied} replied; ${this.serverCalls} ` +
      `calls of the server answered)`,
      `  requests: ${show(this.sent)}; ${this.deflated} DATA frames came deflated`,
      `  endings: ${show(this.endings)}`,
      `  handshake fuzz: ${show(this.handshakes)}`,
      `  ERROR replies: ${show(this.errorCodes)}`,
      `  internal errors: ${[...this.internal].join(" | ") || "none"}`,
      ...[...this.findings].map(([k, example]) =>
        `  FINDING (${this.findingCounts.get(k)} times): ${k}; e.g. ${example.slice(0, 400)}`
      ),
    ].join("\n");
  }
}
