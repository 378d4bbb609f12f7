// Errors of options and arguments: each names the option, shows the value with its type, says what
// is accepted, and has a stable `code` (the core checks the options once for Python and Node).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configure, cached, cache } from 'coopcache';
import { uniq } from './helpers.mjs';

const KNOWN =
  'memoryLimit, cacheDuration, whenFull, maxConcurrency, refreshAfter, serveStaleOnError, earlyRefresh, redisUrl, serializer, secret, leaseTtl, shared, sizeOf';

test('unknown configure options are errors naming the option and the known ones', () => {
  for (const [options, hint] of [
    [{ memory_limit: 10 }, "; did you mean 'memoryLimit'?"],
    [{ cacheDurations: 10 }, ''],
  ]) {
    const name = uniq('unknown');
    assert.throws(
      () => configure(name, options),
      (e) =>
        e instanceof TypeError &&
        e.code === 'ERR_COOPCACHE_INVALID_CONFIG' &&
        e.message === `configure() got an unexpected option '${Object.keys(options)[0]}' (options: ${KNOWN})${hint}`,
    );
  }
});

test('unknown call options are errors naming the option and the known ones', async () => {
  const name = uniq('unknown-call');
  const c = configure(name);
  const check = (e) =>
    e instanceof TypeError &&
    e.code === 'ERR_COOPCACHE_INVALID_OPTION' &&
    e.message === "cached() got an unexpected option 'timeout' (options: timeoutMs, tags, refreshAfter, sizeOf)";
  await assert.rejects(cached(name, 'k', () => 1, { timeout: 1 }), check);
  await assert.rejects(c.cached('k2', () => 1, { timeout: 1 }), check);
  assert.throws(() => c.wrap(() => 1, { key: () => 'w', timeout: 1 }), check); // when wrapping
  // Nothing was stored: the key still computes.
  assert.equal(await cached(name, 'k', () => 2), 2);
});

test('a string is shown as a string, with its type', async () => {
  assert.throws(
    () => configure(uniq('str'), { cacheDuration: '10' }),
    (e) =>
      e.code === 'ERR_COOPCACHE_INVALID_CONFIG' &&
      e.message === 'invalid cacheDuration: "10" (string); expected a number of seconds >= 0',
  );
  const name = uniq('str-call');
  configure(name);
  await assert.rejects(
    cached(name, 'k', () => 1, { timeoutMs: '1000' }),
    (e) =>
      e instanceof TypeError &&
      e.code === 'ERR_COOPCACHE_INVALID_OPTION' &&
      e.message === 'invalid timeoutMs: "1000" (string); expected a number of milliseconds >= 0, or null for none',
  );
  await assert.rejects(
    cached(name, 'k', () => 1, { tags: ['a', 1] }),
    (e) => e.code === 'ERR_COOPCACHE_INVALID_OPTION' && /invalid tags: .*; one is 1 \(number\)/.test(e.message),
  );
});

test('every argument error has a stable code', async () => {
  const name = uniq('codes');
  const c = configure(name);
  const arg = (e) => e instanceof TypeError && e.code === 'ERR_COOPCACHE_INVALID_ARGUMENT';
  assert.throws(() => configure(123), (e) => arg(e) && e.message === 'invalid name: 123 (number); expected a cache name (a string)');
  assert.throws(() => cache(123), arg);
  await assert.rejects(cached(name, 'k', 'not a function'), arg);
  assert.throws(() => c.invalidateTag(1), (e) => arg(e) && e.message === 'invalid tag: 1 (number); expected a tag (a string)');
  assert.throws(() => c.wrap(1), arg);
  assert.throws(() => c.wrap(() => 1, { key: 1 }), arg);
});
