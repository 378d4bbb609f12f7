// Types of the `coopcache` package (hand-written; the addon's generated types are in
// bindings-node/native/native.d.ts and are not part of the public API).
import { EventEmitter } from 'node:events';

/** A key: these types, and arrays of them (nested). Anything else is a `TypeError`. */
export type Key = string | number | bigint | boolean | null | Uint8Array | readonly Key[];

/**
 * The settings of `configure(name, settings)`. Every one is optional: on a new cache an omitted
 * setting takes its default, on an existing one it keeps its current value. A bad or unknown
 * setting throws at once (`ERR_COOPCACHE_INVALID_CONFIG`).
 */
export interface Settings {
  /**
   * Bytes the cache may hold (keys + values + 48 bytes per entry). A non-integer in (0, 1) is that
   * fraction of the machine's memory (`1` is one byte); `0` stores nothing (concurrent callers
   * still share one computation). Default `50 * 1024 * 1024` (50 MiB).
   */
  memoryLimit?: number;
  /** Seconds after the last read or write of an entry until it is deleted. Default `300`. */
  cacheDuration?: number;
  /** `"reject"`: new values are returned but not stored, stored ones keep being served; `"evict"`: least recently used entries make room. Default `"reject"`. */
  whenFull?: 'reject' | 'evict';
  /** At most this many computations of the cache at once; further leaders queue for a slot. `null` removes a limit. Default `null` (no limit). */
  maxConcurrency?: number | null;
  /**
   * Refresh ahead: seconds after a value was computed until a hit on it starts one background
   * recomputation of the key (a detached promise); that hit and the others meanwhile get the
   * stored value at once, and the new value replaces it when done. `cacheDuration` keeps its
   * meaning. `null`: never. Default `null`.
   */
  refreshAfter?: number | null;
  /** Whether a refresh that fails keeps the stored value (`false`: the entry goes); either way it counts in `refreshesFailed` and emits `refreshFailed`. Default `true`. */
  serveStaleOnError?: boolean;
  /** Probabilistic early refresh (XFetch): its beta (> 0, 1 is usual). Each value computed here falls due before `refreshAfter` by beta x its computation time x a random exponential draw. `null`: none. Default `null`. */
  earlyRefresh?: number | null;
  /** The size in bytes of a value. Default: a built-in estimate (strings, numbers, bigints, Buffers and typed arrays, arrays, Maps, Sets, plain objects; any depth, cycles counted once, at most 10,000 values visited). */
  sizeOf?: (value: any, key: Key) => number;
  /**
   * Shared mode (default: none, the cache is local): `redis://[user:password@]host:port[/db]` or `rediss://` (TLS); a Redis Cluster: `redis+cluster://host:port[,host:port...]` (or `rediss+cluster://`). Each value is then
   * computed once across every process (any language) using the same Redis and cache name. Given
   * when the cache is first configured; later calls may omit it or repeat the same URL.
   */
  redisUrl?: string;
  /** Shared mode: how values are stored in Redis: `"v8"` (Node only; Maps, Dates, BigInts, typed arrays) or `"json"` (shared with Python and Rust). Default `"v8"`. */
  serializer?: 'v8' | 'json';
  /** Shared mode: signs every stored value (HMAC-SHA256); a value that fails the check is a miss and is never deserialized. A string is used as UTF-8. Default: none (values are not signed). */
  secret?: string | Uint8Array;
  /** Shared mode: seconds a computing process holds a key before another may take over if it stops renewing (it renews every third of this while it computes). Default `10`. */
  leaseTtl?: number;
  /**
   * `'process'`: share the cache across this process's worker threads without Redis. Each worker
   * configures the cache by the same name with `shared: 'process'`; a key is then computed once for
   * all of them, and each worker gets its own copy through `serializer` (`"v8"` by default). Not
   * combined with `redisUrl`. Default: not shared.
   */
  shared?: 'process';
}

/** The options of one call (`cached`, `cache.cached`, `cache.wrap`). */
export interface CallOptions {
  /** After this many milliseconds this caller gets an `ERR_COOPCACHE_TIMEOUT` error; the computation goes on for the others. Default: none (wait for the outcome); `Infinity` or `null` is none too. */
  timeoutMs?: number | null;
  /** Tags stored with the value, for `invalidateTag`. Default: none. */
  tags?: readonly string[];
  /** The value this call stores falls due for refresh after this many seconds (overrides the cache's `refreshAfter`). Default: the cache's. */
  refreshAfter?: number;
  /** The size in bytes of this value (overrides the cache's `sizeOf`). Default: the cache's `sizeOf`, or the built-in estimate. */
  sizeOf?: (value: any, key: Key) => number;
}

