//! The node registry: every node of the cluster writes its record under
//! `node/<id>` when it starts and again every heartbeat, with the addresses
//! its services listen on, its roles and its capacity. Other nodes read it
//! to reach a service of a given node (a VM agent opens a volume on the
//! NBD endpoint of the node that holds it; a migration's destination is
//! found here), and `photon ctl node ls` shows it.
//!
//! Liveness is the age of the last heartbeat, judged by the reader with
//! two thresholds (suspect, then down): the record is never deleted by a
//! timeout, so a node that returns is the same node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Prefix of every node record in the KV.
pub const NODE_PREFIX: &str = "node/";

/// The KV key of node `id`.
pub fn node_key(id: u64) -> String {
    format!("{NODE_PREFIX}{id}")
}

/// One node as it last described itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: u64,
    pub name: String,
    /// `node.roles`: control, storage, compute, edge.
    pub roles: Vec<String>,
    /// `node.failure_domain` ("" when not set): replicas of one resource
    /// go to different domains where the cluster has enough of them.
    #[serde(default)]
    pub failure_domain: String,
    /// Service name (`control`, `nbd`, `s3`, `admin`) to `host:port`, as
    /// other nodes reach it.
    pub endpoints: BTreeMap<String, String>,
    /// The host other nodes reach this one at (the control endpoint's
    /// host), for listeners opened on demand (a VM's incoming migration).
    pub host: String,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Bytes free and in total on the data directory's file system.
    pub disk_free: u64,
    pub disk_total: u64,
    pub version: String,
    pub started_ms: u64,
    /// The writer's clock at its last heartbeat.
    pub heartbeat_ms: u64,
}

/// How a node looks from the age of its last heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Up,
    /// Missed heartbeats for longer than the suspect threshold.
    Suspect,
    /// Missed heartbeats for longer than the down threshold.
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Suspect => "suspect",
            Self::Down => "down",
        }
    }
}

/// When a node counts as suspect and as down (`control.node_suspect_ms`,
/// `control.node_down_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub suspect_ms: u64,
    pub down_ms: u64,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            suspect_ms: 10_000,
            down_ms: 30_000,
        }
    }
}

impl NodeRecord {
    pub fn key(&self) -> String {
        node_key(self.id)
    }

    pub fn to_kv(&self) -> (String, Vec<u8>) {
        (self.key(), serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_json(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The address of service `name`, if the node serves it.
    pub fn endpoint(&self, name: &str) -> Option<&str> {
        self.endpoints.get(name).map(String::as_str)
    }

    /// Its state at `now_ms`, judged with `liveness`.
    pub fn state(&self, now_ms: u64, liveness: Liveness) -> NodeState {
        let silent = now_ms.saturating_sub(self.heartbeat_ms);
        if silent >= liveness.down_ms {
            NodeState::Down
        } else if silent >= liveness.suspect_ms {
            NodeState::Suspect
        } else {
            NodeState::Up
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(heartbeat_ms: u64) -> NodeRecord {
        NodeRecord {
            id: 2,
            name: "n2".into(),
            roles: vec!["control".into(), "compute".into()],
            failure_domain: String::new(),
            endpoints: BTreeMap::from([("nbd".into(), "127.0.0.1:10809".into())]),
            host: "127.0.0.1".into(),
            cpus: 2,
            memory_mib: 1024,
            disk_free: 1,
            disk_total: 2,
            version: "0".into(),
            started_ms: 0,
            heartbeat_ms,
        }
    }

    #[test]
    fn state_follows_the_age_of_the_heartbeat() {
        let l = Liveness {
            suspect_ms: 10,
            down_ms: 30,
        };
        let r = record(100);
        assert_eq!(r.state(100, l), NodeState::Up);
        assert_eq!(r.state(109, l), NodeState::Up);
        assert_eq!(r.state(110, l), NodeState::Suspect);
        assert_eq!(r.state(130, l), NodeState::Down);
        // A clock behind the writer's is not a reason to distrust it.
        assert_eq!(r.state(50, l), NodeState::Up);
    }

    #[test]
    fn round_trips_and_answers_roles_and_endpoints() {
        let r = record(5);
        let (key, value) = r.to_kv();
        assert_eq!(key, "node/2");
        assert_eq!(NodeRecord::from_json(&value), Some(r.clone()));
        assert!(r.has_role("compute") && !r.has_role("storage"));
        assert_eq!(r.endpoint("nbd"), Some("127.0.0.1:10809"));
        assert_eq!(r.endpoint("s3"), None);
    }
}
