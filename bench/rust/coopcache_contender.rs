//! coopcache as a contender of the Rust anchor harness (copied over its template by run.sh).

use std::future::Future;

use super::{AsyncContender, AsyncFamily, Config, Contender, Family, SyncContender, SyncFamily, Value};

pub struct CoopCacheFamily;
impl Family for CoopCacheFamily {
    const NAME: &'static str = "coopcache";
    const SINGLE_FLIGHT: bool = true;
    const BOUNDED: bool = true;
}
impl SyncFamily for CoopCacheFamily {
    type Sync<V: Value> = CoopCache<V>;
}
impl AsyncFamily for CoopCacheFamily {
    type Async<V: Value> = CoopCache<V>;
}

pub struct CoopCache<V: Value>(::coopcache::Cache<u64, V>);

impl<V: Value> Contender<V> for CoopCache<V> {
    fn build(cfg: &Config) -> Self {
        CoopCache(
            ::coopcache::Cache::builder()
                .memory_limit(cfg.max_bytes)
                .weigher(|_k: &u64, v: &V| v.weight() as u64)
                .cache_duration(cfg.tti)
                .when_full(::coopcache::WhenFull::Evict)
                .build()
                .expect("valid settings"),
        )
    }
    fn entry_count(&self) -> u64 {
        self.0.len() as u64
    }
}

impl<V: Value> SyncContender<V> for CoopCache<V> {
    #[inline]
    fn get_or_compute<F: FnOnce() -> V>(&self, key: u64, f: F) -> V {
        self.0.get_or_compute(key, f)
    }
}

impl<V: Value> AsyncContender<V> for CoopCache<V> {
    #[inline]
    fn get_or_compute_async<Fut>(&self, key: u64, f: Fut) -> impl Future<Output = V> + Send
    where
        Fut: Future<Output = V> + Send,
    {
        self.0.get_or_compute_async(key, f)
    }
}
