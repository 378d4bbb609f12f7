//! Where entries live: sharded tables, byte accounting, eviction, idle expiry and tags.
//!
//! The store knows nothing of flights, slots or a shared tier. The layer above keeps its own
//! per-shard state in the shard (the `A` of [`Store`], its "side"), changed under the same write
//! lock as the entries, so that a computed value's insertion and its flight's end are one step.
//!
//! Each shard is a slab of entries (`Vec<Option<Entry>>`) indexed by a SwissTable of `u32` slot
//! numbers, behind one `RwLock`. The indirection keeps memory per entry small and independent of
//! the table's load factor (a table of 4-byte slots is cheap to keep half empty), and it makes
//! sampling for eviction a random index into the slab.
//!
//! * **Hits** take the shard's read lock only; recency is the entry's `last_access`, an atomic
//!   the reader stores (at most once per millisecond, to spare contended cache lines), and
//!   the count is the thread's own (`tally`), so a hit makes no locked write but the lock's.
//! * **Bytes** are reserved with a compare-and-swap before an entry is inserted, and checked
//!   again after it, so `bytes_used` ends within the limit even when the limit is lowered while
//!   values are being stored.
//! * **Eviction** samples a few entries of a random shard and drops the least recently used
//!   (as Redis does): no list to maintain on the hit path.
//! * **Expiry** is exact on read (an entry idle for `cache_duration` is never returned, and a
//!   longer duration never brings one back). Memory is reclaimed by the process-wide sweeper
//!   (`expiry`): each shard keeps a timer wheel with one record per entry (`wheel`); a due record
//!   whose entry was touched since is rescheduled, so a sweep costs the entries that expire or
//!   were touched, never all entries.

mod tags;
mod wheel;

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use hashbrown::HashTable;

use crate::clock::Clock;
use crate::config::{ConfigError, Settings, WhenFull};
use crate::stats::{Counters, Event, EvictionReason, Listener, Stats};
use crate::sync::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Mutex, Ordering::*, RwLock, RwLockWriteGuard};
use crate::tally::Tally;
use tags::TagIndex;
use wheel::{Place, Wheel};

/// Bytes charged per entry on top of the weigher's answer: the slab slot's metadata, the index
/// slot and the expiry record. Measured with the `memory` benchmark (1M entries of `u64` →
/// `[u8; 16]`, RSS growth per entry minus the 24 payload bytes: 40); see BENCHMARKS.md. Plus the
/// 8 bytes of the time an entry's refresh falls due (`refresh_after`), added since.
pub const ENTRY_OVERHEAD: u64 = 48;
// An entry's charge includes the overhead, so it is never zero: `Entry::charge`'s niche.
const _: () = assert!(ENTRY_OVERHEAD > 0);

/// The largest weight an entry may have (its top bit says whether it has tags).
const MAX_WEIGHT: u64 = (1 << 31) - 1;
const TAGGED: u32 = 1 << 31;

/// A hit refreshes `last_access` only if it is older than max(this, duration / 1024), so hot
/// keys do not dirty (and, across threads, bounce) their cache line on every read. Expiry may
/// therefore come that much early (0.1% of the duration), never late.
const TOUCH_GRANULARITY_NS: u64 = 1_000_000;

/// An entry's `refresh_at` when it is never refreshed (no `refresh_after`).
const NEVER: u64 = u64::MAX;
/// An entry's `refresh_at` while one caller refreshes it: every hit is then due, and finds the
/// refresh taken (a hit on an entry that is not due stays one compare).
const REFRESHING: u64 = 0;

/// When a value being stored falls due for refresh.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Refresh {
    /// `refresh_after` in nanoseconds (`None`: the cache's setting).
    pub(crate) after: Option<u64>,
    /// When its computation began (a clock reading; 0: not computed here), for
    /// `early_refresh`.
    pub(crate) started: u64,
}

/// Whether a hit found its entry due for a refresh (`refresh_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Not due.
    No,
    /// Due, and being refreshed by another caller already: the value is served as it is.
    Stale,
    /// Due, and this caller took the refresh: it must start it (or give it back with
    /// [`ShardWrite::end_refresh`]); the entry was due since `at`.
    Claimed(u64),
}

/// Entries sampled per eviction (Redis' default).
const EVICTION_SAMPLES: usize = 5;

/// Expiry records processed per hold of a shard's write lock, so readers never wait long.
const SWEEP_BATCH: usize = 64;

pub(crate) type Weigher<K, V> = Box<dyn Fn(&K, &V) -> u64 + Send + Sync>;

/// Called with the key of an entry's first hit in each tenth of the idle duration.
pub(crate) type PeriodHook<K> = Box<dyn Fn(&K) + Send + Sync>;

