//! Node configuration: one TOML file, overridden by `PHOTON_<SECTION>_<KEY>`
//! environment variables, overridden by command-line flags, validated once at
//! start. Every error names the key and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The sections of the file. Environment variables are matched against these
/// (a section name never contains `_`, so `PHOTON_ENGINE_IO_MEMORY_MIB` is
/// unambiguously `engine.io_memory_mib`).
const SECTIONS: &[&str] = &[
    "node", "engine", "admin", "control", "iam", "s3", "nbd", "lb", "log", "shutdown", "limits",
];

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

/// The whole node configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub engine: EngineConfig,
    pub admin: AdminConfig,
    pub control: ControlConfig,
    pub iam: IamConfig,
    pub s3: S3Config,
    pub nbd: NbdConfig,
    pub lb: LbConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    pub limits: LimitsConfig,
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

/// Identity and access (tokens, sealed secrets) of a node with the `control` role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IamConfig {
    /// File holding the cluster key (64 hex characters, mode 0600) that seals
    /// secrets in the KV and authenticates Raft peers; the same file on every
    /// node. Unset: `<data_dir>/control/cluster.key`, created on first start
    /// (fine for one node; a multi-node cluster must set it).
    pub cluster_key_file: Option<PathBuf>,
    /// Lifetime of a token when the caller asks for none, in seconds.
    pub token_ttl_default_s: u64,
    /// Longest token lifetime a caller may ask for, in seconds; a rotated-out
    /// signing key keeps verifying this long.
    pub token_ttl_max_s: u64,
}

impl Default for IamConfig {
    fn default() -> Self {
        Self {
            cluster_key_file: None,
            token_ttl_default_s: 3_600,
            token_ttl_max_s: 12 * 3_600,
        }
    }
}

/// LightningStor, the S3 service of a node with the `storage` role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Address of the S3 endpoint (every shard serves it).
    pub listen: SocketAddr,
    /// The region clients sign requests for.
    pub region: String,
    /// Domains for virtual-host-style requests (`<bucket>.<domain>`).
    pub domains: Vec<String>,
    /// Size of each segment file of the object store, in MiB.
    pub segment_mib: u64,
    /// Seconds that chunks of a replaced or deleted object stay readable
    /// for GETs already streaming them.
    pub garbage_grace_s: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            region: "us-east-1".into(),
            domains: Vec::new(),
            segment_mib: 256,
            garbage_grace_s: 30,
        }
    }
}

/// CoronaFS, the NBD volume service of a node with the `storage` role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NbdConfig {
    /// Address of the NBD endpoint (every shard serves it).
    pub listen: SocketAddr,
    /// A shard's volume journal is checkpointed and restarted past this
    /// many MiB.
    pub journal_mib: u64,
}

impl Default for NbdConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 10809)),
            journal_mib: 64,
        }
    }
}

/// FiberLB, the XDP load balancer of a node with the `edge` role: which
/// interface its program sits on and how it reaches the backends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LbConfig {
    /// Interface the XDP program attaches to ("" = no data plane: the API
    /// keeps the records, nothing is steered or probed).
    pub interface: String,
    /// `native` (driver mode), `generic` (SKB mode) or `auto` (kernel's choice).
    pub xdp_mode: String,
    /// Outer source address of IPv4 tunnels (default: the interface's first IPv4).
    pub src_v4: Option<std::net::Ipv4Addr>,
    /// Outer source address of IPv6 tunnels (default: the interface's first global IPv6).
    pub src_v6: Option<std::net::Ipv6Addr>,
    /// Path MTU toward the backends (0 = the interface's MTU).
    pub mtu: u32,
    /// Find next hops with the kernel's FIB (`bpf_fib_lookup`).
    pub fib: bool,
    /// Static next-hop MAC ("aa:bb:cc:dd:ee:ff"; used when the FIB has no answer).
    pub neighbour_mac: Option<String>,
}

impl Default for LbConfig {
    fn default() -> Self {
        Self {
            interface: String::new(),
            xdp_mode: "native".into(),
            src_v4: None,
            src_v6: None,
            mtu: 0,
            fib: true,
            neighbour_mac: None,
        }
    }
}

