//! The async forms of a call, as one named future: a state machine any runtime can poll.
//!
//! A named type rather than an `async fn`: its `Send` is that of its parts, so a call with
//! borrowed key or value types (`Cache<(&'static str, u32), &'static str>`) can be spawned,
//! which rustc's check of an `async fn`'s future refuses ("implementation of `Send` is not
//! general enough"). The computation is boxed (pinned) only when this caller leads, so a hit
//! allocates nothing.

use std::future::Future;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_timer::Delay;

use super::{Cache, CallOptions, finish};
use crate::concurrency::Permit;
use crate::error::Error;
use crate::flight::{Begin, Caller, Completion, Computed, Lease, Outcome, Waiter};
use crate::wait::Pending;

/// Options of the forms that take none.
pub(super) static NO_OPTIONS: CallOptions = CallOptions { timeout: None, tags: Vec::new() };

/// The future of [`Cache::compute_async`] (and of the other async forms): the value, or why
/// there is none. Dropping it gives up: a waiter stops waiting; a leader's computation is
/// dropped and a waiter takes over.
#[must_use = "futures do nothing unless polled"]
pub struct Compute<'a, K, V, F: Future> {
    cache: &'a Cache<K, V>,
    key: K,
    opts: &'a CallOptions,
    /// A caller of the infallible forms computes for itself when another caller's computation
    /// failed.
    infallible: bool,
    convert: fn(F::Output) -> Result<Computed<V>, Error>,
    /// The computation's error type, as other processes are told.
    error_type: &'static str,
    timer: Option<Delay>,
    hash: Option<u64>,
    state: State<K, V, F>,
}

enum State<K, V, F> {
    /// Asking the cache: a hit, the lease, or a wait.
    Begin(F),
    /// Waiting for another caller's computation.
    Waiting(Waiter<V>, F),
    /// Leading: waiting for a computation slot.
    Slot(Lease<K, V>, Pending<Permit>, F),
    /// Leading: asking the shared tier whether another process has the value or computes it.
    #[cfg(feature = "shared")]
    Asking(Lease<K, V>, Option<Permit>, Pending<crate::shared::Remote>, F),
    /// Leading: computing.
    Computing(Lease<K, V>, Option<Permit>, Option<RemoteLease>, Pin<Box<F>>),
    /// Leading: telling the shared tier what was computed (bounded by its own wait).
    #[cfg(feature = "shared")]
    Publishing(Lease<K, V>, Option<Permit>, Outcome<V>, Pending<bool>, Delay),
    Done,
}

#[cfg(feature = "shared")]
type RemoteLease = crate::shared::RemoteLease;
/// Without a shared tier there is never a remote lease.
#[cfg(not(feature = "shared"))]
type RemoteLease = std::convert::Infallible;

// The computation is polled only once boxed (`Pin<Box<F>>`): nothing in here is ever pinned
// in place, so the future can move whatever `F` is.
impl<K, V, F: Future> Unpin for Compute<'_, K, V, F> {}

impl<'a, K, V, F> Compute<'a, K, V, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: Future,
{
    pub(super) fn new(
        cache: &'a Cache<K, V>,
        key: K,
        opts: &'a CallOptions,
        infallible: bool,
        f: F,
        convert: fn(F::Output) -> Result<Computed<V>, Error>,
        error_type: &'static str,
    ) -> Self {
        Compute {
            cache,
            key,
            opts,
            infallible,
            convert,
            error_type,
            timer: None,
            hash: None,
            state: State::Begin(f),
        }
    }

    /// True once this caller's own timeout has passed (it then gives up what it waits for).
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().is_some_and(|t| Pin::new(t).poll(cx).is_ready())
    }

    fn timeout(&self) -> Poll<Result<V, Error>> {
        Poll::Ready(Err(Error::Timeout(self.opts.timeout.unwrap_or_default())))
    }

    /// The step after a slot is granted: ask the shared tier, or compute.
    fn after_slot(&self, lease: Lease<K, V>, permit: Option<Permit>, f: F) -> State<K, V, F> {
        #[cfg(feature = "shared")]
        if let Some(answer) = self.cache.remote.as_ref().and_then(|r| r.ask(&self.key)) {
            return State::Asking(lease, permit, answer, f);
        }
        State::Computing(lease, permit, None, Box::pin(f))
    }

    /// Finishes the lease with what was computed (after publishing it, with a shared tier).
    fn computed(
        &mut self,
        lease: Lease<K, V>,
        permit: Option<Permit>,
        remote: Option<RemoteLease>,
        result: Outcome<V>,
    ) -> Option<Poll<Result<V, Error>>> {
        #[cfg(feature = "shared")]
        if let (Some(r), Some(tier)) = (remote, self.cache.remote.as_ref()) {
            let written = tier.publish(&r, &result, &self.opts.tags, self.error_type);
            let wait = Delay::new(crate::remote::PUBLISH_WAIT);
            self.state = State::Publishing(lease, permit, result, written, wait);
            return None;
        }
        #[cfg(not(feature = "shared"))]
        let _ = (remote, self.error_type);
        drop(permit);
        Some(Poll::Ready(finish(lease, result, &self.opts.tag_refs())))
    }
}

