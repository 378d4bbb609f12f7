//! A cache's use of its shared tier: the leader asks it before computing, and publishes what it
//! computed; invalidations go both ways; local hits keep shared entries alive. Only caches keyed
//! by [`Key`] have a shared tier (the key space all languages share).

use std::any::Any;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Weak};

use crate::error::Error;
use crate::flight::FlightCache;
use crate::keys::Key;
use crate::shared::{Invalidation, Remote as Answer, SharedMode, SharedTier};
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
/// tier, another process's refresh makes an older local copy due, and its first hit on an entry in each tenth of the duration refreshes the shared TTL.
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
    #[cfg(feature = "redis")]
    if matches!(mode, SharedMode::Redis(_)) {
        local.store.record_written();
    }
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
            #[cfg(feature = "redis")]
            Invalidation::Refreshed { key: bytes, written } => {
                if let Ok(key) = Key::from_bytes(bytes) {
                    if let Some(k) = (&key as &dyn Any).downcast_ref::<K>() {
                        local.store.refreshed_elsewhere(local.store.hash(k), k, written);
                    }
                }
            }
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

impl<V: Clone + Send + Sync + 'static> Remote<V> {
    /// The shared tier.
    pub(crate) fn tier(&self) -> &SharedTier {
        &self.tier
    }

    /// The question to the shared tier about a key the local tier missed, if its keys are
    /// [`Key`]s (the key space every language shares).
    pub(crate) fn ask<K: 'static>(&self, key: &K) -> Option<Pending<Answer>> {
        let key = (key as &dyn Any).downcast_ref::<Key>()?;
        Some(self.tier.fetch(key))
    }

    /// The question about a key whose value is due for refresh (see [`SharedTier::refetch`]).
    pub(crate) fn ask_refresh<K: 'static>(
        &self,
        key: &K,
        within: std::time::Duration,
    ) -> Option<Pending<Answer>> {
        self.tier.refetch((key as &dyn Any).downcast_ref::<Key>()?, within)
    }

    /// Whether the Rust API can turn values into bytes for this tier (bindings serialize
    /// in their own language and give no codec).
    pub(crate) fn has_codec(&self) -> bool {
        self.codec.is_some()
    }

    /// A value back from the shared tier's bytes, with the codec (a panicking codec is a value
    /// that cannot be decoded).
    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<V, String> {
        let codec = self.codec.as_ref().ok_or("no codec")?;
        catch_unwind(AssertUnwindSafe(|| codec.decode(bytes)))
            .unwrap_or_else(|p| Err(Error::from_panic(&*p).to_string()))
    }

    /// A value's bytes for the shared tier, with the codec.
    pub(crate) fn encode(&self, value: &V) -> Result<Vec<u8>, String> {
        let codec = self.codec.as_ref().ok_or("no codec")?;
        catch_unwind(AssertUnwindSafe(|| codec.encode(value)))
            .unwrap_or_else(|p| Err(Error::from_panic(&*p).to_string()))
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
