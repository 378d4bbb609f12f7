//! Refresh ahead (`refresh_after`) in the local tier, driven by a manual clock: a hit on a value
//! due for refresh returns it at once, one caller refreshes it, the new value replaces it, and
//! a failing refresh does not take it away (unless `serve_stale_on_error` is off).

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use coopcache::{Cache, CallOptions, Caller, Clock, Computed, Event, LeadStep, Outcome};

const AFTER: Duration = Duration::from_secs(60);

fn cache(clock: &Clock) -> Cache<&'static str, u32> {
    Cache::builder().clock(clock.clone()).refresh_after(AFTER).build().unwrap()
}

fn events(seen: &Arc<Mutex<Vec<Event>>>) -> impl Fn(&Event) + Send + Sync + 'static {
    let seen = seen.clone();
    move |e: &Event| {
        if matches!(e, Event::RefreshFailed { .. }) {
            seen.lock().unwrap().push(e.clone())
        }
    }
}

#[test]
fn a_value_not_due_is_a_plain_hit() {
    let clock = Clock::manual();
    let c = cache(&clock);
    c.get_or_compute("k", || 1);
    clock.advance(AFTER - Duration::from_nanos(1));
    assert_eq!(c.get_or_compute("k", || unreachable!("not due")), 1);
    let s = c.stats();
    assert_eq!((s.hits, s.computations, s.refreshes_started, s.stale_served), (1, 1, 0, 0));
}

#[test]
fn the_caller_whose_hit_finds_the_value_due_refreshes_it_and_the_others_get_the_old_value_at_once() {
    let clock = Clock::manual();
    let c = cache(&clock);
    c.get_or_compute("k", || 1);
    clock.advance(AFTER);
    let (entered, release) = (Barrier::new(2), Barrier::new(2));
    let runs = AtomicU32::new(0);
    std::thread::scope(|s| {
        let refresher = s.spawn(|| {
            c.get_or_compute("k", || {
                runs.fetch_add(1, SeqCst);
                entered.wait();
                release.wait();
                2
            })
        });
        entered.wait();
        // The refresh is running: every other hit gets the stored value without computing.
        for _ in 0..10 {
            assert_eq!(c.get_or_compute("k", || unreachable!("one refresh at a time")), 1);
        }
        assert_eq!(c.stats().in_flight, 1);
        release.wait();
        assert_eq!(refresher.join().unwrap(), 2, "the refreshing caller gets the new value");
    });
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(c.get(&"k"), Some(2), "the new value replaced the old one");
    let s = c.stats();
    assert_eq!((s.refreshes_started, s.refreshes_succeeded, s.refreshes_failed), (1, 1, 0));
    assert_eq!(s.stale_served, 10);
    assert_eq!((s.computations, s.in_flight, s.entries), (2, 0, 1));
    // The new value is due AFTER from its own computation.
    clock.advance(AFTER - Duration::from_nanos(1));
    assert_eq!(c.get_or_compute("k", || unreachable!("not due yet")), 2);
    clock.advance(Duration::from_nanos(1));
    assert_eq!(c.get_or_compute("k", || 3), 3);
}

#[test]
fn a_binding_returns_the_value_at_once_and_drives_the_refresh_detached() {
    let clock = Clock::manual();
    let c = cache(&clock);
    c.get_or_compute("k", || 1);
    clock.advance(AFTER);
    let opts = CallOptions::new();
    let (v, lead) = c.hit_refresh_with(&"k", &opts, Caller::NonBlocking, |v| *v).unwrap();
    assert_eq!(v, 1);
    let mut lead = lead.expect("the first hit after it fell due takes the refresh");
    for _ in 0..5 {
        let (v, again) = c.hit_refresh_with(&"k", &opts, Caller::NonBlocking, |v| *v).unwrap();
        assert_eq!((v, again.is_none()), (1, true), "one refresh; the stored value meanwhile");
    }
    assert!(c.hit_with(&"k", |v| *v) == Some(1));
    // The binding runs the lead on a task of its own: here, another thread.
    std::thread::spawn(move || {
        loop {
            match lead.step() {
                LeadStep::Compute => lead.computed(Outcome::Store { value: 2, weight: 0 }),
                LeadStep::Done => break,
                _ => unreachable!("no limit, no shared tier"),
            }
        }
    })
    .join()
    .unwrap();
    assert_eq!(c.hit_refresh_with(&"k", &opts, Caller::NonBlocking, |v| *v).unwrap().0, 2);
    let s = c.stats();
    assert_eq!((s.refreshes_started, s.refreshes_succeeded, s.stale_served), (1, 1, 6));
}

