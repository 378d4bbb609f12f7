// Refresh ahead (refreshAfter, serveStaleOnError) on a manual clock: time moves by advance(),
// never by sleeping. A refresh is a detached promise: a sync function's refresh is over when the
// hit that started it returns; an async one's once its promise (a gate here) settles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import coopcache, { configure, cached, get, stats, events, cache } from 'coopcache';
import { uniq } from './helpers.mjs';

/** A new cache on a manual clock, and the clock's advance(seconds). */
function manual(settings) {
  const name = uniq('refresh');
  const advance = coopcache._manualClock(name);
  configure(name, settings);
  return [name, advance];
}

function gate() {
  let open;
  const promise = new Promise((r) => { open = r; });
  return { promise, open };
}

test('a due hit returns the stored value at once and one refresh replaces it', async () => {
  const [name, advance] = manual({ refreshAfter: 60 });
  let runs = 0;
  const load = () => ++runs;
  assert.equal(await cached(name, 'k', load), 1);
  advance(30);
  assert.equal(await cached(name, 'k', load), 1);
  assert.equal(runs, 1, 'a hit that is not due refreshes nothing');
  assert.equal(stats(name).refreshesStarted, 0);
  advance(31);
  assert.equal(await cached(name, 'k', load), 1, 'the stored value, at once');
  assert.equal(runs, 2, 'the refresh ran (a sync function: before the hit returned)');
  assert.equal(await cached(name, 'k', load), 2, 'the refreshed value');
  const s = stats(name);
  assert.deepEqual([s.refreshesStarted, s.refreshesSucceeded, s.refreshesFailed, s.staleServed], [1, 1, 0, 1]);
  assert.deepEqual(cache(name).settings.refreshAfter, 60);
});

test('hits during an async refresh get the old value and start no second one', async () => {
  const [name, advance] = manual({ refreshAfter: 10 });
  const g = gate();
  let runs = 0;
  const load = async () => {
    runs++;
    if (runs > 1) await g.promise;
    return runs;
  };
  assert.equal(await cached(name, 'k', load), 1);
  advance(11);
  const seen = await Promise.all(Array.from({ length: 10 }, () => cached(name, 'k', load)));
  assert.deepEqual(seen, Array(10).fill(1));
  assert.equal(runs, 2);
  assert.equal(stats(name).refreshesStarted, 1);
  g.open();
  await g.promise;
  await new Promise(setImmediate); // the refresh's then-callbacks
  assert.equal(get(name, 'k'), 2);
  assert.equal(stats(name).refreshesSucceeded, 1);
});

test('a call and wrap() set their own refreshAfter', async () => {
  const [name, advance] = manual({});
  let runs = 0;
  const load = cache(name).wrap((x) => [x, ++runs], { key: (x) => ['load', x], refreshAfter: 5 });
  assert.deepEqual(await load(7), [7, 1]);
  advance(6);
  assert.deepEqual(await load(7), [7, 1]);
  assert.deepEqual(await load(7), [7, 2]);
  assert.equal(await cached(name, 'plain', () => 1), 1);
  advance(6);
  assert.equal(await cached(name, 'plain', () => 2), 1);
  assert.equal(get(name, 'plain'), 1, 'no refreshAfter: never refreshed');
});

test('a failed refresh keeps the old value, is counted and emitted', async () => {
  const [name, advance] = manual({ refreshAfter: 10 });
  const heard = [];
  const onFailed = (e) => heard.push(e);
  events.on('refreshFailed', onFailed);
  try {
    await cached(name, 'k', () => 1);
    advance(11);
    assert.equal(await cached(name, 'k', () => { throw new Error('backend down'); }), 1);
    assert.equal(get(name, 'k'), 1, 'kept');
    const s = stats(name);
    assert.deepEqual([s.refreshesStarted, s.refreshesFailed, s.refreshesSucceeded], [1, 1, 0]);
    await new Promise(setImmediate); // events arrive through the wake-up
    assert.deepEqual(heard, [{ cache: name, key: '"k"', error: 'Error: backend down', kept: true }]);
    assert.equal(await cached(name, 'k', () => 2), 1, 'still due: the next hit tries again');
    assert.equal(get(name, 'k'), 2);
  } finally {
    events.off('refreshFailed', onFailed);
  }
});

test('without serveStaleOnError a failed refresh removes the value', async () => {
  const [name, advance] = manual({ refreshAfter: 10, serveStaleOnError: false });
  const onFailed = () => {};
  events.on('refreshFailed', onFailed);
  try {
    await cached(name, 'k', () => 1);
    advance(11);
    assert.equal(await cached(name, 'k', () => { throw new Error('down'); }), 1, 'the hit gets the stored value');
    assert.equal(get(name, 'k'), undefined, 'removed: the next call computes in the foreground');
    assert.equal(await cached(name, 'k', () => 3), 3);
  } finally {
    events.off('refreshFailed', onFailed);
  }
});

test('refresh options are checked at once', async () => {
  assert.throws(() => configure(uniq('bad'), { refreshAfter: 0 }), {
    message: /invalid refreshAfter: 0 \(number\); expected a number of seconds > 0, or null to never refresh/,
  });
  assert.throws(() => configure(uniq('bad'), { serveStaleOnError: 'yes' }), TypeError);
  const [name] = manual({});
  await assert.rejects(cached(name, 'k', () => 1, { refreshAfter: -1 }), { code: 'ERR_COOPCACHE_INVALID_OPTION' });
  assert.throws(() => cache(name).wrap((x) => x, { key: (x) => x, refreshAfter: '5' }), TypeError);
  assert.throws(() => coopcache._manualClock(name), /exists already/);
});

test('earlyRefresh: values fall due before refreshAfter, by a multiple of their computation time', async () => {
  // 100 values loaded together in 10 s: with beta 1, each falls due 10 s x E early (E
  // exponential), so 5 s before refreshAfter about exp(-0.5) = 61% of them are due.
  const [name, advance] = manual({ refreshAfter: 100, earlyRefresh: 1 });
  const keys = Array.from({ length: 100 }, (_, i) => i);
  await coopcache.cachedMany(name, keys, (ks) => {
    advance(10);
    return new Map(ks.map((k) => [k, k]));
  });
  advance(95);
  for (const k of keys) await cached(name, k, () => -1);
  const due = stats(name).refreshesStarted;
  assert.ok(due >= 30 && due <= 90, `${due} of 100 due 5 s early (about 61)`);
  assert.equal(cache(name).settings.earlyRefresh, 1);
  assert.throws(() => configure(name, { earlyRefresh: 0 }), /invalid earlyRefresh: 0 \(number\); expected a number > 0/);
});
