//! `coopcache._native`: the Python binding of the coopcache core.
//!
//! All semantics live in the core crate. This module converts keys (in Rust, see
//! [`convert`]), weighs values, runs the user's function in Python, waits without holding the
//! GIL (threads) or blocking the event loop (asyncio and batches, on the core's table of jobs:
//! see [`jobs`]), and maps errors to Python exceptions.

mod convert;
mod entry;
mod flight;
mod jobs;
mod shared;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};

use coopcache::options::{self, Arg, ErrorKind, OptionError, Style, Value};
use coopcache::{Clock, ConfigError, Error as CoreError, Event, Key, Level, Registry};
use pyo3::exceptions::{PyRecursionError, PyRuntimeError, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString, PyTuple};
pyo3::create_exception!(
    _native,
    CacheRecursionError,
    PyRecursionError,
    "A computation asked for its own key of its own cache, which would wait for itself forever."
);

/// A stored Python object: one pointer, no extra allocation per entry.
///
/// Dropping it needs no GIL: the core drops values on its sweeper thread, and pyo3 defers a
/// decref made without the GIL until a thread next holds it. Cloning increments the reference
/// count, which needs the GIL: every clone the core makes of a value happens in a call this
/// binding makes while holding it (lookups, stores, the end of a flight on the leader's
/// thread). A waiting caller never clones: the core hands the value over on the thread that
/// ends the flight, and the caller waits on a signal without a value (`Ready`).
/// `Python::attach` is a thread-local check when the GIL is held, and a safe (if blocking)
/// fallback otherwise.
pub(crate) struct PyValue(pub(crate) Py<PyAny>);

impl Clone for PyValue {
    fn clone(&self) -> Self {
        Python::attach(|py| PyValue(self.0.clone_ref(py)))
    }
}

pub(crate) type CoreCache = coopcache::Cache<Key, PyValue>;

/// A Python exception raised by the user's function, shared by every waiter of the flight.
pub(crate) struct PyErrBox {
    pub(crate) err: PyErr,
    /// The traceback of the computation, restored before each waiter raises the exception (so
    /// that tracebacks do not pile up across the many callers raising the same object).
    tb: Option<Py<PyAny>>,
    msg: String,
}

impl PyErrBox {
    pub(crate) fn new(py: Python<'_>, err: PyErr) -> Self {
        let tb = err.value(py).getattr("__traceback__").ok().map(Bound::unbind);
        let msg = match err.value(py).str() {
            Ok(s) => format!("{}: {}", err.get_type(py).name().map(|n| n.to_string()).unwrap_or_default(), s),
            Err(_) => "a Python exception".to_owned(),
        };
        PyErrBox { err, tb, msg }
    }
}

impl std::fmt::Display for PyErrBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::fmt::Debug for PyErrBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PyErrBox({})", self.msg)
    }
}

impl std::error::Error for PyErrBox {}

