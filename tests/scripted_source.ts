/**
 * An event source for lento tests that need no root: the test decides what
 * the "kernel" holds and when it is delivered.
 */

import type { EventSource, Hint } from "../src/capture/events.ts";
import { after } from "../src/timer.ts";

/** A source whose "kernel queue" the test fills: queued() until delivered. */
export class ScriptedSource implements EventSource {
  readonly name = "scripted";
  #queued = false;
  #deliver: ((h: Hint[]) => void) | null = null;

  next(): Promise<Hint[]> {
    return new Promise((ok) => (this.#deliver = ok));
  }

  queued(): boolean {
    return this.#queued;
  }

  /** Events for `paths` wait in the queue; the pending next() gets them `ms` later. */
  hold(paths: string[], ms: number): void {
    this.#queued = true;
    after(ms, () => {
      this.#queued = false;
      this.#deliver?.([{ kind: "paths", paths }]);
      this.#deliver = null;
    });
  }

  /** Reports queued events forever, and never delivers them. */
  jam(): void {
    this.#queued = true;
  }

  close(): void {
    this.#queued = false;
    this.#deliver?.([]);
    this.#deliver = null;
  }
}
