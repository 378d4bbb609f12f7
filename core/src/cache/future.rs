//! The async forms of a call, as one named future driving the call's state machine (`call`).
//!
//! A named type rather than an `async fn`: its `Send` is that of its parts, so a call with
//! borrowed key or value types (`Cache<(&'static str, u32), &'static str>`) can be spawned,
//! which rustc's check of an `async fn`'s future refuses ("implementation of `Send` is not
//! general enough"). The computation is boxed (pinned) only when this caller leads, so a hit
//! allocates nothing.

use std::any::Any;
use std::future::Future;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_timer::Delay;

use super::call::{Call, Lead, LeadStep, Step};
use super::{Cache, CallOptions, Found, outcome};
use crate::error::{BoxError, Error};
use crate::flight::{Caller, Computed};
use crate::wait::Ready;

/// Options of the forms that take none.
pub(super) static NO_OPTIONS: CallOptions =
    CallOptions { timeout: None, tags: Vec::new(), refresh_after: None };

/// The future of [`Cache::compute_async`] (and of the other async forms): the value, or why
/// there is none. Dropping it gives up: a waiter stops waiting; a leader's computation is
/// dropped and a waiter takes over.
#[must_use = "futures do nothing unless polled"]
pub struct Compute<'a, K, V, F: Future> {
    cache: &'a Cache<K, V>,
    /// The key, until the call starts (at the first poll).
    key: Option<K>,
    opts: &'a CallOptions,
    /// A caller of the infallible forms computes for itself when another caller's computation
    /// failed.
    infallible: bool,
    report: Report<F::Output, V>,
    f: Option<F>,
    timer: Option<Delay>,
    call: Option<Call<K, V>>,
    lead: Option<Box<Lead<K, V>>>,
    /// What this caller waits for, and whether its own timeout bounds that wait.
    waiting: Option<(Ready, bool)>,
    /// The computation, once this caller leads and runs it.
    computing: Option<Pin<Box<F>>>,
    /// The computation's panic, resumed once every caller has heard of it.
    panic: Option<Box<dyn Any + Send>>,
}

/// Turns a computation's output (or panic, kept to resume later) into what its lead reports.
type Report<T, V> = fn(std::thread::Result<T>, &mut Option<Box<dyn Any + Send>>) -> super::Outcome<V>;

// The computation is polled only once boxed (`Pin<Box<F>>`): nothing in here is ever pinned
// in place, so the future can move whatever `F` is.
impl<K, V, F: Future> Unpin for Compute<'_, K, V, F> {}

/// Reports a computation's result with the error type `E` (a named function, so the future's
/// field is a plain `fn` pointer).
fn report<V, E: Into<BoxError>>(
    r: std::thread::Result<Result<Computed<V>, E>>,
    panic: &mut Option<Box<dyn Any + Send>>,
) -> super::Outcome<V> {
    outcome(r, std::any::type_name::<E>(), panic)
}

fn report_value<V>(r: std::thread::Result<V>, panic: &mut Option<Box<dyn Any + Send>>) -> super::Outcome<V> {
    outcome(r.map(|v| Ok::<_, std::convert::Infallible>(Computed::Store(v))), "(infallible)", panic)
}

fn report_result<V, E: Into<BoxError>>(
    r: std::thread::Result<Result<V, E>>,
    panic: &mut Option<Box<dyn Any + Send>>,
) -> super::Outcome<V> {
    outcome(r.map(|r| r.map(Computed::Store)), std::any::type_name::<E>(), panic)
}

impl<'a, K, V, F> Compute<'a, K, V, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: Future,
{
    fn new(
        cache: &'a Cache<K, V>,
        key: K,
        opts: &'a CallOptions,
        infallible: bool,
        f: F,
        report: Report<F::Output, V>,
    ) -> Self {
        Compute {
            cache,
            key: Some(key),
            opts,
            infallible,
            report,
            f: Some(f),
            timer: None,
            call: None,
            lead: None,
            waiting: None,
            computing: None,
            panic: None,
        }
    }

