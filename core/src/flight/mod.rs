//! The flight protocol: `begin(key)` → hit | lease | waiter.
//!
//! A *flight* is one computation of one key. The first caller to miss gets the [`Lease`] and
//! computes; callers who miss while it runs get a [`Waiter`] on the same flight. The lease ends
//! in exactly one of four ways, and every waiter learns which:
//!
//! | lease ends with            | stored?                       | waiters get                  |
//! |----------------------------|-------------------------------|------------------------------|
//! | [`Lease::store`]           | yes, if it fits and the flight was not detached | [`Completion::Value`] |
//! | [`Lease::nocache`]         | no                            | [`Completion::Value`]        |
//! | [`Lease::fail`]            | no                            | [`Completion::Failed`]       |
//! | dropped unfinished         | no                            | [`Completion::HandedOver`]: call `begin` again; one of them leads |
//!
//! The flights of a shard's keys live in the store's shard (its side state), so a value's
//! insertion and its flight's end happen under one lock: a caller arriving at any moment either
//! hits, joins the flight, or starts a new one. Only the flight the table still holds may store:
//! `invalidate`, `invalidate_tag`, `clear` and `insert` *detach* the flights they make stale, so
//! their callers already waiting still get that result, while a caller arriving afterwards
//! starts a new flight (read-your-writes) and the stale result is never stored.
//!
//! User code that runs while a flight ends (a weigher, a listener) cannot strand it: a panic
//! there is caught and reported, and the flight ends anyway.
//!
//! Bindings drive this directly: they run the user's function in their own language and wait
//! in their own way ([`Pending`] offers blocking, future and callback waits). Rust users call
//! the `get_or_compute` family on [`crate::Cache`], built on the same protocol.

mod context;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Weak};

use context::{Ancestors, CacheId, Waiting};
pub use context::{Caller, Computing, ExecutorId, FlightId, Frame, OnExecutor, RunsExecutor};

use crate::clock::Clock;
use crate::concurrency::{Permit, Slots};
use crate::config::{ConfigError, Settings};
use crate::error::Error;
use crate::expiry::Sweep;
use crate::stats::{Counters, Event, Listener, Stats};
use crate::store::{Refresh, Store, Weigher};
use crate::sync::{AtomicU64, Mutex, Ordering::*};
use crate::wait::{Pending, Shared};

static NEXT_FLIGHT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
static NEXT_CACHE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// In a fork's child: see [`crate::after_fork_in_child`].
pub(crate) fn after_fork() {
    context::after_fork();
    crate::expiry::after_fork();
}

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

/// Marks a value as not to be stored (`nocache(value)` in Python and Node too).
///
/// ```
/// use coopcache::{Cache, CallOptions, nocache};
///
/// let cache: Cache<&str, u32> = Cache::builder().build().unwrap();
/// let v = cache.compute("k", &CallOptions::new(), || Ok::<_, std::convert::Infallible>(nocache(7)));
/// assert_eq!(v.unwrap(), 7);
/// assert_eq!(cache.get(&"k"), None);
/// ```
pub fn nocache<V>(value: V) -> Computed<V> {
    Computed::NoCache(value)
}

/// What a waiter learns when the flight ends.
#[derive(Clone, Debug)]
pub enum Completion<V> {
    /// The computed value (stored or not).
    Value(V),
    /// The computation failed; the same error for everyone.
    Failed(Error),
    /// The leader went away without finishing: call `begin` again (one caller becomes the new
    /// leader and computes, the others wait for it).
    HandedOver,
}

