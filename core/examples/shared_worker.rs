//! One process of the cross-language test (`tests/cross/`): `shared_worker REDIS_URL CACHE`.
//!
//! Asks cache CACHE (shared tier on REDIS_URL, JSON values) for the key `("user", 42)`; the
//! computation counts itself with `INCR coopcache-test:computed:CACHE`, takes 300 ms and returns
//! `{"value": "from rust"}`. Prints the value it got as one JSON line. The Python and Node workers
//! do the same, so the test can check that the three languages computed the key once.

use std::time::Duration;

use coopcache::shared::SharedSettings;
use coopcache::{Cache, JsonCodec, Key};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (url, name) = match (args.next(), args.next()) {
        (Some(u), Some(n)) => (u, n),
        _ => return Err("usage: shared_worker REDIS_URL CACHE".into()),
    };
    let settings = SharedSettings::new(url.clone());
    let cache: Cache<Key, serde_json::Value> = Cache::builder()
        .name(name.clone())
        .cache_duration(Duration::from_secs(60))
        .shared(settings, JsonCodec)
        .build()?;
    // Wait for the connection, so this process takes part in the shared flight (bounded).
    for _ in 0..500 {
        if cache.shared().is_some_and(|t| t.is_up()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let value = cache.try_get_or_compute(Key::from(("user", 42)), || {
        let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
        redis::cmd("INCR").arg(format!("coopcache-test:computed:{name}")).query::<i64>(&mut conn)?;
        std::thread::sleep(Duration::from_millis(300));
        Ok::<_, redis::RedisError>(serde_json::json!({ "value": "from rust" }))
    })?;
    println!("{value}");
    Ok(())
}
