import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import v8 from 'node:v8';
import vm from 'node:vm';
import * as esm from 'coopcache';
import { configure, cached, get, clear, invalidate, stats, events } from 'coopcache';
import { uniq, sleep, until } from './helpers.mjs';

// The package's entry as this suite resolves it (a checkout's, or an installed one's), for child
// processes and workers.
const ENTRY = createRequire(import.meta.url).resolve('coopcache');
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

test('require() and import give the same module', () => {
  const require = createRequire(import.meta.url);
  const cjs = require('coopcache');
  assert.equal(cjs.configure, esm.configure);
  assert.equal(cjs.events, esm.events);
  assert.equal(typeof esm.default.cached, 'function');
});

/** Runs `drop(name)` on a cache holding one object and waits for the object to be collected. */
async function releasedAfter(drop, settings = {}) {
  const name = uniq('release');
  configure(name, settings);
  let collected = false;
  const registry = new FinalizationRegistry(() => { collected = true; });
  await (async () => {
    const value = { payload: 'x'.repeat(1000) };
    registry.register(value, 'value');
    assert.equal(await cached(name, 'k', () => value), value);
  })();
  // Still held by the cache.
  for (let i = 0; i < 3; i++) { gc(); await sleep(10); }
  assert.equal(collected, false, 'the cache keeps its value alive');
  drop(name);
  return until(async () => { gc(); await sleep(5); return collected; }, 10000, 10);
}

test('values are released when cleared', async () => {
  assert.ok(await releasedAfter((name) => clear(name)));
});

test('values are released when invalidated', async () => {
  assert.ok(await releasedAfter((name) => invalidate(name, 'k')));
});

test('values are released when they expire', async () => {
  assert.ok(await releasedAfter(() => {}, { cacheDuration: 0.1 }));
});

test('values not stored (memory limit 0) and failed computations are released', async () => {
  const name = uniq('release0');
  const fulls = [];
  const onFull = (e) => { if (e.cache === name) fulls.push(e); };
  events.on('full', onFull); // heard, not printed as a warning
  configure(name, { memoryLimit: 0 });
  let collected = 0;
  const registry = new FinalizationRegistry(() => { collected++; });
  await (async () => {
    const v = { a: 1 };
    registry.register(v, 'v');
    await cached(name, 'k', () => v);
    const e = new Error('x');
    registry.register(e, 'e');
    await cached(name, 'e', () => { throw e; }).catch(() => {});
  })();
  assert.ok(await until(async () => { gc(); await sleep(5); return collected === 2; }, 10000, 10));
  assert.equal(stats(name).entries, 0);
  assert.ok(await until(() => fulls.length > 0));
  events.off('full', onFull);
});

test('the ids of released values, reused for new values, answer only for the new keys', async () => {
  // The JS side keeps values (and the promise their hits resolve to) in arrays by id and reuses
  // the ids the core released: a key whose value went must miss, a kept key keep its value, and a
  // new key get its own.
  const name = uniq('reuse');
  configure(name);
  let collected = 0;
  const registry = new FinalizationRegistry(() => { collected++; });
  const old = (i) => ({ key: i, gen: 'old' });
  await (async () => {
    for (let i = 0; i < 20; i++) {
      const v = old(i);
      if (i % 2 === 1) registry.register(v, i);
      await cached(name, i, () => v);
      assert.equal(await cached(name, i, () => 'a hit'), v);
    }
  })();
  for (let i = 1; i < 20; i += 2) invalidate(name, i);
  assert.ok(await until(async () => { gc(); await sleep(5); return collected === 10; }, 10000, 10));
  for (let i = 20; i < 30; i++) await cached(name, i, () => ({ key: i, gen: 'new' }));
  for (let i = 0; i < 30; i++) {
    const v = await cached(name, i, () => ({ key: i, gen: 'again' }));
    const gen = i >= 20 ? 'new' : i % 2 === 1 ? 'again' : 'old';
    assert.deepEqual(v, { key: i, gen }, `key ${i}`);
  }
});

test('worker threads load the addon and keep their own caches', async () => {
  const name = uniq('workers');
  configure(name);
  await cached(name, 'k', () => 'main');
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { configure, cached, get, stats } = require(workerData.entry);
    (async () => {
      const name = workerData.name;
      let seen;
      try { get(name, 'k'); } catch (e) { seen = e.code; }
      configure(name);
      let runs = 0;
      const vs = await Promise.all(Array.from({ length: 100 }, () =>
        cached(name, 'k', async () => { runs++; await new Promise((r) => setTimeout(r, 5)); return 'worker'; })));
      parentPort.postMessage({ seen, runs, v: vs[0], same: vs.every((x) => x === vs[0]), entries: stats(name).entries });
    })();
  `;
  const results = await Promise.all([1, 2].map(() => new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { entry: ENTRY, name } });
    let msg;
    w.on('message', (m) => { msg = m; });
    w.on('error', reject);
    w.on('exit', (c) => (c === 0 ? resolve(msg) : reject(new Error(`worker exit ${c}`))));
  })));
  for (const r of results) {
    assert.deepEqual(r, { seen: 'ERR_COOPCACHE_UNKNOWN_CACHE', runs: 1, v: 'worker', same: true, entries: 1 });
  }
  assert.equal(get(name, 'k'), 'main');
});

test('the process exits on its own after use', () => {
  const script = `
    const { configure, cached, events, nocache } = require(${JSON.stringify(ENTRY)});
    events.on('evict', () => {});
    (async () => {
      configure('exit', { cacheDuration: 0.05, memoryLimit: 1000, whenFull: 'evict', maxConcurrency: 2 });
      await Promise.all(Array.from({ length: 1000 }, (_, i) => cached('exit', i % 10, async () => 'v'.repeat(100))));
      await cached('exit', 'e', () => { throw new Error('x'); }).catch(() => {});
      await cached('exit', 'n', () => nocache(1));
      await cached('exit', 't', () => new Promise((r) => setTimeout(r, 50, 1)), { timeoutMs: 1 }).catch(() => {});
      console.log('done');
    })();
  `;
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' });
  assert.equal(r.error, undefined, 'the child did not exit on its own');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /done/);
});