/// The outcome of [`crate::Cache::begin`].
///
/// ```
/// use coopcache::{Begin, Cache, Completion};
///
/// let cache: Cache<u32, String> = Cache::builder().build().unwrap();
/// let lease = match cache.begin(&1).unwrap() {
///     Begin::Lease(lease) => lease, // nobody computes key 1: this caller does
///     _ => unreachable!(),
/// };
/// let waiter = match cache.begin(&1).unwrap() {
///     Begin::Wait(w) => w, // a second caller waits for the first
///     _ => unreachable!(),
/// };
/// lease.store("one".to_string());
/// assert!(matches!(waiter.pending().wait(), Completion::Value(v) if v == "one"));
/// assert!(matches!(cache.begin(&1).unwrap(), Begin::Hit(v) if v == "one"));
/// ```
#[must_use = "a lease must be finished, and a waiter waited on"]
pub enum Begin<K, V> {
    /// A fresh stored value.
    Hit(V),
    /// Nobody is computing this key: this caller computes and must finish the lease.
    Lease(Lease<K, V>),
    /// Another caller is computing it: wait for the [`Completion`].
    Wait(Waiter<V>),
}

pub(crate) struct Flight<V> {
    id: FlightId,
    shared: Arc<Shared<Completion<V>>>,
    /// The tags its value will be stored with, declared when it began; `None` if unknown (then
    /// every `invalidate_tag` detaches it).
    tags: Option<Box<[Arc<str>]>>,
    /// The cache's tag-invalidation count when it began.
    tag_epoch: u64,
}

impl<V: Clone + Send + 'static> Flight<V> {
    fn waiter(&self, waiting: Option<Waiting>) -> Waiter<V> {
        Waiter { pending: self.shared.handle(), id: self.id, waiting }
    }

    /// Whether its value may be stored with `tag`.
    fn may_carry(&self, tag: &str) -> bool {
        self.tags.as_ref().is_none_or(|t| t.iter().any(|d| &**d == tag))
    }

    /// Whether its value may be stored with `tags` now: tags it did not declare are fine only
    /// if no tag was invalidated since it began.
    fn may_store_with(&self, tags: &[&str], tag_epoch: u64) -> bool {
        let declared = |t: &str| self.tags.as_ref().is_some_and(|d| d.iter().any(|d| &**d == t));
        tags.iter().all(|t| declared(t)) || self.tag_epoch == tag_epoch
    }
}

/// The flights of one shard's keys: the side state the flight layer keeps in the store.
pub(crate) struct Flights<K, V>(HashMap<K, Arc<Flight<V>>>);

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights(HashMap::new())
    }
}

