// Shared mode (the README's "Shared mode") against a real redis-server on a free loopback port: child
// processes (tests/node/shared_child.mjs) and this one share caches through it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configure, cached, events, nocache, _keyBytes } from 'coopcache';
import { command } from './resp.mjs';
import { ipcChild, uniq, until, sleep } from './helpers.mjs';
import { freePort, serverArgs } from './redis_server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** A redis-server on `port` (a free one by default), stopped with `stop()`. */
async function startRedis(port) {
  port ??= await freePort();
  const proc = spawn('redis-server', serverArgs(port), { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const up = await until(async () => (await command(url, 'PING').catch(() => null)) === 'PONG', 20000);
  assert.ok(up, 'redis-server started');
  return {
    port,
    url,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await gone;
    },
  };
}

let redis;
const children = new Set();

before(async () => {
  redis = await startRedis();
});

after(async () => {
  await Promise.all([...children].map((c) => c.close()));
  // Stopping Redis takes the tier of every cache of this file down: expected, so heard here
  // rather than printed as warnings at the end of a passing run.
  events.on('sharedDown', () => {});
  await redis.stop();
});

/** A child with the cache configured in shared mode and connected. */
async function sharedChild(name, options = {}, url = redis.url, manualClock = false) {
  const c = ipcChild(children);
  await c.call('configure', { name, options: { redisUrl: url, ...options }, manualClock });
  assert.equal(await c.call('ready', { name }), true);
  return c;
}

async function counter(key, url = redis.url) {
  return Number((await command(url, 'GET', key)) ?? 0);
}

function valueKey(name, key) {
  return Buffer.concat([Buffer.from(`coopcache:${name}:v:`), _keyBytes(key)]);
}

test('several processes x many callers on one cold key: computed once, all get the value', async () => {
  const name = uniq('stampede');
  const cnt = `${name}:computed`;
  const procs = await Promise.all([1, 2, 3, 4].map(() => sharedChild(name)));
  const value = { user: 'Ada', tags: ['a', 'b'] };
  const results = await Promise.all(
    procs.map((p) => p.call('cached', { name, key: ['user', 42], callers: 10, url: redis.url, counter: cnt, delayMs: 300, value })),
  );
  assert.equal(await counter(cnt), 1, "computed once across the processes");
  const all = results.flat();
  assert.equal(all.length, 40);
  for (const r of all) assert.deepEqual(r, { ok: true, value });
  const stats = await Promise.all(procs.map((p) => p.call('stats', { name })));
  assert.equal(stats.reduce((n, s) => n + s.leasesWon, 0), 1);
  assert.equal(stats.reduce((n, s) => n + s.remoteHits, 0), 3);
  for (const s of stats) {
    for (const k of ['remoteHits', 'leasesWon', 'leasesLost', 'remoteWaits', 'fallbacks', 'rejectedValues']) {
      assert.equal(typeof s[k], 'number', k);
    }
  }

  // A process started afterwards reads the value without computing.
  const later = await sharedChild(name);
  const [r] = await later.call('cached', { name, key: ['user', 42], url: redis.url, counter: cnt, value: 'not this' });
  assert.deepEqual(r, { ok: true, value });
  assert.equal(await counter(cnt), 1);
  const s = await later.call('stats', { name });
  assert.equal(s.leasesWon, 0);
  assert.equal(s.remoteHits, 1);
  await Promise.all([...procs, later].map((p) => p.close()));
});

test('v8 values (Map, Date, BigInt) travel between processes by default', async () => {
  const name = uniq('v8');
  const cnt = `${name}:computed`;
  const [a, b] = await Promise.all([sharedChild(name), sharedChild(name)]);
  const value = { m: new Map([[1, 'one']]), d: new Date(0), n: 12345678901234567890n };
  const [ra] = await a.call('cached', { name, key: 'k', url: redis.url, counter: cnt, value });
  const [rb] = await b.call('cached', { name, key: 'k', url: redis.url, counter: cnt, value: 'not this' });
  assert.deepEqual(ra, { ok: true, value });
  assert.deepEqual(rb, { ok: true, value });
  assert.ok(rb.value.m instanceof Map && rb.value.d instanceof Date);
  assert.equal(await counter(cnt), 1);
  await Promise.all([a.close(), b.close()]);
});

test('an error reaches the waiters in another process (ERR_COOPCACHE_REMOTE) and is not stored', async () => {
  const name = uniq('error');
  const cnt = `${name}:computed`;
  const [a, b] = await Promise.all([sharedChild(name), sharedChild(name)]);
  const leader = a.call('cached', {
    name,
    key: 'k',
    url: redis.url,
    counter: cnt,
    delayMs: 500,
    throw: { name: 'RangeError', message: 'boom' },
  });
  assert.ok(await until(async () => (await counter(cnt)) === 1), 'a computes');
  const waiters = await b.call('cached', { name, key: 'k', callers: 3, url: redis.url, counter: cnt, value: 'not this' });
  const [own] = await leader;
  assert.deepEqual(own, { ok: false, error: { code: undefined, name: 'RangeError', message: 'boom', remoteName: undefined } });
  for (const r of waiters) {
    assert.deepEqual(r, {
      ok: false,
      error: { code: 'ERR_COOPCACHE_REMOTE', name: 'RangeError', message: 'boom', remoteName: 'RangeError' },
    });
  }
  assert.equal(await counter(cnt), 1, 'b waited instead of computing');
  assert.equal(await command(redis.url, 'EXISTS', valueKey(name, 'k')), 0, 'nothing stored in Redis');
  // Not stored anywhere: the next call computes.
  const [again] = await b.call('cached', { name, key: 'k', url: redis.url, counter: cnt, value: 'v' });
  assert.deepEqual(again, { ok: true, value: 'v' });
  assert.equal(await counter(cnt), 2);
  await Promise.all([a.close(), b.close()]);
});

test('nocache values reach the other processes and are not stored', async () => {
  const name = uniq('nocache');
  const cnt = `${name}:computed`;
  const [a, b] = await Promise.all([sharedChild(name), sharedChild(name)]);
  const leader = a.call('cached', { name, key: 'k', url: redis.url, counter: cnt, delayMs: 500, value: 'once', nocache: true });
  assert.ok(await until(async () => (await counter(cnt)) === 1));
  const [rb] = await b.call('cached', { name, key: 'k', url: redis.url, counter: cnt, value: 'not this' });
  assert.deepEqual(rb, { ok: true, value: 'once' });
  assert.deepEqual((await leader)[0], { ok: true, value: 'once' });
  assert.equal(await command(redis.url, 'EXISTS', valueKey(name, 'k')), 0);
  await Promise.all([a.close(), b.close()]);
});

test('a value that cannot be serialized is kept locally; the other processes get an error', async () => {
  const name = uniq('unserializable');
  const cnt = `${name}:computed`;
  const [a, b] = await Promise.all([sharedChild(name, { serializer: 'json' }), sharedChild(name, { serializer: 'json' })]);
  const leader = a.call('cached', { name, key: 'k', url: redis.url, counter: cnt, delayMs: 500, bigint: true });
  assert.ok(await until(async () => (await counter(cnt)) === 1));
  const [rb] = await b.call('cached', { name, key: 'k', url: redis.url, counter: cnt, value: 'not this' });
  assert.equal(rb.ok, false);
  assert.equal(rb.error.code, 'ERR_COOPCACHE_REMOTE');
  assert.equal(rb.error.name, 'TypeError');
  assert.match(rb.error.message, /could not be serialized \(json\)/);
  assert.deepEqual((await leader)[0], { ok: true, value: { n: 1n } });
  assert.deepEqual(await a.call('get', { name, key: 'k' }), { n: 1n }, 'stored locally');
  await Promise.all([a.close(), b.close()]);
});

test("serializer 'json': the computing process gets the value the others read (Dates, Maps, undefined as JSON makes them)", async () => {
  const name = uniq('json-one-value');
  const cnt = `${name}:computed`;
  configure(name, { redisUrl: redis.url, serializer: 'json' });
  assert.ok(await until(() => configure(name).sharedUp));
  const compute = () => ({ d: new Date(0), m: new Map([[1, 'one']]), gone: undefined, list: [undefined, 1] });
  const asJson = { d: '1970-01-01T00:00:00.000Z', m: {}, list: [null, 1] };
  assert.deepEqual(await cached(name, 'k', compute), asJson);
  assert.deepEqual(configure(name).get('k'), asJson, 'stored as the other processes read it');
  assert.deepEqual(await cached(name, 'k', compute), asJson);
  const b = await sharedChild(name, { serializer: 'json' });
  const [rb] = await b.call('cached', { name, key: 'k', url: redis.url, counter: cnt, value: 'not this' });
  assert.deepEqual(rb, { ok: true, value: asJson });
  assert.equal(await counter(cnt), 0, 'b read the value from Redis');
  // nocache: every caller gets what JSON makes of the value too.
  assert.deepEqual(await cached(name, 'n', () => nocache(compute())), asJson);
  await b.close();
});

test('invalidation in one process drops the entry from the others', async () => {
  const name = uniq('invalidate');
  const cnt = `${name}:computed`;
  const b = await sharedChild(name);
  configure(name, { redisUrl: redis.url });
  assert.ok(await until(() => configure(name).sharedUp));
  assert.equal(await cached(name, 'k', () => 'here'), 'here');
  const [rb] = await b.call('cached', { name, key: 'k', url: redis.url, counter: cnt, value: 'not this' });
  assert.deepEqual(rb, { ok: true, value: 'here' });
  assert.equal(await b.call('get', { name, key: 'k' }), 'here');
  // (Not asserting invalidate()'s return: in shared mode the core sends the invalidation to
  // Redis before removing the local entry, so this process's own echo may remove it first.)
  configure(name).invalidate('k');
  assert.equal(configure(name).get('k'), undefined);
  assert.ok(await until(async () => (await b.call('get', { name, key: 'k' })) === undefined), 'dropped in b');
  assert.ok(await until(async () => (await command(redis.url, 'EXISTS', valueKey(name, 'k'))) === 0), 'dropped in Redis');
  await b.close();
});

test('a tampered value is refused (never deserialized): computed again, valueRefused', async () => {
  const name = uniq('tamper');
  const cnt = `${name}:computed`;
  const secretHex = Buffer.from('a shared secret').toString('hex');
  const a = await sharedChild(name, { secretHex });
  const [ra] = await a.call('cached', { name, key: 'k', url: redis.url, counter: cnt, value: 'genuine' });
  assert.deepEqual(ra, { ok: true, value: 'genuine' });
  const vkey = valueKey(name, 'k');
  const len = await command(redis.url, 'STRLEN', vkey);
  assert.ok(len > 0);
  const last = (await command(redis.url, 'GETRANGE', vkey, len - 1, len - 1))[0];
  await command(redis.url, 'SETRANGE', vkey, len - 1, Buffer.from([last ^ 1]));
  const b = await sharedChild(name, { secretHex });
  const [rb] = await b.call('cached', { name, key: 'k', url: redis.url, counter: cnt, value: 'recomputed' });
  assert.deepEqual(rb, { ok: true, value: 'recomputed' });
  assert.equal(await counter(cnt), 2);
  assert.equal((await b.call('stats', { name })).rejectedValues, 1);
  const evs = await b.call('events');
  assert.ok(evs.some((e) => e.event === 'valueRefused' && e.cache === name), JSON.stringify(evs));
  await Promise.all([a.close(), b.close()]);
});

test('Redis stopped: calls go on with the local tier, sharedDown; restarted: the shared tier is used again', async () => {
  const own = await startRedis();
  const name = uniq('down');
  const seen = [];
  const onDown = (e) => seen.push(['down', e.cache]);
  const onUp = (e) => seen.push(['up', e.cache]);
  events.on('sharedDown', onDown);
  events.on('sharedUp', onUp);
  try {
    const c = configure(name, { redisUrl: own.url, leaseTtl: 2 });
    assert.ok(await until(() => c.sharedUp));
    assert.equal(await c.cached('before', () => 1), 1);
    await own.stop();
    // Every call succeeds, on the local tier alone (still one computation per key here).
    let computed = 0;
    const many = await Promise.all(
      Array.from({ length: 20 }, () => c.cached('during', async () => { computed++; await sleep(50); return 'local'; })),
    );
    assert.deepEqual(many, Array(20).fill('local'));
    assert.equal(computed, 1);
    assert.equal(await c.cached('before', () => 2), 1, 'the local tier keeps its values');
    assert.ok(await until(() => seen.some(([k, n]) => k === 'down' && n === name)), 'sharedDown');
    assert.equal(c.sharedUp, false);
    for (let i = 0; i < 5; i++) assert.equal(await c.cached(['down', i], () => i), i);
    assert.ok(c.stats().fallbacks >= 1);

    const again = await startRedis(own.port);
    try {
      assert.ok(await until(() => c.sharedUp, 30000), 'reconnected');
      assert.ok(await until(() => seen.some(([k, n]) => k === 'up' && n === name)), 'sharedUp');
      const won = c.stats().leasesWon;
      assert.equal(await c.cached('after', () => 'shared'), 'shared');
      assert.equal(c.stats().leasesWon, won + 1);
      assert.equal(await command(again.url, 'EXISTS', valueKey(name, 'after')), 1, 'written to Redis');
    } finally {
      await again.stop();
    }
    // Stopped again: the tier goes down again, heard here rather than printed after the test.
    const downs = () => seen.filter(([k, n]) => k === 'down' && n === name).length;
    assert.ok(await until(() => downs() === 2), 'sharedDown again');
  } finally {
    events.off('sharedDown', onDown);
    events.off('sharedUp', onUp);
  }
});

test('configuration errors: serializer, URL (password masked), leaseTtl, secret, another URL', () => {
  const bad = (options, re) =>
    assert.throws(
      () => configure(uniq('bad'), options),
      (e) => e.code === 'ERR_COOPCACHE_INVALID_CONFIG' && re.test(e.message),
    );
  bad({ redisUrl: redis.url, serializer: 'pickle' }, /invalid serializer: "pickle" \(string\); expected "v8" or "json"/);
  bad({ redisUrl: 'http://ada:hunter2@localhost:6379' }, /redisUrl/);
  assert.throws(
    () => configure(uniq('bad'), { redisUrl: 'http://ada:hunter2@localhost:6379' }),
    (e) => !e.message.includes('hunter2'),
  );
  bad({ redisUrl: 'not a url' }, /redisUrl/);
  bad({ redisUrl: 42 }, /redisUrl/);
  bad({ redisUrl: redis.url, leaseTtl: 0 }, /leaseTtl/);
  bad({ redisUrl: redis.url, leaseTtl: 0.001 }, /leaseTtl/);
  bad({ redisUrl: redis.url, secret: 42 }, /secret/);
  // v8 without a secret is allowed (v8.deserialize runs no code).
  const name = uniq('ok');
  const c = configure(name, { redisUrl: redis.url, serializer: 'v8' });
  assert.equal(typeof c.stats().remoteHits, 'number');
  // Reconfiguring keeps the tier; another URL is an error.
  configure(name, { cacheDuration: 10 });
  configure(name, { redisUrl: redis.url, cacheDuration: 20 });
  assert.throws(
    () => configure(name, { redisUrl: 'redis://ada:hunter2@127.0.0.1:1' }),
    (e) => e.code === 'ERR_COOPCACHE_INVALID_CONFIG' && /redisUrl/.test(e.message) && !e.message.includes('hunter2'),
  );
  assert.throws(
    () => configure(name, { serializer: 'json' }),
    (e) => e.code === 'ERR_COOPCACHE_INVALID_CONFIG' && /serializer: "json"/.test(e.message),
  );
  configure(name, { serializer: 'v8' });
  // A cache without Redis has no shared counters.
  const local = configure(uniq('local'));
  assert.equal(local.stats().remoteHits, undefined);
  assert.equal(local.sharedUp, null);
});

test('shared_worker.mjs (the cross-language worker): computes once, prints the value, exits on its own', async () => {
  const name = uniq('worker');
  const run = () =>
    new Promise((resolve) => {
      const p = spawn(process.execPath, [path.join(HERE, 'shared_worker.mjs'), redis.url, name], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      const t = setTimeout(() => p.kill('SIGKILL'), 30000); // only stops a broken test
      p.on('exit', (code) => {
        clearTimeout(t);
        resolve({ code, out });
      });
    });
  const together = await Promise.all([run(), run(), run()]);
  const later = await run();
  for (const r of [...together, later]) {
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.out.trim()), { value: 'from node' });
  }
  assert.equal(await counter(`coopcache-test:computed:${name}`), 1);
});

