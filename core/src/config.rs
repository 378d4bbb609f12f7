//! Settings of a cache and their validation.
//!
//! Every setting is checked when the cache is configured, never on first use, and a bad one is a
//! [`ConfigError`] that names the setting, the value and what would be accepted.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How much a cache may hold: keys + values + a per-entry overhead, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    /// A number of bytes. `0` stores nothing (every call computes, concurrent callers still share).
    Bytes(u64),
    /// A fraction in (0, 1] of the machine's total memory, resolved when configured.
    Fraction(f64),
}

impl MemoryLimit {
    /// 50 MiB, the default.
    pub const DEFAULT: MemoryLimit = MemoryLimit::Bytes(50 * 1024 * 1024);

    /// The limit in bytes, or why the setting is invalid.
    pub fn resolve(self) -> Result<u64, ConfigError> {
        match self {
            MemoryLimit::Bytes(b) => Ok(b),
            MemoryLimit::Fraction(f) if f > 0.0 && f <= 1.0 => Ok((total_memory() as f64 * f) as u64),
            MemoryLimit::Fraction(f) => Err(ConfigError::new(
                "memory_limit",
                f,
                "a number of bytes >= 0, or a fraction of the machine's memory in (0, 1]",
            )),
        }
    }

    /// Reads a limit given as a number, as the dynamic languages pass it: a float in (0, 1]
    /// is a fraction of the machine's memory (`is_float` says whether the language's value was
    /// a float: Python's `1.0`, not `1`); any other whole number >= 0 is bytes.
    pub fn from_number(n: f64, is_float: bool) -> Result<MemoryLimit, ConfigError> {
        if is_float && n > 0.0 && n <= 1.0 {
            Ok(MemoryLimit::Fraction(n))
        } else if n >= 0.0 && n.fract() == 0.0 && n <= u64::MAX as f64 {
            Ok(MemoryLimit::Bytes(n as u64))
        } else {
            Err(ConfigError::new(
                "memory_limit",
                n,
                "a whole number of bytes >= 0, or a fraction of the machine's memory in (0, 1]",
            ))
        }
    }
}

/// Total physical memory of the machine, in bytes.
pub fn total_memory() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
    let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages <= 0 || size <= 0 { 0 } else { pages as u64 * size as u64 }
}

/// What a full cache does with a new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// The new value is returned but not stored; stored ones keep being served.
    #[default]
    Reject,
    /// Least recently used entries are dropped until the new one fits.
    Evict,
}

impl FromStr for WhenFull {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "reject" => Ok(WhenFull::Reject),
            "evict" => Ok(WhenFull::Evict),
            other => Err(ConfigError::new("when_full", format!("{other:?}"), "\"reject\" or \"evict\"")),
        }
    }
}

impl fmt::Display for WhenFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WhenFull::Reject => "reject",
            WhenFull::Evict => "evict",
        })
    }
}

/// The settings of a cache (the README's "Options"); `Settings::default()` gives the defaults.
///
/// ```
/// use coopcache::{MemoryLimit, Settings, WhenFull};
/// use std::time::Duration;
///
/// let s = Settings::default()
///     .memory_limit(MemoryLimit::Bytes(1 << 20))
///     .cache_duration(Duration::from_secs(10))
///     .when_full(WhenFull::Evict)
///     .max_concurrency(Some(4));
/// assert!(s.validate().is_ok());
/// assert_eq!(s.cache_duration, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// Bytes the cache may hold. Default 50 MiB.
    pub memory_limit: MemoryLimit,
    /// Idle time after the last read or write of an entry until it is deleted. Default 300 s.
    pub cache_duration: Duration,
    /// What a full cache does. Default [`WhenFull::Reject`].
    pub when_full: WhenFull,
    /// At most this many computations of the cache at once; `None` (default) for no limit.
    pub max_concurrency: Option<usize>,
    /// Refresh ahead (Caffeine's `refreshAfterWrite`): a hit on a value computed longer ago than
    /// this returns it at once and starts one recomputation of the key, whose value replaces it
    /// when done; other hits meanwhile get the stored value. `None` (default): values are only
    /// recomputed once they are gone. Measured from when the value was computed, by the cache's
    /// clock; it applies to values stored from then on. Idle expiry (`cache_duration`) is not
    /// changed by it: an entry nobody reads still goes.
    pub refresh_after: Option<Duration>,
    /// What a refresh that fails does to the stored value. `true` (default, as in Caffeine and
    /// lru-cache's `allowStaleOnFetchRejection`): it is kept and served until the next refresh
    /// (due at the next hit) succeeds or it expires. `false`: it is removed, so the next call
    /// computes in the foreground and sees the error. Either way the failure is counted
    /// (`refreshes_failed`) and reported ([`crate::Event::RefreshFailed`]).
    pub serve_stale_on_error: bool,
    /// Probabilistic early refresh (XFetch, Vattani et al., VLDB 2015), for values with a
    /// `refresh_after`: `beta` > 0 (1.0 is the paper's choice; larger refreshes earlier). Each
    /// value computed here falls due `beta * (its computation's time) * E` before its
    /// `refresh_after`, `E` drawn once per value from the exponential distribution, so the
    /// chance that it is refreshed by a given age grows as it nears `refresh_after`, faster for
    /// values slow to compute. Processes sharing a value then draw their own moments and do
    /// not all fall due at once. `None` (default): due exactly at `refresh_after`.
    pub early_refresh: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            memory_limit: MemoryLimit::DEFAULT,
            cache_duration: Duration::from_secs(300),
            when_full: WhenFull::Reject,
            max_concurrency: None,
            refresh_after: None,
            serve_stale_on_error: true,
            early_refresh: None,
        }
    }
}

