//! The control plane's sections of the node's config file: `[control]` (the
//! replicated KV on Raft) and `[iam]` (tokens, sealed secrets), with their
//! defaults and checks. The binary composes them with the other sections
//! (`photon_core::config`).

use std::net::SocketAddr;
use std::path::PathBuf;

use photon_core::config::{ConfigError, Section};
use serde::{Deserialize, Serialize};

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
    /// How often this node writes its record in the node registry.
    pub node_heartbeat_ms: u64,
    /// A node silent this long is shown as suspect ...
    pub node_suspect_ms: u64,
    /// ... and this long as down.
    pub node_down_ms: u64,
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
            node_heartbeat_ms: 2_000,
            node_suspect_ms: 10_000,
            node_down_ms: 30_000,
        }
    }
}

impl ControlConfig {
    /// When other nodes count as suspect and as down.
    pub fn liveness(&self) -> photon_records::Liveness {
        photon_records::Liveness {
            suspect_ms: self.node_suspect_ms,
            down_ms: self.node_down_ms,
        }
    }

    /// `initial_members` parsed into (id, address) pairs.
    pub fn members(&self) -> Result<Vec<(u64, SocketAddr)>, ConfigError> {
        self.initial_members
            .iter()
            .map(|m| {
                let bad = |reason: &str| {
                    ConfigError::invalid(
                        "control.initial_members",
                        format!("`{m}`: {reason} (expected id=host:port)"),
                    )
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

impl Section for ControlConfig {
    const NAME: &'static str = "control";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::invalid(
                "control.node_id",
                "must be at least 1",
            ));
        }
        self.members()?;
        if self.heartbeat_ms == 0 || self.election_timeout_min_ms <= self.heartbeat_ms {
            return Err(ConfigError::invalid(
                "control.election_timeout_min_ms",
                "must be above control.heartbeat_ms (which must be at least 1)",
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(ConfigError::invalid(
                "control.election_timeout_max_ms",
                "must be above control.election_timeout_min_ms",
            ));
        }
        if self.proposals_pending_max == 0 || self.watches_per_connection_max == 0 {
            return Err(ConfigError::invalid(
                "control.proposals_pending_max",
                "limits must be at least 1",
            ));
        }
        if self.node_heartbeat_ms == 0 || self.node_suspect_ms <= self.node_heartbeat_ms {
            return Err(ConfigError::invalid(
                "control.node_suspect_ms",
                "must be above control.node_heartbeat_ms (which must be at least 1)",
            ));
        }
        if self.node_down_ms <= self.node_suspect_ms {
            return Err(ConfigError::invalid(
                "control.node_down_ms",
                "must be above control.node_suspect_ms",
            ));
        }
        if self.snapshot_every_entries == 0 {
            return Err(ConfigError::invalid(
                "control.snapshot_every_entries",
                "must be at least 1",
            ));
        }
        Ok(())
    }
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

impl Section for IamConfig {
    const NAME: &'static str = "iam";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.token_ttl_max_s == 0 || self.token_ttl_max_s > 7 * 24 * 3_600 {
            return Err(ConfigError::invalid(
                "iam.token_ttl_max_s",
                "must be 1 s to 7 days",
            ));
        }
        if self.token_ttl_default_s == 0 || self.token_ttl_default_s > self.token_ttl_max_s {
            return Err(ConfigError::invalid(
                "iam.token_ttl_default_s",
                "must be at least 1 s and at most iam.token_ttl_max_s",
            ));
        }
        Ok(())
    }
}
