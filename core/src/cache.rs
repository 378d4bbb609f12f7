//! The typed cache for Rust users: a builder and the `get_or_compute` family.

use std::future::Future;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::config::{ConfigError, MemoryLimit, Settings, WhenFull};
use crate::error::Error;
use crate::flight::{Begin, Completion, Computing};
use crate::stats::{Listener, Stats};
use crate::store::{Inner, Weigher};

/// What a computation returns: a value to store, or one to hand out without storing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Computed<V> {
    /// Store the value and hand it to every waiter.
    Store(V),
    /// Hand the value to every waiter; store nothing, so the next call computes again.
    NoCache(V),
}

impl<V> From<V> for Computed<V> {
    fn from(v: V) -> Self {
        Computed::Store(v)
    }
}

/// Marks a value as not to be stored (SPEC: `nocache(value)`).
///
/// ```
/// use coopcache::{Cache, CallOptions, nocache};
///
/// let cache: Cache<&str, u32> = Cache::builder().build().unwrap();
/// let v = cache.compute("k", &CallOptions::default(), || Ok::<_, std::convert::Infallible>(nocache(7)));
/// assert_eq!(v.unwrap(), 7);
/// assert_eq!(cache.get(&"k"), None);
/// ```
pub fn nocache<V>(value: V) -> Computed<V> {
    Computed::NoCache(value)
}

/// Per-call options of every `get_or_compute` form.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// After this long the caller gets [`Error::Timeout`]; the computation goes on for the
    /// others. A caller that computes in its own thread (the sync forms) cannot be interrupted:
    /// its timeout bounds only the wait for a slot or for another caller's computation. An async
    /// leader that times out drops its computation, and a waiter takes over.
    pub timeout: Option<Duration>,
    /// Tags stored with the value, for [`Cache::invalidate_tag`].
    pub tags: Vec<String>,
}

impl CallOptions {
    fn tags(&self) -> Vec<&str> {
        self.tags.iter().map(String::as_str).collect()
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
pub struct Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn clone(&self) -> Self {
        Cache { inner: self.inner.clone() }
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

/// Configures a [`Cache`]; every setting has the SPEC's default.
pub struct CacheBuilder<K, V> {
    name: String,
    settings: Settings,
    weigher: Option<Weigher<K, V>>,
    clock: Clock,
    listener: Option<Listener>,
    #[cfg(feature = "shared")]
    pub(crate) shared: Option<(crate::shared::SharedMode, Option<crate::remote::SharedCodec<V>>)>,
}

impl<K, V> CacheBuilder<K, V>
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

    /// All settings at once.
    pub fn settings(mut self, s: Settings) -> Self {
        self.settings = s;
        self
    }

    /// How many bytes an entry's key and value take (default: their `size_of`). A fixed
    /// per-entry overhead ([`crate::ENTRY_OVERHEAD`]) is added to the answer.
    pub fn weigher(mut self, f: impl Fn(&K, &V) -> u64 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Box::new(f));
        self
    }

    /// The clock for idle expiry (default: the system's monotonic clock).
    pub fn clock(mut self, c: Clock) -> Self {
        self.clock = c;
        self
    }

    /// A function told about full and eviction events.
    pub fn listener(mut self, l: impl Fn(&crate::Event) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(l));
        self
    }

    /// The cache, or the first invalid setting.
    pub fn build(self) -> Result<Cache<K, V>, ConfigError> {
        let weigher =
            self.weigher.unwrap_or_else(|| Box::new(|_: &K, _: &V| (size_of::<K>() + size_of::<V>()) as u64));
        let inner = Inner::new(self.name.into(), self.settings, weigher, self.clock, self.listener)?;
        #[cfg(feature = "shared")]
        if let Some((settings, codec)) = self.shared {
            crate::remote::attach(&inner, settings, codec)?;
        }
        Ok(Cache { inner })
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
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The hit path alone, for bindings: `f` reads a fresh value in place (no clone) while the
    /// entry's shard is read-locked, so it must be quick and must not call into the cache. A hit
    /// counts and resets the idle clock; a miss counts nothing (the caller goes on to
    /// [`Cache::begin`], which counts it).
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
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.lookup_with(self.inner.hash(key), key, f)
    }

    /// The flight protocol, for bindings: a fresh value, the lease to compute it, or a waiter
    /// on the caller who is computing it. Fails only with [`Error::Recursion`].
    pub fn begin(&self, key: &K) -> Result<Begin<K, V>, Error> {
        self.inner.begin(key)
    }

