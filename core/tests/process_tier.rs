//! The shared tier in process memory (`SharedMode::Process`, Node's `shared: 'process'`): caches
//! of one name in different registries (as Node's worker threads have) compute a key once.
#![cfg(feature = "json")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use coopcache::shared::{Blob, Remote, SharedMode, SharedTier};
use coopcache::{Cache, Clock, Error, JsonCodec, Key, Pending, Registry, Settings, nocache};

fn cache(name: &str) -> Cache<Key, String> {
    Cache::builder().name(name).shared_in_process(JsonCodec).build().unwrap()
}

fn stats(c: &Cache<Key, String>) -> coopcache::shared::SharedStats {
    c.shared().expect("a shared tier").stats()
}

/// Waits for a condition the test's threads bring about (the bound only stops a broken test).
fn until(mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "condition not reached");
        std::thread::yield_now();
    }
}

fn wait(p: &Pending<Remote>) -> Remote {
    p.wait_timeout(Duration::from_secs(20)).expect("an answer")
}

fn blob(v: &str) -> Blob {
    Blob { tags: vec!["t".into()], payload: v.as_bytes().to_vec() }
}

#[test]
fn caches_of_one_name_compute_a_cold_key_once_for_all() {
    let caches: Vec<_> = (0..4).map(|_| cache("pt1")).collect();
    let runs = AtomicU32::new(0);
    let key = Key::from(("report", 1));
    let values: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let (caches, c, runs, key) = (&caches, &caches[i % 4], &runs, key.clone());
                sc.spawn(move || {
                    c.get_or_compute(key, || {
                        runs.fetch_add(1, SeqCst);
                        // Finish only once the other caches' leaders wait on this computation
                        // and every caller of every cache waits on its own cache's leader.
                        until(|| {
                            caches.iter().map(|c| stats(c).remote_waits).sum::<u64>() == 3
                                && caches.iter().map(|c| c.stats().coalesced).sum::<u64>() == 12
                        });
                        "the report".to_string()
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(values.len(), 16);
    assert!(values.iter().all(|v| v == "the report"));
    // Each cache now has it locally; one created afterwards reads it without computing.
    assert!(caches.iter().all(|c| c.get(&key).as_deref() == Some("the report")));
    let late = cache("pt1");
    assert_eq!(late.get_or_compute(key, || unreachable!("in the process tier")), "the report");
    assert_eq!(stats(&late).remote_hits, 1);
    assert_eq!(caches.iter().map(|c| stats(c).leases_won).sum::<u64>(), 1);
}

#[test]
fn errors_and_nocache_reach_the_other_caches_and_are_not_stored() {
    let (a, b) = (cache("pt2"), cache("pt2"));
    let key = Key::from("boom");
    std::thread::scope(|sc| {
        let leader = sc.spawn(|| {
            a.try_get_or_compute(key.clone(), || {
                until(|| stats(&b).remote_waits == 1);
                Err::<String, _>(std::io::Error::other("db down"))
            })
        });
        // `a` holds the process tier's lease (its local flight alone is not enough: `b` could
        // take the lease first and compute for itself).
        until(|| stats(&a).leases_won == 1);
        match b.try_get_or_compute(key.clone(), || Ok::<_, std::io::Error>("mine".into())) {
            Err(Error::Remote { type_name, message }) => {
                assert_eq!((type_name.as_str(), message.as_str()), ("std::io::error::Error", "db down"))
            }
            other => panic!("expected the other cache's error, got {other:?}"),
        }
        assert!(leader.join().unwrap().is_err());
    });
    // Not stored anywhere: the next call computes.
    assert_eq!(b.get_or_compute(key.clone(), || "second".into()), "second");

    let key = Key::from("now");
    std::thread::scope(|sc| {
        let leader = sc.spawn(|| {
            a.compute(key.clone(), &Default::default(), || {
                until(|| stats(&b).remote_waits == 2);
                Ok::<_, std::io::Error>(nocache("fresh".to_string()))
            })
        });
        until(|| stats(&a).leases_won == 2);
        assert_eq!(b.get_or_compute(key.clone(), || "mine".into()), "fresh");
        assert_eq!(leader.join().unwrap().unwrap(), "fresh");
    });
    assert_eq!((a.get(&key), b.get(&key)), (None, None), "a nocache value is stored nowhere");
}

#[test]
fn invalidation_in_one_cache_reaches_the_others() {
    let caches: Vec<_> = (0..3).map(|_| cache("pt3")).collect();
    let (k1, k2) = (Key::from(1), Key::from(2));
    let opts = coopcache::CallOptions::new().tags(["team"]);
    for c in &caches {
        c.get_or_compute(k1.clone(), || "one".into());
        c.compute(k2.clone(), &opts, || Ok::<_, std::io::Error>("two".to_string().into())).unwrap();
    }
    assert_eq!(caches.iter().map(|c| stats(c).leases_won).sum::<u64>(), 2, "each key computed once");
    caches[0].invalidate(&k1);
    assert!(caches.iter().all(|c| c.get(&k1).is_none() && c.get(&k2).is_some()));
    caches[1].invalidate_tag("team");
    assert!(caches.iter().all(|c| c.get(&k2).is_none()));
    // Dropped from the process tier too: the next call computes again.
    assert_eq!(caches[2].get_or_compute(k1.clone(), || "again".into()), "again");
    caches[2].clear();
    assert!(caches.iter().all(|c| c.is_empty()));
}

#[test]
fn a_lease_dropped_unfinished_hands_the_key_to_a_waiting_cache() {
    let local = Settings::default();
    let start = || SharedTier::start("pt4", SharedMode::Process, &local, Clock::system(), None).unwrap();
    let (a, b) = (start(), start());
    let key = Key::from("k");
    let Remote::Compute(lease) = wait(&a.fetch(&key)) else { panic!("a computes") };
    let waiting = b.fetch(&key);
    assert!(waiting.try_get().is_none(), "b waits for a");
    drop(lease); // a worker that went away mid-computation
    let Remote::Compute(lease) = wait(&waiting) else { panic!("b takes over") };
    let late = a.fetch(&key);
    assert!(lease.store(&blob("v")).wait().then_some(()).is_some());
    match wait(&late) {
        Remote::Value(b) => {
            assert_eq!((b.payload.as_slice(), b.tags.as_slice()), (&b"v"[..], &["t".to_string()][..]))
        }
        _ => panic!("the value"),
    }
}

#[test]
fn reads_from_any_cache_keep_the_entry_alive_and_unread_it_expires() {
    let clock = Clock::manual();
    let idle = Duration::from_secs(10);
    let build = || {
        Cache::<Key, String>::builder()
            .name("pt5")
            .cache_duration(idle)
            .clock(clock.clone())
            .shared_in_process(JsonCodec)
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let key = Key::from("ttl");
    a.get_or_compute(key.clone(), || "v".into());
    // Hits in `a` every 6 s keep the process tier's entry alive well past 10 s.
    for _ in 0..4 {
        clock.advance(Duration::from_secs(6));
        assert_eq!(a.get(&key).as_deref(), Some("v"));
    }
    assert_eq!(b.get_or_compute(key.clone(), || unreachable!("kept alive by a's reads")), "v");
    assert_eq!(stats(&b).remote_hits, 1);
    // Nobody reads for longer than the duration: gone everywhere, computed again.
    clock.advance(Duration::from_secs(11));
    let c = build();
    assert_eq!(c.get_or_compute(key, || "new".into()), "new");
    assert_eq!(stats(&c).leases_won, 1);
}

#[test]
fn registries_share_by_name_and_a_cache_keeps_its_first_shared_tier() {
    // Two registries, as two Node workers have.
    let (r1, r2) = (Registry::<Arc<str>>::new(), Registry::<Arc<str>>::new());
    let s = Settings::default();
    let a = r1.configure_shared("pt6", s.clone(), Some(SharedMode::Process)).unwrap();
    let b = r2.configure_shared("pt6", s.clone(), Some(SharedMode::Process)).unwrap();
    let key = Key::from("k");
    let Remote::Compute(lease) = wait(&a.shared().unwrap().fetch(&key)) else { panic!("a computes") };
    let waiting = b.shared().unwrap().fetch(&key);
    let _written = lease.store(&blob("v"));
    assert!(matches!(wait(&waiting), Remote::Value(b) if b.payload == b"v"));
    // Another cache name is another store.
    let other = r2.configure_shared("pt6-other", s.clone(), Some(SharedMode::Process)).unwrap();
    assert!(matches!(wait(&other.shared().unwrap().fetch(&key)), Remote::Compute(_)));
    // Reconfiguring keeps the tier; asking for another one is a configuration error.
    assert!(r1.configure_shared("pt6", s.clone(), Some(SharedMode::Process)).is_ok());
    let e = r1.configure_shared("pt6", s.clone(), None).unwrap_err();
    assert!(e.to_string().contains("the shared tier the cache was first configured with"), "{e}");
    let e =
        r1.configure("pt7", s.clone()).and_then(|_| r1.configure_shared("pt7", s, Some(SharedMode::Process)));
    assert_eq!(e.unwrap_err().setting, "shared");
}
