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

/// How a handle hears that the result arrived.
enum Notify<T> {
    Idle,
    Waker(Waker),
    /// A callback that takes the result.
    Callback(Callback<T>),
    /// A [`Ready`] view's callback: the result waits in the handle's slot.
    Signal(Box<dyn FnOnce() + Send>),
}

/// One handle's place: how it hears, and its copy of the result once it arrived.
struct Slot<T> {
    notify: Notify<T>,
    /// The result, cloned for this handle on the thread that set it (so the waiting side
    /// never clones: a binding's values may only be cloned holding its interpreter's lock).
    value: Option<T>,
    live: bool,
}

struct State<T> {
    value: Option<T>,
    slots: Vec<Slot<T>>,
    live: usize,
    on_abandon: Option<Box<dyn FnOnce() + Send>>,
}

impl<T: Clone> State<T> {
    /// A handle's result: its own copy, moved out, or (taken already, or the handle came
    /// after the result) a clone.
    fn take(&mut self, idx: usize) -> Option<T> {
        self.slots[idx].value.take().or_else(|| self.value.clone())
    }
}

/// The state behind the handles of one result.
pub(crate) struct Shared<T> {
    state: Mutex<State<T>>,
    cond: Condvar,
}

impl<T: Clone + Send + 'static> Shared<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State { value: None, slots: Vec::new(), live: 0, on_abandon: None }),
            cond: Condvar::new(),
        })
    }

    /// A new handle for one more waiting caller.
    pub(crate) fn handle(self: &Arc<Self>) -> Pending<T> {
        let mut st = self.state.lock();
        st.slots.push(Slot { notify: Notify::Idle, value: None, live: true });
        st.live += 1;
        Pending { shared: self.clone(), idx: st.slots.len() - 1 }
    }

    /// Sets the result (the first call wins), hands a copy to every live handle, and wakes
    /// them all.
    pub(crate) fn fire(&self, value: T) {
        let told: Vec<(Notify<T>, Option<T>)> = {
            let mut st = self.state.lock();
            if st.value.is_some() {
                return;
            }
            st.on_abandon = None;
            let told = st
                .slots
                .iter_mut()
                .filter(|s| s.live)
                .map(|s| match std::mem::replace(&mut s.notify, Notify::Idle) {
                    cb @ Notify::Callback(_) => (cb, Some(value.clone())),
                    other => {
                        s.value = Some(value.clone());
                        (other, None)
                    }
                })
                .collect();
            st.value = Some(value);
            told
        };
        self.cond.notify_all();
        for (n, v) in told {
            // One waiter's callback (a binding's code) that panics must not keep the others
            // from hearing.
            let result = catch_unwind(AssertUnwindSafe(|| match (n, v) {
                (Notify::Waker(w), _) => w.wake(),
                (Notify::Callback(cb), Some(v)) => cb(v),
                (Notify::Signal(cb), _) => cb(),
                _ => {}
            }));
            if let Err(panic) = result {
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

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut st = self.state.lock();
        loop {
            if st.value.is_some() {
                return true;
            }
            match deadline {
                None => self.cond.wait(&mut st),
                Some(d) => {
                    if self.cond.wait_until(&mut st, d).timed_out() {
                        return st.value.is_some();
                    }
                }
            }
        }
    }
}

/// What a [`Ready`] view needs of a result's state, whatever the result's type.
trait Signal: Send + Sync {
    fn arrived(&self) -> bool;
    fn wait_until(&self, deadline: Option<Instant>) -> bool;
    /// Registers how handle `idx` hears of the result; gives the callback back if the result
    /// has arrived already.
    fn register(&self, idx: usize, notify: Box<dyn FnOnce() + Send>) -> Result<(), Box<dyn FnOnce() + Send>>;
    fn register_waker(&self, idx: usize, waker: &Waker) -> bool;
}

impl<T: Clone + Send + 'static> Signal for Shared<T> {
    fn arrived(&self) -> bool {
        self.state.lock().value.is_some()
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        Shared::wait_until(self, deadline)
    }

    fn register(&self, idx: usize, notify: Box<dyn FnOnce() + Send>) -> Result<(), Box<dyn FnOnce() + Send>> {
        let mut st = self.state.lock();
        if st.value.is_some() {
            return Err(notify);
        }
        st.slots[idx].notify = Notify::Signal(notify);
        Ok(())
    }

    fn register_waker(&self, idx: usize, waker: &Waker) -> bool {
        let mut st = self.state.lock();
        if st.value.is_some() {
            return false;
        }
        match &mut st.slots[idx].notify {
            Notify::Waker(w) if w.will_wake(waker) => {}
            slot => *slot = Notify::Waker(waker.clone()),
        }
        true
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
        self.shared.state.lock().take(self.idx)
    }

    /// Blocks until the result arrives or `timeout` passes (`None` then). Bindings wait in
    /// short slices so they can notice signals (Ctrl-C) in between.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<T> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// Blocks until the result arrives or the deadline passes (`None`: no deadline).
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Option<T> {
        match self.shared.wait_until(deadline) {
            true => self.try_get(),
            false => None,
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
        if st.value.is_some() {
            let v = st.take(self.idx).expect("arrived");
            drop(st);
            f(v);
        } else {
            st.slots[self.idx].notify = Notify::Callback(Box::new(f));
        }
    }

    /// A view of this handle that says only whether the result has arrived, whatever its
    /// type, for a caller that waits in its own style and then takes the result from here.
    pub fn ready(&self) -> Ready {
        Ready { source: self.shared.clone(), idx: self.idx }
    }
}

/// Whether a result has arrived, without its type: what a binding waits on, in its own style
/// (blocking, `.await`, a callback), before it asks the call again. A view of one caller's
/// handle: dropping it gives nothing up.
///
/// ```
/// use coopcache::{Begin, Cache};
///
/// let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
/// let Begin::Lease(lease) = cache.begin(&1).unwrap() else { unreachable!() };
/// let Begin::Wait(waiter) = cache.begin(&1).unwrap() else { unreachable!() };
/// let ready = waiter.pending().ready();
/// assert!(ready.try_get().is_none());
/// lease.store(5);
/// ready.wait();
/// assert_eq!(waiter.pending().try_get().map(|c| matches!(c, coopcache::Completion::Value(5))), Some(true));
/// ```
#[derive(Clone)]
pub struct Ready {
    source: Arc<dyn Signal>,
    idx: usize,
}

impl Ready {
    /// `Some(())` if the result has arrived.
    pub fn try_get(&self) -> Option<()> {
        self.source.arrived().then_some(())
    }

    /// Blocks until the result arrives (`Some(())`) or the deadline passes (`None`; `None`
    /// for the deadline: no deadline).
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Option<()> {
        self.source.wait_until(deadline).then_some(())
    }

    /// Blocks until the result arrives.
    pub fn wait(&self) {
        self.source.wait_until(None);
    }

    /// Calls `f` once the result arrives: at once, on this thread, if it already has;
    /// otherwise on the thread that sets it. Replaces a callback set before.
    pub fn on_ready(&self, f: impl FnOnce(()) + Send + 'static) {
        if let Err(arrived) = self.source.register(self.idx, Box::new(move || f(()))) {
            arrived();
        }
    }
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready").field("arrived", &self.source.arrived()).finish()
    }
}

impl Future for Ready {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.source.register_waker(self.idx, cx.waker()) {
            true => Poll::Pending,
            false => Poll::Ready(()),
        }
    }
}

impl<T: Clone + Send + 'static> Future for Pending<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if self.shared.register_waker(self.idx, cx.waker()) {
            return Poll::Pending;
        }
        Poll::Ready(self.try_get().expect("arrived"))
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        let abandon = {
            let mut st = self.shared.state.lock();
            let slot = &mut st.slots[self.idx];
            slot.live = false;
            slot.notify = Notify::Idle;
            slot.value = None;
            st.live -= 1;
            if st.live == 0 && st.value.is_none() { st.on_abandon.take() } else { None }
        };
        if let Some(f) = abandon {
            f();
        }
    }
}
