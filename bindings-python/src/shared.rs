//! Shared mode (Redis): the binding's part is small. It keeps each cache's serializer, turns
//! Python values into bytes and back (pickle or json), waits for the core's shared-tier steps
//! without the GIL, and maps remote errors to `coopcache.RemoteError`. The protocol (leases,
//! renewal, pub/sub, signing, fallbacks) is all in the core's `coopcache::shared`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use coopcache::shared::{Blob, Remote, RemoteError, RemoteLease, SharedTier};
use coopcache::{Error as CoreError, Key, Pending};
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::{CoreCache, LOGGER, PyErrBox, PyValue};

type CoreLease = coopcache::Lease<Key, PyValue>;

/// How long a leader waits for Redis to confirm its write before returning (each Redis call
/// has its own, shorter timeout; this only bounds the whole step).
pub(crate) const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// How a cache's values are turned into bytes for Redis.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Serializer {
    Pickle,
    Json,
}

impl Serializer {
    pub(crate) fn parse(s: &str) -> PyResult<Serializer> {
        match s {
            "pickle" => Ok(Serializer::Pickle),
            "json" => Ok(Serializer::Json),
            other => Err(PyValueError::new_err(format!(
                "invalid serializer: {other:?} (expected \"pickle\" or \"json\")"
            ))),
        }
    }

    fn dumps(self, value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let py = value.py();
        match self {
            Serializer::Pickle => {
                let pickle = py.import("pickle")?;
                let proto = pickle.getattr("HIGHEST_PROTOCOL")?;
                Ok(pickle.call_method1("dumps", (value, proto))?.extract()?)
            }
            Serializer::Json => {
                let kw = PyDict::new(py);
                kw.set_item("separators", (",", ":"))?;
                kw.set_item("ensure_ascii", false)?;
                kw.set_item("allow_nan", false)?; // NaN is not JSON: Node and Rust could not read it
                let s: String = py.import("json")?.call_method("dumps", (value,), Some(&kw))?.extract()?;
                Ok(s.into_bytes())
            }
        }
    }

    fn loads<'py>(self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let b = PyBytes::new(py, bytes);
        match self {
            Serializer::Pickle => py.import("pickle")?.call_method1("loads", (b,)),
            Serializer::Json => py.import("json")?.call_method1("loads", (b,)),
        }
    }
}

/// The binding's settings of a cache that has a shared tier.
#[derive(Clone, Copy)]
pub(crate) struct Conf {
    pub(crate) serializer: Serializer,
    pub(crate) signed: bool,
}

static CONFS: LazyLock<RwLock<HashMap<String, Conf>>> = LazyLock::new(|| RwLock::new(HashMap::new()));

pub(crate) fn conf_of(name: &str) -> Option<Conf> {
    CONFS.read().unwrap_or_else(|e| e.into_inner()).get(name).copied()
}

pub(crate) fn set_conf(name: &str, conf: Conf) {
    CONFS.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), conf);
}

/// The shared tier of a cache and how to serialize its values, if it has one.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) tier: SharedTier,
    pub(crate) serializer: Serializer,
    name: String,
}

pub(crate) fn of(cache: &CoreCache) -> Option<Shared> {
    let tier = cache.shared()?.clone();
    let serializer = conf_of(cache.name()).map_or(Serializer::Pickle, |c| c.serializer);
    Some(Shared { tier, serializer, name: cache.name().to_owned() })
}

/// Logs a warning on the `coopcache` logger.
fn warn(py: Python<'_>, msg: String) {
    if let Some(logger) = LOGGER.get(py) {
        if let Err(e) = logger.call_method1(py, "warning", (msg,)) {
            e.write_unraisable(py, None);
        }
    }
}

/// `coopcache.RemoteError(type_name, message)`.
pub(crate) fn remote_error(py: Python<'_>, e: &RemoteError) -> PyErr {
    match py
        .import("coopcache._errors")
        .and_then(|m| m.getattr("RemoteError"))
        .and_then(|cls| cls.call1((e.type_name.as_str(), e.message.as_str())))
    {
        Ok(obj) => PyErr::from_value(obj),
        Err(err) => err,
    }
}