impl Settings {
    /// With this memory limit.
    pub fn memory_limit(mut self, limit: MemoryLimit) -> Self {
        self.memory_limit = limit;
        self
    }

    /// With this idle duration.
    pub fn cache_duration(mut self, d: Duration) -> Self {
        self.cache_duration = d;
        self
    }

    /// With this policy when full.
    pub fn when_full(mut self, w: WhenFull) -> Self {
        self.when_full = w;
        self
    }

    /// With at most this many computations at once (`None`: no limit).
    pub fn max_concurrency(mut self, n: Option<usize>) -> Self {
        self.max_concurrency = n;
        self
    }

    /// With values refreshed ahead once they are this old (`None`: never; see
    /// [`Settings::refresh_after`]).
    pub fn refresh_after(mut self, d: Option<Duration>) -> Self {
        self.refresh_after = d;
        self
    }

    /// Whether a failed refresh keeps the stored value (see [`Settings::serve_stale_on_error`]).
    pub fn serve_stale_on_error(mut self, keep: bool) -> Self {
        self.serve_stale_on_error = keep;
        self
    }

    /// With probabilistic early refresh (see [`Settings::early_refresh`]).
    pub fn early_refresh(mut self, beta: Option<f64>) -> Self {
        self.early_refresh = beta;
        self
    }

    /// Checks every setting; the first bad one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.memory_limit.resolve()?;
        if self.max_concurrency == Some(0) {
            return Err(ConfigError::new("max_concurrency", 0, "a number >= 1, or none for no limit"));
        }
        if let Some(d) = self.refresh_after {
            check_refresh_after(d)?;
        }
        if let Some(beta) = self.early_refresh.filter(|b| !(b.is_finite() && *b > 0.0)) {
            return Err(ConfigError::new("early_refresh", beta, "a number > 0 (1.0 is usual), or none"));
        }
        Ok(())
    }

    /// Reads a duration given in seconds, as the dynamic languages pass it.
    pub fn duration_from_secs(secs: f64) -> Result<Duration, ConfigError> {
        Duration::try_from_secs_f64(secs)
            .map_err(|_| ConfigError::new("cache_duration", secs, "a number of seconds >= 0"))
    }
}

/// A `refresh_after` must be positive: zero would refresh on every hit.
pub(crate) fn check_refresh_after(d: Duration) -> Result<(), ConfigError> {
    match d.is_zero() {
        true => Err(ConfigError::new(
            "refresh_after",
            format!("{d:?}"),
            "a duration > 0, or none to never refresh",
        )),
        false => Ok(()),
    }
}

/// A setting that cannot be used, found when the cache is configured.
///
/// ```
/// use coopcache::{Cache, MemoryLimit};
///
/// let e = Cache::<u32, u32>::builder().memory_limit(MemoryLimit::Fraction(1.5)).build().unwrap_err();
/// assert_eq!(e.setting, "memory_limit");
/// assert!(e.to_string().starts_with("invalid memory_limit: 1.5 (expected"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's name (Python/Rust spelling).
    pub setting: &'static str,
    /// The value given, as text.
    pub value: String,
    /// What would be accepted.
    pub expected: &'static str,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, value: impl fmt::Display, expected: &'static str) -> Self {
        ConfigError { setting, value: value.to_string(), expected }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {} (expected {})", self.setting, self.value, self.expected)
    }
}

impl std::error::Error for ConfigError {}
