'use strict';
// coopcache for Node: the public face over the native addon (bindings-node/native/, built by
// bindings-node/build.mjs; this folder, bindings-node/js/, holds only hand-written files).
// Every rule lives in the Rust core; this file converts, weighs, runs the user's function and
// settles promises. Nothing here blocks the event loop.

const path = require('node:path');
const fs = require('node:fs');
const { EventEmitter } = require('node:events');
const { AsyncLocalStorage, AsyncResource } = require('node:async_hooks');
const v8 = require('node:v8');

function loadNative() {
  const dir = path.join(__dirname, '..', 'native');
  const prefix = `coopcache.${process.platform}-${process.arch}`;
  let files = [];
  try {
    files = fs.readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith('.node'));
  } catch {
    // reported below
  }
  if (files.length === 0) {
    throw new Error(
      `coopcache: the native addon is not built (no ${prefix}*.node in ${dir}); ` +
        'run `npm install` in the package root (it needs Rust and cargo)',
    );
  }
  if (files.length > 1) {
    // Prefer the libc this process runs on when both builds are present.
    const musl = !process.report?.getReport?.().header?.glibcVersionRuntime;
    files.sort((a, b) => Number(a.includes('musl') !== musl) - Number(b.includes('musl') !== musl));
  }
  return require(path.join(dir, files[0]));
}

const { Native } = loadNative();

// Native results: low 3 bits say what happened, the rest is an id or a token.
const HIT = 0;
const LEASE = 1;
const LEASE_QUEUED = 2;
const WAIT = 3;
const ERROR = 4;
const MISS = 5;
// takeReady() triples: [token, what, id].
const R_VALUE = 0;
const R_FAILED = 1;
const R_HANDED_OVER = 2;
const R_SLOT = 3;
const R_FAILED_OTHER = 4;
const R_REMOTE = 5;
const R_PUBLISHED = 6;
// takeRemote() kinds: what the shared tier answered a leader.
const A_VALUE = 0;
const A_NOCACHE = 1;
const A_FAILED = 2;
const A_COMPUTE = 3;
const NO_INDEX = 0xffffffff;

/** Values and errors the core holds, by id. The core releases an id when it lets go. */
const values = new Map();
let nextId = 0;
const ID_MASK = (1 << 29) - 1;
function put(v) {
  do nextId = (nextId + 1) & ID_MASK;
  while (nextId === 0 || values.has(nextId));
  values.set(nextId, v);
  return nextId;
}

/** Emits `full`, `evict`, `sharedDown`, `sharedUp` and `valueRefused`. */
const events = new EventEmitter();

// Called by the addon (through an unref'd threadsafe function, so it never keeps the process
// alive) when the core released values, emitted events, or completed a flight off this thread.
function wake() {
  const released = native.takeReleased();
  for (let i = 0; i < released.length; i++) values.delete(released[i]);
  drainReady();
  const evs = native.takeEvents();
  for (let i = 0; i < evs.length; i += 4) {
    if (evs[i] === 'full') {
      const e = { cache: evs[i + 1], bytesUsed: Number(evs[i + 2]), memoryLimit: Number(evs[i + 3]) };
      if (events.listenerCount('full') > 0) emit('full', e);
      else {
        process.emitWarning(
          `coopcache: cache ${JSON.stringify(e.cache)} is full (${e.bytesUsed} of ${e.memoryLimit} bytes); ` +
            'new values are returned but not stored',
          { code: 'COOPCACHE_FULL' },
        );
      }
    } else if (evs[i] === 'evict') {
      emit('evict', { cache: evs[i + 1], reason: evs[i + 2], count: Number(evs[i + 3]) });
    } else if (evs[i] === 'sharedUp') {
      emit('sharedUp', { cache: evs[i + 1] });
    } else {
      // sharedDown, valueRefused: warnings, reported even without a listener.
      const e = { cache: evs[i + 1], reason: evs[i + 2] };
      if (events.listenerCount(evs[i]) > 0) emit(evs[i], e);
      else process.emitWarning(`coopcache: cache ${JSON.stringify(e.cache)}: ${evs[i]} (${e.reason})`, { code: 'COOPCACHE_SHARED' });
    }
  }
}