/// What another process is told about an exception raised here.
fn remote_error_of(py: Python<'_>, e: &PyErr) -> RemoteError {
    let value = e.value(py);
    // A RemoteError relayed again keeps its original type name and message.
    if let (Ok(t), Ok(m)) = (value.getattr("type_name"), value.getattr("message")) {
        if let (Ok(t), Ok(m)) = (t.extract::<String>(), m.extract::<String>()) {
            if value.get_type().name().is_ok_and(|n| n == "RemoteError") {
                return RemoteError { type_name: t, message: m };
            }
        }
    }
    let type_name = e.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".into());
    let message = value.str().map(|s| s.to_string()).unwrap_or_default();
    RemoteError { type_name, message }
}

/// What the leader does after the shared tier answered.
pub(crate) enum Answered {
    /// Answered without computing here; the local flight is finished.
    Done(PyResult<Py<PyAny>>),
    /// Compute here, holding the remote lease if the tier gave one.
    Compute(CoreLease, Option<RemoteLease>),
}

/// Acts on the shared tier's answer for the local leader.
pub(crate) fn answer(
    py: Python<'_>,
    sh: &Shared,
    lease: CoreLease,
    remote: Remote,
    weigh: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<u64>,
) -> Answered {
    let decode = |blob: &Blob| match sh.serializer.loads(py, &blob.payload) {
        Ok(v) => Some(v),
        Err(e) => {
            warn(
                py,
                format!(
                    "coopcache: a value of cache {:?} in the shared tier could not be deserialized ({}); \
                     computing it here",
                    sh.name, e
                ),
            );
            None
        }
    };
    match remote {
        Remote::Value(blob) => match decode(&blob) {
            Some(v) => {
                let weight = match weigh(&v) {
                    Ok(w) => w,
                    Err(e) => return Answered::Done(Err(fail_local(py, lease, e))),
                };
                let tags: Vec<&str> = blob.tags.iter().map(String::as_str).collect();
                lease.store_with(PyValue::new(v.clone().unbind()), weight, &tags);
                Answered::Done(Ok(v.unbind()))
            }
            None => Answered::Compute(lease, None),
        },
        Remote::NoCache(blob) => match decode(&blob) {
            Some(v) => {
                lease.nocache(PyValue::new(v.clone().unbind()));
                Answered::Done(Ok(v.unbind()))
            }
            None => Answered::Compute(lease, None),
        },
        Remote::Failed(e) => Answered::Done(Err(fail_local(py, lease, remote_error(py, &e)))),
        Remote::Compute(r) => Answered::Compute(lease, Some(r)),
        _ => Answered::Compute(lease, None),
    }
}

/// Hands an exception to the local waiters (the same object) and returns it.
fn fail_local(py: Python<'_>, lease: CoreLease, e: PyErr) -> PyErr {
    lease.fail(CoreError::Computation(Arc::new(PyErrBox::new(py, e.clone_ref(py)))));
    e
}

