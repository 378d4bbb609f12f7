// Batches (cachedMany): one loader call for the keys nobody has, each of them a flight that
// single calls and other batches join. Ordering by promises the test holds, never by time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configure, cached, cachedMany, get, stats } from 'coopcache';
import { uniq } from './helpers.mjs';

function gate() {
  let open;
  const promise = new Promise((r) => { open = r; });
  return { promise, open };
}

test('3 overlapping batches and 10 single calls load each key exactly once', async () => {
  const name = uniq('many');
  configure(name);
  const loads = new Map();
  const g = gate();
  let first = true;
  const loader = async (missing) => {
    for (const k of missing) loads.set(k, (loads.get(k) ?? 0) + 1);
    if (first) {
      first = false;
      await g.promise; // the first batch holds its keys while the others join them
    }
    return new Map(missing.map((k) => [k, `v${k}`]));
  };
  const batches = [[0, 1, 2, 3, 4, 5], [3, 4, 5, 6, 7, 8, 9], [0, 2, 4, 6, 8]];
  const pending = batches.map((keys) => cachedMany(name, keys, loader));
  const singles = Array.from({ length: 10 }, (_, k) => cached(name, k, async () => (await loader([k])).get(k)));
  g.open();
  const got = await Promise.all(pending);
  assert.deepEqual(got, batches.map((keys) => keys.map((k) => `v${k}`)));
  assert.deepEqual(await Promise.all(singles), Array.from({ length: 10 }, (_, k) => `v${k}`));
  assert.deepEqual([...loads.keys()].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.ok([...loads.values()].every((n) => n === 1), `every key loaded once: ${[...loads]}`);
  assert.ok(stats(name).coalesced >= 6, 'the others joined the first batch');
});

test('the loader may return a plain object (read by String(key)) or a Map, at once or as a promise', async () => {
  const name = uniq('many-forms');
  configure(name);
  assert.deepEqual(await cachedMany(name, [1, 'b'], (ks) => Object.fromEntries(ks.map((k) => [k, `${k}!`]))), ['1!', 'b!']);
  assert.deepEqual(await cachedMany(name, [1, 2], async (ks) => new Map(ks.map((k) => [k, k * 2]))), ['1!', 4]);
  assert.equal(get(name, 2), 4);
});

test('a key the loader leaves out is an error for that key', async () => {
  const name = uniq('many-left-out');
  configure(name);
  await assert.rejects(cachedMany(name, [1, 2], () => new Map([[1, 'one']])), {
    code: 'ERR_COOPCACHE_COMPUTATION',
    message: /returned no value for key 2/,
  });
  assert.equal(get(name, 1), 'one');
  assert.equal(get(name, 2), undefined);
});

test("the loader's error reaches every caller of its keys", async () => {
  const name = uniq('many-error');
  configure(name);
  const err = new Error('backend down');
  const g = gate();
  const batch = cachedMany(name, [1, 2, 3], async () => {
    await g.promise;
    throw err;
  });
  const single = cached(name, 2, () => 'never');
  g.open();
  await assert.rejects(batch, (e) => e === err);
  await assert.rejects(single, (e) => e === err);
  assert.equal(stats(name).entries, 0);
});

test('bad arguments are rejected at once', async () => {
  const name = uniq('many-bad');
  configure(name);
  await assert.rejects(cachedMany(name, 5, () => ({})), { code: 'ERR_COOPCACHE_INVALID_ARGUMENT' });
  await assert.rejects(cachedMany(name, [1], 5), { code: 'ERR_COOPCACHE_INVALID_ARGUMENT' });
  await assert.rejects(cachedMany(name, [{}], () => ({})), { code: 'ERR_COOPCACHE_INVALID_KEY' });
  await assert.rejects(cachedMany(name, [1], () => 5), /must return a Map or an object/);
  await assert.rejects(cachedMany('never-configured-many', [1], () => ({})), { code: 'ERR_COOPCACHE_UNKNOWN_CACHE' });
});

test('a loader asking for one of its own keys gets ERR_COOPCACHE_RECURSION, synchronously and after an await (never a hang)', { timeout: 10_000 }, async () => {
  const name = uniq('many-recursion');
  configure(name);
  const isRecursion = (e) => e.code === 'ERR_COOPCACHE_RECURSION';
  // The timeout turns a hang into a failure; the test's order comes from the promises.
  const seen = [];
  const got = await cachedMany(name, [1, 2], (missing) => {
    // Synchronously: a single call and a batch of one of the keys being loaded.
    seen.push(cached(name, 1, () => 'never').catch((e) => e));
    seen.push(cachedMany(name, [2], () => ({ 2: 'never' })).catch((e) => e));
    return Object.fromEntries(missing.map((k) => [k, `v${k}`]));
  });
  assert.deepEqual(got, ['v1', 'v2']);
  const after = await cachedMany(name, [3, 4], async (missing) => {
    await Promise.resolve();
    seen.push(await cached(name, 3, () => 'never').catch((e) => e));
    seen.push(await cachedMany(name, [5, 4], () => ({ 5: 'five', 4: 'never' })).catch((e) => e));
    return new Map(missing.map((k) => [k, `v${k}`]));
  });
  assert.deepEqual(after, ['v3', 'v4']);
  const errors = await Promise.all(seen);
  assert.equal(errors.length, 4);
  for (const e of errors) assert.ok(isRecursion(e), String(e));
  assert.equal(stats(name).inFlight, 0);
  assert.equal(await cached(name, 1, () => 'fresh'), 'v1');
});
