//! One-shot results that many callers wait for, each in its own way.
//!
//! A [`Pending`] is one caller's handle on a result that is set once. It can be waited on
//! blocking with a timeout (a binding checks for Ctrl-C between waits), awaited as a future under
//! any runtime, or given a callback (for event loops that are not Rust's). One type serves
//! threads, tasks and callbacks alike, so one flight can be shared by all of them.
//!
//! The shared state counts its live handles: a handle dropped before the result arrives is a
//! caller who gave up, and when the last one goes, the owner's abandon hook runs (a binding
//! cancels a detached computation nobody waits for).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex};

type Callback<T> = Box<dyn FnOnce(T) + Send>;

enum Notify<T> {
    Idle,
    Waker(Waker),
    Callback(Callback<T>),
}

struct State<T> {
    value: Option<T>,
    notify: Vec<Notify<T>>,
    live: usize,
    on_abandon: Option<Box<dyn FnOnce() + Send>>,
}

/// The state behind the handles of one result.
pub(crate) struct Shared<T> {
    state: Mutex<State<T>>,
    cond: Condvar,
}

impl<T: Clone + Send + 'static> Shared<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State { value: None, notify: Vec::new(), live: 0, on_abandon: None }),
            cond: Condvar::new(),
        })
    }

    /// A new handle for one more waiting caller.
    pub(crate) fn handle(self: &Arc<Self>) -> Pending<T> {
        let mut st = self.state.lock();
        st.notify.push(Notify::Idle);
        st.live += 1;
        Pending { shared: self.clone(), idx: st.notify.len() - 1 }
    }

    /// Sets the result (the first call wins) and wakes every waiter.
    pub(crate) fn fire(&self, value: T) {
        let notify = {
            let mut st = self.state.lock();
            if st.value.is_some() {
                return;
            }
            st.value = Some(value.clone());
            st.on_abandon = None;
            st.notify.iter_mut().map(|n| std::mem::replace(n, Notify::Idle)).collect::<Vec<_>>()
        };
        self.cond.notify_all();
        for n in notify {
            // One waiter's callback (a binding's code) that panics must not keep the others
            // from hearing.
            let told = catch_unwind(AssertUnwindSafe(|| match n {
                Notify::Idle => {}
                Notify::Waker(w) => w.wake(),
                Notify::Callback(cb) => cb(value.clone()),
            }));
            if let Err(panic) = told {
                let why = crate::error::Error::from_panic(&*panic);
                tracing::error!(target: "coopcache", %why, "a waiter's callback panicked");
            }
        }
    }

    /// Handles still waiting (not dropped).
    pub(crate) fn live(&self) -> usize {
        self.state.lock().live
    }

    /// Runs `f` once when the last live handle is dropped before the result arrives.
    pub(crate) fn on_abandon(&self, f: Box<dyn FnOnce() + Send>) {
        self.state.lock().on_abandon = Some(f);
    }
}

/// One caller's handle on a result that arrives once.
///
/// Wait for it blocking ([`Pending::wait_timeout`]), as a future (`.await`), or with a
/// callback ([`Pending::on_ready`]). Dropping the handle before the result arrives means this
/// caller gave up; the result still reaches every other handle.
///
/// ```
/// use coopcache::{Begin, Cache, Completion};
///
/// let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
/// let Begin::Lease(lease) = cache.begin(&1).unwrap() else { unreachable!() };
/// let Begin::Wait(waiter) = cache.begin(&1).unwrap() else { unreachable!() };
/// let (tx, rx) = std::sync::mpsc::channel();
/// waiter.pending().on_ready(move |c| tx.send(matches!(c, Completion::Value(2))).unwrap());
/// lease.store(2); // the callback runs here, on the thread that finished the flight
/// assert!(rx.recv().unwrap());
/// ```
#[must_use = "dropping a Pending gives up waiting"]
pub struct Pending<T> {
    shared: Arc<Shared<T>>,
    idx: usize,
}

impl<T: Clone + Send + 'static> Pending<T> {
    /// The result if it has arrived, without waiting.
    pub fn try_get(&self) -> Option<T> {
        self.shared.state.lock().value.clone()
    }

    /// Blocks until the result arrives or `timeout` passes (`None` then). Bindings wait in
    /// short slices so they can notice signals (Ctrl-C) in between.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<T> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// Blocks until the result arrives or the deadline passes (`None`: no deadline).
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Option<T> {
        let mut st = self.shared.state.lock();
        loop {
            if let Some(v) = &st.value {
                return Some(v.clone());
            }
            match deadline {
                None => self.shared.cond.wait(&mut st),
                Some(d) => {
                    if self.shared.cond.wait_until(&mut st, d).timed_out() {
                        return st.value.clone();
                    }
                }
            }
        }
    }

    /// Blocks until the result arrives.
    pub fn wait(&self) -> T {
        self.wait_deadline(None).expect("no deadline")
    }

    /// Calls `f` with the result once it arrives: at once, on this thread, if it already has;
    /// otherwise on the thread that sets it. Replaces a callback set before. Dropping this
    /// handle first cancels the callback.
    pub fn on_ready(&self, f: impl FnOnce(T) + Send + 'static) {
        let mut st = self.shared.state.lock();
        if let Some(v) = st.value.clone() {
            drop(st);
            f(v);
        } else {
            st.notify[self.idx] = Notify::Callback(Box::new(f));
        }
    }
}

/// A result handed to one waiter on the thread that sets it, with a [`Pending`] of its own
/// (`()`) to wait for it in any style. The result is moved into the slot by the callback that
/// runs where it is set, so the waiter never clones it (a binding's values may only be cloned
/// on a thread that holds its interpreter's lock).
pub(crate) struct Handover<T, S = Pending<T>> {
    /// Keeps the callback alive, and what it stands for (a waiter still waits).
    _source: S,
    slot: Arc<Mutex<Option<T>>>,
    ready: Arc<Shared<()>>,
}

impl<T: Clone + Send + 'static> Handover<T> {
    /// Waits for `source`'s result this way.
    pub(crate) fn of(source: Pending<T>) -> Self {
        Handover::new(source, |p| p)
    }
}

impl<T: Clone + Send + 'static, S> Handover<T, S> {
    /// Waits for the result of `pending(&source)` this way, keeping `source` alive meanwhile.
    pub(crate) fn new(source: S, pending: impl FnOnce(&S) -> &Pending<T>) -> Self {
        let (slot, ready) = (Arc::new(Mutex::new(None)), Shared::new());
        let (s, r) = (slot.clone(), ready.clone());
        pending(&source).on_ready(move |v| {
            *s.lock() = Some(v);
            r.fire(());
        });
        Handover { _source: source, slot, ready }
    }

    /// The result, once it has arrived.
    pub(crate) fn take(&self) -> Option<T> {
        self.slot.lock().take()
    }

    /// A handle that is ready once the result has arrived.
    pub(crate) fn signal(&self) -> Pending<()> {
        self.ready.handle()
    }
}

impl<T: Clone + Send + 'static> Future for Pending<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut st = self.shared.state.lock();
        if let Some(v) = &st.value {
            return Poll::Ready(v.clone());
        }
        match &mut st.notify[self.idx] {
            Notify::Waker(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Notify::Waker(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        let abandon = {
            let mut st = self.shared.state.lock();
            st.notify[self.idx] = Notify::Idle;
            st.live -= 1;
            if st.live == 0 && st.value.is_none() { st.on_abandon.take() } else { None }
        };
        if let Some(f) = abandon {
            f();
        }
    }
}
