//! Shared mode (Redis): the binding's part is small. It turns Python values into bytes and
//! back with the cache's serializer (pickle or json, which the core keeps) when the core's
//! call driver asks, and maps remote errors to `coopcache.RemoteError`. The protocol (asking
//! the tier, leases, renewal, publishing, pub/sub, signing, fallbacks, which value a computing
//! process returns) is all in the core.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::{CoreCache, LOGGER, PyValue};

/// How a cache's values are turned into bytes for Redis.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Serializer {
    Pickle,
    Json,
}

impl Serializer {
    /// The serializer of a name the core accepted (`"pickle"` or `"json"`).
    fn of(name: &str) -> Serializer {
        if name == "json" { Serializer::Json } else { Serializer::Pickle }
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

/// How the values of one cache cross the shared tier: what the call driver's `Decode` and
/// `Encode` steps run.
pub(crate) struct Codec {
    serializer: Serializer,
    name: String,
}

impl Codec {
    /// The codec of the serializer the core keeps for the cache's shared tier.
    pub(crate) fn of(cache: &CoreCache) -> Codec {
        let serializer =
            cache.shared().and_then(|t| t.serializer()).map_or(Serializer::Pickle, Serializer::of);
        Codec { serializer, name: cache.name().to_owned() }
    }

    /// A value from the shared tier's bytes, weighed (or why there is none: it is then
    /// computed here).
    pub(crate) fn decode(
        &self,
        py: Python<'_>,
        bytes: &[u8],
        weigh: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<u64>,
    ) -> Result<(PyValue, u64), String> {
        let v = self.serializer.loads(py, bytes).map_err(|e| {
            let why = describe(py, &e);
            warn(
                py,
                format!(
                    "coopcache: a value of cache {:?} in the shared tier could not be deserialized ({why}); \
                     computing it here",
                    self.name
                ),
            );
            why
        })?;
        let weight = weigh(&v).map_err(|e| describe(py, &e))?;
        Ok((PyValue(v.unbind()), weight))
    }

    /// A computed value's bytes for the shared tier (or why there are none: the other
    /// processes are told, and this process keeps its value).
    /// The value's bytes, or the serializer's exception as the other processes are told of it
    /// (its type name and message).
    pub(crate) fn encode(&self, value: &Bound<'_, PyAny>) -> Result<Vec<u8>, (String, String)> {
        let py = value.py();
        self.serializer.dumps(value).map_err(|e| {
            let why = describe(py, &e);
            warn(
                py,
                format!(
                    "coopcache: a computed value could not be serialized for the shared tier ({why}); \
                     it is kept in this process only"
                ),
            );
            type_and_message(py, &e)
        })
    }
}

/// `"TypeName: message"` of an exception.
fn describe(py: Python<'_>, e: &PyErr) -> String {
    let (type_name, message) = type_and_message(py, e);
    format!("{type_name}: {message}")
}

/// Logs a warning on the `coopcache` logger.
fn warn(py: Python<'_>, msg: String) {
    if let Some(logger) = LOGGER.get(py) {
        if let Err(e) = logger.call_method1(py, "warning", (msg,)) {
            e.write_unraisable(py, None);
        }
    }
}

/// The type name and message other processes are told of an exception raised here.
pub(crate) fn type_and_message(py: Python<'_>, e: &PyErr) -> (String, String) {
    let value = e.value(py);
    // A RemoteError relayed again keeps its original type name and message.
    if let (Ok(t), Ok(m)) = (value.getattr("type_name"), value.getattr("message")) {
        if let (Ok(t), Ok(m)) = (t.extract::<String>(), m.extract::<String>()) {
            if value.get_type().name().is_ok_and(|n| n == "RemoteError") {
                return (t, m);
            }
        }
    }
    let type_name = e.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".into());
    let message = value.str().map(|s| s.to_string()).unwrap_or_default();
    (type_name, message)
}
