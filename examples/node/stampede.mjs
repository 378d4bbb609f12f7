// The Node part of `make demo`: 10,000 concurrent calls (promises) on one cold key; the value is
// computed once. Prints how many times it was computed, the wall time and the cache's stats (as
// the Rust and Python demos do).
// Run from the repository root after `npm install && npm run build`: node examples/node/stampede.mjs
import { configure, cached, stats } from 'coopcache';

const CALLERS = 10_000;
configure('demo-promises');

let computed = 0;
async function slowLookup() {
  computed += 1;
  await new Promise((resolve) => setTimeout(resolve, 100)); // a slow backend
  return { user: 'Ada', plan: 'pro' };
}

const start = performance.now();
const results = await Promise.all(
  Array.from({ length: CALLERS }, () => cached('demo-promises', ['user', 42], slowLookup)),
);
const ms = performance.now() - start;

const same = results.every((r) => r === results[0]); // a hit returns the very object computed
console.log(`node: ${CALLERS.toLocaleString('en-US')} promises on one cold key: computed ${computed} ` +
  `time${computed === 1 ? '' : 's'} in ${ms.toFixed(0)} ms; every caller got the same value: ${same}`);
const s = stats('demo-promises');
console.log('  stats:', Object.entries(s).map(([k, v]) => `${k}=${v}`).join(' '));
if (computed !== 1 || !same) process.exitCode = 1;
