//! The store: public API, state, and the object and chunk operations.
//! Writing machinery (reservation, group commit, checkpoints) is in
//! `write.rs`, recovery in `recovery.rs`, compaction in `compact.rs`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use glommio::io::{Directory, DmaBuffer};

use crate::config::StoreConfig;
use crate::error::{PutObjectError, ReadError, WriteError};
use crate::index::{ChunkEntry, Index, Location, ObjectEntry, ObjectInfo};
use crate::limits::{CHUNK_DELETE_BATCH_MAX, KEY_BYTES_MAX, RECORD_HEADER_BYTES};
use crate::record::{self, DataOwner, RecordKind};
use crate::segment::{DataExpectation, Segment};
use photon_core::local_sync::{AsyncMutex, KeyGuard, KeyLocks, Signal};

/// What [`Store::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Objects in the index after recovery.
    pub objects: u64,
    /// Chunks in the index after recovery.
    pub chunks: u64,
    /// Segment files.
    pub segments: u64,
    /// Records applied from the log (after the checkpoint, if any).
    pub records_replayed: u64,
    /// Valid records skipped because the checkpoint already covers them.
    pub records_skipped: u64,
    /// Non-zero 4 KiB blocks that were neither a record nor inside one
    /// (torn writes, corruption).
    pub bytes_invalid: u64,
    /// All-zero 4 KiB blocks scanned outside records (never written).
    pub bytes_unwritten: u64,
    /// Max seq of the checkpoint recovery started from, if one was used.
    pub checkpoint_seq: Option<u64>,
    /// Checkpoint files that failed validation and were passed over.
    pub checkpoints_rejected: u64,
    /// Time spent in `open`.
    pub elapsed: Duration,
}

/// Counters and sizes of a store. `records_written / syncs` is the group
/// commit factor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Records written since open (puts, deletes, compaction copies).
    pub records_written: u64,
    /// fdatasync rounds since open (one round may sync several segments).
    pub syncs: u64,
    /// Record bytes written since open, padding included.
    pub bytes_written: u64,
    /// Segment files.
    pub segments: u64,
    /// Bytes of all segment files.
    pub segment_bytes: u64,
    /// Bytes of records that are current in the index.
    pub live_bytes: u64,
    /// Objects in the index.
    pub objects: u64,
    /// Chunks in the index.
    pub chunks: u64,
    /// Segments freed by compaction since open.
    pub compactions: u64,
    /// Checkpoints written since open.
    pub checkpoints: u64,
    /// Automatic checkpoints that failed since open.
    pub checkpoint_failures: u64,
}

/// What [`Store::put_object`] replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// Seq of the new version.
    pub seq: u64,
    /// The version it replaced, if any.
    pub previous: Option<ObjectInfo>,
}

/// A resolved object version: its info plus where its record lives. Holds
/// the segment open, so reading through it works even if compaction moves
/// the record meanwhile.
#[derive(Clone)]
pub struct ObjectHandle {
    bucket: u64,
    key: Rc<str>,
    info: ObjectInfo,
    location: Location,
}

impl ObjectHandle {
    /// Bucket id.
    pub fn bucket(&self) -> u64 {
        self.bucket
    }

    /// Object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Seq, meta and inline length.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// Seq of this version.
    pub fn seq(&self) -> u64 {
        self.info.seq
    }

    /// The opaque meta.
    pub fn meta(&self) -> &[u8] {
        &self.info.meta
    }

    /// Bytes of inline data.
    pub fn inline_len(&self) -> u64 {
        self.info.inline_len
    }
}

impl fmt::Debug for ObjectHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectHandle")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("info", &self.info)
            .field("segment", &self.location.segment.id)
            .field("offset", &self.location.offset)
            .finish()
    }
}

/// A precondition that accepts every write, for unconditional puts:
/// `store.put_object(bucket, key, meta, data, no_precondition)`.
pub fn no_precondition(_current: Option<&ObjectInfo>) -> Result<(), Infallible> {
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Open,
    Closing,
    Closed,
}

