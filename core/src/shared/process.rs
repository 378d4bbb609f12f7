//! The shared tier in this process's memory ([`super::SharedMode::Process`]).
//!
//! Node gives each worker thread its own addon instance, registry and JS values, so a cache
//! configured in four workers is four local tiers. This tier gives them one store per cache
//! name for the whole process, holding values as the bytes a binding serialized (as Redis would),
//! so a key is computed once for every worker and each worker deserializes its own copy.
//!
//! The store is itself a flight cache of blobs driven by the flight protocol: the first local
//! tier to miss gets the store's lease and computes; the others wait on that flight. A lease
//! dropped unfinished (a worker that exits mid-computation) hands the key to one of them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use super::{
    Blob, Counters, Invalidation, InvalidationHook, LeaseKind, Remote, RemoteError, RemoteLease, inc,
};
use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::error::Error;
use crate::flight::{Begin, Caller, Completion, FlightCache, Lease, Waiter};
use crate::keys::Key;
use crate::sync::Mutex;
use crate::wait::{Pending, Shared};

/// A stored blob, or one handed out as `nocache` (waiters must not store it either).
#[derive(Clone)]
struct Shelf {
    blob: Arc<Blob>,
    nocache: bool,
}

/// The process's store for one cache name, and the local tiers that use it.
struct Hub {
    store: Arc<FlightCache<Key, Shelf>>,
    members: Mutex<Vec<Weak<Member>>>,
}

crate::sync::global! {
    /// The stores by cache name; a store lives while a local tier uses it.
    static HUBS: Mutex<HashMap<String, Weak<Hub>>> = Mutex::new(HashMap::new());
}

/// One local tier's handle on the process's store.
pub(super) struct Member {
    hub: Arc<Hub>,
    on_invalidation: OnceLock<InvalidationHook>,
    counters: Counters,
}

/// Joins the process's store for `name`, creating it with `local`'s memory limit, duration and
/// full policy if no cache of that name uses one yet.
pub(super) fn join(name: &str, local: &Settings, clock: Clock) -> Result<Arc<Member>, ConfigError> {
    let mut hubs = HUBS.lock();
    hubs.retain(|_, h| h.strong_count() > 0);
    let hub = match hubs.get(name).and_then(Weak::upgrade) {
        Some(h) => h,
        None => {
            // Computations run in the local tiers, under their own max_concurrency.
            let settings = local.clone().max_concurrency(None);
            let weigher = |k: &Key, s: &Shelf| {
                let tags: usize = s.blob.tags.iter().map(String::len).sum();
                (k.as_bytes().len() + s.blob.payload.len() + tags) as u64
            };
            let store = FlightCache::new(name.into(), settings, Box::new(weigher), clock, None)?;
            let h = Arc::new(Hub { store, members: Mutex::new(Vec::new()) });
            hubs.insert(name.to_owned(), Arc::downgrade(&h));
            h
        }
    };
    let member = Arc::new(Member { hub, on_invalidation: OnceLock::new(), counters: Counters::default() });
    member.hub.members.lock().push(Arc::downgrade(&member));
    Ok(member)
}

