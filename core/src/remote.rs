//! A cache's use of its shared tier: the leader asks it before computing, and publishes what it
//! computed; invalidations go both ways; local hits keep shared entries alive. Only caches keyed
//! by [`Key`] have a shared tier (the key space all languages share).

use std::any::Any;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::error::Error;
use crate::flight::{Computed, FlightCache, Lease, Outcome};
use crate::keys::Key;
use crate::shared::{Blob, Invalidation, Remote as Answer, RemoteError, RemoteLease, SharedMode, SharedTier};
use crate::wait::Pending;

/// Turns values into bytes for the shared tier and back (Rust: serde; see `JsonCodec`).
///
/// ```
/// use coopcache::Codec;
///
/// /// Values that are already bytes.
/// struct Raw;
/// impl Codec<Vec<u8>> for Raw {
///     fn encode(&self, value: &Vec<u8>) -> Result<Vec<u8>, String> {
///         Ok(value.clone())
///     }
///     fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
///         Ok(bytes.to_vec())
///     }
/// }
/// assert_eq!(Raw.decode(&Raw.encode(&vec![1, 2]).unwrap()).unwrap(), vec![1, 2]);
/// ```
pub trait Codec<V>: Send + Sync + 'static {
    /// The value's bytes.
    fn encode(&self, value: &V) -> Result<Vec<u8>, String>;
    /// The value back from its bytes.
    fn decode(&self, bytes: &[u8]) -> Result<V, String>;
}

/// JSON through serde: the format Python (`serializer="json"`) and Node share with Rust.
#[cfg(feature = "json")]
pub struct JsonCodec;

#[cfg(feature = "json")]
impl<V: serde::Serialize + serde::de::DeserializeOwned> Codec<V> for JsonCodec {
    fn encode(&self, value: &V) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: &[u8]) -> Result<V, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

pub(crate) type SharedCodec<V> = Arc<dyn Codec<V>>;

/// A cache's shared tier and, for the Rust API, how its values become bytes (bindings
/// serialize in their own language and have no codec here).
pub(crate) struct Remote<V> {
    tier: SharedTier,
    codec: Option<SharedCodec<V>>,
}

/// Connects a freshly built local tier to its shared tier: remote invalidations reach the local
/// tier, and its first hit on an entry in each tenth of the duration refreshes the shared TTL.
pub(crate) fn attach<K, V>(
    local: &Arc<FlightCache<K, V>>,
    mode: SharedMode,
    codec: Option<SharedCodec<V>>,
) -> Result<Arc<Remote<V>>, crate::config::ConfigError>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let (settings, clock) = (local.settings(), local.store.clock().clone());
    let tier = SharedTier::start(&local.store.name, mode, &settings, clock, local.store.listener())?;
    let weak: Weak<FlightCache<K, V>> = Arc::downgrade(local);
    tier.on_invalidation(move |inv| {
        let Some(local) = weak.upgrade() else { return };
        match inv {
            Invalidation::Key(bytes) => {
                if let Ok(key) = Key::from_bytes(bytes) {
                    if let Some(k) = (&key as &dyn Any).downcast_ref::<K>() {
                        local.invalidate(k);
                    }
                }
            }
            Invalidation::Tag(tag) => {
                local.invalidate_tag(tag);
            }
            Invalidation::All => local.clear(),
        }
    });
    let touch = tier.clone();
    local.store.set_period_hook(Box::new(move |k: &K| {
        if let Some(k) = (k as &dyn Any).downcast_ref::<Key>() {
            touch.touch(k);
        }
    }));
    Ok(Arc::new(Remote { tier, codec }))
}

/// What the leader does after asking the shared tier.
pub(crate) enum Ask<K, V> {
    /// Answered without computing here.
    Done(Result<V, Error>),
    /// Compute here (holding the remote lease, if the shared tier gave one).
    Compute(Lease<K, V>, Option<RemoteLease>),
}

