//! The shared tier on a real Redis Cluster (issue 12: "Shared tier past one Redis"): six
//! `redis-server --cluster-enabled yes` on loopback, three masters with a replica each,
//! started by each test and stopped when it ends (see `support/cluster.rs`).
//!
//! Each cache stands for a process. Keys are spread over the three masters, so a key's value
//! and lease, its tags and the cache's clear all cross nodes.
#![cfg(all(feature = "redis", feature = "json"))]

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use coopcache::shared::{SharedSettings, SharedTier};
use coopcache::{Cache, CallOptions, Clock, Key};

mod support;
use support::cluster::Cluster;
use support::redis::until;

/// A cache of `name` on the cluster (each stands for a process), connected.
fn cache(c: &Cluster, name: &str) -> Cache<Key, String> {
    cache_on(&c.url(), name)
}

fn cache_on(url: &str, name: &str) -> Cache<Key, String> {
    let cache =
        Cache::builder().name(name).shared(SharedSettings::new(url), coopcache::JsonCodec).build().unwrap();
    until("the cache is connected", || cache.shared().is_some_and(SharedTier::is_up));
    cache
}

/// Keys enough to land on every master.
fn keys() -> Vec<Key> {
    (0..24).map(|i| Key::from(("user", i))).collect()
}

fn tagged() -> CallOptions {
    CallOptions::new().tags(["team"])
}

/// Every key's computation runs once across three processes, whichever master serves it, and
/// a process that starts later reads every value without computing.
#[test]
fn one_computation_per_key_across_processes() {
    let c = Cluster::start();
    let caches: Vec<_> = (0..3).map(|_| cache(&c, "once")).collect();
    let runs = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(caches.len()));
    let callers: Vec<_> = caches
        .iter()
        .map(|cache| {
            let (cache, runs, barrier) = (cache.clone(), runs.clone(), barrier.clone());
            support::start(move || {
                barrier.wait();
                for k in keys() {
                    let v = cache.get_or_compute(k.clone(), || {
                        runs.fetch_add(1, SeqCst);
                        format!("value of {k}")
                    });
                    assert_eq!(v, format!("value of {k}"));
                }
            })
        })
        .collect();
    for caller in callers {
        support::finish("a process", caller);
    }
    let stats: Vec<_> = caches.iter().map(|c| c.shared().unwrap().stats()).collect();
    assert_eq!(runs.load(SeqCst), keys().len() as u64, "one computation per key: {stats:?}");
    let fallbacks: u64 = caches.iter().map(|c| c.shared().unwrap().stats().fallbacks).sum();
    assert_eq!(fallbacks, 0, "the tier never went local-only");
    let late = cache(&c, "once");
    for k in keys() {
        assert_eq!(
            late.get_or_compute(k.clone(), || unreachable!("{k} is in the cluster")),
            format!("value of {k}")
        );
    }
    assert_eq!(late.stats().computations, 0);
}

/// `invalidate` and `invalidate_tag` reach every process (their local copies go) and the
/// cluster (a process that starts later computes afresh), for keys on every master.
#[test]
fn invalidations_reach_every_process_and_every_master() {
    let c = Cluster::start();
    let (a, b) = (cache(&c, "inv"), cache(&c, "inv"));
    for k in keys() {
        a.compute(k.clone(), &tagged(), || Ok::<_, std::io::Error>(format!("old {k}").into())).unwrap();
        assert_eq!(b.get_or_compute(k.clone(), || unreachable!("{k} is in the cluster")), format!("old {k}"));
    }
    let (first, rest) = keys().split_first().map(|(f, r)| (f.clone(), r.to_vec())).unwrap();
    a.invalidate(&first);
    until("b dropped its copy of the invalidated key", || b.get(&first).is_none());
    assert_eq!(cache(&c, "inv").get_or_compute(first.clone(), || "new".into()), "new");
    a.invalidate_tag("team");
    until("b dropped every copy of the tag's keys", || rest.iter().all(|k| b.get(k).is_none()));
    let late = cache(&c, "inv");
    for k in &rest {
        assert_eq!(
            late.get_or_compute(k.clone(), || "new".into()),
            "new",
            "{k} was invalidated in the cluster"
        );
    }

    // So does a refresh (signed, as every message of a cache with a secret): a process whose
    // copy is not due yet takes the new value from the cluster on its next hit, whichever
    // master serves the key.
    let clock = Clock::manual();
    let after = Duration::from_secs(60);
    let refreshing = || {
        let settings = SharedSettings::new(c.url()).secret(b"a secret".to_vec());
        let cache: Cache<Key, String> = Cache::builder()
            .name("rfr")
            .clock(clock.clone())
            .refresh_after(after)
            .shared(settings, coopcache::JsonCodec)
            .build()
            .unwrap();
        until("the cache is connected", || cache.shared().is_some_and(SharedTier::is_up));
        cache
    };
    let (a, b) = (refreshing(), refreshing());
    for k in keys() {
        a.get_or_compute(k.clone(), || "v1".into());
    }
    clock.advance(after / 2);
    for k in keys() {
        assert_eq!(b.get_or_compute(k.clone(), || unreachable!("{k} is in the cluster")), "v1");
    }
    clock.advance(after / 2);
    for k in keys() {
        assert_eq!(a.get_or_compute(k.clone(), || "v2".into()), "v2", "due in a: a refreshes {k}");
    }
    until("b's copies fell due and took the new values", || {
        keys()
            .into_iter()
            .all(|k| b.get_or_compute(k.clone(), || unreachable!("{k} is in the cluster")) == "v2")
    });
    let (local, shared) = (b.stats(), b.shared().unwrap().stats());
    assert_eq!((local.computations, shared.leases_won, shared.rejected_values), (0, 0, 0));
}

