//! Batches (`get_or_compute_many`): one loader call for the keys nobody has, each of them a
//! flight that single calls and other batches join.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};

use coopcache::{Begin, Cache, Error};

fn values(keys: &[u32]) -> HashMap<u32, u32> {
    keys.iter().map(|&k| (k, k * 10)).collect()
}

#[test]
fn three_overlapping_batches_and_ten_single_calls_load_each_key_once() {
    for _ in 0..20 {
        let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
        let loads: Mutex<HashMap<u32, u32>> = Mutex::new(HashMap::new());
        let count = |keys: &[u32]| {
            let mut l = loads.lock().unwrap();
            keys.iter().for_each(|&k| *l.entry(k).or_default() += 1);
        };
        let batches: [Vec<u32>; 3] = [(0..6).collect(), (3..10).collect(), (0..10).step_by(2).collect()];
        let start = Barrier::new(13);
        std::thread::scope(|s| {
            for keys in &batches {
                let (cache, start, count) = (&cache, &start, &count);
                s.spawn(move || {
                    start.wait();
                    let got = cache.get_or_compute_many(keys.iter().copied(), |missing| {
                        count(missing);
                        Ok::<_, std::io::Error>(values(missing))
                    });
                    let got: Vec<u32> = got.into_iter().map(Result::unwrap).collect();
                    assert_eq!(got, keys.iter().map(|k| k * 10).collect::<Vec<_>>());
                });
            }
            for k in 0..10 {
                let (cache, start, count) = (&cache, &start, &count);
                s.spawn(move || {
                    start.wait();
                    let v = cache.get_or_compute(k, || {
                        count(&[k]);
                        k * 10
                    });
                    assert_eq!(v, k * 10);
                });
            }
        });
        let loads = loads.into_inner().unwrap();
        assert_eq!(loads.len(), 10);
        assert!(loads.values().all(|&n| n == 1), "each key loaded exactly once: {loads:?}");
        assert_eq!(cache.stats().computations, 10);
    }
}

#[test]
fn a_batch_waits_for_a_key_another_caller_computes_and_loads_the_rest_in_one_call() {
    let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
    cache.insert(1, 10);
    let Begin::Lease(lease) = cache.begin(&2).unwrap() else { unreachable!() };
    let calls = AtomicU32::new(0);
    std::thread::scope(|s| {
        let batch = s.spawn(|| {
            cache.get_or_compute_many([1, 2, 3, 4], |missing| {
                calls.fetch_add(1, SeqCst);
                assert_eq!(missing, [3, 4]);
                Ok::<_, std::io::Error>(values(missing))
            })
        });
        // The batch waits for key 2 only once it has loaded 3 and 4.
        while cache.len() < 3 {
            std::thread::yield_now();
        }
        lease.store(20);
        let got: Vec<u32> = batch.join().unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(got, [10, 20, 30, 40]);
    });
    assert_eq!(calls.load(SeqCst), 1);
    let s = cache.stats();
    assert_eq!((s.hits, s.coalesced), (1, 1));
}

#[test]
fn a_key_the_loader_leaves_out_is_an_error_for_that_key_only() {
    let cache: Cache<u32, u32> = Cache::builder().name("users").build().unwrap();
    let got = cache.get_or_compute_many([1, 2], |_| Ok::<_, std::io::Error>(values(&[1])));
    assert_eq!(got[0].as_ref().unwrap(), &10);
    let e = got[1].as_ref().unwrap_err();
    assert!(matches!(e, Error::Computation(_)));
    assert_eq!(e.to_string(), "the loader of cache \"users\" returned no value for key (this key)");
    assert_eq!(cache.get(&2), None, "nothing stored for it");
    assert_eq!(cache.get(&1), Some(10));
}

