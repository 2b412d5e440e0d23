//! Node configuration: one TOML file, overridden by `PHOTON_<SECTION>_<KEY>`
//! environment variables, overridden by command-line flags, validated once at
//! start. Every error names the key and the reason.
//!
//! Each `[section]` belongs to the crate that uses it: its struct (keys,
//! defaults) and its checks implement [`Section`] there. This module owns the
//! loader ([`ConfigLoader`]), the error, and the engine's own sections
//! (`node`, `engine`, `admin`, `log`, `shutdown`, `limits`, together
//! [`CoreConfig`]). The binary composes every section into one file type
//! ([`Sections`]), which lists the section names and adds the checks that
//! span sections.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "PHOTON_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}` (from {origin}): {reason}")]
    Override {
        key: String,
        origin: String,
        reason: String,
    },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// `key` (`section.key`) holds a value its section refuses.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// One `[section]` of the file, owned by the crate that uses it: its keys
/// (serde, `deny_unknown_fields`), its defaults and the checks of its own
/// values.
pub trait Section: Default + Serialize + DeserializeOwned {
    /// The section's name in the file and in `PHOTON_<SECTION>_<KEY>`; never
    /// contains `_`.
    const NAME: &'static str;

    /// Checks every value against its limit; the first violation is reported.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// A whole config file: the sections it is composed of, validated together.
pub trait Sections: DeserializeOwned {
    /// The names of its sections. Environment variables and overrides are
    /// matched against these (a section name never contains `_`, so
    /// `PHOTON_ENGINE_IO_MEMORY_MIB` is unambiguously `engine.io_memory_mib`).
    const NAMES: &'static [&'static str];

    /// Every section's checks, then those that span sections; the first
    /// violation is reported.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// The engine's sections: what [`crate::EngineBuilder`] runs on and
/// [`crate::ShardContext::config`] shows every service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    pub node: NodeConfig,
    pub engine: EngineConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    pub limits: LimitsConfig,
}

impl Sections for CoreConfig {
    const NAMES: &'static [&'static str] = &[
        NodeConfig::NAME,
        EngineConfig::NAME,
        AdminConfig::NAME,
        LogConfig::NAME,
        ShutdownConfig::NAME,
        LimitsConfig::NAME,
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        self.node.validate()?;
        self.engine.validate()?;
        self.admin.validate()?;
        self.log.validate()?;
        self.shutdown.validate()?;
        self.limits.validate()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Name of this node in the cluster; unique per cluster.
    pub name: String,
    /// Where every service of this node keeps its files.
    pub data_dir: PathBuf,
    /// Roles this node runs: control, storage, edge, compute.
    pub roles: Vec<String>,
    /// A name for what fails together with this node (a rack, a host,
    /// a zone); shown in the node registry. "" when not set.
    pub failure_domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Number of shards (one pinned executor each); 0 means one per online CPU.
    pub cores: usize,
    /// Pin each shard to its CPU. Off only for tests that run many engines.
    pub pin: bool,
    /// CPUs to pin shards to, in shard order (shard i on cpu_list[i % len]);
    /// empty means every CPU this process may use.
    pub cpu_list: Vec<usize>,
    /// Memory registered with io_uring per shard, in MiB.
    pub io_memory_mib: usize,
    /// How long an idle shard polls before it parks in the kernel, in microseconds.
    /// 0 parks at once (see docs/design/0002-shard-parking.md).
    pub spin_before_park_us: u64,
    /// Preemption timer of the latency-sensitive queue, in milliseconds.
    pub preempt_timer_ms: u64,
    /// Capacity of every shard-to-shard request queue (back-pressure beyond it).
    pub mesh_queue_depth: usize,
    /// Forwarded requests a shard handles at once for all its peers.
    pub forwarded_inflight_max: usize,
    /// Calls one shard may have waiting for replies from its peers, per service.
    pub calls_pending_max: usize,
    /// Capacity of the queues between the shards and the control-plane thread.
    pub control_queue_depth: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `RUST_LOG`-style filter, e.g. `info,photon_core=debug`. `RUST_LOG` wins when set.
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long in-flight requests may take to finish after SIGTERM, in milliseconds.
    pub drain_timeout_ms: u64,
}

