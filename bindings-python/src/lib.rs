//! `coopcache._native`: the Python binding of the coopcache core.
//!
//! All semantics live in the core crate. This module converts keys (in Rust, see
//! [`convert`]), weighs values, runs the user's function in Python, waits without holding the
//! GIL (threads) or blocking the event loop (asyncio, through callbacks that the pure-Python
//! layer turns into futures), and maps errors to Python exceptions.

mod convert;
mod flight;
mod shared;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use coopcache::shared::{SharedMode, SharedSettings};

use coopcache::{
    Clock, ConfigError, Error as CoreError, Event, Key, MemoryLimit, Registry, Settings, WhenFull,
};
use pyo3::exceptions::{
    PyKeyError, PyRecursionError, PyRuntimeError, PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt};

pyo3::create_exception!(
    _native,
    UnknownCacheError,
    PyKeyError,
    "No cache of that name was configured (a KeyError); the message lists the configured names."
);
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

impl PyValue {
    pub(crate) fn new(obj: Py<PyAny>) -> Self {
        PyValue(obj)
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
        CoreError::UnknownCache { .. } => UnknownCacheError::new_err(e.to_string()),
        CoreError::Config(_) => PyValueError::new_err(e.to_string()),
        CoreError::Remote { type_name, message } => shared::remote_error(py, type_name, message),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn config_err(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.to_string())
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
        let (level, msg) = match event {
            Event::Full { cache, bytes_used, memory_limit } => (
                "warning",
                format!(
                    "coopcache: cache {cache:?} is full ({bytes_used} of {memory_limit} bytes); \
                     new values are returned but not stored"
                ),
            ),
            Event::Evicted { cache, reason, count } => {
                ("debug", format!("coopcache: cache {cache:?} evicted {count} entries ({})", reason.as_str()))
            }
            Event::SharedDown { cache, reason } => (
                "warning",
                format!(
                    "coopcache: the shared tier of cache {cache:?} is unavailable ({reason}); \
                     calls go on with the local tier"
                ),
            ),
            Event::SharedUp { cache } => {
                ("info", format!("coopcache: the shared tier of cache {cache:?} is back"))
            }
            Event::ValueRefused { cache, reason } => (
                "warning",
                format!(
                    "coopcache: a value of cache {cache:?} in the shared tier was refused ({reason}) \
                     and treated as a miss; it was not deserialized"
                ),
            ),
            other => ("debug", format!("coopcache: {other:?}")),
        };
        if let Err(e) = logger.call_method1(py, level, (msg,)) {
            e.write_unraisable(py, None);
        }
    });
}

pub(crate) fn lookup(name: &str) -> PyResult<CoreCache> {
    REGISTRY.get(name).map_err(|e| UnknownCacheError::new_err(e.to_string()))
}

/// The shared-mode options of `configure` (None: omitted).
#[derive(Default)]
struct SharedOptions {
    redis_url: Option<String>,
    serializer: Option<shared::Serializer>,
    secret: Option<Vec<u8>>,
    lease_ttl: Option<Duration>,
}

fn parse_shared(o: &mut SharedOptions, k: &str, v: &Bound<'_, PyAny>) -> PyResult<()> {
    match k {
        "redis_url" => {
            if !v.is_none() {
                o.redis_url = Some(v.extract().map_err(|_| PyTypeError::new_err("redis_url must be a str"))?);
            }
        }
        "serializer" => {
            if !v.is_none() {
                let s: String = v
                    .extract()
                    .map_err(|_| PyTypeError::new_err("serializer must be \"pickle\" or \"json\""))?;
                o.serializer = Some(shared::Serializer::parse(&s)?);
            }
        }
        "secret" => {
            if let Ok(b) = v.cast::<PyBytes>() {
                o.secret = Some(b.as_bytes().to_vec());
            } else if let Ok(s) = v.extract::<String>() {
                o.secret = Some(s.into_bytes());
            } else if !v.is_none() {
                return Err(PyTypeError::new_err("secret must be a str or bytes"));
            }
            if o.secret.as_ref().is_some_and(|s| s.is_empty()) {
                return Err(PyValueError::new_err("secret must not be empty"));
            }
        }
        "lease_ttl" => {
            if !v.is_none() {
                if v.cast::<PyBool>().is_ok() || !(v.cast::<PyInt>().is_ok() || v.cast::<PyFloat>().is_ok()) {
                    return Err(PyTypeError::new_err(format!(
                        "lease_ttl must be a number of seconds, not {}",
                        v.get_type().name()?
                    )));
                }
                let secs: f64 = v.extract()?;
                if !(secs.is_finite() && secs > 0.0) {
                    return Err(PyValueError::new_err(format!(
                        "invalid lease_ttl: {secs} (expected a number of seconds > 0)"
                    )));
                }
                o.lease_ttl = Some(Duration::from_secs_f64(secs));
            }
        }
        _ => unreachable!("only shared options"),
    }
    Ok(())
}

