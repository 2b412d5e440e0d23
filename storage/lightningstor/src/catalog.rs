//! The node's view of S3 buckets (records under `s3/bucket/` in the
//! control-plane KV), shared by every shard, and the messages shards and the
//! control-plane thread exchange to change it.
//!
//! The control-plane thread owns the writes: it feeds [`BucketCatalog`] from
//! applied KV events and runs [`BucketRequest`]s through Raft. Shards only
//! read the catalog (an `Arc` snapshot swapped under a short lock).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use photon_iam::resources::{BucketRecord, BUCKET_PREFIX};

/// Every bucket this node knows, by name.
pub type Buckets = BTreeMap<String, Arc<BucketRecord>>;

/// The buckets as of the last applied KV change.
#[derive(Debug, Default)]
pub struct BucketCatalog {
    current: RwLock<Arc<Buckets>>,
    generation: AtomicU64,
}

impl BucketCatalog {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The current set of buckets.
    pub fn snapshot(&self) -> Arc<Buckets> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bumped on every change; shards re-read their snapshot when it moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, name: &str) -> Option<Arc<BucketRecord>> {
        self.snapshot().get(name).cloned()
    }

    /// Replaces everything (initial load, or after a KV snapshot install).
    pub fn replace(&self, records: impl IntoIterator<Item = BucketRecord>) {
        let map: Buckets = records
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies KV changes under [`BUCKET_PREFIX`]: a value puts, `None` deletes.
    pub fn apply<'a>(&self, changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Buckets::clone(&guard);
        let mut changed = false;
        for (key, value) in changes {
            let Some(name) = key.strip_prefix(BUCKET_PREFIX.as_bytes()) else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            match value.and_then(BucketRecord::from_json) {
                Some(record) if record.name == name => {
                    next.insert(name.to_owned(), Arc::new(record));
                }
                Some(_) => tracing::warn!(bucket = name, "bucket record names another bucket"),
                None if value.is_some() => tracing::warn!(bucket = name, "damaged bucket record"),
                None => {
                    next.remove(name);
                }
            }
            changed = true;
        }
        if changed {
            *guard = Arc::new(next);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// A change a shard asks the control plane to make.
#[derive(Debug, Clone)]
pub enum BucketOp {
    /// Create `name` for `tenant`/`project` unless the name is taken.
    Create {
        name: String,
        tenant: String,
        project: String,
        region: String,
    },
    /// Delete `name` if it still has id `id` (the caller checked it is empty).
    Delete { name: String, id: u64 },
}

/// Why the control plane refused a [`BucketOp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketOpError {
    #[error("the bucket name is taken by {owner_tenant}/{owner_project}")]
    Exists {
        owner_tenant: String,
        owner_project: String,
    },
    #[error("the bucket does not exist")]
    NoSuchBucket,
    #[error("the control plane cannot commit now: {0}")]
    Unavailable(String),
}

/// A [`BucketOp`] with the channel for its answer; sent from a shard to the
/// control-plane thread through `ControlHandle::send`.
#[derive(Debug)]
pub struct BucketRequest {
    pub op: BucketOp,
    pub reply: tokio::sync::oneshot::Sender<Result<BucketRecord, BucketOpError>>,
}

/// Asks the S3 service (sent by the control-plane thread to shard 0) whether
/// bucket `id` holds no objects and no multipart uploads.
#[derive(Debug)]
pub struct BucketEmptyQuery {
    pub id: u64,
    pub reply: tokio::sync::oneshot::Sender<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, id: u64) -> BucketRecord {
        BucketRecord {
            name: name.into(),
            id,
            tenant: "t".into(),
            project: "p".into(),
            region: "us-east-1".into(),
            created_ms: 1,
        }
    }

    #[test]
    fn applies_puts_and_deletes_and_bumps_the_generation() {
        let catalog = BucketCatalog::new();
        let g0 = catalog.generation();
        let (key, value) = record("alpha", 7).to_kv();
        catalog.apply([(key.as_bytes(), Some(value.as_slice()))]);
        assert_eq!(catalog.get("alpha").map(|r| r.id), Some(7));
        assert!(catalog.generation() > g0);
        // A record stored under another name is ignored.
        let (_, other) = record("beta", 8).to_kv();
        catalog.apply([(b"s3/bucket/gamma".as_slice(), Some(other.as_slice()))]);
        assert!(catalog.get("gamma").is_none());
        catalog.apply([(key.as_bytes(), None)]);
        assert!(catalog.get("alpha").is_none());
    }
}
