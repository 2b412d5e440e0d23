//! One shard's write-ahead log on disk: numbered segment files of framed
//! records (`photon_tsdb::wal`), written through glommio with group commit.
//!
//! Every append waits until an fdatasync that started after its bytes were
//! written has completed; appends that arrive while a sync runs share the
//! next one. Bytes that could not be written (a full disk) stay pending and
//! go out with the next append, so a failed request may still become
//! durable later (its retry then finds the same samples: a no-op).

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{BufferedFile, OpenOptions};
use photon_core::local_sync::Signal;
use photon_tsdb::wal::{self, WalReader, WalRecord};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the disk is full: {0}")]
    DiskFull(String),
    #[error("WAL segment {path} is corrupt at byte {offset} with valid records after it")]
    Corrupt { path: PathBuf, offset: usize },
}

impl WalError {
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return WalError::DiskFull(format!("{op} {}", path.display()));
        }
        WalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    fn from_glommio(op: &'static str, path: &Path, e: glommio::GlommioError<()>) -> Self {
        Self::io(op, path, std::io::Error::from(e))
    }
}

struct Segment {
    index: u64,
    path: PathBuf,
    file: Rc<BufferedFile>,
    /// Bytes written (and, past `synced_len`, not yet synced).
    len: u64,
}

/// One shard's WAL.
pub struct Wal {
    dir: PathBuf,
    segment: RefCell<Segment>,
    /// Encoded records not yet written.
    pending: RefCell<Vec<u8>>,
    /// Sequence numbers: `queued` counts appends, `synced` the last append
    /// known durable.
    queued: Cell<u64>,
    synced: Cell<u64>,
    /// The error of the last flush, for the appends it covered.
    failed: RefCell<Option<(u64, String)>>,
    flushing: Cell<bool>,
    done: Signal,
}

/// What opening found.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<WalRecord>,
    pub segments: usize,
    /// Bytes of torn tails cut off.
    pub torn_bytes: usize,
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:08}.wal"))
}

fn segment_indexes(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".wal")
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

async fn create_segment(dir: &Path, index: u64) -> Result<Segment, WalError> {
    let path = segment_path(dir, index);
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .read(true)
        .mode(0o600)
        .buffered_open(&path)
        .await
        .map_err(|e| WalError::from_glommio("create", &path, e))?;
    Ok(Segment {
        index,
        path,
        file: Rc::new(file),
        len: 0,
    })
}

