import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configure, cached, get, _keyBytes } from 'coopcache';
import { uniq } from './helpers.mjs';

test("['user', 42] encodes as Python's ('user', 42)", () => {
  const expected = Buffer.from([
    0x06, 0x02, // list of 2
    0x04, 0x04, ...Buffer.from('user'), // str "user"
    0x01, 0, 0, 0, 0, 0, 0, 0, 42, // int 42
  ]);
  assert.deepEqual(_keyBytes(['user', 42]), expected);
  assert.deepEqual(_keyBytes(['user', 42n]), expected);
  assert.deepEqual(_keyBytes(['user', 42.0]), expected);
});

test('equal keys: 1 == 1.0 == 1n == true; null; floats; big ints', () => {
  assert.deepEqual(_keyBytes(1), _keyBytes(1n));
  assert.deepEqual(_keyBytes(1), _keyBytes(true));
  assert.deepEqual(_keyBytes(0), _keyBytes(-0));
  assert.notDeepEqual(_keyBytes(1.5), _keyBytes(1));
  assert.deepEqual(_keyBytes(null), Buffer.from([0]));
  assert.deepEqual(_keyBytes(2 ** 70), _keyBytes(2n ** 70n));
  assert.deepEqual(_keyBytes(-(2n ** 63n)), _keyBytes(-(2 ** 63)));
  const huge = 2n ** 200n + 12345n;
  assert.equal(_keyBytes(huge)[0], 0x02);
  assert.notDeepEqual(_keyBytes(huge), _keyBytes(-huge));
  assert.deepEqual(_keyBytes(NaN), _keyBytes(Number.NaN));
});

test('Buffers and Uint8Arrays are the same bytes key; strings differ from bytes', () => {
  assert.deepEqual(_keyBytes(Buffer.from('ab')), _keyBytes(new Uint8Array([97, 98])));
  assert.notDeepEqual(_keyBytes(Buffer.from('ab')), _keyBytes('ab'));
  assert.deepEqual(_keyBytes(Buffer.alloc(0)), Buffer.from([0x05, 0x00]));
  const big = Buffer.alloc(1000, 7);
  assert.equal(_keyBytes(big).length, 1 + 2 + 1000);
  const long = 'é'.repeat(500);
  assert.equal(_keyBytes(long).length, 1 + 2 + 1000);
});

test('strings are UTF-8: ASCII, accents, astral, lone surrogates, long', () => {
  assert.deepEqual(_keyBytes('ab'), Buffer.from([0x04, 2, 97, 98]));
  assert.deepEqual(_keyBytes('é'), Buffer.from([0x04, 2, 0xc3, 0xa9]));
  assert.deepEqual(_keyBytes('😀'), Buffer.concat([Buffer.from([0x04, 4]), Buffer.from('😀')]));
  assert.deepEqual(_keyBytes('\ud800'), Buffer.from([0x04, 3, 0xef, 0xbf, 0xbd]));
  for (const n of [126, 127, 128, 129, 300]) {
    const s = 'a'.repeat(n - 1) + 'é';
    assert.deepEqual(_keyBytes(s).subarray(-(n + 1)), Buffer.from(s));
  }
});

test('nested arrays differ from flat ones', () => {
  assert.notDeepEqual(_keyBytes([1, [2, 3]]), _keyBytes([1, 2, 3]));
  assert.deepEqual(_keyBytes([[]]), Buffer.from([0x06, 1, 0x06, 0]));
});

test('keys of every kind work with cached()', async () => {
  const name = uniq('keys');
  configure(name);
  const keys = ['s', 1, 1.5, 10n ** 30n, false, null, Buffer.from('b'), new Uint8Array([1, 2]), ['a', [1, null]], []];
  for (const k of keys) await cached(name, k, () => ({ k }));
  for (const k of keys) assert.deepEqual(get(name, k), { k });
  // The hit reads the key itself (a string or a number first): every kind hits, and the string
  // '1' is not the number 1.
  for (const k of keys) assert.deepEqual(await cached(name, k, () => 'computed again'), { k });
  assert.equal(await cached(name, '1', () => 'the string'), 'the string');
  assert.deepEqual(get(name, Buffer.from('b')), { k: keys[6] });
  assert.deepEqual(get(name, 0), { k: false });
});

test('other types are a TypeError', async () => {
  const name = uniq('badkeys');
  configure(name);
  const bad = [undefined, {}, Symbol('s'), () => 1, new Float32Array(2), new Map(), ['ok', {}], new Date(0)];
  for (const k of bad) {
    await assert.rejects(cached(name, k, () => 1), TypeError);
    assert.throws(() => get(name, k), TypeError);
  }
  const cyclic = [];
  cyclic.push(cyclic);
  assert.throws(() => _keyBytes(cyclic), TypeError);
});
