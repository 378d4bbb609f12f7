//! Counters and the events a cache reports.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a cache's counters (the README's "Semantics": stats).
///
/// ```
/// use coopcache::Cache;
///
/// let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
/// cache.get_or_compute(1, || 10);
/// cache.get_or_compute(1, || unreachable!());
/// let s = cache.stats();
/// assert_eq!((s.hits, s.misses, s.computations, s.entries), (1, 1, 1, 1));
/// assert!(s.fields().iter().any(|&(name, n)| name == "hits" && n == 1));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls that found no fresh value (they computed or waited).
    pub misses: u64,
    /// Computations that ran here: leaders whose function this cache's callers ran. With a
    /// shared tier, a leader that the shared tier answered (a value from Redis, another
    /// process's or worker's completion) ran nothing and is not counted: the shared tier's
    /// `remote_hits` counts those. Summed over every process, it is how often the function
    /// ran. (A lease taken with [`crate::Cache::begin`], which bindings may drive themselves,
    /// counts when it is taken.)
    pub computations: u64,
    /// Calls that waited for another caller's computation instead of computing.
    pub coalesced: u64,
    /// Computations that failed (error or panic).
    pub errors: u64,
    /// Computations whose value was marked not to be stored.
    pub nocache: u64,
    /// Values returned but not stored because the cache was full.
    pub rejected_full: u64,
    /// Entries dropped after being idle for `cache_duration`.
    pub evicted_idle: u64,
    /// Entries dropped to make room (least recently used first).
    pub evicted_lru: u64,
    /// Entries dropped by `invalidate`, `invalidate_tag` or `clear`.
    pub evicted_invalidated: u64,
    /// Entries stored now.
    pub entries: u64,
    /// Bytes charged now (keys + values + per-entry overhead).
    pub bytes_used: u64,
    /// The byte limit.
    pub memory_limit: u64,
    /// Computations running now.
    pub in_flight: u64,
    /// Refreshes started (`refresh_after`): one per key each time its value fell due.
    pub refreshes_started: u64,
    /// Refreshes whose value replaced the old one.
    pub refreshes_succeeded: u64,
    /// Refreshes that failed (an error or a panic; see `serve_stale_on_error`).
    pub refreshes_failed: u64,
    /// Hits that returned a value due for refresh (while it was being refreshed, or after a
    /// refresh failed).
    pub stale_served: u64,
}

impl Stats {
    /// Every counter with its name (the Python spelling), in the order the bindings report
    /// them: one list to keep in step when a counter is added.
    pub fn fields(&self) -> [(&'static str, u64); 18] {
        [
            ("hits", self.hits),
            ("misses", self.misses),
            ("computations", self.computations),
            ("coalesced", self.coalesced),
            ("errors", self.errors),
            ("nocache", self.nocache),
            ("rejected_full", self.rejected_full),
            ("evicted_idle", self.evicted_idle),
            ("evicted_lru", self.evicted_lru),
            ("evicted_invalidated", self.evicted_invalidated),
            ("refreshes_started", self.refreshes_started),
            ("refreshes_succeeded", self.refreshes_succeeded),
            ("refreshes_failed", self.refreshes_failed),
            ("stale_served", self.stale_served),
            ("entries", self.entries),
            ("bytes_used", self.bytes_used),
            ("memory_limit", self.memory_limit),
            ("in_flight", self.in_flight),
        ]
    }
}

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionReason {
    /// Idle for `cache_duration`.
    Idle,
    /// Dropped to make room.
    Lru,
    /// Removed by `invalidate`, `invalidate_tag` or `clear`.
    Invalidated,
}

impl EvictionReason {
    /// `"idle"`, `"lru"` or `"invalidated"`, as the bindings name it.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionReason::Idle => "idle",
            EvictionReason::Lru => "lru",
            EvictionReason::Invalidated => "invalidated",
        }
    }
}

