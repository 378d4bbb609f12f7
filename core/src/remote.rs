//! A cache's use of its shared tier: the leader asks Redis before computing, and publishes what
//! it computed; invalidations go both ways. Only caches keyed by [`Key`] have a shared tier (the
//! key space all languages share).

use std::any::Any;
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cache::{Cache, CacheBuilder, Computed};
use crate::error::Error;
use crate::flight::Lease;
use crate::keys::Key;
use crate::shared::{
    Blob, Invalidation, Remote, RemoteError, RemoteLease, SharedMode, SharedSettings, SharedTier,
};
use crate::store::Inner;
use crate::wait::Pending;

/// Turns values into bytes for the shared tier and back (Rust: serde; see [`JsonCodec`]).
pub trait Codec<V>: Send + Sync + 'static {
    /// The value's bytes.
    fn encode(&self, value: &V) -> Result<Vec<u8>, String>;
    /// The value back from its bytes.
    fn decode(&self, bytes: &[u8]) -> Result<V, String>;
}

/// JSON through serde: the format Python (`serializer="json"`) and Node share with Rust.
pub struct JsonCodec;

impl<V: serde::Serialize + serde::de::DeserializeOwned> Codec<V> for JsonCodec {
    fn encode(&self, value: &V) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: &[u8]) -> Result<V, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

pub(crate) type SharedCodec<V> = Arc<dyn Codec<V>>;

impl<V: Clone + Send + Sync + 'static> CacheBuilder<Key, V> {
    /// Adds the shared tier on Redis: values are computed once across every process that uses
    /// the same Redis and cache name, and read by processes that start later.
    pub fn shared(mut self, settings: SharedSettings, codec: impl Codec<V>) -> Self {
        self.shared = Some((SharedMode::Redis(settings), Some(Arc::new(codec))));
        self
    }

    /// Adds a shared tier in this process's memory: every cache of this name in the process
    /// computes a key once for all (values cross as bytes, as with Redis). It is what Node's
    /// worker_threads use; in Rust, sharing one [`Cache`] is simpler.
    pub fn shared_in_process(mut self, codec: impl Codec<V>) -> Self {
        self.shared = Some((SharedMode::Process, Some(Arc::new(codec))));
        self
    }
}

/// Connects a freshly built cache to its shared tier: remote invalidations reach the local tier.
pub(crate) fn attach<K, V>(
    inner: &Arc<Inner<K, V>>,
    mode: SharedMode,
    codec: Option<SharedCodec<V>>,
) -> Result<(), crate::ConfigError>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let (settings, clock) = (inner.settings(), inner.clock.clone());
    let tier = SharedTier::start(&inner.name, mode, &settings, clock, inner.listener.clone())?;
    let weak: Weak<Inner<K, V>> = Arc::downgrade(inner);
    tier.on_invalidation(move |inv| {
        let Some(inner) = weak.upgrade() else { return };
        match inv {
            Invalidation::Key(bytes) => {
                if let Ok(key) = Key::from_bytes(bytes) {
                    if let Some(k) = (&key as &dyn Any).downcast_ref::<K>() {
                        inner.invalidate(k);
                    }
                }
            }
            Invalidation::Tag(tag) => {
                inner.invalidate_tag(tag);
            }
            Invalidation::All => inner.clear(),
        }
    });
    let _ = inner.shared.set(tier);
    if let Some(c) = codec {
        let _ = inner.codec.set(c);
    }
    Ok(())
}