impl Member {
    pub(super) fn on_invalidation(&self, f: impl Fn(Invalidation<'_>) + Send + Sync + 'static) {
        let _ = self.on_invalidation.set(Box::new(f));
    }

    pub(super) fn set_idle(&self, idle: Duration) {
        let store = &self.hub.store;
        let _ = store.reconfigure(store.settings().cache_duration(idle));
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(super) fn fetch(self: &Arc<Self>, key: &Key) -> Pending<Remote> {
        let answer = Shared::new();
        let handle = answer.handle();
        self.ask(key.clone(), answer);
        handle
    }

    fn ask(self: &Arc<Self>, key: Key, answer: Arc<Shared<Remote>>) {
        let c = &self.counters;
        match self.hub.store.begin(&key, None, Caller::NonBlocking) {
            Ok(Begin::Hit(s)) => {
                inc(&c.remote_hits);
                answer.fire(Remote::Value((*s.blob).clone()));
            }
            Ok(Begin::Lease(lease)) => {
                inc(&c.leases_won);
                let lease = HubLease(Mutex::new(Some(lease)));
                answer.fire(Remote::Compute(RemoteLease(LeaseKind::Process(Arc::new(lease)))));
            }
            Ok(Begin::Wait(waiter)) => {
                inc(&c.leases_lost);
                inc(&c.remote_waits);
                let me = self.clone();
                // The callback keeps the waiter (dropping it would cancel the callback) until the
                // flight ends, which it always does: a lease dropped unfinished hands over.
                let keep: Arc<Mutex<Option<Waiter<Shelf>>>> = Arc::default();
                let kept = keep.clone();
                waiter.pending().on_ready(move |done| {
                    kept.lock().take();
                    match done {
                        Completion::Value(s) if s.nocache => answer.fire(Remote::NoCache((*s.blob).clone())),
                        Completion::Value(s) => {
                            inc(&me.counters.remote_hits);
                            answer.fire(Remote::Value((*s.blob).clone()));
                        }
                        Completion::Failed(e) => answer.fire(Remote::Failed(remote_error(e))),
                        Completion::HandedOver => me.ask(key, answer),
                    }
                });
                *keep.lock() = Some(waiter);
            }
            Err(_) => {
                inc(&c.fallbacks);
                answer.fire(Remote::Unavailable);
            }
        }
    }

    pub(super) fn touch(&self, key: &Key) {
        let _ = self.hub.store.get(key);
    }

    pub(super) fn invalidate(&self, key: &Key) -> Pending<bool> {
        self.hub.store.invalidate(key);
        self.broadcast(Invalidation::Key(key.as_bytes()))
    }

    pub(super) fn invalidate_tag(&self, tag: &str) -> Pending<bool> {
        self.hub.store.invalidate_tag(tag);
        self.broadcast(Invalidation::Tag(tag))
    }

    pub(super) fn clear(&self) -> Pending<bool> {
        self.hub.store.clear();
        self.broadcast(Invalidation::All)
    }

    /// Tells every local tier of the store (this one too, as Redis would) to drop what `inv`
    /// names.
    fn broadcast(&self, inv: Invalidation<'_>) -> Pending<bool> {
        let members: Vec<Arc<Member>> = {
            let mut list = self.hub.members.lock();
            list.retain(|m| m.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for m in members {
            if let Some(f) = m.on_invalidation.get() {
                f(inv);
            }
        }
        done(true)
    }
}

/// This local tier's lease on a key of the process's store.
pub(super) struct HubLease(Mutex<Option<Lease<Key, Shelf>>>);

impl HubLease {
    pub(super) fn store(&self, blob: &Blob) -> Pending<bool> {
        let Some(lease) = self.0.lock().take() else { return done(false) };
        let tags: Vec<&str> = blob.tags.iter().map(String::as_str).collect();
        lease.store_with(Shelf { blob: Arc::new(blob.clone()), nocache: false }, 0, &tags);
        done(true)
    }

    pub(super) fn nocache(&self, blob: &Blob) -> Pending<bool> {
        let Some(lease) = self.0.lock().take() else { return done(false) };
        lease.nocache(Shelf { blob: Arc::new(blob.clone()), nocache: true });
        done(true)
    }

    pub(super) fn fail(&self, error: &RemoteError) -> Pending<bool> {
        let Some(lease) = self.0.lock().take() else { return done(false) };
        lease.fail(Error::Remote { type_name: error.type_name.clone(), message: error.message.clone() });
        done(true)
    }
}

fn remote_error(e: Error) -> RemoteError {
    match e {
        Error::Remote { type_name, message } => RemoteError { type_name, message },
        other => RemoteError { type_name: "coopcache::Error".to_owned(), message: other.to_string() },
    }
}

/// An answer that is already there.
fn done(v: bool) -> Pending<bool> {
    let s = Shared::new();
    let h = s.handle();
    s.fire(v);
    h
}
