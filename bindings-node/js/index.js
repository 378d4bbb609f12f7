'use strict';
// coopcache for Node: the public face over the native addon (the platform's prebuilt package, or
// a checkout's build in bindings-node/native/: load.js finds it). This folder, bindings-node/js/,
// holds only hand-written files.
// Every rule of a call lives in the Rust core's call driver, which the addon drives; this file
// checks arguments, runs the user's function, weighs and serializes values, settles promises and
// emits events. Nothing here blocks the event loop.

const { EventEmitter } = require('node:events');
const { AsyncLocalStorage } = require('node:async_hooks');
const v8 = require('node:v8');

const { Native, NativeCache } = require('./load.js').load();

/** A bad argument: a TypeError with the stable code of the addon's (ERR_COOPCACHE_INVALID_ARGUMENT). */
function badArgument(message) {
  return Object.assign(new TypeError(`coopcache: ${message}`), { code: 'ERR_COOPCACHE_INVALID_ARGUMENT' });
}

// How a computation ended, as `computed` is told; LAST is added to the last action of a call
// (bindings-node/src/lib.rs, mods outcome and act).
const STORE = 0;
const FAILED = 1;
const NOCACHE = 2;
const FOLLOW = 9;
const LAST = 16;

/** Values and errors the core holds, by id. The core releases an id when it lets go; released
 * ids are reused, so ids index an array (cheaper for a hit than a Map) as dense as the values are
 * many. Id 0 is never given: it stands for none. */