/// Append state: where the next record goes.
pub(crate) struct WriterState {
    pub(crate) active: Rc<Segment>,
    pub(crate) append_offset: u64,
    pub(crate) next_seq: u64,
    pub(crate) next_segment_id: u64,
    pub(crate) rolling: bool,
    pub(crate) paused: bool,
    pub(crate) in_flight: usize,
    /// Bytes of the reservations in flight (see `RESERVED_BYTES_IN_FLIGHT_MAX`).
    pub(crate) reserved_bytes: u64,
    pub(crate) bytes_since_checkpoint: u64,
}

/// Group commit state: one fdatasync round at a time; rounds are numbered.
#[derive(Default)]
pub(crate) struct SyncState {
    pub(crate) running: bool,
    pub(crate) started: u64,
    pub(crate) completed: u64,
    pub(crate) dirty: BTreeMap<u64, Rc<Segment>>,
    pub(crate) poisoned: bool,
    /// Tests hold sync rounds here to check that nothing is acknowledged
    /// before the fdatasync that covers it.
    #[cfg(test)]
    pub(crate) hold: Option<Rc<crate::tests::SyncHold>>,
    /// Tests record every record write and segment sync here to simulate
    /// a power loss.
    #[cfg(test)]
    pub(crate) trace: Option<std::sync::Arc<photon_core::testing::crash::WriteTrace>>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) records_written: Cell<u64>,
    pub(crate) syncs: Cell<u64>,
    pub(crate) bytes_written: Cell<u64>,
    pub(crate) compactions: Cell<u64>,
    pub(crate) checkpoints: Cell<u64>,
    pub(crate) checkpoint_failures: Cell<u64>,
}

pub(crate) fn bump(counter: &Cell<u64>, by: u64) {
    counter.set(counter.get() + by);
}

