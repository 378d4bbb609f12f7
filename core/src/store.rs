//! Where entries live: sharded tables, byte accounting, eviction and idle expiry.
//!
//! Each shard is a slab of entries (`Vec<Option<Entry>>`) indexed by a SwissTable of `u32` slot
//! numbers, behind one `RwLock`. The indirection keeps memory per entry small and independent of
//! the table's load factor (a table of 4-byte slots is cheap to keep half empty), and it makes
//! sampling for eviction a random index into the slab.
//!
//! * **Hits** take the shard's read lock only; recency is the entry's `last_access`, an atomic
//!   the reader stores (at most once per millisecond, to spare contended cache lines).
//! * **Bytes** are reserved with a compare-and-swap before an entry is inserted, so `bytes_used`
//!   never exceeds the limit under any interleaving.
//! * **Eviction** samples a few entries of a random shard and drops the least recently used
//!   (as Redis does): no list to maintain on the hit path.
//! * **Expiry** is exact on read (an entry idle for `cache_duration` is never returned). Memory
//!   is reclaimed by the process-wide sweeper (`expiry`): each shard keeps a timer wheel of slot
//!   numbers keyed by due tick; a due record whose entry was touched since is rescheduled, so a
//!   sweep costs the entries that expire or were touched, never all entries.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};

use hashbrown::{HashMap, HashSet, HashTable};
use parking_lot::{Mutex, RwLock};

use crate::clock::Clock;
use crate::concurrency::Slots;
use crate::config::{ConfigError, Settings, WhenFull};
use crate::flight::Flight;
use crate::stats::{Counters, Event, EvictionReason, Listener, Stats};

/// Bytes charged per entry on top of the weigher's answer: the slab slot's metadata, the index
/// slot and the expiry record. Measured with the `memory` benchmark (1M entries of `u64` →
/// `[u8; 16]`, RSS growth per entry minus the 24 payload bytes); see BENCHMARKS.md.
pub const ENTRY_OVERHEAD: u64 = 40;

/// A hit refreshes `last_access` only if it is older than max(this, duration / 1024), so hot
/// keys do not dirty (and, across threads, bounce) their cache line on every read. Expiry may
/// therefore come that much early (0.1% of the duration), never late.
const TOUCH_GRANULARITY_NS: u64 = 1_000_000;

/// Entries sampled per eviction (Redis' default).
const EVICTION_SAMPLES: usize = 5;

/// Expiry records processed per hold of a shard's write lock, so readers never wait long.
const SWEEP_BATCH: usize = 64;

pub(crate) type Weigher<K, V> = Box<dyn Fn(&K, &V) -> u64 + Send + Sync>;

pub(crate) struct Entry<K, V> {
    key: K,
    value: V,
    last_access: AtomicU64,
    weight: u32,
    /// The wheel tick whose record is this entry's live one; other records are stale.
    due: u32,
    tagged: bool,
    /// The touch period (a tenth of the duration) in which the shared tier last heard of a hit.
    #[cfg(feature = "shared")]
    remote_touch: std::sync::atomic::AtomicU32,
}

pub(crate) struct Shard<K, V> {
    table: HashTable<u32>,
    slots: Vec<Option<Entry<K, V>>>,
    free: Vec<u32>,
    len: usize,
    wheel: BTreeMap<u32, Vec<u32>>,
    pub(crate) flights: HashMap<K, Arc<Flight<V>>>,
}