pub(crate) struct Entry<K, V> {
    key: K,
    value: V,
    last_access: AtomicU64,
    /// Bytes charged (never zero: they include [`ENTRY_OVERHEAD`]); the top bit is set when
    /// the entry has tags. Being non-zero, it is the niche that makes a free slab slot
    /// (`None`) cost no tag beside the entry.
    charge: NonZeroU32,
    /// Where the entry's expiry record is.
    place: Place,
    /// The tenth of the duration in which the entry was written or last reported to the hook.
    period: AtomicU32,
    /// When the value falls due for a refresh ([`NEVER`], or [`REFRESHING`] while one runs).
    refresh_at: AtomicU64,
}

impl<K, V> Entry<K, V> {
    fn weight(&self) -> u64 {
        (self.charge.get() & !TAGGED) as u64
    }

    fn tagged(&self) -> bool {
        self.charge.get() & TAGGED != 0
    }
}

pub(crate) struct Shard<K, V, A> {
    table: HashTable<u32>,
    slots: Vec<Option<Entry<K, V>>>,
    free: Vec<u32>,
    len: usize,
    wheel: Wheel,
    /// When the value in each slot was stored, by the wall clock in ms (the time the shared
    /// tier writes with a value), for the values that refresh of a cache that records it (see
    /// [`Store::record_written`]): another process's refresh is compared with it. Kept beside
    /// the slab, and empty in every other cache, so that those pay nothing per entry; not
    /// charged to the memory limit (8 bytes per slot).
    #[cfg(feature = "redis")]
    written: Vec<u64>,
    /// The layer above's own state for this shard's keys.
    side: A,
}

#[repr(align(128))]
struct ShardCell<K, V, A> {
    lock: RwLock<Shard<K, V, A>>,
    misses: AtomicU64,
}

/// The entries of one cache.
pub(crate) struct Store<K, V, A> {
    pub(crate) name: Arc<str>,
    shards: Box<[ShardCell<K, V, A>]>,
    shard_shift: u32,
    hasher: foldhash::fast::RandomState,
    limit: AtomicU64,
    duration_ns: AtomicU64,
    tick_ns: AtomicU64,
    /// `refresh_after` in nanoseconds, [`NEVER`] for none.
    refresh_ns: AtomicU64,
    /// `early_refresh`'s beta (the bits of an `f64`; 0 for none).
    early_beta: AtomicU64,
    when_full: AtomicU8,
    bytes: AtomicU64,
    /// Hits (and those on values being refreshed), counted per thread.
    hits: Tally,
    pub(crate) counters: Counters,
    weigher: Weigher<K, V>,
    clock: Clock,
    tags: Mutex<TagIndex<K>>,
    full: AtomicBool,
    listener: Option<Listener>,
    period_hook: OnceLock<PeriodHook<K>>,
    /// Idle evictions by the background sweeper not yet told to the listener.
    untold_idle: AtomicU64,
    /// Whether the shards keep when each refreshing value was stored (`Shard::written`).
    #[cfg(feature = "redis")]
    records_written: AtomicBool,
}

fn tick_ns_for(duration_ns: u64) -> u64 {
    // Reclaim within max(1 s, duration / 10): ticks of half that, swept every 250 ms.
    (duration_ns / 10).max(1_000_000_000) / 2
}

fn duration_nanos(s: &Settings) -> u64 {
    s.cache_duration.as_nanos().min(u64::MAX as u128) as u64
}

/// How much earlier than `refresh_after` a value computed in `took` nanoseconds falls due
/// with `early_refresh` (XFetch, drawn once per value): `beta * took * E`, `E` exponential.
fn early_nanos(beta: f64, took: u64) -> u64 {
    // 1 - U is in (0, 1], so its logarithm is finite.
    let e = -(1.0 - fastrand::f64()).ln();
    (beta * took as f64 * e).min(u64::MAX as f64) as u64
}

