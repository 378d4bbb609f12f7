// The built-in size estimate (no sizeOf): deep, cyclic and large values are weighed with bounded
// work and stored if they fit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { configure, cached, stats } from 'coopcache';
import { uniq } from './helpers.mjs';

// The package's entry as this suite resolves it (a checkout's, or an installed one's).
const ENTRY = createRequire(import.meta.url).resolve('coopcache');

/** `[[[...[]...]]]`, `depth` arrays deep (as JSON.parse gives for a deep array read from Redis). */
function nested(depth) {
  let v = [];
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

test('a value nested 5,000 deep is weighed and stored, not a stack overflow on every call', async () => {
  const name = uniq('deep');
  configure(name);
  const deep = nested(5000);
  let runs = 0;
  const fn = () => {
    runs++;
    return deep;
  };
  assert.equal(await cached(name, 'deep', fn), deep);
  assert.equal(await cached(name, 'deep', fn), deep);
  assert.equal(runs, 1, 'the second call is a hit');
  const s = stats(name);
  assert.equal(s.errors, 0);
  assert.equal(s.entries, 1);
  // Every level is weighed (it is within the budget), not just the outer array.
  assert.ok(s.bytesUsed >= 5000 * 16, `bytesUsed ${s.bytesUsed}`);
});

test('a value deeper than the budget is stored with a bounded weight', async () => {
  const name = uniq('deeper');
  configure(name);
  const deeper = nested(200_000);
  assert.equal(await cached(name, 'deeper', () => deeper), deeper);
  const s = stats(name);
  assert.equal(s.entries, 1);
  // The first 10,000 values are weighed; the rest count as the reference that holds them.
  assert.ok(s.bytesUsed >= 10_000 * 16 && s.bytesUsed < 20_000 * 16, `bytesUsed ${s.bytesUsed}`);
});

test('the estimate visits every value of a small value and at most 10,000 of a large one', async () => {
  const name = uniq('wide');
  configure(name);
  let reads = 0;
  const item = () => ({
    get x() {
      reads++;
      return 'v';
    },
  });
  const small = Array.from({ length: 1000 }, item);
  assert.equal(await cached(name, 'small', () => small), small);
  assert.equal(reads, 1000, 'every property of a small value is weighed');
  for (const [key, large] of [
    ['array', Array.from({ length: 50_000 }, item)],
    ['map', new Map(Array.from({ length: 50_000 }, (_, i) => [i, item()]))],
    ['object', Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`k${i}`, item()]))],
  ]) {
    reads = 0;
    assert.equal(await cached(name, key, () => large), large);
    assert.ok(reads <= 10_000, `${key}: ${reads} property reads`);
  }
  assert.equal(stats(name).entries, 4);
});

test('a cyclic value is weighed without hanging and stored', () => {
  // In a child process, so that a hang is a failed test rather than a stuck suite.
  const script = `
    const { configure, cached, stats } = require(${JSON.stringify(ENTRY)});
    (async () => {
      configure('cyclic');
      const a = { name: 'a' };
      const b = { name: 'b', a };
      a.b = b;
      a.self = a;
      const m = new Map([['a', a]]);
      m.set(m, m);
      const s = new Set([a, b]);
      s.add(s);
      const list = [a, b, m, s];
      list.push(list);
      a.list = list;
      for (const v of [a, list, m, s]) {
        const got = await cached('cyclic', [String(v.constructor.name)], () => v);
        if (got !== v) throw new Error('not the computed object');
      }
      const st = stats('cyclic');
      console.log(JSON.stringify({ entries: st.entries, errors: st.errors, bytesUsed: st.bytesUsed }));
    })();
  `;
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' });
  assert.equal(r.error, undefined, 'the child hung weighing a cyclic value');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.entries, 4);
  assert.equal(out.errors, 0);
  // Each object is weighed once: four small entries, far from a runaway sum.
  assert.ok(out.bytesUsed > 0 && out.bytesUsed < 10_000, `bytesUsed ${out.bytesUsed}`);
});