#[test]
fn idle_expiry_keeps_its_meaning() {
    let clock = Clock::manual();
    let c: Cache<&str, u32> = Cache::builder()
        .clock(clock.clone())
        .cache_duration(Duration::from_secs(10))
        .refresh_after(Duration::from_secs(5))
        .build()
        .unwrap();
    c.get_or_compute("read", || 1);
    c.get_or_compute("unread", || 1);
    for _ in 0..4 {
        clock.advance(Duration::from_secs(4));
        c.get(&"read");
    }
    assert_eq!(c.get(&"unread"), None, "an entry nobody reads still goes");
    assert_eq!(c.get(&"read"), Some(1), "get() reads without refreshing");
    assert_eq!(c.get_or_compute("read", || 2), 2, "a read entry lives on and is refreshed");
    assert_eq!(c.stats().refreshes_started, 1);
}

#[test]
fn a_failed_refresh_keeps_the_old_value_and_is_reported() {
    let clock = Clock::manual();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c: Cache<&str, u32> =
        Cache::builder().clock(clock.clone()).refresh_after(AFTER).listener(events(&seen)).build().unwrap();
    c.get_or_compute("k", || 1);
    clock.advance(AFTER);
    let r = c.try_get_or_compute("k", || Err::<u32, _>("backend down"));
    assert_eq!(r.unwrap(), 1, "the refreshing caller gets the old value");
    assert_eq!(c.get(&"k"), Some(1), "and it stays");
    let s = c.stats();
    assert_eq!(
        (s.refreshes_started, s.refreshes_failed, s.refreshes_succeeded, s.stale_served),
        (1, 1, 0, 1)
    );
    let expected = Event::RefreshFailed {
        cache: "default".into(),
        key: "\"k\"".into(),
        error: "backend down".into(),
        kept: true,
    };
    assert_eq!(*seen.lock().unwrap(), vec![expected.clone()]);
    assert_eq!(
        expected.message(),
        "coopcache: a refresh of \"k\" in cache \"default\" failed (backend down); the old value is kept"
    );
    // Still due: the next hit tries again (as Caffeine does), and that one succeeds.
    assert_eq!(c.get_or_compute("k", || 2), 2);
    assert_eq!(c.stats().refreshes_succeeded, 1);
}

#[test]
fn without_serve_stale_on_error_a_failed_refresh_removes_the_value() {
    let clock = Clock::manual();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c: Cache<&str, u32> = Cache::builder()
        .clock(clock.clone())
        .refresh_after(AFTER)
        .serve_stale_on_error(false)
        .listener(events(&seen))
        .build()
        .unwrap();
    c.get_or_compute("k", || 1);
    clock.advance(AFTER);
    let e = c.try_get_or_compute("k", || Err::<u32, _>("backend down")).unwrap_err();
    assert_eq!(e.to_string(), "backend down");
    assert_eq!(c.get(&"k"), None, "removed: the next call computes in the foreground");
    assert!(matches!(&seen.lock().unwrap()[..], [Event::RefreshFailed { kept: false, .. }]));
    assert_eq!(c.get_or_compute("k", || 3), 3);
}

#[test]
fn a_refresh_of_an_invalidated_key_is_not_stored() {
    let clock = Clock::manual();
    let c = cache(&clock);
    c.get_or_compute("k", || 1);
    clock.advance(AFTER);
    let v = c.get_or_compute("k", || {
        assert!(c.invalidate(&"k"));
        2
    });
    assert_eq!(v, 2, "its caller gets what it computed");
    assert_eq!(c.get(&"k"), None, "an invalidation during the refresh wins");
    assert_eq!(c.stats().refreshes_succeeded, 0);
}

#[test]
fn callers_who_miss_while_a_refresh_runs_join_it() {
    let clock = Clock::manual();
    let c = cache(&clock);
    c.get_or_compute("k", || 1);
    clock.advance(AFTER);
    let opts = CallOptions::new();
    let (_, lead) = c.hit_refresh_with(&"k", &opts, Caller::Blocking, |v| *v).unwrap();
    let mut lead = lead.unwrap();
    // The entry goes (evicted, or idle) while its refresh runs: a caller who misses waits for
    // the refresh instead of computing again.
    clock.advance(Duration::from_secs(300));
    let waiter = std::thread::spawn({
        let c = c.clone();
        move || c.get_or_compute("k", || unreachable!("the refresh is running"))
    });
    while c.stats().coalesced == 0 {
        std::thread::yield_now();
    }
    loop {
        match lead.step() {
            LeadStep::Compute => lead.computed(Outcome::Store { value: 2, weight: 0 }),
            LeadStep::Done => break,
            _ => unreachable!(),
        }
    }
    assert_eq!(waiter.join().unwrap(), 2);
    assert_eq!(c.get(&"k"), Some(2));
}