// A listener that throws does not stop the other events; its error is rethrown on its own.
function emit(name, e) {
  try {
    events.emit(name, e);
  } catch (err) {
    process.nextTick(() => {
      throw err;
    });
  }
}

const native = new Native(wake);
const begin = native.beginFn();

function coopError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

function nativeError() {
  const [code, message] = native.takeError();
  if (code === 'TypeError') {
    const e = new TypeError(message);
    e.code = 'ERR_COOPCACHE_INVALID_KEY';
    return e;
  }
  return coopError(code, message);
}

function configError(message) {
  return coopError('ERR_COOPCACHE_INVALID_CONFIG', `invalid ${message}`);
}

// ---------------------------------------------------------------------------------------------
// Shared mode: serializers, and keeping the process alive while Redis answers
// ---------------------------------------------------------------------------------------------

const SERIALIZERS = {
  v8: {
    encode: (v) => v8.serialize(v),
    decode: (b) => v8.deserialize(b),
  },
  json: {
    encode(v) {
      const s = JSON.stringify(v);
      if (s === undefined) throw new TypeError(`${typeof v} is not representable in JSON`);
      return Buffer.from(s, 'utf8');
    },
    decode: (b) => JSON.parse(b.toString('utf8')),
  },
};

/** Callbacks for the shared tier's answers and confirmations, by token. */
const remoteOps = new Map();
// While the shared tier works for a caller, a ref'd timer keeps the event loop alive (the
// addon's own wake-up never does).
let holds = 0;
let keeper;
function noop() {}
function expect(tok, f) {
  if (holds++ === 0) keeper = setInterval(noop, 1 << 30);
  remoteOps.set(tok, f);
}
function fulfilled(tok, id) {
  const f = remoteOps.get(tok);
  if (f === undefined) return;
  remoteOps.delete(tok);
  if (--holds === 0) {
    clearInterval(keeper);
    keeper = undefined;
  }
  f(id);
}

function errorName(e) {
  return e !== null && typeof e === 'object' && typeof e.name === 'string' ? e.name : 'Error';
}

function errorMessage(e) {
  return e !== null && typeof e === 'object' && typeof e.message === 'string' ? e.message : String(e);
}

/** An error computed in another process: code ERR_COOPCACHE_REMOTE, its original name and message. */
function remoteError(name, message) {
  const e = new Error(message);
  e.name = name;
  e.code = 'ERR_COOPCACHE_REMOTE';
  e.remoteName = name;
  return e;
}

// ---------------------------------------------------------------------------------------------
// Caches by name
// ---------------------------------------------------------------------------------------------

/** name -> { idx, name, sizeOf } */
const byName = new Map();

function cacheFor(name) {
  const c = byName.get(name);
  if (c !== undefined) return c;
  if (typeof name !== 'string') throw new TypeError(`coopcache: a cache name must be a string, got ${typeof name}`);
  native.lookup(name);
  throw nativeError();
}

