// A worker thread of tests/node/follow.test.mjs: computes key 'a' of a shared: 'process' cache,
// finishing when the main thread posts a message, then flags that it has stored the value.
import { workerData, parentPort } from 'node:worker_threads';
import { once } from 'node:events';
import { configure, cached } from 'coopcache';

const { name } = workerData;
const flags = new Int32Array(workerData.flags); // [computing, stored]
configure(name, { shared: 'process' });
const go = once(parentPort, 'message'); // (listening keeps this thread alive)
await cached(name, 'a', async () => {
  Atomics.store(flags, 0, 1);
  Atomics.notify(flags, 0);
  await go;
  return 'from the worker';
});
Atomics.store(flags, 1, 1);
Atomics.notify(flags, 1);
