//! `Store::open`: list the directory, open segments, load the newest valid
//! checkpoint, replay the log after it, and find the append position.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use glommio::io::Directory;

use crate::checkpoint::{self, LoadCheckpointError};
use crate::config::StoreConfig;
use crate::error::{IoError, OpenStoreError};
use crate::index::{Index, Replay};
use crate::limits::SEGMENT_HEADER_BYTES;
use crate::segment::{self, Segment};
use crate::store::{Counters, RecoveryReport, State, Store, SyncState, WriterState};
use photon_core::local_sync::{AsyncMutex, KeyLocks, Signal};

/// The files of a store directory.
#[derive(Default)]
struct Listing {
    segments: BTreeMap<u64, PathBuf>,
    checkpoints: BTreeMap<u64, PathBuf>,
    /// Temporary files of an interrupted segment creation or checkpoint.
    leftovers: Vec<PathBuf>,
}

/// The space reserve's file in the store directory.
const RESERVE_FILE: &str = "space.reserve";

fn list_directory(dir: &Path) -> Result<Listing, IoError> {
    let mut listing = Listing::default();
    let entries =
        std::fs::read_dir(dir).map_err(|e| IoError::new("list store directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| IoError::new("list store directory", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(id) = segment::parse_segment_file_name(&name) {
            listing.segments.insert(id, entry.path());
        } else if let Some(seq) = checkpoint::parse_checkpoint_file_name(&name) {
            listing.checkpoints.insert(seq, entry.path());
        } else if let Some(stem) = name.strip_suffix(".tmp") {
            let ours = segment::parse_segment_file_name(stem).is_some()
                || checkpoint::parse_checkpoint_file_name(stem).is_some();
            if ours {
                listing.leftovers.push(entry.path());
            }
        }
    }
    Ok(listing)
}

/// The index and append state rebuilt from disk.
struct Recovered {
    index: Index,
    next_seq: u64,
    append_offset: u64,
}

/// Loads the newest checkpoint that validates (older ones only exist after
/// a crash between writing a checkpoint and deleting its predecessors).
fn load_newest_checkpoint(
    checkpoints: &BTreeMap<u64, PathBuf>,
    segments: &BTreeMap<u64, Rc<Segment>>,
    report: &mut RecoveryReport,
) -> Result<Option<checkpoint::LoadedCheckpoint>, OpenStoreError> {
    let by_id: HashMap<u64, Rc<Segment>> =
        segments.iter().map(|(id, s)| (*id, s.clone())).collect();
    for path in checkpoints.values().rev() {
        match checkpoint::load_checkpoint(path, &by_id) {
            Ok(loaded) => return Ok(Some(loaded)),
            Err(LoadCheckpointError::MissingSegment(segment)) => {
                return Err(OpenStoreError::MissingSegment {
                    checkpoint: path.clone(),
                    segment,
                });
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "checkpoint rejected");
                report.checkpoints_rejected += 1;
            }
        }
    }
    Ok(None)
}

/// Rebuilds the index: checkpoint (if any) plus a scan of every segment from
/// the checkpoint's replay position on (or of all segments).
async fn recover(
    segments: &BTreeMap<u64, Rc<Segment>>,
    checkpoints: &BTreeMap<u64, PathBuf>,
    report: &mut RecoveryReport,
) -> Result<Recovered, OpenStoreError> {
    let loaded = load_newest_checkpoint(checkpoints, segments, report)?;
    let first_segment = segments.keys().next().copied().unwrap_or(0);
    let (mut index, checkpoint_seq, start_segment, start_offset) = match loaded {
        Some(c) => {
            report.checkpoint_seq = Some(c.max_seq);
            (c.index, c.max_seq, c.replay_segment, c.replay_offset)
        }
        None => (Index::default(), 0, first_segment, SEGMENT_HEADER_BYTES),
    };
    let mut replay = Replay::new(checkpoint_seq);
    let newest = segments.keys().last().copied();
    let mut append_offset = SEGMENT_HEADER_BYTES;
    for (id, segment) in segments.range(start_segment..) {
        let start = if *id == start_segment {
            start_offset
        } else {
            SEGMENT_HEADER_BYTES
        };
        let summary = segment
            .scan(start, |record| replay.apply(&mut index, segment, record))
            .await?;
        report.bytes_invalid += summary.bytes_invalid;
        report.bytes_unwritten += summary.bytes_unwritten;
        if Some(*id) == newest {
            append_offset = summary.end_of_last_record.unwrap_or(start).max(start);
        }
    }
    report.records_replayed = replay.records_applied;
    report.records_skipped = replay.records_skipped;
    Ok(Recovered {
        index,
        next_seq: replay.max_seq + 1,
        append_offset,
    })
}