    /// The future of [`Cache::compute_async`].
    pub(super) fn with_options<E>(cache: &'a Cache<K, V>, key: K, opts: &'a CallOptions, f: F) -> Self
    where
        F: Future<Output = Result<Computed<V>, E>>,
        E: Into<BoxError>,
    {
        Compute::new(cache, key, opts, false, f, report::<V, E>)
    }

    /// The future of [`Cache::try_get_or_compute_async`].
    pub(super) fn try_get<E>(cache: &'a Cache<K, V>, key: K, f: F) -> Self
    where
        F: Future<Output = Result<V, E>>,
        E: Into<BoxError>,
    {
        Compute::new(cache, key, &NO_OPTIONS, false, f, report_result::<V, E>)
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
        if this.call.is_none() {
            let key = this.key.take().expect("a coopcache call polled after it completed");
            let caller = Caller::NonBlocking;
            this.call = Some(match this.cache.find(&key) {
                Found::Hit(v) => return Poll::Ready(Ok(v)),
                Found::Due(due) => match Call::refreshing(this.cache, key, this.opts, caller, due) {
                    Ok(call) => call,
                    Err(stale) => return Poll::Ready(Ok(stale)),
                },
                Found::Miss => {
                    let serializes = this.cache.has_codec();
                    Call::new(this.cache, key, this.opts, caller, this.infallible, serializes)
                }
            });
            this.timer = this.opts.timeout.map(Delay::new);
        }
        loop {
            // The leader's own timeout does not cut its computation short: it runs to
            // completion once, for every caller waiting and for the store.
            if let Some(fut) = &mut this.computing {
                let lead = this.lead.as_mut().expect("a computation belongs to a lead");
                let polled = {
                    let _computing = lead.enter_poll();
                    catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)))
                };
                let result = match polled {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(out)) => Ok(out),
                    Err(panic) => Err(panic),
                };
                this.computing = None;
                lead.computed((this.report)(result, &mut this.panic));
                continue;
            }
            if let Some((ready, bounded)) = &mut this.waiting {
                if Pin::new(ready).poll(cx).is_pending() {
                    let timed_out =
                        *bounded && this.timer.as_mut().is_some_and(|t| Pin::new(t).poll(cx).is_ready());
                    if !timed_out {
                        return Poll::Pending;
                    }
                    // Give up: the lead (if any) hands the key over, the call stops waiting.
                    (this.waiting, this.lead, this.call) = (None, None, None);
                    return Poll::Ready(Err(Error::Timeout(this.opts.timeout.unwrap_or_default())));
                }
                this.waiting = None;
            }
            if let Some(lead) = &mut this.lead {
                match lead.step() {
                    LeadStep::Wait(ready) => this.waiting = Some((ready, true)),
                    LeadStep::Confirm(ready) => this.waiting = Some((ready, false)),
                    LeadStep::Decode(bytes) => lead.decoded(this.cache.decode(&bytes)),
                    LeadStep::Encode(v) => lead.encoded(this.cache.encode(&v)),
                    LeadStep::Compute => {
                        let f = this.f.take().expect("a caller computes once");
                        this.computing = Some(Box::pin(f));
                    }
                    LeadStep::Done => this.lead = None,
                }
                continue;
            }
            match this.call.as_mut().expect("started").step() {
                Step::Done(r) => {
                    this.call = None;
                    return Poll::Ready(match this.panic.take() {
                        Some(p) => resume_unwind(p),
                        None => r,
                    });
                }
                Step::Wait(ready) => this.waiting = Some((ready, true)),
                Step::Lead(lead) => this.lead = Some(lead),
            }
        }
    }
}

/// The future of [`Cache::get_or_compute_async`]: the value (an error it cannot return, such
/// as a recursion, panics as the sync form does).
#[must_use = "futures do nothing unless polled"]
pub struct GetOrCompute<'a, K, V, F: Future>(Compute<'a, K, V, F>);

impl<'a, K, V, F> GetOrCompute<'a, K, V, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: Future<Output = V>,
{
    pub(super) fn new(cache: &'a Cache<K, V>, key: K, f: F) -> Self {
        GetOrCompute(Compute::new(cache, key, &NO_OPTIONS, true, f, report_value::<V>))
    }
}

impl<K, V, F> Future for GetOrCompute<'_, K, V, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: Future<Output = V>,
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
