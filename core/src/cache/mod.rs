//! The typed cache for Rust users: a builder and the `get_or_compute` family (the async forms'
//! future is in `future`).

mod block;
mod call;
mod future;
mod jobs;
mod many;

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::config::{ConfigError, MemoryLimit, Settings, WhenFull};
use crate::error::{BoxError, Error};
use crate::flight::{Begin, Caller, Computed, FlightCache};
use crate::stats::{Listener, Stats};
use crate::store::{Due, Weigher};
use crate::wait::Ready;
use crate::weigh::Weigh;
pub use block::Host;
pub use call::{Call, Lead, LeadStep, Outcome, RefreshHit, Step};
pub use future::{Compute, GetOrCompute};
pub use jobs::{Action, Do, Entered, Jobs};
pub use many::{Batch, BatchStep};

/// Per-call options of every `get_or_compute` form.
///
/// ```
/// use coopcache::{Cache, CallOptions};
/// use std::time::Duration;
///
/// let cache: Cache<u32, String> = Cache::builder().build().unwrap();
/// let opts = CallOptions::new().timeout(Duration::from_secs(2)).tags(["team:1"]);
/// let v = cache.compute(1, &opts, || Ok::<_, std::io::Error>("Ada".to_string().into()));
/// assert_eq!(v.unwrap(), "Ada");
/// assert_eq!(cache.invalidate_tag("team:1"), 1);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallOptions {
    /// The longest this caller waits: for a computation slot, for the shared tier, or for
    /// another caller's computation; then it gets [`Error::Timeout`] and the computation goes
    /// on for the others. A caller that computes runs its computation to completion, in every
    /// form, so the value is computed once and stored; to stop an async one, drop its future
    /// (a waiter takes over).
    pub timeout: Option<Duration>,
    /// Tags stored with the value, for [`Cache::invalidate_tag`].
    pub tags: Vec<String>,
    /// The value this call stores falls due for refresh after this long instead of the
    /// cache's [`CacheBuilder::refresh_after`] (see there).
    pub refresh_after: Option<Duration>,
}

impl CallOptions {
    /// No timeout, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// With these tags.
    pub fn tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// With this `refresh_after` for the value the call stores (it must be > 0: the cache's
    /// setting is checked at configure time, this one when the call is made, and a zero panics
    /// here with the setting's error).
    pub fn refresh_after(mut self, d: Duration) -> Self {
        if let Err(e) = crate::config::check_refresh_after(d) {
            panic!("coopcache: {e}");
        }
        self.refresh_after = Some(d);
        self
    }
}

/// A cooperative cache: each key's value is computed once, however many callers ask for it at
/// the same moment. Cheap to clone (a handle on shared state).
///
/// ```
/// use coopcache::Cache;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// let cache: Cache<u64, String> = Cache::builder()
///     .memory_limit(1 << 20)
///     .cache_duration(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// let computed = AtomicU32::new(0);
/// std::thread::scope(|s| {
///     for _ in 0..8 {
///         s.spawn(|| {
///             let v = cache.get_or_compute(42, || {
///                 computed.fetch_add(1, Ordering::SeqCst);
///                 "the answer".to_string()
///             });
///             assert_eq!(v, "the answer");
///         });
///     }
/// });
/// assert_eq!(computed.load(Ordering::SeqCst), 1);
/// assert_eq!(cache.stats().computations, 1);
/// ```
pub struct Cache<K, V> {
    pub(crate) local: Arc<FlightCache<K, V>>,
    /// The shared tier, when the cache has one.
    #[cfg(feature = "shared")]
    pub(crate) remote: Option<Arc<crate::remote::Remote<V>>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            local: self.local.clone(),
            #[cfg(feature = "shared")]
            remote: self.remote.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("name", &self.name()).field("entries", &self.len()).finish()
    }
}

/// A builder whose entries are weighed by [`Weigh`] (the default).
#[derive(Debug)]
pub struct ByWeigh;