function configure(name, options = {}) {
  if (typeof name !== 'string') throw new TypeError(`coopcache: a cache name must be a string, got ${typeof name}`);
  if (options === null || typeof options !== 'object') throw configError(`options: expected an object`);
  const { memoryLimit, cacheDuration, whenFull, maxConcurrency, sizeOf, redisUrl, serializer, leaseTtl, shared } = options;
  let { secret } = options;
  if (memoryLimit !== undefined && typeof memoryLimit !== 'number') {
    throw configError(`memoryLimit: ${String(memoryLimit)} (expected a number of bytes >= 0, or a fraction in (0, 1])`);
  }
  if (cacheDuration !== undefined && typeof cacheDuration !== 'number') {
    throw configError(`cacheDuration: ${String(cacheDuration)} (expected a number of seconds >= 0)`);
  }
  if (whenFull !== undefined && typeof whenFull !== 'string') {
    throw configError(`whenFull: ${String(whenFull)} (expected "reject" or "evict")`);
  }
  if (maxConcurrency !== undefined && maxConcurrency !== null && typeof maxConcurrency !== 'number') {
    throw configError(`maxConcurrency: ${String(maxConcurrency)} (expected a whole number >= 1, or null for no limit)`);
  }
  if (sizeOf !== undefined && typeof sizeOf !== 'function') {
    throw configError(`sizeOf: expected a function (value, key) => bytes`);
  }
  if (redisUrl !== undefined && typeof redisUrl !== 'string') {
    throw configError(`redisUrl: expected a redis:// or rediss:// URL string`);
  }
  if (serializer !== undefined && !Object.prototype.hasOwnProperty.call(SERIALIZERS, serializer)) {
    throw configError(`serializer: ${String(serializer)} (expected "v8" or "json")`);
  }
  if (shared !== undefined && typeof shared !== 'string') {
    throw configError(`shared: ${String(shared)} (expected 'process': share the cache across this process's worker threads)`);
  }
  if (leaseTtl !== undefined && !(typeof leaseTtl === 'number' && leaseTtl > 0)) {
    throw configError(`leaseTtl: ${String(leaseTtl)} (expected a number of seconds > 0)`);
  }
  const prev = byName.get(name);
  if (prev !== undefined && prev.shared && serializer !== undefined && serializer !== prev.serializer) {
    throw configError(`serializer: ${serializer} (expected the one the shared cache was first configured with, "${prev.serializer}")`);
  }
  if (typeof secret === 'string') secret = Buffer.from(secret, 'utf8');
  else if (secret instanceof Uint8Array) secret = Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength);
  else if (secret !== undefined) throw configError(`secret: expected a string or a Buffer`);
  const idx = native.configure(name, {
    memoryLimit,
    memoryLimitIsFloat: memoryLimit !== undefined && !Number.isInteger(memoryLimit),
    cacheDuration,
    whenFull,
    maxConcurrency: maxConcurrency ?? undefined,
    maxConcurrencyGiven: maxConcurrency !== undefined,
    redisUrl,
    secret,
    leaseTtl,
    shared,
  });
  if (idx === NO_INDEX) throw nativeError();
  drainReady(); // a higher maxConcurrency may have granted queued leaders their slots
  let c = byName.get(name);
  if (c === undefined) {
    c = { idx, name, sizeOf: undefined, serializer: 'v8', shared: false };
    byName.set(name, c);
  }
  if (sizeOf !== undefined) c.sizeOf = sizeOf;
  if (serializer !== undefined) c.serializer = serializer;
  c.shared = native.isShared(idx);
  return new Cache(c);
}

// ---------------------------------------------------------------------------------------------
// cached()
// ---------------------------------------------------------------------------------------------

class NoCache {
  constructor(value) {
    this.value = value;
  }
}

/** Marks a value to be handed to every waiter but not stored. */
function nocache(value) {
  return new NoCache(value);
}

/** Calls waiting on the core (waiters, and leaders queued for a slot), by token. */
const pendingCalls = new Map();

// Flights whose computation runs in the current async context, for recursion through awaits.
// Enabled only while computations run, so hits never pay for async context tracking.
const als = new AsyncLocalStorage();
let computing = 0;

function cached(name, key, fn, options) {
  const c = byName.get(name);
  if (c !== undefined && typeof fn === 'function') {
    const r = begin(c.idx, key);
    if ((r & 7) === HIT) return Promise.resolve(values.get(r >>> 3));
    return miss(c, key, fn, options, r);
  }
  try {
    if (typeof fn !== 'function') throw new TypeError(`coopcache: fn must be a function, got ${typeof fn}`);
    return cachedOn(cacheFor(name), key, fn, options);
  } catch (e) {
    return Promise.reject(e);
  }
}

function cachedOn(c, key, fn, options) {
  if (typeof fn !== 'function') {
    return Promise.reject(new TypeError(`coopcache: fn must be a function, got ${typeof fn}`));
  }
  const r = begin(c.idx, key);
  if ((r & 7) === HIT) return Promise.resolve(values.get(r >>> 3));
  return miss(c, key, fn, options, r);
}

