//! The Raft log store: append-only segment files of CRC32C-framed records, a
//! writer thread that commits in groups (every append queued while one
//! fdatasync runs shares the next one, and nothing is acknowledged before its
//! fdatasync returned), truncation, purge, and the vote / committed / purge
//! point kept atomically in a small meta file.
//!
//! Recovery reads every segment and checks every record. Damage inside the
//! newest segment's last unsynced window (at most `batch_bytes_max` plus one
//! record, the only bytes that can be torn by a crash) is a torn tail: it is cut
//! and reported. Damage anywhere else is corruption of acknowledged data and
//! the log refuses to open, naming the file and offset.
//!
//! Files use buffered I/O plus fdatasync, not O_DIRECT: control-plane records
//! are small and variable, O_DIRECT would pad each group commit to 4 KiB, and
//! this runs on the control thread, not on a shard's ring.

mod meta;
mod record;
mod store;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use meta::Meta;
pub use record::{decode_record, encode_record, DecodeError, RecordRef, RECORD_PAYLOAD_BYTES_MAX};
pub use store::LogStore;
pub use writer::{AppendDone, LogState, LogWriter};

/// Settings and limits of one log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// A segment is closed (synced) and a new one started past this size.
    pub segment_bytes_max: u64,
    /// Largest payload of one entry.
    pub record_bytes_max: usize,
    /// Bytes written between two fdatasyncs at most; bounds the torn window.
    pub batch_bytes_max: usize,
    /// Append requests one group commit takes at most.
    pub batch_requests_max: usize,
    /// Requests queued for the writer thread at most (back-pressure beyond).
    pub queue_depth: usize,
    /// Space released when a write finds the disk full, so the write and
    /// the meta updates Raft cannot stop without still succeed (see
    /// `photon_core::reserve`); none in tests that do not fill a disk.
    pub reserve: Option<Arc<photon_core::reserve::SpaceReserve>>,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes_max: 64 << 20,
            record_bytes_max: 8 << 20,
            batch_bytes_max: 1 << 20,
            batch_requests_max: 1024,
            queue_depth: 4096,
            reserve: None,
        }
    }

    fn validate(&self) -> Result<(), LogError> {
        let bad = |reason: &str| Err(LogError::Config(reason.to_string()));
        if self.record_bytes_max == 0 || self.record_bytes_max > RECORD_PAYLOAD_BYTES_MAX {
            return bad("record_bytes_max must be in 1..=64 MiB");
        }
        if self.segment_bytes_max < 4096 {
            return bad("segment_bytes_max must be at least 4 KiB");
        }
        if self.batch_bytes_max == 0 || self.batch_requests_max == 0 || self.queue_depth == 0 {
            return bad("batch and queue limits must be at least 1");
        }
        Ok(())
    }

    /// How many bytes at the end of the newest segment may be unsynced.
    fn unsynced_window_bytes(&self) -> u64 {
        (self.batch_bytes_max + record::RECORD_HEADER_BYTES + self.record_bytes_max) as u64
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("log file {path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("append of index {got}, but the next index is {expected}")]
    NonContiguous { expected: u64, got: u64 },
    #[error("entry {index} has {bytes} bytes, above the limit {max}")]
    RecordTooLarge {
        index: u64,
        bytes: usize,
        max: usize,
    },
    #[error("entry {index} was purged; the log starts at {first}")]
    Purged { index: u64, first: u64 },
    #[error("entry {index} is past the end of the log ({last})")]
    Missing { index: u64, last: u64 },
    #[error("the log failed earlier and takes no more writes: {0}")]
    Poisoned(String),
    #[error("log writer queue is full ({0} requests)")]
    Busy(usize),
    #[error("the log writer has stopped")]
    Closed,
    #[error("invalid log config: {0}")]
    Config(String),
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> LogError {
    LogError::Io {
        op,
        path: path.to_path_buf(),
        source: Arc::new(source),
    }
}

/// What opening the log found.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub first_index: u64,
    pub last_index: u64,
    pub meta: Meta,
    pub torn_tail: Option<TornTail>,
}

/// An unacknowledged tail that a crash left half-written, and was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

/// Counters that show group commit at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub entries_appended: u64,
    pub bytes_appended: u64,
    pub syncs: u64,
    pub append_requests: u64,
}

#[cfg(test)]
mod tests;
