//! The write path: space reservation, concurrent record writes, group
//! commit, segment rolling, checkpoints and close.
//!
//! A write (1) encodes its payload into a DMA buffer, (2) reserves space and
//! a seq synchronously (bumping the append offset; rolling to a new segment
//! when the record does not fit), (3) stamps the header with seq and segment
//! nonce, then hands the rest to a detached task so a caller that goes away
//! cannot leave a half-applied write: (4) `write_at`, (5) wait for an
//! fdatasync that started after the write completed (one sync round at a
//! time; writers arriving during a round share the next one), (6) apply the
//! change to the index, (7) release the in-flight count.

use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::checkpoint::{self, Snapshot};
use crate::error::{CheckpointError, CloseError, IoError, WriteError};
use crate::index::{Index, Location};
use crate::limits::{
    RECORDS_IN_FLIGHT_MAX, RECORD_HEADER_BYTES, RESERVED_BYTES_IN_FLIGHT_MAX, SEGMENT_HEADER_BYTES,
};
use crate::record::{self, RecordHeader, RecordKind};
use crate::segment::Segment;
use crate::store::{bump, State, Store};

/// Space and seq reserved for one record. Counts as in flight (blocking a
/// checkpoint snapshot) until dropped, which happens after the index change.
pub(crate) struct Reservation {
    store: Rc<Store>,
    pub(crate) segment: Rc<Segment>,
    pub(crate) offset: u64,
    pub(crate) record_bytes: u64,
    pub(crate) seq: u64,
}

impl Reservation {
    pub(crate) fn location(&self) -> Location {
        Location {
            segment: self.segment.clone(),
            offset: self.offset,
            record_bytes: self.record_bytes,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        {
            let mut w = self.store.writer.borrow_mut();
            w.in_flight -= 1;
            w.reserved_bytes -= self.record_bytes;
        }
        self.store.writer_changed.notify_all();
    }
}

/// How the header of a record being committed is filled in.
#[derive(Clone, Copy)]
enum Stamp {
    /// A new record: a fresh seq is assigned at reservation.
    New {
        kind: RecordKind,
        payload_len: u32,
        payload_crc: u32,
    },
    /// A compaction copy: same bytes and seq, only the nonce changes.
    Copy { seq: u64 },
}

/// Resets `rolling` if a roll is abandoned (its caller dropped).
struct RollGuard<'a>(&'a Store);

impl Drop for RollGuard<'_> {
    fn drop(&mut self) {
        self.0.writer.borrow_mut().rolling = false;
        self.0.writer_changed.notify_all();
    }
}

/// Lifts the write pause of a checkpoint when dropped.
pub(crate) struct PauseGuard<'a>(&'a Store);

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        self.0.writer.borrow_mut().paused = false;
        self.0.writer_changed.notify_all();
    }
}

/// What a checkpoint covered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CheckpointInfo {
    pub(crate) replay_segment: u64,
}

