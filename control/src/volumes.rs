//! CoronaFS volume records (`volume/<tenant>/<project>/<name>` in the KV)
//! written through Raft: names unique per project by a txn, updates and
//! deletes guarded by the record's revision. Operations on a volume's data
//! (snapshot and clone copy its extent map, delete drops it) go to its owner
//! shard through [`ShardOps`], before the record that names the new map is
//! committed, so a committed snapshot always has its data.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use photon_iam::resources::{volume_key, VolumeRecord, VOLUME_PREFIX};

use crate::kv::{Compare, KeyValue, RequestOp};
use crate::records;
use crate::rpc::Proposer;

/// An operation on a volume's extent maps, run by its owner shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Copy { from: u64, to: u64 },
    Drop { id: u64 },
    Usage { id: u64 },
}

/// Runs a [`StoreOp`] on shard `shard` of this node: bytes for `Usage`, 0
/// otherwise, or why it failed.
pub type ShardOps =
    Arc<dyn Fn(u32, StoreOp) -> Pin<Box<dyn Future<Output = Result<u64, String>>>> + Send + Sync>;

/// What the volume API needs besides the KV.
#[derive(Clone, Default)]
pub struct VolumeSettings {
    /// This node's id: new volumes live here.
    pub node: u64,
    /// Shards of this node (a new volume's owner is one of them).
    pub shards: u32,
    /// How to reach the shards' stores; `None` when the node serves no volumes.
    pub ops: Option<ShardOps>,
    /// The NBD endpoint attach URIs name (known once the shards listen).
    pub nbd_address: Arc<Mutex<Option<SocketAddr>>>,
}

impl std::fmt::Debug for VolumeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeSettings")
            .field("node", &self.node)
            .field("shards", &self.shards)
            .field("ops", &self.ops.is_some())
            .finish()
    }
}

/// Why a volume write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeWriteError {
    #[error("already exists: volume {0}")]
    Exists(String),
    #[error("not found: no volume {0}")]
    NoSuchVolume(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The record of `name` in `tenant`/`project`, from this node's applied state.
pub fn get(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    name: &str,
) -> Option<(KeyValue, VolumeRecord)> {
    let kv = proposer
        .state_machine
        .get_local(volume_key(tenant, project, name).as_bytes())?;
    let record = VolumeRecord::from_json(&kv.value)?;
    Some((kv, record))
}

/// Every volume and snapshot of a project.
pub fn list(proposer: &Proposer, tenant: &str, project: &str) -> Vec<VolumeRecord> {
    let prefix = format!("{VOLUME_PREFIX}{tenant}/{project}/");
    proposer
        .state_machine
        .scan_prefix_local(prefix.as_bytes())
        .iter()
        .filter_map(|kv| VolumeRecord::from_json(&kv.value))
        .collect()
}

async fn txn(
    proposer: &Proposer,
    compare: Compare,
    op: RequestOp,
) -> Result<bool, VolumeWriteError> {
    records::guarded(proposer, compare, op)
        .await
        .map_err(VolumeWriteError::Unavailable)
}

/// Writes a new record unless its name is taken.
pub async fn insert(proposer: &Proposer, record: &VolumeRecord) -> Result<(), VolumeWriteError> {
    let (key, value) = record.to_kv();
    let absent = records::absent(key.as_bytes());
    if txn(proposer, absent, records::put(key.into_bytes(), value)).await? {
        Ok(())
    } else {
        Err(VolumeWriteError::Exists(record.name.clone()))
    }
}

/// Replaces the record read as `kv` unless it changed since.
pub async fn update(
    proposer: &Proposer,
    kv: &KeyValue,
    record: &VolumeRecord,
) -> Result<(), VolumeWriteError> {
    let (key, value) = record.to_kv();
    let put = records::put(key.into_bytes(), value);
    if txn(proposer, records::unchanged(kv), put).await? {
        Ok(())
    } else {
        Err(VolumeWriteError::Unavailable(
            "the volume changed meanwhile; retry".into(),
        ))
    }
}

/// Deletes the record read as `kv` unless it changed since.
pub async fn remove(
    proposer: &Proposer,
    kv: &KeyValue,
    record: &VolumeRecord,
) -> Result<(), VolumeWriteError> {
    let delete = records::delete(kv.key.clone());
    if txn(proposer, records::unchanged(kv), delete).await? {
        Ok(())
    } else {
        Err(VolumeWriteError::NoSuchVolume(record.name.clone()))
    }
}