/// Connection limits and timeouts of every listener (S3, NBD, admin,
/// control), see `crate::gate` and docs/running.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The open-file limit (RLIMIT_NOFILE) asked for at start; 0 is the
    /// hard limit. The connection budget below is cut to what it allows.
    pub open_files: u64,
    /// Open connections per listener, over all shards.
    pub connections_per_listener: usize,
    /// Of those, connections that have not authenticated yet; beyond it the
    /// oldest unauthenticated connection is closed.
    pub unauthenticated_per_listener: usize,
    /// Unauthenticated connections one IP address may hold per listener.
    pub unauthenticated_per_source: usize,
    /// A connection must authenticate within this time.
    pub handshake_timeout_ms: u64,
    /// A connection with no request in flight is closed after this time
    /// (HTTP; authenticated NBD and control sessions may idle).
    pub idle_timeout_ms: u64,
    /// A request body that sends nothing for this long is cut.
    pub body_idle_timeout_ms: u64,
    /// ... and one slower than this on average (after the first
    /// `body_idle_timeout_ms`) too.
    pub body_rate_min_bytes_per_s: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            open_files: 0,
            connections_per_listener: 10_000,
            unauthenticated_per_listener: 1_000,
            unauthenticated_per_source: 64,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_idle_timeout_ms: 30_000,
            body_rate_min_bytes_per_s: 1_024,
        }
    }
}

impl LimitsConfig {
    /// The limits of one listener on one of `shards` shards (each shard
    /// accepts about its share of the connections).
    pub fn per_shard(&self, shards: usize) -> crate::gate::ConnectionLimits {
        let share = |n: usize| n.div_ceil(shards.max(1)).max(1);
        crate::gate::ConnectionLimits {
            connections_max: share(self.connections_per_listener),
            unauthenticated_max: share(self.unauthenticated_per_listener),
            per_source_unauthenticated_max: share(self.unauthenticated_per_source),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
        }
    }

    /// The limits of a listener served by one thread (the control plane).
    pub fn whole(&self) -> crate::gate::ConnectionLimits {
        self.per_shard(1)
    }

    pub fn body_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.body_idle_timeout_ms)
    }
}

/// Named limits that validation enforces.
pub mod limits {
    pub const CORES_MAX: usize = 1024;
    pub const IO_MEMORY_MIB_MAX: usize = 4096;
    pub const MESH_QUEUE_DEPTH_MAX: usize = 65_536;
    pub const FORWARDED_INFLIGHT_MAX: usize = 1 << 20;
    pub const CALLS_PENDING_MAX: usize = 1 << 20;
    pub const CONTROL_QUEUE_DEPTH_MAX: usize = 1 << 20;
    pub const SPIN_BEFORE_PARK_US_MAX: u64 = 1_000_000;
    pub const DRAIN_TIMEOUT_MS_MAX: u64 = 600_000;
    pub const ROLES: &[&str] = &["control", "storage", "edge", "compute", "metrics"];
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "photon-1".into(),
            data_dir: PathBuf::from("./photon-data"),
            roles: limits::ROLES.iter().map(|r| (*r).to_string()).collect(),
            failure_domain: String::new(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cores: 0,
            pin: true,
            cpu_list: Vec::new(),
            io_memory_mib: 10,
            spin_before_park_us: 0,
            preempt_timer_ms: 100,
            mesh_queue_depth: 256,
            forwarded_inflight_max: 4096,
            calls_pending_max: 16_384,
            control_queue_depth: 1024,
        }
    }
}

impl EngineConfig {
    /// The number of shards this config asks for, resolved against the machine.
    pub fn shard_count(&self) -> usize {
        if self.cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.cores
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9400)),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Pretty,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 10_000,
        }
    }
}