impl<K: Hash + Eq, V: Clone + Send + 'static> Flights<K, V> {
    /// Ends `flight` if the table still holds it; false if it was detached.
    fn end(&mut self, key: &K, flight: &Arc<Flight<V>>) -> bool {
        let ours = self.0.get(key).is_some_and(|f| Arc::ptr_eq(f, flight));
        if ours {
            self.0.remove(key);
        }
        ours
    }

    fn detach<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.0.remove(key);
    }

    fn detach_tagged(&mut self, tag: &str) {
        self.0.retain(|_, f| !f.may_carry(tag));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A store whose misses go through flights: a cache without a shared tier, the layer the typed
/// [`crate::Cache`] and the in-process shared tier are built on.
pub(crate) struct FlightCache<K, V> {
    pub(crate) store: Store<K, V, Flights<K, V>>,
    pub(crate) slots: Arc<Slots>,
    in_flight: AtomicU64,
    /// Bumped by every `invalidate_tag`.
    tag_epoch: AtomicU64,
    id: CacheId,
    settings: Mutex<Settings>,
}

impl<K, V> FlightCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(
        name: Arc<str>,
        settings: Settings,
        weigher: Weigher<K, V>,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Result<Arc<Self>, ConfigError> {
        let store = Store::new(name, &settings, weigher, clock, listener)?;
        let cache = Arc::new(FlightCache {
            store,
            slots: Slots::new(settings.max_concurrency),
            in_flight: AtomicU64::new(0),
            tag_epoch: AtomicU64::new(0),
            id: NEXT_CACHE.fetch_add(1, Relaxed),
            settings: Mutex::new(settings),
        });
        crate::expiry::register(Arc::downgrade(&cache) as Weak<dyn Sweep>);
        Ok(cache)
    }

    /// Hit, lease or waiter for `key` (see the module docs). `tags` are those the value will be
    /// stored with, if known; `caller` says how the caller waits (for recursion checks).
    pub(crate) fn begin<Q>(
        self: &Arc<Self>,
        key: &Q,
        tags: Option<&[&str]>,
        caller: Caller,
    ) -> Result<Begin<K, V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let hash = self.store.hash(key);
        if let Some(v) = self.store.lookup_with(hash, key, V::clone) {
            return Ok(Begin::Hit(v));
        }
        self.begin_missed(key, hash, tags, caller)
    }

    /// `begin` after the read-locked hit path missed: decides under the shard's write lock.
    pub(crate) fn begin_missed<Q>(
        self: &Arc<Self>,
        key: &Q,
        hash: u64,
        tags: Option<&[&str]>,
        caller: Caller,
    ) -> Result<Begin<K, V>, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let ancestors = context::ancestors(caller);
        let result = {
            let mut shard = self.store.write(hash);
            if let Some(v) = shard.fresh(hash, key) {
                self.store.count_hit();
                return Ok(Begin::Hit(v));
            }
            match shard.side().0.get(key) {
                Some(flight) => self.join(flight, &ancestors, key),
                None => {
                    let flight = Arc::new(Flight {
                        id: NEXT_FLIGHT.fetch_add(1, Relaxed),
                        shared: Shared::new(),
                        tags: tags.map(|t| t.iter().map(|&t| Arc::from(t)).collect()),
                        tag_epoch: self.tag_epoch.load(SeqCst),
                    });
                    let key = key.to_owned();
                    shard.side().0.insert(key.clone(), flight.clone());
                    self.in_flight.fetch_add(1, Relaxed);
                    Ok(Begin::Lease(Lease {
                        cache: self.clone(),
                        key,
                        hash,
                        flight,
                        nested: ancestors.inside(self.id),
                        finished: false,
                        refresh: None,
                        refresh_after: None,
                        started: self.store.computation_start(),
                        abandon: Lease::abandon,
                    }))
                }
            }
        };
        if result.is_ok() {
            self.store.count_miss(hash);
        }
        result
    }

    /// The lease to refresh `key`, whose entry a hit found due since `at` and took the refresh
    /// of ([`crate::store::Due::Claimed`]). `None` if that entry is gone or replaced meanwhile,
    /// or if another flight of the key runs (its value will replace the entry; the entry is
    /// then due again, so a later hit may refresh it). Callers who miss while it runs (the
    /// entry expired or was evicted) join it like any flight.
    pub(crate) fn begin_refresh(
        self: &Arc<Self>,
        key: &K,
        hash: u64,
        at: u64,
        tags: &[&str],
        caller: Caller,
    ) -> Option<Lease<K, V>> {
        let ancestors = context::ancestors(caller);
        let mut shard = self.store.write(hash);
        if !shard.refreshing(hash, key) {
            return None;
        }
        if shard.side().0.contains_key(key) {
            shard.end_refresh(hash, key, at, true);
            return None;
        }
        let flight = Arc::new(Flight {
            id: NEXT_FLIGHT.fetch_add(1, Relaxed),
            shared: Shared::new(),
            tags: Some(tags.iter().map(|&t| Arc::from(t)).collect()),
            tag_epoch: self.tag_epoch.load(SeqCst),
        });
        shard.side().0.insert(key.clone(), flight.clone());
        drop(shard);
        self.in_flight.fetch_add(1, Relaxed);
        Counters::add(&self.store.counters.refreshes_started, 1);
        Some(Lease {
            cache: self.clone(),
            key: key.clone(),
            hash,
            flight,
            nested: ancestors.inside(self.id),
            finished: false,
            refresh: Some(at),
            refresh_after: None,
            started: self.store.computation_start(),
            abandon: Lease::abandon,
        })
    }

    /// A waiter on `flight`, unless waiting would wait for oneself: the caller's own
    /// computation, or one waiting (through others) for it.
    fn join<Q>(&self, flight: &Flight<V>, ancestors: &Ancestors, key: &Q) -> Result<Begin<K, V>, Error>
    where
        Q: ToOwned<Owned = K> + ?Sized,
    {
        let waiting = match ancestors.is_empty() {
            true => None,
            false => match context::wait_for(ancestors, flight.id) {
                Some(w) => Some(w),
                None if ancestors.blocks_executor() => return Err(self.blocks_executor(&key.to_owned())),
                None => return Err(self.recursion(&key.to_owned())),
            },
        };
        Counters::add(&self.store.counters.coalesced, 1);
        Ok(Begin::Wait(flight.waiter(waiting)))
    }

    fn blocks_executor(&self, key: &K) -> Error {
        Error::BlocksExecutor { cache: self.store.name.clone(), key: format!("{:?}", DebugKey(key)) }
    }

    fn recursion(&self, key: &K) -> Error {
        Error::Recursion { cache: self.store.name.clone(), key: format!("{:?}", DebugKey(key)) }
    }

    /// Stores a computed value if `flight` is still the key's flight, ending it under the same
    /// lock; returns an event to report once the waiters have their value.
    fn commit(&self, lease: &Lease<K, V>, value: &V, extra: u64, tags: &[&str]) -> Option<Event> {
        let (key, hash, flight) = (&lease.key, lease.hash, &lease.flight);
        let weight = self.store.weigh(key, value, extra);
        let reserved = weight.filter(|&w| self.store.reserve(w));
        let (storable, stored) = {
            let mut shard = self.store.write(hash);
            let storable = shard.side().end(key, flight)
                && flight.may_store_with(tags, self.tag_epoch.load(SeqCst))
                && weight.is_some();
            if let (true, Some(w)) = (storable, reserved) {
                let refresh = Refresh { after: lease.refresh_after, started: lease.started };
                shard.insert(hash, key.clone(), value.clone(), w, tags, refresh);
            }
            let stored = storable && reserved.is_some();
            if let Some(at) = lease.refresh {
                match stored {
                    true => Counters::add(&self.store.counters.refreshes_succeeded, 1),
                    // Not stored (full, or the key invalidated meanwhile): the old value, if it
                    // is still there, is due again.
                    false => drop(shard.end_refresh(hash, key, at, true)),
                }
            }
            (storable, stored)
        };
        match reserved {
            Some(_) if stored => self.store.enforce_limit(),
            Some(w) => self.store.release(w),
            None if storable => return self.store.rejected(),
            None => {}
        }
        None
    }

    /// Ends `flight` without storing anything (nocache, error, abandoned lease). For a refresh
    /// (`refresh`: when its entry fell due), the entry is due again, or removed if `keep` is
    /// false; true if it was removed.
    fn end_flight(
        &self,
        key: &K,
        hash: u64,
        flight: &Arc<Flight<V>>,
        refresh: Option<u64>,
        keep: bool,
    ) -> bool {
        let mut shard = self.store.write(hash);
        let ours = shard.side().end(key, flight);
        match refresh {
            Some(at) if ours => shard.end_refresh(hash, key, at, keep),
            _ => false,
        }
    }

    /// Whether a failed refresh keeps the value it was to replace.
    pub(crate) fn serves_stale(&self) -> bool {
        self.settings.lock().serve_stale_on_error
    }

    /// Counts a value returned although it was due for refresh (by the caller who took the
    /// refresh; the store counts the others).
    pub(crate) fn count_stale(&self) {
        Counters::add(&self.store.counters.stale_served, 1);
    }

    /// The stored value, without computing; counts as activity.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.store.hash(key);
        let v = self.store.lookup_with(hash, key, V::clone);
        if v.is_none() {
            self.store.count_miss(hash);
        }
        v
    }

    /// Removes the key's entry and detaches its flight; true if an entry was removed.
    pub(crate) fn invalidate<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove(key).is_some()
    }

    /// Like `invalidate`, returning the value that was stored.
    pub(crate) fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.store.hash(key);
        let mut shard = self.store.write(hash);
        shard.side().detach(key);
        shard.take_value(hash, key)
    }

    /// Stores `value` for `key` at once (a write); a computation of the key running now is
    /// detached. False if it did not fit.
    pub(crate) fn insert(&self, key: K, value: V, tags: &[&str]) -> bool {
        let hash = self.store.hash(&key);
        let weight = self.store.weigh(&key, &value, 0);
        let reserved = weight.filter(|&w| self.store.reserve(w));
        {
            let mut shard = self.store.write(hash);
            shard.side().detach(&key);
            if let Some(w) = reserved {
                shard.insert(hash, key, value, w, tags, Refresh::default());
            }
        }
        match (weight, reserved) {
            (_, Some(_)) => self.store.enforce_limit(),
            (Some(_), None) => {
                if let Some(e) = self.store.rejected() {
                    self.store.emit(e);
                }
            }
            (None, None) => {}
        }
        reserved.is_some()
    }

    /// Removes every entry stored with `tag`, and detaches the flights that may store one.
    pub(crate) fn invalidate_tag(&self, tag: &str) -> u64 {
        self.tag_epoch.fetch_add(1, SeqCst);
        self.store.for_each_side(|f| !f.is_empty(), |f| f.detach_tagged(tag));
        self.store.invalidate_tag(tag)
    }

    /// Removes every entry and detaches every flight.
    pub(crate) fn clear(&self) {
        self.store.clear(|f| f.0.clear());
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut s = Stats::default();
        self.store.fill_stats(&mut s);
        s.in_flight = self.in_flight.load(Relaxed);
        s
    }

    pub(crate) fn settings(&self) -> Settings {
        self.settings.lock().clone()
    }

    /// Applies new settings in place (see [`Store::reconfigure`]); slots follow
    /// `max_concurrency`.
    pub(crate) fn reconfigure(&self, settings: Settings) -> Result<(), ConfigError> {
        let mut current = self.settings.lock();
        self.store.reconfigure(&settings)?;
        self.slots.set_limit(settings.max_concurrency);
        *current = settings;
        Ok(())
    }
}

