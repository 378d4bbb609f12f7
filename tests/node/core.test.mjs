import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  configure, cached, nocache, get, invalidate, invalidateTag, clear, stats, names, cache, events, Cache,
} from 'coopcache';
import { uniq, sleep, until } from './helpers.mjs';

test('10,000 concurrent callers on one cold key: computed once, everyone gets the same object', async () => {
  const name = uniq('stampede');
  configure(name);
  let runs = 0;
  const fn = async () => {
    runs++;
    await sleep(20);
    return { answer: 42 };
  };
  const results = await Promise.all(Array.from({ length: 10_000 }, () => cached(name, 'cold', fn)));
  assert.equal(runs, 1);
  assert.ok(results.every((r) => r === results[0]));
  const s = stats(name);
  assert.equal(s.computations, 1);
  assert.equal(s.coalesced, 9_999);
  assert.equal(s.misses, 10_000);
  assert.equal(s.entries, 1);
  assert.equal(s.inFlight, 0);
});

test('a hit returns the very object computed, without calling fn', async () => {
  const name = uniq('identity');
  configure(name);
  const obj = { big: 'x'.repeat(100) };
  const v1 = await cached(name, ['user', 1], () => obj);
  const v2 = await cached(name, ['user', 1], () => assert.fail('fn must not run on a hit'));
  assert.equal(v1, obj);
  assert.equal(v2, obj);
  assert.equal(get(name, ['user', 1]), obj);
  assert.equal(get(name, ['user', 2]), undefined);
  assert.equal(stats(name).hits, 2);
});

test('fn may be sync or async, and may return a thenable', async () => {
  const name = uniq('syncasync');
  configure(name);
  assert.equal(await cached(name, 's', () => 1), 1);
  assert.equal(await cached(name, 'a', async () => 2), 2);
  assert.equal(await cached(name, 't', () => ({ then: (r) => r(3) })), 3);
  assert.equal(await cached(name, 'u', () => undefined), undefined);
  assert.equal(stats(name).entries, 4);
});

for (const mode of ['sync throw', 'async rejection']) {
  test(`errors (${mode}) reach the leader and every waiter, and are not stored`, async () => {
    const name = uniq('errors');
    configure(name);
    const err = new Error('backend down');
    let runs = 0;
    const gate = Promise.withResolvers ? Promise.withResolvers() : (() => { let resolve; const promise = new Promise((r) => { resolve = r; }); return { promise, resolve }; })();
    const fn = mode === 'sync throw'
      ? () => { runs++; throw err; }
      : async () => { runs++; await gate.promise; throw err; };
    let calls;
    if (mode === 'sync throw') {
      // The leader throws at once; callers already waiting need a computation in progress, so
      // make the first leader async-wait before throwing synchronously from a then-callback.
      const slow = () => { runs++; return gate.promise.then(() => { throw err; }); };
      calls = Array.from({ length: 100 }, () => cached(name, 'k', slow));
      gate.resolve();
      const outcomes = await Promise.allSettled(calls);
      assert.ok(outcomes.every((o) => o.status === 'rejected' && o.reason === err));
      // A plain sync throw from the leader itself:
      await assert.rejects(cached(name, 'k2', fn), (e) => e === err);
    } else {
      calls = Array.from({ length: 100 }, () => cached(name, 'k', fn));
      gate.resolve();
      const outcomes = await Promise.allSettled(calls);
      assert.ok(outcomes.every((o) => o.status === 'rejected' && o.reason === err));
    }
    assert.equal(runs, mode === 'sync throw' ? 2 : 1);
    assert.equal(stats(name).entries, 0);
    assert.equal(get(name, 'k'), undefined);
    // Not stored: the next call computes again.
    assert.equal(await cached(name, 'k', () => 'ok'), 'ok');
    assert.ok(stats(name).errors >= 1);
  });
}

