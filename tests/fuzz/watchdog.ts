/**
 * Bounded waits: every wait of the fuzz (a reply, a send, a close, an exit)
 * must end within WAIT_MS or fail the test, so that a hung server cannot hang
 * it. One watchdog checks every deadline.
 */

import { WAIT_MS } from "./settings.ts";

/** Waits that must end in time, checked by one watchdog (a timer each would cost more than a frame). */
interface Deadline {
  at: number;
  fire: () => void;
}
const deadlines = new Set<Deadline>();
let watchdog: ReturnType<typeof setInterval> | undefined;

function watch(d: Deadline): void {
  deadlines.add(d);
  watchdog ??= setInterval(() => {
    const now = Date.now();
    for (const x of deadlines) {
      if (now > x.at) {
        deadlines.delete(x);
        x.fire();
      }
    }
  }, 250);
}

/** Stops the watchdog (the end of the test). */
export function stopWatchdog(): void {
  clearInterval(watchdog);
  watchdog = undefined;
}

/** `p`, or a failure (after `onTimeout`) if it has not settled within WAIT_MS: a hang fails. */
export function timed<T>(p: Promise<T>, what: () => string, onTimeout = () => {}): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const d: Deadline = {
      at: Date.now() + WAIT_MS,
      fire: () => {
        onTimeout();
        reject(new Error(`nothing within ${WAIT_MS} ms: ${what()}`));
      },
    };
    watch(d);
    p.then((v) => {
      deadlines.delete(d);
      resolve(v);
    }, (e) => {
      deadlines.delete(d);
      reject(e);
    });
  });
}