function checkOptions(o) {
  if (o === undefined || o === null) return undefined;
  if (typeof o !== 'object') throw new TypeError('coopcache: options must be an object');
  const { timeoutMs, tags, sizeOf } = o;
  if (timeoutMs !== undefined && timeoutMs !== null && !(typeof timeoutMs === 'number' && timeoutMs >= 0)) {
    throw new TypeError(`coopcache: timeoutMs must be a number >= 0, got ${String(timeoutMs)}`);
  }
  if (tags !== undefined && tags !== null && !(Array.isArray(tags) && tags.every((t) => typeof t === 'string'))) {
    throw new TypeError('coopcache: tags must be an array of strings');
  }
  if (sizeOf !== undefined && sizeOf !== null && typeof sizeOf !== 'function') {
    throw new TypeError('coopcache: sizeOf must be a function (value, key) => bytes');
  }
  return o;
}

function miss(c, key, fn, options, r) {
  let opts;
  try {
    opts = checkOptions(options);
  } catch (e) {
    // Give up the lease or the wait this call obtained.
    const kind = r & 7;
    if (kind === LEASE || kind === LEASE_QUEUED) native.fail(r >>> 3, put(e));
    else if (kind === WAIT) native.cancel(r >>> 3);
    drainReady();
    return Promise.reject(e);
  }
  return new Promise((resolve, reject) => {
    const call = {
      c,
      key,
      fn,
      opts,
      resolve,
      reject,
      timer: undefined,
      tok: 0,
      done: false,
      // The computations this call is made from (for recursion detection when it computes
      // later, after a slot or the shared tier's answer).
      parent: computing > 0 ? als.getStore() : undefined,
      remote: false,
    };
    const t = opts?.timeoutMs;
    if (t !== undefined && t !== null) call.timer = setTimeout(onTimeout, t, call);
    step(call, r);
  });
}

function settle(call, ok, v) {
  if (call.done) return;
  call.done = true;
  if (call.timer !== undefined) clearTimeout(call.timer);
  if (ok) call.resolve(v);
  else call.reject(v);
}

function step(call, r) {
  const tok = r >>> 3;
  switch (r & 7) {
    case HIT:
      settle(call, true, values.get(tok));
      return;
    case LEASE:
      call.tok = tok;
      runLeader(call, tok);
      return;
    case LEASE_QUEUED:
      call.tok = tok;
      pendingCalls.set(tok, call);
      return;
    case WAIT: {
      if (computing > 0) {
        const chain = als.getStore();
        if (chain !== undefined && chain.includes(native.flightOf(tok))) {
          native.cancel(tok);
          settle(call, false, coopError('ERR_COOPCACHE_RECURSION', native.recursionMessage(call.c.idx, call.key)));
          return;
        }
      }
      call.tok = tok;
      pendingCalls.set(tok, call);
      return;
    }
    default:
      settle(call, false, nativeError());
  }
}

function onTimeout(call) {
  if (call.done) return;
  const ms = call.opts.timeoutMs;
  if (call.tok !== 0 && pendingCalls.get(call.tok) === call) {
    pendingCalls.delete(call.tok);
    native.cancel(call.tok);
  }
  settle(
    call,
    false,
    coopError(
      'ERR_COOPCACHE_TIMEOUT',
      `timed out after ${(ms / 1000).toFixed(3)} s waiting for the value (the computation goes on for the others)`,
    ),
  );
  drainReady();
}

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';
}

// The leader asks the shared tier first (if the cache has one), then computes unless the answer
// settles it.
function runLeader(call, tok) {
  if (call.c.shared) {
    const a = native.askRemote(call.c.idx, tok);
    if (a === 1) {
      // The computation, if any, runs in the caller's async context, not the addon's wake-up.
      expect(tok, AsyncResource.bind(() => answered(call, tok)));
      return;
    }
    if (a === 2) {
      answered(call, tok);
      return;
    }
  }
  compute(call, tok);
}