/// The Python exception for a core error (the very exception object of a failed computation).
pub(crate) fn to_pyerr(py: Python<'_>, e: &CoreError) -> PyErr {
    if let Some(b) = e.downcast_ref::<PyErrBox>() {
        let value = b.err.value(py);
        if let Some(tb) = &b.tb {
            let _ = value.setattr("__traceback__", tb.bind(py));
        }
        return PyErr::from_value(value.clone().into_any());
    }
    match e {
        CoreError::Timeout(_) => PyTimeoutError::new_err(e.to_string()),
        CoreError::Recursion { .. } | CoreError::BlocksExecutor { .. } => {
            CacheRecursionError::new_err(e.to_string())
        }
        CoreError::UnknownCache { .. } => error_of(py, "UnknownCacheError", (e.to_string(),)),
        CoreError::Config(c) => config_err(c),
        CoreError::Remote { type_name, message } => error_of(py, "RemoteError", (type_name, message)),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn config_err(e: &ConfigError) -> PyErr {
    option_err(OptionError::config(e, Style::Python))
}

/// The exception for an option the core refused: `TypeError` or `ValueError`.
pub(crate) fn option_err(e: OptionError) -> PyErr {
    match e.kind {
        ErrorKind::Type => PyTypeError::new_err(e.message),
        _ => PyValueError::new_err(e.message),
    }
}

/// An exception of a class defined in Python (`coopcache._errors`): `UnknownCacheError` (a
/// `KeyError` whose message is not quoted), `RemoteError(type_name, message)`.
fn error_of<'py>(py: Python<'py>, class: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
    match py.import("coopcache._errors").and_then(|m| m.getattr(class)).and_then(|c| c.call1(args)) {
        Ok(err) => PyErr::from_value(err),
        Err(err) => err,
    }
}

/// A Python value as the core's option checks see it, with its type's name.
pub(crate) fn arg(v: &Bound<'_, PyAny>) -> PyResult<Arg> {
    let value = if v.is_none() {
        Value::None
    } else if let Ok(b) = v.cast::<PyBool>() {
        Value::Bool(b.is_true())
    } else if v.cast::<PyInt>().is_ok() {
        // Beyond i128 (or f64): no setting accepts it, and the message shows it as a float.
        v.extract().map(Value::Int).unwrap_or_else(|_| Value::Float(v.extract().unwrap_or(f64::INFINITY)))
    } else if let Ok(f) = v.cast::<PyFloat>() {
        Value::Float(f.value())
    } else if let Ok(s) = v.cast::<PyString>() {
        Value::Str(s.to_cow()?.into_owned())
    } else if let Ok(b) = v.cast::<PyBytes>() {
        Value::Bytes(b.as_bytes().to_vec())
    } else if v.is_callable() {
        Value::Func
    } else if v.cast::<PyDict>().is_ok() {
        Value::Other
    } else if let Ok(items) = v.try_iter() {
        Value::List(items.map(|i| arg(&i?)).collect::<PyResult<_>>()?)
    } else {
        Value::Other
    };
    Ok(Arg::new(value, v.get_type().name()?.to_string()))
}

/// Set at interpreter exit: events are no longer forwarded to `logging`.
static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// The `logging.getLogger("coopcache")` logger.
pub(crate) static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// The context variable holding the frames of the computations the current asyncio context
/// is inside (`_decorator._COMPUTING`).
pub(crate) static COMPUTING_VAR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The one registry of the process.
pub(crate) static REGISTRY: LazyLock<Registry<PyValue>> =
    LazyLock::new(|| Registry::with(Some(Arc::new(forward_event)), Clock::system()));

/// Sends a core event to the `coopcache` logger (full: warning, evictions: debug). Runs on
/// whichever thread caused the event, the sweeper thread included.
fn forward_event(event: &Event) {
    if SHUTDOWN.load(Relaxed) {
        return;
    }
    let _ = Python::try_attach(|py| {
        let Some(logger) = LOGGER.get(py) else { return };
        let level = match event.level() {
            Level::Warning => "warning",
            Level::Info => "info",
            _ => "debug",
        };
        if let Err(e) = logger.call_method1(py, level, (event.message(),)) {
            e.write_unraisable(py, None);
        }
    });
}

pub(crate) fn lookup(name: &str) -> PyResult<CoreCache> {
    REGISTRY.get(name).map_err(|e| Python::attach(|py| to_pyerr(py, &e)))
}

/// Creates the cache `name`, or updates its settings in place (entries are kept), and returns
/// its `Cache` handle. On a new cache omitted settings take their defaults; on an existing one
/// they keep their current values (`max_concurrency=None` removes a limit).
///
/// Settings (keyword arguments) and their defaults:
///
/// - `memory_limit=50 * 1024 * 1024`: bytes for keys + values + 48 bytes per entry; a float in
///   (0, 1] is that fraction of the machine's memory; `0` stores nothing.
/// - `cache_duration=300`: seconds after the last read or write of an entry until it is deleted.
/// - `when_full="reject"`: a value that does not fit is returned but not stored; `"evict"`
///   drops least recently used entries instead.
/// - `max_concurrency=None`: at most this many computations of the cache at once.
/// - `refresh_after=None`: seconds after an entry was computed until a hit on it starts one
///   background recomputation (the hit and the others meanwhile get the stored value); None:
///   never.
/// - `serve_stale_on_error=True`: a refresh that fails keeps the stored value (False: the
///   entry goes); counted in `refreshes_failed` and logged either way.
/// - `early_refresh=None`: XFetch's beta (> 0, 1.0 usual): each value computed here falls due
///   before `refresh_after` by beta x its computation time x a random exponential draw.
/// - `redis_url=None`: `redis://` or `rediss://`; gives the cache a shared tier on Redis (each
///   value computed once across processes). Fixed by the first `configure` that gives it.
/// - `serializer="pickle"`: or `"json"` (the format Node and Rust share).
/// - `secret=None`: str or bytes; signs every value stored in Redis (pickle requires one).
/// - `lease_ttl=10.0`: seconds a computing process holds a key before another may take over.
///
/// Raises `ValueError` (a bad value) or `TypeError` (a wrong type or an unknown option) at once.
#[pyfunction]
#[pyo3(signature = (name, **options))]
fn configure(name: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Cache> {
    let name = arg(name)?;
    let name = options::cache_name(&name, Style::Python).map_err(option_err)?;
    let base = REGISTRY.get(name).map(|c| c.settings()).unwrap_or_default();
    let given = match options {
        Some(o) => o.iter().map(|(k, v)| Ok((k.extract::<String>()?, arg(&v)?))).collect::<PyResult<_>>()?,
        None => Vec::new(),
    };
    let o = options::configure(base, &given, Style::Python).map_err(option_err)?;
    // A new tier connects in the background; its first calls wait (bounded) for that.
    let inner = REGISTRY.configure_from(name, o).map_err(|e| config_err(&e))?;
    Ok(Cache { inner })
}

fn stats_dict<'py>(py: Python<'py>, c: &CoreCache) -> PyResult<Bound<'py, PyDict>> {
    let s = c.stats();
    let d = PyDict::new(py);
    for (name, n) in s.fields() {
        d.set_item(name, n)?;
        if name == "evicted_invalidated" {
            // The evictions again, by reason, where they were always listed.
            let ev = PyDict::new(py);
            ev.set_item("idle", s.evicted_idle)?;
            ev.set_item("lru", s.evicted_lru)?;
            ev.set_item("invalidated", s.evicted_invalidated)?;
            d.set_item("evictions", ev)?;
        }
    }
    if let Some(t) = c.shared() {
        for (name, n) in t.stats().fields() {
            d.set_item(name, n)?;
        }
    }
    Ok(d)
}

