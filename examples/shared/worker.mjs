// The Node process of the cross-process demo (examples/shared/demo.py starts it).
//
// Usage: node examples/shared/worker.mjs REDIS_URL CACHE
//
// Configures CACHE with a shared tier on REDIS_URL (serializer 'json', so Python and Rust
// processes share the key space), prints "ready", waits for a line on stdin, then asks for the
// key ['report', 2024]. Computing it takes 500 ms. Prints one JSON line: who it is, whether it
// computed the value, and the value it got.
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { configure, cached } from 'coopcache';

const [url, name] = process.argv.slice(2);
configure(name, { redisUrl: url, serializer: 'json', cacheDuration: 60 });
console.log('ready');
const stdin = createInterface({ input: process.stdin });
await once(stdin, 'line'); // every process starts at the same moment
stdin.close();

const me = `node pid ${process.pid}`;
let computed = false;
const value = await cached(name, ['report', 2024], async () => {
  computed = true;
  await sleep(500); // an expensive computation
  return { report: 2024, computed_by: me };
});
console.log(JSON.stringify({ who: me, computed, value }));
