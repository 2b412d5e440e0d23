//! `photon-core`: the thread-per-core engine every PhotonCloud data service
//! runs on.
//!
//! It owns: the shards (one pinned glommio executor per core, each with a
//! latency-sensitive and a bulk task queue), the [`ShardService`] trait that
//! data services implement, key ownership by hash ([`routing`]), the
//! per-service channel mesh between shards ([`ShardContext::call`]), per-shard
//! listeners, the HTTP/1.1 path ([`http`]), per-shard metrics merged on scrape
//! ([`metrics`], [`admin`]), configuration ([`config`]), logging, the
//! control-plane thread slot ([`control`]) and the node's life cycle
//! (start, run, drain, exit).
//!
//! It must never import another PhotonCloud crate: storage, control, ebpf and
//! vmm build on it, not the other way round. No locks on the data path: data
//! is owned by one shard and reached through the mesh.

pub mod admin;
pub mod config;
pub mod control;
pub mod engine;
pub mod gate;
pub mod health;
pub mod http;
pub mod link;
pub mod listen;
pub mod local_sync;
pub mod logging;
pub mod mailbox;
mod mesh;
pub mod metrics;
pub mod reserve;
pub mod routing;
pub mod service;
pub mod shutdown;
#[cfg(feature = "test-support")]
pub mod testing;

/// Index of a shard, `0..shards`.
pub type ShardId = usize;

pub use config::CoreConfig;
pub use engine::{EngineBuilder, RunningEngine, ShutdownReport, StartEngineError, StopReason};
pub use mesh::CallError;
pub use service::{BoxError, ShardContext, ShardService};