/// A handle on one named cache (returned by `configure`).
#[pyclass(frozen, module = "coopcache._native")]
pub(crate) struct Cache {
    pub(crate) inner: CoreCache,
}

#[pymethods]
impl Cache {
    /// The cache's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The stored value, or `default` on a miss (no computation).
    #[pyo3(signature = (key, default=None))]
    fn get(&self, py: Python<'_>, key: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let k = convert::to_key(key)?;
        Ok(match self.inner.get(&k) {
            Some(v) => v.0,
            None => default.unwrap_or_else(|| py.None()),
        })
    }

    /// Removes the key's entry; True if one was removed.
    fn invalidate(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = convert::to_key(key)?;
        Ok(self.inner.invalidate(&k))
    }

    /// Removes every entry stored with `tag`; returns how many.
    fn invalidate_tag(&self, tag: &str) -> u64 {
        self.inner.invalidate_tag(tag)
    }

    /// Removes every entry.
    fn clear(&self) {
        self.inner.clear()
    }

    /// The counters as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.inner)
    }

    /// Call form `c.cached(key, fn)`: the value for `key`, computed by `fn()` once however
    /// many callers ask. Without `fn`, the decorator form (`@c.cached()`, `@c.cached(key=...)`).
    #[pyo3(signature = (key=None, func=None, *, timeout=None, tags=None, weigher=None, refresh_after=None))]
    #[allow(clippy::too_many_arguments)]
    fn cached(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        func: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        tags: Option<&Bound<'_, PyAny>>,
        weigher: Option<&Bound<'_, PyAny>>,
        refresh_after: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let (Some(key), Some(func)) = (key, func) else {
            let kwargs = call_kwargs(py, timeout, tags, weigher, refresh_after)?;
            let decorator = py.import("coopcache._decorator")?.getattr("cached")?;
            return Ok(decorator.call((self.inner.name(), key, func), Some(&kwargs))?.unbind());
        };
        let opts = flight::Options::parse(timeout, tags, refresh_after)?;
        let thunk = (func, &PyTuple::empty(py), None);
        flight::cached_sync(py, &self.inner, flight::key_writer(key)?, thunk, &opts, weigher)
    }

    /// `await c.cached_async(key, fn)`: the asyncio form (see `coopcache.cached_async`).
    #[pyo3(signature = (key, func, *, timeout=None, tags=None, weigher=None, refresh_after=None))]
    #[allow(clippy::too_many_arguments)]
    fn cached_async(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        func: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
        tags: Option<&Bound<'_, PyAny>>,
        weigher: Option<&Bound<'_, PyAny>>,
        refresh_after: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let kwargs = call_kwargs(py, timeout, tags, weigher, refresh_after)?;
        let f = py.import("coopcache._decorator")?.getattr("cached_async")?;
        Ok(f.call((self.inner.name(), key, func), Some(&kwargs))?.unbind())
    }

    fn __repr__(&self) -> String {
        let s = self.inner.settings();
        format!(
            "<coopcache.Cache {:?} memory_limit={:?} cache_duration={}s when_full={} max_concurrency={:?}>",
            self.inner.name(),
            self.inner.stats().memory_limit,
            s.cache_duration.as_secs_f64(),
            s.when_full,
            s.max_concurrency
        )
    }
}