/// A builder whose entries are weighed by the closure given to [`CacheBuilder::weigher`].
#[derive(Debug)]
pub struct ByWeigher;

/// Configures a [`Cache`]; every setting has the default the README's "Options" table lists.
///
/// ```
/// use coopcache::{Cache, WhenFull};
/// use std::time::Duration;
///
/// let cache: Cache<String, Vec<u8>> = Cache::builder()
///     .name("thumbnails")
///     .memory_limit(64 << 20) // bytes of keys and values, heap included
///     .cache_duration(Duration::from_secs(600))
///     .when_full(WhenFull::Evict)
///     .max_concurrency(8)
///     .build()
///     .unwrap();
/// cache.get_or_compute("a.png".to_string(), || vec![0; 1024]);
/// assert!(cache.stats().bytes_used > 1024, "the default weight counts the heap");
/// ```
pub struct CacheBuilder<K, V, W = ByWeigh> {
    name: String,
    settings: Settings,
    weigher: Option<Weigher<K, V>>,
    clock: Clock,
    listener: Option<Listener>,
    #[cfg(feature = "shared")]
    pub(crate) shared: Option<(crate::shared::SharedMode, Option<crate::remote::SharedCodec<V>>)>,
    _weighed: PhantomData<W>,
}

impl<K, V, W> CacheBuilder<K, V, W>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The name used in logs, events and errors (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Bytes the cache may hold (default 50 MiB): a number of bytes, or
    /// `MemoryLimit::Fraction(f)` of the machine's memory.
    pub fn memory_limit(mut self, limit: impl Into<MemoryLimit>) -> Self {
        self.settings.memory_limit = limit.into();
        self
    }

    /// Idle time after the last read or write of an entry until it is deleted (default 300 s).
    pub fn cache_duration(mut self, d: Duration) -> Self {
        self.settings.cache_duration = d;
        self
    }

    /// What a full cache does (default [`WhenFull::Reject`]).
    pub fn when_full(mut self, w: WhenFull) -> Self {
        self.settings.when_full = w;
        self
    }

    /// At most `n` computations at once (default: no limit).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.settings.max_concurrency = Some(n);
        self
    }

    /// Refresh ahead (Caffeine's `refreshAfterWrite`; default: never): once a value is older
    /// than `d` since it was computed, the next hit starts one recomputation of its key, and
    /// the new value replaces it when done; every other hit meanwhile gets the stored value at
    /// once. Idle expiry is unchanged: an entry nobody reads still goes after
    /// `cache_duration`. Age is read from the cache's [`Clock`] on the hit, so the refresh may
    /// start up to one clock tick (a few ms) late.
    ///
    /// In the Rust forms the computation borrows from the caller, so it cannot outlive the
    /// call: the caller whose hit starts the refresh runs it and returns the new value (or the
    /// old one, if the refresh fails and [`CacheBuilder::serve_stale_on_error`] holds); the
    /// others are not held up. Bindings run it detached ([`Cache::hit_refresh_with`]).
    ///
    /// ```
    /// use coopcache::{Cache, Clock};
    /// use std::time::Duration;
    ///
    /// let clock = Clock::manual();
    /// let cache: Cache<&str, u32> =
    ///     Cache::builder().clock(clock.clone()).refresh_after(Duration::from_secs(60)).build().unwrap();
    /// assert_eq!(cache.get_or_compute("rate", || 1), 1);
    /// clock.advance(Duration::from_secs(61));
    /// assert_eq!(cache.get_or_compute("rate", || 2), 2, "this hit refreshed it");
    /// assert_eq!(cache.get(&"rate"), Some(2));
    /// assert_eq!(cache.stats().refreshes_succeeded, 1);
    /// ```
    pub fn refresh_after(mut self, d: Duration) -> Self {
        self.settings.refresh_after = Some(d);
        self
    }

    /// Whether a refresh that fails keeps the value it was to replace (default `true`, as in
    /// Caffeine; lru-cache's `allowStaleOnFetchRejection`). `false` removes it, so the next
    /// call computes in the foreground and sees the error. The failure is counted
    /// (`refreshes_failed`) and reported ([`crate::Event::RefreshFailed`]) either way.
    pub fn serve_stale_on_error(mut self, keep: bool) -> Self {
        self.settings.serve_stale_on_error = keep;
        self
    }

    /// Probabilistic early refresh (XFetch) with this `beta` (> 0; 1.0 is usual): each value
    /// computed here falls due somewhat before its `refresh_after`, by a random amount that
    /// grows with how long it took to compute (see [`Settings::early_refresh`]), so the
    /// processes of a fleet, and the keys computed together, do not all fall due at once.
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.settings.early_refresh = Some(beta);
        self
    }

    /// All settings at once.
    pub fn settings(mut self, s: Settings) -> Self {
        self.settings = s;
        self
    }

    /// How many bytes an entry's key and value take (default: [`Weigh::weight`] of each, heap
    /// included; a weigher lifts the need for key and value types to implement [`Weigh`]). A
    /// fixed per-entry overhead ([`crate::ENTRY_OVERHEAD`]) is added to the answer.
    pub fn weigher(self, f: impl Fn(&K, &V) -> u64 + Send + Sync + 'static) -> CacheBuilder<K, V, ByWeigher> {
        CacheBuilder {
            name: self.name,
            settings: self.settings,
            weigher: Some(Box::new(f)),
            clock: self.clock,
            listener: self.listener,
            #[cfg(feature = "shared")]
            shared: self.shared,
            _weighed: PhantomData,
        }
    }

    /// The clock for idle expiry (default: the system's monotonic clock).
    pub fn clock(mut self, c: Clock) -> Self {
        self.clock = c;
        self
    }

    /// A function told about full and eviction events.
    pub fn listener(mut self, l: impl Fn(&crate::stats::Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(l));
        self
    }

    fn build_with(self, weigher: Weigher<K, V>) -> Result<Cache<K, V>, ConfigError> {
        let local = FlightCache::new(self.name.into(), self.settings, weigher, self.clock, self.listener)?;
        Ok(Cache {
            #[cfg(feature = "shared")]
            remote: match self.shared {
                Some((mode, codec)) => Some(crate::remote::attach(&local, mode, codec)?),
                None => None,
            },
            local,
        })
    }
}