test('recursion through the shared tier is still detected', async () => {
  const name = uniq('recursion');
  const c = configure(name, { redisUrl: redis.url });
  assert.ok(await until(() => c.sharedUp));
  await assert.rejects(
    c.cached('a', () => c.cached('b', () => c.cached('a', () => 1))),
    (e) => e.code === 'ERR_COOPCACHE_RECURSION',
  );
  // Nothing was stored, nor left in flight.
  assert.equal(c.get('a'), undefined);
  assert.equal(await c.cached('a', () => 'fine'), 'fine');
});

test('a caller that gives up (timeoutMs) while another process computes; the value still arrives', async () => {
  const name = uniq('timeout');
  const cnt = `${name}:computed`;
  const a = await sharedChild(name);
  const c = configure(name, { redisUrl: redis.url });
  assert.ok(await until(() => c.sharedUp));
  const leader = a.call('cached', { name, key: 'k', url: redis.url, counter: cnt, delayMs: 800, value: 'slow' });
  assert.ok(await until(async () => (await counter(cnt)) === 1));
  await assert.rejects(
    c.cached('k', () => 'not this', { timeoutMs: 50 }),
    (e) => e.code === 'ERR_COOPCACHE_TIMEOUT',
  );
  assert.deepEqual((await leader)[0], { ok: true, value: 'slow' });
  assert.equal(await c.cached('k', () => 'not this'), 'slow');
  assert.equal(await counter(cnt), 1);
  await a.close();
});

