//! One call of a cache as a state machine without I/O of its own: the caller asks it what to
//! do next and reports back. Every rule of a call lives here, once, for every kind of caller:
//! hit or miss, lead or wait, a computation slot, the shared tier's answer, computing,
//! publishing, storing, hand-over, recursion, giving up.
//!
//! A [`Call`] is the caller's side: it ends with the value or an error. When the caller leads,
//! the call hands it a [`Lead`], the computation's side, and waits for the flight like any
//! other caller; the lead can be driven on the spot (a thread that computes, a future polling
//! its computation) or by a task of its own (an asyncio task, a JS promise), which is how a
//! computation outlives a caller who gives up. What a binding does for either is small: run
//! the user's function, turn bytes from the shared tier into a value and back with its
//! serializer, and wait on a [`Pending`] in its own style (blocking without its interpreter's
//! lock, a future, a callback).
//!
//! ```
//! use coopcache::{Cache, CallOptions, Caller, Outcome, LeadStep, Step};
//!
//! let cache: Cache<String, u64> = Cache::builder().build().unwrap();
//! let mut call = cache.call("answer".to_string(), &CallOptions::new(), Caller::Blocking);
//! let value = loop {
//!     match call.step() {
//!         Step::Done(result) => break result.unwrap(),
//!         Step::Wait(ready) => ready.wait(),
//!         Step::Lead(mut lead) => loop {
//!             match lead.step() {
//!                 LeadStep::Wait(ready) | LeadStep::Confirm(ready) => ready.wait(),
//!                 LeadStep::Compute => {
//!                     let _computing = lead.enter(); // asking "answer" in here is a recursion error
//!                     lead.computed(Outcome::Store { value: 42, weight: 0 });
//!                 }
//!                 LeadStep::Decode(_) | LeadStep::Encode(_) => unreachable!("no shared tier"),
//!                 LeadStep::Done => break,
//!                 _ => unreachable!(),
//!             }
//!         },
//!     }
//! };
//! assert_eq!(value, 42);
//! assert_eq!(cache.get("answer"), Some(42));
//! ```

use std::hash::Hash;

use super::{Cache, CallOptions};
use crate::concurrency::Permit;
use crate::error::Error;
use crate::flight::{Begin, Caller, Completion, Computing, Frame, Lease, Waiter};
use crate::store::Due;
use crate::wait::{Pending, Ready};

/// A hit of [`Cache::hit_refresh_with`]: what `f` read, and the lead of the value's refresh
/// when this caller is to start it.
pub type RefreshHit<R, K, V> = (R, Option<Box<Lead<K, V>>>);

/// What the caller does next.
#[must_use = "a step must be acted on"]
pub enum Step<K, V> {
    /// The call's outcome.
    Done(Result<V, Error>),
    /// Wait until this is ready (bounded by the caller's own timeout: past it, drop the call
    /// and report [`Error::Timeout`]), then ask again.
    Wait(Ready),
    /// This caller leads: drive the [`Lead`] (here, or in a task of its own), then ask again;
    /// the call waits for the computation like any other caller.
    Lead(Box<Lead<K, V>>),
}

/// The caller's side of a call; see the module docs. Dropped before it is done, the caller
/// gave up: it stops waiting, and the computation goes on for the others.
#[must_use = "a call does nothing until driven with step()"]
pub struct Call<K, V> {
    cache: Cache<K, V>,
    key: K,
    hash: u64,
    tags: Vec<String>,
    caller: Caller,
    /// Set by the Rust forms that cannot return another caller's error: they compute for
    /// themselves instead.
    infallible: bool,
    /// Whether this caller turns values into bytes for the shared tier (a binding, or a cache
    /// with a codec); only then is the shared tier asked.
    #[cfg(feature = "shared")]
    serializes: bool,
    /// The call's `refresh_after`, for the value it may store.
    refresh_after: Option<std::time::Duration>,
    waiting: Option<Waiter<V>>,
    /// A refresh this caller runs itself (the Rust forms, whose computation cannot outlive
    /// the call): the lease to lead first, then the value it had, returned if the refresh
    /// fails and the cache keeps stale values.
    refreshing: Option<Lease<K, V>>,
    stale: Option<V>,
}