impl<K, V> CacheBuilder<K, V, ByWeigh>
where
    K: Hash + Eq + Clone + Send + Sync + Weigh + 'static,
    V: Clone + Send + Sync + Weigh + 'static,
{
    /// The cache, or the first invalid setting. Entries weigh their key's and value's
    /// [`Weigh::weight`] (set a [`CacheBuilder::weigher`] for types without it).
    pub fn build(self) -> Result<Cache<K, V>, ConfigError> {
        self.build_with(Box::new(|k: &K, v: &V| (k.weight() + v.weight()) as u64))
    }
}

impl<K, V> CacheBuilder<K, V, ByWeigher>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The cache, or the first invalid setting.
    pub fn build(mut self) -> Result<Cache<K, V>, ConfigError> {
        let weigher = self.weigher.take().expect("a weigher was set");
        self.build_with(weigher)
    }
}

#[cfg(feature = "shared")]
impl<V: Clone + Send + Sync + 'static, W> CacheBuilder<crate::keys::Key, V, W> {
    /// Adds the shared tier on Redis: values are computed once across every process that uses
    /// the same Redis and cache name, and read by processes that start later.
    #[cfg(feature = "redis")]
    pub fn shared(
        mut self,
        settings: crate::shared::SharedSettings,
        codec: impl crate::remote::Codec<V>,
    ) -> Self {
        self.shared = Some((crate::shared::SharedMode::Redis(settings), Some(Arc::new(codec))));
        self
    }

    /// Adds a shared tier in this process's memory: every cache of this name in the process
    /// computes a key once for all (values cross as bytes, as with Redis). It is what Node's
    /// worker_threads use; in Rust, sharing one [`Cache`] is simpler.
    pub fn shared_in_process(mut self, codec: impl crate::remote::Codec<V>) -> Self {
        self.shared = Some((crate::shared::SharedMode::Process, Some(Arc::new(codec))));
        self
    }
}

