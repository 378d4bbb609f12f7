// The first hour's mistakes (issue 14): each gets a clear answer, never a wrong value or a hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configure, cached, get } from 'coopcache';
import { uniq } from './helpers.mjs';

test('wrap() refuses an anonymous function without a key', () => {
  const c = configure(uniq('anon'));
  assert.throws(() => c.wrap((x) => 2 * x), { name: 'TypeError', message: /no name.*key/ });
  const double = c.wrap((x) => 2 * x, { key: (x) => ['double', x] });
  const triple = c.wrap((x) => 3 * x, { key: (x) => ['triple', x] });
  return Promise.all([double(5), triple(5)]).then((v) => assert.deepEqual(v, [10, 15]));
});

test('wrap() refuses a second function of the same name in one cache without a key', async () => {
  const c = configure(uniq('dup'));
  const load = (n) => function load(x) { return n * x; };
  const two = c.wrap(load(2));
  assert.throws(() => c.wrap(load(3)), { name: 'TypeError', message: /"load".*already.*key/ });
  assert.equal(await two(5), 10);
  // The same function again shares its entries; another cache has its own names.
  const f = load(4);
  const a = c.wrap(f, { key: (x) => ['four', x] });
  assert.equal(await a(1), 4);
  const other = configure(uniq('dup-other'));
  assert.equal(await other.wrap(load(3))(5), 15);
});

test('bound methods of two instances: a second one is refused without a key', async () => {
  const c = configure(uniq('bound'));
  class Counter {
    constructor(n) { this.n = n; }
    times(x) { return this.n * x; }
  }
  const two = c.wrap(new Counter(2).times.bind(new Counter(2)));
  assert.throws(() => c.wrap(new Counter(3).times.bind(new Counter(3))), { name: 'TypeError', message: /already/ });
  assert.equal(await two(5), 10);
});

test('a wrapped function called as a method: the default key leaves `this` out, so it is an error', async () => {
  const c = configure(uniq('method'));
  class Counter {
    constructor(n) { this.n = n; }
  }
  Counter.prototype.times = c.wrap(function times(x) { return this.n * x; });
  await assert.rejects(new Counter(2).times(5), { name: 'TypeError', message: /this.*key/ });
  Counter.prototype.keyed = c.wrap(function keyed(x) { return this.n * x; }, { key: function (x) { return ['keyed', this.n, x]; } });
  assert.deepEqual(await Promise.all([new Counter(2).keyed(5), new Counter(3).keyed(5)]), [10, 15]);
});

test('generator functions are refused: by wrap() at once, by cached() as the call\'s error', async () => {
  const name = uniq('gen');
  const c = configure(name);
  function* numbers(n) { for (let i = 0; i < n; i++) yield i; }
  async function* anumbers(n) { for (let i = 0; i < n; i++) yield i; }
  for (const fn of [numbers, anumbers]) {
    assert.throws(() => c.wrap(fn), { name: 'TypeError', message: /generator/ });
    assert.throws(() => c.wrap(fn, { key: (n) => n }), { name: 'TypeError', message: /generator/ });
    await assert.rejects(cached(name, fn.name, fn), { name: 'TypeError', message: /generator/ });
    assert.equal(get(name, fn.name), undefined);
  }
  // A function that returns a generator's items as an array is fine.
  const listed = c.wrap(function listed(n) { return [...numbers(n)]; });
  assert.deepEqual(await listed(3), [0, 1, 2]);
});

test('a generator returned by a plain function is the call\'s error, not a stored value', async () => {
  const name = uniq('genval');
  configure(name);
  function* numbers() { yield 1; }
  await assert.rejects(cached(name, 'k', () => numbers()), { name: 'TypeError', message: /generator/ });
  assert.equal(get(name, 'k'), undefined);
});