/// How a computation ended, as its leader reports it.
#[non_exhaustive]
pub enum Outcome<V> {
    /// A value to store (`weight`: bytes the binding estimates for it, added to the weigher's).
    Store {
        /// The value.
        value: V,
        /// Its estimated size in bytes, besides what the cache's weigher counts.
        weight: u64,
    },
    /// A value for every caller, not stored.
    NoCache(V),
    /// The computation failed: this error for every caller here, the type name and message
    /// for the other processes.
    Failed {
        /// The error.
        error: Error,
        /// Its type name, as other processes are told.
        type_name: String,
        /// Its message.
        message: String,
    },
}

impl<V> Outcome<V> {
    /// A failure whose type name and message other processes read from the error itself.
    pub fn failed(error: Error, type_name: impl Into<String>) -> Outcome<V> {
        let message = match &error {
            Error::Remote { message, .. } => message.clone(),
            e => e.to_string(),
        };
        let type_name = match &error {
            Error::Remote { type_name, .. } => type_name.clone(),
            _ => type_name.into(),
        };
        Outcome::Failed { error, type_name, message }
    }
}

/// What the leader does next.
#[must_use = "a step must be acted on"]
#[non_exhaustive]
pub enum LeadStep<V> {
    /// Wait until this is ready (a computation slot, the shared tier's answer; bounded by the
    /// caller's timeout: past it, drop the lead), then ask again.
    Wait(Ready),
    /// Wait until the shared tier has confirmed the write (it bounds this itself), then ask
    /// again.
    Confirm(Ready),
    /// Run the computation (holding [`Lead::enter`], or [`Lead::enter_poll`] around each poll)
    /// and report it with [`Lead::computed`].
    Compute,
    /// Turn these bytes into a value with the cache's serializer, and report it with
    /// [`Lead::decoded`]: a value the shared tier has, or, with a serializer that loses types,
    /// the bytes just encoded (every caller then gets the value the other processes read).
    Decode(Vec<u8>),
    /// Turn this value into bytes for the shared tier, and report them with [`Lead::encoded`].
    Encode(V),
    /// The flight has ended: every caller, this one too, has its outcome.
    Done,
}

/// The leader's side of a call; see the module docs. Dropped before it is done, the
/// computation is abandoned: one of its waiters takes over (and, in shared mode, another
/// process may take it at once).
#[must_use = "a lead does nothing until driven with step()"]
pub struct Lead<K, V> {
    #[cfg(feature = "shared")]
    cache: Cache<K, V>,
    tags: Vec<String>,
    #[cfg(feature = "shared")]
    infallible: bool,
    #[cfg(feature = "shared")]
    serializes: bool,
    /// Whether the callers get the value decoded from the bytes this lead encodes (see
    /// [`crate::SharedTier::returns_decoded`]), with or without a remote lease.
    #[cfg(feature = "shared")]
    returns_decoded: bool,
    lease: Option<Lease<K, V>>,
    permit: Option<Permit>,
    /// Whether the computation has been handed out ([`LeadStep::Compute`]): it counts in
    /// [`crate::Stats::computations`] then, once.
    ran: bool,
    #[cfg(feature = "shared")]
    remote: Option<crate::shared::RemoteLease>,
    /// The computation's outcome while the shared tier is told of it.
    #[cfg(feature = "shared")]
    outcome: Option<Outcome<V>>,
    state: LeadState,
}