fn refresh_nanos(s: &Settings) -> u64 {
    s.refresh_after.map_or(NEVER, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

impl<K, V, A> Store<K, V, A>
where
    K: Hash + Eq + Clone,
    V: Clone,
    A: Default,
{
    pub(crate) fn new(
        name: Arc<str>,
        settings: &Settings,
        weigher: Weigher<K, V>,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Result<Self, ConfigError> {
        settings.validate()?;
        let limit = settings.memory_limit.resolve()?;
        let shards = (std::thread::available_parallelism().map_or(4, |n| n.get()) * 4)
            .next_power_of_two()
            .clamp(8, 64);
        let duration_ns = duration_nanos(settings);
        Ok(Store {
            name,
            shards: (0..shards)
                .map(|_| ShardCell {
                    lock: RwLock::new(Shard {
                        table: HashTable::new(),
                        slots: Vec::new(),
                        free: Vec::new(),
                        len: 0,
                        wheel: Wheel::default(),
                        #[cfg(feature = "redis")]
                        written: Vec::new(),
                        side: A::default(),
                    }),
                    misses: AtomicU64::new(0),
                })
                .collect(),
            shard_shift: 64 - shards.trailing_zeros(),
            hasher: foldhash::fast::RandomState::default(),
            limit: AtomicU64::new(limit),
            duration_ns: AtomicU64::new(duration_ns),
            tick_ns: AtomicU64::new(tick_ns_for(duration_ns)),
            refresh_ns: AtomicU64::new(refresh_nanos(settings)),
            early_beta: AtomicU64::new(settings.early_refresh.unwrap_or(0.0).to_bits()),
            when_full: AtomicU8::new(settings.when_full as u8),
            bytes: AtomicU64::new(0),
            hits: Tally::new(),
            counters: Counters::default(),
            weigher,
            clock,
            tags: Mutex::new(TagIndex::default()),
            full: AtomicBool::new(false),
            listener,
            period_hook: OnceLock::new(),
            untold_idle: AtomicU64::new(0),
            #[cfg(feature = "redis")]
            records_written: AtomicBool::new(false),
        })
    }
}

impl<K, V, A> Store<K, V, A>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn cell(&self, hash: u64) -> &ShardCell<K, V, A> {
        // The table uses the low bits and the top 7; pick the shard from the bits below those.
        let idx = ((hash << 7) >> self.shard_shift) as usize;
        &self.shards[idx]
    }

    #[inline]
    fn duration(&self) -> u64 {
        self.duration_ns.load(Relaxed)
    }

    #[cfg(feature = "shared")]
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    #[cfg(feature = "shared")]
    pub(crate) fn listener(&self) -> Option<Listener> {
        self.listener.clone()
    }

    /// Sets the hook told of each entry's first hit in every tenth of the duration (set once).
    #[cfg(feature = "shared")]
    pub(crate) fn set_period_hook(&self, hook: PeriodHook<K>) {
        let _ = self.period_hook.set(hook);
    }

    fn period(&self, now: u64) -> u32 {
        (now / (self.duration() / 10).max(1)) as u32
    }

    /// The hit path: `f` reads a fresh value in place, under the shard's read lock; the entry is
    /// touched and the hit counted. A value due for refresh is returned as it is, no refresh
    /// taken (see [`Store::lookup_due`]).
    #[inline(always)]
    pub(crate) fn lookup_with<Q, R>(&self, hash: u64, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup::<false, Q, R>(hash, key, f).map(|(r, _)| r)
    }

    /// Like [`Store::lookup_with`], also taking the refresh of a value that is due (one caller
    /// takes it; hits meanwhile count as stale).
    #[inline(always)]
    pub(crate) fn lookup_due<Q, R>(&self, hash: u64, key: &Q, f: impl FnOnce(&V) -> R) -> Option<(R, Due)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup::<true, Q, R>(hash, key, f)
    }

    #[inline(always)]
    fn lookup<const CLAIM: bool, Q, R>(&self, hash: u64, key: &Q, f: impl FnOnce(&V) -> R) -> Option<(R, Due)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let cell = self.cell(hash);
        let now = self.clock.nanos();
        let sh = cell.lock.read();
        let e = sh.fresh(hash, key, now, self.duration(), &self.clock)?;
        if let Some(hook) = self.period_hook.get() {
            let period = self.period(now);
            if e.period.load(Relaxed) != period && e.period.swap(period, Relaxed) != period {
                hook(&e.key);
            }
        }
        // The refresh check reuses the hit's clock reading: one load and one compare when the
        // value is not due, nothing at all for a hit that takes no refresh (`hit_with`).
        let due = match CLAIM {
            true => match e.refresh_at.load(Relaxed) {
                at if now >= at => claim(e, at),
                _ => Due::No,
            },
            false => Due::No,
        };
        let r = f(&e.value);
        drop(sh);
        self.hits.hit(due == Due::Stale);
        Some((r, due))
    }

    /// From now on, the shards keep when each value that refreshes was stored, for
    /// [`Store::refreshed_elsewhere`] (a cache with a shared tier on Redis).
    #[cfg(feature = "redis")]
    pub(crate) fn record_written(&self) {
        self.records_written.store(true, Relaxed);
    }

    /// Another process refreshed `key`'s value, writing it at `written` (wall-clock ms): an
    /// entry stored before then falls due now, so its next hit returns it as it is and starts
    /// a refresh (which takes that value from the shared tier). An entry stored since (it
    /// already has that value, or a newer one), one being refreshed now, or one that never
    /// refreshes is left as it is.
    #[cfg(feature = "redis")]
    pub(crate) fn refreshed_elsewhere<Q>(&self, hash: u64, key: &Q, written: u64)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let now = self.clock.nanos().max(REFRESHING + 1);
        let sh = self.cell(hash).lock.read();
        let Some(idx) = sh.find(hash, key) else { return };
        let e = sh.slots[idx as usize].as_ref().expect("indexed slot is occupied");
        if sh.written.get(idx as usize).is_some_and(|&w| w >= written) {
            return;
        }
        // Only an entry due later than now: not one never due, nor one being refreshed
        // ([`REFRESHING`] is never later), and a claim of its refresh racing with this wins or
        // loses as a whole. An entry the update leaves alone is not an error.
        let _ = e.refresh_at.fetch_update(Relaxed, Relaxed, |at| (at != NEVER && at > now).then_some(now));
    }

    /// A clock reading for a computation beginning now, if `early_refresh` needs it (else 0,
    /// so a miss reads no clock for it).
    pub(crate) fn computation_start(&self) -> u64 {
        if self.early_beta.load(Relaxed) != 0 { self.clock.nanos().max(1) } else { 0 }
    }

    /// How much earlier than `refresh_after` a value stored `now`, whose computation began at
    /// `started` (0: not computed here), falls due; 0 without `early_refresh`.
    fn early(&self, started: u64, now: u64) -> u64 {
        let beta = f64::from_bits(self.early_beta.load(Relaxed));
        if started == 0 || beta <= 0.0 {
            return 0;
        }
        early_nanos(beta, now.saturating_sub(started))
    }

    pub(crate) fn count_miss(&self, hash: u64) {
        self.cell(hash).misses.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_hit(&self) {
        self.hits.hit(false);
    }

    /// The shard of `hash`, write-locked, with the side state of the layer above.
    pub(crate) fn write(&self, hash: u64) -> ShardWrite<'_, K, V, A> {
        ShardWrite::new(self, self.cell(hash).lock.write())
    }

    /// Calls `f` with the side state of every shard where `needs` says so (asked under the
    /// read lock), one shard at a time, under its write lock.
    pub(crate) fn for_each_side(&self, needs: impl Fn(&A) -> bool, mut f: impl FnMut(&mut A)) {
        for cell in self.shards.iter() {
            if needs(&cell.lock.read().side) {
                f(&mut cell.lock.write().side);
            }
        }
    }

    /// What an entry of `key` and `value` weighs with `extra` bytes and the per-entry
    /// overhead, or `None` (reported) if the weigher panicked: such a value is not stored.
    pub(crate) fn weigh(&self, key: &K, value: &V, extra: u64) -> Option<u64> {
        match catch_unwind(AssertUnwindSafe(|| (self.weigher)(key, value))) {
            Ok(w) => Some(w.saturating_add(extra).saturating_add(ENTRY_OVERHEAD)),
            Err(panic) => {
                let why = crate::error::Error::from_panic(&*panic);
                tracing::error!(target: "coopcache", cache = %self.name, %why,
                    "the weigher panicked; the value is handed out but not stored");
                None
            }
        }
    }

    /// Reserves `weight` bytes, evicting least recently used entries in evict mode.
    pub(crate) fn reserve(&self, weight: u64) -> bool {
        if weight > MAX_WEIGHT {
            return false;
        }
        loop {
            let limit = self.limit.load(SeqCst);
            let cur = self.bytes.load(SeqCst);
            if cur + weight <= limit {
                if self.bytes.compare_exchange_weak(cur, cur + weight, SeqCst, Relaxed).is_ok() {
                    return true;
                }
                continue;
            }
            let evict = self.when_full.load(Relaxed) == WhenFull::Evict as u8;
            if !(evict && weight <= limit && self.evict_one()) {
                return false;
            }
        }
    }

    /// Gives back bytes reserved for a value that was not stored after all.
    pub(crate) fn release(&self, weight: u64) {
        let after = self.bytes.fetch_sub(weight, SeqCst) - weight;
        if self.full.load(Relaxed) && after < self.limit.load(Relaxed) / 10 * 9 {
            self.full.store(false, Relaxed);
        }
    }

    /// Evicts until the bytes are within the limit again: after an insert whose reservation
    /// raced with a lower limit, and after lowering the limit.
    pub(crate) fn enforce_limit(&self) {
        while self.bytes.load(SeqCst) > self.limit.load(SeqCst) && self.evict_one() {}
    }

    /// Counts a value that did not fit; the first time the cache fills up, the event to report.
    pub(crate) fn rejected(&self) -> Option<Event> {
        Counters::add(&self.counters.rejected_full, 1);
        if self.full.swap(true, Relaxed) {
            return None;
        }
        let (bytes_used, memory_limit) = (self.bytes.load(Relaxed), self.limit.load(Relaxed));
        tracing::warn!(target: "coopcache", cache = %self.name, bytes_used, memory_limit,
            "cache is full; new values are returned but not stored");
        Some(Event::Full { cache: self.name.to_string(), bytes_used, memory_limit })
    }

    fn due_tick(&self, last_access: u64) -> u32 {
        let tick = self.tick_ns.load(Relaxed);
        let due = last_access.saturating_add(self.duration());
        (due.div_ceil(tick)).min(u32::MAX as u64) as u32
    }

    /// Takes an entry out of a locked shard, keeping bytes, the wheel and the tag index right.
    /// `in_wheel` is false when the sweeper already took its record.
    fn remove_slot(&self, sh: &mut Shard<K, V, A>, idx: u32, in_wheel: bool) -> Entry<K, V> {
        let e = sh.slots[idx as usize].take().expect("an indexed slot is occupied");
        let hash = self.hash(&e.key);
        if let Ok(found) = sh.table.find_entry(hash, |&i| i == idx) {
            found.remove();
        }
        sh.free.push(idx);
        sh.len -= 1;
        if in_wheel {
            if let Some(moved) = sh.wheel.remove(e.place) {
                sh.slots[moved as usize].as_mut().expect("a record's slot is occupied").place.pos =
                    e.place.pos;
            }
        }
        self.release(e.weight());
        if e.tagged() {
            self.tags.lock().remove(&e.key);
        }
        e
    }

    /// Drops one least-recently-used entry, sampled across the whole cache (Redis' approximated
    /// LRU): the oldest of a few random entries of random shards. False if the cache is empty.
    fn evict_one(&self) -> bool {
        let n = self.shards.len();
        for _ in 0..4 {
            let mut best: Option<(u64, usize, u32)> = None;
            for _ in 0..EVICTION_SAMPLES {
                let si = fastrand::usize(..n);
                if let Some((t, idx)) = self.shards[si].lock.read().sample() {
                    if best.is_none_or(|(bt, _, _)| t < bt) {
                        best = Some((t, si, idx));
                    }
                }
            }
            let Some((t, si, idx)) = best else { break };
            let victim = {
                let mut sh = self.shards[si].lock.write();
                let same = sh
                    .slots
                    .get(idx as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|e| e.last_access.load(Relaxed) == t);
                if !same {
                    continue;
                }
                self.remove_slot(&mut sh, idx, true)
            };
            drop(victim);
            self.evicted(EvictionReason::Lru, 1);
            return true;
        }
        // Few entries in many shards: the samples missed; take the oldest of the first non-empty.
        for cell in self.shards.iter() {
            let victim = {
                let mut sh = cell.lock.write();
                let Some(idx) = sh.oldest_of_sample() else { continue };
                self.remove_slot(&mut sh, idx, true)
            };
            drop(victim);
            self.evicted(EvictionReason::Lru, 1);
            return true;
        }
        false
    }

    pub(crate) fn evicted(&self, reason: EvictionReason, count: u64) {
        if count == 0 {
            return;
        }
        Counters::add(self.counters.evicted(reason), count);
        self.tell_evicted(reason, count);
    }

    fn tell_evicted(&self, reason: EvictionReason, count: u64) {
        tracing::debug!(target: "coopcache", cache = %self.name, reason = reason.as_str(), count, "evicted");
        self.emit(Event::Evicted { cache: self.name.to_string(), reason, count });
    }

    /// Tells the listener, if any. A listener that panics is reported and otherwise ignored: it
    /// must not take a cache's callers (or the sweeper) down with it.
    pub(crate) fn emit(&self, event: Event) {
        if let Some(l) = &self.listener {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| l(&event))) {
                let why = crate::error::Error::from_panic(&*panic);
                tracing::error!(target: "coopcache", cache = %self.name, %why, "the event listener panicked");
            }
        }
    }

    /// Removes every entry stored with `tag`; returns how many.
    pub(crate) fn invalidate_tag(&self, tag: &str) -> u64 {
        let keys = self.tags.lock().take(tag);
        let mut n = 0;
        for key in keys {
            let hash = self.hash(&key);
            let mut w = self.write(hash);
            n += w.remove(hash, &key) as u64;
        }
        n
    }

    /// Removes every entry, calling `side` with each shard's side state under the same lock;
    /// reported as one eviction event.
    pub(crate) fn clear(&self, mut side: impl FnMut(&mut A)) {
        let mut removed = 0;
        for cell in self.shards.iter() {
            let dropped: Vec<Entry<K, V>> = {
                let mut sh = cell.lock.write();
                side(&mut sh.side);
                let occupied: Vec<u32> = sh.occupied().collect();
                occupied.into_iter().map(|idx| self.remove_slot(&mut sh, idx, true)).collect()
            };
            removed += dropped.len() as u64;
        }
        self.evicted(EvictionReason::Invalidated, removed);
    }

    /// Reclaims idle entries whose expiry records are due. The sweeper thread passes
    /// `tell_later`: the eviction event is then left for [`Store::tell_untold`], so a slow
    /// listener never holds up the sweeper; the return value says whether that became needed.
    pub(crate) fn sweep(&self, tell_later: bool) -> bool {
        let dur = self.duration();
        let tick = self.tick_ns.load(Relaxed);
        let mut expired = 0;
        for cell in self.shards.iter() {
            loop {
                let now = self.clock.nanos();
                let now_tick = (now / tick).min(u32::MAX as u64) as u32;
                if !cell.lock.read().wheel.has_due(now_tick) {
                    break;
                }
                let dropped: Vec<Entry<K, V>> = {
                    let mut sh = cell.lock.write();
                    let Some((_, batch)) = sh.wheel.take_due(now_tick, SWEEP_BATCH) else { break };
                    let mut dropped = Vec::new();
                    for idx in batch {
                        let e = sh.slots[idx as usize].as_ref().expect("a record's slot is occupied");
                        let last = e.last_access.load(Relaxed);
                        if self.clock.fresh(last, now, dur) {
                            let place = sh.wheel.push(self.due_tick(last), idx);
                            sh.slots[idx as usize].as_mut().expect("occupied").place = place;
                        } else {
                            dropped.push(self.remove_slot(&mut sh, idx, false));
                        }
                    }
                    dropped
                };
                expired += dropped.len() as u64;
            }
        }
        if !tell_later || self.listener.is_none() {
            self.evicted(EvictionReason::Idle, expired);
            return false;
        }
        if expired == 0 {
            return false;
        }
        Counters::add(self.counters.evicted(EvictionReason::Idle), expired);
        self.untold_idle.fetch_add(expired, SeqCst) == 0
    }

    /// Tells the listener about the idle evictions the background sweeper left for later.
    pub(crate) fn tell_untold(&self) {
        let n = self.untold_idle.swap(0, SeqCst);
        if n > 0 {
            self.tell_evicted(EvictionReason::Idle, n);
        }
    }

    /// Adds the store's figures to `s`.
    pub(crate) fn fill_stats(&self, s: &mut Stats) {
        let (hits, stale) = self.hits.sums();
        s.hits += hits;
        s.stale_served += stale;
        for cell in self.shards.iter() {
            s.misses += cell.misses.load(Relaxed);
            s.entries += cell.lock.read().len as u64;
        }
        self.counters.fill(s);
        s.bytes_used = self.bytes.load(Relaxed);
        s.memory_limit = self.limit.load(Relaxed);
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|c| c.lock.read().len).sum()
    }

    /// Applies new settings in place: entries are kept, a lower limit or a shorter duration
    /// takes effect at once, and a longer duration does not bring back entries that had
    /// already expired.
    pub(crate) fn reconfigure(&self, settings: &Settings) -> Result<(), ConfigError> {
        settings.validate()?;
        let limit = settings.memory_limit.resolve()?;
        self.when_full.store(settings.when_full as u8, Relaxed);
        self.refresh_ns.store(refresh_nanos(settings), Relaxed);
        self.early_beta.store(settings.early_refresh.unwrap_or(0.0).to_bits(), Relaxed);
        let duration_ns = duration_nanos(settings);
        if duration_ns != self.duration() {
            self.change_duration(duration_ns);
        }
        self.limit.store(limit, SeqCst);
        self.enforce_limit();
        Ok(())
    }

    /// Switches the duration with every shard locked, so no reader sees an entry judged by the
    /// new duration that had expired under the old one: those are dropped first.
    fn change_duration(&self, duration_ns: u64) {
        let mut shards: Vec<_> = self.shards.iter().map(|c| c.lock.write()).collect();
        let (old, now) = (self.duration(), self.clock.precise());
        let mut expired = Vec::new();
        for sh in shards.iter_mut() {
            let stale: Vec<u32> = sh
                .occupied()
                .filter(|&idx| {
                    let e = sh.slots[idx as usize].as_ref().expect("occupied");
                    now.saturating_sub(e.last_access.load(Relaxed)) >= old
                })
                .collect();
            for idx in stale {
                expired.push(self.remove_slot(sh, idx, true));
            }
        }
        self.duration_ns.store(duration_ns, Relaxed);
        self.tick_ns.store(tick_ns_for(duration_ns), Relaxed);
        for sh in shards.iter_mut() {
            sh.wheel.clear();
            let occupied: Vec<u32> = sh.occupied().collect();
            for idx in occupied {
                let last = sh.slots[idx as usize].as_ref().expect("occupied").last_access.load(Relaxed);
                let place = sh.wheel.push(self.due_tick(last), idx);
                sh.slots[idx as usize].as_mut().expect("occupied").place = place;
            }
        }
        drop(shards);
        let n = expired.len() as u64;
        drop(expired);
        self.evicted(EvictionReason::Idle, n);
    }
}