impl From<u64> for MemoryLimit {
    fn from(bytes: u64) -> Self {
        MemoryLimit::Bytes(bytes)
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder with the default settings.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder {
            name: "default".into(),
            settings: Settings::default(),
            weigher: None,
            clock: Clock::system(),
            listener: None,
            #[cfg(feature = "shared")]
            shared: None,
            _weighed: PhantomData,
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.local.store.name
    }

    /// The shared tier, if the cache has one.
    #[cfg(feature = "shared")]
    pub fn shared(&self) -> Option<&crate::shared::SharedTier> {
        self.remote.as_ref().map(|r| r.tier())
    }

    /// The hit path alone, for bindings: `f` reads a fresh value in place (no clone) while the
    /// entry's shard is read-locked, so it must be quick and must not call into the cache. A hit
    /// counts and resets the idle clock; a miss counts nothing (the caller goes on to
    /// [`Cache::begin`], which counts it). A value due for refresh (`refresh_after`) is
    /// returned as it is: a binding that refreshes ahead uses [`Cache::hit_refresh_with`].
    ///
    /// ```
    /// use coopcache::Cache;
    ///
    /// let cache: Cache<u32, String> = Cache::builder().build().unwrap();
    /// cache.get_or_compute(1, || "one".to_string());
    /// assert_eq!(cache.hit_with(&1, |v| v.len()), Some(3));
    /// assert_eq!(cache.hit_with(&2, |v| v.len()), None);
    /// assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
    /// ```
    ///
    /// The key may be any form `K` borrows as: a `Cache<Key, V>` is searched with the bytes of a
    /// [`crate::KeyWriter`], so a hit allocates nothing.
    ///
    /// ```
    /// use coopcache::{Cache, Key, KeyWriter};
    ///
    /// let cache: Cache<Key, u32> = Cache::builder().build().unwrap();
    /// cache.get_or_compute(Key::from(("a rather long key name", 42)), || 7);
    /// let mut w = KeyWriter::new();
    /// w.list(2).str("a rather long key name").int(42);
    /// assert_eq!(cache.hit_with(w.as_bytes(), |v| *v), Some(7));
    /// ```
    #[inline]
    pub fn hit_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let store = &self.local.store;
        store.lookup_with(store.hash(key), key, f)
    }

