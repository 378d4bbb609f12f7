// Types of the `coopcache` package (hand-written; the addon's generated types are in
// bindings-node/native.d.ts and are not part of the public API).
import { EventEmitter } from 'node:events';

/** A key: these types, and arrays of them (nested). Anything else is a `TypeError`. */
export type Key = string | number | bigint | boolean | null | Uint8Array | readonly Key[];

export interface Settings {
  /** Bytes the cache may hold (keys + values + per-entry overhead); a float in (0, 1] is that fraction of the machine's memory. Default 50 MiB. */
  memoryLimit?: number;
  /** Seconds after the last read or write of an entry until it is deleted. Default 300. */
  cacheDuration?: number;
  /** `"reject"` (default): new values are returned but not stored; `"evict"`: least recently used entries make room. */
  whenFull?: 'reject' | 'evict';
  /** At most this many computations of the cache at once; `null` (default) for no limit. */
  maxConcurrency?: number | null;
  /** The size in bytes of a value (default: a built-in estimate for strings, Buffers, arrays, plain objects). */
  sizeOf?: (value: any, key: Key) => number;
  /**
   * Shared mode: `redis://[user:password@]host:port[/db]` or `rediss://` (TLS). Each value is then
   * computed once across every process (any language) using the same Redis and cache name. Given
   * when the cache is first configured; later calls may omit it or repeat the same URL.
   */
  redisUrl?: string;
  /** Shared mode: how values are stored in Redis. `"v8"` (default) or `"json"` (shared with Python and Rust). */
  serializer?: 'v8' | 'json';
  /** Shared mode: signs every stored value (HMAC-SHA256); a value that fails the check is a miss and is never deserialized. A string is used as UTF-8. */
  secret?: string | Uint8Array;
  /** Shared mode: seconds a computing process holds a key before another may take over if it stops renewing. Default 10. */
  leaseTtl?: number;
  /**
   * `'process'`: share the cache across this process's worker threads without Redis. Each worker
   * configures the cache by the same name with `shared: 'process'`; a key is then computed once for
   * all of them, and each worker gets its own copy through `serializer` (`"v8"` by default). Not
   * combined with `redisUrl`. Default: not shared.
   */
  shared?: 'process';
}

export interface CallOptions {
  /** After this many milliseconds this caller gets an `ERR_COOPCACHE_TIMEOUT` error; the computation goes on for the others. */
  timeoutMs?: number;
  /** Tags stored with the value, for `invalidateTag`. */
  tags?: readonly string[];
  /** The size in bytes of this value (overrides the cache's `sizeOf`). */
  sizeOf?: (value: any, key: Key) => number;
}

export interface WrapOptions<A extends unknown[]> extends CallOptions {
  /** The key of a call (default: `[fn.name, ...args]`). */
  key?: (...args: A) => Key;
}

export interface Stats {
  hits: number;
  misses: number;
  computations: number;
  coalesced: number;
  errors: number;
  nocache: number;
  rejectedFull: number;
  evictedIdle: number;
  evictedLru: number;
  evictedInvalidated: number;
  entries: number;
  bytesUsed: number;
  memoryLimit: number;
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
}