impl Store {
    /// Opens (or creates) the store in `config.dir` and recovers every
    /// acknowledged write: newest valid checkpoint, then a scan of the log
    /// after it that tolerates torn tails and holes.
    pub async fn open(config: StoreConfig) -> Result<(Rc<Store>, RecoveryReport), OpenStoreError> {
        let started = Instant::now();
        config.validate()?;
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| IoError::new("create store directory", &dir, e))?;
        let directory = Directory::open(&dir)
            .await
            .map_err(|e| IoError::new("open store directory", &dir, e))?;
        let listing = list_directory(&dir)?;
        for path in &listing.leftovers {
            glommio::io::remove(path)
                .await
                .map_err(|e| IoError::new("remove leftover file", path, e))?;
        }
        let mut segments = BTreeMap::new();
        for (id, path) in listing.segments {
            segments.insert(id, Rc::new(Segment::open(path, id).await?));
        }
        let mut report = RecoveryReport::default();
        let recovered = recover(&segments, &listing.checkpoints, &mut report).await?;
        let (active, append_offset) = match segments.values().last() {
            Some(newest) => (newest.clone(), recovered.append_offset),
            None => {
                let first = Rc::new(Segment::create(&dir, 1, config.segment_bytes).await?);
                directory
                    .sync()
                    .await
                    .map_err(|e| IoError::new("sync store directory", &dir, e))?;
                segments.insert(first.id, first.clone());
                (first, SEGMENT_HEADER_BYTES)
            }
        };
        let writer = WriterState {
            next_segment_id: active.id + 1,
            active,
            append_offset,
            next_seq: recovered.next_seq,
            rolling: false,
            paused: false,
            in_flight: 0,
            reserved_bytes: 0,
            bytes_since_checkpoint: 0,
        };
        report.objects = recovered.index.object_count() as u64;
        report.chunks = recovered.index.chunk_count() as u64;
        report.segments = segments.len() as u64;
        let reserve = match config.reserve_bytes {
            0 => None,
            bytes => Some(
                photon_core::reserve::SpaceReserve::new(
                    dir.join(RESERVE_FILE),
                    bytes,
                    &format!("object store {}", dir.display()),
                )
                .map_err(|e| IoError::new("create space reserve", &dir, e))?,
            ),
        };
        let store = Store::assemble(
            config,
            directory,
            recovered.index,
            segments,
            writer,
            reserve,
        );
        report.elapsed = started.elapsed();
        tracing::info!(dir = %store.config.dir.display(), ?report, "object store opened");
        Ok((store, report))
    }

    /// Builds the store around recovered state.
    fn assemble(
        config: StoreConfig,
        directory: Directory,
        index: Index,
        segments: BTreeMap<u64, Rc<Segment>>,
        writer: WriterState,
        reserve: Option<photon_core::reserve::SpaceReserve>,
    ) -> Rc<Store> {
        Rc::new_cyclic(|this| Store {
            config,
            this: this.clone(),
            directory,
            index: RefCell::new(index),
            segments: RefCell::new(segments),
            writer: RefCell::new(writer),
            writer_changed: Signal::default(),
            sync: RefCell::new(SyncState::default()),
            sync_done: Signal::default(),
            object_locks: KeyLocks::default(),
            chunk_locks: KeyLocks::default(),
            checkpoint_lock: AsyncMutex::default(),
            compact_lock: AsyncMutex::default(),
            counters: Counters::default(),
            state: Cell::new(State::Open),
            checkpoint_scheduled: Cell::new(false),
            reserve,
        })
    }
}
