// Shared mode: 4 processes x 100 callers on one cold key, computed once across all of them.
// Needs a Redis server: node examples/node/shared.mjs [REDIS_URL]
// (default: $REDIS_URL, else redis://127.0.0.1:6379)
// (run from the repository root after `npm install && npm run build`; the cache name is fresh on every run).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { configure, cached } from 'coopcache';

const PROCESSES = 4;
const CALLERS = 100;

if (process.argv[2] === '--child') {
  const [, , , url, name] = process.argv;
  const cache = configure(name, { redisUrl: url, serializer: 'json' });
  await new Promise((r) => process.once('message', r)); // start together
  let computed = 0;
  const results = await Promise.all(
    Array.from({ length: CALLERS }, () =>
      cached(name, ['report', 2024], async () => {
        computed += 1;
        await sleep(200); // a slow backend
        return { pid: process.pid, total: 42 };
      }),
    ),
  );
  process.send({ computed, value: results[0], stats: cache.stats() });
} else {
  const url = process.argv[2] ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const name = `example-${process.pid}-${Date.now()}`;
  const me = fileURLToPath(import.meta.url);
  const children = Array.from({ length: PROCESSES }, () => fork(me, ['--child', url, name]));
  await sleep(500); // let them start, so that they ask at the same moment
  const replies = children.map((c) => new Promise((r) => c.once('message', r)));
  for (const c of children) c.send('go');
  const results = await Promise.all(replies);
  for (const c of children) if (c.connected) c.disconnect();
  const computed = results.reduce((n, r) => n + r.computed, 0);
  const same = results.every((r) => JSON.stringify(r.value) === JSON.stringify(results[0].value));
  console.log(`node shared mode: ${PROCESSES} processes x ${CALLERS} callers, ` +
    `computed ${computed} time${computed === 1 ? '' : 's'}, ` +
    `every caller got the same value: ${same} (computed by pid ${results[0].value.pid})`);
  console.log('remote hits per process:', results.map((r) => r.stats.remoteHits).join(', '));
  if (computed !== 1 || !same) process.exitCode = 1;
}
