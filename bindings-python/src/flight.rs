//! Driving the core's flight protocol from Python: the sync call (leader runs the function
//! holding the GIL, waiters wait without it), and the handles the asyncio layer uses.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use coopcache::shared::RemoteLease;
use coopcache::{Begin, Completion, Error as CoreError, Key, KeyWriter, Pending, Permit};
use pyo3::exceptions::PyBaseException;
use pyo3::exceptions::{PyException, PyRuntimeError, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::convert::{estimate, write_key};
use crate::shared::{self, Answered, Outcome};
use crate::{COMPUTING_VAR, CacheRecursionError, CoreCache, PyErrBox, PyValue, lookup, to_pyerr};

type CoreLease = coopcache::Lease<Key, PyValue>;
type CoreWaiter = coopcache::Waiter<PyValue>;

/// How long a waiting thread sleeps (without the GIL) between checks for Ctrl-C.
const SLICE: Duration = Duration::from_millis(50);

/// The keyword options of a call.
pub(crate) struct Options {
    pub(crate) timeout: Option<Duration>,
    pub(crate) tags: Vec<String>,
}

impl Options {
    pub(crate) fn parse(timeout: Option<f64>, tags: Option<&Bound<'_, PyAny>>) -> PyResult<Options> {
        let timeout = match timeout {
            None => None,
            Some(t) if t >= 0.0 && t.is_finite() => Some(Duration::from_secs_f64(t)),
            Some(t) if t == f64::INFINITY => None,
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "invalid timeout: {t} (expected seconds >= 0, or None)"
                )));
            }
        };
        Ok(Options { timeout, tags: parse_tags(tags)? })
    }
}