class Values {
  #byId = [undefined];
  #free = [];
  // The promises recent hits resolved to, in HOT slots by id (the slot's id beside it): a settled
  // promise can be shared, and a hit of a hot value that allocates none costs less (and leaves
  // the GC less to do); bounded, so a cache of many values holds no promise per value.
  #hotIds = new Int32Array(HOT);
  #hot = new Array(HOT).fill(undefined);
  get(id) {
    return this.#byId[id];
  }
  hit(id) {
    const slot = id & (HOT - 1);
    if (this.#hotIds[slot] === id) return this.#hot[slot];
    const p = Promise.resolve(this.#byId[id]);
    this.#hotIds[slot] = id;
    this.#hot[slot] = p;
    return p;
  }
  add(v) {
    const id = this.#free.length > 0 ? this.#free.pop() : this.#byId.length;
    this.#byId[id] = v;
    return id;
  }
  delete(id) {
    if (this.#byId[id] === RELEASED) return; // (never twice on the free list)
    this.#byId[id] = RELEASED;
    const slot = id & (HOT - 1);
    if (this.#hotIds[slot] === id) [this.#hotIds[slot], this.#hot[slot]] = [0, undefined];
    this.#free.push(id);
  }
}
const HOT = 1024; // a power of 2
const RELEASED = Symbol('released');
const values = new Values();

/** Emits `full`, `evict`, `refreshFailed`, `sharedDown`, `sharedUp` and `valueRefused`. */
const events = new EventEmitter();
/** The code of the process warning an event without a listener becomes (the others': COOPCACHE_SHARED). */
const WARNINGS = { full: 'COOPCACHE_FULL', refreshFailed: 'COOPCACHE_REFRESH' };

// Called by the addon (through a threadsafe function that keeps the process alive only while a
// leader waits for the shared tier) when the core completed something off a call into it,
// released values or emitted events.
function wake() {
  run(native.takeReady());
  for (const id of native.takeReleased()) values.delete(id);
  const evs = native.takeEvents(); // [name, payload, warning if nobody listens (or null)]
  for (let i = 0; i < evs.length; i += 3) {
    if (evs[i + 2] !== null && events.listenerCount(evs[i]) === 0) {
      process.emitWarning(evs[i + 2], { code: WARNINGS[evs[i]] ?? 'COOPCACHE_SHARED' });
      continue;
    }
    try {
      events.emit(evs[i], evs[i + 1]);
    } catch (err) {
      // A listener that throws does not stop the other events; its error is rethrown alone.
      process.nextTick(() => {
        throw err;
      });
    }
  }
}

const native = new Native(wake);
const { start, frame, computed: report } = native.fns(); // the miss path, without napi-rs's dispatch
const out = new Float64Array(3 * 1024); // the addon writes its answers here (see run)
native.setOutput(out);

const SERIALIZERS = {
  v8: { encode: v8.serialize, decode: v8.deserialize },
  json: { encode: toJson, decode: (b) => JSON.parse(b.toString('utf8')) },
};

function toJson(v) {
  const s = JSON.stringify(v);
  if (s === undefined) throw new TypeError(`${typeof v} is not representable in JSON`);
  return Buffer.from(s, 'utf8');
}

// ---------------------------------------------------------------------------------------------
// Caches by name
// ---------------------------------------------------------------------------------------------

/** name -> { idx, name, sizeOf, handle, hit } (`hit(key)`: the cache's hit path, see cachedOn) */
const byName = new Map();

/** The handle of the configured cache `name`. */
function cache(name) {
  const c = byName.get(name);
  if (c === undefined) throw native.unknownCache(name); // or a TypeError if the name is not a string
  return c.handle;
}

function configure(name, options = {}) {
  // Checks the name and every setting (of a copy: any getters run here, not in the addon).
  const idx = native.configure(name, options !== null && typeof options === 'object' ? { ...options } : options);
  run(native.takeReady()); // a higher maxConcurrency may have granted queued leaders their slots
  let c = byName.get(name);
  if (c === undefined) {
    c = { idx, name, sizeOf: undefined, hit: native.hitOf(idx) };
    c.handle = new Cache(c);
    byName.set(name, c);
  }
  if (options.sizeOf !== undefined) c.sizeOf = options.sizeOf;
  return c.handle;
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

/** Calls on a miss, by number: { c, key, fn, options, promise, resolve, reject, timer, ctx }. */
const calls = new Map();
let lastCall = 0;

// The calls whose computations run in the current async context, for the core's recursion
// checks through awaits. Enabled only while computations run, so hits never pay for it.
const als = new AsyncLocalStorage();
let computing = 0;

// The cache cached() found last, by name: a program mostly calls one cache many times in a row,
// and comparing the name is cheaper than looking it up (a cache, once configured, stays).
let lastName = Symbol('none');
let last;

function cached(name, key, fn, options) {
  if (name !== lastName) {
    const c = byName.get(name);
    if (c === undefined) return unknown(name);
    [lastName, last] = [name, c];
  }
  return cachedOn(last, key, fn, options);
}

// Apart from cached(): a closure there would cost every hit a context.
function unknown(name) {
  return new Promise(() => cache(name)); // rejects with its error
}

function cachedOn(c, key, fn, options) {
  if (typeof fn !== 'function') return Promise.reject(badArgument(`fn must be a function, got ${typeof fn}`));
  c.hit(key);
  const id = out[0]; // > 0: a hit; else the miss for start()
  return id > 0 ? values.hit(id) : miss(c, key, fn, options, id);
}

function miss(c, key, fn, options, missed) {
  try {
    refuseGenerator(fn, 'cached()');
  } catch (e) {
    return Promise.reject(e);
  }
  const id = ++lastCall;
  const ctx = computing > 0 ? als.getStore() : undefined;
  const a = start(id, c.idx, key, options, ctx, missed); // checks the options' types
  // A caller who waits, without a timeout, for the computation an earlier such caller waits
  // for: the core keeps nothing for it, and its promise is that caller's.
  if (a === 3 && out[1] === FOLLOW + LAST) return calls.get(out[2]).promise;
  const call = { c, key, fn, options, promise: undefined, resolve: undefined, reject: undefined, timer: undefined, ctx };
  call.promise = new Promise((resolve, reject) => {
    [call.resolve, call.reject] = [resolve, reject];
  });
  calls.set(id, call);
  try {
    run(a); // its first action arms the call's timeout, if the core read one in its options
  } catch (e) {
    call.reject(e);
  }
  return call.promise;
}

// setTimeout fires a delay past MAX_DELAY after 1 ms: a longer timeout is armed in steps.
const MAX_DELAY = 2 ** 31 - 1;

/** Gives the call up (the core's `giveUp`) after its timeout, `timeout` ms, `ms` from now. */
function arm(id, call, ms, timeout) {
  call.timer = ms > MAX_DELAY ? setTimeout(arm, MAX_DELAY, id, call, ms - MAX_DELAY, timeout) : setTimeout(() => run(native.giveUp(id, timeout)), ms);
}

// What the addon asks this file to do for a call, by action code (bindings-node/src/lib.rs,
// mod act): settle its promise, compute, deserialize, serialize, nothing, settle it as another
// call's promise is, or arm its timeout.
const ACTIONS = [
  (id, call, arg) => settle(call, call.resolve, values.get(arg)),
  (id, call, arg) => settle(call, call.reject, values.get(arg)),
  (id, call) => settle(call, call.reject, native.takeError(id)),
  (id, call) => compute(id, call),
  decode,
  (id, call, arg) => encode(id, call, values.get(arg)),
  () => {},
  (id, call) => compute(id, call, native.takeList(id).map((i) => call.keys[i])),
  (id, call) => settle(call, call.resolve, native.takeList(id).map((i) => values.get(i))),
  (id, call, arg) => calls.get(arg).promise.then(call.resolve, call.reject),
  (id, call, arg) => arm(id, call, arg, arg),
];

/** Does what the addon asks: triples [call, action, arg], as many as the count it wrote to `out`
 * (copied: an action may call the addon), or in an array. */
function run(a) {
  if (a === 0) return;
  const r = typeof a === 'number' ? out.slice(0, a) : a;
  for (let i = 0; i < r.length; i += 3) {
    const call = calls.get(r[i]);
    if (r[i + 1] >= LAST) calls.delete(r[i]);
    ACTIONS[r[i + 1] & 15](r[i], call, r[i + 2]);
  }
}

function settle(call, how, v) {
  if (call.timer !== undefined) clearTimeout(call.timer);
  how(v);
}

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';
}

// Runs the user's function (a batch's loader: with the keys `asked`): its synchronous part
// inside the computation (its frame), the rest in an async context that knows it (als), for the
// core's recursion checks.
function compute(id, call, asked) {
  computing++;
  frame(id, true);
  let ok = true;
  let result;
  try {
    const ctx = call.ctx === undefined ? [id] : call.ctx.concat(id);
    result = asked === undefined ? als.run(ctx, call.fn) : als.run(ctx, call.fn, asked);
  } catch (e) {
    [ok, result] = [false, e];
  }
  frame(id, false);
  if (ok && isThenable(result)) Promise.resolve(result).then((v) => computed(id, call, true, v, asked), (e) => computed(id, call, false, e, asked));
  else computed(id, call, ok, result, asked);
}

function computed(id, call, ok, v, asked) {
  if (--computing === 0) als.disable();
  let kind = !ok ? FAILED : v instanceof NoCache ? NOCACHE : STORE;
  let w = 0;
  let batch; // a batch's loader's result, as `loaded` takes it
  try {
    if (ok && asked !== undefined) batch = loaded(call, asked, v);
    else if (kind === STORE && isGenerator(v, '')) {
      throw badArgument('the function returned a generator, which can be iterated once; return an array of its items to cache them');
    } else if (kind === NOCACHE) v = v.value;
    else if (kind === STORE) w = weigh(call, v);
  } catch (e) {
    [kind, v] = [FAILED, e]; // reported as the computation's failure
  }
  run(batch !== undefined ? native.loaded(id, ...batch) : report(id, kind, values.add(v), w, v));
}

/** The values of `keys` (an array), with one `loader(missing)` call for the keys nobody has. */
function cachedMany(name, keys, loader) {
  const c = byName.get(name);
  if (c === undefined) return unknown(name);
  if (!Array.isArray(keys)) return Promise.reject(badArgument(`keys must be an array, got ${typeof keys}`));
  if (typeof loader !== 'function') return Promise.reject(badArgument(`loader must be a function, got ${typeof loader}`));
  return new Promise((resolve, reject) => {
    const id = ++lastCall;
    const ctx = computing > 0 ? als.getStore() : undefined;
    calls.set(id, { c, keys, fn: loader, resolve, reject, ctx });
    run(native.many(id, c.idx, keys, ctx));
  });
}

// What a batch's loader returned: a Map, or a plain object (read by String(key)), of the keys
// `asked` to their values; as [keys, value ids, weights] for the addon's `loaded` (throws for
// anything else, or a value that cannot be weighed).
function loaded(call, asked, m) {
  if (m === null || typeof m !== 'object') {
    throw badArgument(`the loader must return a Map or an object of the keys to their values, got ${m === null ? 'null' : typeof m}`);
  }
  const entries = m instanceof Map ? [...m] : asked.filter((k) => Object.hasOwn(m, String(k))).map((k) => [k, m[String(k)]]);
  const weights = entries.map(([k, v]) => weigh({ c: call.c, key: k }, v));
  return [entries.map(([k]) => k), entries.map(([, v]) => values.add(v)), weights];
}

function weigh(call, v) {
  const f = call.options?.sizeOf ?? call.c.sizeOf;
  return f === undefined ? estimate(v) : Number(f(v, call.key));
}

// A value the shared tier has: one this process cannot read is computed here instead.
function decode(id, call) {
  let v;
  let w;
  try {
    v = SERIALIZERS[native.serializer(call.c.idx)].decode(native.payload(id));
    w = weigh(call, v);
  } catch (e) {
    return run(native.decoded(id, 0, 0, String(e)));
  }
  run(native.decoded(id, values.add(v), w));
}

// A value for the shared tier: one that cannot be serialized is kept here, and the other
// processes are told why.
function encode(id, call, v) {
  const serializer = native.serializer(call.c.idx);
  let b;
  try {
    b = SERIALIZERS[serializer].encode(v);
  } catch (e) {
    const why = typeof e?.message === 'string' ? e.message : String(e);
    b = [typeof e?.name === 'string' ? e.name : 'Error', `the value could not be serialized (${serializer}): ${why}`];
  }
  run(native.encoded(id, b)); // the bytes, or [type name, message] of why there are none
}

// ---------------------------------------------------------------------------------------------
// Weighing: a built-in estimate of a value's bytes (strings, Buffers, arrays, plain objects)
// ---------------------------------------------------------------------------------------------

// The walk is iterative (its own stack, no recursion), so no depth overflows the call stack, and
// budgeted: at most MAX_NODES values are visited (the value itself, and each array element, Map
// key and value, Set member and own property value reached); past that, a container's remaining
// contents count only as the 8 to 24 bytes per slot its own size already includes. Every object
// is weighed once (`seen`), so shared references and cycles are safe. The stack never holds more
// than MAX_NODES values. (Python's estimate recurses, so it also stops at depth 32; this one
// needs no depth bound.)
const MAX_NODES = 10000;

function estimate(root) {
  if (typeof root !== 'object' || root === null) return scalar(root);
  const seen = new Set();
  const stack = [root];
  let budget = MAX_NODES - 1; // values that may still be stacked
  const more = () => budget > 0;
  const visit = (x) => budget-- > 0 && stack.push(x);
  let total = 0;
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null) total += scalar(v);
    else if (!seen.has(v)) {
      seen.add(v);
      total += container(v, visit, more);
    }
  }
  return total;
}

function scalar(v) {
  if (typeof v === 'string') return 16 + v.length;
  if (typeof v === 'number') return 8;
  if (typeof v === 'bigint') return 16 + Math.ceil(v.toString(16).length / 2);
  return typeof v === 'function' ? 64 : 0;
}

// An object's own size; `visit` stacks what it holds while `more()` (the budget) allows.
function container(v, visit, more) {
  if (ArrayBuffer.isView(v)) return 64 + v.byteLength;
  if (v instanceof ArrayBuffer) return 32 + v.byteLength;
  if (v instanceof Date) return 32;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length && more(); i++) visit(v[i]);
    return 16 + 8 * v.length;
  }
  if (v instanceof Map || v instanceof Set) {
    for (const [k, x] of v.entries()) {
      if (!more()) break;
      if (v instanceof Map) visit(k);
      visit(x);
    }
    return 32 + (v instanceof Map ? 24 : 16) * v.size;
  }
  const keys = Object.keys(v); // own enumerable string keys, as `for...in` with `Object.hasOwn`
  for (let i = 0; i < keys.length && more(); i++) visit(v[keys[i]]);
  return 24 + 16 * keys.length;
}