/** A value marked by `nocache()`: handed to every waiter, not stored. */
export interface NoCache<T> {
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
  | 'ERR_COOPCACHE_REMOTE';

export interface CoopcacheError extends Error {
  code: ErrorCode;
}

/**
 * Shared mode: the computation failed in another process. `name` and `remoteName` are the
 * original error's name (`TypeError`, a Python exception type, a Rust type path), `message` its
 * message. Nothing is stored; the next call computes again.
 */
export interface RemoteError extends Error {
  code: 'ERR_COOPCACHE_REMOTE';
  remoteName: string;
}

export interface FullEvent {
  cache: string;
  bytesUsed: number;
  memoryLimit: number;
}

export interface EvictEvent {
  cache: string;
  reason: 'idle' | 'lru' | 'invalidated';
  count: number;
}

/** Shared mode: Redis became unreachable or slow; calls go on with the local tier. Without a listener, a process warning. */
export interface SharedDownEvent {
  cache: string;
  reason: string;
}

/** Shared mode: the shared tier reconnected after a `sharedDown`. */
export interface SharedUpEvent {
  cache: string;
}

/** Shared mode: a value in Redis failed its signature or format check and was treated as a miss (never deserialized). Without a listener, a process warning. */
export interface ValueRefusedEvent {
  cache: string;
  reason: string;
}

export interface CoopcacheEvents extends EventEmitter {
  on(event: 'full', listener: (e: FullEvent) => void): this;
  on(event: 'evict', listener: (e: EvictEvent) => void): this;
  on(event: 'sharedDown', listener: (e: SharedDownEvent) => void): this;
  on(event: 'sharedUp', listener: (e: SharedUpEvent) => void): this;
  on(event: 'valueRefused', listener: (e: ValueRefusedEvent) => void): this;
  once(event: 'full', listener: (e: FullEvent) => void): this;
  once(event: 'evict', listener: (e: EvictEvent) => void): this;
  once(event: 'sharedDown', listener: (e: SharedDownEvent) => void): this;
  once(event: 'sharedUp', listener: (e: SharedUpEvent) => void): this;
  once(event: 'valueRefused', listener: (e: ValueRefusedEvent) => void): this;
  off(event: 'full', listener: (e: FullEvent) => void): this;
  off(event: 'evict', listener: (e: EvictEvent) => void): this;
  off(event: 'sharedDown', listener: (e: SharedDownEvent) => void): this;
  off(event: 'sharedUp', listener: (e: SharedUpEvent) => void): this;
  off(event: 'valueRefused', listener: (e: ValueRefusedEvent) => void): this;
}

/** A handle on one named cache, as `configure` returns it. */
export declare class Cache {
  private constructor();
  readonly name: string;
  readonly settings: { memoryLimit: number; cacheDuration: number; whenFull: 'reject' | 'evict'; maxConcurrency: number | null };
  cached<T>(key: Key, fn: () => Computed<T> | PromiseLike<Computed<T>>, options?: CallOptions): Promise<T>;
  /** The stored value, without computing (`undefined` on a miss); a read resets the idle clock. */
  get<T = unknown>(key: Key): T | undefined;
  invalidate(key: Key): boolean;
  invalidateTag(tag: string): number;
  clear(): void;
  stats(): Stats;
  /** Shared mode: whether the shared tier is connected now (`null` for a cache without `redisUrl`). */
  readonly sharedUp: boolean | null;
  configure(settings: Settings): Cache;
  wrap<A extends unknown[], T>(
    fn: (...args: A) => Computed<T> | PromiseLike<Computed<T>>,
    options?: WrapOptions<A>,
  ): (...args: A) => Promise<T>;
}

/** Creates the cache `name`, or updates its settings in place (entries kept). */
export declare function configure(name: string, settings?: Settings): Cache;
/** The value for `key`, computed by `fn` once however many callers ask at the same moment. */
export declare function cached<T>(
  name: string,
  key: Key,
  fn: () => Computed<T> | PromiseLike<Computed<T>>,
  options?: CallOptions,
): Promise<T>;
/** Marks a value to be handed to every waiter but not stored. */
export declare function nocache<T>(value: T): NoCache<T>;
/** The stored value, without computing (`undefined` on a miss). */
export declare function get<T = unknown>(name: string, key: Key): T | undefined;
export declare function invalidate(name: string, key: Key): boolean;
export declare function invalidateTag(name: string, tag: string): number;
export declare function clear(name: string): void;
export declare function stats(name: string): Stats;
/** The configured cache names, sorted. */
export declare function names(): string[];
/** The handle of a configured cache. */
export declare function cache(name: string): Cache;
/** Emits `full`, `evict`, `sharedDown`, `sharedUp` and `valueRefused`. */
export declare const events: CoopcacheEvents;

declare const coopcache: {
  configure: typeof configure;
  cached: typeof cached;
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
};
export default coopcache;