/// A shard write-locked for the layer above: entries and side state change together. Entries
/// taken out are dropped, and evictions reported, only once the lock is released.
pub(crate) struct ShardWrite<'a, K, V, A>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    store: &'a Store<K, V, A>,
    guard: Option<RwLockWriteGuard<'a, Shard<K, V, A>>>,
    dropped: Vec<Entry<K, V>>,
    idle: u64,
    invalidated: u64,
}

impl<'a, K, V, A> ShardWrite<'a, K, V, A>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    fn new(store: &'a Store<K, V, A>, guard: RwLockWriteGuard<'a, Shard<K, V, A>>) -> Self {
        ShardWrite { store, guard: Some(guard), dropped: Vec::new(), idle: 0, invalidated: 0 }
    }

    fn shard(&mut self) -> &mut Shard<K, V, A> {
        self.guard.as_mut().expect("locked until dropped")
    }

    /// The layer above's state for this shard.
    pub(crate) fn side(&mut self) -> &mut A {
        &mut self.shard().side
    }

    /// A fresh value for `key`, touching it; an idle-expired entry is dropped instead.
    pub(crate) fn fresh<Q>(&mut self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let store = self.store;
        let now = store.clock.nanos();
        let sh = self.shard();
        let idx = sh.find(hash, key)?;
        let e = sh.slots[idx as usize].as_ref().expect("indexed slot is occupied");
        if store.clock.fresh(e.last_access.load(Relaxed), now, store.duration()) {
            touch(e, now, store.duration());
            return Some(e.value.clone());
        }
        let e = store.remove_slot(sh, idx, true);
        self.dropped.push(e);
        self.idle += 1;
        None
    }

    /// Whether `key` has an entry whose refresh a caller took ([`Due::Claimed`]).
    pub(crate) fn refreshing(&mut self, hash: u64, key: &K) -> bool {
        let sh = self.shard();
        let Some(idx) = sh.find(hash, key) else { return false };
        sh.slots[idx as usize].as_ref().is_some_and(|e| e.refresh_at.load(Relaxed) == REFRESHING)
    }

    /// Ends a refresh of `key` that did not replace its value (it failed, was abandoned, or
    /// its value was not stored): the entry, if it is still the one being refreshed, is due
    /// again since `at` (`keep`), or removed. True if it was removed.
    pub(crate) fn end_refresh(&mut self, hash: u64, key: &K, at: u64, keep: bool) -> bool {
        if !self.refreshing(hash, key) {
            return false;
        }
        if keep {
            let sh = self.shard();
            let idx = sh.find(hash, key).expect("found just now");
            sh.slots[idx as usize].as_ref().expect("occupied").refresh_at.store(at, Relaxed);
            return false;
        }
        self.remove(hash, key)
    }

    /// Removes `key`'s entry; true if there was one.
    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.take(hash, key).is_some_and(|e| {
            self.dropped.push(e);
            self.invalidated += 1;
            true
        })
    }

    /// Takes `key`'s entry out and returns its value (counted as invalidated).
    pub(crate) fn take_value<Q>(&mut self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let e = self.take(hash, key)?;
        self.invalidated += 1;
        Some(e.value)
    }

    fn take<Q>(&mut self, hash: u64, key: &Q) -> Option<Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let store = self.store;
        let sh = self.shard();
        let idx = sh.find(hash, key)?;
        Some(store.remove_slot(sh, idx, true))
    }

    /// Stores `value` under `key`, charged `weight` bytes already reserved, with `tags`;
    /// replaces an entry the key had. It falls due for refresh as `refresh` says.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u64,
        tags: &[&str],
        refresh: Refresh,
    ) {
        let store = self.store;
        let now = store.clock.nanos();
        let refresh_at = match refresh.after.unwrap_or_else(|| store.refresh_ns.load(Relaxed)) {
            NEVER => NEVER,
            after => {
                let early = store.early(refresh.started, now).min(after);
                now.saturating_add(after - early).max(REFRESHING + 1)
            }
        };
        let period = if store.period_hook.get().is_some() { store.period(now) } else { 0 };
        if let Some(old) = self.take(hash, &key) {
            self.dropped.push(old);
        }
        let sh = self.shard();
        if !tags.is_empty() {
            store.tags.lock().add(&key, tags);
        }
        let entry = Entry {
            key,
            value,
            last_access: AtomicU64::new(now),
            charge: NonZeroU32::new(weight.min(MAX_WEIGHT) as u32 | if tags.is_empty() { 0 } else { TAGGED })
                .expect("a charge includes ENTRY_OVERHEAD"),
            place: Place { due: 0, pos: 0 },
            period: AtomicU32::new(period),
            refresh_at: AtomicU64::new(refresh_at),
        };
        let idx = sh.insert(hash, entry, &store.hasher);
        // A slot reused by a value that never refreshes keeps its old time: nothing reads it.
        #[cfg(feature = "redis")]
        if refresh_at != NEVER && store.records_written.load(Relaxed) {
            if sh.written.len() <= idx as usize {
                sh.written.resize(sh.slots.len(), 0);
            }
            sh.written[idx as usize] = store.clock.wall_ms();
        }
        let place = sh.wheel.push(store.due_tick(now), idx);
        sh.slots[idx as usize].as_mut().expect("just inserted").place = place;
    }
}