test('Redis stopped in the middle of a cross-process stampede: no call fails', async () => {
  const own = await startRedis();
  const name = uniq('midway');
  const cnt = `${name}:computed`;
  const [a, b] = await Promise.all([sharedChild(name, {}, own.url), sharedChild(name, {}, own.url)]);
  const leader = a.call('cached', { name, key: 'k', callers: 5, url: own.url, counter: cnt, delayMs: 800, value: 'from a' });
  assert.ok(await until(async () => (await counter(cnt, own.url)) === 1), 'a computes');
  // b's callers wait for a (no counter on b's side once Redis is gone: it may compute locally).
  const waiting = b.call('cached', { name, key: 'k', callers: 5, url: own.url, counter: cnt, delayMs: 0, value: 'from b', noCount: true });
  await sleep(100);
  await own.stop();
  const all = [...(await leader), ...(await waiting)];
  assert.equal(all.length, 10);
  for (const r of all) {
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.ok(r.value === 'from a' || r.value === 'from b');
  }
  await Promise.all([a.close(), b.close()]);
});

test('a value due in every process is refreshed once for the fleet', async () => {
  // Four processes whose copies fall due together (their manual clocks moved alike): each
  // returns its old value at once, and one refresh, by whichever process the key's lease
  // picks, gives every process the new value. A fifth process, whose copy is not due yet,
  // hears of that refresh: its next call returns its copy and takes the new value from Redis,
  // without computing.
  const name = uniq('refresh');
  const c = `coopcache-test:computed:${name}`;
  const start = () => sharedChild(name, { refreshAfter: 60 }, redis.url, true);
  const [late, ...fleet] = await Promise.all([0, 1, 2, 3, 4].map(start));
  const each = (op, m = {}) => Promise.all(fleet.map((p) => p.call(op, { name, key: 'report', ...m })));
  const call = async (value) => (await each('cached', { url: redis.url, counter: c, value })).map((r) => r[0].value);
  const callLate = async (value) => (await late.call('cached', { name, key: 'report', url: redis.url, counter: c, value }))[0].value;
  const advance = (seconds) => Promise.all([...fleet, late].map((p) => p.call('advance', { name, seconds })));
  assert.deepEqual(await call('v1'), ['v1', 'v1', 'v1', 'v1']);
  assert.equal(await counter(c), 1, 'the other processes wait for it in Redis');
  await advance(30);
  assert.equal(await callLate('late'), 'v1', 'read from Redis half-way');
  await advance(31);
  assert.deepEqual(await call('v2'), ['v1', 'v1', 'v1', 'v1'], 'a due value is returned at once');
  assert.deepEqual(await each('until', { value: 'v2' }), [true, true, true, true], 'every process gets the new value');
  assert.equal(await counter(c), 2, 'one refresh for the fleet');
  assert.deepEqual((await each('stats')).map((s) => s.refreshesSucceeded), [1, 1, 1, 1]);
  // Not due by its own clock (31 s old), the late process's copy fell due on the fleet's
  // refresh: a call returns it, and the next ones the new value, not computed.
  assert.ok(await until(async () => (await callLate('late')) === 'v2', 30000), 'the late process gets the new value');
  assert.equal(await counter(c), 2, 'the late process took the value from Redis');
  assert.equal((await late.call('stats', { name })).refreshesSucceeded, 1);
  await Promise.all([...fleet, late].map((p) => p.close()));
});