/// The replicated control plane (Raft KV) of a node with the `control` role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// This node's Raft id, unique in the cluster, at least 1.
    pub node_id: u64,
    /// Address of the Cap'n Proto API (clients and peers).
    pub listen: SocketAddr,
    /// Address peers and clients use to reach this node, when it differs.
    pub advertise: Option<SocketAddr>,
    /// `id=host:port` of every member, to initialize a new cluster with.
    /// Empty: join an existing cluster (`photon ctl cluster add`).
    pub initial_members: Vec<String>,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Snapshot (and purge the log) every this many entries.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind the latest snapshot, so a briefly lagging
    /// follower catches up from the log instead of a whole snapshot.
    pub snapshot_keep_entries: u64,
    /// Client proposals a node lets wait for commit at once (back-pressure).
    pub proposals_pending_max: usize,
    /// Watches one client connection may hold.
    pub watches_per_connection_max: usize,
    /// Space kept aside on the control plane's disk (MiB), released when
    /// the disk fills so Raft keeps its log and metadata writable; while
    /// released, writes that add data are refused (`photon_core::reserve`).
    pub reserve_mib: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 9500)),
            advertise: None,
            initial_members: Vec::new(),
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every_entries: 10_000,
            snapshot_keep_entries: 1_000,
            proposals_pending_max: 4_096,
            watches_per_connection_max: 1_024,
            reserve_mib: 32,
        }
    }
}

