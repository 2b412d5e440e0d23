//! `photon-object`: the per-shard durable store of LightningStor.
//!
//! **Owns**: one directory per shard holding append-only, checksummed
//! segment files (written with glommio `DmaFile`: O_DIRECT over io_uring),
//! the in-memory index over them (objects sorted by `(bucket, key)`, chunks
//! by `(blob, index)`), group commit, recovery after a crash, rkyv
//! checkpoints of the index (loaded with memmap2), and compaction.
//!
//! **Never imports**: `photon-core`, anything S3 or HTTP, networking, or
//! other shards. The layer above (LightningStor) decides which shard stores
//! what, spreads a large object's chunks over shards, and gives meaning to
//! the opaque object meta; this crate only stores bytes durably.
//!
//! A [`Store`] lives on one glommio `LocalExecutor` (it is `!Send`) and is
//! shared as `Rc<Store>`:
//! ```no_run
//! # use photon_object::{Store, StoreConfig, no_precondition};
//! glommio::LocalExecutorBuilder::default().make().unwrap().run(async {
//!     let (store, _report) = Store::open(StoreConfig::new("/var/lib/photon/shard-0")).await.unwrap();
//!     store.put_object(1, "photos/cat.jpg", b"meta".to_vec(), b"data", no_precondition).await.unwrap();
//!     let handle = store.get_object(1, "photos/cat.jpg").unwrap();
//!     assert_eq!(store.read_inline(&handle, 0, 4).await.unwrap(), b"data");
//!     store.close().await.unwrap();
//! });
//! ```
//!
//! Guarantees: a mutating call returns only after its record and an
//! fdatasync that started after the record was written have completed, and
//! the index shows a change only after that; every byte returned by a read
//! was verified against a crc32c; recovery tolerates torn tails and holes
//! left by concurrent writes. The format is described in [`record`] and in
//! `docs/design/0006-object-store-format.md`.

mod checkpoint;
mod compact;
mod config;
mod error;
mod index;
pub mod limits;
pub mod record;
mod recovery;
mod segment;
mod store;
#[cfg(test)]
mod tests;
mod write;

pub use compact::{run_compactor, CompactReport};
pub use config::{ConfigError, StoreConfig};
pub use error::{
    CheckpointError, CloseError, CompactError, IoError, OpenSegmentError, OpenStoreError,
    PutObjectError, ReadError, WriteError,
};
pub use index::ObjectInfo;
pub use store::{no_precondition, ObjectHandle, PutOutcome, RecoveryReport, Store, StoreStats};
