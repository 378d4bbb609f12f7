// A process of the shared-mode tests (tests/node/shared.test.mjs), driven over IPC: each message
// { id, op, ... } gets one reply { id, ok, result | error }. Exits on its own once disconnected.
import coopcache, { configure, cached, cache, nocache, events } from 'coopcache';
import { setTimeout as sleep } from 'node:timers/promises';
import { command } from './resp.mjs';

const seen = [];
for (const name of ['sharedDown', 'sharedUp', 'valueRefused']) {
  events.on(name, (e) => seen.push({ event: name, ...e }));
}

function describe(e) {
  return { code: e?.code, name: e?.name, message: e?.message, remoteName: e?.remoteName };
}

// A computation: counts itself on Redis, waits, then returns or throws what it was told.
function computation(m) {
  return async () => {
    if (!m.noCount) await command(m.url, 'INCR', m.counter);
    if (m.delayMs) await sleep(m.delayMs);
    if (m.throw) {
      const E = globalThis[m.throw.name] ?? Error;
      throw new E(m.throw.message);
    }
    if (m.bigint) return { n: 1n };
    return m.nocache ? nocache(m.value) : m.value;
  };
}

// Each cache's manual clock (`configure` with `manualClock: true`), as advance(seconds).
const clocks = new Map();

const ops = {
  configure: (m) => {
    if (m.manualClock) clocks.set(m.name, coopcache._manualClock(m.name));
    const options = { ...m.options };
    if (options.secretHex) {
      options.secret = Buffer.from(options.secretHex, 'hex');
      delete options.secretHex;
    }
    configure(m.name, options);
    return null;
  },
  async ready(m) {
    for (let i = 0; i < 1000 && !cache(m.name).sharedUp; i++) await sleep(10);
    return cache(m.name).sharedUp;
  },
  // `callers` calls of one key at once; each result is { ok, value } or { ok: false, error }.
  cached(m) {
    const calls = [];
    for (let i = 0; i < (m.callers ?? 1); i++) {
      calls.push(
        cached(m.name, m.key, computation(m), m.callOptions).then(
          (value) => ({ ok: true, value }),
          (e) => ({ ok: false, error: describe(e) }),
        ),
      );
    }
    return Promise.all(calls);
  },
  get: (m) => cache(m.name).get(m.key),
  advance: (m) => clocks.get(m.name)(m.seconds),
  // Waits (30 s at most) until the local tier holds `value`.
  async until(m) {
    for (let i = 0; i < 3000 && cache(m.name).get(m.key) !== m.value; i++) await sleep(10);
    return cache(m.name).get(m.key) === m.value;
  },
  invalidate: (m) => cache(m.name).invalidate(m.key),
  stats: (m) => cache(m.name).stats(),
  events: () => seen,
};

process.on('message', async (m) => {
  try {
    const result = await ops[m.op](m);
    process.send({ id: m.id, ok: true, result });
  } catch (e) {
    process.send({ id: m.id, ok: false, error: describe(e) });
  }
});