function answered(call, tok) {
  const a = native.takeRemote(tok);
  switch (a.kind) {
    case A_VALUE:
    case A_NOCACHE: {
      let v;
      try {
        v = SERIALIZERS[call.c.serializer].decode(a.payload);
      } catch {
        compute(call, tok); // a value this process cannot read is a miss
        return;
      }
      if (a.kind === A_VALUE) storeLocal(tok, call, v, a.tags ?? null, 0);
      else {
        native.nocache(tok, put(v));
        settle(call, true, v);
        drainReady();
      }
      return;
    }
    case A_FAILED:
      failLease(tok, call, remoteError(a.typeName ?? 'Error', a.message ?? ''));
      return;
    case A_COMPUTE:
      call.remote = true;
      compute(call, tok);
      return;
    default:
      compute(call, tok); // no shared tier now: the local tier alone
  }
}

function compute(call, tok) {
  const fid = native.enter(tok);
  const parent = call.parent !== undefined ? call.parent : computing > 0 ? als.getStore() : undefined;
  const chain = parent === undefined ? [fid] : parent.concat(fid);
  computing++;
  let out;
  try {
    out = als.run(chain, call.fn);
  } catch (e) {
    native.exit(tok);
    leaderDone();
    failLease(tok, call, e);
    return;
  }
  native.exit(tok);
  if (isThenable(out)) {
    Promise.resolve(out).then(
      (v) => {
        leaderDone();
        finishLease(tok, call, v);
      },
      (e) => {
        leaderDone();
        failLease(tok, call, e);
      },
    );
  } else {
    leaderDone();
    finishLease(tok, call, out);
  }
}

function leaderDone() {
  if (--computing === 0) als.disable();
}

function finishLease(tok, call, v) {
  if (v instanceof NoCache) {
    const pub = call.remote ? publish(tok, call, v.value, true) : 0;
    native.nocache(tok, put(v.value));
    settleAfter(pub, call, true, v.value);
    drainReady();
  } else {
    storeLocal(tok, call, v, call.opts?.tags ?? null, call.remote);
  }
}

/** Stores `v` (published first if this process holds the shared lease) and settles the call. */
function storeLocal(tok, call, v, tags, remote) {
  let w;
  try {
    const f = call.opts?.sizeOf ?? call.c.sizeOf;
    w = f === undefined ? estimate(v) : Number(f(v, call.key));
  } catch (e) {
    failLease(tok, call, e);
    return;
  }
  const pub = remote ? publish(tok, call, v, false) : 0;
  native.store(tok, put(v), w, tags);
  settleAfter(pub, call, true, v);
  drainReady();
}

// Hands what this process computed to the shared tier; returns the token of Redis's answer
// (0: nothing to wait for). A value that cannot be serialized is stored here only, and the
// other processes are told it failed, so none is left waiting.
function publish(tok, call, v, isNocache) {
  call.remote = false;
  let payload;
  try {
    payload = SERIALIZERS[call.c.serializer].encode(v);
  } catch (e) {
    return native.publishFail(
      tok,
      errorName(e),
      `the value could not be serialized (${call.c.serializer}): ${errorMessage(e)}`,
    );
  }
  return native.publish(tok, payload, isNocache ? null : (call.opts?.tags ?? null), isNocache);
}

// Settles the call, after Redis confirmed a publication if there is one (so a process that
// exits right after its call does not lose the write; Redis calls have their own timeout).
function settleAfter(pub, call, ok, v) {
  if (pub === 0) {
    settle(call, ok, v);
    return;
  }
  if (call.timer !== undefined) {
    clearTimeout(call.timer);
    call.timer = undefined;
  }
  expect(pub, () => settle(call, ok, v));
}

function failLease(tok, call, e) {
  let pub = 0;
  if (call.remote) {
    call.remote = false;
    pub = native.publishFail(tok, errorName(e), errorMessage(e));
  }
  native.fail(tok, put(e));
  settleAfter(pub, call, false, e);
  drainReady();
}

