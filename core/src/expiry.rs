//! The process-wide sweeper: one thread for every cache, reclaiming idle entries.
//!
//! Reads are exact without it (an idle entry is never returned); it only gives memory back.
//! Each round it asks every live cache to process its due expiry records (see `store`), which
//! costs the entries that expire or were touched, and holds a shard's lock for one small batch
//! at a time, so readers never wait behind it. Caches are held weakly: a dropped cache leaves
//! the list at the next round.

use std::sync::{LazyLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;

/// Something the sweeper visits: a cache's shared state.
pub(crate) trait Sweep: Send + Sync {
    fn sweep(&self);
}

impl<K, V> Sweep for crate::store::Inner<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn sweep(&self) {
        crate::store::Inner::sweep(self);
    }
}

/// How often the sweeper runs. Entries are due in ticks of max(1 s, duration / 10) / 2, so an
/// idle entry is reclaimed within max(1 s, duration / 10) of expiring.
const ROUND: Duration = Duration::from_millis(250);

static CACHES: LazyLock<Mutex<Vec<Weak<dyn Sweep>>>> = LazyLock::new(|| {
    std::thread::Builder::new()
        .name("coopcache-sweeper".into())
        .spawn(run)
        .expect("spawn the coopcache sweeper thread");
    Mutex::new(Vec::new())
});

pub(crate) fn register(cache: Weak<dyn Sweep>) {
    CACHES.lock().push(cache);
}

fn run() {
    loop {
        std::thread::sleep(ROUND);
        let live: Vec<_> = {
            let mut caches = CACHES.lock();
            caches.retain(|c| c.strong_count() > 0);
            caches.iter().filter_map(Weak::upgrade).collect()
        };
        for cache in live {
            cache.sweep();
        }
    }
}
