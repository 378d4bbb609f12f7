//! The flight protocol: `begin(key)` → hit | lease | waiter.
//!
//! A *flight* is one computation of one key. The first caller to miss gets the [`Lease`] and
//! computes; callers who miss while it runs get a [`Waiter`] on the same flight. The lease ends
//! in exactly one of four ways, and every waiter learns which:
//!
//! | lease ends with            | stored?                       | waiters get                  |
//! |----------------------------|-------------------------------|------------------------------|
//! | [`Lease::store`]           | yes, if it fits and was not invalidated meanwhile | [`Completion::Value`] |
//! | [`Lease::nocache`]         | no                            | [`Completion::Value`]        |
//! | [`Lease::fail`]            | no                            | [`Completion::Failed`]       |
//! | dropped unfinished         | no                            | [`Completion::HandedOver`]: call `begin` again; one of them leads |
//!
//! The entry's insertion and the flight's removal happen under the same shard lock, so a caller
//! arriving at any moment either hits, joins the flight, or starts a new one.
//!
//! Bindings drive this directly: they run the user's function in their own language and wait
//! in their own way ([`Pending`] offers blocking, future and callback waits). Rust users call
//! the `get_or_compute` family on [`crate::Cache`], built on the same protocol.

use std::cell::RefCell;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::concurrency::Permit;
use crate::error::Error;
use crate::stats::Counters;
use crate::stats::EvictionReason;
use crate::store::Inner;
use crate::wait::{Pending, Shared};

/// Identifies one flight (for recursion checks across a binding's own contexts).
pub type FlightId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Flights whose computation is running on this thread right now (nested calls included).
    static COMPUTING: RefCell<Vec<FlightId>> = const { RefCell::new(Vec::new()) };
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
pub enum Begin<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
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
    pub(crate) invalidated: AtomicBool,
    /// The cache's invalidation epoch when the flight began.
    pub(crate) epoch: u64,
}

impl<V: Clone + Send + 'static> Flight<V> {
    pub(crate) fn new(epoch: u64) -> Arc<Self> {
        Arc::new(Flight {
            id: NEXT_ID.fetch_add(1, Relaxed),
            shared: Shared::new(),
            invalidated: AtomicBool::new(false),
            epoch,
        })
    }

    pub(crate) fn waiter(&self) -> Waiter<V> {
        Waiter { pending: self.shared.handle(), id: self.id }
    }

    pub(crate) fn id(&self) -> FlightId {
        self.id
    }
}

/// True if `id`'s computation is running on this thread (a call from inside it would wait for
/// itself).
pub(crate) fn computing_here(id: FlightId) -> bool {
    COMPUTING.with(|c| c.borrow().contains(&id))
}

/// Marks a computation as running on this thread until dropped; see [`Lease::enter`].
pub struct Computing {
    id: FlightId,
}

impl Computing {
    pub(crate) fn enter(id: FlightId) -> Computing {
        COMPUTING.with(|c| c.borrow_mut().push(id));
        Computing { id }
    }
}

impl Drop for Computing {
    fn drop(&mut self) {
        COMPUTING.with(|c| {
            let mut c = c.borrow_mut();
            if let Some(pos) = c.iter().rposition(|&i| i == self.id) {
                c.remove(pos);
            }
        });
    }
}