/// The keyword arguments a Python form of `cached` passes on.
fn call_kwargs<'py>(
    py: Python<'py>,
    timeout: Option<&Bound<'py, PyAny>>,
    tags: Option<&Bound<'py, PyAny>>,
    weigher: Option<&Bound<'py, PyAny>>,
    refresh_after: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("timeout", timeout)?;
    kwargs.set_item("tags", tags)?;
    kwargs.set_item("weigher", weigher)?;
    kwargs.set_item("refresh_after", refresh_after)?;
    Ok(kwargs)
}

/// The `Cache` handle of a configured name (`UnknownCacheError` if there is none).
#[pyfunction]
fn cache(name: &str) -> PyResult<Cache> {
    Ok(Cache { inner: lookup(name)? })
}

/// Call form: the value for `key` in cache `name`, computed by `func()` once however many
/// callers ask at the same moment (the others wait for it, without the GIL).
#[pyfunction]
#[pyo3(signature = (name, key, func, *, timeout=None, tags=None, weigher=None, refresh_after=None))]
#[allow(clippy::too_many_arguments)]
fn cached(
    py: Python<'_>,
    name: &str,
    key: &Bound<'_, PyAny>,
    func: &Bound<'_, PyAny>,
    timeout: Option<&Bound<'_, PyAny>>,
    tags: Option<&Bound<'_, PyAny>>,
    weigher: Option<&Bound<'_, PyAny>>,
    refresh_after: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let c = lookup(name)?;
    let opts = flight::Options::parse(timeout, tags, refresh_after)?;
    let thunk = (func, &PyTuple::empty(py), None);
    flight::cached_sync(py, &c, flight::key_writer(key)?, thunk, &opts, weigher)
}

/// The stored value for `key` in cache `name`, or `default` on a miss. Never computes; a read
/// resets the entry's idle clock.
#[pyfunction]
#[pyo3(signature = (name, key, default=None))]
fn get(
    py: Python<'_>,
    name: &str,
    key: &Bound<'_, PyAny>,
    default: Option<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    Cache { inner: lookup(name)? }.get(py, key, default)
}

/// Removes the entry for `key` from cache `name` (in shared mode also from Redis and every
/// process's local tier); True if one was removed here.
#[pyfunction]
fn invalidate(name: &str, key: &Bound<'_, PyAny>) -> PyResult<bool> {
    Cache { inner: lookup(name)? }.invalidate(key)
}

/// Removes the entries of cache `name` stored with `tag` (the `tags=` option of `cached`), in
/// shared mode everywhere; returns how many were removed here.
#[pyfunction]
fn invalidate_tag(name: &str, tag: &str) -> PyResult<u64> {
    Ok(lookup(name)?.invalidate_tag(tag))
}

/// Removes every entry of cache `name` (in shared mode, everywhere).
#[pyfunction]
fn clear(name: &str) -> PyResult<()> {
    lookup(name)?.clear();
    Ok(())
}

/// The counters of cache `name` as a dict: hits, misses, computations, coalesced, errors,
/// nocache, rejected_full, evicted_idle, evicted_lru, evicted_invalidated (also as
/// `evictions`), entries, bytes_used, memory_limit, in_flight; in shared mode also remote_hits,
/// leases_won, leases_lost, remote_waits, fallbacks, rejected_values, message_bytes. With
/// `refresh_after`: refreshes_started, refreshes_succeeded, refreshes_failed, stale_served.
#[pyfunction]
fn stats<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    stats_dict(py, &lookup(name)?)
}