    /// The flight protocol, for bindings: a fresh value, the lease to compute it, or a waiter
    /// on the caller who is computing it. Fails only with [`Error::Recursion`]. The caller is
    /// taken to block its thread while it waits, and the tags of its value to be unknown (any
    /// `invalidate_tag` during the computation keeps it from being stored); see
    /// [`Cache::begin_with`]. A lease taken here counts in [`crate::Stats::computations`] at
    /// once (its holder computes, as far as the cache can tell); [`Cache::call`] counts only
    /// the computations that run.
    pub fn begin<Q>(&self, key: &Q) -> Result<Begin<K, V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        counted(self.local.begin(key, None, Caller::Blocking))
    }

    /// Like [`Cache::begin`], declaring the tags the value will be stored with (only an
    /// `invalidate_tag` of one of them then keeps it from being stored) and how the caller
    /// waits (which computations count as its own for recursion checks: see [`Caller`]).
    pub fn begin_with<Q>(&self, key: &Q, tags: &[&str], caller: Caller) -> Result<Begin<K, V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        counted(self.local.begin(key, Some(tags), caller))
    }

    /// The stored value, without computing; counts as activity (resets the idle clock). The key
    /// may be any form `K` borrows as (the bytes of a [`crate::KeyWriter`] for `Cache<Key, V>`).
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.local.get(key)
    }

    /// Stores `value` for `key` now, without computing (it counts as the key's latest write: a
    /// computation of the key running now still reaches its waiters but is not stored). False
    /// if it did not fit. A shared tier is not told; use the `get_or_compute` family for values
    /// every process should see.
    ///
    /// ```
    /// use coopcache::Cache;
    ///
    /// let cache: Cache<String, u32> = Cache::builder().build().unwrap();
    /// assert!(cache.insert("a".to_string(), 1));
    /// assert_eq!(cache.get("a"), Some(1));
    /// assert_eq!(cache.remove("a"), Some(1));
    /// assert_eq!(cache.get("a"), None);
    /// ```
    pub fn insert(&self, key: K, value: V) -> bool {
        self.local.insert(key, value, &[])
    }

    /// Removes the key's entry and returns its value; like [`Cache::invalidate`] otherwise.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let v = self.local.remove(key);
        #[cfg(feature = "shared")]
        if let Some(r) = &self.remote {
            r.invalidate(&key.to_owned());
        }
        v
    }

    /// The value for `key`, computing it with `f` if nobody has: one computation however many
    /// threads ask at once. A panic in `f` reaches every caller waiting (as a panic here), and
    /// nothing is stored. This form cannot return an error: a caller that was waiting for
    /// another caller's computation that failed (an error of a fallible form, a panic, an error
    /// in another process) computes with its own `f` instead; a recursion panics with the
    /// error's message.
    #[inline]
    pub fn get_or_compute(&self, key: K, f: impl FnOnce() -> V) -> V {
        match self.find(&key) {
            Found::Hit(v) => v,
            found => self.get_or_compute_miss(key, found, f),
        }
    }

    #[cold]
    #[inline(never)]
    fn get_or_compute_miss(&self, key: K, found: Found<V>, f: impl FnOnce() -> V) -> V {
        let opts = CallOptions::default();
        let f = || Ok::<_, std::convert::Infallible>(Computed::Store(f()));
        match self.compute_found(key, found, &opts, true, f) {
            Ok(v) => v,
            Err(e) => panic!("coopcache: {e}"),
        }
    }

    /// Like [`Cache::get_or_compute`] for a fallible computation: its error reaches this caller
    /// and every waiter (as [`Error::Computation`], or as it is if it is a `coopcache` error
    /// from a nested call) and is not stored.
    pub fn try_get_or_compute<E>(&self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, Error>
    where
        E: Into<BoxError>,
    {
        self.compute(key, &CallOptions::default(), || f().map(Computed::Store))
    }

    /// The general sync form: options (timeout, tags), and a computation that may fail or
    /// return [`Computed::NoCache`] (a value handed to the callers, not stored).
    pub fn compute<E>(
        &self,
        key: K,
        opts: &CallOptions,
        f: impl FnOnce() -> Result<Computed<V>, E>,
    ) -> Result<V, Error>
    where
        E: Into<BoxError>,
    {
        let found = self.find(&key);
        self.compute_found(key, found, opts, false, f)
    }

    /// The sync forms after the hit path: a hit, a value due for refresh (this caller
    /// refreshes it), or a miss.
    fn compute_found<E>(
        &self,
        key: K,
        found: Found<V>,
        opts: &CallOptions,
        infallible: bool,
        f: impl FnOnce() -> Result<Computed<V>, E>,
    ) -> Result<V, Error>
    where
        E: Into<BoxError>,
    {
        let caller = Caller::Blocking;
        let call = match found {
            Found::Hit(v) => return Ok(v),
            Found::Due(due) => match Call::refreshing(self, key, opts, caller, due) {
                Ok(call) => call,
                Err(stale) => return Ok(stale),
            },
            Found::Miss => Call::new(self, key, opts, caller, infallible, self.has_codec()),
        };
        let mut host = RustHost { cache: self, f: Some(f), panic: None };
        let Ok(r) = call.block(&mut host, opts.timeout);
        if let Some(p) = host.panic {
            resume_unwind(p);
        }
        r
    }

    /// The async form of [`Cache::get_or_compute`]: waiting never blocks a thread, under any
    /// runtime. If this caller's future is dropped while it computes, a waiter takes over. The
    /// future is `Send` when the key, value and computation are.
    pub fn get_or_compute_async<F>(&self, key: K, f: F) -> GetOrCompute<'_, K, V, F>
    where
        F: Future<Output = V>,
    {
        GetOrCompute::new(self, key, f)
    }

    /// The async form of [`Cache::try_get_or_compute`].
    pub fn try_get_or_compute_async<F, E>(&self, key: K, f: F) -> Compute<'_, K, V, F>
    where
        F: Future<Output = Result<V, E>>,
        E: Into<BoxError>,
    {
        Compute::try_get(self, key, f)
    }

    /// The async form of [`Cache::compute`].
    pub fn compute_async<'a, F, E>(&'a self, key: K, opts: &'a CallOptions, f: F) -> Compute<'a, K, V, F>
    where
        F: Future<Output = Result<Computed<V>, E>>,
        E: Into<BoxError>,
    {
        Compute::with_options(self, key, opts, f)
    }

    /// Removes the key's entry; a computation of it running now still reaches its waiters but
    /// is not stored, and a call made after this returns computes anew. True if an entry was
    /// removed.
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // Locally first: this process hears its own message back from Redis, and that echo
        // must not be the one that finds the entry.
        let removed = self.local.invalidate(key);
        #[cfg(feature = "shared")]
        if let Some(r) = &self.remote {
            r.invalidate(&key.to_owned());
        }
        removed
    }

    /// Removes every entry stored with `tag`; returns how many. Computations running now whose
    /// value may carry the tag still reach their waiters but are not stored.
    pub fn invalidate_tag(&self, tag: &str) -> u64 {
        let removed = self.local.invalidate_tag(tag);
        #[cfg(feature = "shared")]
        if let Some(r) = &self.remote {
            r.invalidate_tag(tag);
        }
        removed
    }

    /// Removes every entry; computations running now are not stored.
    pub fn clear(&self) {
        self.local.clear();
        #[cfg(feature = "shared")]
        if let Some(r) = &self.remote {
            r.clear();
        }
    }

    /// The counters, entries, bytes and computations in flight.
    pub fn stats(&self) -> Stats {
        self.local.stats()
    }

    /// Entries stored now.
    pub fn len(&self) -> usize {
        self.local.store.len()
    }

    /// True if nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.local.settings()
    }

    /// Applies new settings in place; entries are kept, a lower limit or a shorter duration
    /// takes effect at once, and a longer duration never brings back an entry that had expired.
    pub fn reconfigure(&self, settings: Settings) -> Result<(), ConfigError> {
        #[cfg(feature = "shared")]
        if let Some(r) = &self.remote {
            r.tier().set_idle(settings.cache_duration);
        }
        self.local.reconfigure(settings)
    }

    /// Reclaims idle entries now, as the background sweeper does on its rounds (useful with a
    /// manual [`Clock`]).
    pub fn sweep(&self) {
        self.local.store.sweep(false);
    }
}