// ---------------------------------------------------------------------------------------------
// wrap(): what a default key can name
// ---------------------------------------------------------------------------------------------

/** Whether `v` is a generator (`kind` ''), or a generator function (`kind` 'Function'): a
 * generator's result is an iterator, consumed once: cached, the second caller would get it
 * exhausted. */
function isGenerator(v, kind) {
  const tag = v?.[Symbol.toStringTag];
  return tag === `Generator${kind}` || tag === `AsyncGenerator${kind}`;
}

function refuseGenerator(fn, where) {
  if (isGenerator(fn, 'Function')) {
    throw badArgument(
      `${where} got the generator function ${fn.name || '(anonymous)'}: its result can be iterated ` +
      'once, so it cannot be cached; cache a function that returns an array of its items instead',
    );
  }
}

/** Each function wrapped with a default key, by the number the addon's name claims know it by. */
const owners = new WeakMap();
let lastOwner = 0;
const unclaim = new FinalizationRegistry(([idx, name, owner]) => native.releaseName(idx, name, owner));

/** The default key of `wrap(fn)`, [fn.name, ...args]: the addon refuses a name that is not this
 * function's alone in the cache (an anonymous function, a second function of a name already
 * taken: two `load`s, bound methods of two instances), and a method call is refused, since it
 * leaves `this` out and every instance would share entries; `key` names the call instead. */