pub(crate) fn parse_tags(tags: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(tags) = tags.filter(|t| !t.is_none()) else { return Ok(Vec::new()) };
    if tags.cast::<PyString>().is_ok() {
        return Err(PyTypeError::new_err("tags must be a list of str (got a single str; wrap it in a list)"));
    }
    let mut out = Vec::new();
    for t in tags.try_iter()? {
        let t = t?;
        out.push(t.extract::<String>().map_err(|_| {
            PyTypeError::new_err(format!(
                "tags must be str, got {}",
                t.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?);
    }
    Ok(out)
}

/// Waits for a pending result without holding the GIL, in slices, checking for signals
/// (Ctrl-C) between them. `None`: the deadline passed. Only for results without Python values
/// (computation slots, the shared tier's answers): `wait_deadline` clones the result on this
/// thread.
pub(crate) fn wait_sync<T: Clone + Send + 'static>(
    py: Python<'_>,
    pending: &Pending<T>,
    deadline: Option<Instant>,
) -> PyResult<Option<T>> {
    if let Some(v) = pending.try_get() {
        return Ok(Some(v));
    }
    loop {
        let slice_end = Instant::now() + SLICE;
        let end = deadline.map_or(slice_end, |d| d.min(slice_end));
        if let Some(v) = py.detach(|| pending.wait_deadline(Some(end))) {
            return Ok(Some(v));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// Waits for a flight's outcome without holding the GIL, in slices, checking for signals
/// (Ctrl-C) between them. The outcome is handed over by an `on_ready` callback, which runs on
/// the thread that ends the flight while it holds the GIL, so the value is never cloned
/// without the GIL (see [`PyValue`]). `None`: the deadline passed.
fn wait_completion(
    py: Python<'_>,
    w: &CoreWaiter,
    deadline: Option<Instant>,
) -> PyResult<Option<Completion<PyValue>>> {
    if let Some(c) = w.pending().try_get() {
        return Ok(Some(c));
    }
    type Slot = (Mutex<Option<Completion<PyValue>>>, Condvar);
    let slot: Arc<Slot> = Arc::new((Mutex::new(None), Condvar::new()));
    let s = slot.clone();
    w.pending().on_ready(move |c| {
        *s.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
        s.1.notify_all();
    });
    loop {
        let slice_end = Instant::now() + SLICE;
        let end = deadline.map_or(slice_end, |d| d.min(slice_end));
        let ready = py.detach(|| {
            let mut g = slot.0.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if g.is_some() {
                    return true;
                }
                let now = Instant::now();
                if now >= end {
                    return false;
                }
                g = slot.1.wait_timeout(g, end - now).unwrap_or_else(|e| e.into_inner()).0;
            }
        });
        if ready {
            return Ok(slot.0.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

fn timeout_err(t: Option<Duration>) -> PyErr {
    PyTimeoutError::new_err(CoreError::Timeout(t.unwrap_or_default()).to_string())
}

/// True if the current asyncio context is computing flight `id` (a detached leader task asking
/// its own key).
fn computing_in_context(py: Python<'_>, id: u64) -> bool {
    let Some(var) = COMPUTING_VAR.get(py) else { return false };
    let Ok(ids) = var.call_method0(py, "get") else { return false };
    let Ok(ids) = ids.bind(py).cast::<PyTuple>().cloned() else { return false };
    ids.iter().any(|i| i.extract::<u64>().is_ok_and(|i| i == id))
}

pub(crate) fn recursion_err(cache: &CoreCache, key: &Key) -> PyErr {
    CacheRecursionError::new_err(
        CoreError::Recursion { cache: cache.name().into(), key: key.to_string() }.to_string(),
    )
}

fn weigh(value: &Bound<'_, PyAny>, weigher: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    match weigher {
        None => Ok(estimate(value)),
        Some(w) => w
            .call1((value,))?
            .extract::<u64>()
            .map_err(|_| PyTypeError::new_err("weigher must return an int >= 0 (the value's size in bytes)")),
    }
}

/// The sync form: hit, or compute as the leader (holding the GIL, as Python code must), or
/// wait for the leader without the GIL.
pub(crate) fn run_sync<'py, F>(
    py: Python<'py>,
    cache: &CoreCache,
    key: &Key,
    call: F,
    opts: &Options,
    weigher: Option<&Bound<'py, PyAny>>,
) -> PyResult<Py<PyAny>>
where
    F: FnOnce() -> PyResult<Bound<'py, PyAny>>,
{
    let deadline = opts.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut call = Some(call);
    loop {
        match cache.begin(key) {
            Err(e) => return Err(to_pyerr(py, &e)),
            Ok(Begin::Hit(v)) => return Ok(v.0),
            Ok(Begin::Lease(lease)) => {
                let slot = lease.slot();
                let _permit = match slot.try_get() {
                    Some(p) => p,
                    None => match wait_sync(py, &slot, deadline)? {
                        Some(p) => p,
                        None => return Err(timeout_err(opts.timeout)),
                    },
                };
                // Shared mode: ask the shared tier first (as this process's leader for the key).
                let mut lease = lease;
                let mut remote = None;
                if let Some(sh) = shared::of(cache) {
                    let Some(answer) = wait_sync(py, &sh.tier.fetch(key), deadline)? else {
                        return Err(timeout_err(opts.timeout));
                    };
                    match shared::answer(py, &sh, lease, answer, |v| weigh(v, weigher)) {
                        Answered::Done(r) => return r,
                        Answered::Compute(l, r) => {
                            lease = l;
                            remote = r.map(|r| (sh, r));
                        }
                    }
                }
                let f = call.take().expect("one lease per call");
                let result = {
                    let _computing = lease.enter();
                    f()
                };
                return finish(py, lease, result, &opts.tags, weigher, remote);
            }
            Ok(Begin::Wait(w)) => {
                if computing_in_context(py, w.id()) {
                    return Err(recursion_err(cache, key));
                }
                match wait_completion(py, &w, deadline)? {
                    None => return Err(timeout_err(opts.timeout)),
                    Some(Completion::Value(v)) => return Ok(v.0),
                    Some(Completion::Failed(e)) => return Err(to_pyerr(py, &e)),
                    Some(Completion::HandedOver) => continue,
                }
            }
        }
    }
}

/// Ends a lease with the function's outcome.
fn finish<'py>(
    py: Python<'py>,
    lease: CoreLease,
    result: PyResult<Bound<'py, PyAny>>,
    tags: &[String],
    weigher: Option<&Bound<'py, PyAny>>,
    remote: Option<(shared::Shared, RemoteLease)>,
) -> PyResult<Py<PyAny>> {
    // Shared mode: the other processes first (as the core's own leader does), waiting (bounded,
    // without the GIL) for Redis to confirm, so a process exiting right after computing does
    // not lose the write; then the local waiters.
    let mut remote = remote;
    let mut publish = |outcome: Outcome<'_, '_>| -> PyResult<()> {
        match remote.take() {
            Some((sh, r)) => shared::confirm(py, shared::publish(py, &sh, r, outcome, tags)),
            None => Ok(()),
        }
    };
    let mut failed = |lease: CoreLease, e: PyErr| -> PyResult<Py<PyAny>> {
        if let Err(interrupted) = publish(Outcome::Failed(&e)) {
            drop(lease);
            return Err(interrupted);
        }
        Err(fail(py, lease, e))
    };
    let obj = match result {
        Ok(obj) => obj,
        Err(e) => return failed(lease, e),
    };
    if obj.get_type().name().is_ok_and(|n| n == "coroutine") {
        // An `async def` given to the sync form: a stored coroutine object could be awaited once.
        let _ = obj.call_method0("close");
        let e = PyTypeError::new_err(
            "the function returned a coroutine: use coopcache.cached_async (or decorate the \
             async def function itself) to cache the awaited value",
        );
        return failed(lease, e);
    }
    if let Ok(nc) = obj.cast::<NoCache>() {
        let v = nc.get().value.clone_ref(py);
        publish(Outcome::NoCache(v.bind(py)))?;
        lease.nocache(PyValue::new(v.clone_ref(py)));
        return Ok(v);
    }
    let weight = match weigh(&obj, weigher) {
        Ok(w) => w,
        Err(e) => return failed(lease, e),
    };
    publish(Outcome::Store(&obj))?;
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    lease.store_with(PyValue::new(obj.clone().unbind()), weight, &tags);
    Ok(obj.unbind())
}

/// The function raised: an `Exception` reaches every waiter (the same object) and is not
/// stored; a `BaseException` that is not an `Exception` (KeyboardInterrupt, SystemExit,
/// cancellation) belongs to this caller alone, and a waiter takes over the computation.
fn fail(py: Python<'_>, lease: CoreLease, e: PyErr) -> PyErr {
    if e.is_instance_of::<PyException>(py) {
        lease.fail(CoreError::Computation(Arc::new(PyErrBox::new(py, e.clone_ref(py)))));
    } else {
        drop(lease);
    }
    e
}

/// The value of a completion for the asyncio layer: (0, value) | (1, exception) | (2, None).
fn completion_py(py: Python<'_>, c: Completion<PyValue>) -> (u8, Py<PyAny>) {
    match c {
        Completion::Value(v) => (0, v.0),
        Completion::Failed(e) => (1, to_pyerr(py, &e).into_value(py).into_any()),
        Completion::HandedOver => (2, py.None()),
    }
}

/// `begin` for the asyncio layer: (0, value) | (1, Lease) | (2, Waiter).
pub(crate) fn begin(py: Python<'_>, cache: &CoreCache, key: &Key) -> PyResult<(u8, Py<PyAny>)> {
    match cache.begin(key) {
        Err(e) => Err(to_pyerr(py, &e)),
        Ok(Begin::Hit(v)) => Ok((0, v.0)),
        Ok(Begin::Lease(lease)) => {
            let id = lease.id();
            let lease = Lease {
                inner: Mutex::new(Some(lease)),
                id,
                cache: cache.clone(),
                key: key.clone(),
                remote: Mutex::new(None),
            };
            Ok((1, Py::new(py, lease)?.into_any()))
        }
        Ok(Begin::Wait(w)) => {
            if computing_in_context(py, w.id()) {
                return Err(recursion_err(cache, key));
            }
            Ok((2, Py::new(py, Waiter::from(w))?.into_any()))
        }
    }
}

/// Calls a Python callback from whichever thread completes the flight.
pub(crate) fn call_back(cb: Py<PyAny>, args: impl for<'py> FnOnce(Python<'py>) -> (u8, Py<PyAny>) + Send) {
    let _ = Python::try_attach(|py| {
        let (kind, payload) = args(py);
        if let Err(e) = cb.call1(py, (kind, payload)) {
            e.write_unraisable(py, None);
        }
    });
}

/// A value returned but not stored (see `nocache`).
#[pyclass(frozen, module = "coopcache._native")]
pub(crate) struct NoCache {
    value: Py<PyAny>,
}

#[pymethods]
impl NoCache {
    /// The value handed to every caller.
    #[getter]
    fn value(&self, py: Python<'_>) -> Py<PyAny> {
        self.value.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("nocache({})", self.value.bind(py).repr().map(|r| r.to_string()).unwrap_or_default())
    }
}

/// Marks a computed value as "return it to every caller, but do not store it".
#[pyfunction]
pub(crate) fn nocache(value: Py<PyAny>) -> NoCache {
    NoCache { value }
}

/// The asyncio leader's lease on a flight.
#[pyclass(frozen, module = "coopcache._native")]
pub(crate) struct Lease {
    inner: Mutex<Option<CoreLease>>,
    #[pyo3(get)]
    id: u64,
    cache: CoreCache,
    key: Key,
    /// Shared mode: the remote lease while this process computes the key for all of them.
    remote: Mutex<Option<(shared::Shared, RemoteLease)>>,
}

impl Lease {
    fn take(&self) -> PyResult<CoreLease> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this coopcache lease is already finished"))
    }

    fn take_remote(&self) -> Option<(shared::Shared, RemoteLease)> {
        self.remote.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Tells the other processes the outcome, if this process holds the key's remote lease.
    fn publish_outcome(
        &self,
        py: Python<'_>,
        outcome: Outcome<'_, '_>,
        tags: &[String],
    ) -> Option<shared::PublishWaiter> {
        let (sh, r) = self.take_remote()?;
        shared::publish(py, &sh, r, outcome, tags).map(shared::PublishWaiter::new)
    }

    fn with<R>(&self, f: impl FnOnce(&CoreLease) -> R) -> PyResult<R> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_ref() {
            Some(l) => Ok(f(l)),
            None => Err(PyRuntimeError::new_err("this coopcache lease is already finished")),
        }
    }
}

#[pymethods]
impl Lease {
    /// A waiter on this lease's own flight (for the caller who started it).
    fn waiter(&self) -> PyResult<Waiter> {
        self.with(|l| Waiter::from(l.waiter()))
    }

    /// A computation slot (max_concurrency).
    fn slot(&self) -> PyResult<SlotWaiter> {
        let pending = self.with(|l| l.slot())?;
        Ok(SlotWaiter { pending: Mutex::new(Some(pending)), permit: Arc::new(Mutex::new(None)) })
    }

    /// Runs `callback()` once when the last waiter gives up before the flight ends.
    fn on_abandoned(&self, callback: Py<PyAny>) -> PyResult<()> {
        self.with(|l| {
            l.on_abandoned(move || {
                let _ = Python::try_attach(|py| {
                    if let Err(e) = callback.call0(py) {
                        e.write_unraisable(py, None);
                    }
                });
            })
        })
    }

    /// Shared mode: asks the shared tier about the key (None if the cache has no shared tier).
    /// Await the returned waiter, then call `answer_remote` with it.
    fn ask_remote(&self) -> PyResult<Option<shared::RemoteWaiter>> {
        self.with(|_| ())?;
        Ok(shared::of(&self.cache).map(|sh| shared::RemoteWaiter::new(sh.tier.fetch(&self.key))))
    }

    /// Acts on the shared tier's answer: (0, value) or (1, exception) when it was answered
    /// without computing (the flight is finished), (2, None) when this caller computes.
    #[pyo3(signature = (waiter, weigher=None))]
    fn answer_remote(
        &self,
        py: Python<'_>,
        waiter: &shared::RemoteWaiter,
        weigher: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(u8, Py<PyAny>)> {
        let Some(sh) = shared::of(&self.cache) else { return Ok((2, py.None())) };
        let Some(answer) = waiter.take() else { return Ok((2, py.None())) };
        let lease = self.take()?;
        match shared::answer(py, &sh, lease, answer, |v| weigh(v, weigher)) {
            Answered::Done(Ok(v)) => Ok((0, v)),
            Answered::Done(Err(e)) => Ok((1, e.into_value(py).into_any())),
            Answered::Compute(l, r) => {
                *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
                *self.remote.lock().unwrap_or_else(|e| e.into_inner()) = r.map(|r| (sh, r));
                Ok((2, py.None()))
            }
        }
    }

    /// Shared mode: tells the other processes the outcome, if this process holds the key's
    /// remote lease (kind 0: a value to store, 1: a nocache value, 2: an exception). Returns the
    /// pending write to await (bounded) before finishing the local flight, or None.
    #[pyo3(signature = (kind, payload, tags=None))]
    fn publish(
        &self,
        py: Python<'_>,
        kind: u8,
        payload: &Bound<'_, PyAny>,
        tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<shared::PublishWaiter>> {
        let tags = parse_tags(tags)?;
        Ok(match kind {
            0 => self.publish_outcome(py, Outcome::Store(payload), &tags),
            1 => self.publish_outcome(py, Outcome::NoCache(payload), &tags),
            _ => {
                let err = PyErr::from_value(payload.clone());
                self.publish_outcome(py, Outcome::Failed(&err), &tags)
            }
        })
    }

    /// Stores the value (weighed natively unless `weight` is given) and hands it to every waiter.
    #[pyo3(signature = (value, weight=None, tags=None))]
    fn store(
        &self,
        value: &Bound<'_, PyAny>,
        weight: Option<u64>,
        tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let tags = parse_tags(tags)?;
        let weight = weight.unwrap_or_else(|| estimate(value));
        let lease = self.take()?;
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        lease.store_with(PyValue::new(value.clone().unbind()), weight, &tags);
        Ok(())
    }

    /// Hands the value to every waiter without storing it.
    fn nocache(&self, value: Py<PyAny>) -> PyResult<()> {
        self.take()?.nocache(PyValue::new(value));
        Ok(())
    }

    /// Hands the exception to every waiter; nothing is stored.
    fn fail(&self, py: Python<'_>, exc: &Bound<'_, PyBaseException>) -> PyResult<()> {
        let lease = self.take()?;
        let err = PyErr::from_value(exc.clone().into_any());
        lease.fail(CoreError::Computation(Arc::new(PyErrBox::new(py, err))));
        Ok(())
    }

    /// Gives the computation up: a waiter becomes the new leader (in shared mode, the remote
    /// lease is released too, so another process may compute at once).
    fn abandon(&self) {
        let lease = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(lease);
        drop(self.take_remote());
    }
}

/// One caller waiting on a flight (asyncio layer): a callback, or a poll.
#[pyclass(frozen, module = "coopcache._native")]
pub(crate) struct Waiter {
    inner: Mutex<Option<CoreWaiter>>,
    #[pyo3(get)]
    id: u64,
}

impl From<CoreWaiter> for Waiter {
    fn from(w: CoreWaiter) -> Self {
        let id = w.id();
        Waiter { inner: Mutex::new(Some(w)), id }
    }
}

#[pymethods]
impl Waiter {
    /// Calls `callback(kind, payload)` once the flight ends, on whichever thread ends it (at
    /// once if it has): kind 0 = value, 1 = exception, 2 = handed over (begin again).
    fn on_ready(&self, callback: Py<PyAny>) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = g.as_ref() {
            w.pending().on_ready(move |c| call_back(callback, move |py| completion_py(py, c)));
        }
    }

    /// The outcome if the flight has ended, else None.
    fn try_get(&self, py: Python<'_>) -> Option<(u8, Py<PyAny>)> {
        let c = self.inner.lock().unwrap_or_else(|e| e.into_inner()).as_ref()?.pending().try_get()?;
        Some(completion_py(py, c))
    }

    /// Stops waiting (this caller gave up); the computation goes on for the others.
    fn cancel(&self) {
        let w = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(w);
    }
}

/// A leader waiting for a computation slot (max_concurrency), asyncio layer.
#[pyclass(frozen, module = "coopcache._native")]
pub(crate) struct SlotWaiter {
    pending: Mutex<Option<Pending<Permit>>>,
    permit: Arc<Mutex<Option<Permit>>>,
}

#[pymethods]
impl SlotWaiter {
    /// Calls `callback(0, None)` once the slot is granted.
    fn on_ready(&self, callback: Py<PyAny>) {
        let g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = g.as_ref() {
            let permit = self.permit.clone();
            p.on_ready(move |granted| {
                *permit.lock().unwrap_or_else(|e| e.into_inner()) = Some(granted);
                call_back(callback, |py| (0, py.None()));
            });
        }
    }

    /// (0, None) once the slot is granted, else None.
    fn try_get(&self, py: Python<'_>) -> Option<(u8, Py<PyAny>)> {
        self.ready().then(|| (0, py.None()))
    }

    /// True once the slot is granted.
    fn ready(&self) -> bool {
        let g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_ref().and_then(|p| p.try_get()) {
            Some(p) => {
                *self.permit.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                true
            }
            None => self.permit.lock().unwrap_or_else(|e| e.into_inner()).is_some(),
        }
    }

    /// Stops waiting for the slot (a slot already granted is kept until `release`).
    fn cancel(&self) {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(p);
    }

    /// Frees the slot.
    fn release(&self) {
        self.cancel();
        let p = self.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(p);
    }
}

static METHOD_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A sync function decorated with `@coopcache.cached(name)`: the key is built in Rust from the
/// function's qualified name and its arguments (or by `key=`), and a hit never leaves Rust.
#[pyclass(frozen, dict, module = "coopcache._native")]
pub(crate) struct CachedFunction {
    cache_name: String,
    cache: OnceLock<CoreCache>,
    func: Py<PyAny>,
    prefix: String,
    /// `prefix` encoded once as a key item (a str).
    prefix_key: Key,
    key_fn: Option<Py<PyAny>>,
    weigher: Option<Py<PyAny>>,
    opts: Options,
}

impl CachedFunction {
    fn cache(&self) -> PyResult<&CoreCache> {
        if let Some(c) = self.cache.get() {
            return Ok(c);
        }
        let c = lookup(&self.cache_name)?;
        Ok(self.cache.get_or_init(|| c))
    }

    fn key(&self, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Key> {
        self.key_writer(args, kwargs).map(KeyWriter::finish)
    }

    /// The call's key, written on the stack: a hit is looked up with its bytes, no `Key` made.
    fn key_writer(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<KeyWriter> {
        let mut w = KeyWriter::new();
        if let Some(kf) = &self.key_fn {
            let k = kf.bind(args.py()).call(args, kwargs)?;
            write_key(&mut w, &k, 0, &|| " (returned by key=)".to_owned())?;
            return Ok(w);
        }
        let kwargs = kwargs.filter(|d| !d.is_empty());
        w.list(if kwargs.is_some() { 3 } else { 2 }).key(&self.prefix_key).list(args.len());
        for (i, a) in args.iter().enumerate() {
            write_key(&mut w, &a, 1, &|| format!(" (argument {i} of {})", self.prefix))?;
        }
        if let Some(kw) = kwargs {
            let mut items: Vec<(String, Bound<'_, PyAny>)> =
                kw.iter().map(|(k, v)| Ok((k.extract::<String>()?, v))).collect::<PyResult<_>>()?;
            items.sort_by(|a, b| a.0.cmp(&b.0));
            w.list(items.len());
            for (k, v) in &items {
                w.list(2).str(k);
                write_key(&mut w, v, 2, &|| format!(" (argument {k}= of {})", self.prefix))?;
            }
        }
        Ok(w)
    }
}

#[pymethods]
impl CachedFunction {
    #[new]
    #[pyo3(signature = (cache_name, func, prefix, key=None, weigher=None, timeout=None, tags=None))]
    fn new(
        cache_name: String,
        func: Py<PyAny>,
        prefix: String,
        key: Option<Py<PyAny>>,
        weigher: Option<Py<PyAny>>,
        timeout: Option<f64>,
        tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut pk = KeyWriter::new();
        pk.str(&prefix);
        Ok(CachedFunction {
            cache_name,
            cache: OnceLock::new(),
            func,
            prefix_key: pk.finish(),
            prefix,
            key_fn: key,
            weigher,
            opts: Options::parse(timeout, tags)?,
        })
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let cache = self.cache()?;
        let w = self.key_writer(args, kwargs)?;
        if let Some(v) = cache.hit_with(w.as_bytes(), |v| v.0.clone_ref(py)) {
            return Ok(v);
        }
        let key = w.finish();
        let func = self.func.bind(py);
        let weigher = self.weigher.as_ref().map(|w| w.bind(py));
        run_sync(py, cache, &key, || func.call(args, kwargs), &self.opts, weigher)
    }

    fn __get__(
        slf: Py<Self>,
        py: Python<'_>,
        instance: Option<Py<PyAny>>,
        _owner: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match instance {
            Some(i) if !i.is_none(py) => {
                let mt = METHOD_TYPE.import(py, "types", "MethodType")?;
                Ok(mt.call1((slf, i))?.unbind())
            }
            _ => Ok(slf.into_any()),
        }
    }

    /// The canonical key bytes these arguments map to.
    #[pyo3(signature = (*args, **kwargs))]
    fn cache_key(&self, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<u8>> {
        Ok(self.key(args, kwargs)?.as_bytes().to_vec())
    }

    /// Removes the entry these arguments map to; True if one was removed.
    #[pyo3(signature = (*args, **kwargs))]
    fn invalidate(&self, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<bool> {
        let key = self.key(args, kwargs)?;
        Ok(self.cache()?.invalidate(&key))
    }

    fn __repr__(&self) -> String {
        format!("<coopcache cached function {} (cache {:?})>", self.prefix, self.cache_name)
    }

    /// The name of the cache this function uses.
    #[getter]
    fn cache_name(&self) -> &str {
        &self.cache_name
    }
}
