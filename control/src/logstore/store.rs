//! The log itself, owned by one thread: segments on disk, an in-memory index
//! of record offsets, appends, sync, truncation, purge and recovery.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::meta::{retry_on_full, sync_dir, Meta};
use super::record::{self, DecodeError, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use super::{io_error, LogConfig, LogError, LogStats, Recovery};

const SEGMENT_SUFFIX: &str = ".seg";

struct Segment {
    first_index: u64,
    path: PathBuf,
    file: File,
    /// Start offset of every record, in index order.
    offsets: Vec<u64>,
    /// Bytes of valid data (header plus records).
    len: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }

    fn contains(&self, index: u64) -> bool {
        index >= self.first_index && index < self.next_index()
    }
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("{first_index:020}{SEGMENT_SUFFIX}"))
}

/// A durable, append-only log of `(index, payload)` records.
pub struct LogStore {
    config: LogConfig,
    segments: Vec<Segment>,
    meta: Meta,
    unsynced_bytes: u64,
    poisoned: Option<String>,
    stats: LogStats,
    /// Tests block fdatasyncs here to check that nothing is acknowledged
    /// before the sync that covers it.
    #[cfg(test)]
    pub(crate) sync_gate: Option<crossbeam_channel::Receiver<()>>,
    /// Tests record every write and sync here to simulate a power loss.
    #[cfg(test)]
    pub(crate) trace: Option<std::sync::Arc<photon_core::testing::crash::WriteTrace>>,
}

impl LogStore {
    /// Opens (or creates) the log in `config.dir`, recovering from a crash.
    pub fn open(config: LogConfig) -> Result<(LogStore, Recovery), LogError> {
        config.validate()?;
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create directory", &dir, e))?;
        let meta = Meta::load(&dir)?;
        let mut store = LogStore {
            config,
            segments: Vec::new(),
            meta,
            #[cfg(test)]
            sync_gate: None,
            #[cfg(test)]
            trace: None,
            unsynced_bytes: 0,
            poisoned: None,
            stats: LogStats::default(),
        };
        let recovery = store.recover()?;
        Ok((store, recovery))
    }

    fn list_segments(&self) -> Result<Vec<u64>, LogError> {
        let dir = &self.config.dir;
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io_error("list", dir, e))? {
            let entry = entry.map_err(|e| io_error("list", dir, e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
                continue;
            };
            match stem.parse::<u64>() {
                Ok(first) if stem.len() == 20 => firsts.push(first),
                _ => {
                    return Err(LogError::Corrupt {
                        path: entry.path(),
                        offset: 0,
                        reason: "segment file name is not a 20-digit index".into(),
                    })
                }
            }
        }
        firsts.sort_unstable();
        Ok(firsts)
    }

    fn recover(&mut self) -> Result<Recovery, LogError> {
        let firsts = self.list_segments()?;
        let mut recovery = Recovery::default();
        let mut expected: Option<u64> = None;
        let count = firsts.len();
        for (i, first) in firsts.into_iter().enumerate() {
            if let Some(next) = expected {
                if first != next {
                    return Err(LogError::Corrupt {
                        path: segment_path(&self.config.dir, first),
                        offset: 0,
                        reason: format!("segment starts at index {first}, expected {next} (a segment is missing)"),
                    });
                }
            }
            let segment = self.scan_segment(first, i + 1 == count, &mut recovery)?;
            expected = Some(segment.next_index());
            self.segments.push(segment);
        }
        let purged = self.meta.purged_index;
        let gap = self
            .segments
            .first()
            .is_some_and(|s| s.first_index > purged + 1);
        if gap {
            return Err(LogError::Corrupt {
                path: self.segments[0].path.clone(),
                offset: 0,
                reason: format!(
                    "log starts at {} but only entries up to {purged} were purged",
                    self.segments[0].first_index
                ),
            });
        }
        // Segments wholly below the purge point may survive a crash between
        // the meta update and their deletion; finish the purge.
        while self.segments.len() > 1 && self.segments[0].next_index() <= purged + 1 {
            let s = self.segments.remove(0);
            std::fs::remove_file(&s.path).map_err(|e| io_error("remove", &s.path, e))?;
        }
        if self.segments.is_empty() || self.next_index() <= purged {
            for s in self.segments.drain(..) {
                std::fs::remove_file(&s.path).map_err(|e| io_error("remove", &s.path, e))?;
            }
            self.create_segment(purged + 1)?;
        }
        recovery.first_index = self.first_index();
        recovery.last_index = self.last_index();
        recovery.meta = self.meta.clone();
        Ok(recovery)
    }