/// What a Rust computation's result reports to its lead; a panic is kept to resume once every
/// caller has heard of it.
/// The Rust sync forms' side of a blocking call: runs `f` once (a panic is the computation's
/// error for every caller, and is resumed in this one once the call ended), and (de)serializes
/// with the cache's codec.
struct RustHost<'a, K, V, F> {
    cache: &'a Cache<K, V>,
    f: Option<F>,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

impl<K, V, F, E> Host<V> for RustHost<'_, K, V, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Result<Computed<V>, E>,
    E: Into<BoxError>,
{
    type Stop = std::convert::Infallible;

    fn wait(&mut self, ready: &Ready, deadline: Option<Instant>) -> Result<bool, Self::Stop> {
        Ok(ready.wait_deadline(deadline).is_some())
    }

    fn compute(&mut self) -> Outcome<V> {
        let f = self.f.take().expect("a caller computes once");
        outcome(catch_unwind(AssertUnwindSafe(f)), std::any::type_name::<E>(), &mut self.panic)
    }

    fn decode(&mut self, bytes: &[u8]) -> Result<(V, u64), String> {
        self.cache.decode(bytes)
    }

    fn encode(&mut self, value: &V) -> Result<Vec<u8>, (String, String)> {
        self.cache.encode(value)
    }
}