test('nocache: the value reaches every waiter and is not stored', async () => {
  const name = uniq('nocache');
  configure(name);
  let runs = 0;
  const fn = async () => { runs++; await sleep(10); return nocache({ fresh: runs }); };
  const rs = await Promise.all(Array.from({ length: 50 }, () => cached(name, 'k', fn)));
  assert.equal(runs, 1);
  assert.ok(rs.every((r) => r === rs[0]));
  assert.equal(get(name, 'k'), undefined);
  const again = await cached(name, 'k', fn);
  assert.equal(runs, 2);
  assert.deepEqual(again, { fresh: 2 });
  assert.equal(stats(name).nocache, 2);
  assert.equal(stats(name).entries, 0);
});

test('timeout: that caller gets ERR_COOPCACHE_TIMEOUT, the computation goes on and is stored', async () => {
  const name = uniq('timeout');
  configure(name);
  let release;
  const gate = new Promise((r) => { release = r; });
  let runs = 0;
  const fn = async () => { runs++; await gate; return 'done'; };
  const leader = cached(name, 'k', fn, { timeoutMs: 30 });
  const waiter = cached(name, 'k', fn, { timeoutMs: 30 });
  const patient = cached(name, 'k', fn);
  // The message names the timeout the core read, which the addon armed and gave up with.
  await assert.rejects(leader, (e) => e.code === 'ERR_COOPCACHE_TIMEOUT' && /timed out after 0\.030 s/.test(e.message));
  await assert.rejects(waiter, (e) => e.code === 'ERR_COOPCACHE_TIMEOUT');
  release();
  assert.equal(await patient, 'done');
  assert.equal(runs, 1);
  assert.equal(get(name, 'k'), 'done');
  // A timeout that does not pass changes nothing.
  assert.equal(await cached(name, 'k', fn, { timeoutMs: 10_000 }), 'done');
});

test('recursion: fn asking for its own key is ERR_COOPCACHE_RECURSION, never a deadlock', async () => {
  const name = uniq('recursion');
  configure(name);
  // Synchronously, from inside fn.
  await assert.rejects(
    cached(name, 'a', () => cached(name, 'a', () => 1)),
    (e) => e.code === 'ERR_COOPCACHE_RECURSION' && /asked for that same key/.test(e.message),
  );
  // After an await, and through another key.
  await assert.rejects(
    cached(name, 'b', async () => {
      await sleep(1);
      return cached(name, 'c', async () => {
        await sleep(1);
        return cached(name, 'b', () => 2);
      });
    }),
    (e) => e.code === 'ERR_COOPCACHE_RECURSION',
  );
  // Other keys from inside fn are fine, and nothing is left in flight.
  assert.equal(await cached(name, 'd', async () => (await cached(name, 'e', () => 5)) + 1), 6);
  assert.equal(stats(name).inFlight, 0);
});

test('recursion through awaits: two computations that each ask for the other are ERR_COOPCACHE_RECURSION, not a deadlock', { timeout: 10_000 }, async () => {
  const name = uniq('cycle');
  configure(name);
  // Both computations run before either asks for the other's key.
  let started = 0;
  let bothStarted;
  const both = new Promise((r) => { bothStarted = r; });
  const enter = async () => { if (++started === 2) bothStarted(); await both; };
  const a = cached(name, 'a', async () => { await enter(); return cached(name, 'b', () => 'b from a'); });
  const b = cached(name, 'b', async () => { await enter(); return cached(name, 'a', () => 'a from b'); });
  const outcomes = await Promise.allSettled([a, b]);
  for (const o of outcomes) assert.ok(o.status === 'rejected' && o.reason.code === 'ERR_COOPCACHE_RECURSION', String(o.reason));
  assert.equal(stats(name).inFlight, 0);
  assert.equal(await cached(name, 'a', () => 'fine'), 'fine');
});

test('after an await, a computation asks another key of its cache in its own slot (maxConcurrency 1): no deadlock', { timeout: 10_000 }, async () => {
  const name = uniq('nestedslot');
  configure(name, { maxConcurrency: 1 });
  const v = await cached(name, 'outer', async () => {
    await Promise.resolve();
    return `${await cached(name, 'inner', async () => 'inner')}+outer`;
  });
  assert.equal(v, 'inner+outer');
  assert.equal(stats(name).inFlight, 0);
});

