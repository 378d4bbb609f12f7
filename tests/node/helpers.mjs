// Shared helpers for the node --test suites.
import { setTimeout as sleep } from 'node:timers/promises';

let n = 0;
/** A cache name unique to this test file and call. */
export function uniq(prefix = 't') {
  n += 1;
  return `${prefix}-${process.pid}-${n}`;
}

/** Polls `cond` until it is true or `ms` pass (behaviour, not timing: the bound is generous). */
export async function until(cond, ms = 10000, every = 20) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await sleep(every);
  }
}

export { sleep };