impl Section for NodeConfig {
    const NAME: &'static str = "node";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.name.len() > 63 {
            return Err(ConfigError::invalid(
                "node.name",
                "must be 1 to 63 characters",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("node.data_dir", "must not be empty"));
        }
        if let Some(role) = self
            .roles
            .iter()
            .find(|r| !limits::ROLES.contains(&r.as_str()))
        {
            return Err(ConfigError::invalid(
                "node.roles",
                format!(
                    "unknown role `{role}` (expected one of {})",
                    limits::ROLES.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

impl Section for EngineConfig {
    const NAME: &'static str = "engine";

    fn validate(&self) -> Result<(), ConfigError> {
        use limits::*;
        let above = |key: &str, value: u64, limit: u64| {
            Err(ConfigError::invalid(
                key,
                format!("{value} is above the limit {limit}"),
            ))
        };
        if self.cores > CORES_MAX {
            return above("engine.cores", self.cores as u64, CORES_MAX as u64);
        }
        if let Some(cpu) = self.cpu_list.iter().find(|c| **c >= CORES_MAX) {
            return Err(ConfigError::invalid(
                "engine.cpu_list",
                format!("CPU {cpu} is above the limit {CORES_MAX}"),
            ));
        }
        if self.io_memory_mib > IO_MEMORY_MIB_MAX {
            let (value, limit) = (self.io_memory_mib as u64, IO_MEMORY_MIB_MAX as u64);
            return above("engine.io_memory_mib", value, limit);
        }
        if self.spin_before_park_us > SPIN_BEFORE_PARK_US_MAX {
            let value = self.spin_before_park_us;
            return above("engine.spin_before_park_us", value, SPIN_BEFORE_PARK_US_MAX);
        }
        if self.preempt_timer_ms == 0 {
            return Err(ConfigError::invalid(
                "engine.preempt_timer_ms",
                "must be at least 1",
            ));
        }
        for (key, value, max) in [
            (
                "engine.mesh_queue_depth",
                self.mesh_queue_depth,
                MESH_QUEUE_DEPTH_MAX,
            ),
            (
                "engine.forwarded_inflight_max",
                self.forwarded_inflight_max,
                FORWARDED_INFLIGHT_MAX,
            ),
            (
                "engine.calls_pending_max",
                self.calls_pending_max,
                CALLS_PENDING_MAX,
            ),
            (
                "engine.control_queue_depth",
                self.control_queue_depth,
                CONTROL_QUEUE_DEPTH_MAX,
            ),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError::invalid(
                    key,
                    format!("{value} is outside 1..={max}"),
                ));
            }
        }
        Ok(())
    }
}

impl Section for AdminConfig {
    const NAME: &'static str = "admin";

    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl Section for LogConfig {
    const NAME: &'static str = "log";

    fn validate(&self) -> Result<(), ConfigError> {
        if self
            .filter
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return Err(ConfigError::invalid(
                "log.filter",
                format!("`{}` is not a valid filter", self.filter),
            ));
        }
        Ok(())
    }
}

impl Section for ShutdownConfig {
    const NAME: &'static str = "shutdown";

    fn validate(&self) -> Result<(), ConfigError> {
        use limits::DRAIN_TIMEOUT_MS_MAX;
        if self.drain_timeout_ms > DRAIN_TIMEOUT_MS_MAX {
            return Err(ConfigError::invalid(
                "shutdown.drain_timeout_ms",
                format!(
                    "{} is above the limit {DRAIN_TIMEOUT_MS_MAX}",
                    self.drain_timeout_ms
                ),
            ));
        }
        Ok(())
    }
}

impl Section for LimitsConfig {
    const NAME: &'static str = "limits";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.connections_per_listener == 0 || self.connections_per_listener > 1 << 24 {
            return Err(ConfigError::invalid(
                "limits.connections_per_listener",
                "must be 1 to 16777216",
            ));
        }
        if self.unauthenticated_per_listener == 0
            || self.unauthenticated_per_listener > self.connections_per_listener
        {
            return Err(ConfigError::invalid(
                "limits.unauthenticated_per_listener",
                "must be 1 to limits.connections_per_listener",
            ));
        }
        if self.unauthenticated_per_source == 0 {
            return Err(ConfigError::invalid(
                "limits.unauthenticated_per_source",
                "must be at least 1",
            ));
        }
        for (key, ms) in [
            ("limits.handshake_timeout_ms", self.handshake_timeout_ms),
            ("limits.idle_timeout_ms", self.idle_timeout_ms),
            ("limits.body_idle_timeout_ms", self.body_idle_timeout_ms),
        ] {
            if !(100..=86_400_000).contains(&ms) {
                return Err(ConfigError::invalid(
                    key,
                    "must be 100 to 86400000 (one day)",
                ));
            }
        }
        Ok(())
    }
}

/// Builds a config file `C` (every section the binary composes, or just the
/// engine's [`CoreConfig`]) from layers: defaults, a file, the environment,
/// flags.
pub struct ConfigLoader<C> {
    table: toml::Table,
    sections: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for ConfigLoader<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigLoader")
            .field("table", &self.table)
            .finish()
    }
}

