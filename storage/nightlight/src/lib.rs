//! `nightlight`: PhotonCloud's metrics service, one instance per shard.
//!
//! It owns the HTTP front end ([`api`]: ingestion in [`ingest`], the
//! Prometheus query API in [`query_api`], parameters in [`params`],
//! credentials in [`auth`]), each shard's store ([`store`]: the head, the
//! WAL file in [`wal_file`], blocks), the requests shards send each other
//! ([`shard`]: a series lives on the shard its labels hash to), and the
//! node's own metrics ([`self_scrape`]). Formats are in
//! `photon-metrics-wire`, the store's structures in `photon-tsdb`, PromQL
//! in `photon-promql`.
//!
//! It never imports the control plane: credentials come from the node's
//! IAM `Directory`, which the control plane keeps current.

pub mod api;
pub mod auth;
pub mod config;
pub mod ingest;
pub mod params;
pub mod query_api;
pub mod self_scrape;
pub mod service;
pub mod shard;
pub mod store;
pub mod wal_file;

pub use config::{NightLightConfig, NightLightParams};
pub use service::NightLightService;

/// Wall-clock milliseconds since the Unix epoch (sample times, query times).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