impl<K, V> Sweep for FlightCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn sweep(&self, tell_later: bool) -> bool {
        self.store.sweep(tell_later)
    }

    fn tell_untold(&self) {
        self.store.tell_untold();
    }

    fn after_fork(&self) {
        self.store.for_each_side(|f| !f.is_empty(), |f| f.0.clear());
        self.in_flight.store(0, Relaxed);
        self.slots.after_fork();
    }
}

/// A caller waiting for another caller's computation of the same key.
///
/// Wait with [`Waiter::pending`] (blocking, `.await`, or a callback), or await the waiter
/// itself. Dropping it means this caller gave up; the computation goes on for the others.
///
/// ```
/// use coopcache::{Begin, Cache, Completion};
/// use std::time::Duration;
///
/// let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
/// let Begin::Lease(lease) = cache.begin(&7).unwrap() else { unreachable!() };
/// let Begin::Wait(waiter) = cache.begin(&7).unwrap() else { unreachable!() };
/// assert_eq!(waiter.id(), lease.id());
/// assert!(waiter.pending().wait_timeout(Duration::from_millis(1)).is_none(), "still computing");
/// drop(lease); // the leader went away unfinished
/// assert!(matches!(waiter.pending().wait(), Completion::HandedOver));
/// ```
#[must_use = "dropping a waiter gives up waiting"]
pub struct Waiter<V> {
    pending: Pending<Completion<V>>,
    id: FlightId,
    /// The waits-for record of a caller inside a computation; removed when it stops waiting.
    waiting: Option<Waiting>,
}