impl<C: Sections> Default for ConfigLoader<C> {
    fn default() -> Self {
        Self {
            table: toml::Table::new(),
            sections: PhantomData,
        }
    }
}

impl<C: Sections> ConfigLoader<C> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a TOML file as the base layer.
    pub fn file(mut self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(self)
    }

    /// Applies `PHOTON_<SECTION>_<KEY>` variables from an iterator of (name, value).
    pub fn env<I>(mut self, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            let Some((section, key)) = lower.split_once('_') else {
                continue;
            };
            if !C::NAMES.contains(&section) || key.is_empty() {
                continue;
            }
            let path = format!("{section}.{key}");
            self.set(&path, &value, &format!("environment variable {name}"))?;
        }
        Ok(self)
    }

    /// Applies one `section.key=value` override (from a flag).
    pub fn set(&mut self, path: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
        let err = |reason: String| ConfigError::Override {
            key: path.to_string(),
            origin: origin.to_string(),
            reason,
        };
        let Some((section, key)) = path.split_once('.') else {
            return Err(err("expected `section.key`".into()));
        };
        if !C::NAMES.contains(&section) {
            return Err(err(format!(
                "unknown section `{section}` (expected one of {})",
                C::NAMES.join(", ")
            )));
        }
        let parsed = parse_scalar(value);
        let entry = self
            .table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(table) = entry else {
            return Err(err(format!("`{section}` in the file is not a table")));
        };
        table.insert(key.to_string(), parsed);
        Ok(())
    }

    /// True when a layer so far set `section.key`.
    pub fn is_set(&self, path: &str) -> bool {
        let Some((section, key)) = path.split_once('.') else {
            return false;
        };
        self.table
            .get(section)
            .and_then(|s| s.as_table())
            .is_some_and(|t| t.contains_key(key))
    }

    /// Applies one override and returns the loader, for chaining.
    pub fn with(mut self, path: &str, value: &str, origin: &str) -> Result<Self, ConfigError> {
        self.set(path, value, origin)?;
        Ok(self)
    }

    /// Deserializes and validates.
    pub fn build(self) -> Result<C, ConfigError> {
        let value = toml::Value::Table(self.table);
        let config: C = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                key: if key == "." { "(root)".into() } else { key },
                reason: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// A flag or environment value is TOML when it parses as a TOML value
/// (`8`, `true`, `["a","b"]`), otherwise a plain string.
fn parse_scalar(value: &str) -> toml::Value {
    let doc = format!("v = {value}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(value.into())),
        Err(_) => toml::Value::String(value.to_string()),
    }
}