/// `clear` deletes the cache's values on every master and reaches every process.
#[test]
fn clear_reaches_every_master_and_every_process() {
    let c = Cluster::start();
    let (a, b) = (cache(&c, "clr"), cache(&c, "clr"));
    for k in keys() {
        a.get_or_compute(k.clone(), || "v".into());
        b.get_or_compute(k.clone(), || unreachable!("{k} is in the cluster"));
    }
    assert_eq!(c.keys("coopcache:clr:v:*").len(), keys().len());
    a.clear();
    until("b cleared", || b.is_empty());
    until("no value is left on any master", || c.keys("coopcache:clr:v:*").is_empty());
    let late = cache(&c, "clr");
    for k in keys() {
        assert_eq!(late.get_or_compute(k.clone(), || "new".into()), "new", "{k} was cleared");
    }
}

/// Once the replicas are caught up, each holds every value its master holds: what a failover
/// test relies on before it kills a master.
#[test]
fn caught_up_replicas_hold_their_masters_values() {
    let c = Cluster::start();
    let a = cache(&c, "sync");
    for k in keys() {
        a.get_or_compute(k.clone(), || format!("value of {k}"));
    }
    until("the replicas caught up", || c.replicas_caught_up());
    for (master, replica) in c.pairs() {
        let (on_master, on_replica) =
            (c.keys_on(master, "coopcache:sync:v:*"), c.keys_on(replica, "coopcache:sync:v:*"));
        assert!(!on_master.is_empty(), "every master serves some of the keys");
        assert_eq!(on_replica, on_master, "replica {replica} of master {master}");
    }
}

/// Failover: with one replica per master, the master that serves a hot key is killed while
/// processes stampede on it. No call fails (each gets the value: the lease holder's, or one
/// computed locally while the cluster elects a new master), no value stored before is lost,
/// and afterwards a new process reads every value without computing.
#[test]
fn killing_the_master_of_a_hot_key_during_a_stampede_fails_no_call() {
    let mut c = Cluster::start();
    let settings = SharedSettings::new(c.url()).lease_ttl(std::time::Duration::from_secs(2));
    let start = |name: &str| {
        let cache =
            Cache::builder().name(name).shared(settings.clone(), coopcache::JsonCodec).build().unwrap();
        until("the cache is connected", || cache.shared().is_some_and(SharedTier::is_up));
        cache
    };
    let caches: Vec<Cache<Key, String>> = (0..4).map(|_| start("fo")).collect();
    for k in keys() {
        caches[0].get_or_compute(k.clone(), || format!("value of {k}"));
    }
    let hot = Key::from("hot");
    caches[0].get_or_compute(hot.clone(), || "hot value".into());
    let hot_name =
        c.keys("coopcache:fo:v:*").into_iter().find(|k| k.ends_with("hot")).expect("the hot key's value");
    let owner = c.owner(hot_name.as_bytes());
    // Every value stored so far is on the replicas too.
    until("the replicas caught up", || c.replicas_caught_up());
    let (_, standby) = c.pairs().into_iter().find(|&(m, _)| m == owner).expect("the owner has a replica");
    let values = "coopcache:fo:v:*";
    assert_eq!(c.keys_on(standby, values), c.keys_on(owner, values), "the owner's replica holds its values");
    caches[0].invalidate(&hot);
    until("every process dropped the hot key", || caches.iter().all(|cache| cache.get(&hot).is_none()));
    until("the hot key is gone from the cluster", || c.keys("coopcache:fo:v:*").len() == keys().len());

    let gate = support::Gate::default();
    let barrier = Arc::new(Barrier::new(16));
    let callers: Vec<_> = (0..16)
        .map(|i| {
            let (cache, gate, barrier, hot) =
                (caches[i % 4].clone(), gate.clone(), barrier.clone(), hot.clone());
            support::start(move || {
                barrier.wait();
                cache.get_or_compute(hot, || {
                    gate.wait();
                    "hot value".to_string()
                })
            })
        })
        .collect();
    until("the stampede waits on one computation", || {
        let waits: u64 = caches.iter().map(|cache| cache.shared().unwrap().stats().remote_waits).sum();
        waits >= 1
    });
    c.kill(owner);
    gate.open();
    for caller in callers {
        assert_eq!(support::finish("a caller in the stampede", caller), "hot value");
    }
    until("a replica took over", || c.masters().len() == 3 && !c.masters().contains(&owner));
    // A process that starts now computes the hot key once more (its holder's publish may
    // have been lost with the master) and stores it on the new master.
    until("the hot key is stored again", || {
        start("fo").get_or_compute(hot.clone(), || "hot value".into());
        c.keys("coopcache:fo:v:*").iter().any(|k| k.ends_with("hot"))
    });
    // A new process: its own connection, made after the failover (another timeout gives this
    // one a link of its own).
    let late = Cache::builder()
        .name("fo")
        .shared(settings.clone().timeout(std::time::Duration::from_millis(1500)), coopcache::JsonCodec)
        .build()
        .unwrap();
    until("the new process is connected", || late.shared().is_some_and(SharedTier::is_up));
    let mut computed = Vec::new();
    for k in keys().into_iter().chain([hot]) {
        late.get_or_compute(k.clone(), || {
            computed.push(k.to_string());
            String::new()
        });
    }
    let stats = late.shared().unwrap().stats();
    assert!(computed.is_empty(), "computed after the failover: {computed:?}, {stats:?}");
}