pub(crate) fn outcome<V, E: Into<BoxError>>(
    result: std::thread::Result<Result<Computed<V>, E>>,
    error_type: &str,
    panic: &mut Option<Box<dyn std::any::Any + Send>>,
) -> Outcome<V> {
    match result {
        Ok(Ok(Computed::Store(value))) => Outcome::Store { value, weight: 0 },
        Ok(Ok(Computed::NoCache(v))) => Outcome::NoCache(v),
        Ok(Err(e)) => Outcome::failed(Error::computation(e), error_type),
        Err(p) => {
            let e = Error::from_panic(&*p);
            *panic = Some(p);
            Outcome::failed(e, "panic")
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The hit path of the Rust forms: a fresh value, one this caller is to refresh, or none.
    /// Inlined into its callers, so that a hit neither calls a function nor returns a `Found`
    /// through memory.
    #[inline(always)]
    fn find(&self, key: &K) -> Found<V> {
        let store = &self.local.store;
        match store.lookup_due(store.hash(key), key, V::clone) {
            Some((v, Due::No | Due::Stale)) => Found::Hit(v),
            Some((v, Due::Claimed(at))) => Found::Due((v, at)),
            None => Found::Miss,
        }
    }

    /// Whether the Rust forms can serialize values for a shared tier (with its codec).
    fn has_codec(&self) -> bool {
        #[cfg(feature = "shared")]
        return self.remote.as_ref().is_some_and(|r| r.has_codec());
        #[cfg(not(feature = "shared"))]
        false
    }

    #[cfg_attr(not(feature = "shared"), allow(unused_variables))]
    fn decode(&self, bytes: &[u8]) -> Result<(V, u64), String> {
        #[cfg(feature = "shared")]
        if let Some(r) = &self.remote {
            return r.decode(bytes).map(|v| (v, 0));
        }
        Err("no shared tier".to_owned())
    }

    /// A value's bytes for the shared tier, or the codec's error (as the other processes are
    /// told of it).
    #[cfg_attr(not(feature = "shared"), allow(unused_variables))]
    fn encode(&self, value: &V) -> Result<Vec<u8>, (String, String)> {
        #[cfg(feature = "shared")]
        if let Some(r) = &self.remote {
            return r.encode(value).map_err(|e| ("coopcache::SerializeError".to_owned(), e));
        }
        Err(("coopcache::SerializeError".to_owned(), "no shared tier".to_owned()))
    }
}

/// What the Rust forms' hit path found.
enum Found<V> {
    Hit(V),
    /// A value due for refresh since the time given, whose refresh this caller took.
    Due((V, u64)),
    Miss,
}

/// A lease handed out by [`Cache::begin`] counts as a computation when it is taken.
fn counted<K, V>(begun: Result<Begin<K, V>, Error>) -> Result<Begin<K, V>, Error>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    if let Ok(Begin::Lease(lease)) = &begun {
        lease.count_computation();
    }
    begun
}