#[test]
fn an_error_of_the_loader_reaches_every_caller_of_its_keys_and_nothing_is_stored() {
    let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
    let (entered, release) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        let batch = s.spawn(|| {
            cache.get_or_compute_many([1, 2], |_| {
                entered.wait();
                release.wait();
                Err::<HashMap<u32, u32>, _>(std::io::Error::other("backend down"))
            })
        });
        entered.wait();
        let single = s.spawn(|| cache.try_get_or_compute(2, || Ok::<_, std::io::Error>(99)));
        while cache.stats().coalesced == 0 {
            std::thread::yield_now();
        }
        release.wait();
        let got = batch.join().unwrap();
        assert!(got.iter().all(|r| r.as_ref().unwrap_err().to_string() == "backend down"));
        assert_eq!(single.join().unwrap().unwrap_err().to_string(), "backend down");
    });
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.stats().errors, 2);
}

#[test]
fn a_panic_of_the_loader_reaches_every_caller_and_is_resumed_in_the_batch() {
    let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.get_or_compute_many([1, 2], |_| -> Result<HashMap<u32, u32>, std::io::Error> { panic!("boom") })
    }));
    assert!(r.is_err());
    assert_eq!((cache.len(), cache.stats().in_flight, cache.stats().errors), (0, 0, 2));
    let got = cache.get_or_compute_many([1], |k| Ok::<_, std::io::Error>(values(k)));
    assert_eq!(got[0].as_ref().unwrap(), &10, "loaded again");
}

#[test]
fn the_async_form_loads_in_one_call_too() {
    let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
    cache.insert(1, 10);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let calls = AtomicU32::new(0);
    let got = rt.block_on(cache.get_or_compute_many_async([1, 2, 3], |missing| {
        calls.fetch_add(1, SeqCst);
        async move {
            assert_eq!(missing, [2, 3]);
            Ok::<_, std::io::Error>(values(&missing))
        }
    }));
    let got: Vec<u32> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, [10, 20, 30]);
    assert_eq!(calls.load(SeqCst), 1);
}

/// Drives a batch the way a binding does, with `load` as its loader.
fn drive(
    batch: &mut coopcache::Batch<u32, u32>,
    mut load: impl FnMut(&[usize]) -> Result<HashMap<u32, (u32, u64)>, Error>,
) -> Vec<Result<u32, Error>> {
    loop {
        match batch.step() {
            coopcache::BatchStep::Load(at) => {
                let result = {
                    let _computing = batch.enter();
                    load(&at)
                };
                batch.loaded(result);
            }
            coopcache::BatchStep::Wait(ready) => ready.wait(),
            coopcache::BatchStep::Done(values) => return values,
        }
    }
}

#[test]
fn a_sans_io_batch_is_joined_while_it_loads_and_its_error_reaches_every_caller() {
    let cache: Cache<u32, u32> = Cache::builder().build().unwrap();
    cache.insert(0, 0);
    let keys = [0, 1, 2];
    let mut batch = cache.batch(keys, coopcache::Caller::Blocking);
    let coopcache::BatchStep::Load(at) = batch.step() else { panic!("keys 1 and 2 to load") };
    assert_eq!(at, [1, 2]);
    // A single call of a key being loaded joins its flight, on another thread.
    std::thread::scope(|s| {
        let single = s.spawn(|| cache.try_get_or_compute(2, || Ok::<_, std::io::Error>(99)));
        while cache.stats().coalesced < 1 {
            std::thread::yield_now();
        }
        batch.loaded(Err(Error::computation("backend down")));
        let e = single.join().unwrap().unwrap_err();
        assert_eq!(e.to_string(), "backend down", "the loader's error reaches the single caller");
    });
    let got = drive(&mut batch, |_| unreachable!("loaded once"));
    assert_eq!(got[0].as_ref().unwrap(), &0);
    assert!(got[1].is_err() && got[2].is_err());
    // Nothing stored for a failed key: the next batch loads it, and a key left out is an error.
    let got = drive(&mut cache.batch(keys, coopcache::Caller::Blocking), |at| {
        assert_eq!(at, [1, 2]);
        Ok(HashMap::from([(1, (10, 8))]))
    });
    assert_eq!(got[1].as_ref().unwrap(), &10);
    assert!(got[2].as_ref().unwrap_err().to_string().contains("returned no value for key (this key)"));
    assert_eq!(cache.get(&1), Some(10));
}
