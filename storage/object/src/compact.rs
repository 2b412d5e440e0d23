//! Compaction: frees sealed segments whose records are mostly overwritten
//! or deleted by copying their live records to the active segment.
//!
//! Procedure (one victim at a time):
//! 1. checkpoint C1: from now on recovery never reads the sealed segments'
//!    tombstones or dead records, and every record of a segment sealed
//!    before C1 has seq ≤ C1's seq;
//! 2. pick the sealed segment (older than C1's replay segment) with the
//!    lowest live ratio below `compact_live_ratio_max`;
//! 3. copy each live record verbatim (same seq, re-stamped with the active
//!    segment's nonce) through group commit; point the index entry at the
//!    copy only if it still points at the original (a concurrent overwrite
//!    or delete wins). Replay skips the copies (seq ≤ C1) until step 4;
//! 4. checkpoint C2, which no longer references the victim;
//! 5. unlink the victim. Readers that resolved a location in it hold the
//!    segment (`Rc`) and its open descriptor, so they still read its bytes.

use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::error::{CompactError, IoError};
use crate::index::LiveRecord;
use crate::limits::{
    COMPACTIONS_PER_ROUND_MAX, COMPACT_COPIES_IN_FLIGHT_MAX, COMPACT_COPY_BYTES_IN_FLIGHT_MAX,
    SEGMENT_HEADER_BYTES,
};
use crate::segment::Segment;
use crate::store::{bump, Store};

/// What [`Store::compact_once`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompactReport {
    /// The segment freed, if any segment qualified.
    pub victim: Option<u64>,
    /// Its live ratio when picked.
    pub live_ratio: f64,
    /// Live records copied and re-pointed.
    pub records_copied: u64,
    /// Copies not used because the entry changed meanwhile.
    pub records_superseded: u64,
    /// Bytes of the copies.
    pub bytes_copied: u64,
    /// Bytes of the deleted segment file.
    pub bytes_freed: u64,
}

impl Store {
    /// The sealed segment with the lowest live ratio below the configured
    /// maximum, among segments with an id below `below`.
    pub(crate) fn pick_victim(&self, below: u64) -> Option<(Rc<Segment>, f64)> {
        let active = self.writer.borrow().active.id;
        let index = self.index.borrow();
        let segments = self.segments.borrow();
        segments
            .range(..below)
            .filter(|(id, _)| **id != active)
            .map(|(id, segment)| {
                let usable = (segment.capacity - SEGMENT_HEADER_BYTES) as f64;
                (segment.clone(), index.live_bytes(*id) as f64 / usable)
            })
            .filter(|(_, ratio)| *ratio < self.config.compact_live_ratio_max)
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Compacts at most one segment (see the module doc for the procedure).
    /// Returns a report with `victim: None` if no segment qualified.
    pub async fn compact_once(&self) -> Result<CompactReport, CompactError> {
        let _one_at_a_time = self.compact_lock.lock().await;
        self.check_writable()?;
        if self.pick_victim(u64::MAX).is_none() {
            return Ok(CompactReport::default());
        }
        let first = self.checkpoint_now().await?;
        let Some((victim, live_ratio)) = self.pick_victim(first.replay_segment) else {
            return Ok(CompactReport::default());
        };
        let mut report = CompactReport {
            victim: Some(victim.id),
            live_ratio,
            ..CompactReport::default()
        };
        let records = self.index.borrow().records_in(victim.id);
        self.copy_records(records, &mut report).await?;
        let live_bytes = self.index.borrow().live_bytes(victim.id);
        if live_bytes != 0 {
            return Err(CompactError::StillLive {
                segment: victim.id,
                live_bytes,
            });
        }
        self.segments.borrow_mut().remove(&victim.id);
        self.index.borrow_mut().forget_segment(victim.id);
        self.checkpoint_now().await?;
        glommio::io::remove(&victim.path)
            .await
            .map_err(|e| IoError::new("remove compacted segment", &victim.path, e))?;
        self.sync_directory("sync store directory after compaction")
            .await?;
        report.bytes_freed = victim.capacity;
        bump(&self.counters.compactions, 1);
        tracing::info!(?report, "segment compacted");
        Ok(report)
    }

    /// Copies `records` in batches bounded in count and bytes; the copies of
    /// a batch run concurrently and share fdatasyncs.
    pub(crate) async fn copy_records(
        &self,
        records: Vec<LiveRecord>,
        report: &mut CompactReport,
    ) -> Result<(), CompactError> {
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let mut tasks = Vec::new();
            let mut batch_bytes = 0usize;
            while let Some(next) = records.peek() {
                let bytes = next.location.record_bytes as usize;
                let full = tasks.len() >= COMPACT_COPIES_IN_FLIGHT_MAX
                    || (!tasks.is_empty()
                        && batch_bytes + bytes > COMPACT_COPY_BYTES_IN_FLIGHT_MAX);
                if full {
                    break;
                }
                let Some(record) = records.next() else { break };
                batch_bytes += bytes;
                let store = self.rc()?;
                tasks.push(glommio::spawn_local(async move {
                    store.copy_record(record).await
                }));
            }
            let mut failure = None;
            for task in tasks {
                match task.await {
                    Ok((bytes, true)) => {
                        report.records_copied += 1;
                        report.bytes_copied += bytes;
                    }
                    Ok((bytes, false)) => {
                        report.records_superseded += 1;
                        report.bytes_copied += bytes;
                    }
                    Err(error) => failure = failure.or(Some(error)),
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Copies one record; returns its size and whether the index now points
    /// at the copy.
    async fn copy_record(&self, record: LiveRecord) -> Result<(u64, bool), CompactError> {
        let old = record.location;
        let bytes = old
            .segment
            .read_whole_record(old.offset, old.record_bytes, record.seq)
            .await?;
        let mut buffer = self
            .writer
            .borrow()
            .active
            .file
            .alloc_dma_buffer(bytes.len());
        buffer.as_bytes_mut().copy_from_slice(&bytes);
        drop(bytes);
        let key = record.key;
        let size = old.record_bytes;
        let (_, moved) = self
            .commit_copy(buffer, record.seq, move |store, at| {
                store.index.borrow_mut().relocate(&key, &old, at.location())
            })
            .await?;
        Ok((size, moved))
    }
}

/// Runs compaction every `interval` until the store is closed or dropped.
/// Spawn it on the shard's bulk task queue:
/// `glommio::spawn_local_into(run_compactor(store.clone(), interval), bulk)`.
pub async fn run_compactor(store: Rc<Store>, interval: Duration) {
    let weak: Weak<Store> = Rc::downgrade(&store);
    drop(store);
    loop {
        glommio::timer::sleep(interval).await;
        let Some(store) = weak.upgrade() else { return };
        if store.is_closed() {
            return;
        }
        for _ in 0..COMPACTIONS_PER_ROUND_MAX {
            match store.compact_once().await {
                Ok(report) if report.victim.is_some() => {}
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(error = %error, dir = %store.config.dir.display(), "compaction failed");
                    break;
                }
            }
        }
    }
}