function defaultKey(c, fn) {
  const fname = fn.name;
  if (!owners.has(fn)) owners.set(fn, ++lastOwner);
  if (native.claimName(c.idx, fname, owners.get(fn))) unclaim.register(fn, [c.idx, fname, owners.get(fn)]);
  return function (...args) {
    if (this !== undefined && this !== globalThis) {
      throw badArgument(
        `wrap(${fname}) was called as a method: the default key [name, ...args] leaves \`this\` out, ` +
        'so every instance would share entries; give wrap() a key: function (...args) { return [..., this.id, ...args]; }',
      );
    }
    return [fname, ...args];
  };
}

// ---------------------------------------------------------------------------------------------
// The rest of the API
// ---------------------------------------------------------------------------------------------

/** A handle on one named cache (what `configure` returns). The addon's class has what needs no
 * JS value of the cache's: `name`, `settings`, `sharedUp`, `invalidate`, `invalidateTag`,
 * `clear` and `stats`. */
class Cache extends NativeCache {
  #c;
  constructor(c) {
    super(native, c.idx);
    this.#c = c;
  }
  cached(key, fn, options) {
    return cachedOn(this.#c, key, fn, options);
  }
  get(key) {
    return values.get(native.get(this.#c.idx, key)); // 0 (none) is never an id
  }
  configure(options) {
    return configure(this.#c.name, options);
  }
  wrap(fn, options = {}) {
    if (typeof fn !== 'function') throw badArgument(`wrap() needs a function, got ${typeof fn}`);
    refuseGenerator(fn, 'wrap()');
    const { key, ...callOptions } = options;
    if (key !== undefined && typeof key !== 'function') {
      throw badArgument(`wrap() key must be a function (...args) => key, got ${typeof key}`);
    }
    const c = this.#c;
    const opts = Object.keys(callOptions).length ? callOptions : undefined;
    if (opts !== undefined) native.checkOptions(opts); // bad options fail here, not at each call
    const keyOf = key ?? defaultKey(c, fn);
    return function wrapped(...args) {
      let k;
      try {
        k = keyOf.apply(this, args);
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
  cachedMany,
  nocache,
  get: (name, key) => cache(name).get(key),
  invalidate: (name, key) => cache(name).invalidate(key),
  invalidateTag: (name, tag) => cache(name).invalidateTag(tag),
  clear: (name) => cache(name).clear(),
  stats: (name) => cache(name).stats(),
  names: () => native.names(),
  cache,
  events,
  Cache,
  /** The package's version (one for the npm package, the Python wheel and the Rust crate). */
  version: require('../../package.json').version,
  /** Internal: the canonical bytes of a key (throws a TypeError for a bad key). */
  _keyBytes: (key) => native.keyBytes(key),
  /** For tests only: the cache `name`, configured after this, reads a manual clock; returns its `advance(seconds)`. */
  _manualClock: (name) => native.manualClock(name),
};
module.exports.default = module.exports;