test('a computation nobody waits for any more is abandoned: the next call computes anew', async () => {
  const name = uniq('abandoned');
  configure(name);
  let release;
  const gate = new Promise((r) => { release = r; });
  const alone = cached(name, 'k', async () => { await gate; return 'late'; }, { timeoutMs: 1 });
  await assert.rejects(alone, (e) => e.code === 'ERR_COOPCACHE_TIMEOUT');
  assert.equal(stats(name).inFlight, 0);
  const next = cached(name, 'k', () => 'fresh');
  release();
  assert.equal(await next, 'fresh');
  assert.equal(get(name, 'k'), 'fresh');
});

test('memory limit 0: nothing is stored, every call computes, concurrent callers still share', async () => {
  const name = uniq('zero');
  const fulls = [];
  const onFull = (e) => { if (e.cache === name) fulls.push(e); };
  events.on('full', onFull); // heard, not printed as a warning
  try {
    configure(name, { memoryLimit: 0 });
    let runs = 0;
    const fn = async () => { runs++; await sleep(10); return 'v'; };
    await Promise.all(Array.from({ length: 20 }, () => cached(name, 'k', fn)));
    assert.equal(runs, 1);
    await cached(name, 'k', fn);
    assert.equal(runs, 2);
    const s = stats(name);
    assert.equal(s.entries, 0);
    assert.equal(s.bytesUsed, 0);
    assert.equal(s.memoryLimit, 0);
    assert.ok(await until(() => fulls.length > 0));
    assert.deepEqual(fulls[0], { cache: name, bytesUsed: 0, memoryLimit: 0 });
  } finally {
    events.off('full', onFull);
  }
});

test('reject mode: new values returned but not stored, stored ones kept; full event once', async () => {
  const name = uniq('reject');
  const fulls = [];
  const onFull = (e) => { if (e.cache === name) fulls.push(e); };
  events.on('full', onFull);
  try {
    configure(name, { memoryLimit: 2000, whenFull: 'reject', sizeOf: () => 400 });
    for (let i = 0; i < 10; i++) assert.equal(await cached(name, i, () => `v${i}`), `v${i}`);
    const s = stats(name);
    assert.ok(s.entries >= 1 && s.entries < 10);
    assert.ok(s.bytesUsed <= 2000);
    assert.ok(s.rejectedFull >= 1);
    assert.equal(get(name, 0), 'v0'); // the first ones stay
    assert.equal(get(name, 9), undefined);
    assert.ok(await until(() => fulls.length >= 1));
    assert.equal(fulls.length, 1);
    assert.equal(fulls[0].memoryLimit, 2000);
  } finally {
    events.off('full', onFull);
  }
});

test('evict mode: least recently used entries make room; evict events', async () => {
  const name = uniq('evict');
  const evicts = [];
  const onEvict = (e) => { if (e.cache === name) evicts.push(e); };
  events.on('evict', onEvict);
  try {
    configure(name, { memoryLimit: 2000, whenFull: 'evict', sizeOf: () => 400 });
    for (let i = 0; i < 10; i++) await cached(name, i, () => `v${i}`);
    const s = stats(name);
    assert.ok(s.evictedLru >= 1);
    assert.ok(s.bytesUsed <= 2000);
    assert.equal(get(name, 9), 'v9'); // the newest stays
    // Some older ones went (the core picks least recently used ones).
    assert.equal(s.entries + s.evictedLru, 10);
    assert.equal(s.rejectedFull, 0);
    assert.ok(await until(() => evicts.some((e) => e.reason === 'lru')));
  } finally {
    events.off('evict', onEvict);
  }
});

test('idle expiry: an idle entry is never returned again and is reclaimed', async () => {
  const name = uniq('idle');
  configure(name, { cacheDuration: 0.2 });
  await cached(name, 'k', () => 'v');
  assert.equal(get(name, 'k'), 'v'); // a read is activity: it resets the idle clock
  // stats() is not activity: poll it until the sweeper has reclaimed the entry.
  assert.ok(await until(() => stats(name).entries === 0 && stats(name).evictedIdle >= 1, 10000, 50));
  assert.equal(get(name, 'k'), undefined);
  let runs = 0;
  await cached(name, 'k', () => { runs++; return 'v2'; });
  assert.equal(runs, 1);
});