impl<V: Clone + Send + Sync + 'static> Remote<V> {
    /// The shared tier.
    pub(crate) fn tier(&self) -> &SharedTier {
        &self.tier
    }

    /// The question to the shared tier, if the cache can decode its values (the Rust API's
    /// caches have a codec; bindings drive the tier themselves) and its keys are [`Key`]s.
    pub(crate) fn ask<K: 'static>(&self, key: &K) -> Option<Pending<Answer>> {
        self.codec.as_ref()?;
        let key = (key as &dyn Any).downcast_ref::<Key>()?;
        Some(self.tier.fetch(key))
    }

    /// Acts on the shared tier's answer. A value that cannot be decoded is computed here; with
    /// `infallible`, so is a value another process failed to compute.
    pub(crate) fn answered<K>(&self, lease: Lease<K, V>, answer: Answer, infallible: bool) -> Ask<K, V>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        let codec = self.codec.as_ref().expect("asked only with a codec");
        let decode = |b: &Blob| match catch_unwind(AssertUnwindSafe(|| codec.decode(&b.payload))) {
            Ok(Ok(v)) => Some(v),
            Ok(Err(_)) | Err(_) => None,
        };
        match answer {
            Answer::Value(blob) => match decode(&blob) {
                Some(v) => {
                    let tags: Vec<&str> = blob.tags.iter().map(String::as_str).collect();
                    Ask::Done(Ok(lease.store_with(v, 0, &tags)))
                }
                None => Ask::Compute(lease, None),
            },
            Answer::NoCache(blob) => match decode(&blob) {
                Some(v) => Ask::Done(Ok(lease.nocache(v))),
                None => Ask::Compute(lease, None),
            },
            Answer::Failed(_) if infallible => Ask::Compute(lease, None),
            Answer::Failed(RemoteError { type_name, message }) => {
                let e = Error::Remote { type_name, message };
                lease.fail(e.clone());
                Ask::Done(Err(e))
            }
            Answer::Compute(r) => Ask::Compute(lease, Some(r)),
            _ => Ask::Compute(lease, None),
        }
    }

    /// Tells the other processes what this one computed (and stores it in the shared tier
    /// unless it is `nocache`); an error goes as `type_name` (the computation's error type) and
    /// its message. Returns the pending write, bounded by the tier's own timeout: the leader
    /// waits for it (at most [`PUBLISH_WAIT`]), so a process that exits right after computing
    /// does not lose the write.
    pub(crate) fn publish(
        &self,
        remote: &RemoteLease,
        result: &Outcome<V>,
        tags: &[String],
        type_name: &str,
    ) -> Pending<bool> {
        let codec = self.codec.as_ref().expect("a remote lease implies a codec");
        let blob = |v: &V| match catch_unwind(AssertUnwindSafe(|| codec.encode(v))) {
            Ok(Ok(payload)) => Ok(Blob { tags: tags.to_vec(), payload }),
            Ok(Err(e)) => Err(e),
            Err(panic) => Err(Error::from_panic(&*panic).to_string()),
        };
        let fail = |type_name: &str, message: String| {
            remote.fail(&RemoteError { type_name: type_name.to_owned(), message })
        };
        match result {
            Ok(Ok(Computed::Store(v))) => match blob(v) {
                Ok(b) => remote.store(&b),
                Err(e) => fail("coopcache::SerializeError", e),
            },
            Ok(Ok(Computed::NoCache(v))) => match blob(v) {
                Ok(b) => remote.nocache(&b),
                Err(e) => fail("coopcache::SerializeError", e),
            },
            // An error that came from another process keeps its original type and message.
            Ok(Err(Error::Remote { type_name, message })) => fail(type_name, message.clone()),
            Ok(Err(e)) => fail(type_name, e.to_string()),
            Err(panic) => fail("panic", Error::from_panic(&**panic).to_string()),
        }
    }

    /// Removes the key in the shared tier and in every other process's local tier.
    pub(crate) fn invalidate<K: 'static>(&self, key: &K) {
        if let Some(k) = (key as &dyn Any).downcast_ref::<Key>() {
            drop(self.tier.invalidate(k));
        }
    }

    pub(crate) fn invalidate_tag(&self, tag: &str) {
        drop(self.tier.invalidate_tag(tag));
    }

    pub(crate) fn clear(&self) {
        drop(self.tier.clear());
    }
}

/// The longest a leader waits for the shared tier to confirm its write (each Redis call has its
/// own, shorter timeout; this only bounds the whole script).
pub(crate) const PUBLISH_WAIT: Duration = Duration::from_secs(5);
