//! The `[nightlight]` section of the node's config file (where NightLight
//! serves, how long it keeps data, its limits), with its defaults and
//! checks, and what every shard's service is given ([`NightLightParams`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use photon_core::config::{ConfigError, Section};
use photon_core::http::HttpLimits;
use photon_iam::Directory;
use serde::{Deserialize, Serialize};

/// NightLight, the metrics service of a node with the `metrics` role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NightLightConfig {
    /// Address of the HTTP endpoint (remote_write, Influx, query API; every
    /// shard serves it).
    pub listen: SocketAddr,
    /// Samples older than this are deleted (Prometheus'
    /// `--storage.tsdb.retention.time`), in hours.
    pub retention_hours: u64,
    /// Time span of one block, in minutes: the head is cut into a block
    /// when it holds this much more than the out-of-order window.
    pub block_minutes: u64,
    /// Samples up to this much older than a series' newest are accepted
    /// (0: none, Prometheus' default `out_of_order_time_window`).
    pub out_of_order_window_s: u64,
    /// Series one tenant may have on this node (all shards).
    pub tenant_series_max: usize,
    /// Labels one series may carry.
    pub labels_per_series_max: usize,
    /// Bytes of one label value.
    pub label_value_bytes_max: usize,
    /// Bytes of one compressed write request.
    pub write_bytes_max: usize,
    /// A query is cancelled after this many seconds (Prometheus'
    /// `--query.timeout`).
    pub query_timeout_s: u64,
    /// Samples one query may load (Prometheus' `--query.max-samples`).
    pub query_samples_max: usize,
    /// Push this node's own `/metrics` into NightLight (tenant `system`,
    /// project `default`, `job="photon"`), every `self_scrape_interval_s`.
    pub self_scrape: bool,
    pub self_scrape_interval_s: u64,
}

impl Default for NightLightConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9401)),
            retention_hours: 15 * 24,
            block_minutes: 120,
            out_of_order_window_s: 0,
            tenant_series_max: 1_000_000,
            labels_per_series_max: 64,
            label_value_bytes_max: 4096,
            write_bytes_max: 32 << 20,
            query_timeout_s: 120,
            query_samples_max: 50_000_000,
            self_scrape: true,
            self_scrape_interval_s: 15,
        }
    }
}

fn within(key: &str, value: u64, range: std::ops::RangeInclusive<u64>) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{value} is outside {}..={}", range.start(), range.end()),
        ))
    }
}

impl Section for NightLightConfig {
    const NAME: &'static str = "nightlight";

    fn validate(&self) -> Result<(), ConfigError> {
        within(
            "nightlight.retention_hours",
            self.retention_hours,
            1..=100 * 365 * 24,
        )?;
        within("nightlight.block_minutes", self.block_minutes, 1..=24 * 60)?;
        within(
            "nightlight.out_of_order_window_s",
            self.out_of_order_window_s,
            0..=24 * 3600,
        )?;
        within(
            "nightlight.tenant_series_max",
            self.tenant_series_max as u64,
            1..=100_000_000,
        )?;
        within(
            "nightlight.labels_per_series_max",
            self.labels_per_series_max as u64,
            1..=1024,
        )?;
        within(
            "nightlight.label_value_bytes_max",
            self.label_value_bytes_max as u64,
            1..=1 << 20,
        )?;
        within(
            "nightlight.write_bytes_max",
            self.write_bytes_max as u64,
            1024..=1 << 30,
        )?;
        within("nightlight.query_timeout_s", self.query_timeout_s, 1..=3600)?;
        within(
            "nightlight.query_samples_max",
            self.query_samples_max as u64,
            1..=1_000_000_000,
        )?;
        within(
            "nightlight.self_scrape_interval_s",
            self.self_scrape_interval_s,
            1..=3600,
        )?;
        Ok(())
    }
}

/// What every shard's NightLight instance is given.
#[derive(Debug, Clone)]
pub struct NightLightParams {
    pub config: NightLightConfig,
    /// Shard `n` keeps its WAL and blocks in `<dir>/shard-<n>`.
    pub dir: PathBuf,
    pub directory: Arc<Directory>,
    pub http: HttpLimits,
    /// This node's name (the `instance` label of its own metrics).
    pub node_name: String,
    /// Where the node's own `/metrics` is served, once known (the admin
    /// endpoint may listen on port 0).
    pub admin_address: Arc<std::sync::Mutex<Option<SocketAddr>>>,
    pub body_idle_timeout: Duration,
}

impl NightLightConfig {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours * 3600)
    }
    pub fn block_range_ms(&self) -> i64 {
        self.block_minutes as i64 * 60_000
    }
    pub fn out_of_order_window_ms(&self) -> i64 {
        self.out_of_order_window_s as i64 * 1000
    }
}