#[test]
fn an_abandoned_refresh_leaves_the_value_due_for_the_next_hit() {
    let clock = Clock::manual();
    let c = cache(&clock);
    c.get_or_compute("k", || 1);
    clock.advance(AFTER);
    let opts = CallOptions::new();
    let (_, lead) = c.hit_refresh_with(&"k", &opts, Caller::Blocking, |v| *v).unwrap();
    drop(lead.unwrap()); // the binding's task was cancelled
    assert_eq!(c.stats().in_flight, 0);
    assert!(c.hit_refresh_with(&"k", &opts, Caller::Blocking, |v| *v).unwrap().1.is_some());
}

#[test]
fn a_call_sets_its_own_refresh_after() {
    let clock = Clock::manual();
    let c = cache(&clock);
    let opts = CallOptions::new().refresh_after(Duration::from_secs(5));
    let ok = |v| Ok::<_, std::convert::Infallible>(Computed::Store(v));
    assert_eq!(c.compute("k", &opts, || ok(1)).unwrap(), 1);
    clock.advance(Duration::from_secs(5));
    assert_eq!(c.compute("k", &opts, || ok(2)).unwrap(), 2, "due after the call's 5 s");
    assert_eq!(c.get_or_compute("other", || 1), 1);
    clock.advance(Duration::from_secs(5));
    assert_eq!(c.get_or_compute("other", || unreachable!("the cache's 60 s")), 1);
}

#[test]
fn a_refresh_after_of_zero_is_refused() {
    let e = Cache::<u32, u32>::builder().refresh_after(Duration::ZERO).build().unwrap_err();
    assert_eq!(e.setting, "refresh_after");
    assert_eq!(
        e.to_string(),
        "invalid refresh_after: 0ns (expected a duration > 0, or none to never refresh)"
    );
}

#[test]
fn the_async_forms_refresh_too() {
    let clock = Clock::manual();
    let c = cache(&clock);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        assert_eq!(c.get_or_compute_async("k", async { 1 }).await, 1);
        clock.advance(AFTER);
        assert_eq!(c.get_or_compute_async("k", async { 2 }).await, 2);
        assert_eq!(c.get_or_compute_async("k", async { unreachable!("not due") }).await, 2);
    });
    assert_eq!(c.stats().refreshes_succeeded, 1);
}

/// XFetch (`early_refresh`): a value computed in `took` falls due `beta * took * E` before its
/// `refresh_after`, `E` exponential, drawn once per value. Over many values, the share due
/// `x * beta * took` before `refresh_after` is about `exp(-x)`; a value read back (not computed
/// here) falls due at `refresh_after` exactly.
#[test]
fn early_refresh_spreads_the_moments_values_fall_due_by_how_long_they_took() {
    const TOOK: Duration = Duration::from_secs(2);
    for bad in [0.0, -1.0, f64::NAN] {
        let e = Cache::<u32, u32>::builder().early_refresh(bad).build().unwrap_err().to_string();
        assert!(e.starts_with("invalid early_refresh"), "{e}");
    }
    let clock = Clock::manual();
    let c: Cache<u32, u32> =
        Cache::builder().clock(clock.clone()).refresh_after(AFTER).early_refresh(1.0).build().unwrap();
    let n = 2000;
    let keys: Vec<u32> = (0..n).collect();
    // One batch: every value took TOOK to compute.
    c.get_or_compute_many(keys.clone(), |missing| {
        clock.advance(TOOK);
        Ok::<_, std::io::Error>(missing.iter().map(|&k| (k, k)).collect::<std::collections::HashMap<_, _>>())
    });
    c.insert(n, n); // stored, not computed here
    let stored = clock.now();
    // How many values are due `before` refresh_after (their refreshes taken and given back,
    // so each stays due).
    let due = |before: Duration| {
        clock.advance((AFTER - before).saturating_sub(clock.now() - stored));
        let started = c.stats().refreshes_started;
        for k in 0..=n {
            let hit = c.hit_refresh_with(&k, &CallOptions::new(), Caller::Blocking, |_| ());
            drop(hit.expect("stored").1);
        }
        c.stats().refreshes_started - started
    };
    let share = |due: u64| due as f64 / f64::from(n);
    let (x3, x1) = (due(TOOK * 3), due(TOOK));
    assert!((0.02..0.09).contains(&share(x3)), "due 3 x took early: {x3} of {n} (about 5%)");
    assert!((0.30..0.44).contains(&share(x1)), "due 1 x took early: {x1} of {n} (about 37%)");
    clock.advance((AFTER - Duration::from_nanos(1)) - (clock.now() - stored));
    let hit = c.hit_refresh_with(&n, &CallOptions::new(), Caller::Blocking, |_| ()).expect("stored");
    assert!(hit.1.is_none(), "a value not computed here is not due early");
    assert_eq!(due(Duration::ZERO), u64::from(n) + 1, "at refresh_after every value is due");
}
