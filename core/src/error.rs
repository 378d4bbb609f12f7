//! What a call can fail with. Errors are cheap to clone: one failed computation reaches the
//! leader and every waiter as the same shared error.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ConfigError;

/// The error of a failed computation, shared by everybody who waited for it.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What a fallible computation may fail with: anything that converts into a boxed error, as `?`
/// would convert it (a `std::error::Error`, `Box<dyn Error + Send + Sync>`, `anyhow::Error`, a
/// `String`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a call to a cache did not produce a value.
///
/// ```
/// use coopcache::{Cache, Error};
///
/// #[derive(Debug, PartialEq)]
/// struct NotFound(u32);
/// impl std::fmt::Display for NotFound {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "user {} not found", self.0)
///     }
/// }
/// impl std::error::Error for NotFound {}
///
/// let cache: Cache<u32, String> = Cache::builder().build().unwrap();
/// let e = cache.try_get_or_compute(7, || Err(NotFound(7))).unwrap_err();
/// assert!(matches!(e, Error::Computation(_)));
/// assert_eq!(e.downcast_ref::<NotFound>(), Some(&NotFound(7)));
/// assert_eq!(e.to_string(), "user 7 not found");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The computation returned an error; every waiter gets this same one.
    /// [`Error::downcast_ref`] recovers the original type.
    Computation(SharedError),
    /// The computation panicked; the text is the panic's message.
    Panicked(Arc<str>),
    /// This caller's own timeout passed; the computation goes on for the others.
    Timeout(Duration),
    /// The computation asked for its own key of its own cache (directly or through other
    /// calls), which would wait for itself forever.
    Recursion {
        /// The cache's name.
        cache: Arc<str>,
        /// The key, as text.
        key: String,
    },
    /// A blocking caller on the thread that runs an event loop asked a key that a task of that
    /// loop is computing (or one waiting for it): blocking the thread stops the loop, so the
    /// computation could never finish.
    BlocksExecutor {
        /// The cache's name.
        cache: Arc<str>,
        /// The key, as text.
        key: String,
    },
    /// No cache of that name was configured.
    UnknownCache {
        /// The name asked for.
        name: String,
        /// The names that are configured.
        configured: Vec<String>,
    },
    /// A setting was invalid.
    Config(ConfigError),
    /// The computation failed in another process (shared mode): the original error's type
    /// name and message.
    Remote {
        /// The original error's type name.
        type_name: String,
        /// Its message.
        message: String,
    },
}

impl Error {
    /// The error's stable code, as Node's `err.code` gives it (`ERR_COOPCACHE_TIMEOUT`, ...).
    ///
    /// ```
    /// use coopcache::Error;
    /// assert_eq!(Error::Timeout(std::time::Duration::from_secs(1)).code(), "ERR_COOPCACHE_TIMEOUT");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::Timeout(_) => "ERR_COOPCACHE_TIMEOUT",
            Error::Recursion { .. } | Error::BlocksExecutor { .. } => "ERR_COOPCACHE_RECURSION",
            Error::UnknownCache { .. } => "ERR_COOPCACHE_UNKNOWN_CACHE",
            Error::Config(_) => "ERR_COOPCACHE_INVALID_CONFIG",
            Error::Remote { .. } => "ERR_COOPCACHE_REMOTE",
            _ => "ERR_COOPCACHE_COMPUTATION",
        }
    }

    /// The computation's own error, if it was of type `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Computation(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// A computation's own error, shared by every waiter. A `coopcache` error coming back from
    /// a nested call (`?` on an inner `try_get_or_compute`) is kept as it is, not wrapped again.
    pub fn computation(e: impl Into<BoxError>) -> Error {
        match e.into().downcast::<Error>() {
            Ok(inner) => *inner,
            Err(other) => Error::Computation(Arc::from(other)),
        }
    }

    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Error {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        Error::Panicked(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Computation(e) => write!(f, "{e}"),
            Error::Panicked(msg) => write!(f, "the computation panicked: {msg}"),
            Error::Timeout(d) => write!(
                f,
                "timed out after {:.3} s waiting for the value (the computation goes on for the others)",
                d.as_secs_f64()
            ),
            Error::Recursion { cache, key } => write!(
                f,
                "the computation of key {key} in cache {cache:?} asked for that same key, \
                 which would wait for itself forever; compute the inner value without the cache \
                 or give it a different key"
            ),
            Error::BlocksExecutor { cache, key } => write!(
                f,
                "key {key} in cache {cache:?} is being computed by a task of the event loop this \
                 thread runs; a blocking call waiting for it here stops that loop, so it would \
                 wait forever: await the async form instead, or make the blocking call from \
                 another thread"
            ),
            Error::UnknownCache { name, configured } => {
                write!(f, "no cache named {name:?} is configured; configure it first")?;
                if configured.is_empty() {
                    write!(f, " (no caches are configured yet)")
                } else {
                    write!(f, " (configured: {})", configured.join(", "))
                }
            }
            Error::Config(e) => write!(f, "{e}"),
            Error::Remote { type_name, message } => {
                write!(f, "{type_name}: {message} (computed in another process)")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Computation(e) => Some(&**e),
            Error::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