function drainReady() {
  for (;;) {
    const r = native.takeReady();
    if (r.length === 0) return;
    for (let i = 0; i < r.length; i += 3) {
      const tok = r[i];
      if (r[i + 1] === R_REMOTE || r[i + 1] === R_PUBLISHED) {
        fulfilled(tok, r[i + 2]);
        continue;
      }
      const call = pendingCalls.get(tok);
      if (call === undefined) continue;
      pendingCalls.delete(tok);
      switch (r[i + 1]) {
        case R_VALUE:
          settle(call, true, values.get(r[i + 2]));
          break;
        case R_FAILED:
          settle(call, false, values.get(r[i + 2]));
          break;
        case R_HANDED_OVER:
          if (!call.done) step(call, native.begin(call.c.idx, call.key));
          break;
        case R_SLOT:
          runLeader(call, tok);
          break;
        case R_FAILED_OTHER:
        default:
          settle(call, false, nativeError());
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Weighing: a built-in estimate of a value's bytes (strings, Buffers, arrays, plain objects)
// ---------------------------------------------------------------------------------------------

// The walk is iterative (its own stack, no recursion), so no depth overflows the call stack, and
// budgeted: at most MAX_NODES values are visited (the value itself, and each array element, Map
// key and value, Set member and own property value reached); past that, a container's remaining
// contents count only as the 8 to 24 bytes per slot its own size already includes. Every object
// is weighed once (`seen`), so shared references and cycles are safe. The stack never holds more
// than MAX_NODES objects. (Python's estimate recurses, so it also stops at depth 32; this one
// needs no depth bound.)
const MAX_NODES = 10000;

function estimate(v) {
  switch (typeof v) {
    case 'string':
      return 16 + v.length;
    case 'number':
      return 8;
    case 'bigint':
      return 16 + Math.ceil(v.toString(16).length / 2);
    case 'object': {
      if (v === null) return 0;
      const budget = { n: 1, seen: new Set([v]), stack: [v] };
      let total = 0;
      while (budget.stack.length > 0) total += estimateObject(budget.stack.pop(), budget);
      return total;
    }
    case 'function':
      return 64;
    default:
      return 0;
  }
}

// An object's own size and its scalar contents'; the objects it holds go on budget.stack.
function estimateObject(v, budget) {
  if (ArrayBuffer.isView(v)) return 64 + v.byteLength;
  if (v instanceof ArrayBuffer) return 32 + v.byteLength;
  let total;
  if (Array.isArray(v)) {
    total = 16 + 8 * v.length;
    for (let i = 0; i < v.length && budget.n < MAX_NODES; i++) total += inner(v[i], budget);
    return total;
  }
  if (v instanceof Map) {
    total = 32 + 24 * v.size;
    for (const [k, x] of v) {
      if (budget.n + 1 >= MAX_NODES) break;
      total += inner(k, budget) + inner(x, budget);
    }
    return total;
  }
  if (v instanceof Set) {
    total = 32 + 16 * v.size;
    for (const x of v) {
      if (budget.n >= MAX_NODES) break;
      total += inner(x, budget);
    }
    return total;
  }
  if (v instanceof Date) return 32;
  total = 24;
  for (const k in v) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
    total += 16 + (budget.n < MAX_NODES ? inner(v[k], budget) : 0);
  }
  return total;
}

// One value found in a container (counted against the budget): a scalar's size, or 0 for an
// object, which is stacked to be weighed later unless it was seen already.
function inner(x, budget) {
  budget.n++;
  if (typeof x === 'object' && x !== null) {
    if (!budget.seen.has(x)) {
      budget.seen.add(x);
      budget.stack.push(x);
    }
    return 0;
  }
  if (typeof x === 'string') return 16 + x.length;
  return typeof x === 'number' ? 8 : estimate(x);
}

// ---------------------------------------------------------------------------------------------
// The rest of the API
// ---------------------------------------------------------------------------------------------

function getOn(c, key) {
  const r = native.get(c.idx, key);
  const kind = r & 7;
  if (kind === HIT) return values.get(r >>> 3);
  if (kind === MISS) return undefined;
  throw nativeError();
}

function invalidateOn(c, key) {
  const r = native.invalidate(c.idx, key);
  if (r === ERROR) throw nativeError();
  return r === 1;
}

function invalidateTagOn(c, tag) {
  if (typeof tag !== 'string') throw new TypeError('coopcache: a tag must be a string');
  return native.invalidateTag(c.idx, tag);
}

function statsOn(c) {
  const s = native.stats(c.idx);
  const out = {
    hits: s[0],
    misses: s[1],
    computations: s[2],
    coalesced: s[3],
    errors: s[4],
    nocache: s[5],
    rejectedFull: s[6],
    evictedIdle: s[7],
    evictedLru: s[8],
    evictedInvalidated: s[9],
    entries: s[10],
    bytesUsed: s[11],
    memoryLimit: s[12],
    inFlight: s[13],
  };
  const r = native.sharedStats(c.idx);
  if (r.length > 0) {
    out.remoteHits = r[0];
    out.leasesWon = r[1];
    out.leasesLost = r[2];
    out.remoteWaits = r[3];
    out.fallbacks = r[4];
    out.rejectedValues = r[5];
  }
  return out;
}

/** A handle on one named cache (what `configure` returns). */
class Cache {
  #c;
  constructor(c) {
    this.#c = c;
  }
  get name() {
    return this.#c.name;
  }
  get settings() {
    const [memoryLimit, cacheDuration, whenFull, maxConcurrency] = native.settings(this.#c.idx);
    const mc = Number(maxConcurrency);
    return {
      memoryLimit: Number(memoryLimit),
      cacheDuration: Number(cacheDuration),
      whenFull,
      maxConcurrency: mc < 0 ? null : mc,
    };
  }
  cached(key, fn, options) {
    return cachedOn(this.#c, key, fn, options);
  }
  get(key) {
    return getOn(this.#c, key);
  }
  invalidate(key) {
    return invalidateOn(this.#c, key);
  }
  invalidateTag(tag) {
    return invalidateTagOn(this.#c, tag);
  }
  clear() {
    native.clear(this.#c.idx);
  }
  stats() {
    return statsOn(this.#c);
  }
  /** `true` while the shared tier is connected, `false` while it is not, `null` without one. */
  get sharedUp() {
    return this.#c.shared ? native.sharedUp(this.#c.idx) : null;
  }
  configure(options) {
    return configure(this.#c.name, options);
  }
  wrap(fn, options = {}) {
    if (typeof fn !== 'function') throw new TypeError('coopcache: wrap() needs a function');
    const { key, ...callOptions } = options;
    if (key !== undefined && typeof key !== 'function') {
      throw new TypeError('coopcache: wrap() key must be a function (...args) => key');
    }
    const c = this.#c;
    const fname = fn.name || 'anonymous';
    const keyOf = key ?? ((...args) => [fname, ...args]);
    const opts = Object.keys(callOptions).length ? callOptions : undefined;
    return function wrapped(...args) {
      let k;
      try {
        k = keyOf(...args);
      } catch (e) {
        return Promise.reject(e);
      }
      return cachedOn(c, k, () => fn.apply(this, args), opts);
    };
  }
}

module.exports = {
  configure,
  cached,
  nocache,
  get: (name, key) => getOn(cacheFor(name), key),
  invalidate: (name, key) => invalidateOn(cacheFor(name), key),
  invalidateTag: (name, tag) => invalidateTagOn(cacheFor(name), tag),
  clear: (name) => native.clear(cacheFor(name).idx),
  stats: (name) => statsOn(cacheFor(name)),
  names: () => native.names(),
  cache: (name) => new Cache(cacheFor(name)),
  events,
  Cache,
  /** The package's version (one for the npm package, the Python wheel and the Rust crate). */
  version: require('../../package.json').version,
  /** Internal: the canonical bytes of a key (throws a TypeError for a bad key). */
  _keyBytes(key) {
    const b = native.keyBytes(key);
    if (b === null || b === undefined) throw nativeError();
    return b;
  },
};
module.exports.default = module.exports;