enum LeadState {
    /// Asking for a computation slot.
    Slot(Pending<Permit>),
    /// Holding a slot (or needing none), the shared tier not asked yet: the first step asks,
    /// so that options set before it ([`Lead::set_options`]) decide what it asks.
    Slotted,
    /// Asking the shared tier.
    #[cfg(feature = "shared")]
    Asking(Pending<crate::shared::Remote>),
    /// Waiting for the caller to decode a value the shared tier has (`nocache`: not to store).
    #[cfg(feature = "shared")]
    Decoding { blob: crate::shared::Blob, nocache: bool },
    /// Waiting for the caller to compute.
    Computing,
    /// Waiting for the caller to encode the computed value (in `Lead::outcome`) for the
    /// shared tier.
    #[cfg(feature = "shared")]
    Encoding,
    /// Waiting for the caller to decode the bytes it encoded: the value every caller gets.
    #[cfg(feature = "shared")]
    Returning(Vec<u8>),
    /// Waiting for the shared tier to confirm the write of the outcome.
    #[cfg(feature = "shared")]
    Publishing(Pending<bool>),
    /// The flight has ended.
    Done,
    /// A step was handed out and not answered yet (the state moved out meanwhile).
    Between,
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A call of `key`, for a binding driving it step by step (see [`Call`]). It starts with
    /// the miss path: look a hit up first with [`Cache::hit_with`]. The binding serializes
    /// values for the shared tier itself.
    pub fn call(&self, key: K, opts: &CallOptions, caller: Caller) -> Call<K, V> {
        Call::new(self, key, opts, caller, false, true)
    }

    /// The hit path for a binding that refreshes ahead (`refresh_after`): like
    /// [`Cache::hit_with`], and when the value is due for refresh and this caller is the one
    /// to refresh it, also the [`Lead`] of that refresh. The caller returns the value at once
    /// and drives the lead detached (a thread, an asyncio task on the loop that called, a JS
    /// promise), as it drives any lead; nobody waits for it, unless the value goes meanwhile
    /// (callers who miss then join it). Its value replaces the stored one; if it fails, the
    /// stored one stays or goes as `serve_stale_on_error` says, and the failure is counted and
    /// reported ([`crate::Event::RefreshFailed`]). A hit on a value that is not due costs what
    /// [`Cache::hit_with`] does, plus one compare.
    ///
    /// ```
    /// use coopcache::{Cache, CallOptions, Caller, Clock, LeadStep, Outcome};
    /// use std::time::Duration;
    ///
    /// let clock = Clock::manual();
    /// let cache: Cache<String, u64> =
    ///     Cache::builder().clock(clock.clone()).refresh_after(Duration::from_secs(60)).build().unwrap();
    /// cache.insert("k".to_string(), 1);
    /// clock.advance(Duration::from_secs(61));
    /// let opts = CallOptions::new();
    /// let (v, lead) = cache.hit_refresh_with("k", &opts, Caller::Blocking, |v| *v).unwrap();
    /// assert_eq!(v, 1, "the value as it is, at once");
    /// let mut lead = lead.expect("this caller refreshes it");
    /// assert!(cache.hit_refresh_with("k", &opts, Caller::Blocking, |v| *v).unwrap().1.is_none(), "one refresh");
    /// loop {
    ///     match lead.step() {
    ///         LeadStep::Compute => lead.computed(Outcome::Store { value: 2, weight: 0 }),
    ///         LeadStep::Done => break,
    ///         _ => unreachable!("no limit, no shared tier"),
    ///     }
    /// }
    /// assert_eq!(cache.get("k"), Some(2));
    /// assert_eq!(cache.stats().refreshes_succeeded, 1);
    /// ```
    pub fn hit_refresh_with<Q, R>(
        &self,
        key: &Q,
        opts: &CallOptions,
        caller: Caller,
        f: impl FnOnce(&V) -> R,
    ) -> Option<RefreshHit<R, K, V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.hit_refresh_by(key, || key.to_owned(), opts, caller, f)
    }

    /// [`Cache::hit_refresh_with`] for a borrowed form of the key that is not `ToOwned` into
    /// `K` (a `Cache<Key, V>` searched with a [`crate::KeyWriter`]'s bytes): `owned` makes
    /// the key, only when this hit starts a refresh, so a hit still allocates nothing.
    #[inline(always)]
    pub fn hit_refresh_by<Q, R>(
        &self,
        key: &Q,
        owned: impl FnOnce() -> K,
        opts: &CallOptions,
        caller: Caller,
        f: impl FnOnce(&V) -> R,
    ) -> Option<RefreshHit<R, K, V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let store = &self.local.store;
        let hash = store.hash(key);
        let (r, due) = store.lookup_due(hash, key, f)?;
        let Due::Claimed(at) = due else { return Some((r, None)) };
        let tags: Vec<&str> = opts.tags.iter().map(String::as_str).collect();
        let lease = self.local.begin_refresh(&owned(), hash, at, &tags, caller);
        self.local.count_stale();
        Some((r, lease.map(|lease| Box::new(Lead::detached(self, opts, lease)))))
    }
}

