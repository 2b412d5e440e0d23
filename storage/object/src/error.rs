//! One error enum per operation. I/O errors carry the operation and path.

use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::record::{DecodeRecordError, DecodeSegmentHeaderError};

/// A failed system call, with what the store was doing and on which file.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}", path.display())]
pub struct IoError {
    /// What the store was doing ("write record", "fdatasync segment", ...).
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

impl IoError {
    pub(crate) fn new(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        Self {
            op,
            path: path.into(),
            source: source.into(),
        }
    }
}

/// Why [`crate::Store::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    /// The configuration is invalid.
    #[error("invalid store configuration")]
    Config(#[from] ConfigError),
    /// A file operation failed.
    #[error("store I/O failed")]
    Io(#[from] IoError),
    /// A segment file could not be opened or created.
    #[error("segment file unusable")]
    Segment(#[from] OpenSegmentError),
    /// A valid checkpoint references a segment file that is gone.
    #[error("checkpoint {} references missing segment {segment:016x}", checkpoint.display())]
    MissingSegment {
        /// The checkpoint file.
        checkpoint: PathBuf,
        /// The missing segment id.
        segment: u64,
    },
}

/// Why a segment file could not be opened (or created and reopened).
#[derive(Debug, thiserror::Error)]
pub enum OpenSegmentError {
    /// A file operation failed.
    #[error("segment I/O failed")]
    Io(#[from] IoError),
    /// The segment header is invalid: the store refuses to guess.
    #[error("segment {} has an invalid header", path.display())]
    Header {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: DecodeSegmentHeaderError,
    },
    /// The file name and the header disagree on the segment id.
    #[error("segment {} holds the header of segment {header_id:016x}", path.display())]
    Id {
        /// The segment file.
        path: PathBuf,
        /// Id in the header.
        header_id: u64,
    },
}

/// Why a mutating call (put, delete) failed. Nothing was acknowledged; the
/// record may or may not be found after a restart.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A key, meta, inline data or chunk above its limit.
    #[error("{what} of {bytes} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A file operation failed.
    #[error("store write I/O failed")]
    Io(#[from] IoError),
    /// A new segment could not be created.
    #[error("creating a segment failed")]
    NewSegment(#[from] OpenSegmentError),
    /// The kernel wrote fewer bytes than asked.
    #[error("short write to {} at {offset}: {written} of {expected} bytes", path.display())]
    ShortWrite {
        /// The segment file.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// Bytes written.
        written: usize,
        /// Bytes of the record.
        expected: usize,
    },
    /// An earlier fdatasync failed, so durability of later writes cannot be
    /// promised; the store accepts no more writes (reopen it).
    #[error("an earlier fdatasync failed; the store is read-only until reopened")]
    Poisoned,
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// The task finishing the write was dropped (executor shutting down).
    #[error("write task cancelled")]
    Cancelled,
}

/// Why [`crate::Store::put_object`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PutObjectError<E> {
    /// The precondition refused the write; nothing was written.
    #[error("precondition refused the write")]
    Precondition(E),
    /// Writing failed.
    #[error("object write failed")]
    Write(#[from] WriteError),
}

/// Why a read failed. A read never returns bytes it could not verify.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No such chunk (or the object handle is stale).
    #[error("not found")]
    NotFound,
    /// The range is outside the data.
    #[error("range {offset}+{len} outside data of {size} bytes")]
    OutOfRange {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// Data size.
        size: u64,
    },
    /// A file operation failed.
    #[error("store read I/O failed")]
    Io(#[from] IoError),
    /// The bytes on disk do not match their checksums or the index.
    #[error("corrupt record in segment {segment:016x} at offset {offset}")]
    Corrupt {
        /// Segment id.
        segment: u64,
        /// Offset of the record in the segment.
        offset: u64,
        /// What did not match.
        #[source]
        source: DecodeRecordError,
    },
    /// The store was closed.
    #[error("store is closed")]
    Closed,
}

/// Why [`crate::Store::checkpoint`] failed (the previous checkpoint stays valid).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file operation failed.
    #[error("checkpoint I/O failed")]
    Io(#[from] IoError),
    /// rkyv could not serialize the index.
    #[error("checkpoint serialization failed")]
    Serialize(#[source] rkyv::rancor::Error),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
}

/// Why [`crate::Store::compact_once`] failed (the victim segment is kept).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// A checkpoint before or after copying failed.
    #[error("compaction checkpoint failed")]
    Checkpoint(#[from] CheckpointError),
    /// A live record of the victim could not be read.
    #[error("compaction read failed")]
    Read(#[from] ReadError),
    /// A copy could not be written.
    #[error("compaction write failed")]
    Write(#[from] WriteError),
    /// Removing the victim failed.
    #[error("compaction I/O failed")]
    Io(#[from] IoError),
    /// Entries still point at the victim after copying (a bug): it is kept.
    #[error("segment {segment:016x} still has {live_bytes} live bytes after compaction")]
    StillLive {
        /// Victim segment id.
        segment: u64,
        /// Live bytes left.
        live_bytes: u64,
    },
}

/// Why [`crate::Store::close`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// The final checkpoint failed (recovery will replay the log instead).
    #[error("final checkpoint failed")]
    Checkpoint(#[from] CheckpointError),
    /// Closing a file failed.
    #[error("closing store files failed")]
    Io(#[from] IoError),
}