impl<K, V, A> Drop for ShardWrite<'_, K, V, A>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    fn drop(&mut self) {
        drop(self.guard.take());
        drop(std::mem::take(&mut self.dropped));
        self.store.evicted(EvictionReason::Idle, self.idle);
        self.store.evicted(EvictionReason::Invalidated, self.invalidated);
    }
}

/// A hit on a due entry: the first caller takes its refresh; the others get the value as it
/// is (stale).
#[cold]
#[inline(never)]
fn claim<K, V>(e: &Entry<K, V>, at: u64) -> Due {
    if at != REFRESHING && e.refresh_at.compare_exchange(at, REFRESHING, Relaxed, Relaxed).is_ok() {
        return Due::Claimed(at);
    }
    Due::Stale
}

#[inline]
fn touch<K, V>(e: &Entry<K, V>, now: u64, duration: u64) {
    if now.saturating_sub(e.last_access.load(Relaxed)) >= TOUCH_GRANULARITY_NS.max(duration >> 10) {
        e.last_access.store(now, Relaxed);
    }
}

impl<K: Hash + Eq, V, A> Shard<K, V, A> {
    #[inline(always)]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slots = &self.slots;
        self.table.find(hash, |&i| slots[i as usize].as_ref().is_some_and(|e| e.key.borrow() == key)).copied()
    }

    #[inline(always)]
    fn fresh<Q>(&self, hash: u64, key: &Q, now: u64, duration: u64, clock: &Clock) -> Option<&Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let idx = self.find(hash, key)?;
        let e = self.slots[idx as usize].as_ref()?;
        if !clock.fresh(e.last_access.load(Relaxed), now, duration) {
            return None;
        }
        touch(e, now, duration);
        Some(e)
    }

    fn insert(&mut self, hash: u64, entry: Entry<K, V>, hasher: &foldhash::fast::RandomState) -> u32 {
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(entry);
                i
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.table.insert_unique(hash, idx, |&i| {
            hasher.hash_one(&slots[i as usize].as_ref().expect("indexed slot is occupied").key)
        });
        self.len += 1;
        idx
    }

    fn occupied(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i as u32)
    }

    /// One random occupied slot and its last access, if a few tries find one.
    fn sample(&self) -> Option<(u64, u32)> {
        if self.len == 0 {
            return None;
        }
        for _ in 0..4 {
            let idx = fastrand::usize(..self.slots.len());
            if let Some(e) = &self.slots[idx] {
                return Some((e.last_access.load(Relaxed), idx as u32));
            }
        }
        None
    }

    /// The least recently used of a few sampled entries (any entry if sampling misses).
    fn oldest_of_sample(&self) -> Option<u32> {
        (0..EVICTION_SAMPLES)
            .filter_map(|_| self.sample())
            .min_by_key(|&(t, _)| t)
            .map(|(_, i)| i)
            .or_else(|| self.occupied().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn store(duration: Duration, clock: &Clock) -> Store<u64, u64, ()> {
        let settings = Settings { cache_duration: duration, ..Settings::default() };
        Store::new("t".into(), &settings, Box::new(|_, _| 8), clock.clone(), None).unwrap()
    }

    fn put(s: &Store<u64, u64, ()>, k: u64, tags: &[&str]) {
        let w = s.weigh(&k, &k, 0).unwrap();
        assert!(s.reserve(w));
        let hash = s.hash(&k);
        s.write(hash).insert(hash, k, k, w, tags, Refresh::default());
    }

    fn wheel_records(s: &Store<u64, u64, ()>) -> usize {
        s.shards.iter().map(|c| c.lock.read().wheel.len()).sum()
    }

    #[test]
    fn the_wheel_holds_one_record_per_entry_whatever_the_churn() {
        let clock = Clock::manual();
        let s = store(Duration::from_secs(300), &clock);
        for round in 0..50u64 {
            for k in 0..200 {
                put(&s, round * 1000 + k, &[]);
            }
            for k in 0..200 {
                let key = round * 1000 + k;
                let hash = s.hash(&key);
                assert!(s.write(hash).remove(hash, &key));
            }
            clock.advance(Duration::from_millis(10));
        }
        assert_eq!(s.len(), 0);
        assert_eq!(wheel_records(&s), 0, "removed entries leave no expiry record behind");
        put(&s, 1, &[]);
        put(&s, 1, &[]);
        assert_eq!(wheel_records(&s), 1, "a replaced entry's record went with it");
    }

    #[test]
    fn a_free_slab_slot_costs_no_more_than_an_entry() {
        // The slab is a `Vec<Option<Entry>>`: the entry's charge, never zero, is the niche
        // that tells a free slot, so `Option` adds no tag (8 bytes per entry with padding).
        type E = Entry<u64, [u8; 16]>;
        assert_eq!(size_of::<Option<E>>(), size_of::<E>());
        assert_eq!(size_of::<Option<E>>(), 56, "u64 -> [u8; 16]: 24 payload bytes, 32 of metadata");
    }

    #[test]
    fn invalidating_tags_nobody_stored_leaves_nothing_behind() {
        let s = store(Duration::from_secs(300), &Clock::manual());
        for i in 0..10_000 {
            assert_eq!(s.invalidate_tag(&format!("tag:{i}")), 0);
        }
        put(&s, 1, &["a", "b"]);
        assert_eq!(s.invalidate_tag("a"), 1);
        assert!(s.tags.lock().is_empty());
    }

    #[test]
    fn swept_and_rescheduled_entries_keep_exact_records() {
        let clock = Clock::manual();
        let s = store(Duration::from_secs(10), &clock);
        for k in 0..100 {
            put(&s, k, &[]);
        }
        clock.advance(Duration::from_secs(6));
        for k in 0..50 {
            assert!(s.lookup_with(s.hash(&k), &k, |v| *v).is_some());
        }
        clock.advance(Duration::from_secs(6));
        s.sweep(false);
        assert_eq!(s.len(), 50, "the 50 untouched entries expired");
        assert_eq!(wheel_records(&s), 50);
        clock.advance(Duration::from_secs(20));
        s.sweep(false);
        assert_eq!((s.len(), wheel_records(&s)), (0, 0));
    }
}