impl<V: Clone + Send + 'static> Waiter<V> {
    /// The handle to wait on.
    pub fn pending(&self) -> &Pending<Completion<V>> {
        &self.pending
    }

    /// The flight waited for.
    pub fn id(&self) -> FlightId {
        self.id
    }

    /// Whether the caller waits from outside every computation (it keeps no waits-for record
    /// for the deadlock checks).
    pub fn is_plain(&self) -> bool {
        self.waiting.is_none()
    }
}

impl<V: Clone + Send + 'static> std::future::Future for Waiter<V> {
    type Output = Completion<V>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Completion<V>> {
        std::pin::Pin::new(&mut self.pending).poll(cx)
    }
}

/// The right and duty to compute one key: finish it with [`Lease::store`],
/// [`Lease::nocache`] or [`Lease::fail`]. Dropped unfinished (a panic unwinding, a dropped
/// future, a binding's cancelled task), it hands the computation to a waiter.
///
/// ```
/// use coopcache::{Begin, Cache};
///
/// let cache: Cache<String, usize> = Cache::builder().build().unwrap();
/// if let Begin::Lease(lease) = cache.begin("len:abc").unwrap() {
///     let _slot = lease.slot().wait(); // at most max_concurrency computations at once
///     let value = {
///         let _computing = lease.enter(); // asking "len:abc" in here is a recursion error
///         3
///     };
///     lease.store(value);
/// }
/// assert_eq!(cache.get("len:abc"), Some(3));
/// ```
#[must_use = "a lease must be finished with store, nocache or fail; dropped, it hands the key to a waiter"]
pub struct Lease<K, V> {
    cache: Arc<FlightCache<K, V>>,
    key: K,
    hash: u64,
    flight: Arc<Flight<V>>,
    /// Began inside a computation of the same cache: its slot is that computation's.
    nested: bool,
    finished: bool,
    /// A refresh of a stored value (`refresh_after`): when that value fell due.
    refresh: Option<u64>,
    /// The value's `refresh_after` in nanoseconds, if not the cache's (a call's option).
    refresh_after: Option<u64>,
    /// When the computation began, for `early_refresh` (0: not noted).
    started: u64,
    /// What dropping it unfinished does; a function chosen where the bounds it needs hold, so
    /// the type itself needs none.
    abandon: fn(&mut Lease<K, V>),
}

