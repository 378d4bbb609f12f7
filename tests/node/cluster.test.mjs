// Shared mode on a Redis Cluster (the README's "On a Redis Cluster"), through the public
// `redis+cluster://` URL: a six-node cluster of this file's own (tests/node/redis_server.mjs),
// child processes (tests/node/shared_child.mjs) and this one sharing caches through it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { configure, cached, events } from 'coopcache';
import { ipcChild, uniq, until } from './helpers.mjs';
import { startCluster } from './redis_server.mjs';

let cluster;
const children = new Set();

before(async () => {
  cluster = await startCluster();
});

after(async () => {
  await Promise.all([...children].map((c) => c.close()));
  events.on('sharedDown', () => {}); // stopping the cluster takes this file's tiers down: expected
  await cluster?.stop();
});

/** A child process with cache `name` on the cluster, its tier up; `call(op, args)` over IPC. */
async function clusterChild(name) {
  const c = ipcChild(children);
  await c.call('configure', { name, options: { redisUrl: cluster.url, serializer: 'json' } });
  assert.equal(await c.call('ready', { name }), true, 'the tier is up on the cluster');
  return c;
}

test('two processes on one cold key over a redis+cluster:// URL: computed once, both get the value', async () => {
  const name = uniq('cluster-stampede');
  const [a, b] = await Promise.all([clusterChild(name), clusterChild(name)]);
  const value = { user: 'Ada', tags: ['a', 'b'] };
  const call = { name, key: ['user', 42], callers: 3, noCount: true, delayMs: 300, value };
  const results = (await Promise.all([a.call('cached', call), b.call('cached', call)])).flat();
  for (const r of results) assert.deepEqual(r, { ok: true, value });
  const stats = await Promise.all([a, b].map((p) => p.call('stats', { name })));
  assert.equal(stats.reduce((n, s) => n + s.computations, 0), 1, 'computed once across the processes');
  assert.equal(stats.reduce((n, s) => n + s.leasesWon, 0), 1);
  await Promise.all([a.close(), b.close()]);
});

test('invalidate in one process reaches another over the cluster', async () => {
  const name = uniq('cluster-invalidate');
  configure(name, { redisUrl: cluster.url, serializer: 'json' });
  assert.ok(await until(() => configure(name).sharedUp), 'the tier is up on the cluster');
  assert.equal(await cached(name, 'k', () => 'here'), 'here');
  const b = await clusterChild(name);
  const [rb] = await b.call('cached', { name, key: 'k', noCount: true, value: 'not this' });
  assert.deepEqual(rb, { ok: true, value: 'here' }, 'b read the value from the cluster');
  assert.equal((await b.call('stats', { name })).computations, 0);
  configure(name).invalidate('k');
  assert.ok(await until(async () => (await b.call('get', { name, key: 'k' })) === undefined), 'dropped in b');
  const [again] = await b.call('cached', { name, key: 'k', noCount: true, value: 'recomputed' });
  assert.deepEqual(again, { ok: true, value: 'recomputed' }, 'and from the cluster');
  await b.close();
});
