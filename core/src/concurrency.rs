//! Backpressure: at most `max_concurrency` computations of a cache at once.
//!
//! A leader asks for a slot before it computes; with none free it queues (first come, first
//! served) and waits like any other waiter: blocking, awaited or by callback. A [`Permit`] gives
//! its slot to the next live waiter when its last clone is dropped; a queued caller that gave up
//! is skipped, and a permit handed to one that gave up at that very moment comes back when the
//! handle's state is dropped, so no slot is ever lost. A lower limit takes effect as slots free
//! up: queued callers keep their place and are granted in turn, never dropped.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::sync::{AtomicBool, Mutex, Ordering::Relaxed};
use crate::wait::{Pending, Shared};

struct State {
    limit: Option<usize>,
    in_use: usize,
    queue: VecDeque<Arc<Shared<Permit>>>,
}

pub(crate) struct Slots {
    state: Mutex<State>,
    /// Mirrors `state.limit.is_some()`, so unlimited caches skip the queue without locking.
    limited: AtomicBool,
}

/// The right to run one computation; the slot frees when the last clone is dropped.
#[derive(Clone)]
pub struct Permit {
    _slot: Option<Arc<Held>>,
}

/// Frees its slot on drop.
struct Held(Arc<Slots>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Slots {
    pub(crate) fn new(limit: Option<usize>) -> Arc<Slots> {
        Arc::new(Slots {
            state: Mutex::new(State { limit, in_use: 0, queue: VecDeque::new() }),
            limited: AtomicBool::new(limit.is_some()),
        })
    }

    /// Whether computations need a slot at all.
    pub(crate) fn limited(&self) -> bool {
        self.limited.load(Relaxed)
    }

    fn permit(self: &Arc<Self>) -> Permit {
        Permit { _slot: Some(Arc::new(Held(self.clone()))) }
    }

    /// A slot, at once if one is free, otherwise when one frees up.
    pub(crate) fn acquire(self: &Arc<Self>) -> Pending<Permit> {
        let shared = Shared::new();
        let handle = shared.handle();
        let mut st = self.state.lock();
        match st.limit {
            None => {
                drop(st);
                shared.fire(Permit { _slot: None });
            }
            Some(limit) if st.in_use < limit => {
                st.in_use += 1;
                drop(st);
                shared.fire(self.permit());
            }
            Some(_) => st.queue.push_back(shared),
        }
        handle
    }

    /// A permit for a computation that needs no slot of its own.
    pub(crate) fn unlimited() -> Pending<Permit> {
        let shared = Shared::new();
        let handle = shared.handle();
        shared.fire(Permit { _slot: None });
        handle
    }

    /// Hands a freed slot to the next live waiter, or marks it free. Over a lowered limit, the
    /// slot is retired instead and the queue keeps waiting for one within the limit.
    fn release(self: &Arc<Self>) {
        let next = {
            let mut st = self.state.lock();
            let within = st.limit.is_none_or(|l| st.in_use <= l);
            loop {
                match st.queue.pop_front() {
                    Some(w) if w.live() == 0 => continue,
                    Some(w) if within => break Some(w),
                    Some(w) => {
                        st.queue.push_front(w);
                        st.in_use = st.in_use.saturating_sub(1);
                        break None;
                    }
                    None => {
                        // Saturating: a fork's child starts at zero, under permits its forking
                        // thread may hold.
                        st.in_use = st.in_use.saturating_sub(1);
                        break None;
                    }
                }
            }
        };
        if let Some(w) = next {
            w.fire(self.permit());
        }
    }

    /// In a fork's child: the slots the parent's other threads held are free (those threads
    /// do not exist there), and nobody waits for one.
    pub(crate) fn after_fork(&self) {
        let mut st = self.state.lock();
        st.in_use = 0;
        st.queue.clear();
    }

    pub(crate) fn set_limit(self: &Arc<Self>, limit: Option<usize>) {
        let granted: Vec<_> = {
            let mut st = self.state.lock();
            st.limit = limit;
            self.limited.store(limit.is_some(), Relaxed);
            let mut granted = Vec::new();
            while st.limit.is_none_or(|l| st.in_use < l) {
                match st.queue.pop_front() {
                    Some(w) if w.live() == 0 => {}
                    Some(w) => {
                        st.in_use += 1;
                        granted.push(w);
                    }
                    None => break,
                }
            }
            granted
        };
        for w in granted {
            w.fire(self.permit());
        }
    }
}
