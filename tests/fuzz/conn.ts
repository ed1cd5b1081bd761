/**
 * A connection: a frame stream to and from one server session, whatever the
 * transport, and the queue its arrivals wait in.
 */

import type { Frame } from "../../src/wire/frame.ts";
import type { Rng } from "./random.ts";
import { timed } from "./watchdog.ts";

/** Something that arrived: a frame, the end of the stream (null), or broken framing. */
export type Arrival = Frame | null | Error;

export class Queue {
  #q: Arrival[] = [];
  #head = 0;
  #wake?: () => void;

  push(x: Arrival): void {
    this.#q.push(x);
    this.#wake?.();
  }

  get empty(): boolean {
    return this.#head === this.#q.length;
  }

  /** The next arrival; throws if none comes within WAIT_MS. */
  async next(what: () => string): Promise<Arrival> {
    if (this.#head === this.#q.length) {
      try {
        await timed(new Promise<void>((resolve) => this.#wake = resolve), what);
      } finally {
        this.#wake = undefined;
      }
    }
    const x = this.#q[this.#head++];
    if (this.#head > 1024) {
      this.#q = this.#q.slice(this.#head);
      this.#head = 0;
    }
    return x;
  }
}

export interface Conn {
  readonly transport: "stdio" | "https";
  /** Sends units: bytes (a frame, several, or garbage) or text (a text message over https). */
  send(units: (Uint8Array | string)[], r: Rng): Promise<void>;
  /** The next frame, null at the end, an Error for broken framing; throws after WAIT_MS. */
  next(what: () => string): Promise<Arrival>;
  /** Ends the stream from our side. */
  end(): Promise<void>;
  /** Cuts the connection (a hung server). */
  abort(): void;
}
