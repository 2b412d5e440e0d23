//! The S3 service's view of buckets (records under `s3/bucket/` in the
//! control-plane KV) and the messages it exchanges with the control plane.
//!
//! Each shard keeps its own copy ([`ShardCatalog`]: plain `Rc`s, touched
//! only by that shard, so no lock on the request path). The control-plane
//! thread owns the writes: its [`BucketFeed`] follows the applied KV records
//! (decoded by [`decode`]) and sends every shard the changes ([`S3Event`])
//! on the service's typed link; the shards send it [`BucketRequest`]s to
//! run through Raft.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use photon_core::link::{Change, ControlEnd, Feed, ShardEnd};
use photon_core::mailbox::MailboxSender;
pub use photon_records::{BucketRecord, BUCKET_PREFIX};

/// What the control plane sends one shard's S3 service.
#[derive(Debug)]
pub enum S3Event {
    /// Every bucket: at start, after a KV snapshot install, or to resync a
    /// shard whose mailbox was full.
    Buckets(Vec<BucketRecord>),
    /// Buckets created or deleted, in order.
    BucketChanges(Vec<Change<BucketRecord>>),
    /// Is a bucket empty? Sent to shard 0, which asks the others.
    EmptyQuery(BucketEmptyQuery),
}

/// The S3 service's link: requests up, events down.
pub type S3Link = ShardEnd<BucketRequest, S3Event>;
/// The control plane's end of [`S3Link`].
pub type S3ControlEnd = ControlEnd<BucketRequest, S3Event>;

/// One shard's copy of the buckets.
#[derive(Debug, Default)]
pub struct ShardCatalog {
    buckets: RefCell<BTreeMap<String, Rc<BucketRecord>>>,
}

impl ShardCatalog {
    pub fn get(&self, name: &str) -> Option<Rc<BucketRecord>> {
        self.buckets.borrow().get(name).cloned()
    }

    /// Every bucket, by name.
    pub fn all(&self) -> Vec<Rc<BucketRecord>> {
        self.buckets.borrow().values().cloned().collect()
    }

    /// Applies an event from the control plane (not an emptiness query).
    pub fn apply(&self, event: S3Event) {
        let mut buckets = self.buckets.borrow_mut();
        match event {
            S3Event::Buckets(all) => {
                *buckets = all
                    .into_iter()
                    .map(|r| (r.name.clone(), Rc::new(r)))
                    .collect();
            }
            S3Event::BucketChanges(changes) => {
                for change in changes {
                    match change {
                        Change::Put(record) => buckets.insert(record.name.clone(), Rc::new(record)),
                        Change::Removed(record) => buckets.remove(&record.name),
                    };
                }
            }
            S3Event::EmptyQuery(_) => {}
        }
    }
}

/// The control-plane thread's side: the applied bucket records, fed to
/// every shard.
pub type BucketFeed = Feed<BucketRecord, S3Event>;

/// A feed over the S3 service's shard mailboxes.
pub fn bucket_feed(to_shards: Vec<MailboxSender<S3Event>>) -> BucketFeed {
    Feed::new(to_shards, S3Event::Buckets, S3Event::BucketChanges)
}

/// An applied KV change under [`BUCKET_PREFIX`] as a feed change: the key
/// and the record (`None`: deleted). `None` for a key that is not a
/// bucket's or a damaged record, which are logged and skipped.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<(Vec<u8>, Option<BucketRecord>)> {
    let name = std::str::from_utf8(key.strip_prefix(BUCKET_PREFIX.as_bytes())?).ok()?;
    match value.map(BucketRecord::from_json) {
        None => Some((key.to_vec(), None)),
        Some(Some(record)) if record.name == name => Some((key.to_vec(), Some(record))),
        Some(Some(_)) => {
            tracing::warn!(bucket = name, "bucket record names another bucket");
            None
        }
        Some(None) => {
            tracing::warn!(bucket = name, "damaged bucket record");
            None
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

    fn deliver(rx: &photon_core::mailbox::MailboxReceiver<S3Event>, catalog: &ShardCatalog) {
        while let Some(event) = rx.try_recv() {
            catalog.apply(event);
        }
    }

    #[test]
    fn every_shard_copy_follows_puts_and_deletes_of_well_formed_records() {
        let (shards, control) = photon_core::link::link::<BucketRequest, S3Event>(2, 8);
        let mut feed = bucket_feed(control.to_shards);
        let copies = [ShardCatalog::default(), ShardCatalog::default()];
        let rx = [
            shards.take_receiver(0).unwrap(),
            shards.take_receiver(1).unwrap(),
        ];
        let (old_key, _) = record("old", 1).to_kv();
        feed.replace([(old_key.into_bytes(), record("old", 1))]);
        let (key, value) = record("alpha", 7).to_kv();
        feed.apply(decode(key.as_bytes(), Some(&value)));
        // A record stored under another name, or damaged, is skipped.
        let (_, other) = record("beta", 8).to_kv();
        assert!(decode(b"s3/bucket/gamma", Some(&other)).is_none());
        assert!(decode(b"s3/bucket/delta", Some(b"{")).is_none());
        assert!(decode(b"volume/x", None).is_none());
        for (rx, copy) in rx.iter().zip(&copies) {
            deliver(rx, copy);
            assert_eq!(copy.get("alpha").map(|r| r.id), Some(7));
            assert_eq!(copy.get("old").map(|r| r.id), Some(1));
        }
        feed.apply(decode(key.as_bytes(), None));
        for (rx, copy) in rx.iter().zip(&copies) {
            deliver(rx, copy);
            assert!(copy.get("alpha").is_none());
            assert_eq!(copy.all().len(), 1);
        }
    }
}