/** The options of `cache.wrap(fn, options)`: those of every call, and how a call's key is made. */
export interface WrapOptions<A extends unknown[]> extends CallOptions {
  /**
   * The key of a call (called with the wrapped function's `this`). Default: `[fn.name, ...args]`,
   * which `wrap` refuses for an anonymous function or a second function of a name already
   * wrapped in the cache, and which a call as a method (`this` set) rejects: give those a `key`.
   */
  key?: (this: any, ...args: A) => Key;
}

/** The counters of a cache, as `stats(name)` returns them (counts since the cache was configured). */
export interface Stats {
  /** Calls answered from the cache, without computing. */
  hits: number;
  /** Calls that found no fresh value (they computed or waited). */
  misses: number;
  /** Computations started (one per flight, however many callers shared it). */
  computations: number;
  /** Calls that waited for another caller's computation. */
  coalesced: number;
  /** Computations that failed (threw or rejected). */
  errors: number;
  /** Computations that returned `nocache(value)`. */
  nocache: number;
  /** Values returned but not stored because the cache was full (`whenFull: 'reject'`). */
  rejectedFull: number;
  /** Entries dropped after being idle for `cacheDuration`. */
  evictedIdle: number;
  /** Entries dropped to make room (`whenFull: 'evict'`). */
  evictedLru: number;
  /** Entries removed by `invalidate`, `invalidateTag` or `clear`. */
  evictedInvalidated: number;
  /** Entries stored now. */
  entries: number;
  /** Bytes charged now: keys + values + per-entry overhead (never more than `memoryLimit`). */
  bytesUsed: number;
  /** The limit, in bytes. */
  memoryLimit: number;
  /** Refreshes started (`refreshAfter`). */
  refreshesStarted: number;
  /** Refreshes whose value replaced the stored one. */
  refreshesSucceeded: number;
  /** Refreshes that failed (see `serveStaleOnError`). */
  refreshesFailed: number;
  /** Values due for refresh (or whose refresh failed) returned as they were. */
  staleServed: number;
  /** Computations running now. */
  inFlight: number;
  /** Shared mode only: values found in Redis (or delivered by another process's completion). */
  remoteHits?: number;
  /** Shared mode only: keys this process computed for every process. */
  leasesWon?: number;
  /** Shared mode only: keys found being computed by another process. */
  leasesLost?: number;
  /** Shared mode only: waits for another process's completion. */
  remoteWaits?: number;
  /** Shared mode only: questions answered by the local tier alone because Redis was unavailable. */
  fallbacks?: number;
  /** Shared mode only: values refused because their signature or format did not check out. */
  rejectedValues?: number;
  /** Shared mode (Redis) only: bytes of the messages this process received on the cache's channels. */
  messageBytes?: number;
}

/** A value marked by `nocache()`: handed to every waiter, not stored. */
export interface NoCache<T> {
  /** The value handed to every waiter. */
  readonly value: T;
}

/** What a computation may return (or resolve to). */
export type Computed<T> = T | NoCache<T>;

/** Errors thrown by coopcache carry one of these codes. */
export type ErrorCode =
  | 'ERR_COOPCACHE_TIMEOUT'
  | 'ERR_COOPCACHE_UNKNOWN_CACHE'
  | 'ERR_COOPCACHE_INVALID_CONFIG'
  | 'ERR_COOPCACHE_RECURSION'
  | 'ERR_COOPCACHE_INVALID_KEY'
  | 'ERR_COOPCACHE_INVALID_OPTION'
  | 'ERR_COOPCACHE_INVALID_ARGUMENT'
  | 'ERR_COOPCACHE_NOT_BUILT'
  | 'ERR_COOPCACHE_REMOTE'
  | 'ERR_COOPCACHE_COMPUTATION';

/** An error thrown by coopcache itself (errors thrown by `fn` reach the callers as they were thrown). */
export interface CoopcacheError extends Error {
  /** What went wrong, stable across versions. */
  code: ErrorCode;
}

/**
 * Shared mode: the computation failed in another process. `name` and `remoteName` are the
 * original error's name (`TypeError`, a Python exception type, a Rust type path), `message` its
 * message. Nothing is stored; the next call computes again.
 */
export interface RemoteError extends Error {
  /** Always `'ERR_COOPCACHE_REMOTE'`. */
  code: 'ERR_COOPCACHE_REMOTE';
  /** The original error's name (the same as `name`). */
  remoteName: string;
}