impl Wal {
    /// Reads every segment in order (at start-up, before the shard serves),
    /// cuts a torn tail off the last one, and starts a new segment.
    pub async fn open(dir: &Path) -> Result<(Wal, Replay), WalError> {
        std::fs::create_dir_all(dir).map_err(|e| WalError::io("create", dir, e))?;
        let indexes = segment_indexes(dir)?;
        let mut replay = Replay {
            segments: indexes.len(),
            ..Replay::default()
        };
        for (i, &index) in indexes.iter().enumerate() {
            let path = segment_path(dir, index);
            let bytes = std::fs::read(&path).map_err(|e| WalError::io("read", &path, e))?;
            let mut reader = WalReader::new(&bytes);
            for record in reader.by_ref() {
                replay.records.push(record);
            }
            let valid = reader.valid_len();
            if valid < bytes.len() {
                if reader.corrupt_in_middle() {
                    return Err(WalError::Corrupt {
                        path,
                        offset: valid,
                    });
                }
                let last = i + 1 == indexes.len();
                tracing::warn!(
                    path = %path.display(),
                    valid,
                    len = bytes.len(),
                    last,
                    "WAL segment ends in a torn record (a crash during a write): cut it off"
                );
                replay.torn_bytes += bytes.len() - valid;
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| WalError::io("open", &path, e))?;
                file.set_len(valid as u64)
                    .map_err(|e| WalError::io("truncate", &path, e))?;
            }
        }
        let next = indexes.last().map_or(1, |i| i + 1);
        let segment = create_segment(dir, next).await?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                segment: RefCell::new(segment),
                pending: RefCell::new(Vec::new()),
                queued: Cell::new(0),
                synced: Cell::new(0),
                failed: RefCell::new(None),
                flushing: Cell::new(false),
                done: Signal::default(),
            },
            replay,
        ))
    }

    /// Appends records and returns once they are durable.
    pub async fn append(&self, records: &[WalRecord]) -> Result<(), WalError> {
        {
            let mut pending = self.pending.borrow_mut();
            for r in records {
                wal::encode(r, &mut pending);
            }
        }
        let seq = self.queued.get() + 1;
        self.queued.set(seq);
        loop {
            if self.synced.get() >= seq {
                return Ok(());
            }
            if let Some((upto, reason)) = &*self.failed.borrow() {
                if *upto >= seq {
                    return Err(WalError::DiskFull(reason.clone()));
                }
            }
            if !self.flushing.get() {
                self.flush().await;
                continue;
            }
            self.done.listen().await;
        }
    }

    /// Writes and syncs what is pending; records the outcome for every
    /// append it covered. Only one flush runs at a time.
    async fn flush(&self) {
        self.flushing.set(true);
        let upto = self.queued.get();
        let bytes = std::mem::take(&mut *self.pending.borrow_mut());
        let result = self.write_and_sync(bytes).await;
        match result {
            Ok(()) => {
                self.synced.set(upto);
                *self.failed.borrow_mut() = None;
            }
            Err((e, bytes)) => {
                tracing::warn!(error = %e, "WAL write failed; the records stay pending");
                // Put them back in front of whatever arrived meanwhile.
                let mut pending = self.pending.borrow_mut();
                let later = std::mem::replace(&mut *pending, bytes);
                pending.extend_from_slice(&later);
                *self.failed.borrow_mut() = Some((upto, e.to_string()));
            }
        }
        self.flushing.set(false);
        self.done.notify_all();
        if let Err(e) = self.rotate_if_full().await {
            tracing::warn!(error = %e, "could not start a new WAL segment");
        }
    }

    async fn write_and_sync(&self, bytes: Vec<u8>) -> Result<(), (WalError, Vec<u8>)> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (file, pos, path) = {
            let s = self.segment.borrow();
            (s.file.clone(), s.len, s.path.clone())
        };
        let len = bytes.len();
        let copy = bytes.clone();
        let mut written = 0usize;
        let mut buf = bytes;
        while written < len {
            match file.write_at(buf, pos + written as u64).await {
                Ok(0) => {
                    let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
                    return Err((WalError::io("write", &path, e), copy));
                }
                Ok(n) => {
                    written += n;
                    buf = copy[written..].to_vec();
                }
                Err(e) => return Err((WalError::from_glommio("write", &path, e), copy)),
            }
        }
        if let Err(e) = file.fdatasync().await {
            return Err((WalError::from_glommio("fdatasync", &path, e), copy));
        }
        self.segment.borrow_mut().len = pos + len as u64;
        Ok(())
    }

    async fn rotate_if_full(&self) -> Result<(), WalError> {
        let (index, len) = {
            let s = self.segment.borrow();
            (s.index, s.len)
        };
        if len < SEGMENT_BYTES_MAX || self.flushing.get() {
            return Ok(());
        }
        let next = create_segment(&self.dir, index + 1).await?;
        *self.segment.borrow_mut() = next;
        Ok(())
    }

    /// Starts a new segment holding `records` (the head's state after a cut
    /// into a block), syncs it, and deletes every older segment.
    pub async fn checkpoint(&self, records: &[WalRecord]) -> Result<(), WalError> {
        // Let a running flush finish so nothing is written to a segment
        // about to be deleted.
        while self.flushing.get() {
            self.done.listen().await;
        }
        self.flushing.set(true);
        let result = self.checkpoint_inner(records).await;
        self.flushing.set(false);
        self.done.notify_all();
        result
    }

    async fn checkpoint_inner(&self, records: &[WalRecord]) -> Result<(), WalError> {
        let index = self.segment.borrow().index;
        let next = create_segment(&self.dir, index + 1).await?;
        let mut bytes = Vec::new();
        for r in records {
            wal::encode(r, &mut bytes);
        }
        // Pending appends are in the head, so in `records` already; they
        // are written again after them all the same (a replayed duplicate
        // is a no-op) and their waiters complete with this sync.
        let upto = self.queued.get();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        bytes.extend_from_slice(&pending);
        let old = std::mem::replace(&mut *self.segment.borrow_mut(), next);
        if let Err((e, _)) = self.write_and_sync(bytes).await {
            let failed = std::mem::replace(&mut *self.segment.borrow_mut(), old);
            let _ = std::fs::remove_file(&failed.path);
            // The appends covered stay pending for the next flush.
            let mut now = self.pending.borrow_mut();
            let later = std::mem::replace(&mut *now, pending);
            now.extend_from_slice(&later);
            return Err(e);
        }
        self.synced.set(upto);
        for i in segment_indexes(&self.dir)? {
            if i <= index {
                let path = segment_path(&self.dir, i);
                std::fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))?;
            }
        }
        Ok(())
    }

    /// Bytes in segment files (for metrics).
    pub fn segment_len(&self) -> u64 {
        self.segment.borrow().len
    }
}