impl<K, V> Lease<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The flight's id.
    pub fn id(&self) -> FlightId {
        self.flight.id
    }

    /// The key being computed.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Marks the computation as running on this thread until the guard drops, so that a call
    /// from inside it for the same key is an [`Error::Recursion`] instead of a deadlock, and a
    /// nested computation of the same cache needs no slot of its own. Hold it while calling
    /// the user's function.
    pub fn enter(&self) -> Computing {
        Computing::enter(self.flight.id, self.cache.id, Caller::Blocking)
    }

    /// Like [`Lease::enter`], for one poll of an async computation: hold it around each poll,
    /// never across an `.await`.
    pub fn enter_poll(&self) -> Computing {
        self.frame().enter()
    }

    /// The computation's [`Frame`], for a binding that keeps track of what a task is inside.
    pub fn frame(&self) -> Frame {
        Frame { flight: self.flight.id, cache: self.cache.id }
    }

    /// A waiter on this lease's own flight, for a binding that runs the computation detached
    /// from the caller who started it: the caller waits like everyone else, and may give up
    /// like everyone else.
    pub fn waiter(&self) -> Waiter<V> {
        self.flight.waiter(None)
    }

    /// Callers waiting now (live [`Waiter`]s).
    pub fn waiters(&self) -> usize {
        self.flight.shared.live()
    }

    /// Runs `f` once when the last waiter gives up before the flight ends: nobody wants the
    /// result any more, and a binding may cancel a detached computation.
    pub fn on_abandoned(&self, f: impl FnOnce() + Send + 'static) {
        self.flight.shared.on_abandon(Box::new(f));
    }

    /// A computation slot (`max_concurrency`); compute once it is granted and keep the permit
    /// until done. Granted at once when the cache has no limit, and to a computation begun
    /// inside another computation of the same cache (it runs in that one's slot: waiting for
    /// another would deadlock when slots run out).
    pub fn slot(&self) -> Pending<Permit> {
        match self.nested {
            true => Slots::unlimited(),
            false => self.cache.slots.acquire(),
        }
    }

    /// Whether this lease refreshes a stored value (`refresh_after`) rather than computing a
    /// missing one: its caller already has that value, and nobody waits for it unless the
    /// value goes meanwhile.
    pub fn is_refresh(&self) -> bool {
        self.refresh.is_some()
    }

    /// The call's `refresh_after` for the value this lease stores (None: the cache's).
    #[cfg(feature = "shared")]
    pub(crate) fn refresh_after(&self) -> Option<std::time::Duration> {
        self.refresh_after.map(std::time::Duration::from_nanos)
    }

    /// The value stored by this lease falls due for refresh after `d` instead of the cache's
    /// `refresh_after`.
    pub(crate) fn set_refresh_after(&mut self, d: Option<std::time::Duration>) {
        self.refresh_after = d.map(|d| d.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// Counts the computation in [`Stats::computations`]: its function runs here (call it
    /// once; a leader answered by the shared tier ran nothing).
    pub(crate) fn count_computation(&self) {
        Counters::add(&self.cache.store.counters.computations, 1);
    }

    /// Stores the value (weighed by the cache's weigher) and hands it to every waiter.
    pub fn store(self, value: V) -> V {
        self.store_with(value, 0, &[])
    }

    /// Stores the value with `extra_weight` bytes added to the weigher's answer (a binding's own
    /// estimate of the value's size) and the given tags, and hands it to every waiter. Not
    /// stored if the cache is full in reject mode, if the flight was detached meanwhile (the
    /// key, the whole cache, or a tag it may carry was invalidated), or if the weigher panics;
    /// waiters get the value either way.
    pub fn store_with(mut self, value: V, extra_weight: u64, tags: &[&str]) -> V {
        let event = self.cache.commit(&self, &value, extra_weight, tags);
        self.finish(Completion::Value(value.clone()));
        if let Some(e) = event {
            self.cache.store.emit(e);
        }
        value
    }

    /// Hands the value to every waiter without storing it; the next call computes again.
    pub fn nocache(mut self, value: V) -> V {
        Counters::add(&self.cache.store.counters.nocache, 1);
        self.cache.end_flight(&self.key, self.hash, &self.flight, self.refresh, true);
        self.finish(Completion::Value(value.clone()));
        value
    }

    /// Hands the error to every waiter; nothing is stored, the next call computes again.
    pub fn fail(mut self, error: Error) {
        Counters::add(&self.cache.store.counters.errors, 1);
        let Some(at) = self.refresh else {
            self.cache.end_flight(&self.key, self.hash, &self.flight, None, true);
            return self.finish(Completion::Failed(error));
        };
        // A failed refresh: the old value stays (or goes, as configured), and the failure is
        // reported, since its caller already returned.
        Counters::add(&self.cache.store.counters.refreshes_failed, 1);
        let keep = self.cache.serves_stale();
        self.cache.end_flight(&self.key, self.hash, &self.flight, Some(at), keep);
        let event = Event::RefreshFailed {
            cache: self.cache.store.name.to_string(),
            key: format!("{:?}", DebugKey(&self.key)),
            error: error.to_string(),
            kept: keep,
        };
        tracing::warn!(target: "coopcache", cache = %self.cache.store.name, %error, kept = keep,
            "a refresh failed");
        self.finish(Completion::Failed(error));
        self.cache.store.emit(event);
    }

    fn finish(&mut self, c: Completion<V>) {
        self.finished = true;
        // Saturating: a fork's child starts at zero, under a lease its forking thread may hold.
        let _ = self.cache.in_flight.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        self.flight.shared.fire(c);
    }

    fn abandon(&mut self) {
        self.cache.end_flight(&self.key, self.hash, &self.flight, self.refresh, true);
        self.finish(Completion::HandedOver);
    }
}

impl<K, V> Drop for Lease<K, V> {
    fn drop(&mut self) {
        if !self.finished {
            (self.abandon)(self);
        }
    }
}

/// Formats a key for an error message without requiring `Debug` of every key type.
pub(crate) struct DebugKey<'a, K>(pub(crate) &'a K);

impl<K: 'static> std::fmt::Debug for DebugKey<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let any = self.0 as &dyn std::any::Any;
        if let Some(k) = any.downcast_ref::<crate::keys::Key>() {
            write!(f, "{k}")
        } else if let Some(k) = any.downcast_ref::<String>() {
            write!(f, "{k:?}")
        } else if let Some(k) = any.downcast_ref::<&str>() {
            write!(f, "{k:?}")
        } else {
            f.write_str("(this key)")
        }
    }
}