/// The durable store of one shard. Lives on that shard's glommio executor
/// and is shared as `Rc<Store>`.
pub struct Store {
    pub(crate) config: StoreConfig,
    pub(crate) this: Weak<Store>,
    pub(crate) directory: Directory,
    pub(crate) index: RefCell<Index>,
    pub(crate) segments: RefCell<BTreeMap<u64, Rc<Segment>>>,
    pub(crate) writer: RefCell<WriterState>,
    pub(crate) writer_changed: Signal,
    pub(crate) sync: RefCell<SyncState>,
    pub(crate) sync_done: Signal,
    pub(crate) object_locks: KeyLocks<(u64, Box<str>)>,
    pub(crate) chunk_locks: KeyLocks<(u64, u32)>,
    pub(crate) checkpoint_lock: AsyncMutex,
    pub(crate) compact_lock: AsyncMutex,
    pub(crate) counters: Counters,
    pub(crate) state: Cell<State>,
    pub(crate) checkpoint_scheduled: Cell<bool>,
    /// See [`StoreConfig::reserve_bytes`].
    pub(crate) reserve: Option<photon_core::reserve::SpaceReserve>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.config.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Store {
    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Whether `close` has run (or is running).
    pub fn is_closed(&self) -> bool {
        self.state.get() != State::Open
    }

    pub(crate) fn rc(&self) -> Result<Rc<Store>, WriteError> {
        self.this.upgrade().ok_or(WriteError::Closed)
    }

    /// Refuses a write that adds data while the space reserve is released.
    pub(crate) fn check_room(&self) -> Result<(), WriteError> {
        match &self.reserve {
            Some(r) if r.is_released() => Err(WriteError::Io(crate::error::IoError::new(
                "refuse new data while the disk is full",
                &self.config.dir,
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ))),
            _ => Ok(()),
        }
    }

    /// Takes the space reserve back once the disk has room again; returns
    /// whether it is in place (true without one). Blocks briefly (unlink,
    /// fallocate) and only when the reserve was released.
    pub fn maintain_reserve(&self) -> bool {
        self.reserve.as_ref().is_none_or(|r| r.restore())
    }

    /// Runs `op` (a repeatable file creation); if it finds the disk full,
    /// releases the space reserve and runs it once more.
    pub(crate) async fn with_reserve<T, E, F>(&self, mut op: impl FnMut() -> F) -> Result<T, E>
    where
        F: std::future::Future<Output = Result<T, E>>,
        E: std::error::Error + 'static,
    {
        match op().await {
            Err(e)
                if photon_core::health::is_no_space(&e)
                    && self.reserve.as_ref().is_some_and(|r| r.release()) =>
            {
                tracing::warn!(dir = %self.config.dir.display(), "object store: the disk is full; puts are refused until space is freed");
                op().await
            }
            other => other,
        }
    }

    pub(crate) fn check_writable(&self) -> Result<(), WriteError> {
        if self.state.get() != State::Open {
            return Err(WriteError::Closed);
        }
        if self.sync.borrow().poisoned {
            return Err(WriteError::Poisoned);
        }
        Ok(())
    }

    fn check_size(what: &'static str, bytes: usize, max: usize) -> Result<(), WriteError> {
        if bytes > max {
            return Err(WriteError::TooLarge { what, bytes, max });
        }
        Ok(())
    }

    /// A zeroed-padding DMA buffer for a record of `payload_len` bytes.
    pub(crate) fn alloc_record(&self, payload_len: usize) -> DmaBuffer {
        let bytes = record::record_bytes(payload_len) as usize;
        let mut buffer = self.writer.borrow().active.file.alloc_dma_buffer(bytes);
        buffer.as_bytes_mut()[RECORD_HEADER_BYTES + payload_len..].fill(0);
        buffer
    }

    /// Writes object `(bucket, key)` durably. Takes the key's lock, runs
    /// `precondition` on the current version (nothing is written if it
    /// refuses), writes the record, waits for a covering fdatasync and only
    /// then makes the new version visible.
    pub async fn put_object<E>(
        &self,
        bucket: u64,
        key: &str,
        meta: Vec<u8>,
        inline: &[u8],
        precondition: impl FnOnce(Option<&ObjectInfo>) -> Result<(), E>,
    ) -> Result<PutOutcome, PutObjectError<E>> {
        Self::check_size("key", key.len(), KEY_BYTES_MAX)?;
        Self::check_size("meta", meta.len(), self.config.meta_bytes_max)?;
        Self::check_size("inline data", inline.len(), self.config.inline_bytes_max)?;
        self.check_writable()?;
        let (guard, _) = self.lock_checked(bucket, key, precondition).await?;
        let payload_len =
            record::object_prefix_bytes(key.len(), meta.len(), inline.len()) + inline.len();
        let mut buffer = self.alloc_record(payload_len);
        let payload =
            &mut buffer.as_bytes_mut()[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len];
        record::encode_object_put(payload, bucket, key, &meta, inline);
        let key: Rc<str> = Rc::from(key);
        let meta: Rc<[u8]> = Rc::from(meta);
        let inline_len = inline.len() as u32;
        let (seq, previous) = self
            .commit_new(
                buffer,
                RecordKind::ObjectPut,
                payload_len,
                move |store, at| {
                    let _held = guard;
                    let entry = ObjectEntry {
                        seq: at.seq,
                        location: at.location(),
                        meta,
                        inline_len,
                    };
                    store
                        .index
                        .borrow_mut()
                        .put_object(bucket, key, entry)
                        .map(|old| old.info())
                },
            )
            .await?;
        Ok(PutOutcome { seq, previous })
    }

    /// The current version of an object (in memory, no I/O).
    pub fn get_object(&self, bucket: u64, key: &str) -> Option<ObjectHandle> {
        let index = self.index.borrow();
        let (key, entry) = index.object(bucket, key)?;
        Some(ObjectHandle {
            bucket,
            key: key.clone(),
            info: entry.info(),
            location: entry.location.clone(),
        })
    }

    /// Reads `len` bytes at `offset` of the inline data of `handle`'s version,
    /// verifying the record header, prefix and touched 64 KiB blocks.
    pub async fn read_inline(
        &self,
        handle: &ObjectHandle,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ReadError> {
        if self.is_closed() {
            return Err(ReadError::Closed);
        }
        let expect = DataExpectation {
            kind: RecordKind::ObjectPut,
            seq: handle.info.seq,
            owner: DataOwner::Object {
                bucket: handle.bucket,
                key: &handle.key,
            },
            meta_len: handle.info.meta.len(),
            data_len: handle.info.inline_len as usize,
        };
        handle
            .location
            .segment
            .read_data(handle.location.offset, &expect, offset, len)
            .await
    }

    /// Deletes an object with a durable tombstone and returns the version it
    /// removed; writes nothing and returns `None` if the object is absent.
    pub async fn delete_object(
        &self,
        bucket: u64,
        key: &str,
    ) -> Result<Option<ObjectInfo>, WriteError> {
        let always = |_: Option<&ObjectInfo>| Ok::<(), Infallible>(());
        match self.delete_object_if(bucket, key, always).await {
            Ok(removed) => Ok(removed),
            Err(PutObjectError::Write(e)) => Err(e),
            Err(PutObjectError::Precondition(never)) => match never {},
        }
    }

    /// Takes the key's lock and asks `precondition` about the current
    /// version under it (so no write slips in between).
    async fn lock_checked<E>(
        &self,
        bucket: u64,
        key: &str,
        precondition: impl FnOnce(Option<&ObjectInfo>) -> Result<(), E>,
    ) -> Result<(KeyGuard<(u64, Box<str>)>, Option<ObjectInfo>), PutObjectError<E>> {
        let guard = self.object_locks.lock((bucket, Box::from(key))).await;
        let current = self
            .index
            .borrow()
            .object(bucket, key)
            .map(|(_, e)| e.info());
        precondition(current.as_ref()).map_err(PutObjectError::Precondition)?;
        Ok((guard, current))
    }

    /// Like [`Store::delete_object`], but first asks `precondition` about
    /// the current version (under the key's lock, so no write slips in
    /// between); a refusal writes nothing.
    pub async fn delete_object_if<E>(
        &self,
        bucket: u64,
        key: &str,
        precondition: impl FnOnce(Option<&ObjectInfo>) -> Result<(), E>,
    ) -> Result<Option<ObjectInfo>, PutObjectError<E>> {
        Self::check_size("key", key.len(), KEY_BYTES_MAX)?;
        self.check_writable()?;
        let (guard, current) = self.lock_checked(bucket, key, precondition).await?;
        if current.is_none() {
            return Ok(None);
        }
        let payload_len = record::object_delete_payload_bytes(key.len());
        let mut buffer = self.alloc_record(payload_len);
        let payload =
            &mut buffer.as_bytes_mut()[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len];
        record::encode_object_delete(payload, bucket, key);
        let key: Box<str> = Box::from(key);
        let (_, removed) = self
            .commit_new(
                buffer,
                RecordKind::ObjectDelete,
                payload_len,
                move |store, _| {
                    let _held = guard;
                    store
                        .index
                        .borrow_mut()
                        .remove_object(bucket, &key)
                        .map(|old| old.info())
                },
            )
            .await?;
        Ok(removed)
    }

    /// Objects of `bucket` whose key starts with `prefix` and sorts after
    /// `after` (byte order), at most `limit`, sorted by key.
    pub fn list_objects(
        &self,
        bucket: u64,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, ObjectInfo)> {
        self.index.borrow().list(bucket, prefix, after, limit)
    }

    /// Whether `bucket` has no objects.
    pub fn bucket_is_empty(&self, bucket: u64) -> bool {
        self.index.borrow().bucket_is_empty(bucket)
    }

    /// Bucket ids that have at least one object, ascending.
    pub fn buckets(&self) -> Vec<u64> {
        self.index.borrow().buckets()
    }

    /// Writes chunk `(blob, index)` durably (replacing any previous data).
    pub async fn put_chunk(&self, blob: u64, index: u32, data: &[u8]) -> Result<(), WriteError> {
        Self::check_size("chunk", data.len(), self.config.chunk_bytes_max)?;
        self.check_writable()?;
        let guard = self.chunk_locks.lock((blob, index)).await;
        let payload_len = record::chunk_prefix_bytes(data.len()) + data.len();
        let mut buffer = self.alloc_record(payload_len);
        let payload =
            &mut buffer.as_bytes_mut()[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len];
        record::encode_chunk_put(payload, blob, index, data);
        let len = data.len() as u32;
        self.commit_new(
            buffer,
            RecordKind::ChunkPut,
            payload_len,
            move |store, at| {
                let _held = guard;
                let entry = ChunkEntry {
                    seq: at.seq,
                    location: at.location(),
                    len,
                };
                store.index.borrow_mut().put_chunk(blob, index, entry);
            },
        )
        .await?;
        Ok(())
    }

    /// Reads `len` bytes at `offset` of a chunk, verifying every 64 KiB block
    /// the range touches. `NotFound` if the chunk is absent.
    pub async fn read_chunk(
        &self,
        blob: u64,
        index: u32,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ReadError> {
        if self.is_closed() {
            return Err(ReadError::Closed);
        }
        let (seq, location, data_len) = {
            let index_ref = self.index.borrow();
            let entry = index_ref.chunk(blob, index).ok_or(ReadError::NotFound)?;
            (entry.seq, entry.location.clone(), entry.len as usize)
        };
        let expect = DataExpectation {
            kind: RecordKind::ChunkPut,
            seq,
            owner: DataOwner::Chunk { blob, index },
            meta_len: 0,
            data_len,
        };
        location
            .segment
            .read_data(location.offset, &expect, offset, len)
            .await
    }

    /// Length of a chunk, if present.
    pub fn chunk_len(&self, blob: u64, index: u32) -> Option<u64> {
        self.index
            .borrow()
            .chunk(blob, index)
            .map(|e| u64::from(e.len))
    }

    /// Deletes chunks with durable tombstones; absent ones are ignored.
    /// Returns how many chunks were deleted.
    pub async fn delete_chunks(&self, chunks: &[(u64, u32)]) -> Result<usize, WriteError> {
        self.check_writable()?;
        let mut ids = chunks.to_vec();
        ids.sort_unstable();
        ids.dedup();
        // Sorted order: concurrent multi-chunk deletes cannot deadlock.
        let mut guards = Vec::with_capacity(ids.len());
        for id in &ids {
            guards.push(self.chunk_locks.lock(*id).await);
        }
        let present: Vec<(u64, u32)> = {
            let index = self.index.borrow();
            ids.into_iter()
                .filter(|(blob, number)| index.chunk(*blob, *number).is_some())
                .collect()
        };
        let guards = Rc::new(guards);
        for batch in present.chunks(CHUNK_DELETE_BATCH_MAX) {
            let payload_len = record::chunk_delete_payload_bytes(batch.len());
            let mut buffer = self.alloc_record(payload_len);
            let payload =
                &mut buffer.as_bytes_mut()[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len];
            record::encode_chunk_delete(payload, batch);
            let (batch, held) = (batch.to_vec(), guards.clone());
            self.commit_new(
                buffer,
                RecordKind::ChunkDelete,
                payload_len,
                move |store, _| {
                    let _held = held;
                    let mut index = store.index.borrow_mut();
                    for (blob, number) in batch {
                        index.remove_chunk(blob, number);
                    }
                },
            )
            .await?;
        }
        Ok(present.len())
    }

    /// Every chunk id in the store, ascending (for the orphan sweep above).
    pub fn chunk_ids(&self) -> Vec<(u64, u32)> {
        self.index.borrow().chunk_ids()
    }

    /// Current counters and sizes.
    /// Whether a failed fdatasync stopped the store from taking writes
    /// (see `WriteError::Poisoned`).
    pub fn is_poisoned(&self) -> bool {
        self.sync.borrow().poisoned
    }

    pub fn stats(&self) -> StoreStats {
        let index = self.index.borrow();
        let segments = self.segments.borrow();
        let c = &self.counters;
        StoreStats {
            records_written: c.records_written.get(),
            syncs: c.syncs.get(),
            bytes_written: c.bytes_written.get(),
            segments: segments.len() as u64,
            segment_bytes: segments.values().map(|s| s.capacity).sum(),
            live_bytes: index.live_bytes_total(),
            objects: index.object_count() as u64,
            chunks: index.chunk_count() as u64,
            compactions: c.compactions.get(),
            checkpoints: c.checkpoints.get(),
            checkpoint_failures: c.checkpoint_failures.get(),
        }
    }
}
