// Callers who wait without a timeout for a computation that an earlier such caller of the same
// thread waits for share that caller's promise (the core's Jobs::start_patient); a caller with
// a timeout, or inside a computation, keeps a promise and a wait of its own. Steps that other
// threads queue are driven between computations, never inside one's synchronous part.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { configure, cached, stats } from 'coopcache';
import { uniq } from './helpers.mjs';

test('50 callers of a cold key share one computation and the first caller\'s promise', async () => {
  const name = uniq('follow');
  configure(name, {});
  let runs = 0;
  let release;
  const fn = () => {
    runs += 1;
    return new Promise((r) => {
      release = r;
    });
  };
  const ps = Array.from({ length: 50 }, () => cached(name, 'k', fn));
  assert.ok(ps.every((p) => p === ps[0]), 'one promise for the 50');
  assert.equal(stats(name).coalesced, 49, 'each follower counts as a caller who waited');
  release('v');
  assert.deepEqual(await Promise.all(ps), Array(50).fill('v'));
  assert.equal(runs, 1);
  assert.equal(await cached(name, 'k', fn), 'v', 'stored');
});

test('a failure reaches every follower, and the next caller computes again', async () => {
  const name = uniq('follow');
  configure(name, {});
  let fail;
  const ps = Array.from({ length: 3 }, () =>
    cached(name, 'k', () => new Promise((_, r) => {
      fail = r;
    })),
  );
  fail(new Error('down'));
  for (const r of await Promise.allSettled(ps)) assert.equal(r.reason?.message, 'down');
  assert.equal(await cached(name, 'k', () => 'again'), 'again');
});

test('a caller with a timeout keeps its own promise and gives up alone', async () => {
  const name = uniq('follow');
  configure(name, {});
  let release;
  const fn = () => new Promise((r) => {
    release = r;
  });
  const leader = cached(name, 'k', fn);
  const hasty = cached(name, 'k', fn, { timeoutMs: 1 });
  const patient = cached(name, 'k', fn);
  assert.notEqual(hasty, leader);
  assert.equal(patient, leader);
  await assert.rejects(hasty, { code: 'ERR_COOPCACHE_TIMEOUT' });
  release('v');
  assert.equal(await patient, 'v');
});

// The defect: setTimeout fires a delay it cannot hold (Infinity, or past 2^31 - 1 ms) after
// 1 ms, so such a timeoutMs gave up at once ("timed out after 0.000 s").
test('timeoutMs Infinity is no timeout, and one past 24.8 days does not fire at once', async () => {
  const name = uniq('follow');
  configure(name, {});
  const slow = (v) => () => new Promise((r) => setTimeout(r, 30, v)); // the bad timer fired after 1 ms
  assert.equal(await cached(name, 'inf', slow('a'), { timeoutMs: Infinity }), 'a');
  assert.equal(await cached(name, 'long', slow('b'), { timeoutMs: 3e9 }), 'b');
});

/** Runs `body(w, flags)` while follow_worker.mjs (`w`) computes key 'a' of the shared: 'process'
 * cache `name`; `flags`: [the worker computes, it stored]. Ends the worker after. */
async function whileTheWorkerComputesA(name, body) {
  const flags = new Int32Array(new SharedArrayBuffer(8));
  const w = new Worker(new URL('./follow_worker.mjs', import.meta.url), { workerData: { name, flags: flags.buffer } });
  try {
    while (Atomics.load(flags, 0) === 0) await Atomics.waitAsync(flags, 0, 0).value;
    await body(w, flags);
  } finally {
    await w.terminate();
  }
}

// A follow the addon answers together with other work (here another thread's value arriving for
// a waiting caller, queued while this thread was blocked): it goes through the actions, and
// the follower still gets the first caller's outcome.
test('a follow answered beside other actions settles the follower too', async () => {
  const shared = uniq('follow-proc');
  const local = uniq('follow');
  configure(shared, { shared: 'process' });
  configure(local, {});
  await whileTheWorkerComputesA(shared, async (w, flags) => {
    const a = cached(shared, 'a', () => assert.fail('the worker computes a'));
    let release;
    const b1 = cached(local, 'b', () => new Promise((r) => {
      release = r;
    }));
    w.postMessage('go');
    Atomics.wait(flags, 1, 0); // blocks this thread until the worker has stored a
    const b2 = cached(local, 'b', () => assert.fail('computed twice'));
    assert.notEqual(b2, b1, 'answered beside a\'s next step, so through the actions');
    release('b!');
    assert.deepEqual(await Promise.all([a, b1, b2]), ['from the worker', 'b!', 'b!']);
  });
});

test("another thread's answer waits until the synchronous part of the function running now returns", async () => {
  // The worker stores a while b's function runs here; the function then calls into the addon,
  // which would drive a's next step (decoding a, weighing it with sizeOf) inside it, but for
  // the frame the function runs in (the core's Entered).
  const shared = uniq('frame-proc');
  const local = uniq('frame');
  const seen = [];
  configure(shared, { shared: 'process', sizeOf: (v) => (seen.push(`sizeOf(${v})`), 1) });
  configure(local, {});
  await whileTheWorkerComputesA(shared, async (w, flags) => {
    const a = cached(shared, 'a', () => assert.fail('the worker computes a'));
    const b = cached(local, 'b', () => {
      seen.push('b starts');
      w.postMessage('go');
      Atomics.wait(flags, 1, 0); // blocks this thread until the worker has stored a
      const c = cached(local, 'c', () => 'c'); // a call into the addon, a's step queued
      seen.push('b returns');
      return c.then((v) => `b, ${v}`);
    });
    assert.deepEqual(await Promise.all([a, b]), ['from the worker', 'b, c']);
    assert.deepEqual(seen, ['b starts', 'b returns', 'sizeOf(from the worker)']);
  });
});
