//! Time as the cache sees it: the system's monotonic clock, or a manual one for tests.
//!
//! The hit path reads the kernel's coarse monotonic clock (a few ns, updated every tick of
//! 1-4 ms) instead of the precise one (tens of ns in a VM, most of a hit's cost). Coarse time is
//! never ahead of precise time and at most one tick behind it, so an entry is certainly fresh
//! when its coarse idle time plus one tick is under the duration, certainly expired when its
//! coarse idle time alone reaches it, and only in between is the precise clock read. Expiry
//! stays exact: an idle entry is never returned late.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The clock a cache reads for idle expiry. Tests drive a [`Clock::manual`] one instead of
/// sleeping, so expiry tests assert behaviour, not timing.
///
/// ```
/// use coopcache::Clock;
/// use std::time::Duration;
///
/// let clock = Clock::manual();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - t0, Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicU64>>);

#[cfg(target_os = "linux")]
const COARSE: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
#[cfg(not(target_os = "linux"))]
const COARSE: libc::clockid_t = libc::CLOCK_MONOTONIC;

/// How far the coarse clock may lag the precise one: one kernel tick, at most 10 ms (HZ >= 100).
/// A bound, not a measurement, so reading it costs nothing.
#[cfg(target_os = "linux")]
const COARSE_SLACK: u64 = 10_000_000;
#[cfg(not(target_os = "linux"))]
const COARSE_SLACK: u64 = 0;

fn read(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Clock {
    /// The system's monotonic clock (the default).
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that moves only when [`Clock::advance`] is called; starts at zero.
    pub fn manual() -> Clock {
        Clock(Some(Arc::new(AtomicU64::new(0))))
    }

    /// Moves a manual clock forward (a system clock ignores it).
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.0 {
            t.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    /// The current time (since boot for the system clock, since creation for a manual one).
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.precise())
    }

    /// The time the shared tier writes with a value, in milliseconds, for other processes to
    /// tell its age: the wall clock (processes on several machines need their clocks in sync
    /// to well under `refresh_after`), or a manual clock's own time (tests whose caches share
    /// one manual clock then stand for processes sharing the wall clock).
    #[cfg(feature = "redis")]
    pub(crate) fn wall_ms(&self) -> u64 {
        match &self.0 {
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            Some(t) => t.load(Ordering::SeqCst) / 1_000_000,
        }
    }

    /// Cheap, possibly up to [`Clock::slack`] behind [`Clock::precise`], never ahead.
    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        match &self.0 {
            None => read(COARSE),
            Some(t) => t.load(Ordering::SeqCst),
        }
    }

    pub(crate) fn precise(&self) -> u64 {
        match &self.0 {
            None => read(libc::CLOCK_MONOTONIC),
            Some(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Whether something last active at `last` (a [`Clock::nanos`] reading) has been idle for
    /// less than `duration` at `now` (another one), exactly. A manual clock has no slack, but
    /// allowing it one changes no answer (its precise reading is `now` again) and spares the
    /// hit a branch on the kind of clock.
    #[inline]
    pub(crate) fn fresh(&self, last: u64, now: u64, duration: u64) -> bool {
        let idle = now.saturating_sub(last);
        if idle.saturating_add(COARSE_SLACK) < duration {
            return true;
        }
        idle < duration && self.precise().saturating_sub(last) < duration
    }
}
