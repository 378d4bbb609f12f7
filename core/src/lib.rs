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
//! let opts = CallOptions::new().timeout(Duration::from_secs(2)).tags(["team:1"]);
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
//! ## Layers
//!
//! Each module imports only from the layers above it in this list, so a rule lives in one
//! place and the tree says where:
//!
//! 1. **Leaves**: `clock` (time), `config` (settings and their checks), `error`, `keys` (the
//!    canonical key encoding), `stats` (counters, events), `tally` (hit counts kept per
//!    thread), `wait` (the one-shot [`Pending`]),
//!    `weigh` (default entry weights), `sync` (locks and atomics, swapped for the model
//!    checker's in tests).
//!    `options` (the bindings' options, checked once for Python and Node: names in each
//!    language's spelling, values with their types in messages) sits on `config`.
//! 2. **`expiry`**: the process-wide sweeper and the thread that tells listeners what it
//!    reclaimed.
//! 3. **`store`**: sharded tables, byte accounting, eviction, the expiry wheel and tags. It
//!    knows nothing of flights or Redis; the layer above keeps its per-shard state in the
//!    shard, under the same lock, and may hook an entry's first hit in each tenth of the
//!    duration.
//! 4. **`flight`** and **`concurrency`**: the flights table (in the store's shards), the
//!    commit of a value with its flight's end under one shard lock, detaching on
//!    invalidation, recursion and wait-cycle detection (`flight::context`), and computation
//!    slots.
//! 5. **`shared`** (feature `shared`; Redis with `redis`): the shared tier's protocol and
//!    backends, moving bytes only.
//! 6. **`remote`**: a cache's use of its shared tier: codecs, asking before computing,
//!    publishing after.
//! 7. **`cache`**: the typed [`Cache`], its builder, the call driver ([`Call`] and [`Lead`]:
//!    every rule of a call, as steps a caller drives: the Rust forms and both bindings run on
//!    it; a blocking thread through [`Call::block`] and a [`Host`], a host that never blocks
//!    through [`Jobs`]) and the `get_or_compute` family built on it.
//! 8. **`registry`**: named caches for the bindings.
//!
//! ## Features
//!
//! | feature  | adds | needs | minimum Rust |
//! |----------|------|-------|--------------|
//! | (none)   | everything above the shared tier | | 1.85 |
//! | `shared` | the shared tier's types and the in-process tier ([`CacheBuilder::shared_in_process`]) | nothing more | 1.85 |
//! | `redis`  | the shared tier on Redis | `shared`, the `redis` crate, tokio | 1.88 (the `redis` crate's) |
//! | `tls`    | `rediss://` | `redis`, rustls | 1.88 |
//! | `json`   | `JsonCodec`, the values Python, Node and Rust share | `shared`, serde | 1.85 |
//!
//! `tests/test_msrv.py` checks this table against what the dependencies of each feature
//! declare; clippy checks the crate's own code against 1.85.
#![warn(missing_docs)]

mod cache;
mod clock;
mod concurrency;
mod config;
mod error;
mod expiry;
mod flight;
mod keys;
pub mod options;
mod registry;
#[cfg(feature = "shared")]
mod remote;
#[cfg(feature = "shared")]
pub mod shared;
mod stats;
mod store;
mod sync;
mod tally;
mod wait;
mod weigh;

/// Call in the child of a `fork()` (and only there), before it uses any cache: only the forking
/// thread exists in the child, so the computations other threads were running, their waits
/// and their computation slots are forgotten (a caller of such a key computes it instead of
/// waiting forever), and the background sweeper and its listener thread are started again
/// (idle entries are reclaimed there too). Stored values are kept. Python's binding calls it
/// from `os.register_at_fork`. A shared tier's connections are not carried over.
pub fn after_fork_in_child() {
    flight::after_fork();
}

pub use cache::{
    Action, Batch, BatchStep, ByWeigh, ByWeigher, Cache, CacheBuilder, Call, CallOptions, Compute, Do,
    Entered, GetOrCompute, Host, Jobs, Lead, LeadStep, Outcome, RefreshHit, Step,
};
pub use clock::Clock;
pub use concurrency::Permit;
pub use config::{ConfigError, MemoryLimit, Settings, WhenFull, total_memory};
pub use error::{BoxError, Error, SharedError};
pub use flight::{
    Begin, Caller, Completion, Computed, Computing, ExecutorId, FlightId, Frame, Lease, OnExecutor,
    RunsExecutor, Waiter, nocache,
};
pub use keys::{IntoKeyPart, Key, KeyError, KeyValue, KeyWriter, function_id};
pub use registry::Registry;
#[cfg(feature = "shared")]
pub use remote::Codec;
#[cfg(feature = "json")]
pub use remote::JsonCodec;
pub use stats::{Event, EvictionReason, Field, Level, Listener, Stats};
pub use store::ENTRY_OVERHEAD;
pub use wait::{Pending, Ready};
pub use weigh::Weigh;

/// The README's Rust examples, compiled and run as doc tests so they stay true (with the
/// `shared` feature, which its shared-mode example needs; `make test` turns it on).
#[cfg(all(doctest, feature = "redis", feature = "json"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
