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
  | 'ERR_COOPCACHE_INVALID_KEY';

export interface CoopcacheError extends Error {
  code: ErrorCode;
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

export interface CoopcacheEvents extends EventEmitter {
  on(event: 'full', listener: (e: FullEvent) => void): this;
  on(event: 'evict', listener: (e: EvictEvent) => void): this;
  once(event: 'full', listener: (e: FullEvent) => void): this;
  once(event: 'evict', listener: (e: EvictEvent) => void): this;
  off(event: 'full', listener: (e: FullEvent) => void): this;
  off(event: 'evict', listener: (e: EvictEvent) => void): this;
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
/** Emits `full` and `evict`. */
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