fn parse_settings(
    mut s: Settings,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<(Settings, SharedOptions)> {
    let mut sh = SharedOptions::default();
    let Some(options) = options else { return Ok((s, sh)) };
    let mut memory_limit = None;
    let mut cache_duration = None;
    let mut when_full: Option<String> = None;
    let mut max_concurrency = None;
    for (k, v) in options.iter() {
        match k.extract::<String>()?.as_str() {
            "memory_limit" => memory_limit = Some(v),
            "cache_duration" => cache_duration = Some(v),
            "when_full" => when_full = if v.is_none() { None } else { Some(v.extract()?) },
            // None is meaningful here: it removes the limit.
            "max_concurrency" => {
                if v.is_none() {
                    s.max_concurrency = None;
                } else {
                    max_concurrency = Some(v);
                }
            }
            k @ ("redis_url" | "serializer" | "secret" | "lease_ttl") => parse_shared(&mut sh, k, &v)?,
            other => {
                return Err(PyTypeError::new_err(format!(
                    "configure() got an unexpected option '{other}' (options: memory_limit, \
                     cache_duration, when_full, max_concurrency, redis_url, serializer, secret, \
                     lease_ttl)"
                )));
            }
        }
    }
    let (memory_limit, cache_duration, max_concurrency) =
        (memory_limit.as_ref(), cache_duration.as_ref(), max_concurrency.as_ref());
    let when_full = when_full.as_deref();
    if let Some(m) = memory_limit.filter(|m| !m.is_none()) {
        if m.cast::<PyBool>().is_ok() {
            return Err(PyTypeError::new_err(
                "memory_limit must be a number of bytes or a fraction, not a bool",
            ));
        }
        s.memory_limit = if let Ok(i) = m.cast::<PyInt>() {
            match i.extract::<u64>() {
                Ok(b) => MemoryLimit::Bytes(b),
                Err(_) => {
                    let f: f64 = i.extract().unwrap_or(-1.0);
                    MemoryLimit::from_number(if f >= 0.0 { f64::INFINITY } else { f }, false)
                        .map_err(config_err)?
                }
            }
        } else if let Ok(f) = m.cast::<PyFloat>() {
            MemoryLimit::from_number(f.value(), true).map_err(config_err)?
        } else {
            return Err(PyTypeError::new_err(format!(
                "memory_limit must be a number of bytes or a fraction of the machine's memory, not {}",
                m.get_type().name()?
            )));
        };
    }
    if let Some(d) = cache_duration.filter(|d| !d.is_none()) {
        if d.cast::<PyBool>().is_ok() || !(d.cast::<PyInt>().is_ok() || d.cast::<PyFloat>().is_ok()) {
            return Err(PyTypeError::new_err(format!(
                "cache_duration must be a number of seconds, not {}",
                d.get_type().name()?
            )));
        }
        let secs: f64 = d.extract()?;
        s.cache_duration = Settings::duration_from_secs(secs).map_err(config_err)?;
    }
    if let Some(w) = when_full {
        s.when_full = w.parse::<WhenFull>().map_err(config_err)?;
    }
    if let Some(c) = max_concurrency.filter(|c| !c.is_none()) {
        if c.cast::<PyBool>().is_ok() || c.cast::<PyInt>().is_err() {
            return Err(PyTypeError::new_err(format!(
                "max_concurrency must be an int >= 1 or None, not {}",
                c.get_type().name()?
            )));
        }
        let n: i64 = c.extract()?;
        if n < 1 {
            return Err(PyValueError::new_err(format!(
                "invalid max_concurrency: {n} (expected a number >= 1, or None for no limit)"
            )));
        }
        s.max_concurrency = Some(n as usize);
    }
    s.validate().map_err(config_err)?;
    Ok((s, sh))
}

/// Creates the cache `name`, or updates its settings in place (entries are kept), and returns
/// its `Cache` handle. On a new cache omitted settings take their defaults; on an existing one
/// they keep their current values (`max_concurrency=None` removes a limit).
///
/// Settings (keyword arguments) and their defaults:
///
/// - `memory_limit=50 * 1024 * 1024`: bytes for keys + values + 40 bytes per entry; a float in
///   (0, 1] is that fraction of the machine's memory; `0` stores nothing.
/// - `cache_duration=300`: seconds after the last read or write of an entry until it is deleted.
/// - `when_full="reject"`: a value that does not fit is returned but not stored; `"evict"`
///   drops least recently used entries instead.
/// - `max_concurrency=None`: at most this many computations of the cache at once.
/// - `redis_url=None`: `redis://` or `rediss://`; gives the cache a shared tier on Redis (each
///   value computed once across processes). Fixed by the first `configure` that gives it.
/// - `serializer="pickle"`: or `"json"` (the format Node and Rust share).
/// - `secret=None`: str or bytes; signs every value stored in Redis (pickle requires one).
/// - `lease_ttl=10.0`: seconds a computing process holds a key before another may take over.
///
/// Raises `ValueError` (a bad value) or `TypeError` (a wrong type or an unknown option) at once.
#[pyfunction]
#[pyo3(signature = (name, **options))]
fn configure(name: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<Cache> {
    let existing = REGISTRY.get(name).ok();
    let base = existing.as_ref().map(|c| c.settings()).unwrap_or_default();
    let (settings, sh) = parse_settings(base, options)?;
    let current = shared::conf_of(name);
    let has_tier = existing.as_ref().is_some_and(|c| c.shared().is_some());
    let serializer = sh.serializer.or(current.map(|c| c.serializer)).unwrap_or(shared::Serializer::Pickle);
    // The secret of an existing tier is the one it was created with (shared settings are fixed).
    let signed = if has_tier { current.is_some_and(|c| c.signed) } else { sh.secret.is_some() };
    let wants_tier = sh.redis_url.is_some() || has_tier;
    if wants_tier && serializer == shared::Serializer::Pickle && !signed {
        return Err(PyValueError::new_err(
            "pickle in shared mode needs secret=: unsigned pickles from Redis could run code \
             (give secret=..., or use serializer=\"json\")",
        ));
    }
    let inner = match sh.redis_url {
        None => REGISTRY.configure(name, settings).map_err(config_err)?,
        Some(url) => {
            let mut ss = SharedSettings::new(url);
            if let Some(secret) = sh.secret {
                ss = ss.secret(secret);
            }
            if let Some(t) = sh.lease_ttl {
                ss.lease_ttl = t;
            }
            // A new tier connects in the background; its first calls wait (bounded) for that.
            REGISTRY.configure_shared(name, settings, Some(SharedMode::Redis(ss))).map_err(config_err)?
        }
    };
    if inner.shared().is_some() {
        shared::set_conf(name, shared::Conf { serializer, signed });
    }
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
    #[pyo3(signature = (key=None, func=None, *, timeout=None, tags=None, weigher=None))]
    fn cached(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        func: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        tags: Option<&Bound<'_, PyAny>>,
        weigher: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let (Some(key), Some(func)) = (key, func) else {
            let kwargs = PyDict::new(py);
            kwargs.set_item("timeout", timeout)?;
            kwargs.set_item("tags", tags)?;
            kwargs.set_item("weigher", weigher)?;
            let decorator = py.import("coopcache._decorator")?.getattr("cached")?;
            return Ok(decorator.call((self.inner.name(), key, func), Some(&kwargs))?.unbind());
        };
        let k = convert::to_key(key)?;
        let opts = flight::Options::parse(timeout, tags)?;
        flight::cached_sync(py, &self.inner, k, || func.call0(), &opts, weigher)
    }

    /// `await c.cached_async(key, fn)`: the asyncio form (see `coopcache.cached_async`).
    #[pyo3(signature = (key, func, *, timeout=None, tags=None, weigher=None))]
    fn cached_async(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        func: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        tags: Option<&Bound<'_, PyAny>>,
        weigher: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("timeout", timeout)?;
        kwargs.set_item("tags", tags)?;
        kwargs.set_item("weigher", weigher)?;
        let f = py.import("coopcache._decorator")?.getattr("cached_async")?;
        Ok(f.call((self.inner.name(), key, func), Some(&kwargs))?.unbind())
    }

    /// The asyncio layer's start of a call: (0, value) on a hit, else (1, Call) to drive.
    #[pyo3(signature = (key, *, timeout=None, tags=None, weigher=None))]
    fn _call(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        tags: Option<&Bound<'_, PyAny>>,
        weigher: Option<Py<PyAny>>,
    ) -> PyResult<(u8, Py<PyAny>)> {
        let k = convert::to_key(key)?;
        let opts = flight::Options::parse(timeout, tags)?;
        if let Some(v) = self.inner.hit_with(&k, |v| v.0.clone_ref(py)) {
            return Ok((0, v));
        }
        let call = flight::Call::new(&self.inner, k, &opts, weigher);
        Ok((1, Py::new(py, call)?.into_any()))
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

/// The `Cache` handle of a configured name (`UnknownCacheError` if there is none).
#[pyfunction]
fn cache(name: &str) -> PyResult<Cache> {
    Ok(Cache { inner: lookup(name)? })
}

/// Call form: the value for `key` in cache `name`, computed by `func()` once however many
/// callers ask at the same moment (the others wait for it, without the GIL).
#[pyfunction]
#[pyo3(signature = (name, key, func, *, timeout=None, tags=None, weigher=None))]
fn cached(
    py: Python<'_>,
    name: &str,
    key: &Bound<'_, PyAny>,
    func: &Bound<'_, PyAny>,
    timeout: Option<f64>,
    tags: Option<&Bound<'_, PyAny>>,
    weigher: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let c = lookup(name)?;
    let k = convert::to_key(key)?;
    let opts = flight::Options::parse(timeout, tags)?;
    flight::cached_sync(py, &c, k, || func.call0(), &opts, weigher)
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
/// leases_won, leases_lost, remote_waits, fallbacks, rejected_values.
#[pyfunction]
fn stats<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    stats_dict(py, &lookup(name)?)
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

/// The native deep-size estimate of a value, in bytes.
#[pyfunction]
fn estimate_size(value: &Bound<'_, PyAny>) -> u64 {
    convert::estimate(value)
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
    m.add("UnknownCacheError", py.get_type::<UnknownCacheError>())?;
    m.add("CacheRecursionError", py.get_type::<CacheRecursionError>())?;
    m.add("ENTRY_OVERHEAD", coopcache::ENTRY_OVERHEAD)?;
    m.add_class::<Cache>()?;
    m.add_class::<flight::NoCache>()?;
    m.add_class::<flight::Call>()?;
    m.add_class::<flight::Lead>()?;
    m.add_class::<flight::Signal>()?;
    m.add_class::<flight::Frame>()?;
    m.add_class::<flight::CachedFunction>()?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(cache, m)?)?;
    m.add_function(wrap_pyfunction!(cached, m)?)?;
    m.add_function(wrap_pyfunction!(get, m)?)?;
    m.add_function(wrap_pyfunction!(invalidate, m)?)?;
    m.add_function(wrap_pyfunction!(invalidate_tag, m)?)?;
    m.add_function(wrap_pyfunction!(clear, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(names, m)?)?;
    m.add_function(wrap_pyfunction!(key_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_size, m)?)?;
    m.add_function(wrap_pyfunction!(flight::nocache, m)?)?;
    m.add_function(wrap_pyfunction!(_init, m)?)?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    Ok(())
}