impl<K, V> Call<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    #[cfg_attr(not(feature = "shared"), allow(unused_variables))]
    pub(super) fn new(
        cache: &Cache<K, V>,
        key: K,
        opts: &CallOptions,
        caller: Caller,
        infallible: bool,
        serializes: bool,
    ) -> Self {
        Call {
            hash: cache.local.store.hash(&key),
            cache: cache.clone(),
            key,
            tags: opts.tags.clone(),
            caller,
            infallible,
            #[cfg(feature = "shared")]
            serializes,
            refresh_after: opts.refresh_after,
            waiting: None,
            refreshing: None,
            stale: None,
        }
    }

    /// A call whose caller found `stale` due for refresh since `at` and took the refresh: it
    /// leads the refresh itself and ends with the new value (or, if the refresh fails and the
    /// cache keeps stale values, with `stale`). `Err(stale)` if there is nothing to refresh
    /// (the entry went, or another flight of the key runs).
    pub(super) fn refreshing(
        cache: &Cache<K, V>,
        key: K,
        opts: &CallOptions,
        caller: Caller,
        (stale, at): (V, u64),
    ) -> Result<Self, V> {
        let mut call = Call::new(cache, key, opts, caller, false, cache.has_codec());
        let tags: Vec<&str> = opts.tags.iter().map(String::as_str).collect();
        match cache.local.begin_refresh(&call.key, call.hash, at, &tags, caller) {
            Some(lease) => {
                call.refreshing = Some(lease);
                call.stale = Some(stale);
                Ok(call)
            }
            None => {
                cache.local.count_stale();
                Err(stale)
            }
        }
    }

    /// The value this caller had, after its refresh did not give a new one.
    fn stale(&mut self) -> Option<V> {
        let stale = self.stale.take()?;
        self.cache.local.count_stale();
        Some(stale)
    }

    /// What the call waits for: the flight's waiter, after a [`Step::Wait`].
    pub(super) fn waiting(&self) -> Option<&Waiter<V>> {
        self.waiting.as_ref()
    }

    /// What to do next (see [`Step`]).
    pub fn step(&mut self) -> Step<K, V> {
        if let Some(lease) = self.refreshing.take() {
            self.waiting = Some(lease.waiter());
            return Step::Lead(Box::new(Lead::new(self, lease)));
        }
        loop {
            if let Some(w) = &self.waiting {
                match w.pending().try_get() {
                    None => return Step::Wait(w.pending().ready()),
                    Some(Completion::Value(v)) => return Step::Done(Ok(v)),
                    Some(Completion::Failed(e)) if self.stale.is_some() => {
                        return match self.cache.local.serves_stale() {
                            true => Step::Done(Ok(self.stale().expect("checked"))),
                            false => Step::Done(Err(e)),
                        };
                    }
                    Some(Completion::HandedOver) if self.stale.is_some() => {
                        return Step::Done(Ok(self.stale().expect("checked")));
                    }
                    Some(Completion::Failed(_)) if self.infallible => self.waiting = None,
                    Some(Completion::Failed(e)) => return Step::Done(Err(e)),
                    Some(Completion::HandedOver) => self.waiting = None,
                }
            }
            let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
            match self.cache.local.begin_missed(&self.key, self.hash, Some(&tags), self.caller) {
                Err(e) => return Step::Done(Err(e)),
                Ok(Begin::Hit(v)) => return Step::Done(Ok(v)),
                Ok(Begin::Wait(w)) => self.waiting = Some(w),
                Ok(Begin::Lease(lease)) => {
                    self.waiting = Some(lease.waiter());
                    // Its own computation's outcome is this caller's, whatever it is.
                    self.infallible = false;
                    return Step::Lead(Box::new(Lead::new(self, lease)));
                }
            }
        }
    }
}