/// Something a binding may want to report (Python logging, a Node EventEmitter); the core also
/// emits each one as a `tracing` event with target `coopcache`.
///
/// ```
/// use coopcache::{Cache, Event, EvictionReason};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let cache: Cache<u32, u32> =
///     Cache::builder().listener(move |e: &Event| log.lock().unwrap().push(e.clone())).build().unwrap();
/// cache.get_or_compute(1, || 1);
/// cache.invalidate(&1);
/// let evicted = Event::Evicted { cache: "default".into(), reason: EvictionReason::Invalidated, count: 1 };
/// assert_eq!(*seen.lock().unwrap(), vec![evicted]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The cache just became full: a value could not be stored. Reported once, and again only
    /// after the cache has drained below 90% of its limit and filled up again.
    Full {
        /// The cache's name.
        cache: String,
        /// Bytes charged when it filled.
        bytes_used: u64,
        /// The byte limit.
        memory_limit: u64,
    },
    /// The shared tier became unreachable (or slow: a call timed out): calls go on with the
    /// local tier, and callers waiting for another process's computation stop waiting.
    /// Reported once, and again only after [`Event::SharedUp`].
    SharedDown {
        /// The cache's name.
        cache: String,
        /// What failed (the Redis URL's password is never in it).
        reason: String,
    },
    /// The shared tier is reachable again and answers in time (after [`Event::SharedDown`]).
    SharedUp {
        /// The cache's name.
        cache: String,
    },
    /// A value in the shared tier was refused (bad signature or format, or signed for another
    /// cache) and treated as a miss; it was never deserialized. Also reported for a message on
    /// the cache's channel that was dropped for the same reasons (a forged error or clear).
    ValueRefused {
        /// The cache's name.
        cache: String,
        /// Why.
        reason: String,
    },
    /// A refresh of a value (`refresh_after`) failed: the value is kept and served if
    /// `serve_stale_on_error` (the default), removed otherwise.
    RefreshFailed {
        /// The cache's name.
        cache: String,
        /// The key, as far as it can be shown.
        key: String,
        /// The computation's error.
        error: String,
        /// Whether the old value was kept.
        kept: bool,
    },
    /// Entries left the cache (one event per batch, so a sweep of many is one call).
    Evicted {
        /// The cache's name.
        cache: String,
        /// Why they left.
        reason: EvictionReason,
        /// How many.
        count: u64,
    },
}

/// How loud an [`Event`] is: the level a binding logs it at (Python's `logging`), and whether
/// Node prints it as a warning when nobody listens (`Warning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine (evictions).
    Debug,
    /// Good news (the shared tier is back).
    Info,
    /// Something a user should look at (full, the shared tier down, a refused value).
    Warning,
}

/// One field of an [`Event`], as a binding hands it to its language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<'a> {
    /// A string (the cache's name, a reason).
    Str(&'a str),
    /// A number (bytes, a count).
    Num(u64),
    /// A yes or no (whether a failed refresh kept the value).
    Bool(bool),
}

