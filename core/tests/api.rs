//! The rest of the API: tags, clear, stats, configuration errors, the named registry.

use std::time::Duration;

use coopcache::{Cache, CallOptions, Error, Key, MemoryLimit, Registry, Settings, WhenFull};

#[test]
fn tags_invalidate_their_entries_only() {
    let c: Cache<u64, u64> = Cache::builder().build().unwrap();
    let tagged = |tags: &[&str]| CallOptions::new().tags(tags.iter().copied());
    c.compute(1, &tagged(&["user:1"]), || Ok::<_, Error>(1.into())).unwrap();
    c.compute(2, &tagged(&["user:1", "team:9"]), || Ok::<_, Error>(2.into())).unwrap();
    c.compute(3, &tagged(&["team:9"]), || Ok::<_, Error>(3.into())).unwrap();
    c.get_or_compute(4, || 4);
    assert_eq!(c.invalidate_tag("user:1"), 2);
    assert_eq!((c.get(&1), c.get(&2), c.get(&3), c.get(&4)), (None, None, Some(3), Some(4)));
    assert_eq!(c.invalidate_tag("user:1"), 0);
    assert_eq!(c.invalidate_tag("team:9"), 1);
    assert_eq!(c.stats().evicted_invalidated, 3);
}

#[test]
fn invalidate_and_clear() {
    let c: Cache<u64, u64> = Cache::builder().build().unwrap();
    (0..10).for_each(|k| {
        c.get_or_compute(k, || k);
    });
    assert!(c.invalidate(&3));
    assert!(!c.invalidate(&3));
    c.clear();
    let st = c.stats();
    assert_eq!((st.entries, st.bytes_used, st.evicted_invalidated), (0, 0, 10));
    assert!(c.is_empty());
}

#[test]
fn stats_count_every_kind_of_call() {
    let c: Cache<u64, u64> = Cache::builder().build().unwrap();
    c.get_or_compute(1, || 1);
    c.get_or_compute(1, || 1);
    c.get(&1);
    c.get(&2);
    let _ = c.try_get_or_compute(3, || Err(std::io::Error::other("x")));
    let st = c.stats();
    assert_eq!((st.hits, st.misses, st.computations, st.errors), (2, 3, 2, 1));
    assert_eq!(st.entries, 1);
    assert_eq!(st.memory_limit, 50 * 1024 * 1024);
}

#[test]
fn bad_settings_are_errors_at_configure_time() {
    let e = Cache::<u64, u64>::builder().memory_limit(MemoryLimit::Fraction(1.5)).build().unwrap_err();
    assert_eq!(e.setting, "memory_limit");
    assert!(e.to_string().contains("1.5"), "{e}");
    assert!(Cache::<u64, u64>::builder().max_concurrency(0).build().is_err());
    assert!("sometimes".parse::<WhenFull>().unwrap_err().to_string().contains("\"reject\" or \"evict\""));
    assert!(Settings::duration_from_secs(-1.0).is_err());
    assert!(Settings::duration_from_secs(f64::NAN).is_err());
    assert!(MemoryLimit::from_number(-5.0, false).is_err());
    assert!(MemoryLimit::from_number(2.5, true).is_err());
    assert_eq!(MemoryLimit::from_number(1.0, false).unwrap(), MemoryLimit::Bytes(1));
    assert_eq!(MemoryLimit::from_number(1.0, true).unwrap(), MemoryLimit::Fraction(1.0));
    let half = MemoryLimit::Fraction(0.5).resolve().unwrap();
    assert!(half > 0 && half <= coopcache::total_memory());
}

#[test]
fn the_registry_configures_once_and_updates_in_place() {
    let r: Registry<String> = Registry::new();
    let err = r.get("users").unwrap_err();
    assert!(matches!(err, Error::UnknownCache { .. }));
    assert!(err.to_string().contains("no caches are configured yet"), "{err}");
    let users = r.configure("users", Settings::default()).unwrap();
    users.get_or_compute(Key::from(("user", 1)), || "Ada".into());
    let again = r.configure("users", Settings::default().cache_duration(Duration::from_secs(5))).unwrap();
    assert_eq!(again.len(), 1, "entries kept");
    assert_eq!(users.settings().cache_duration, Duration::from_secs(5), "same cache, new settings");
    r.configure("orders", Settings::default()).unwrap();
    let err = r.get("user").unwrap_err().to_string();
    assert!(err.contains("configured: orders, users"), "{err}");
    assert!(r.configure("bad", Settings::default().max_concurrency(Some(0))).is_err());
    assert_eq!(r.names(), ["orders", "users"]);
}

#[test]
fn registry_entries_weigh_their_key_bytes_plus_the_bindings_weight() {
    let r: Registry<u32> = Registry::new();
    let c = r.configure("w", Settings::default()).unwrap();
    let key = Key::from("abc");
    let coopcache::Begin::Lease(lease) = c.begin(&key).unwrap() else { panic!() };
    lease.store_with(7, 1_000, &[]);
    assert_eq!(c.stats().bytes_used, key.as_bytes().len() as u64 + 1_000 + coopcache::ENTRY_OVERHEAD);
}

#[test]
fn stats_fields_name_every_counter_in_order() {
    let cache: coopcache::Cache<u32, u32> = coopcache::Cache::builder().build().unwrap();
    cache.get_or_compute(1, || 1);
    cache.get_or_compute(1, || unreachable!());
    let s = cache.stats();
    let fields = s.fields();
    let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    assert_eq!(names[..3], ["hits", "misses", "computations"]);
    assert_eq!(names.last(), Some(&"in_flight"));
    assert_eq!(fields[0].1, s.hits);
    assert_eq!((fields[0].1, fields[1].1, fields[2].1), (1, 1, 1));
    assert_eq!(fields.iter().find(|(n, _)| *n == "entries").map(|f| f.1), Some(s.entries));
}

/// Calls with borrowed key and value types can be spawned: their futures are `Send` (rustc's
/// check of an async fn's `Send`-ness used to fail on them: "implementation of `Send` is not
/// general enough").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_borrowed_types_can_be_spawned() {
    let c: Cache<(&'static str, u32), &'static str> = Cache::builder().build().unwrap();
    let task = tokio::spawn({
        let c = c.clone();
        async move { c.get_or_compute_async(("user", 42), async { "Ada" }).await }
    });
    assert_eq!(task.await.unwrap(), "Ada");
    let task = tokio::spawn({
        let c = c.clone();
        async move { c.try_get_or_compute_async(("user", 7), async { Ok::<_, std::io::Error>("Grace") }).await }
    });
    assert_eq!(task.await.unwrap().unwrap(), "Grace");
    let c2 = c.clone();
    let opts = CallOptions::new().tags(["t"]);
    let task = tokio::spawn(async move {
        c2.compute_async(("user", 9), &opts, async { Ok::<_, Error>("Lin".into()) }).await
    });
    assert_eq!(task.await.unwrap().unwrap(), "Lin");
    assert_eq!(c.get(&("user", 42)), Some("Ada"));
}
