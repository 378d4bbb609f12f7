//! Time as the cache sees it: the system's monotonic clock, or a manual one for tests.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

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

    /// The time since this clock's start.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos())
    }

    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        match &self.0 {
            None => EPOCH.elapsed().as_nanos() as u64,
            Some(t) => t.load(Ordering::SeqCst),
        }
    }
}