/// What the leader computed, to tell the other processes.
pub(crate) enum Outcome<'a, 'py> {
    Store(&'a Bound<'py, PyAny>),
    NoCache(&'a Bound<'py, PyAny>),
    Failed(&'a PyErr),
}

/// Publishes a finished computation through the remote lease: a value is written to Redis
/// (with its tags), a nocache value or an exception only reaches the waiting processes. An
/// exception that is not an `Exception` (KeyboardInterrupt...) releases the lease instead, so
/// another process takes over. A value that cannot be serialized is kept locally; the others
/// are told of the serialization error so they do not wait for the lease to expire.
pub(crate) fn publish(
    py: Python<'_>,
    sh: &Shared,
    remote: RemoteLease,
    outcome: Outcome<'_, '_>,
    tags: &[String],
) -> Option<Pending<bool>> {
    let blob =
        |v: &Bound<'_, PyAny>| sh.serializer.dumps(v).map(|payload| Blob { tags: tags.to_vec(), payload });
    let serialize_failed = |e: PyErr| {
        let re = remote_error_of(py, &e);
        warn(
            py,
            format!(
                "coopcache: a computed value could not be serialized for the shared tier ({re}); \
                 it is kept in this process only"
            ),
        );
        remote.fail(&re)
    };
    Some(match outcome {
        Outcome::Store(v) => match blob(v) {
            Ok(b) => remote.store(&b),
            Err(e) => serialize_failed(e),
        },
        Outcome::NoCache(v) => match blob(v) {
            Ok(b) => remote.nocache(&b),
            Err(e) => serialize_failed(e),
        },
        Outcome::Failed(e) => {
            if !e.is_instance_of::<PyException>(py) {
                drop(remote); // released: another process computes at once
                return None;
            }
            remote.fail(&remote_error_of(py, e))
        }
    })
}

/// Waits (bounded, without the GIL) for Redis to confirm a publication.
pub(crate) fn confirm(py: Python<'_>, pending: Option<Pending<bool>>) -> PyResult<()> {
    if let Some(p) = pending {
        crate::flight::wait_sync(py, &p, Some(Instant::now() + PUBLISH_WAIT))?;
    }
    Ok(())
}

/// One step of the shared tier, for the asyncio layer: `on_ready(cb)` calls `cb(0, None)` once
/// the step is done (on whichever thread finishes it); `try_get()`, `cancel()` as the other
/// waiters. The answer itself stays in Rust (see `Lease.answer_remote`).
#[pyclass(frozen, module = "coopcache._native")]
pub(crate) struct RemoteWaiter {
    pending: Mutex<Option<Pending<Remote>>>,
    pub(crate) result: Arc<Mutex<Option<Remote>>>,
}

impl RemoteWaiter {
    pub(crate) fn new(p: Pending<Remote>) -> Self {
        RemoteWaiter { pending: Mutex::new(Some(p)), result: Arc::new(Mutex::new(None)) }
    }

    pub(crate) fn take(&self) -> Option<Remote> {
        if let Some(r) = self.result.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Some(r);
        }
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|p| p.try_get())
    }
}

#[pymethods]
impl RemoteWaiter {
    fn on_ready(&self, callback: Py<PyAny>) {
        let g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = g.as_ref() {
            let result = self.result.clone();
            p.on_ready(move |r| {
                *result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                crate::flight::call_back(callback, |py| (0, py.None()));
            });
        }
    }

    fn try_get(&self, py: Python<'_>) -> Option<(u8, Py<PyAny>)> {
        let g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let r = g.as_ref()?.try_get()?;
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        Some((0, py.None()))
    }

    fn cancel(&self) {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(p);
    }
}

fn py_bool(py: Python<'_>, b: bool) -> Py<PyAny> {
    pyo3::types::PyBool::new(py, b).to_owned().into_any().unbind()
}

/// A publication to the shared tier, for the asyncio layer to await (bounded).
#[pyclass(frozen, module = "coopcache._native")]
pub(crate) struct PublishWaiter {
    pending: Mutex<Option<Pending<bool>>>,
}

impl PublishWaiter {
    pub(crate) fn new(p: Pending<bool>) -> Self {
        PublishWaiter { pending: Mutex::new(Some(p)) }
    }
}

#[pymethods]
impl PublishWaiter {
    fn on_ready(&self, callback: Py<PyAny>) {
        let g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = g.as_ref() {
            p.on_ready(move |ok| crate::flight::call_back(callback, move |py| (0, py_bool(py, ok))));
        }
    }

    fn try_get(&self, py: Python<'_>) -> Option<(u8, Py<PyAny>)> {
        let g = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let ok = g.as_ref()?.try_get()?;
        Some((0, py_bool(py, ok)))
    }

    fn cancel(&self) {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(p);
    }
}