/// A caller waiting for another caller's computation of the same key.
///
/// Wait with [`Waiter::pending`] (blocking, `.await`, or a callback), or await the waiter
/// itself. Dropping it means this caller gave up; the computation goes on for the others.
pub struct Waiter<V: Clone + Send + 'static> {
    pending: Pending<Completion<V>>,
    id: FlightId,
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
pub struct Lease<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) inner: Arc<Inner<K, V>>,
    pub(crate) key: K,
    pub(crate) hash: u64,
    pub(crate) flight: Arc<Flight<V>>,
    pub(crate) finished: bool,
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
    /// from inside it for the same key is a [`Error::Recursion`] instead of a deadlock. Hold it
    /// while calling the user's function (for a future, around each poll).
    pub fn enter(&self) -> Computing {
        Computing::enter(self.flight.id)
    }

    /// A waiter on this lease's own flight, for a binding that runs the computation detached
    /// from the caller who started it: the caller waits like everyone else, and may give up
    /// like everyone else.
    pub fn waiter(&self) -> Waiter<V> {
        self.flight.waiter()
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
    /// until done. Granted at once when the cache has no limit.
    pub fn slot(&self) -> Pending<Permit> {
        self.inner.slots.acquire()
    }

    /// Stores the value (weighed by the cache's weigher) and hands it to every waiter.
    pub fn store(self, value: V) -> V {
        self.store_with(value, 0, &[])
    }

    /// Stores the value with `extra_weight` bytes added to the weigher's answer (a binding's own
    /// estimate of the value's size) and the given tags, and hands it to every waiter. Not
    /// stored if the cache is full in reject mode, or if the key (or one of the tags, or the
    /// whole cache) was invalidated while computing; waiters get the value either way.
    pub fn store_with(mut self, value: V, extra_weight: u64, tags: &[&str]) -> V {
        self.finished = true;
        self.inner.store(&self.key, self.hash, &value, extra_weight, tags, &self.flight);
        self.complete(Completion::Value(value.clone()));
        value
    }

    /// Hands the value to every waiter without storing it; the next call computes again.
    pub fn nocache(mut self, value: V) -> V {
        self.finished = true;
        Counters::add(&self.inner.counters.nocache, 1);
        self.inner.end_flight(&self.key, self.hash, &self.flight);
        self.complete(Completion::Value(value.clone()));
        value
    }

    /// Hands the error to every waiter; nothing is stored, the next call computes again.
    pub fn fail(mut self, error: Error) {
        self.finished = true;
        Counters::add(&self.inner.counters.errors, 1);
        self.inner.end_flight(&self.key, self.hash, &self.flight);
        self.complete(Completion::Failed(error));
    }

    fn complete(&self, c: Completion<V>) {
        self.inner.in_flight.fetch_sub(1, Relaxed);
        self.flight.shared.fire(c);
    }
}

impl<K, V> Drop for Lease<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        if !self.finished {
            self.inner.end_flight(&self.key, self.hash, &self.flight);
            self.complete(Completion::HandedOver);
        }
    }
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Hit, lease or waiter for `key` (see the module docs).
    pub(crate) fn begin(self: &Arc<Self>, key: &K) -> Result<Begin<K, V>, Error> {
        let hash = self.hash(key);
        if let Some(v) = self.lookup(hash, key) {
            return Ok(Begin::Hit(v));
        }
        self.begin_locked(key, hash)
    }

    /// `begin` after the read-locked hit path missed: decides under the shard's write lock.
    pub(crate) fn begin_locked(self: &Arc<Self>, key: &K, hash: u64) -> Result<Begin<K, V>, Error> {
        let mut dropped = Vec::new();
        let result = {
            let mut sh = self.shard(hash).lock.write();
            if let Some(v) = self.lookup_locked(&mut sh, hash, key, &mut dropped) {
                self.count_hit(hash);
                return Ok(Begin::Hit(v));
            }
            if let Some(flight) = sh.flights.get(key) {
                if computing_here(flight.id()) {
                    Err(Error::Recursion { cache: self.name.clone(), key: format!("{:?}", DebugKey(key)) })
                } else {
                    Counters::add(&self.counters.coalesced, 1);
                    Ok(Begin::Wait(flight.waiter()))
                }
            } else {
                let flight = Flight::new(self.epoch.load(Relaxed));
                sh.flights.insert(key.clone(), flight.clone());
                Counters::add(&self.counters.computations, 1);
                self.in_flight.fetch_add(1, Relaxed);
                Ok(Begin::Lease(Lease {
                    inner: self.clone(),
                    key: key.clone(),
                    hash,
                    flight,
                    finished: false,
                }))
            }
        };
        if result.is_ok() {
            self.count_miss(hash);
        }
        let idle = dropped.len() as u64;
        drop(dropped);
        self.evicted(EvictionReason::Idle, idle);
        result
    }
}

/// Formats a key for an error message without requiring `Debug` of every key type.
struct DebugKey<'a, K>(&'a K);

impl<K: 'static> std::fmt::Debug for DebugKey<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0 as &dyn std::any::Any).downcast_ref::<crate::Key>() {
            Some(k) => write!(f, "{k}"),
            None => f.write_str("(this key)"),
        }
    }
}