    /// Reads one segment, checks every record, and cuts a torn tail.
    fn scan_segment(
        &mut self,
        first: u64,
        last_segment: bool,
        recovery: &mut Recovery,
    ) -> Result<Segment, LogError> {
        let path = segment_path(&self.config.dir, first);
        let bytes = std::fs::read(&path).map_err(|e| io_error("read", &path, e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        if bytes.len() < SEGMENT_HEADER_BYTES && last_segment {
            // Created but its header never reached the disk: rewrite it.
            file.set_len(0)
                .map_err(|e| io_error("truncate", &path, e))?;
            retry_on_full(self.config.reserve.as_deref(), || {
                file.write_all_at(&record::encode_header(), 0)
            })
            .map_err(|e| io_error("write", &path, e))?;
            file.sync_all().map_err(|e| io_error("fsync", &path, e))?;
            return Ok(Segment {
                first_index: first,
                path,
                file,
                offsets: Vec::new(),
                len: SEGMENT_HEADER_BYTES as u64,
            });
        }
        record::check_header(&bytes).map_err(|e| LogError::Corrupt {
            path: path.clone(),
            offset: 0,
            reason: e.to_string(),
        })?;
        let mut offsets = Vec::new();
        let mut at = SEGMENT_HEADER_BYTES;
        let end = loop {
            let problem = match record::decode_record(&bytes[at..]) {
                Ok(Some((r, used))) if r.index == first + offsets.len() as u64 => {
                    offsets.push(at as u64);
                    at += used;
                    continue;
                }
                Ok(Some((r, _))) => format!(
                    "record has index {}, expected {}",
                    r.index,
                    first + offsets.len() as u64
                ),
                Ok(None) if at == bytes.len() => break at,
                Ok(None) => "record is cut short".to_string(),
                Err(
                    e @ (DecodeError::Checksum { .. }
                    | DecodeError::TooLarge { .. }
                    | DecodeError::BadHeader),
                ) => e.to_string(),
            };
            // Damage is a torn write only inside the newest segment's last
            // unsynced window; anywhere earlier, acknowledged data is damaged.
            let window = self.config.unsynced_window_bytes();
            if last_segment && (bytes.len() - at) as u64 <= window {
                recovery.torn_tail = Some(super::TornTail {
                    path: path.clone(),
                    offset: at as u64,
                    bytes_dropped: (bytes.len() - at) as u64,
                    reason: problem,
                });
                file.set_len(at as u64)
                    .map_err(|e| io_error("truncate", &path, e))?;
                file.sync_all().map_err(|e| io_error("fsync", &path, e))?;
                break at;
            }
            return Err(LogError::Corrupt {
                path,
                offset: at as u64,
                reason: problem,
            });
        };
        Ok(Segment {
            first_index: first,
            path,
            file,
            offsets,
            len: end as u64,
        })
    }

    fn create_segment(&mut self, first_index: u64) -> Result<(), LogError> {
        let path = segment_path(&self.config.dir, first_index);
        let file = retry_on_full(self.config.reserve.as_deref(), || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            file.write_all_at(&record::encode_header(), 0)?;
            Ok(file)
        })
        .map_err(|e| io_error("create", &path, e))?;
        file.sync_all().map_err(|e| io_error("fsync", &path, e))?;
        #[cfg(test)]
        if let Some(trace) = &self.trace {
            trace.synced(&path, trace.begin_sync());
        }
        sync_dir(&self.config.dir)?;
        self.segments.push(Segment {
            first_index,
            path,
            file,
            offsets: Vec::new(),
            len: SEGMENT_HEADER_BYTES as u64,
        });
        Ok(())
    }

    /// First index that can be read (everything below was purged).
    pub fn first_index(&self) -> u64 {
        self.meta.purged_index + 1
    }

    /// Index of the last entry, or the purge point when the log is empty.
    pub fn last_index(&self) -> u64 {
        self.next_index() - 1
    }

    fn next_index(&self) -> u64 {
        self.segments
            .last()
            .map_or(self.meta.purged_index + 1, Segment::next_index)
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn stats(&self) -> LogStats {
        self.stats
    }

    /// Takes the space reserve back once the disk has room again.
    pub fn restore_reserve(&self) {
        if let Some(reserve) = &self.config.reserve {
            reserve.restore();
        }
    }

    fn check_poisoned(&self) -> Result<(), LogError> {
        match &self.poisoned {
            Some(reason) => Err(LogError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// After a failed write or fsync the page cache may hold data the disk
    /// does not: never retry, refuse every later write.
    fn poison<T>(&mut self, result: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(e) = &result {
            self.poisoned = Some(e.to_string());
        }
        result
    }

    /// Writes entries after the last one. Not durable until [`sync`](Self::sync).
    pub fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> Result<(), LogError> {
        self.check_poisoned()?;
        for (next, (index, payload)) in (self.next_index()..).zip(entries) {
            if *index != next {
                return Err(LogError::NonContiguous {
                    expected: next,
                    got: *index,
                });
            }
            if payload.len() > self.config.record_bytes_max {
                return Err(LogError::RecordTooLarge {
                    index: *index,
                    bytes: payload.len(),
                    max: self.config.record_bytes_max,
                });
            }
        }
        self.stats.append_requests += 1;
        let result = self.append_checked(entries);
        self.poison(result)
    }

    fn append_checked(&mut self, entries: &[(u64, Vec<u8>)]) -> Result<(), LogError> {
        let mut buf = Vec::new();
        let mut pending: Vec<u64> = Vec::new();
        for (index, payload) in entries {
            let segment_full = self
                .segments
                .last()
                .is_some_and(|s| s.len >= self.config.segment_bytes_max);
            if segment_full {
                self.flush_buffer(&mut buf, &mut pending)?;
                self.sync()?;
                self.create_segment(*index)?;
            }
            let offset = self.segments.last().map_or(0, |s| s.len);
            record::encode_record(&mut buf, *index, payload);
            pending.push(offset);
            let written = (RECORD_HEADER_BYTES + payload.len()) as u64;
            self.stats.bytes_appended += written;
            // The segment's length counts what is buffered so the roll check
            // above sees it; flush_buffer writes it out.
            if let Some(s) = self.segments.last_mut() {
                s.len += written;
            }
            if self.unsynced_bytes + buf.len() as u64 >= self.config.batch_bytes_max as u64 {
                self.flush_buffer(&mut buf, &mut pending)?;
                self.sync()?;
            }
        }
        self.flush_buffer(&mut buf, &mut pending)?;
        self.stats.entries_appended += entries.len() as u64;
        Ok(())
    }

    fn flush_buffer(&mut self, buf: &mut Vec<u8>, pending: &mut Vec<u64>) -> Result<(), LogError> {
        if buf.is_empty() {
            return Ok(());
        }
        let segment = self
            .segments
            .last_mut()
            .expect("a log always has a segment");
        let start = segment.len - buf.len() as u64;
        #[cfg(test)]
        if let Some(trace) = &self.trace {
            let old =
                photon_core::testing::crash::WriteTrace::old_bytes(&segment.file, start, buf.len());
            trace.write(&segment.path, start, buf.len(), old);
        }
        // A positioned write of the same bytes: safe to repeat.
        retry_on_full(self.config.reserve.as_deref(), || {
            segment.file.write_all_at(buf, start)
        })
        .map_err(|e| io_error("write", &segment.path, e))?;
        segment.offsets.append(pending);
        self.unsynced_bytes += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Makes every appended entry durable (one fdatasync).
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.check_poisoned()?;
        if self.unsynced_bytes == 0 {
            return Ok(());
        }
        #[cfg(test)]
        if let Some(gate) = &self.sync_gate {
            let _ = gate.recv();
        }
        let segment = self.segments.last().expect("a log always has a segment");
        #[cfg(test)]
        let mark = self.trace.as_ref().map(|t| t.begin_sync());
        let result = segment
            .file
            .sync_data()
            .map_err(|e| io_error("fdatasync", &segment.path, e));
        #[cfg(test)]
        if let (Some(trace), Some(mark), Ok(())) = (&self.trace, mark, &result) {
            trace.synced(&segment.path, mark);
        }
        self.poison(result)?;
        self.unsynced_bytes = 0;
        self.stats.syncs += 1;
        Ok(())
    }

    /// Reads entries in `range`; every record's checksum is verified.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        let mut out = Vec::with_capacity(range.end.saturating_sub(range.start).min(1024) as usize);
        for index in range {
            if index < self.first_index() {
                return Err(LogError::Purged {
                    index,
                    first: self.first_index(),
                });
            }
            let Some(segment) = self.segments.iter().rev().find(|s| s.contains(index)) else {
                return Err(LogError::Missing {
                    index,
                    last: self.last_index(),
                });
            };
            out.push((index, read_record(segment, index)?));
        }
        Ok(out)
    }

    /// Removes every entry at or after `from` (a Raft conflict), durably.
    pub fn truncate(&mut self, from: u64) -> Result<(), LogError> {
        self.check_poisoned()?;
        if from >= self.next_index() {
            return Ok(());
        }
        if from < self.first_index() {
            return Err(LogError::Purged {
                index: from,
                first: self.first_index(),
            });
        }
        let result = self.truncate_checked(from);
        self.poison(result)
    }

    fn truncate_checked(&mut self, from: u64) -> Result<(), LogError> {
        while self.segments.len() > 1 && self.segments.last().is_some_and(|s| s.first_index >= from)
        {
            let s = self.segments.pop().expect("checked non-empty");
            std::fs::remove_file(&s.path).map_err(|e| io_error("remove", &s.path, e))?;
        }
        let segment = self
            .segments
            .last_mut()
            .expect("a log always has a segment");
        let keep = from.saturating_sub(segment.first_index) as usize;
        if keep < segment.offsets.len() {
            let cut = segment.offsets[keep];
            segment.offsets.truncate(keep);
            segment.len = cut;
            segment
                .file
                .set_len(cut)
                .map_err(|e| io_error("truncate", &segment.path, e))?;
        }
        segment
            .file
            .sync_all()
            .map_err(|e| io_error("fsync", &segment.path, e))?;
        #[cfg(test)]
        if let Some(trace) = &self.trace {
            trace.synced(&segment.path, trace.begin_sync());
        }
        sync_dir(&self.config.dir)?;
        self.unsynced_bytes = 0;
        Ok(())
    }

    /// Forgets every entry at or below `upto` (covered by a snapshot). The
    /// purge point is made durable first; whole segments below it are deleted.
    pub fn purge(&mut self, upto: u64, purged_blob: Vec<u8>) -> Result<(), LogError> {
        self.check_poisoned()?;
        if upto < self.meta.purged_index {
            return Ok(());
        }
        let mut meta = self.meta.clone();
        meta.purged_index = upto;
        meta.purged = Some(purged_blob);
        let result = self.purge_checked(upto, meta);
        self.poison(result)
    }

    fn purge_checked(&mut self, upto: u64, meta: Meta) -> Result<(), LogError> {
        meta.store(&self.config.dir, self.config.reserve.as_deref())?;
        self.meta = meta;
        if upto >= self.last_index() {
            // A snapshot beyond the log's end: start an empty log after it.
            self.sync()?;
            for s in self.segments.drain(..) {
                std::fs::remove_file(&s.path).map_err(|e| io_error("remove", &s.path, e))?;
            }
            self.unsynced_bytes = 0;
            return self.create_segment(upto + 1);
        }
        while self.segments.len() > 1 && self.segments[0].next_index() <= upto + 1 {
            let s = self.segments.remove(0);
            std::fs::remove_file(&s.path).map_err(|e| io_error("remove", &s.path, e))?;
        }
        sync_dir(&self.config.dir)
    }

    /// Replaces the vote and committed blobs atomically and durably.
    pub fn save_meta(
        &mut self,
        vote: Option<Vec<u8>>,
        committed: Option<Vec<u8>>,
    ) -> Result<(), LogError> {
        self.check_poisoned()?;
        let mut meta = self.meta.clone();
        if vote.is_some() {
            meta.vote = vote;
        }
        if committed.is_some() {
            meta.committed = committed;
        }
        let result = meta.store(&self.config.dir, self.config.reserve.as_deref());
        self.poison(result)?;
        self.meta = meta;
        Ok(())
    }
}

fn read_record(segment: &Segment, index: u64) -> Result<Vec<u8>, LogError> {
    let slot = (index - segment.first_index) as usize;
    let start = segment.offsets[slot];
    let end = segment
        .offsets
        .get(slot + 1)
        .copied()
        .unwrap_or(segment.len);
    let mut buf = vec![0u8; (end - start) as usize];
    segment
        .file
        .read_exact_at(&mut buf, start)
        .map_err(|e| io_error("read", &segment.path, e))?;
    let corrupt = |reason: String| LogError::Corrupt {
        path: segment.path.clone(),
        offset: start,
        reason,
    };
    match record::decode_record(&buf) {
        Ok(Some((r, _))) if r.index == index => Ok(r.payload.to_vec()),
        Ok(Some((r, _))) => Err(corrupt(format!(
            "record has index {}, expected {index}",
            r.index
        ))),
        Ok(None) => Err(corrupt("record is cut short".into())),
        Err(e) => Err(corrupt(e.to_string())),
    }
}
