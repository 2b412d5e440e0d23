//! The volume resource: CoronaFS volume records (`volume/<tenant>/<project>/<name>` in the KV)
//! written through Raft: names unique per project by a txn, updates and
//! deletes guarded by the record's revision. Operations on a volume's data
//! (snapshot and clone copy its extent map, delete drops it) go to its owner
//! shard through [`ShardOps`], before the record that names the new map is
//! committed, so a committed snapshot always has its data.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use photon_records::{volume_key, VolumeKind, VolumeRecord, VOLUME_PREFIX};

use super::txn::{self, CommitError, Plan};
use crate::kv::KeyValue;
use crate::proposer::Proposer;
use crate::raft::KvStateMachine;

/// The largest volume: 1 PiB.
pub const VOLUME_BYTES_MAX: u64 = 1 << 50;
/// Block sizes a volume may have.
pub const BLOCK_SIZES: [u32; 5] = [4096, 8192, 16384, 32768, 65536];

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
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// Checks a volume size against the limits and its block size.
pub fn check_size(size: u64, block_size: u32) -> Result<(), VolumeWriteError> {
    if size == 0 || size > VOLUME_BYTES_MAX {
        return Err(VolumeWriteError::Invalid(format!(
            "size must be 1 byte to {VOLUME_BYTES_MAX} bytes (1 PiB), got {size}"
        )));
    }
    if !size.is_multiple_of(u64::from(block_size)) {
        return Err(VolumeWriteError::Invalid(format!(
            "size {size} is not a multiple of the block size {block_size}"
        )));
    }
    Ok(())
}

/// Checks a new volume's block size.
pub fn check_block_size(block_size: u32) -> Result<(), VolumeWriteError> {
    if BLOCK_SIZES.contains(&block_size) {
        Ok(())
    } else {
        Err(VolumeWriteError::Invalid(format!(
            "block size must be one of {BLOCK_SIZES:?}, got {block_size}"
        )))
    }
}

/// The record of `name` in `tenant`/`project`, from this node's applied state.
pub fn get(
    state: &KvStateMachine,
    tenant: &str,
    project: &str,
    name: &str,
) -> Option<(KeyValue, VolumeRecord)> {
    let kv = state.get_local(volume_key(tenant, project, name).as_bytes())?;
    let record = VolumeRecord::from_json(&kv.value)?;
    Some((kv, record))
}

/// Every volume and snapshot of a project.
pub fn list(state: &KvStateMachine, tenant: &str, project: &str) -> Vec<VolumeRecord> {
    let prefix = format!("{VOLUME_PREFIX}{tenant}/{project}/");
    state
        .scan_prefix_local(prefix.as_bytes())
        .iter()
        .filter_map(|kv| VolumeRecord::from_json(&kv.value))
        .collect()
}

/// Writes a new record unless its name is taken.
pub async fn insert(proposer: &Proposer, record: &VolumeRecord) -> Result<(), VolumeWriteError> {
    let (key, value) = record.to_kv();
    txn::update(proposer, &format!("volume {}", record.name), |state| {
        if get(state, &record.tenant, &record.project, &record.name).is_some() {
            return Err(VolumeWriteError::Exists(record.name.clone()));
        }
        Ok(Plan::write(
            vec![txn::absent(key.as_bytes())],
            vec![txn::put(key.clone().into_bytes(), value.clone())],
            (),
        ))
    })
    .await
}

/// Grows volume `name` (not a snapshot) to `size` bytes.
pub async fn resize(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    name: &str,
    size: u64,
) -> Result<VolumeRecord, VolumeWriteError> {
    txn::update(proposer, &format!("volume {name}"), |state| {
        let (kv, mut record) = get(state, tenant, project, name)
            .ok_or_else(|| VolumeWriteError::NoSuchVolume(name.to_owned()))?;
        if record.kind == VolumeKind::Snapshot {
            return Err(VolumeWriteError::Invalid(
                "snapshots are read-only and keep their size".into(),
            ));
        }
        check_size(size, record.block_size)?;
        if size < record.size {
            return Err(VolumeWriteError::Invalid(format!(
                "volumes only grow: {size} bytes is less than the current {} bytes",
                record.size
            )));
        }
        record.size = size;
        let (key, value) = record.to_kv();
        debug_assert_eq!(kv.key, key.as_bytes());
        Ok(Plan::replace(&kv, value, record))
    })
    .await
}

/// Deletes the record `record` (read as `kv`) unless it was deleted, or
/// deleted and created again, since.
pub async fn remove(
    proposer: &Proposer,
    kv: &KeyValue,
    record: &VolumeRecord,
) -> Result<(), VolumeWriteError> {
    txn::update(proposer, &format!("volume {}", record.name), |state| {
        let now = get(state, &record.tenant, &record.project, &record.name);
        if now.is_none_or(|(now, _)| now.create_revision != kv.create_revision) {
            return Err(VolumeWriteError::NoSuchVolume(record.name.clone()));
        }
        Ok(Plan::write(
            vec![txn::still_exists(kv)],
            vec![txn::delete(kv.key.clone())],
            (),
        ))
    })
    .await
}

refusal!(VolumeWriteError {
            Self::Exists(_) => AlreadyExists,
            Self::NoSuchVolume(_) => NotFound,
            Self::Invalid(_) => InvalidArgument,
            Self::Commit(_) => Internal,
});