/// What the leader does after asking the shared tier.
pub(crate) enum Ask<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Answered without computing here.
    Done(Result<V, Error>),
    /// Compute here (holding the remote lease, if the shared tier gave one).
    Compute(Lease<K, V>, Option<RemoteLease>),
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The shared tier, if the cache has one.
    pub fn shared(&self) -> Option<&SharedTier> {
        self.inner.shared.get()
    }

    /// The question to the shared tier, if this cache has one and can decode its values.
    pub(crate) fn ask_remote(&self, key: &K) -> Option<Pending<Remote>> {
        let tier = self.inner.shared.get()?;
        self.inner.codec.get()?;
        let key = (key as &dyn Any).downcast_ref::<Key>()?;
        Some(tier.fetch(key))
    }

    /// Acts on the shared tier's answer.
    pub(crate) fn answered(&self, lease: Lease<K, V>, remote: Remote) -> Ask<K, V> {
        let codec = self.inner.codec.get().expect("asked only with a codec");
        let decode = |b: &Blob| codec.decode(&b.payload).ok();
        match remote {
            Remote::Value(blob) => match decode(&blob) {
                Some(v) => {
                    let tags: Vec<&str> = blob.tags.iter().map(String::as_str).collect();
                    Ask::Done(Ok(lease.store_with(v, 0, &tags)))
                }
                None => Ask::Compute(lease, None),
            },
            Remote::NoCache(blob) => match decode(&blob) {
                Some(v) => Ask::Done(Ok(lease.nocache(v))),
                None => Ask::Compute(lease, None),
            },
            Remote::Failed(RemoteError { type_name, message }) => {
                let e = Error::Remote { type_name, message };
                lease.fail(e.clone());
                Ask::Done(Err(e))
            }
            Remote::Compute(r) => Ask::Compute(lease, Some(r)),
            Remote::Unavailable => Ask::Compute(lease, None),
        }
    }

    /// Tells the other processes what this one computed (and stores it in Redis unless it is
    /// `nocache`); returns the pending write, bounded by the tier's own timeout.
    pub(crate) fn publish(
        &self,
        remote: &RemoteLease,
        outcome: Result<&Computed<V>, (&str, String)>,
        tags: &[String],
    ) -> Pending<bool> {
        let codec = self.inner.codec.get().expect("a remote lease implies a codec");
        let blob = |v: &V| codec.encode(v).map(|payload| Blob { tags: tags.to_vec(), payload });
        let fail = |type_name: &str, message: String| {
            remote.fail(&RemoteError { type_name: type_name.to_owned(), message })
        };
        match outcome {
            Ok(Computed::Store(v)) => match blob(v) {
                Ok(b) => remote.store(&b),
                Err(e) => fail("coopcache::SerializeError", e),
            },
            Ok(Computed::NoCache(v)) => match blob(v) {
                Ok(b) => remote.nocache(&b),
                Err(e) => fail("coopcache::SerializeError", e),
            },
            Err((type_name, message)) => fail(type_name, message),
        }
    }

    /// Publishes a finished computation; the leader then waits (bounded by [`PUBLISH_WAIT`]) for
    /// Redis to confirm, so a process that exits right after computing does not lose the write.
    pub(crate) fn publish_result<E: std::fmt::Display>(
        &self,
        remote: &RemoteLease,
        result: &std::thread::Result<Result<Computed<V>, E>>,
        tags: &[String],
    ) -> Pending<bool> {
        self.publish(remote, outcome_of::<V, E>(result), tags)
    }

    /// Also removes the key in Redis and in every other process's local tier.
    pub(crate) fn invalidate_remote(&self, key: &K) {
        if let (Some(t), Some(k)) = (self.inner.shared.get(), (key as &dyn Any).downcast_ref::<Key>()) {
            drop(t.invalidate(k));
        }
    }

    pub(crate) fn invalidate_tag_remote(&self, tag: &str) {
        if let Some(t) = self.inner.shared.get() {
            drop(t.invalidate_tag(tag));
        }
    }

    pub(crate) fn clear_remote(&self) {
        if let Some(t) = self.inner.shared.get() {
            drop(t.clear());
        }
    }
}

/// The longest a leader waits for Redis to confirm its write (each Redis call has its own,
/// shorter timeout; this only bounds the whole script).
pub(crate) const PUBLISH_WAIT: Duration = Duration::from_secs(5);

fn outcome_of<V, E: std::fmt::Display>(
    result: &std::thread::Result<Result<Computed<V>, E>>,
) -> Result<&Computed<V>, (&'static str, String)> {
    match result {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err((std::any::type_name::<E>(), e.to_string())),
        Err(panic) => Err(("panic", Error::from_panic(&**panic).to_string())),
    }
}
