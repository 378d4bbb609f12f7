//! The crate's synchronization primitives, in one place so that tests can swap them.
//!
//! Crate code imports locks, atomics and `thread_local!` from here, never from `parking_lot` or
//! `std::sync` directly. Normal builds get `parking_lot`'s locks and `std`'s atomics unchanged
//! (plain re-exports, so no cost). With the `shuttle` feature (model tests only: see
//! `tests/models.rs`) the same names are backed by the [shuttle] model checker, which runs each
//! test many times under controlled, reproducible thread schedules and reports deadlocks.
//!
//! Under `shuttle` the primitives only work inside an execution (`shuttle::check_random` and
//! friends); used outside one they panic ("ExecutionState is not set"). So the feature is for
//! `cargo test --features shuttle --test models` runs, never for a normal build or test run.
//!
//! Rules that keep the two builds equivalent:
//!
//! - A `static` must not hold one of these primitives directly: a shuttle primitive keeps its
//!   state (waiters, holder, vector clock) across executions and is not thread-safe across the
//!   real threads that `cargo test` and `PortfolioRunner` run executions on. A global counter
//!   that only hands out unique numbers stays a `std` atomic (not a synchronization point worth
//!   modelling); a global lock goes in [`global!`], which shuttle re-creates for each execution.
//! - Thread-locals are declared with [`thread_local!`] from here, so that each shuttle thread
//!   (which all run on one real thread) gets its own.
//! - No real threads inside an execution: code that spawns one (the sweeper) is compiled out
//!   under `shuttle`; a model spawns `shuttle::thread`s and drives such work itself.
//!
//! [shuttle]: https://docs.rs/shuttle

#[cfg(not(feature = "shuttle"))]
pub(crate) use parking_lot::{Condvar, Mutex, RwLock, RwLockWriteGuard};
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::thread_local;

#[cfg(feature = "shuttle")]
pub(crate) use model::{Condvar, Mutex, RwLock, RwLockWriteGuard};
/// Atomics. Shuttle runs every operation as `SeqCst` and yields to its scheduler at each one,
/// so interleavings between atomics are explored but weak-memory reorderings are not.
#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
/// Per-thread values; under `shuttle` per *shuttle* thread (`std`'s would be shared by all of
/// them, as they run on one real thread).
#[cfg(feature = "shuttle")]
pub(crate) use shuttle::thread_local;

/// Declares a lazily initialised global (`static NAME: T = init;`, private).
///
/// Normally a `std::sync::LazyLock`. Under `shuttle` a `shuttle::lazy_static!`, whose value
/// belongs to the current execution: created on first use in it and dropped when it ends, so
/// every execution (and a replay) starts from a fresh global, and executions running at the
/// same time on other real threads do not share it. Either way it derefs to `T`.
macro_rules! global {
    ($(#[$attr:meta])* static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(not(feature = "shuttle"))]
        $(#[$attr])*
        static $name: std::sync::LazyLock<$t> = std::sync::LazyLock::new(|| $init);
        #[cfg(feature = "shuttle")]
        shuttle::lazy_static! { $(#[$attr])* static ref $name: $t = $init; }
    };
}
pub(crate) use global;

/// `parking_lot`'s API over shuttle's `std`-style primitives.
#[cfg(feature = "shuttle")]
mod model {
    use std::ops::{Deref, DerefMut};
    use std::sync::PoisonError;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::time::Instant;

    use shuttle::rand::Rng;
    use shuttle::sync as s;

    // `parking_lot` locks do not poison. A shuttle execution fails as soon as a thread panics,
    // so a poisoned lock is only ever seen by destructors during teardown: take the data anyway.

    /// A mutex with `parking_lot`'s API.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(s::Mutex<T>);

    /// The guard holds shuttle's guard in an `Option` so that [`Condvar`] can unlock and relock
    /// in place (`parking_lot` waits take `&mut MutexGuard`, shuttle's take it by value).
    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a s::Mutex<T>,
        guard: Option<s::MutexGuard<'a, T>>,
    }

    impl<T> Mutex<T> {
        #[track_caller]
        pub(crate) const fn new(value: T) -> Self {
            Mutex(s::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard { mutex: &self.0, guard: Some(relock(&self.0)) }
        }
    }

    fn relock<T>(mutex: &s::Mutex<T>) -> s::MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.guard.as_deref().expect("locked")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard.as_deref_mut().expect("locked")
        }
    }

    /// A reader-writer lock with `parking_lot`'s API; its guards are shuttle's.
    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(s::RwLock<T>);

    pub(crate) use s::{RwLockReadGuard, RwLockWriteGuard};

    impl<T> RwLock<T> {
        #[track_caller]
        pub(crate) const fn new(value: T) -> Self {
            RwLock(s::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Whether a timed wait ended by timing out (`parking_lot`'s type has no public constructor).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(self) -> bool {
            self.0
        }
    }

    /// A condition variable with `parking_lot`'s API.
    ///
    /// Untimed waits are shuttle's: they block until notified (no spurious wakeups, like
    /// `parking_lot`), and a model where every thread blocks fails as a deadlock.
    ///
    /// Timed waits need a model of time, which shuttle lacks: its `wait_timeout` never times
    /// out, so a waiter nobody notifies would be reported as a deadlock although the real one
    /// returns at its deadline, and the timeout path would never run. Here a timed wait instead
    /// unlocks and stays runnable: each time the scheduler runs it, it returns `timed_out() ==
    /// false` if a notification came since it started waiting, otherwise it times out with
    /// probability 1/2 (a choice recorded in the schedule, so replays repeat it) or yields. The
    /// deadline itself is ignored: the model lets the timeout fire at any point, which covers
    /// every real deadline, and it always fires eventually, so timed waits never deadlock.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar {
        inner: s::Condvar,
        /// Counts notifications, for timed waiters (which are not among `inner`'s waiters). Not
        /// a shuttle atomic on purpose: it is read and bumped inside steps, not as steps.
        notified: AtomicU64,
    }

    impl Condvar {
        #[track_caller]
        pub(crate) const fn new() -> Self {
            Condvar { inner: s::Condvar::new(), notified: AtomicU64::new(0) }
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let g = guard.guard.take().expect("locked");
            guard.guard = Some(self.inner.wait(g).unwrap_or_else(PoisonError::into_inner));
        }

        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            // Read under the lock: a notification after this point is one a real waiter sees.
            let seen = self.notified.load(SeqCst);
            drop(guard.guard.take());
            let timed_out = loop {
                if self.notified.load(SeqCst) != seen {
                    break false;
                }
                if shuttle::rand::thread_rng().gen_bool(0.5) {
                    break true;
                }
                shuttle::thread::yield_now();
            };
            // Relocking is a scheduling point, so other threads may run between the timeout
            // and the return, as they may for real.
            guard.guard = Some(relock(guard.mutex));
            WaitTimeoutResult(timed_out)
        }

        /// Wakes one untimed waiter, and every timed one: an over-approximation (a real
        /// `notify_one` wakes a single thread), harmless to callers that re-check their condition
        /// in a loop. The crate itself only uses `notify_all`.
        #[allow(dead_code)]
        pub(crate) fn notify_one(&self) {
            self.inner.notify_one();
            self.notified.fetch_add(1, SeqCst);
        }

        pub(crate) fn notify_all(&self) {
            self.inner.notify_all();
            self.notified.fetch_add(1, SeqCst);
        }
    }
}