/** A cache became full: emitted once, and again only after it drained and filled up again. Without a listener, a process warning `COOPCACHE_FULL`. */
export interface FullEvent {
  /** The cache's name. */
  cache: string;
  /** Bytes the stored entries take. */
  bytesUsed: number;
  /** The limit, in bytes. */
  memoryLimit: number;
}

/** Entries were dropped. */
export interface EvictEvent {
  /** The cache's name. */
  cache: string;
  /** Why: idle for `cacheDuration`, evicted to make room, or invalidated. */
  reason: 'idle' | 'lru' | 'invalidated';
  /** How many entries. */
  count: number;
}

/** A refresh (`refreshAfter`) failed. Without a listener, a process warning `COOPCACHE_REFRESH`. */
export interface RefreshFailedEvent {
  /** The cache's name. */
  cache: string;
  /** The key, as far as it can be shown. */
  key: string;
  /** The error, as `name: message`. */
  error: string;
  /** Whether the old value was kept (`serveStaleOnError`). */
  kept: boolean;
}

/** Shared mode: Redis became unreachable or slow; calls go on with the local tier. Without a listener, a process warning. */
export interface SharedDownEvent {
  /** The cache's name. */
  cache: string;
  /** What failed (the password of the URL is masked). */
  reason: string;
}

/** Shared mode: the shared tier reconnected after a `sharedDown`. */
export interface SharedUpEvent {
  /** The cache's name. */
  cache: string;
}

/** Shared mode: a value in Redis failed its signature or format check and was treated as a miss (never deserialized). Without a listener, a process warning. */
export interface ValueRefusedEvent {
  /** The cache's name. */
  cache: string;
  /** Why the value was refused. */
  reason: string;
}

/** The `events` emitter: `full`, `evict`, `refreshFailed`, and in shared mode `sharedDown`, `sharedUp`, `valueRefused`. Events arrive asynchronously on the JS thread. */
export interface CoopcacheEvents extends EventEmitter {
  on(event: 'full', listener: (e: FullEvent) => void): this;
  on(event: 'evict', listener: (e: EvictEvent) => void): this;
  on(event: 'refreshFailed', listener: (e: RefreshFailedEvent) => void): this;
  on(event: 'sharedDown', listener: (e: SharedDownEvent) => void): this;
  on(event: 'sharedUp', listener: (e: SharedUpEvent) => void): this;
  on(event: 'valueRefused', listener: (e: ValueRefusedEvent) => void): this;
  once(event: 'full', listener: (e: FullEvent) => void): this;
  once(event: 'evict', listener: (e: EvictEvent) => void): this;
  once(event: 'refreshFailed', listener: (e: RefreshFailedEvent) => void): this;
  once(event: 'sharedDown', listener: (e: SharedDownEvent) => void): this;
  once(event: 'sharedUp', listener: (e: SharedUpEvent) => void): this;
  once(event: 'valueRefused', listener: (e: ValueRefusedEvent) => void): this;
  off(event: 'full', listener: (e: FullEvent) => void): this;
  off(event: 'evict', listener: (e: EvictEvent) => void): this;
  off(event: 'refreshFailed', listener: (e: RefreshFailedEvent) => void): this;
  off(event: 'sharedDown', listener: (e: SharedDownEvent) => void): this;
  off(event: 'sharedUp', listener: (e: SharedUpEvent) => void): this;
  off(event: 'valueRefused', listener: (e: ValueRefusedEvent) => void): this;
}

/** A handle on one named cache, as `configure` returns it. */
export declare class Cache {
  private constructor();
  /** The cache's name. */
  readonly name: string;
  /** The current settings (the memory limit in bytes, the idle duration in seconds). */
  readonly settings: {
    memoryLimit: number;
    cacheDuration: number;
    whenFull: 'reject' | 'evict';
    maxConcurrency: number | null;
    refreshAfter: number | null;
    serveStaleOnError: boolean;
    earlyRefresh: number | null;
  };
  /** The value for `key`, computed by `fn` once however many callers ask at the same moment (see `cached`). */
  cached<T>(key: Key, fn: () => Computed<T> | PromiseLike<Computed<T>>, options?: CallOptions): Promise<T>;
  /** The stored value, without computing (`undefined` on a miss); a read resets the idle clock. */
  get<T = unknown>(key: Key): T | undefined;
  /** Removes the key's entry (in shared mode, in Redis and every process too); `true` if there was one here. */
  invalidate(key: Key): boolean;
  /** Removes the entries stored with `tag` (in shared mode, everywhere); returns how many were here. */
  invalidateTag(tag: string): number;
  /** Removes every entry (in shared mode, everywhere). */
  clear(): void;
  /** The cache's counters. */
  stats(): Stats;
  /** Shared mode: whether the shared tier is connected now (`null` for a cache without `redisUrl`). */
  readonly sharedUp: boolean | null;
  /** Updates the settings in place (entries kept; settings not given keep their values). */
  configure(settings: Settings): Cache;
  /**
   * A memoized `fn`: each call's value is `cached` under `options.key(...args)` (default
   * `[fn.name, ...args]`), with the other options of every call. A generator function is
   * refused (its result can be iterated once).
   */
  wrap<A extends unknown[], T>(
    fn: (...args: A) => Computed<T> | PromiseLike<Computed<T>>,
    options?: WrapOptions<A>,
  ): (...args: A) => Promise<T>;
}