impl Store {
    /// Commits a new record whose payload is already encoded in `buffer`.
    pub(crate) async fn commit_new<T: 'static>(
        &self,
        buffer: DmaBuffer,
        kind: RecordKind,
        payload_len: usize,
        apply: impl FnOnce(&Store, &Reservation) -> T + 'static,
    ) -> Result<(u64, T), WriteError> {
        if matches!(kind, RecordKind::ObjectPut | RecordKind::ChunkPut) {
            self.check_room()?;
        }
        let payload = &buffer.as_bytes()[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len];
        let stamp = Stamp::New {
            kind,
            payload_len: payload_len as u32,
            payload_crc: crc32c::crc32c(payload),
        };
        self.commit(buffer, stamp, apply).await
    }

    /// Commits a verbatim copy of a record (compaction), keeping its seq.
    pub(crate) async fn commit_copy<T: 'static>(
        &self,
        buffer: DmaBuffer,
        seq: u64,
        apply: impl FnOnce(&Store, &Reservation) -> T + 'static,
    ) -> Result<(u64, T), WriteError> {
        self.commit(buffer, Stamp::Copy { seq }, apply).await
    }

    async fn commit<T: 'static>(
        &self,
        mut buffer: DmaBuffer,
        stamp: Stamp,
        apply: impl FnOnce(&Store, &Reservation) -> T + 'static,
    ) -> Result<(u64, T), WriteError> {
        let copy_seq = match stamp {
            Stamp::New { .. } => None,
            Stamp::Copy { seq } => Some(seq),
        };
        let reservation = self.reserve(buffer.len() as u64, copy_seq).await?;
        let nonce = reservation.segment.nonce;
        match stamp {
            Stamp::New {
                kind,
                payload_len,
                payload_crc,
            } => {
                let header = RecordHeader {
                    kind,
                    payload_len,
                    payload_crc,
                    seq: reservation.seq,
                    nonce,
                };
                header.encode(buffer.as_bytes_mut());
            }
            Stamp::Copy { .. } => record::restamp_nonce(buffer.as_bytes_mut(), nonce),
        }
        let store = self.rc()?;
        // From here on the write finishes even if the caller goes away.
        let task =
            glommio::spawn_local(
                async move { store.finish_write(buffer, reservation, apply).await },
            );
        task.detach().await.unwrap_or(Err(WriteError::Cancelled))
    }

    /// Reserves `record_bytes` at the append position (rolling to a new
    /// segment when they do not fit) and assigns a seq (or keeps `copy_seq`).
    async fn reserve(
        &self,
        record_bytes: u64,
        copy_seq: Option<u64>,
    ) -> Result<Reservation, WriteError> {
        // Validated configurations never hit this; it keeps a record that
        // cannot fit even a fresh segment from rolling forever.
        let fits = self.config.segment_bytes - SEGMENT_HEADER_BYTES;
        if record_bytes > fits {
            return Err(WriteError::TooLarge {
                what: "record",
                bytes: record_bytes as usize,
                max: fits as usize,
            });
        }
        let store = self.rc()?;
        loop {
            self.check_writable()?;
            let changed = self.writer_changed.listen();
            let roll_to = {
                let mut w = self.writer.borrow_mut();
                let over_budget = w.in_flight > 0
                    && w.reserved_bytes + record_bytes > RESERVED_BYTES_IN_FLIGHT_MAX;
                if w.paused || w.rolling || w.in_flight >= RECORDS_IN_FLIGHT_MAX || over_budget {
                    None
                } else if w.append_offset + record_bytes <= w.active.capacity {
                    let offset = w.append_offset;
                    w.append_offset += record_bytes;
                    w.in_flight += 1;
                    w.reserved_bytes += record_bytes;
                    let seq = copy_seq.unwrap_or_else(|| {
                        w.next_seq += 1;
                        w.next_seq - 1
                    });
                    let segment = w.active.clone();
                    return Ok(Reservation {
                        store,
                        segment,
                        offset,
                        record_bytes,
                        seq,
                    });
                } else {
                    w.rolling = true;
                    Some(w.next_segment_id)
                }
            };
            match roll_to {
                None => changed.await,
                Some(id) => self.roll(id).await?,
            }
        }
    }

    /// Creates segment `id` and makes it the active one.
    async fn roll(&self, id: u64) -> Result<(), WriteError> {
        let _rolling = RollGuard(self);
        self.writer.borrow_mut().next_segment_id = id + 1;
        let segment = Rc::new(
            self.with_reserve(|| Segment::create(&self.config.dir, id, self.config.segment_bytes))
                .await?,
        );
        self.sync_directory("sync store directory after creating a segment")
            .await?;
        self.segments.borrow_mut().insert(id, segment.clone());
        let mut w = self.writer.borrow_mut();
        w.active = segment;
        w.append_offset = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    pub(crate) async fn sync_directory(&self, op: &'static str) -> Result<(), IoError> {
        self.directory
            .sync()
            .await
            .map_err(|e| IoError::new(op, &self.config.dir, e))
    }

    async fn finish_write<T>(
        &self,
        buffer: DmaBuffer,
        reservation: Reservation,
        apply: impl FnOnce(&Store, &Reservation) -> T,
    ) -> Result<(u64, T), WriteError> {
        let expected = buffer.len();
        let segment = reservation.segment.clone();
        // Tests simulating power loss: the bytes this write replaces, traced
        // once it completed (a sync that started before it does not cover it).
        #[cfg(test)]
        let traced = {
            let trace = self.sync.borrow().trace.clone();
            match trace {
                Some(trace) => {
                    let old = segment
                        .file
                        .read_at_aligned(reservation.offset, expected)
                        .await
                        .map(|r| r.to_vec())
                        .unwrap_or_default();
                    Some((trace, old))
                }
                None => None,
            }
        };
        let written = segment
            .file
            .write_at(buffer, reservation.offset)
            .await
            .map_err(|e| IoError::new("write record", &segment.path, e))?;
        if written != expected {
            let (path, offset) = (segment.path.clone(), reservation.offset);
            return Err(WriteError::ShortWrite {
                path,
                offset,
                written,
                expected,
            });
        }
        #[cfg(test)]
        if let Some((trace, old)) = traced {
            trace.write(&segment.path, reservation.offset, expected, old);
        }
        bump(&self.counters.records_written, 1);
        bump(&self.counters.bytes_written, expected as u64);
        self.wait_durable(&segment).await?;
        let out = apply(self, &reservation);
        let seq = reservation.seq;
        drop(reservation);
        self.note_appended(expected as u64);
        Ok((seq, out))
    }

    /// Returns once an fdatasync of `segment` that started after this call
    /// has completed. One sync round runs at a time; whoever finds none
    /// running leads the next round for everyone waiting.
    async fn wait_durable(&self, segment: &Rc<Segment>) -> Result<(), WriteError> {
        let target = {
            let mut s = self.sync.borrow_mut();
            s.dirty.insert(segment.id, segment.clone());
            s.started + 1
        };
        loop {
            let done = self.sync_done.listen();
            let running = {
                let s = self.sync.borrow();
                if s.poisoned {
                    return Err(WriteError::Poisoned);
                }
                if s.completed >= target {
                    return Ok(());
                }
                s.running
            };
            if running {
                done.await;
            } else {
                self.run_sync_round().await;
            }
        }
    }

    /// One group-commit round: fdatasync every segment written since the
    /// previous round. A failure poisons the store (fsync errors cannot be
    /// retried safely).
    async fn run_sync_round(&self) {
        let (number, dirty) = {
            let mut s = self.sync.borrow_mut();
            s.running = true;
            s.started += 1;
            (s.started, std::mem::take(&mut s.dirty))
        };
        #[cfg(test)]
        {
            let hold = self.sync.borrow().hold.clone();
            if let Some(hold) = hold {
                hold.wait().await;
            }
        }
        let mut failure = None;
        for segment in dirty.values() {
            #[cfg(test)]
            let (trace, mark) = {
                let trace = self.sync.borrow().trace.clone();
                let mark = trace.as_ref().map_or(0, |t| t.begin_sync());
                (trace, mark)
            };
            if let Err(e) = segment.file.fdatasync().await {
                failure = Some(IoError::new("fdatasync segment", &segment.path, e));
                break;
            }
            #[cfg(test)]
            if let Some(trace) = trace {
                trace.synced(&segment.path, mark);
            }
        }
        bump(&self.counters.syncs, 1);
        let mut s = self.sync.borrow_mut();
        s.running = false;
        match failure {
            None => s.completed = number,
            Some(error) => {
                tracing::error!(error = %error, cause = %error.source, "object store poisoned: no more writes");
                s.poisoned = true;
            }
        }
        drop(s);
        self.sync_done.notify_all();
    }

    /// Counts appended bytes and starts an automatic checkpoint when due.
    fn note_appended(&self, bytes: u64) {
        let every = self.config.checkpoint_every_bytes;
        let due = {
            let mut w = self.writer.borrow_mut();
            w.bytes_since_checkpoint += bytes;
            every > 0 && w.bytes_since_checkpoint >= every
        };
        if !due || self.checkpoint_scheduled.get() || self.state.get() != State::Open {
            return;
        }
        let Ok(store) = self.rc() else { return };
        self.checkpoint_scheduled.set(true);
        glommio::spawn_local(async move {
            let result = store.checkpoint().await;
            store.checkpoint_scheduled.set(false);
            if let Err(error) = result {
                bump(&store.counters.checkpoint_failures, 1);
                tracing::warn!(error = %error, dir = %store.config.dir.display(), "automatic checkpoint failed");
            }
        })
        .detach();
    }

    /// Blocks new reservations and waits until every reserved record has been
    /// applied (or failed). Writes resume when the guard drops.
    pub(crate) async fn pause_writes(&self) -> PauseGuard<'_> {
        self.writer.borrow_mut().paused = true;
        let guard = PauseGuard(self);
        loop {
            let changed = self.writer_changed.listen();
            if self.writer.borrow().in_flight == 0 {
                return guard;
            }
            changed.await;
        }
    }

    /// Writes a checkpoint of the whole index, so that recovery replays only
    /// the log after this point. Writes pause only while the index is
    /// snapshotted (reference-count copies), not while the file is written.
    pub async fn checkpoint(&self) -> Result<(), CheckpointError> {
        if self.state.get() == State::Closed {
            return Err(CheckpointError::Closed);
        }
        self.checkpoint_now().await.map(|_| ())
    }

    pub(crate) async fn checkpoint_now(&self) -> Result<CheckpointInfo, CheckpointError> {
        let _one_at_a_time = self.checkpoint_lock.lock().await;
        let snapshot = {
            let _paused = self.pause_writes().await;
            self.snapshot()
        };
        let info = CheckpointInfo {
            replay_segment: snapshot.replay_segment,
        };
        let image = snapshot.into_image();
        self.with_reserve(|| checkpoint::write_checkpoint(&self.config.dir, &image))
            .await?;
        self.sync_directory("sync store directory after a checkpoint")
            .await?;
        self.remove_checkpoints_before(image.max_seq).await?;
        bump(&self.counters.checkpoints, 1);
        Ok(info)
    }

    fn snapshot(&self) -> Snapshot {
        let index = self.index.borrow();
        let mut w = self.writer.borrow_mut();
        w.bytes_since_checkpoint = 0;
        let live = self
            .segments
            .borrow()
            .keys()
            .map(|id| (*id, index.live_bytes(*id)))
            .filter(|(_, live)| *live > 0)
            .collect();
        Snapshot {
            max_seq: w.next_seq - 1,
            replay_segment: w.active.id,
            replay_offset: w.append_offset,
            live,
            objects: index
                .objects()
                .map(|(bucket, key, e)| (bucket, key.clone(), e.clone()))
                .collect(),
            chunks: index.chunks().map(|(id, e)| (*id, e.clone())).collect(),
        }
    }

    async fn remove_checkpoints_before(&self, seq: u64) -> Result<(), IoError> {
        let dir = &self.config.dir;
        let entries =
            std::fs::read_dir(dir).map_err(|e| IoError::new("list store directory", dir, e))?;
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(|e| IoError::new("list store directory", dir, e))?;
            let name = entry.file_name();
            let older = name
                .to_str()
                .and_then(checkpoint::parse_checkpoint_file_name)
                .is_some_and(|s| s < seq);
            if older {
                let path = entry.path();
                glommio::io::remove(&path)
                    .await
                    .map_err(|e| IoError::new("remove old checkpoint", &path, e))?;
                removed = true;
            }
        }
        if removed {
            self.sync_directory("sync store directory after removing checkpoints")
                .await?;
        }
        Ok(())
    }

    /// Stops accepting writes, waits for writes in flight and a running
    /// compaction, writes a final checkpoint and releases the index and
    /// segment files (descriptors close when the last handle drops).
    pub async fn close(&self) -> Result<(), CloseError> {
        let _no_compaction = self.compact_lock.lock().await;
        if self.state.get() != State::Open {
            return Ok(());
        }
        self.state.set(State::Closing);
        self.writer_changed.notify_all();
        let result = self.checkpoint_now().await;
        self.state.set(State::Closed);
        *self.index.borrow_mut() = Index::default();
        self.segments.borrow_mut().clear();
        self.sync.borrow_mut().dirty.clear();
        result?;
        Ok(())
    }
}