impl Event {
    /// The event's name (snake case; `Style::name` spells it for a language): `full`, `evict`,
    /// `shared_down`, `shared_up`, `value_refused` or `refresh_failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Full { .. } => "full",
            Event::Evicted { .. } => "evict",
            Event::SharedDown { .. } => "shared_down",
            Event::SharedUp { .. } => "shared_up",
            Event::ValueRefused { .. } => "value_refused",
            Event::RefreshFailed { .. } => "refresh_failed",
        }
    }

    /// The event's fields by (snake-case) name, so that a binding hands an event over in a loop.
    ///
    /// ```
    /// use coopcache::{Event, Field};
    ///
    /// let e = Event::SharedDown { cache: "users".into(), reason: "timeout".into() };
    /// assert_eq!(e.fields(), [("cache", Field::Str("users")), ("reason", Field::Str("timeout"))]);
    /// ```
    pub fn fields(&self) -> Vec<(&'static str, Field<'_>)> {
        match self {
            Event::Full { cache, bytes_used, memory_limit } => vec![
                ("cache", Field::Str(cache)),
                ("bytes_used", Field::Num(*bytes_used)),
                ("memory_limit", Field::Num(*memory_limit)),
            ],
            Event::Evicted { cache, reason, count } => vec![
                ("cache", Field::Str(cache)),
                ("reason", Field::Str(reason.as_str())),
                ("count", Field::Num(*count)),
            ],
            Event::SharedUp { cache } => vec![("cache", Field::Str(cache))],
            Event::SharedDown { cache, reason } | Event::ValueRefused { cache, reason } => {
                vec![("cache", Field::Str(cache)), ("reason", Field::Str(reason))]
            }
            Event::RefreshFailed { cache, key, error, kept } => vec![
                ("cache", Field::Str(cache)),
                ("key", Field::Str(key)),
                ("error", Field::Str(error)),
                ("kept", Field::Bool(*kept)),
            ],
        }
    }

    /// How loud the event is.
    pub fn level(&self) -> Level {
        match self {
            Event::Full { .. }
            | Event::SharedDown { .. }
            | Event::ValueRefused { .. }
            | Event::RefreshFailed { .. } => Level::Warning,
            Event::SharedUp { .. } => Level::Info,
            Event::Evicted { .. } => Level::Debug,
        }
    }

    /// The message both bindings log or print for the event.
    ///
    /// ```
    /// let e = coopcache::Event::SharedUp { cache: "users".into() };
    /// assert_eq!(e.message(), "coopcache: the shared tier of cache \"users\" is back");
    /// ```
    pub fn message(&self) -> String {
        match self {
            Event::Full { cache, bytes_used, memory_limit } => format!(
                "coopcache: cache {cache:?} is full ({bytes_used} of {memory_limit} bytes); new values are \
                 returned but not stored"
            ),
            Event::Evicted { cache, reason, count } => {
                format!("coopcache: cache {cache:?} evicted {count} entries ({})", reason.as_str())
            }
            Event::SharedDown { cache, reason } => format!(
                "coopcache: the shared tier of cache {cache:?} is unavailable ({reason}); calls go on with the \
                 local tier"
            ),
            Event::RefreshFailed { cache, key, error, kept } => format!(
                "coopcache: a refresh of {key} in cache {cache:?} failed ({error}); {}",
                match kept {
                    true => "the old value is kept",
                    false => "the old value was removed",
                }
            ),
            Event::SharedUp { cache } => format!("coopcache: the shared tier of cache {cache:?} is back"),
            Event::ValueRefused { cache, reason } => format!(
                "coopcache: a value of cache {cache:?} in the shared tier was refused ({reason}) and treated \
                 as a miss; it was not deserialized"
            ),
        }
    }
}

/// A function told about every [`Event`]. It runs on whichever thread caused the event (a
/// thread of its own for the background sweeper's idle evictions, so a slow listener never
/// holds up expiry) and must not call back into the same cache. A listener that panics is
/// reported with `tracing` and otherwise ignored.
pub type Listener = std::sync::Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) computations: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) nocache: AtomicU64,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) evicted_idle: AtomicU64,
    pub(crate) evicted_lru: AtomicU64,
    pub(crate) evicted_invalidated: AtomicU64,
    pub(crate) refreshes_started: AtomicU64,
    pub(crate) refreshes_succeeded: AtomicU64,
    pub(crate) refreshes_failed: AtomicU64,
    pub(crate) stale_served: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn evicted(&self, reason: EvictionReason) -> &AtomicU64 {
        match reason {
            EvictionReason::Idle => &self.evicted_idle,
            EvictionReason::Lru => &self.evicted_lru,
            EvictionReason::Invalidated => &self.evicted_invalidated,
        }
    }

    pub(crate) fn fill(&self, s: &mut Stats) {
        s.computations = self.computations.load(Relaxed);
        s.coalesced = self.coalesced.load(Relaxed);
        s.errors = self.errors.load(Relaxed);
        s.nocache = self.nocache.load(Relaxed);
        s.rejected_full = self.rejected_full.load(Relaxed);
        s.evicted_idle = self.evicted_idle.load(Relaxed);
        s.evicted_lru = self.evicted_lru.load(Relaxed);
        s.evicted_invalidated = self.evicted_invalidated.load(Relaxed);
        s.refreshes_started = self.refreshes_started.load(Relaxed);
        s.refreshes_succeeded = self.refreshes_succeeded.load(Relaxed);
        s.refreshes_failed = self.refreshes_failed.load(Relaxed);
        s.stale_served += self.stale_served.load(Relaxed);
    }
}