/**
 * Creates the cache `name`, or updates its settings in place (entries kept; settings not given
 * keep their values). Defaults: `memoryLimit` 50 MiB, `cacheDuration` 300 s, `whenFull`
 * `'reject'`, `maxConcurrency` `null` (no limit), `refreshAfter` `null` (never),
 * `serveStaleOnError` `true`, `earlyRefresh` `null`, `sizeOf` the built-in estimate, no `redisUrl`
 * (local only), `serializer` `'v8'`, no `secret`, `leaseTtl` 10 s.
 */
export declare function configure(name: string, settings?: Settings): Cache;
/**
 * The value for `key`, computed by `fn` once however many callers ask at the same moment: a hit
 * resolves with the stored object without calling `fn` (repeated hits of one stored value may
 * return the same settled promise); a miss while another caller computes
 * waits for that outcome (value or error; callers of one thread who wait without a timeout
 * share the first one's promise). `fn` may be sync or async; its errors are not stored.
 * Options: `timeoutMs` (default none), `tags` (default none), `refreshAfter` (default the
 * cache's), `sizeOf` (default the cache's).
 */
export declare function cached<T>(
  name: string,
  key: Key,
  fn: () => Computed<T> | PromiseLike<Computed<T>>,
  options?: CallOptions,
): Promise<T>;
/**
 * The values of `keys`, in their order: stored keys are hits, keys another caller computes are
 * waited for, and the rest are loaded by ONE call of `loader(missing)`, which returns a `Map` of
 * them to their values, a plain object (read by `String(key)`), or a promise of either. Each of
 * those keys is a flight other callers (single or batch) join. A key the loader leaves out is an
 * error for that key (`ERR_COOPCACHE_COMPUTATION`); the loader's error reaches every caller of
 * its keys. Rejects with the first failing key's error. Local tier only.
 */
export declare function cachedMany<K extends Key, T>(
  name: string,
  keys: readonly K[],
  loader: (missing: K[]) => Map<K, T> | Record<string, T> | PromiseLike<Map<K, T> | Record<string, T>>,
): Promise<T[]>;
/** Marks a value to be handed to every waiter but not stored. */
export declare function nocache<T>(value: T): NoCache<T>;
/** The stored value, without computing (`undefined` on a miss); a read resets the idle clock. */
export declare function get<T = unknown>(name: string, key: Key): T | undefined;
/** Removes the key's entry (in shared mode, in Redis and every process too); `true` if there was one here. */
export declare function invalidate(name: string, key: Key): boolean;
/** Removes the entries stored with `tag` (in shared mode, everywhere); returns how many were here. */
export declare function invalidateTag(name: string, tag: string): number;
/** Removes every entry of the cache (in shared mode, everywhere). */
export declare function clear(name: string): void;
/** The cache's counters (in shared mode, also the shared tier's). */
export declare function stats(name: string): Stats;
/** The configured cache names, sorted. */
export declare function names(): string[];
/** The handle of a configured cache (`ERR_COOPCACHE_UNKNOWN_CACHE` if there is none). */
export declare function cache(name: string): Cache;
/** Emits `full`, `evict`, `refreshFailed`, `sharedDown`, `sharedUp` and `valueRefused`. */
export declare const events: CoopcacheEvents;
/** The package's version: one for the npm package, the Python wheel and the Rust crate. */
export declare const version: string;

/** The module itself, for `import coopcache from 'coopcache'`. */
declare const coopcache: {
  configure: typeof configure;
  cached: typeof cached;
  cachedMany: typeof cachedMany;
  nocache: typeof nocache;
  get: typeof get;
  invalidate: typeof invalidate;
  invalidateTag: typeof invalidateTag;
  clear: typeof clear;
  stats: typeof stats;
  names: typeof names;
  cache: typeof cache;
  events: typeof events;
  Cache: typeof Cache;
  version: typeof version;
};
export default coopcache;
