// shared: 'process': the worker_threads of one process share a cache without Redis.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { configure, cached, invalidate, stats } from 'coopcache';
import { uniq } from './helpers.mjs';

const WORKER = new URL('./process_worker.mjs', import.meta.url);

async function workers(n, name, key, counters) {
  const ws = Array.from({ length: n }, () => new Worker(WORKER, { workerData: { name, key, counters } }));
  await Promise.all(ws.map((w) => once(w, 'message')));
  return ws;
}

/** Sends `cmd` to every worker and collects their replies. */
function all(ws, cmd) {
  return Promise.all(
    ws.map((w) => {
      const reply = once(w, 'message').then(([m]) => m);
      w.postMessage(cmd);
      return reply;
    }),
  );
}

test("4 worker_threads on one cold key with shared: 'process' compute it once", async () => {
  const name = uniq('proc');
  const key = ['report', 1];
  // The main thread is one more member: the process's store lives while a member does.
  configure(name, { shared: 'process' });
  const counters = new SharedArrayBuffer(12);
  const c = new Int32Array(counters);
  Atomics.store(c, 2, 4);
  const ws = await workers(4, name, key, counters);
  try {
    const replies = await all(ws, 'ask');
    assert.equal(Atomics.load(c, 0), 1, 'computed once for the four workers');
    const leader = replies[0].value.by;
    for (const r of replies) assert.deepEqual(r.value, { rows: [1, 2, 3], by: leader });
    const sum = (f) => replies.reduce((n, r) => n + r.stats[f], 0);
    assert.equal(sum('leasesWon'), 1);
    assert.equal(sum('remoteWaits'), 3);

    // The main thread reads it without computing (its own copy, deserialized).
    const v = await cached(name, key, () => assert.fail('computed again'));
    assert.deepEqual(v, { rows: [1, 2, 3], by: leader });
    assert.equal(stats(name).remoteHits, 1);

    // Invalidation on the main thread reaches every worker's local tier.
    assert.ok((await all(ws, 'get')).every((r) => r.value !== null));
    invalidate(name, key);
    assert.ok((await all(ws, 'get')).every((r) => r.value === null));

    // And the process tier: the next ask computes again, once.
    Atomics.store(c, 1, 0);
    const again = await all(ws, 'ask');
    assert.equal(Atomics.load(c, 0), 2);
    assert.ok(again.every((r) => r.value.by === again[0].value.by));
  } finally {
    await Promise.all(ws.map((w) => w.terminate()));
  }
});

test("shared: 'process' is checked when configuring", () => {
  const bad = (opts, re) =>
    assert.throws(() => configure(uniq('proc-bad'), opts), (e) => e.code === 'ERR_COOPCACHE_INVALID_CONFIG' && re.test(e.message));
  bad({ shared: 'redis' }, /invalid shared: "redis" \(string\); expected 'process'/);
  bad({ shared: true }, /invalid shared: true \(boolean\); expected 'process'/);
  bad({ shared: 'process', redisUrl: 'redis://127.0.0.1:1' }, /shared: 'process' with redisUrl/);
  bad({ shared: 'process', secret: 's' }, /shared: 'process' with secret/);
  const name = uniq('proc-local');
  configure(name, {});
  assert.throws(() => configure(name, { shared: 'process' }), /the shared tier the cache was first configured with/);
  const shared = configure(uniq('proc-ok'), { shared: 'process' });
  assert.equal(shared.sharedUp, true);
});
