//! The process-wide sweeper: one thread for every cache, reclaiming idle entries, and one more
//! that tells listeners what it reclaimed.
//!
//! Reads are exact without it (an idle entry is never returned); it only gives memory back.
//! Each round it asks every live cache to process its due expiry records (see `store`), which
//! costs the entries that expire or were touched, and holds a shard's lock for one small batch
//! at a time, so readers never wait behind it. Caches are held weakly: a dropped cache leaves
//! the list at the next round.
//!
//! Listeners are user code: a slow one must not stall expiry for every cache. The sweeper only
//! counts what it evicted; the teller thread calls the listener, with one message queued per
//! cache at most (counts add up while it is busy).

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{Sender, channel};
use std::sync::{LazyLock, Weak};
use std::time::Duration;

use crate::sync::Mutex;

/// Something the sweeper visits: a cache.
pub(crate) trait Sweep: Send + Sync {
    /// Reclaims due idle entries. With `tell_later`, the eviction event is left for
    /// [`Sweep::tell_untold`]; true if the cache now has something to tell and had nothing before.
    fn sweep(&self, tell_later: bool) -> bool;
    /// Tells the listener what the sweeper left for later.
    fn tell_untold(&self);
    /// In a fork's child: forgets the computations of the parent's other threads (they do
    /// not exist there), so the child's callers compute instead of waiting forever.
    fn after_fork(&self);
}

/// How often the sweeper runs. Entries are due in ticks of max(1 s, duration / 10) / 2, so an
/// idle entry is reclaimed within max(1 s, duration / 10) of expiring.
const ROUND: Duration = Duration::from_millis(250);

struct Sweeper {
    caches: Mutex<Vec<Weak<dyn Sweep>>>,
    teller: Mutex<Sender<Weak<dyn Sweep>>>,
}

/// Whether the threads were started (in this process, or in the parent it forked from).
static STARTED: AtomicBool = AtomicBool::new(false);

static SWEEPER: LazyLock<Sweeper> = LazyLock::new(|| {
    STARTED.store(true, SeqCst);
    Sweeper { caches: Mutex::new(Vec::new()), teller: Mutex::new(start_threads()) }
});

/// Starts the sweeper and the teller; returns the teller's queue.
fn start_threads() -> Sender<Weak<dyn Sweep>> {
    let (teller, told) = channel::<Weak<dyn Sweep>>();
    spawn("coopcache-sweeper", run);
    spawn("coopcache-events", move || {
        for cache in told {
            if let Some(c) = cache.upgrade() {
                c.tell_untold();
            }
        }
    });
    teller
}

/// In a fork's child, where only the forking thread exists: every cache forgets the parent's
/// computations, and the sweeper and the teller start again if the parent had them.
pub(crate) fn after_fork() {
    if !STARTED.load(SeqCst) {
        return;
    }
    let caches: Vec<_> = SWEEPER.caches.lock().clone();
    for cache in caches.iter().filter_map(Weak::upgrade) {
        cache.after_fork();
    }
    if cfg!(not(feature = "shuttle")) {
        *SWEEPER.teller.lock() = start_threads();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap_or_else(|e| panic!("spawn the {name} thread: {e}"));
}

/// Adds a cache to the sweeper's rounds. Models of the flight protocol run without the sweeper
/// (they sweep by hand), so under the model checker nothing is registered.
pub(crate) fn register(cache: Weak<dyn Sweep>) {
    if cfg!(not(feature = "shuttle")) {
        SWEEPER.caches.lock().push(cache);
    }
}

fn run() {
    loop {
        std::thread::sleep(ROUND);
        let live: Vec<_> = {
            let mut caches = SWEEPER.caches.lock();
            caches.retain(|c| c.strong_count() > 0);
            caches.clone()
        };
        for weak in live {
            let Some(cache) = weak.upgrade() else { continue };
            if cache.sweep(true) {
                let _ = SWEEPER.teller.lock().send(weak);
            }
        }
    }
}
