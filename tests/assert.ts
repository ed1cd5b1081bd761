/** The few assertions the tests use, on top of node:assert/strict. */

import assertStrict from "node:assert/strict";

export function assert(cond: unknown, msg?: string): asserts cond {
  assertStrict.ok(cond, msg);
}

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  assertStrict.deepStrictEqual(actual, expected, msg);
}

export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  assertStrict.notDeepStrictEqual(actual, expected, msg);
}

export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  assertStrict.match(actual, re, msg);
}

export function assertThrows(
  fn: () => unknown,
  cls?: new (...a: never[]) => Error,
  includes?: string,
  what = "",
): Error {
  try {
    fn();
  } catch (e) {
    if (cls) assertStrict.ok(e instanceof cls, `${what}: expected ${cls.name}, got ${e}`);
    if (includes) {
      assertStrict.ok(String(e).includes(includes), `${what}: ${e} lacks "${includes}"`);
    }
    return e as Error;
  }
  throw new assertStrict.AssertionError({ message: `${what}: expected an exception` });
}
