// The Node part of `make demo`: 10,000 concurrent calls on one cold key.
// Run from the repository root after `npm install`: node examples/node/stampede.mjs
import { configure, cached, stats } from 'coopcache';

const CALLERS = 10_000;
configure('demo', { memoryLimit: 50 * 1024 * 1024, cacheDuration: 10 });

let computed = 0;
async function slowLookup() {
  computed += 1;
  await new Promise((resolve) => setTimeout(resolve, 100)); // a slow backend
  return { user: 'Ada', plan: 'pro' };
}

const t0 = performance.now();
const results = await Promise.all(
  Array.from({ length: CALLERS }, () => cached('demo', ['user', 42], slowLookup)),
);
const ms = performance.now() - t0;

const same = results.every((r) => r === results[0]);
console.log(`node: ${CALLERS} concurrent callers, computed ${computed} time${computed === 1 ? '' : 's'}` +
  `, ${ms.toFixed(1)} ms, every caller got the same object: ${same}`);
console.log('stats:', stats('demo'));
if (computed !== 1 || !same) process.exitCode = 1;