impl ControlConfig {
    /// `initial_members` parsed into (id, address) pairs.
    pub fn members(&self) -> Result<Vec<(u64, SocketAddr)>, ConfigError> {
        self.initial_members
            .iter()
            .map(|m| {
                let bad = |reason: &str| ConfigError::Invalid {
                    key: "control.initial_members".into(),
                    reason: format!("`{m}`: {reason} (expected id=host:port)"),
                };
                let (id, addr) = m.split_once('=').ok_or_else(|| bad("no `=`"))?;
                let id: u64 = id.trim().parse().map_err(|_| bad("id is not a number"))?;
                let addr: SocketAddr = addr
                    .trim()
                    .parse()
                    .map_err(|_| bad("address is not host:port"))?;
                if id == 0 {
                    return Err(bad("id 0 is reserved"));
                }
                Ok((id, addr))
            })
            .collect()
    }
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
    pub const ROLES: &[&str] = &["control", "storage", "edge", "compute"];
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "photon-1".into(),
            data_dir: PathBuf::from("./photon-data"),
            roles: limits::ROLES.iter().map(|r| (*r).to_string()).collect(),
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

/// Builds a [`Config`] from layers: defaults, a file, the environment, flags.
#[derive(Debug, Default)]
pub struct ConfigLoader {
    table: toml::Table,
}

impl ConfigLoader {
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
            if !SECTIONS.contains(&section) || key.is_empty() {
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
        if !SECTIONS.contains(&section) {
            return Err(err(format!(
                "unknown section `{section}` (expected one of {})",
                SECTIONS.join(", ")
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
    pub fn build(self) -> Result<Config, ConfigError> {
        let value = toml::Value::Table(self.table);
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
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

impl Config {
    /// Checks every value against its limit; the first violation is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use limits::*;
        let bad = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                reason,
            })
        };
        if self.node.name.is_empty() || self.node.name.len() > 63 {
            return bad("node.name", "must be 1 to 63 characters".into());
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return bad("node.data_dir", "must not be empty".into());
        }
        for role in &self.node.roles {
            if !ROLES.contains(&role.as_str()) {
                return bad(
                    "node.roles",
                    format!(
                        "unknown role `{role}` (expected one of {})",
                        ROLES.join(", ")
                    ),
                );
            }
        }
        if !["native", "generic", "auto"].contains(&self.lb.xdp_mode.as_str()) {
            return bad(
                "lb.xdp_mode",
                format!("`{}` (expected native, generic or auto)", self.lb.xdp_mode),
            );
        }
        if self.lb.mtu != 0 && !(1280..=65535).contains(&self.lb.mtu) {
            return bad(
                "lb.mtu",
                "must be 0 (the interface's) or 1280 to 65535".into(),
            );
        }
        let l = &self.limits;
        if l.connections_per_listener == 0 || l.connections_per_listener > 1 << 24 {
            return bad(
                "limits.connections_per_listener",
                "must be 1 to 16777216".into(),
            );
        }
        if l.unauthenticated_per_listener == 0
            || l.unauthenticated_per_listener > l.connections_per_listener
        {
            return bad(
                "limits.unauthenticated_per_listener",
                "must be 1 to limits.connections_per_listener".into(),
            );
        }
        if l.unauthenticated_per_source == 0 {
            return bad(
                "limits.unauthenticated_per_source",
                "must be at least 1".into(),
            );
        }
        for (key, ms) in [
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            ("limits.body_idle_timeout_ms", l.body_idle_timeout_ms),
        ] {
            if !(100..=86_400_000).contains(&ms) {
                return bad(key, "must be 100 to 86400000 (one day)".into());
            }
        }
        if !(16..=4096).contains(&self.s3.segment_mib) {
            return bad("s3.segment_mib", "must be between 16 and 4096".into());
        }
        if !(1..=4096).contains(&self.nbd.journal_mib) {
            return bad("nbd.journal_mib", "must be between 1 and 4096".into());
        }
        if self.s3.region.is_empty() || self.s3.region.len() > 32 {
            return bad("s3.region", "must be 1 to 32 characters".into());
        }
        let e = &self.engine;
        if e.cores > CORES_MAX {
            return bad(
                "engine.cores",
                format!("{} is above the limit {CORES_MAX}", e.cores),
            );
        }
        if let Some(cpu) = e.cpu_list.iter().find(|c| **c >= CORES_MAX) {
            return bad(
                "engine.cpu_list",
                format!("CPU {cpu} is above the limit {CORES_MAX}"),
            );
        }
        if e.io_memory_mib > IO_MEMORY_MIB_MAX {
            return bad(
                "engine.io_memory_mib",
                format!("{} is above the limit {IO_MEMORY_MIB_MAX}", e.io_memory_mib),
            );
        }
        if e.spin_before_park_us > SPIN_BEFORE_PARK_US_MAX {
            return bad(
                "engine.spin_before_park_us",
                format!(
                    "{} is above the limit {SPIN_BEFORE_PARK_US_MAX}",
                    e.spin_before_park_us
                ),
            );
        }
        if e.preempt_timer_ms == 0 {
            return bad("engine.preempt_timer_ms", "must be at least 1".into());
        }
        let iam = &self.iam;
        if iam.token_ttl_max_s == 0 || iam.token_ttl_max_s > 7 * 24 * 3_600 {
            return bad("iam.token_ttl_max_s", "must be 1 s to 7 days".into());
        }
        if iam.token_ttl_default_s == 0 || iam.token_ttl_default_s > iam.token_ttl_max_s {
            return bad(
                "iam.token_ttl_default_s",
                "must be at least 1 s and at most iam.token_ttl_max_s".into(),
            );
        }
        for (key, value, max) in [
            (
                "engine.mesh_queue_depth",
                e.mesh_queue_depth,
                MESH_QUEUE_DEPTH_MAX,
            ),
            (
                "engine.forwarded_inflight_max",
                e.forwarded_inflight_max,
                FORWARDED_INFLIGHT_MAX,
            ),
            (
                "engine.calls_pending_max",
                e.calls_pending_max,
                CALLS_PENDING_MAX,
            ),
            (
                "engine.control_queue_depth",
                e.control_queue_depth,
                CONTROL_QUEUE_DEPTH_MAX,
            ),
        ] {
            if value == 0 || value > max {
                return bad(key, format!("{value} is outside 1..={max}"));
            }
        }
        if self
            .log
            .filter
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return bad(
                "log.filter",
                format!("`{}` is not a valid filter", self.log.filter),
            );
        }
        let c = &self.control;
        if c.node_id == 0 {
            return bad("control.node_id", "must be at least 1".into());
        }
        c.members()?;
        if c.heartbeat_ms == 0 || c.election_timeout_min_ms <= c.heartbeat_ms {
            return bad(
                "control.election_timeout_min_ms",
                "must be above control.heartbeat_ms (which must be at least 1)".into(),
            );
        }
        if c.election_timeout_max_ms <= c.election_timeout_min_ms {
            return bad(
                "control.election_timeout_max_ms",
                "must be above control.election_timeout_min_ms".into(),
            );
        }
        if c.proposals_pending_max == 0 || c.watches_per_connection_max == 0 {
            return bad(
                "control.proposals_pending_max",
                "limits must be at least 1".into(),
            );
        }
        if c.snapshot_every_entries == 0 {
            return bad(
                "control.snapshot_every_entries",
                "must be at least 1".into(),
            );
        }
        if self.shutdown.drain_timeout_ms > DRAIN_TIMEOUT_MS_MAX {
            return bad(
                "shutdown.drain_timeout_ms",
                format!(
                    "{} is above the limit {DRAIN_TIMEOUT_MS_MAX}",
                    self.shutdown.drain_timeout_ms
                ),
            );
        }
        Ok(())
    }

    /// The number of shards this config asks for, resolved against the machine.
    pub fn shard_count(&self) -> usize {
        if self.engine.cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.engine.cores
        }
    }
}
