//! Batches: the values of many keys, with one loader call for the keys nobody has.
//!
//! Each key goes through the flight protocol on its own: a stored key is a hit, a key another
//! caller computes is waited for, and the keys left get a lease each, so single calls and other
//! batches join them as they join any flight. The leader of those leases calls the loader once
//! with all of them, and only then waits for the keys it does not lead: a batch never waits
//! while holding a lease, so batches that overlap cannot wait for each other in a cycle.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::task::Poll;

use super::Cache;
use crate::error::{BoxError, Error};
use crate::flight::{Begin, Caller, Completion, Computing, Lease, Waiter};

/// A panic of the loader, resumed once every caller of its keys has its error.
type Panic = Option<Box<dyn std::any::Any + Send>>;

/// One round of a batch: the keys it leads, and those it waits for.
struct Round<K, V> {
    leases: Vec<(usize, Lease<K, V>)>,
    waits: Vec<(usize, Waiter<V>)>,
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The values of `keys`, in their order: stored ones are hits, keys another caller is
    /// computing are waited for, and the rest are loaded by ONE call of `loader` with those
    /// keys, which returns a map of them to their values. Each loaded key is a flight of its
    /// own while the loader runs: other callers of the key, single or batch, wait for it.
    ///
    /// A key the loader leaves out is an error for that key (its callers get
    /// [`Error::Computation`] saying so; nothing is stored for it), as are the keys whose
    /// computation by another caller failed. An error of the loader reaches every caller of its
    /// keys; a panic too, and is resumed here once they all have it. Nothing is stored for a
    /// failed key, so the next call loads it again. Keys the loader returns that it was not
    /// asked for are ignored. If another caller computing a key gives up, the key is loaded in
    /// a further call of `loader` (with the keys handed over). Batches use the local tier only:
    /// the shared tier is not asked, nor told.
    ///
    /// ```
    /// use coopcache::Cache;
    /// use std::collections::HashMap;
    ///
    /// let cache: Cache<u32, String> = Cache::builder().build().unwrap();
    /// cache.get_or_compute(1, || "one".to_string());
    /// let values = cache.get_or_compute_many([1, 2, 3], |missing| {
    ///     assert_eq!(missing, [2, 3], "one call for the keys nobody has");
    ///     Ok::<_, std::io::Error>(missing.iter().map(|&k| (k, k.to_string())).collect::<HashMap<_, _>>())
    /// });
    /// let values: Vec<String> = values.into_iter().map(Result::unwrap).collect();
    /// assert_eq!(values, ["one", "2", "3"]);
    /// ```
    pub fn get_or_compute_many<E>(
        &self,
        keys: impl IntoIterator<Item = K>,
        mut loader: impl FnMut(&[K]) -> Result<HashMap<K, V>, E>,
    ) -> Vec<Result<V, Error>>
    where
        E: Into<BoxError>,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        let mut out: Vec<Option<Result<V, Error>>> = vec![None; keys.len()];
        let mut todo: Vec<usize> = (0..keys.len()).collect();
        let mut panic = None;
        while !todo.is_empty() {
            let round = self.round(&keys, &mut todo, &mut out, Caller::Blocking);
            if !round.leases.is_empty() {
                let _slot = round.leases[0].1.slot().wait();
                let asked = asked(&round.leases);
                let result = {
                    let _computing = enter(&round.leases, Lease::enter);
                    catch_unwind(AssertUnwindSafe(|| loader(&asked)))
                };
                self.finish(round.leases, result, &mut out, &mut panic);
            }
            for (i, w) in round.waits {
                settle(i, w.pending().wait(), &mut out, &mut todo);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
        out.into_iter().map(|r| r.expect("every key settled")).collect()
    }

    /// The async form of [`Cache::get_or_compute_many`]: `loader` gets the keys to load (owned,
    /// so its future may keep them) and returns a future of their values. Waiting never
    /// blocks a thread. If this future is dropped while its loader runs, the keys it leads are
    /// handed over: a caller waiting for one of them computes it.
    pub async fn get_or_compute_many_async<E, F>(
        &self,
        keys: impl IntoIterator<Item = K>,
        mut loader: impl FnMut(Vec<K>) -> F,
    ) -> Vec<Result<V, Error>>
    where
        E: Into<BoxError>,
        F: Future<Output = Result<HashMap<K, V>, E>>,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        let mut out: Vec<Option<Result<V, Error>>> = vec![None; keys.len()];
        let mut todo: Vec<usize> = (0..keys.len()).collect();
        let mut panic = None;
        while !todo.is_empty() {
            let round = self.round(&keys, &mut todo, &mut out, Caller::NonBlocking);
            if !round.leases.is_empty() {
                let _slot = round.leases[0].1.slot().await;
                let asked = asked(&round.leases);
                let result = match catch_unwind(AssertUnwindSafe(|| loader(asked))) {
                    Err(p) => Err(p),
                    Ok(fut) => {
                        let mut fut = pin!(fut);
                        std::future::poll_fn(|cx| {
                            let _computing = enter(&round.leases, Lease::enter_poll);
                            match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                                Ok(Poll::Pending) => Poll::Pending,
                                Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
                                Err(p) => Poll::Ready(Err(p)),
                            }
                        })
                        .await
                    }
                };
                self.finish(round.leases, result, &mut out, &mut panic);
            }
            for (i, w) in round.waits {
                settle(i, w.await, &mut out, &mut todo);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
        out.into_iter().map(|r| r.expect("every key settled")).collect()
    }

    /// Begins the flight of every key in `todo`: hits and errors settle at once; the others
    /// are led or waited for.
    fn round(
        &self,
        keys: &[K],
        todo: &mut Vec<usize>,
        out: &mut [Option<Result<V, Error>>],
        caller: Caller,
    ) -> Round<K, V> {
        let mut round = Round { leases: Vec::new(), waits: Vec::new() };
        for i in todo.drain(..) {
            match self.local.begin(&keys[i], Some(&[]), caller) {
                Err(e) => out[i] = Some(Err(e)),
                Ok(Begin::Hit(v)) => out[i] = Some(Ok(v)),
                Ok(Begin::Wait(w)) => round.waits.push((i, w)),
                Ok(Begin::Lease(lease)) => {
                    lease.count_computation();
                    round.leases.push((i, lease));
                }
            }
        }
        round
    }

    /// Ends the flights a loader call led with what it returned (or its panic).
    fn finish<E: Into<BoxError>>(
        &self,
        leases: Vec<(usize, Lease<K, V>)>,
        result: std::thread::Result<Result<HashMap<K, V>, E>>,
        out: &mut [Option<Result<V, Error>>],
        panic: &mut Panic,
    ) {
        let failed = match result {
            Ok(Ok(mut values)) => {
                for (i, lease) in leases {
                    out[i] = Some(match values.remove(lease.key()) {
                        Some(v) => Ok(lease.store(v)),
                        None => {
                            let e = self.left_out(lease.key());
                            lease.fail(e.clone());
                            Err(e)
                        }
                    });
                }
                return;
            }
            Ok(Err(e)) => Error::computation(e),
            Err(p) => {
                let e = Error::from_panic(&*p);
                *panic = Some(p);
                e
            }
        };
        for (i, lease) in leases {
            lease.fail(failed.clone());
            out[i] = Some(Err(failed.clone()));
        }
    }

    fn left_out(&self, key: &K) -> Error {
        let key = crate::flight::DebugKey(key);
        Error::computation(format!("the loader of cache {:?} returned no value for key {key:?}", self.name()))
    }
}

/// The keys a round leads, as the loader is given them.
fn asked<K, V>(leases: &[(usize, Lease<K, V>)]) -> Vec<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    leases.iter().map(|(_, l)| l.key().clone()).collect()
}

/// Marks every led key's computation as running here (recursion checks, nested slots).
fn enter<K, V>(leases: &[(usize, Lease<K, V>)], how: fn(&Lease<K, V>) -> Computing) -> Vec<Computing>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    leases.iter().map(|(_, l)| how(l)).collect()
}

/// Records what a waited-for key ended with; a key whose computer gave up goes round again.
fn settle<V>(i: usize, c: Completion<V>, out: &mut [Option<Result<V, Error>>], todo: &mut Vec<usize>) {
    match c {
        Completion::Value(v) => out[i] = Some(Ok(v)),
        Completion::Failed(e) => out[i] = Some(Err(e)),
        Completion::HandedOver => todo.push(i),
    }
}