test('max concurrency: at most N computations at once, still one per key', async () => {
  const name = uniq('maxconc');
  configure(name, { maxConcurrency: 2 });
  let running = 0;
  let peak = 0;
  let runs = 0;
  const fn = async () => {
    runs++;
    running++;
    peak = Math.max(peak, running);
    await sleep(5);
    running--;
    return 'v';
  };
  const calls = [];
  for (let k = 0; k < 8; k++) for (let j = 0; j < 5; j++) calls.push(cached(name, k, fn));
  await Promise.all(calls);
  assert.equal(runs, 8);
  assert.ok(peak <= 2, `peak ${peak}`);
  assert.equal(cache(name).settings.maxConcurrency, 2);
});

test('a leader that times out while queued for a slot hands over to a waiter', async () => {
  const name = uniq('handover');
  configure(name, { maxConcurrency: 1 });
  let release;
  const gate = new Promise((r) => { release = r; });
  const busy = cached(name, 'a', async () => { await gate; return 'a'; });
  let runs = 0;
  const fnB = async () => { runs++; return 'b'; };
  const queued = cached(name, 'b', fnB, { timeoutMs: 20 }); // leads b, waits for the slot
  const waiter = cached(name, 'b', fnB); // waits for b's leader
  await assert.rejects(queued, (e) => e.code === 'ERR_COOPCACHE_TIMEOUT');
  release();
  assert.equal(await busy, 'a');
  assert.equal(await waiter, 'b');
  assert.equal(runs, 1);
  assert.equal(stats(name).inFlight, 0);
});

test('raising maxConcurrency lets queued leaders run at once', async () => {
  const name = uniq('raise');
  configure(name, { maxConcurrency: 1 });
  let release;
  const gate = new Promise((r) => { release = r; });
  const a = cached(name, 'a', async () => { await gate; return 'a'; });
  const b = cached(name, 'b', () => 'b'); // queued behind a
  // Both flights exist; only a's computation runs (computations counts what ran).
  assert.equal(stats(name).inFlight, 2);
  assert.equal(stats(name).computations, 1);
  configure(name, { maxConcurrency: 2 });
  assert.equal(await b, 'b'); // before a is released
  release();
  assert.equal(await a, 'a');
});

test('invalidate, invalidateTag, clear', async () => {
  const name = uniq('inval');
  configure(name);
  await cached(name, 'a', () => 1, { tags: ['t1'] });
  await cached(name, 'b', () => 2, { tags: ['t1', 't2'] });
  await cached(name, 'c', () => 3);
  assert.equal(invalidate(name, 'c'), true);
  assert.equal(invalidate(name, 'c'), false);
  assert.equal(invalidateTag(name, 't1'), 2);
  assert.equal(stats(name).entries, 0);
  await cached(name, 'd', () => 4);
  clear(name);
  assert.equal(get(name, 'd'), undefined);
  assert.equal(stats(name).evictedInvalidated, 4);
});

test('an invalidation during the computation: waiters get the value, it is not stored', async () => {
  const name = uniq('invalflight');
  configure(name);
  let release;
  const gate = new Promise((r) => { release = r; });
  const p = Promise.all([cached(name, 'k', async () => { await gate; return 'v'; }), cached(name, 'k', () => 'x')]);
  invalidate(name, 'k');
  release();
  assert.deepEqual(await p, ['v', 'v']);
  assert.equal(get(name, 'k'), undefined);
});

test('the Cache handle and wrap()', async () => {
  const name = uniq('handle');
  const c = configure(name, { cacheDuration: 60 });
  assert.ok(c instanceof Cache);
  assert.equal(c.name, name);
  assert.equal(await c.cached('k', () => 'v'), 'v');
  assert.equal(c.get('k'), 'v');
  let runs = 0;
  const add = c.wrap(async function add(a, b) { runs++; return a + b; });
  assert.equal(await add(1, 2), 3);
  assert.equal(await add(1, 2), 3);
  assert.equal(await add(2, 2), 4);
  assert.equal(runs, 2);
  assert.equal(c.get(['add', 1, 2]), 3);
  const byId = c.wrap((id) => ({ id }), { key: (id) => ['user', id] });
  const u = await byId(7);
  assert.equal(c.get(['user', 7]), u);
  assert.equal(c.stats().entries, 4);
  c.clear();
  assert.equal(c.stats().entries, 0);
});

