// A worker thread of tests/node/process.test.mjs: configures the cache with shared: 'process',
// asks for one key, then follows the main thread's commands ('get', 'ask', 'exit').
import { workerData, parentPort, threadId } from 'node:worker_threads';
import { configure, cached, get, stats } from 'coopcache';

const { name, key, counters } = workerData;
// [0] computations, [1] workers whose call reached the cache, [2] workers to wait for.
const c = new Int32Array(counters);
configure(name, { shared: 'process' });

/** Resolves once counter `i` is at least `n` (woken by Atomics.notify, no polling). */
async function atLeast(i, n) {
  for (let seen = Atomics.load(c, i); seen < n; seen = Atomics.load(c, i)) {
    await Atomics.waitAsync(c, i, seen).value;
  }
}

async function ask() {
  const p = cached(name, key, async () => {
    Atomics.add(c, 0, 1);
    // Finish only once every worker's call has reached the cache: the others wait on this one.
    await atLeast(1, Atomics.load(c, 2));
    return { rows: [1, 2, 3], by: threadId };
  });
  // cached() asks the process tier before it returns, so this worker is now computing or waiting.
  Atomics.add(c, 1, 1);
  Atomics.notify(c, 1);
  return p;
}

parentPort.on('message', async (cmd) => {
  if (cmd === 'ask') parentPort.postMessage({ value: await ask(), stats: stats(name) });
  else if (cmd === 'get') parentPort.postMessage({ value: get(name, key) ?? null });
  else if (cmd === 'exit') parentPort.close();
});
parentPort.postMessage('ready');