    /// The stored value, without computing; counts as activity (resets the idle clock). The key
    /// may be any form `K` borrows as (the bytes of a [`crate::KeyWriter`] for `Cache<Key, V>`).
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.inner.hash(key);
        let v = self.inner.lookup_with(hash, key, V::clone);
        if v.is_none() {
            self.inner.count_miss(hash);
        }
        v
    }

    /// The value for `key`, computing it with `f` if nobody has: one computation however many
    /// threads ask at once. A panic in `f` reaches every caller waiting (as a panic here), and
    /// nothing is stored. This form cannot return an error: a caller that was waiting for
    /// another caller's fallible computation ([`Cache::try_get_or_compute`]) that failed computes
    /// with its own `f` instead, and an error from another process (shared mode) or a
    /// recursion panics with the error's message.
    #[inline]
    pub fn get_or_compute(&self, key: K, f: impl FnOnce() -> V) -> V {
        let hash = self.inner.hash(&key);
        if let Some(v) = self.inner.lookup(hash, &key) {
            return v;
        }
        self.get_or_compute_miss(key, f)
    }

    #[cold]
    #[inline(never)]
    fn get_or_compute_miss(&self, key: K, f: impl FnOnce() -> V) -> V {
        let opts = CallOptions::default();
        match self.compute_sync(&key, &opts, true, || Ok::<_, std::convert::Infallible>(Computed::Store(f())))
        {
            Ok(v) => v,
            Err(e) => panic!("coopcache: {e}"),
        }
    }

    /// Like [`Cache::get_or_compute`] for a fallible computation: its error reaches this caller
    /// and every waiter (as [`Error::Computation`]) and is not stored.
    pub fn try_get_or_compute<E>(&self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, Error>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.compute(key, &CallOptions::default(), || f().map(Computed::Store))
    }

    /// The general sync form: options (timeout, tags), and a computation that may fail or
    /// return [`nocache`].
    pub fn compute<E>(
        &self,
        key: K,
        opts: &CallOptions,
        f: impl FnOnce() -> Result<Computed<V>, E>,
    ) -> Result<V, Error>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.compute_sync(&key, opts, false, f)
    }

    fn compute_sync<E>(
        &self,
        key: &K,
        opts: &CallOptions,
        infallible: bool,
        f: impl FnOnce() -> Result<Computed<V>, E>,
    ) -> Result<V, Error>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let hash = self.inner.hash(key);
        if let Some(v) = self.inner.lookup(hash, key) {
            return Ok(v);
        }
        let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
        let timeout = || Error::Timeout(opts.timeout.unwrap_or_default());
        loop {
            match self.inner.begin_locked(key, hash)? {
                Begin::Hit(v) => return Ok(v),
                Begin::Lease(lease) => {
                    let _permit = match self.inner.slots.limited() {
                        false => None,
                        true => match lease.slot().wait_deadline(deadline) {
                            Some(p) => Some(p),
                            None => return Err(timeout()),
                        },
                    };
                    #[cfg(feature = "shared")]
                    let (lease, remote) = match self.ask_remote(key).map(|p| p.wait_deadline(deadline)) {
                        None => (lease, None),
                        Some(None) => return Err(timeout()),
                        Some(Some(answer)) => match self.answered(lease, answer) {
                            crate::remote::Ask::Done(r) => return r,
                            crate::remote::Ask::Compute(lease, remote) => (lease, remote),
                        },
                    };
                    let result = {
                        let _computing = lease.enter();
                        catch_unwind(AssertUnwindSafe(f))
                    };
                    #[cfg(feature = "shared")]
                    if let Some(remote) = &remote {
                        self.publish_result(remote, &result, &opts.tags)
                            .wait_timeout(crate::remote::PUBLISH_WAIT);
                    }
                    return match result {
                        Ok(Ok(Computed::Store(v))) => Ok(lease.store_with(v, 0, &opts.tags())),
                        Ok(Ok(Computed::NoCache(v))) => Ok(lease.nocache(v)),
                        Ok(Err(e)) => {
                            let e = Error::Computation(Arc::new(e));
                            lease.fail(e.clone());
                            Err(e)
                        }
                        Err(panic) => {
                            lease.fail(Error::from_panic(&*panic));
                            resume_unwind(panic)
                        }
                    };
                }
                Begin::Wait(w) => match w.pending().wait_deadline(deadline) {
                    None => return Err(timeout()),
                    Some(Completion::Value(v)) => return Ok(v),
                    Some(Completion::Failed(Error::Computation(_))) if infallible => continue,
                    Some(Completion::Failed(e)) => return Err(e),
                    Some(Completion::HandedOver) => continue,
                },
            }
        }
    }

    /// The async form of [`Cache::get_or_compute`]: waiting never blocks a thread, under any
    /// runtime. If this caller's future is dropped while it computes, a waiter takes over.
    ///
    /// To `tokio::spawn` the call, use keys and values without borrowed parts (`String`,
    /// [`Key`](crate::Key), integers, `Arc<..>` of owned data): with a type such as
    /// `(&'static str, u32)`, rustc's check of the future's `Send` fails ("implementation of
    /// `Send` is not general enough"), a known limit of the compiler, not of the cache.
    pub async fn get_or_compute_async(&self, key: K, f: impl Future<Output = V>) -> V {
        let opts = CallOptions::default();
        let fut = async { Ok::<_, std::convert::Infallible>(Computed::Store(f.await)) };
        match self.compute_async_inner(&key, &opts, true, fut).await {
            Ok(v) => v,
            Err(e) => panic!("coopcache: {e}"),
        }
    }

    /// The async form of [`Cache::try_get_or_compute`].
    pub async fn try_get_or_compute_async<E>(
        &self,
        key: K,
        f: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Error>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.compute_async(key, &CallOptions::default(), async { f.await.map(Computed::Store) }).await
    }

    /// The async form of [`Cache::compute`].
    pub async fn compute_async<E>(
        &self,
        key: K,
        opts: &CallOptions,
        f: impl Future<Output = Result<Computed<V>, E>>,
    ) -> Result<V, Error>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.compute_async_inner(&key, opts, false, f).await
    }

    async fn compute_async_inner<E>(
        &self,
        key: &K,
        opts: &CallOptions,
        infallible: bool,
        f: impl Future<Output = Result<Computed<V>, E>>,
    ) -> Result<V, Error>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let hash = self.inner.hash(key);
        if let Some(v) = self.inner.lookup(hash, key) {
            return Ok(v);
        }
        let mut timer = opts.timeout.map(futures_timer::Delay::new);
        let timeout = || Error::Timeout(opts.timeout.unwrap_or_default());
        loop {
            match self.inner.begin_locked(key, hash)? {
                Begin::Hit(v) => return Ok(v),
                Begin::Lease(lease) => {
                    let _permit = match self.inner.slots.limited() {
                        false => None,
                        true => match until(lease.slot(), timer.as_mut()).await {
                            Some(p) => Some(p),
                            None => return Err(timeout()),
                        },
                    };
                    #[cfg(feature = "shared")]
                    let (lease, remote) = match self.ask_remote(key) {
                        None => (lease, None),
                        Some(p) => match until(p, timer.as_mut()).await {
                            None => return Err(timeout()),
                            Some(answer) => match self.answered(lease, answer) {
                                crate::remote::Ask::Done(r) => return r,
                                crate::remote::Ask::Compute(lease, remote) => (lease, remote),
                            },
                        },
                    };
                    let mut f = pin!(f);
                    let id = lease.id();
                    let run = std::future::poll_fn(|cx| {
                        let _computing = Computing::enter(id);
                        match catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(cx))) {
                            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
                            Ok(Poll::Pending) => Poll::Pending,
                            Err(panic) => Poll::Ready(Err(panic)),
                        }
                    });
                    let Some(result) = until(run, timer.as_mut()).await else {
                        return Err(timeout());
                    };
                    #[cfg(feature = "shared")]
                    if let Some(remote) = &remote {
                        let written = self.publish_result(remote, &result, &opts.tags);
                        let mut wait = futures_timer::Delay::new(crate::remote::PUBLISH_WAIT);
                        until(written, Some(&mut wait)).await;
                    }
                    return match result {
                        Ok(Ok(Computed::Store(v))) => Ok(lease.store_with(v, 0, &opts.tags())),
                        Ok(Ok(Computed::NoCache(v))) => Ok(lease.nocache(v)),
                        Ok(Err(e)) => {
                            let e = Error::Computation(Arc::new(e));
                            lease.fail(e.clone());
                            Err(e)
                        }
                        Err(panic) => {
                            lease.fail(Error::from_panic(&*panic));
                            resume_unwind(panic)
                        }
                    };
                }
                Begin::Wait(w) => match until(w, timer.as_mut()).await {
                    None => return Err(timeout()),
                    Some(Completion::Value(v)) => return Ok(v),
                    Some(Completion::Failed(Error::Computation(_))) if infallible => continue,
                    Some(Completion::Failed(e)) => return Err(e),
                    Some(Completion::HandedOver) => continue,
                },
            }
        }
    }

    /// Removes the key's entry; a computation of it running now still reaches its waiters but
    /// is not stored. True if an entry was removed.
    pub fn invalidate(&self, key: &K) -> bool {
        // Locally first: this process hears its own message back from Redis, and that echo
        // must not be the one that finds the entry.
        let removed = self.inner.invalidate(key);
        #[cfg(feature = "shared")]
        self.invalidate_remote(key);
        removed
    }

    /// Removes every entry stored with `tag`; returns how many.
    pub fn invalidate_tag(&self, tag: &str) -> u64 {
        let removed = self.inner.invalidate_tag(tag);
        #[cfg(feature = "shared")]
        self.invalidate_tag_remote(tag);
        removed
    }

    /// Removes every entry; computations running now are not stored.
    pub fn clear(&self) {
        self.inner.clear();
        #[cfg(feature = "shared")]
        self.clear_remote();
    }

    /// The counters, entries, bytes and computations in flight.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Entries stored now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True if nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.inner.settings()
    }

    /// Applies new settings in place; entries are kept, and a lower limit or a shorter
    /// duration takes effect at once.
    pub fn reconfigure(&self, settings: Settings) -> Result<(), ConfigError> {
        self.inner.reconfigure(settings)
    }

    /// Reclaims idle entries now, as the background sweeper does on its rounds (useful with a
    /// manual [`Clock`]).
    pub fn sweep(&self) {
        self.inner.sweep();
    }
}

/// `fut`'s output, or `None` if the timer fires first.
pub(crate) async fn until<F: Future>(fut: F, timer: Option<&mut futures_timer::Delay>) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut timer = timer;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match timer.as_mut().map(|t| std::pin::Pin::new(&mut **t).poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    })
    .await
}