#[repr(align(128))]
pub(crate) struct ShardCell<K, V> {
    pub(crate) lock: RwLock<Shard<K, V>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct TagIndex<K> {
    by_tag: std::collections::HashMap<Arc<str>, HashSet<K>>,
    by_key: HashMap<K, Box<[Arc<str>]>>,
    /// The invalidation epoch at which each tag was last invalidated.
    invalidated_at: std::collections::HashMap<Arc<str>, u64>,
}

/// The shared state of one cache.
pub(crate) struct Inner<K, V> {
    pub(crate) name: Arc<str>,
    shards: Box<[ShardCell<K, V>]>,
    shard_shift: u32,
    hasher: foldhash::fast::RandomState,
    limit: AtomicU64,
    duration_ns: AtomicU64,
    tick_ns: AtomicU64,
    when_full: AtomicU8,
    bytes: AtomicU64,
    pub(crate) counters: Counters,
    pub(crate) in_flight: AtomicU64,
    weigher: Weigher<K, V>,
    pub(crate) clock: Clock,
    tags: Mutex<TagIndex<K>>,
    /// Bumped by `clear` and `invalidate_tag`; a flight remembers it at its start.
    pub(crate) epoch: AtomicU64,
    clear_epoch: AtomicU64,
    full: AtomicBool,
    pub(crate) listener: Option<Listener>,
    pub(crate) slots: Arc<Slots>,
    /// The shared tier, when the cache has one (only caches keyed by [`crate::Key`]).
    #[cfg(feature = "shared")]
    pub(crate) shared: std::sync::OnceLock<crate::shared::SharedTier>,
    /// How the Rust API turns values into bytes for the shared tier (bindings do their own).
    #[cfg(feature = "shared")]
    pub(crate) codec: std::sync::OnceLock<crate::remote::SharedCodec<V>>,
    settings: Mutex<Settings>,
}

/// What `store` did with a value.
enum Stored {
    Yes,
    Rejected,
    Invalidated,
}

fn tick_ns_for(duration_ns: u64) -> u64 {
    // Reclaim within max(1 s, duration / 10): ticks of half that, swept every 250 ms.
    (duration_ns / 10).max(1_000_000_000) / 2
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(
        name: Arc<str>,
        settings: Settings,
        weigher: Weigher<K, V>,
        clock: Clock,
        listener: Option<Listener>,
    ) -> Result<Arc<Self>, ConfigError> {
        settings.validate()?;
        let limit = settings.memory_limit.resolve()?;
        let shards = (std::thread::available_parallelism().map_or(4, |n| n.get()) * 4)
            .next_power_of_two()
            .clamp(8, 64);
        let duration_ns = duration_nanos(&settings);
        let inner = Arc::new(Inner {
            name,
            shards: (0..shards)
                .map(|_| ShardCell {
                    lock: RwLock::new(Shard {
                        table: HashTable::new(),
                        slots: Vec::new(),
                        free: Vec::new(),
                        len: 0,
                        wheel: BTreeMap::new(),
                        flights: HashMap::new(),
                    }),
                    hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                })
                .collect(),
            shard_shift: 64 - shards.trailing_zeros(),
            hasher: foldhash::fast::RandomState::default(),
            limit: AtomicU64::new(limit),
            duration_ns: AtomicU64::new(duration_ns),
            tick_ns: AtomicU64::new(tick_ns_for(duration_ns)),
            when_full: AtomicU8::new(settings.when_full as u8),
            bytes: AtomicU64::new(0),
            counters: Counters::default(),
            in_flight: AtomicU64::new(0),
            weigher,
            clock,
            tags: Mutex::new(TagIndex {
                by_tag: Default::default(),
                by_key: HashMap::new(),
                invalidated_at: Default::default(),
            }),
            epoch: AtomicU64::new(0),
            clear_epoch: AtomicU64::new(0),
            full: AtomicBool::new(false),
            listener,
            slots: Slots::new(settings.max_concurrency),
            settings: Mutex::new(settings),
            #[cfg(feature = "shared")]
            shared: std::sync::OnceLock::new(),
            #[cfg(feature = "shared")]
            codec: std::sync::OnceLock::new(),
        });
        crate::expiry::register(Arc::downgrade(&inner) as _);
        Ok(inner)
    }

    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    pub(crate) fn shard(&self, hash: u64) -> &ShardCell<K, V> {
        // The table uses the low bits and the top 7; pick the shard from the bits below those.
        let idx = ((hash << 7) >> self.shard_shift) as usize;
        &self.shards[idx]
    }

    #[inline]
    fn duration(&self) -> u64 {
        self.duration_ns.load(Relaxed)
    }

    /// A fresh value for `key`, touching it; the read-lock-only hit path.
    #[inline(always)]
    pub(crate) fn lookup(&self, hash: u64, key: &K) -> Option<V> {
        self.lookup_with(hash, key, V::clone)
    }

    /// The hit path, reading the value in place (under the shard's read lock).
    #[inline(always)]
    pub(crate) fn lookup_with<Q, R>(&self, hash: u64, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let cell = self.shard(hash);
        let now = self.clock.nanos();
        let sh = cell.lock.read();
        let e = sh.fresh(hash, key, now, self.duration(), &self.clock)?;
        #[cfg(feature = "shared")]
        self.touch_shared(e, now);
        let r = f(&e.value);
        drop(sh);
        cell.hits.fetch_add(1, Relaxed);
        Some(r)
    }

    /// Tells the shared tier about a local hit, at most once per tenth of the duration per key.
    #[cfg(feature = "shared")]
    #[inline]
    fn touch_shared(&self, e: &Entry<K, V>, now: u64) {
        if let Some(tier) = self.shared.get() {
            let period = self.touch_period(now);
            if e.remote_touch.swap(period, Relaxed) != period {
                if let Some(k) = (&e.key as &dyn std::any::Any).downcast_ref::<crate::Key>() {
                    tier.touch(k);
                }
            }
        }
    }

    #[cfg(feature = "shared")]
    fn touch_period(&self, now: u64) -> u32 {
        (now / (self.duration() / 10).max(1)) as u32
    }

    pub(crate) fn count_miss(&self, hash: u64) {
        self.shard(hash).misses.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_hit(&self, hash: u64) {
        self.shard(hash).hits.fetch_add(1, Relaxed);
    }

    /// Under a shard's write lock: a fresh value, or `None` after dropping an idle-expired entry
    /// (returned in `dropped` to be released outside the lock).
    pub(crate) fn lookup_locked(
        &self,
        sh: &mut Shard<K, V>,
        hash: u64,
        key: &K,
        dropped: &mut Vec<Entry<K, V>>,
    ) -> Option<V> {
        let now = self.clock.nanos();
        let idx = sh.find(hash, key)?;
        let e = sh.slots[idx as usize].as_ref().expect("indexed slot is occupied");
        if self.clock.fresh(e.last_access.load(Relaxed), now, self.duration()) {
            touch(e, now, self.duration());
            return Some(e.value.clone());
        }
        dropped.push(self.remove_slot(sh, idx));
        None
    }

    /// Reserves `weight` bytes, evicting least recently used entries in evict mode.
    fn reserve(&self, weight: u64) -> bool {
        loop {
            let limit = self.limit.load(Relaxed);
            let cur = self.bytes.load(Relaxed);
            if cur + weight <= limit {
                if self.bytes.compare_exchange_weak(cur, cur + weight, Relaxed, Relaxed).is_ok() {
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

    /// Stores a computed value under the flight's shard lock, unless the flight was invalidated
    /// or the cache has no room; removes the flight either way, atomically with the insert, so a
    /// later `begin` sees the entry or a new flight, never a gap.
    pub(crate) fn store(
        &self,
        key: &K,
        hash: u64,
        value: &V,
        extra_weight: u64,
        tags: &[&str],
        flight: &Arc<Flight<V>>,
    ) {
        let weight = (self.weigher)(key, value).saturating_add(extra_weight).saturating_add(ENTRY_OVERHEAD);
        let fits = weight <= u32::MAX as u64 && self.reserve(weight);
        let cell = self.shard(hash);
        let mut dropped = Vec::new();
        let outcome = {
            let mut sh = cell.lock.write();
            sh.end_flight(key, flight);
            if flight.invalidated.load(Relaxed) || self.clear_epoch.load(Relaxed) > flight.epoch {
                Stored::Invalidated
            } else if !fits {
                Stored::Rejected
            } else {
                let mut tag_index = (!tags.is_empty()).then(|| self.tags.lock());
                let stale = tag_index.as_ref().is_some_and(|t| {
                    tags.iter().any(|tag| t.invalidated_at.get(*tag).is_some_and(|&at| at > flight.epoch))
                });
                if stale {
                    Stored::Invalidated
                } else {
                    if let Some(idx) = sh.find(hash, key) {
                        dropped.push(self.remove_slot(&mut sh, idx));
                    }
                    let now = self.clock.nanos();
                    let due = self.due_tick(now);
                    let entry = Entry {
                        key: key.clone(),
                        value: value.clone(),
                        last_access: AtomicU64::new(now),
                        weight: weight as u32,
                        due,
                        tagged: !tags.is_empty(),
                        #[cfg(feature = "shared")]
                        remote_touch: std::sync::atomic::AtomicU32::new(self.touch_period(now)),
                    };
                    let idx = sh.insert(hash, entry, &self.hasher);
                    sh.wheel.entry(due).or_default().push(idx);
                    if let Some(t) = tag_index.as_mut() {
                        let tags: Box<[Arc<str>]> = tags.iter().map(|&t| Arc::from(t)).collect();
                        for tag in tags.iter() {
                            t.by_tag.entry(tag.clone()).or_default().insert(key.clone());
                        }
                        t.by_key.insert(key.clone(), tags);
                    }
                    Stored::Yes
                }
            }
        };
        if fits && !matches!(outcome, Stored::Yes) {
            self.release(weight);
        }
        drop(dropped);
        if matches!(outcome, Stored::Rejected) {
            Counters::add(&self.counters.rejected_full, 1);
            if !self.full.swap(true, Relaxed) {
                let (bytes_used, memory_limit) = (self.bytes.load(Relaxed), self.limit.load(Relaxed));
                tracing::warn!(target: "coopcache", cache = %self.name, bytes_used, memory_limit,
                    "cache is full; new values are returned but not stored");
                self.emit(Event::Full { cache: self.name.to_string(), bytes_used, memory_limit });
            }
        }
    }

    /// Removes the flight without storing anything (nocache, error, abandoned lease).
    pub(crate) fn end_flight(&self, key: &K, hash: u64, flight: &Arc<Flight<V>>) {
        self.shard(hash).lock.write().end_flight(key, flight);
    }

    fn release(&self, weight: u64) {
        let after = self.bytes.fetch_sub(weight, Relaxed) - weight;
        if self.full.load(Relaxed) && after < self.limit.load(Relaxed) / 10 * 9 {
            self.full.store(false, Relaxed);
        }
    }

    fn due_tick(&self, last_access: u64) -> u32 {
        let tick = self.tick_ns.load(Relaxed);
        let due = last_access.saturating_add(self.duration());
        (due.div_ceil(tick)).min(u32::MAX as u64) as u32
    }

    /// Takes an entry out of a locked shard, keeping bytes and the tag index right.
    fn remove_slot(&self, sh: &mut Shard<K, V>, idx: u32) -> Entry<K, V> {
        let hash = self.hash(&sh.slots[idx as usize].as_ref().expect("occupied").key);
        let e = sh.take(hash, idx);
        self.release(e.weight as u64);
        if e.tagged {
            let mut t = self.tags.lock();
            if let Some(tags) = t.by_key.remove(&e.key) {
                for tag in tags.iter() {
                    if let Some(set) = t.by_tag.get_mut(tag) {
                        set.remove(&e.key);
                        if set.is_empty() {
                            t.by_tag.remove(tag);
                        }
                    }
                }
            }
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
                self.remove_slot(&mut sh, idx)
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
                self.remove_slot(&mut sh, idx)
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
        tracing::debug!(target: "coopcache", cache = %self.name, reason = reason.as_str(), count, "evicted");
        self.emit(Event::Evicted { cache: self.name.to_string(), reason, count });
    }

    fn emit(&self, event: Event) {
        if let Some(l) = &self.listener {
            l(&event);
        }
    }

    pub(crate) fn invalidate(&self, key: &K) -> bool {
        let hash = self.hash(key);
        let removed = {
            let mut sh = self.shard(hash).lock.write();
            if let Some(f) = sh.flights.get(key) {
                f.invalidated.store(true, Relaxed);
            }
            sh.find(hash, key).map(|idx| self.remove_slot(&mut sh, idx))
        };
        let hit = removed.is_some();
        drop(removed);
        self.evicted(EvictionReason::Invalidated, hit as u64);
        hit
    }

    pub(crate) fn invalidate_tag(&self, tag: &str) -> u64 {
        let keys = {
            let mut t = self.tags.lock();
            let epoch = self.epoch.fetch_add(1, Relaxed) + 1;
            t.invalidated_at.insert(Arc::from(tag), epoch);
            t.by_tag.remove(tag).unwrap_or_default()
        };
        let mut n = 0;
        for key in keys {
            let hash = self.hash(&key);
            let removed = {
                let mut sh = self.shard(hash).lock.write();
                sh.find(hash, &key).map(|idx| self.remove_slot(&mut sh, idx))
            };
            n += removed.is_some() as u64;
        }
        self.evicted(EvictionReason::Invalidated, n);
        n
    }

    pub(crate) fn clear(&self) {
        let epoch = self.epoch.fetch_add(1, Relaxed) + 1;
        self.clear_epoch.store(epoch, Relaxed);
        let mut n = 0;
        for cell in self.shards.iter() {
            let removed: Vec<_> = {
                let mut sh = cell.lock.write();
                sh.flights.values().for_each(|f| f.invalidated.store(true, Relaxed));
                let occupied: Vec<u32> = sh.occupied().collect();
                occupied.into_iter().map(|idx| self.remove_slot(&mut sh, idx)).collect()
            };
            n += removed.len() as u64;
        }
        self.evicted(EvictionReason::Invalidated, n);
    }

    /// Reclaims idle entries whose expiry records are due; the sweeper calls this.
    pub(crate) fn sweep(&self) {
        let dur = self.duration();
        let tick = self.tick_ns.load(Relaxed);
        let mut expired = 0;
        for cell in self.shards.iter() {
            loop {
                let now = self.clock.nanos();
                let now_tick = (now / tick).min(u32::MAX as u64) as u32;
                if cell.lock.read().wheel.first_key_value().is_none_or(|(&t, _)| t > now_tick) {
                    break;
                }
                let dropped: Vec<Entry<K, V>> = {
                    let mut sh = cell.lock.write();
                    let Some(mut first) = sh.wheel.first_entry() else { break };
                    let due = *first.key();
                    if due > now_tick {
                        break;
                    }
                    let list = first.get_mut();
                    let batch: Vec<u32> = list.drain(list.len().saturating_sub(SWEEP_BATCH)..).collect();
                    if list.is_empty() {
                        first.remove();
                    }
                    let mut dropped = Vec::new();
                    for idx in batch {
                        let Some(e) = sh.slots.get(idx as usize).and_then(|s| s.as_ref()) else { continue };
                        if e.due != due {
                            continue;
                        }
                        if self.clock.fresh(e.last_access.load(Relaxed), now, dur) {
                            let next = self.due_tick(e.last_access.load(Relaxed));
                            sh.slots[idx as usize].as_mut().expect("occupied").due = next;
                            sh.wheel.entry(next).or_default().push(idx);
                        } else {
                            dropped.push(self.remove_slot(&mut sh, idx));
                        }
                    }
                    dropped
                };
                expired += dropped.len() as u64;
            }
        }
        self.evicted(EvictionReason::Idle, expired);
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for cell in self.shards.iter() {
            s.hits += cell.hits.load(Relaxed);
            s.misses += cell.misses.load(Relaxed);
            s.entries += cell.lock.read().len as u64;
        }
        self.counters.fill(&mut s);
        s.bytes_used = self.bytes.load(Relaxed);
        s.memory_limit = self.limit.load(Relaxed);
        s.in_flight = self.in_flight.load(Relaxed);
        s
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|c| c.lock.read().len).sum()
    }

    pub(crate) fn settings(&self) -> Settings {
        self.settings.lock().clone()
    }

    /// Applies new settings in place: entries are kept, a lower limit or a shorter duration
    /// takes effect at once.
    pub(crate) fn reconfigure(&self, settings: Settings) -> Result<(), ConfigError> {
        settings.validate()?;
        let limit = settings.memory_limit.resolve()?;
        let mut current = self.settings.lock();
        self.when_full.store(settings.when_full as u8, Relaxed);
        self.slots.set_limit(settings.max_concurrency);
        let duration_ns = duration_nanos(&settings);
        if duration_ns != self.duration() {
            self.duration_ns.store(duration_ns, Relaxed);
            #[cfg(feature = "shared")]
            if let Some(tier) = self.shared.get() {
                tier.set_idle(settings.cache_duration);
            }
            self.tick_ns.store(tick_ns_for(duration_ns), Relaxed);
            for cell in self.shards.iter() {
                let mut sh = cell.lock.write();
                let dues: Vec<(u32, u32)> = sh
                    .occupied()
                    .map(|idx| {
                        let e = sh.slots[idx as usize].as_ref().expect("occupied");
                        (idx, self.due_tick(e.last_access.load(Relaxed)))
                    })
                    .collect();
                sh.wheel.clear();
                for (idx, due) in dues {
                    sh.slots[idx as usize].as_mut().expect("occupied").due = due;
                    sh.wheel.entry(due).or_default().push(idx);
                }
            }
        }
        self.limit.store(limit, Relaxed);
        while self.bytes.load(Relaxed) > limit && self.evict_one() {}
        *current = settings;
        Ok(())
    }
}

fn duration_nanos(s: &Settings) -> u64 {
    s.cache_duration.as_nanos().min(u64::MAX as u128) as u64
}

#[inline]
fn touch<K, V>(e: &Entry<K, V>, now: u64, duration: u64) {
    if now.saturating_sub(e.last_access.load(Relaxed)) >= TOUCH_GRANULARITY_NS.max(duration >> 10) {
        e.last_access.store(now, Relaxed);
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Shard<K, V> {
    #[inline(always)]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slots = &self.slots;
        self.table.find(hash, |&i| slots[i as usize].as_ref().is_some_and(|e| e.key.borrow() == key)).copied()
    }

    #[inline(always)]
    fn fresh<Q>(&self, hash: u64, key: &Q, now: u64, duration: u64, clock: &Clock) -> Option<&Entry<K, V>>
    where
        K: std::borrow::Borrow<Q>,
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

    fn take(&mut self, hash: u64, idx: u32) -> Entry<K, V> {
        if let Ok(found) = self.table.find_entry(hash, |&i| i == idx) {
            found.remove();
        }
        self.free.push(idx);
        self.len -= 1;
        self.slots[idx as usize].take().expect("occupied")
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

    fn end_flight(&mut self, key: &K, flight: &Arc<Flight<V>>) {
        if self.flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            self.flights.remove(key);
        }
    }
}
