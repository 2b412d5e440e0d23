//! The bucket resource: S3 bucket records (`s3/bucket/<name>` in the KV) through Raft:
//! name uniqueness by a txn, deletion guarded by the record's revision. The
//! S3 service's shards and the `Buckets` RPC both come through here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use photon_records::{bucket_key, new_bucket_id, BucketRecord, BUCKET_PREFIX};

use super::txn::{self, CommitError, Plan};
use crate::kv::KeyValue;
use crate::proposer::Proposer;
use crate::raft::KvStateMachine;

/// Asks this node's storage shards whether a bucket (by id) is empty:
/// `None` when no storage answers.
pub type EmptyProbe = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Option<bool>>>> + Send + Sync>;

/// What the bucket API needs besides the KV.
#[derive(Clone, Default)]
pub struct BucketSettings {
    /// The region new buckets are created in.
    pub region: String,
    /// How to check a bucket is empty before deleting it.
    pub empty_probe: Option<EmptyProbe>,
}

impl std::fmt::Debug for BucketSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketSettings")
            .field("region", &self.region)
            .field("empty_probe", &self.empty_probe.is_some())
            .finish()
    }
}

/// Why a bucket write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketWriteError {
    #[error("already exists: bucket name is taken (owned by {tenant}/{project})")]
    Exists { tenant: String, project: String },
    #[error("not found: no such bucket")]
    NoSuchBucket,
    #[error("failed precondition: the bucket is not empty (delete its objects and uploads first)")]
    NotEmpty,
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// The bucket record `name`, from this node's applied state.
pub fn get(state: &KvStateMachine, name: &str) -> Option<(KeyValue, BucketRecord)> {
    let kv = state.get_local(bucket_key(name).as_bytes())?;
    let record = BucketRecord::from_json(&kv.value)?;
    Some((kv, record))
}

/// Every bucket record.
pub fn list(state: &KvStateMachine) -> Vec<BucketRecord> {
    state
        .scan_prefix_local(BUCKET_PREFIX.as_bytes())
        .iter()
        .filter_map(|kv| BucketRecord::from_json(&kv.value))
        .collect()
}

/// Creates bucket `name` for `tenant`/`project` unless the name is taken.
pub async fn create(
    proposer: &Proposer,
    name: &str,
    tenant: &str,
    project: &str,
    region: &str,
    now_ms: u64,
) -> Result<BucketRecord, BucketWriteError> {
    let record = BucketRecord {
        name: name.to_owned(),
        id: new_bucket_id(),
        tenant: tenant.to_owned(),
        project: project.to_owned(),
        region: region.to_owned(),
        created_ms: now_ms,
    };
    let (key, value) = record.to_kv();
    txn::update(proposer, &format!("bucket {name}"), |state| {
        if let Some((_, existing)) = get(state, name) {
            return Err(BucketWriteError::Exists {
                tenant: existing.tenant,
                project: existing.project,
            });
        }
        Ok(Plan::write(
            vec![txn::absent(key.as_bytes())],
            vec![txn::put(key.clone().into_bytes(), value.clone())],
            record.clone(),
        ))
    })
    .await
}

/// Deletes bucket `name` if it still has `id` (`None`: whatever its id).
pub async fn delete(
    proposer: &Proposer,
    name: &str,
    id: Option<u64>,
) -> Result<BucketRecord, BucketWriteError> {
    txn::update(proposer, &format!("bucket {name}"), |state| {
        let (kv, record) = get(state, name).ok_or(BucketWriteError::NoSuchBucket)?;
        if id.is_some_and(|id| id != record.id) {
            return Err(BucketWriteError::NoSuchBucket);
        }
        Ok(Plan::write(
            vec![txn::unchanged(&kv)],
            vec![txn::delete(kv.key.clone())],
            record,
        ))
    })
    .await
}

refusal!(BucketWriteError {
            Self::Exists { .. } => AlreadyExists,
            Self::NoSuchBucket => NotFound,
            Self::NotEmpty => FailedPrecondition,
            Self::Commit(_) => Internal,
});