impl<K, V> Lead<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new(call: &Call<K, V>, lease: Lease<K, V>) -> Self {
        #[cfg(feature = "shared")]
        let (infallible, serializes) = (call.infallible, call.serializes);
        #[cfg(not(feature = "shared"))]
        let (infallible, serializes) = (false, false);
        Lead::with(&call.cache, call.tags.clone(), call.refresh_after, infallible, serializes, lease)
    }

    /// The lead of a refresh a binding drives detached (see [`Cache::hit_refresh_with`]).
    fn detached(cache: &Cache<K, V>, opts: &CallOptions, lease: Lease<K, V>) -> Self {
        Lead::with(cache, opts.tags.clone(), opts.refresh_after, false, true, lease)
    }

    #[cfg_attr(not(feature = "shared"), allow(unused_variables))]
    fn with(
        cache: &Cache<K, V>,
        tags: Vec<String>,
        refresh_after: Option<std::time::Duration>,
        infallible: bool,
        serializes: bool,
        mut lease: Lease<K, V>,
    ) -> Self {
        lease.set_refresh_after(refresh_after);
        let state = match cache.local.slots.limited() {
            true => LeadState::Slot(lease.slot()),
            false => LeadState::Slotted,
        };
        Lead {
            #[cfg(feature = "shared")]
            cache: cache.clone(),
            tags,
            #[cfg(feature = "shared")]
            infallible,
            #[cfg(feature = "shared")]
            serializes,
            #[cfg(feature = "shared")]
            returns_decoded: serializes
                && cache.shared().is_some_and(crate::shared::SharedTier::returns_decoded),
            lease: Some(lease),
            permit: None,
            ran: false,
            #[cfg(feature = "shared")]
            remote: None,
            #[cfg(feature = "shared")]
            outcome: None,
            state,
        }
    }

    /// The step after the slot: ask the shared tier (if this caller serializes), or compute.
    fn after_slot(&self) -> LeadState {
        #[cfg(feature = "shared")]
        if let (true, Some(remote)) = (self.serializes, &self.cache.remote) {
            let lease = self.lease();
            let answer = match lease.is_refresh() {
                // Whether another process refreshed the value lately, else the lease to: one
                // refresh of the key for the whole fleet.
                true => {
                    let after = lease.refresh_after().or(self.cache.local.settings().refresh_after);
                    remote.ask_refresh(lease.key(), after.unwrap_or_default())
                }
                false => remote.ask(lease.key()),
            };
            if let Some(answer) = answer {
                return LeadState::Asking(answer);
            }
        }
        LeadState::Computing
    }

    fn lease(&self) -> &Lease<K, V> {
        self.lease.as_ref().expect("a lead holds its lease until done")
    }

    fn tag_refs(&self) -> Vec<&str> {
        self.tags.iter().map(String::as_str).collect()
    }

    /// The computation's frame, for a binding that keeps track of which computations a task
    /// is inside (see [`Frame`]).
    pub fn frame(&self) -> Frame {
        self.lease().frame()
    }

    /// Marks the computation as running on this thread until the guard drops (see
    /// [`Lease::enter`]).
    pub fn enter(&self) -> Computing {
        self.lease().enter()
    }

    /// Like [`Lead::enter`], for one poll of an async computation.
    pub fn enter_poll(&self) -> Computing {
        self.lease().enter_poll()
    }

    /// Sets the tags and `refresh_after` of the value this lead stores, before its first step:
    /// for a binding whose hit path learns the call's options only once the hit has handed it
    /// a refresh ([`Cache::hit_refresh_with`]). The shared tier is asked at the first step, so
    /// a refresh's "written lately" window is this `refresh_after` too.
    pub fn set_options(&mut self, opts: &CallOptions) {
        self.tags = opts.tags.clone();
        if let Some(lease) = self.lease.as_mut() {
            lease.set_refresh_after(opts.refresh_after);
        }
    }

    /// Callers waiting now (the caller who leads counts, unless it gave up).
    pub fn waiters(&self) -> usize {
        self.lease().waiters()
    }

    /// Runs `f` once when the last waiter gives up before the flight ends: a binding that runs
    /// the computation in a task of its own may cancel it then (and drop the lead).
    pub fn on_abandoned(&self, f: impl FnOnce() + Send + 'static) {
        self.lease().on_abandoned(f);
    }

    /// What to do next (see [`LeadStep`]).
    pub fn step(&mut self) -> LeadStep<V> {
        loop {
            match std::mem::replace(&mut self.state, LeadState::Between) {
                LeadState::Slot(h) => match h.try_get() {
                    None => {
                        let ready = h.ready();
                        self.state = LeadState::Slot(h);
                        return LeadStep::Wait(ready);
                    }
                    Some(permit) => {
                        self.permit = Some(permit);
                        self.state = LeadState::Slotted;
                    }
                },
                LeadState::Slotted => self.state = self.after_slot(),
                #[cfg(feature = "shared")]
                LeadState::Asking(h) => match h.try_get() {
                    None => {
                        let ready = h.ready();
                        self.state = LeadState::Asking(h);
                        return LeadStep::Wait(ready);
                    }
                    Some(answer) => self.answered(answer),
                },
                #[cfg(feature = "shared")]
                LeadState::Decoding { blob, nocache } => {
                    let step = LeadStep::Decode(blob.payload.clone());
                    self.state = LeadState::Decoding { blob, nocache };
                    return step;
                }
                LeadState::Computing => {
                    if !std::mem::replace(&mut self.ran, true) {
                        self.lease().count_computation();
                    }
                    self.state = LeadState::Computing;
                    return LeadStep::Compute;
                }
                #[cfg(feature = "shared")]
                LeadState::Encoding => {
                    let v = match &self.outcome {
                        Some(Outcome::Store { value, .. } | Outcome::NoCache(value)) => value.clone(),
                        _ => unreachable!("only values are encoded"),
                    };
                    self.state = LeadState::Encoding;
                    return LeadStep::Encode(v);
                }
                #[cfg(feature = "shared")]
                LeadState::Returning(bytes) => {
                    let step = LeadStep::Decode(bytes.clone());
                    self.state = LeadState::Returning(bytes);
                    return step;
                }
                #[cfg(feature = "shared")]
                LeadState::Publishing(h) => match h.try_get() {
                    None => {
                        let ready = h.ready();
                        self.state = LeadState::Publishing(h);
                        return LeadStep::Confirm(ready);
                    }
                    Some(_) => {
                        let outcome = self.outcome.take().expect("published an outcome");
                        self.finish(outcome)
                    }
                },
                LeadState::Done => {
                    self.state = LeadState::Done;
                    return LeadStep::Done;
                }
                LeadState::Between => unreachable!("every step leaves a state behind"),
            }
        }
    }

    /// Acts on the shared tier's answer: a value to decode, another process's error, or compute
    /// here (under the remote lease if the tier gave one).
    #[cfg(feature = "shared")]
    fn answered(&mut self, answer: crate::shared::Remote) {
        use crate::shared::Remote as Answer;
        self.state = match answer {
            Answer::Value(blob) => LeadState::Decoding { blob, nocache: false },
            Answer::NoCache(blob) => LeadState::Decoding { blob, nocache: true },
            Answer::Failed(_) if self.infallible => LeadState::Computing,
            Answer::Failed(e) => {
                let lease = self.lease.take().expect("leading");
                lease.fail(Error::Remote { type_name: e.type_name, message: e.message });
                self.permit = None;
                LeadState::Done
            }
            Answer::Compute(r) => {
                self.remote = Some(r);
                LeadState::Computing
            }
            _ => LeadState::Computing,
        };
    }

    /// Reports a value decoded from the bytes of a [`LeadStep::Decode`], with its estimated size,
    /// or why it could not be decoded: a value from the shared tier is then computed here; the
    /// bytes of this lead's own value leave its callers that value.
    pub fn decoded(&mut self, value: Result<(V, u64), String>) {
        #[cfg(feature = "shared")]
        if let LeadState::Returning(bytes) = &mut self.state {
            let bytes = std::mem::take(bytes);
            // Undecodable (it never is for JSON the binding just wrote): the value itself.
            if let (Ok((v, w)), Some(outcome)) = (value, self.outcome.as_mut()) {
                match outcome {
                    Outcome::Store { value, weight } => (*value, *weight) = (v, w),
                    Outcome::NoCache(value) => *value = v,
                    Outcome::Failed { .. } => unreachable!("only values are encoded"),
                }
            }
            return self.publish(Ok(bytes));
        }
        #[cfg(feature = "shared")]
        if let LeadState::Decoding { blob, nocache } = std::mem::replace(&mut self.state, LeadState::Between)
        {
            self.state = match value {
                Ok((v, weight)) => {
                    let lease = self.lease.take().expect("leading");
                    match nocache {
                        true => drop(lease.nocache(v)),
                        false => {
                            let tags: Vec<&str> = blob.tags.iter().map(String::as_str).collect();
                            drop(lease.store_with(v, weight, &tags));
                        }
                    }
                    self.permit = None;
                    LeadState::Done
                }
                Err(why) => {
                    tracing::warn!(target: "coopcache", cache = %self.cache.name(), %why,
                        "a value from the shared tier could not be decoded; computing it here");
                    LeadState::Computing
                }
            };
            return;
        }
        let _ = value;
        debug_assert!(false, "decoded() answers a Decode step");
    }

    /// Reports how the computation ended. With a shared tier to tell, the next steps encode the
    /// value and wait for the write; then (or at once) the flight ends: the value stored (if it
    /// fits) or not, and handed to every waiter; or the error handed to every waiter.
    pub fn computed(&mut self, outcome: Outcome<V>) {
        if !matches!(self.state, LeadState::Computing) {
            debug_assert!(false, "computed() answers a Compute step");
            return;
        }
        #[cfg(feature = "shared")]
        if self.remote.is_some() || self.returns_decoded {
            self.state = LeadState::Encoding;
            if let Outcome::Failed { type_name, message, .. } = &outcome {
                let e = (type_name.clone(), message.clone());
                self.outcome = Some(outcome);
                return self.publish(Err(e));
            }
            self.outcome = Some(outcome);
            return;
        }
        self.finish(outcome);
    }

    /// Reports the bytes of the value to publish, or why it could not be encoded (the type
    /// name and message of the serializer's error: the other processes are told that, and
    /// this process still gets its value).
    pub fn encoded(&mut self, bytes: Result<Vec<u8>, (String, String)>) {
        #[cfg(feature = "shared")]
        if let LeadState::Encoding = self.state {
            return match bytes {
                Ok(payload) if self.returns_decoded => self.state = LeadState::Returning(payload),
                bytes => self.publish(bytes),
            };
        }
        let _ = bytes;
        debug_assert!(false, "encoded() answers an Encode step");
    }

    /// Tells the shared tier (if this lead holds its lease) the outcome's bytes, or the error
    /// (of the computation, or of the serializer: this process still gets its value), and
    /// waits for the write; without a remote lease, ends the flight at once.
    #[cfg(feature = "shared")]
    fn publish(&mut self, bytes: Result<Vec<u8>, (String, String)>) {
        let Some(remote) = self.remote.as_ref() else {
            let outcome = self.outcome.take().expect("an outcome to end with");
            return self.finish(outcome);
        };
        let tags = self.tags.clone();
        let written = match (bytes, &self.outcome) {
            (Ok(payload), Some(Outcome::NoCache(_))) => {
                remote.nocache(&crate::shared::Blob { tags, payload })
            }
            (Ok(payload), _) => remote.store(&crate::shared::Blob { tags, payload }),
            (Err((type_name, message)), _) => remote.fail(&crate::shared::RemoteError { type_name, message }),
        };
        self.state = LeadState::Publishing(written);
    }

    /// Ends the local flight with the outcome.
    fn finish(&mut self, outcome: Outcome<V>) {
        let lease = self.lease.take().expect("leading");
        match outcome {
            Outcome::Store { value, weight } => drop(lease.store_with(value, weight, &self.tag_refs())),
            Outcome::NoCache(value) => drop(lease.nocache(value)),
            Outcome::Failed { error, .. } => lease.fail(error),
        }
        self.permit = None;
        #[cfg(feature = "shared")]
        {
            self.remote = None;
        }
        self.state = LeadState::Done;
    }
}
