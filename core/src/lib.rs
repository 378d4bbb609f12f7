//! # coopcache
//!
//! A cooperative cache for values that are expensive to compute: **each key's value is
//! computed once**, even when thousands of callers ask for the same cold key at the same
//! moment, across threads and async tasks. Entries are weighed in bytes against a limit, expire
//! after being idle for `cache_duration`, and can be tagged and invalidated.
//!
//! This crate holds every rule; the Python and Node packages are thin layers over it, driving
//! the same flight protocol ([`Cache::begin`] → hit | [`Lease`] | [`Waiter`]).
//!
//! ```
//! use coopcache::{Cache, CallOptions, WhenFull};
//! use std::time::Duration;
//!
//! let cache: Cache<String, String> = Cache::builder()
//!     .name("users")
//!     .memory_limit(50 * 1024 * 1024)
//!     .cache_duration(Duration::from_secs(10))
//!     .when_full(WhenFull::Evict)
//!     .weigher(|k: &String, v: &String| (k.len() + v.len()) as u64)
//!     .build()?;
//!
//! let v = cache.get_or_compute("user:42".into(), || "Ada".to_string());
//! assert_eq!(v, "Ada");
//! // A hit: the closure does not run.
//! assert_eq!(cache.get_or_compute("user:42".into(), || unreachable!()), "Ada");
//!
//! // Fallible computations: the error reaches every waiter and is not stored.
//! let r = cache.try_get_or_compute("user:7".into(), || {
//!     Err::<String, _>(std::io::Error::other("db down"))
//! });
//! assert!(r.is_err());
//!
//! // Options: a timeout for this caller, tags for invalidation.
//! let opts = CallOptions { timeout: Some(Duration::from_secs(2)), tags: vec!["team:1".into()] };
//! cache.compute("user:9".into(), &opts, || Ok::<_, std::io::Error>("Grace".to_string().into()))?;
//! assert_eq!(cache.invalidate_tag("team:1"), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Async (any runtime; tokio here):
//!
//! ```
//! # let rt = tokio::runtime::Runtime::new().unwrap();
//! # rt.block_on(async {
//! use coopcache::Cache;
//!
//! let cache: Cache<u32, u64> = Cache::builder().build().unwrap();
//! let v = cache.get_or_compute_async(7, async { 7 * 6 }).await;
//! assert_eq!(v, 42);
//! # });
//! ```
#![warn(missing_docs)]

mod cache;
mod clock;
mod concurrency;
mod config;
mod error;
mod expiry;
mod flight;
mod keys;
mod registry;
#[cfg(feature = "shared")]
mod remote;
#[cfg(feature = "shared")]
pub mod shared;
mod stats;
mod store;
mod wait;

pub use cache::{Cache, CacheBuilder, CallOptions, Computed, nocache};
pub use clock::Clock;
pub use concurrency::Permit;
pub use config::{ConfigError, MemoryLimit, Settings, WhenFull, total_memory};
pub use error::{Error, SharedError};
pub use flight::{Begin, Completion, Computing, FlightId, Lease, Waiter};
pub use keys::{IntoKeyPart, Key, KeyError, KeyValue, KeyWriter};
pub use registry::Registry;
#[cfg(feature = "shared")]
pub use remote::{Codec, JsonCodec};
pub use stats::{Event, EvictionReason, Listener, Stats};
pub use store::ENTRY_OVERHEAD;
pub use wait::Pending;

/// The README's Rust examples, compiled and run as doc tests so they stay true (with the
/// `shared` feature, which its shared-mode example needs; `make test` turns it on).
#[cfg(all(doctest, feature = "shared"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
