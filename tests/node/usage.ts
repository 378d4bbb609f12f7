// Type-checked with `tsc --noEmit --strict -p tests/node`: the public types as a user writes them.
import {
  configure,
  cached,
  nocache,
  get,
  invalidate,
  invalidateTag,
  clear,
  stats,
  names,
  events,
  Cache,
  type Key,
  type Stats,
  type CoopcacheError,
  type RemoteError,
} from 'coopcache';
import coopcache from 'coopcache';

interface User {
  id: number;
  name: string;
}

async function main(): Promise<void> {
  const users: Cache = configure('users', { memoryLimit: 50 * 1024 * 1024, cacheDuration: 10, whenFull: 'evict' });
  configure('other', { maxConcurrency: 4, sizeOf: (v: unknown) => JSON.stringify(v).length });
  configure('fraction', { memoryLimit: 0.1, maxConcurrency: null });

  const u: User = await cached('users', ['user', 42], async () => ({ id: 42, name: 'Ada' }));
  const n: number = await cached('users', 'count', () => 7, { timeoutMs: 2000, tags: ['user:42'] });
  const s: string = await cached('users', 'fresh', () => nocache('not stored'));
  const viaHandle: User = await users.cached(1n, async () => nocache({ id: 1, name: 'x' }));

  const loadUser = users.wrap(async (id: number): Promise<User> => ({ id, name: 'Grace' }), {
    key: (id) => ['user', id],
  });
  const g: User = await loadUser(7);

  const keys: Key[] = ['a', 1, 1.5, 2n, true, null, Buffer.from('x'), new Uint8Array(2), ['nested', [1, null]]];
  const hit: unknown = get('users', keys[0]);
  const typed: User | undefined = users.get<User>(['user', 42]);
  console.log(typed?.name);
  const removed: boolean = invalidate('users', ['user', 42]);
  const count: number = invalidateTag('users', 'user:42');
  clear('users');
  const st: Stats = stats('users');
  const total: number = st.hits + st.misses + st.bytesUsed + st.rejectedFull + st.evictedLru + st.inFlight;
  const all: string[] = names();

  events.on('full', (e) => console.log(e.cache, e.bytesUsed, e.memoryLimit));
  events.on('evict', (e) => console.log(e.cache, e.reason, e.count));
  events.on('sharedDown', (e) => console.log(e.cache, e.reason));
  events.on('sharedUp', (e) => console.log(e.cache));
  events.once('valueRefused', (e) => console.log(e.cache, e.reason));

  const shared: Cache = configure('shared', {
    redisUrl: 'redis://:secret@127.0.0.1:6379/0',
    serializer: 'json',
    secret: Buffer.from('key'),
    leaseTtl: 5,
  });
  configure('shared2', { redisUrl: 'rediss://redis.example:6380', secret: 'a string secret' });
  const up: boolean | null = shared.sharedUp;
  const sst = shared.stats();
  console.log(up, (sst.remoteHits ?? 0) + (sst.leasesWon ?? 0) + (sst.leasesLost ?? 0), sst.remoteWaits, sst.fallbacks, sst.rejectedValues);
  try {
    await shared.cached('k', () => 1);
  } catch (err) {
    const e = err as RemoteError;
    if (e.code === 'ERR_COOPCACHE_REMOTE') console.log(e.remoteName, e.message);
  }

  try {
    await cached('nope', 'k', () => 1);
  } catch (err) {
    const e = err as CoopcacheError;
    if (e.code === 'ERR_COOPCACHE_UNKNOWN_CACHE' || e.code === 'ERR_COOPCACHE_TIMEOUT') console.log(e.message);
  }
  console.log(u.name, n, s, viaHandle.id, g.name, hit, removed, count, total, all, users.name, users.settings.whenFull);
}

// @ts-expect-error: objects are not keys
void cached('users', { id: 1 }, () => 1);
// @ts-expect-error: unknown whenFull
configure('bad', { whenFull: 'drop' });
// @ts-expect-error: unknown serializer
configure('bad', { redisUrl: 'redis://localhost', serializer: 'pickle' });

void main();
void coopcache.cached('users', 'k', () => 1).then((v: number) => v + 1);

const refreshing = configure('refreshing', { refreshAfter: 60, serveStaleOnError: false });
const after: number | null = refreshing.settings.refreshAfter;
void cached('refreshing', 'k', () => 1, { refreshAfter: 30 });
void coopcache.cachedMany('refreshing', [1, 2], async (ids) => new Map(ids.map((id) => [id, `user ${id}`])))
  .then((names: string[]) => names.length + (after ?? 0));
coopcache.events.on('refreshFailed', (e) => console.log(e.cache, e.key, e.error, e.kept));