test('configuring an existing name updates it in place and keeps entries', async () => {
  const name = uniq('reconf');
  configure(name, { memoryLimit: 1 << 20, cacheDuration: 60 });
  await cached(name, 'k', () => 'v');
  const c = configure(name, { cacheDuration: 120 });
  assert.equal(c.get('k'), 'v');
  assert.equal(c.settings.cacheDuration, 120);
  assert.equal(c.settings.memoryLimit, 1 << 20);
  assert.equal(c.settings.whenFull, 'reject');
  assert.ok(names().includes(name));
});

test('defaults: 50 MiB, 300 s, reject, no concurrency limit, no refresh', () => {
  const c = configure(uniq('defaults'));
  assert.deepEqual(c.settings, {
    memoryLimit: 50 * 1024 * 1024, cacheDuration: 300, whenFull: 'reject', maxConcurrency: null,
    refreshAfter: null, serveStaleOnError: true, earlyRefresh: null,
  });
  const frac = configure(uniq('fraction'), { memoryLimit: 0.01 });
  assert.ok(frac.settings.memoryLimit > 0);
});

test('unknown cache name: ERR_COOPCACHE_UNKNOWN_CACHE listing the configured names', async () => {
  configure('listed-one');
  await assert.rejects(cached('never-configured', 'k', () => 1), (e) =>
    e.code === 'ERR_COOPCACHE_UNKNOWN_CACHE' && /never-configured/.test(e.message) && /listed-one/.test(e.message));
  assert.throws(() => get('never-configured', 'k'), (e) => e.code === 'ERR_COOPCACHE_UNKNOWN_CACHE');
  assert.throws(() => stats('never-configured'), (e) => e.code === 'ERR_COOPCACHE_UNKNOWN_CACHE');
});

test('cached() by name, alternating caches and unknown names: each call reaches its own cache', async () => {
  // (cached() remembers the cache it found last by name.)
  const [a, b] = [uniq('alt-a'), uniq('alt-b')];
  configure(a);
  configure(b);
  for (let i = 0; i < 3; i++) {
    assert.equal(await cached(a, 'k', () => 'in a'), 'in a');
    await assert.rejects(cached(`${a}-not`, 'k', () => 1), (e) => e.code === 'ERR_COOPCACHE_UNKNOWN_CACHE');
    assert.equal(await cached(b, 'k', () => 'in b'), 'in b');
  }
  assert.deepEqual([stats(a).hits, stats(b).hits], [2, 2]);
});

test('bad settings: ERR_COOPCACHE_INVALID_CONFIG at configure time', () => {
  const bad = [
    { memoryLimit: -1 },
    { memoryLimit: 1.5 },
    { memoryLimit: NaN },
    { memoryLimit: '10' },
    { cacheDuration: -1 },
    { cacheDuration: Infinity },
    { whenFull: 'drop' },
    { maxConcurrency: 0 },
    { maxConcurrency: 1.5 },
  ];
  for (const s of bad) {
    assert.throws(() => configure(uniq('bad'), s), (e) => e.code === 'ERR_COOPCACHE_INVALID_CONFIG', JSON.stringify(s));
  }
  assert.throws(() => configure(uniq('bad'), { whenFull: 'drop' }), /whenFull/);
});

test('bad arguments of cached', async () => {
  const name = uniq('args');
  configure(name);
  await assert.rejects(cached(name, 'k', 'not a function'), TypeError);
  await assert.rejects(cached(name, 'k', () => 1, { tags: 'x' }), TypeError);
  // The lease was given up: the key still works.
  assert.equal(await cached(name, 'k', () => 1), 1);
});
