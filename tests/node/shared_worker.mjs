// A Node process of the cross-language shared-mode test (tests/cross).
//
// Usage: node tests/node/shared_worker.mjs REDIS_URL CACHE
//
// Configures CACHE in shared mode (serializer 'json', cacheDuration 60) and asks for the key
// ['user', 42]; the function counts itself with INCR coopcache-test:computed:<CACHE> on the same
// Redis, waits 300 ms and returns { value: 'from node' }. Prints JSON.stringify(result) on one
// line and exits on its own (0; 1 with the error on stderr).
import { configure, cached } from 'coopcache';
import { setTimeout as sleep } from 'node:timers/promises';
import { command } from './resp.mjs';

const [url, name] = process.argv.slice(2);
if (!url || !name) {
  console.error('usage: node tests/node/shared_worker.mjs REDIS_URL CACHE');
  process.exit(2);
}
const cache = configure(name, { redisUrl: url, serializer: 'json', cacheDuration: 60 });
// Wait for the connection, so this process takes part in the shared flight (bounded).
for (let i = 0; i < 500 && !cache.sharedUp; i++) await sleep(10);
try {
  const result = await cached(name, ['user', 42], async () => {
    await command(url, 'INCR', `coopcache-test:computed:${name}`);
    await sleep(300);
    return { value: 'from node' };
  });
  console.log(JSON.stringify(result));
} catch (e) {
  console.error(e);
  process.exitCode = 1;
}
