//! The Rust process of the cross-process demo (`examples/shared/demo.py`, part of `make demo`):
//! `shared_demo REDIS_URL CACHE`; build it with `--features shared`.
//!
//! Configures CACHE with a shared tier on REDIS_URL (JSON values, so Python and Node processes
//! share the key space), prints `ready`, waits for a line on stdin, then asks for the key
//! `("report", 2024)`. Computing it takes 500 ms. Prints one JSON line: who it is, whether it
//! computed the value, and the value it got. The Python and Node workers in `examples/shared/`
//! do the same.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::io::{BufRead, Write};
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::time::Duration;

    use coopcache::shared::SharedSettings;
    use coopcache::{Cache, JsonCodec, Key};
    use serde_json::{Value, json};

    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, name] = &args[..] else {
        return Err("usage: shared_demo REDIS_URL CACHE".into());
    };
    let settings = SharedSettings::new(url.clone());
    let cache: Cache<Key, Value> = Cache::builder()
        .name(name.clone())
        .cache_duration(Duration::from_secs(60))
        .shared(settings, JsonCodec)
        .build()?;
    // Wait until every process is ready, so they all ask at once. (The shared tier connects in
    // the background; the first call waits, bounded, for that first attempt.)
    println!("ready");
    std::io::stdout().flush()?;
    std::io::stdin().lock().read_line(&mut String::new())?;

    let me = format!("rust pid {}", std::process::id());
    let computed = AtomicBool::new(false);
    let value = cache.get_or_compute(Key::from(("report", 2024)), || {
        computed.store(true, SeqCst);
        std::thread::sleep(Duration::from_millis(500)); // an expensive computation
        json!({ "report": 2024, "computed_by": me })
    });
    let line = json!({ "who": me, "computed": computed.load(SeqCst), "value": value });
    println!("{line}");
    Ok(())
}