test("a refresh takes another process's value from Redis only within the call's refreshAfter", async () => {
  // The cache says 60 s, the calls 10 s: 20 s after the value was written, a process whose copy
  // is due recomputes it (it took the value in Redis as fresh, by the cache's 60 s, before).
  const name = uniq('refresh');
  const c = `coopcache-test:computed:${name}`;
  const [writer, reader] = await Promise.all([0, 1].map(() => sharedChild(name, { refreshAfter: 60 }, redis.url, true)));
  const call = (p, value) => p.call('cached', { name, key: 'k', url: redis.url, counter: c, value, callOptions: { refreshAfter: 10 } });
  assert.equal((await call(writer, 'v1'))[0].value, 'v1');
  assert.equal((await call(reader, 'v1'))[0].value, 'v1');
  assert.equal(await counter(c), 1);
  await Promise.all([writer, reader].map((p) => p.call('advance', { name, seconds: 20 })));
  assert.equal((await call(reader, 'v2'))[0].value, 'v1', 'a due value is returned at once');
  assert.ok(await until(async () => (await reader.call('stats', { name })).refreshesSucceeded === 1));
  assert.equal(await counter(c), 2, 'recomputed: the value in Redis is older than the call\'s 10 s');
  assert.equal(await reader.call('get', { name, key: 'k' }), 'v2');
  await Promise.all([writer, reader].map((p) => p.close()));
});
