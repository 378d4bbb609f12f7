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
use crate::concurrency::Permit;
use crate::error::{BoxError, Error};
use crate::flight::{Begin, Caller, Completion, Computing, Frame, Lease, Waiter};
use crate::wait::{Pending, Ready};

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

/// A batch as a state machine without I/O of its own, for a binding whose loader is its
/// language's function (a Python callable, a JS function returning a promise): the rules are
/// [`Cache::get_or_compute_many`]'s, the binding only runs the loader and waits.
///
/// ```
/// use coopcache::{BatchStep, Cache, Caller};
/// use std::collections::HashMap;
///
/// let cache: Cache<u32, String> = Cache::builder().build().unwrap();
/// cache.insert(1, "one".to_string());
/// let mut batch = cache.batch([1, 2, 3], Caller::Blocking);
/// let values = loop {
///     match batch.step() {
///         BatchStep::Load(missing) => {
///             assert_eq!(missing, [1, 2], "the indices of the keys to load: 2 and 3");
///             let _computing = batch.enter(); // asking 2 or 3 in here is a recursion error
///             batch.loaded(Ok(HashMap::from([(2, ("2".to_string(), 0))]))); // 3 left out
///         }
///         BatchStep::Wait(ready) => ready.wait(),
///         BatchStep::Done(values) => break values,
///     }
/// };
/// assert_eq!(values[0].as_ref().unwrap(), "one");
/// assert_eq!(values[1].as_ref().unwrap(), "2");
/// assert!(values[2].as_ref().unwrap_err().to_string().contains("returned no value for key"));
/// ```
#[must_use = "a batch does nothing until driven with step()"]
pub struct Batch<K, V> {
    cache: Cache<K, V>,
    keys: Vec<K>,
    out: Vec<Option<Result<V, Error>>>,
    /// Keys to begin in the next round.
    todo: Vec<usize>,
    caller: Caller,
    /// The keys this round leads, until [`Batch::loaded`].
    leases: Vec<(usize, Lease<K, V>)>,
    /// The computation slot the loader waits for, then holds.
    slot: Option<Pending<Permit>>,
    permit: Option<Permit>,
    /// Whether the loader was asked for this round's keys.
    asked: bool,
    /// The keys this round waits for.
    waits: Vec<(usize, Waiter<V>)>,
}

/// What the binding does next for a [`Batch`].
#[must_use = "a step must be acted on"]
pub enum BatchStep<V> {
    /// Call the loader once with the keys at these indices (of the keys given), holding
    /// [`Batch::enter`] while it runs, and report with [`Batch::loaded`].
    Load(Vec<usize>),
    /// Wait until this is ready (a slot, another caller's computation), then ask again.
    Wait(Ready),
    /// Every key's outcome, in the order given.
    Done(Vec<Result<V, Error>>),
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A batch of `keys` for a binding to drive step by step (see [`Batch`]).
    pub fn batch(&self, keys: impl IntoIterator<Item = K>, caller: Caller) -> Batch<K, V> {
        let keys: Vec<K> = keys.into_iter().collect();
        Batch {
            cache: self.clone(),
            out: vec![None; keys.len()],
            todo: (0..keys.len()).collect(),
            keys,
            caller,
            leases: Vec::new(),
            slot: None,
            permit: None,
            asked: false,
            waits: Vec::new(),
        }
    }
}

impl<K, V> Batch<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// What to do next (see [`BatchStep`]). Asked again while the loader runs (before
    /// [`Batch::loaded`]), it waits for nothing: a `Load` of no keys.
    pub fn step(&mut self) -> BatchStep<V> {
        loop {
            if !self.leases.is_empty() {
                if let Some(slot) = self.slot.take() {
                    match slot.try_get() {
                        None => {
                            let ready = slot.ready();
                            self.slot = Some(slot);
                            return BatchStep::Wait(ready);
                        }
                        Some(permit) => self.permit = Some(permit),
                    }
                }
                if std::mem::replace(&mut self.asked, true) {
                    return BatchStep::Load(Vec::new());
                }
                return BatchStep::Load(self.leases.iter().map(|(i, _)| *i).collect());
            }
            if let Some((i, w)) = self.waits.pop() {
                match w.pending().try_get() {
                    None => {
                        let ready = w.pending().ready();
                        self.waits.push((i, w));
                        return BatchStep::Wait(ready);
                    }
                    Some(c) => settle(i, c, &mut self.out, &mut self.todo),
                }
                continue;
            }
            if self.todo.is_empty() {
                let out = std::mem::take(&mut self.out);
                return BatchStep::Done(out.into_iter().map(|r| r.expect("every key settled")).collect());
            }
            let round = self.cache.round(&self.keys, &mut self.todo, &mut self.out, self.caller);
            (self.leases, self.waits, self.asked) = (round.leases, round.waits, false);
            self.slot = self.leases.first().map(|(_, l)| l.slot());
        }
    }

    /// Marks the keys being loaded as computed on this thread until the guards drop (the
    /// recursion checks: the loader asking one of them is an error, not a wait for itself).
    pub fn enter(&self) -> Vec<Computing> {
        enter(&self.leases, Lease::enter)
    }

    /// The frames of the keys being loaded, for a binding that keeps track of what a task is
    /// inside: a call made from the loader after an await asks from inside them.
    pub fn frames(&self) -> impl Iterator<Item = Frame> + '_ {
        self.leases.iter().map(|(_, l)| l.frame())
    }

    /// Reports the loader's outcome: its values by key, each with the bytes the binding
    /// estimates for it (a key it leaves out is an error for that key), or its error, for
    /// every caller of the keys it was asked for.
    pub fn loaded(&mut self, result: Result<HashMap<K, (V, u64)>, Error>) {
        let leases = std::mem::take(&mut self.leases);
        self.permit = None;
        match result {
            Ok(mut values) => {
                for (i, lease) in leases {
                    self.out[i] = Some(match values.remove(lease.key()) {
                        Some((v, weight)) => Ok(lease.store_with(v, weight, &[])),
                        None => {
                            let e = self.cache.left_out(lease.key());
                            lease.fail(e.clone());
                            Err(e)
                        }
                    });
                }
            }
            Err(e) => {
                for (i, lease) in leases {
                    lease.fail(e.clone());
                    self.out[i] = Some(Err(e.clone()));
                }
            }
        }
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