impl<K, V, F> Future for Compute<'_, K, V, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: Future,
{
    type Output = Result<V, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<V, Error>> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, State::Done) {
                State::Begin(f) => {
                    let local = &this.cache.local;
                    let hash = match this.hash {
                        Some(h) => h,
                        None => {
                            let h = local.store.hash(&this.key);
                            if let Some(v) = local.store.lookup_with(h, &this.key, V::clone) {
                                return Poll::Ready(Ok(v));
                            }
                            this.hash = Some(h);
                            this.timer = this.opts.timeout.map(Delay::new);
                            h
                        }
                    };
                    let tags = this.opts.tag_refs();
                    this.state = match local.begin_missed(&this.key, hash, Some(&tags), Caller::NonBlocking) {
                        Err(e) => return Poll::Ready(Err(e)),
                        Ok(Begin::Hit(v)) => return Poll::Ready(Ok(v)),
                        Ok(Begin::Wait(w)) => State::Waiting(w, f),
                        Ok(Begin::Lease(lease)) => match local.slots.limited() {
                            true => {
                                let slot = lease.slot();
                                State::Slot(lease, slot, f)
                            }
                            false => this.after_slot(lease, None, f),
                        },
                    };
                }
                State::Waiting(mut w, f) => match Pin::new(&mut w).poll(cx) {
                    Poll::Ready(Completion::Value(v)) => return Poll::Ready(Ok(v)),
                    Poll::Ready(Completion::Failed(_)) if this.infallible => this.state = State::Begin(f),
                    Poll::Ready(Completion::Failed(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Completion::HandedOver) => this.state = State::Begin(f),
                    Poll::Pending if this.timed_out(cx) => return this.timeout(),
                    Poll::Pending => {
                        this.state = State::Waiting(w, f);
                        return Poll::Pending;
                    }
                },
                State::Slot(lease, mut slot, f) => match Pin::new(&mut slot).poll(cx) {
                    Poll::Ready(permit) => this.state = this.after_slot(lease, Some(permit), f),
                    Poll::Pending if this.timed_out(cx) => return this.timeout(),
                    Poll::Pending => {
                        this.state = State::Slot(lease, slot, f);
                        return Poll::Pending;
                    }
                },
                #[cfg(feature = "shared")]
                State::Asking(lease, permit, mut answer, f) => match Pin::new(&mut answer).poll(cx) {
                    Poll::Ready(a) => {
                        let remote = this.cache.remote.as_ref().expect("asked a shared tier");
                        match remote.answered(lease, a, this.infallible) {
                            crate::remote::Ask::Done(r) => return Poll::Ready(r),
                            crate::remote::Ask::Compute(lease, r) => {
                                this.state = State::Computing(lease, permit, r, Box::pin(f))
                            }
                        }
                    }
                    Poll::Pending if this.timed_out(cx) => return this.timeout(),
                    Poll::Pending => {
                        this.state = State::Asking(lease, permit, answer, f);
                        return Poll::Pending;
                    }
                },
                // The leader's own timeout does not cut its computation short: it runs to
                // completion once, for every caller waiting and for the store.
                State::Computing(lease, permit, remote, mut f) => {
                    let polled = {
                        let _computing = lease.enter_poll();
                        catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(cx)))
                    };
                    let result = match polled {
                        Ok(Poll::Pending) => {
                            this.state = State::Computing(lease, permit, remote, f);
                            return Poll::Pending;
                        }
                        Ok(Poll::Ready(out)) => Ok((this.convert)(out)),
                        Err(panic) => Err(panic),
                    };
                    drop(f);
                    if let Some(done) = this.computed(lease, permit, remote, result) {
                        return done;
                    }
                }
                #[cfg(feature = "shared")]
                State::Publishing(lease, permit, result, mut written, mut wait) => {
                    let done =
                        Pin::new(&mut written).poll(cx).is_ready() || Pin::new(&mut wait).poll(cx).is_ready();
                    if !done {
                        this.state = State::Publishing(lease, permit, result, written, wait);
                        return Poll::Pending;
                    }
                    drop(permit);
                    return Poll::Ready(finish(lease, result, &this.opts.tag_refs()));
                }
                State::Done => panic!("a coopcache call polled after it completed"),
            }
        }
    }
}

/// The future of [`Cache::get_or_compute_async`]: the value (an error it cannot return, such
/// as a recursion, panics as the sync form does).
#[must_use = "futures do nothing unless polled"]
pub struct GetOrCompute<'a, K, V, F: Future>(pub(super) Compute<'a, K, V, F>);

impl<K, V, F> Future for GetOrCompute<'_, K, V, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: Future,
{
    type Output = V;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<V> {
        match Pin::new(&mut self.get_mut().0).poll(cx) {
            Poll::Ready(Ok(v)) => Poll::Ready(v),
            Poll::Ready(Err(e)) => panic!("coopcache: {e}"),
            Poll::Pending => Poll::Pending,
        }
    }
}