/// Claims the default key `(name, args)` in cache `cache` for the function `owner` (its `id`):
/// True if the claim is new (released with `release_name` when the function dies); a name that
/// another live function holds is a `TypeError`.
#[pyfunction]
fn claim_name(cache: &str, name: &str, owner: u64) -> PyResult<bool> {
    REGISTRY.claim_name(cache, name, owner, Style::Python).map_err(option_err)
}

/// Frees a name `claim_name` gave `owner` (its function died).
#[pyfunction]
fn release_name(cache: &str, name: &str, owner: u64) {
    REGISTRY.release_name(cache, name, owner);
}

/// The configured cache names, sorted.
#[pyfunction]
fn names() -> Vec<String> {
    REGISTRY.names()
}

/// The canonical key bytes of a Python key (equal keys, equal bytes).
#[pyfunction]
fn key_bytes<'py>(py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, convert::to_key(key)?.as_bytes()))
}

/// The id that stands for the function of qualified name `name` in its calls' default keys.
#[pyfunction]
fn function_id<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &coopcache::function_id(name))
}

/// The native deep-size estimate of a value, in bytes.
#[pyfunction]
fn estimate_size(value: &Bound<'_, PyAny>) -> u64 {
    convert::estimate(value)
}

/// For tests only: the cache `name`, configured after this call, reads a manual clock that
/// moves only by `advance(seconds)` (no sleeping in refresh and expiry tests). `ValueError` if
/// the cache exists already.
#[pyfunction]
fn _manual_clock(name: &str) -> PyResult<ManualClock> {
    match REGISTRY.manual_clock(name) {
        Some(clock) => Ok(ManualClock(clock)),
        None => Err(PyValueError::new_err(format!(
            "_manual_clock({name:?}): the cache exists already; call it before the first configure"
        ))),
    }
}

/// A cache's manual clock (see `_manual_clock`), for tests.
#[pyclass(frozen, module = "coopcache._native")]
struct ManualClock(Clock);

#[pymethods]
impl ManualClock {
    /// Moves the clock forward by `seconds`.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        let by = std::time::Duration::try_from_secs_f64(seconds)
            .map_err(|_| PyValueError::new_err(format!("advance: seconds must be >= 0, got {seconds}")))?;
        self.0.advance(by);
        Ok(())
    }
}

/// Called once by the package: the logger and the asyncio recursion context variable.
#[pyfunction]
fn _init(py: Python<'_>, logger: Py<PyAny>, computing: Py<PyAny>) {
    let _ = LOGGER.set(py, logger);
    let _ = COMPUTING_VAR.set(py, computing);
    LazyLock::force(&REGISTRY);
}

/// Called in a fork's child (`os.register_at_fork`): see `coopcache::after_fork_in_child`.
#[pyfunction]
fn _after_fork_in_child() {
    coopcache::after_fork_in_child();
}

/// Called at interpreter exit: stop forwarding events to `logging`.
#[pyfunction]
fn _shutdown() {
    SHUTDOWN.store(true, Relaxed);
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CacheRecursionError", py.get_type::<CacheRecursionError>())?;
    m.add("ENTRY_OVERHEAD", coopcache::ENTRY_OVERHEAD)?;
    m.add_class::<Cache>()?;
    m.add_class::<flight::NoCache>()?;
    m.add_class::<jobs::Jobs>()?;
    m.add_class::<flight::Frame>()?;
    entry::add(m)?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(claim_name, m)?)?;
    m.add_function(wrap_pyfunction!(release_name, m)?)?;
    m.add_function(wrap_pyfunction!(cache, m)?)?;
    m.add_function(wrap_pyfunction!(cached, m)?)?;
    m.add_function(wrap_pyfunction!(get, m)?)?;
    m.add_function(wrap_pyfunction!(invalidate, m)?)?;
    m.add_function(wrap_pyfunction!(invalidate_tag, m)?)?;
    m.add_function(wrap_pyfunction!(clear, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(names, m)?)?;
    m.add_function(wrap_pyfunction!(key_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(function_id, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_size, m)?)?;
    m.add_function(wrap_pyfunction!(flight::nocache, m)?)?;
    m.add_function(wrap_pyfunction!(_init, m)?)?;
    m.add_function(wrap_pyfunction!(_manual_clock, m)?)?;
    m.add_class::<ManualClock>()?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    Ok(())
}
