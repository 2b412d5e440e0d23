//! Segment files: creation, opening, the recovery scan and verified reads.
//!
//! A segment is an append-only file `seg-<id:016x>.log` of a fixed capacity,
//! pre-allocated at creation, read and written only through glommio's
//! `DmaFile` (O_DIRECT over io_uring). It is created under a `.tmp` name and
//! renamed once its header is durable, so a segment file with its final name
//! always has a valid header.

use std::path::{Path, PathBuf};

use futures_lite::future;
use glommio::io::{DmaFile, OpenOptions, ReadResult};

use crate::error::{IoError, OpenSegmentError, ReadError};
use crate::limits::{
    BLOCK_BYTES, DATA_BLOCK_BYTES, RECORD_HEADER_BYTES, RESERVED_BYTES_IN_FLIGHT_MAX,
    SCAN_READ_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::record::{
    self, DataOwner, DataPrefix, DecodeRecordError, DecodeSegmentHeaderError, Payload,
    RecordHeader, RecordKind, SegmentHeader,
};

const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".log";

/// Bytes a ranged read may read in front of the blocks it needs in order to
/// fetch the record header and data prefix in the same request.
const HEADER_READ_SLACK_BYTES: usize = 2 * DATA_BLOCK_BYTES;

/// One open segment file. Shared (`Rc`) by the store's segment map, index
/// entries and readers: a compacted segment is unlinked but stays readable
/// through this open descriptor until the last reader drops it.
pub(crate) struct Segment {
    pub(crate) id: u64,
    pub(crate) nonce: u64,
    pub(crate) capacity: u64,
    /// End of the readable part: the capacity, or less for a truncated file.
    pub(crate) data_end: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: DmaFile,
}

/// The file name of segment `id`.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{SEGMENT_PREFIX}{id:016x}{SEGMENT_SUFFIX}")
}

/// The id in a segment file name, if `name` is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// A record found by [`Segment::scan`].
pub(crate) struct ScannedRecord<'a> {
    pub(crate) offset: u64,
    pub(crate) header: RecordHeader,
    pub(crate) payload: Payload<'a>,
}

/// What [`Segment::scan`] saw.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScanSummary {
    /// Valid records.
    pub(crate) records: u64,
    /// End offset of the last valid record, if any.
    pub(crate) end_of_last_record: Option<u64>,
    /// Non-zero 4 KiB blocks that neither start nor belong to a valid record.
    pub(crate) bytes_invalid: u64,
    /// All-zero 4 KiB blocks outside records (never written).
    pub(crate) bytes_unwritten: u64,
    /// Where the scan stopped at a run of zero blocks no hole can be as long
    /// as, if it did.
    pub(crate) stopped_at_zeros: Option<u64>,
}

/// What a data read expects to find at a location (from the index).
pub(crate) struct DataExpectation<'a> {
    pub(crate) kind: RecordKind,
    pub(crate) seq: u64,
    pub(crate) owner: DataOwner<'a>,
    pub(crate) meta_len: usize,
    pub(crate) data_len: usize,
}

impl Segment {
    /// Creates segment `id` in `dir`: pre-allocated, header written and
    /// synced, renamed to its final name, then reopened for reading and
    /// writing. The caller syncs the directory.
    ///
    /// The new file is first opened write-only on purpose: glommio decides
    /// once per thread and device whether reads go to the iopoll ring, by
    /// reading offset 0 of the first file opened readable. An empty file
    /// answers that read without touching the device, so glommio would enable
    /// iopoll and every later read on a virtio disk would fail (EOPNOTSUPP).
    /// A file is therefore opened readable only once its header is on disk.
    pub(crate) async fn create(
        dir: &Path,
        id: u64,
        capacity: u64,
    ) -> Result<Segment, OpenSegmentError> {
        let path = dir.join(segment_file_name(id));
        let tmp = dir.join(format!("{}.tmp", segment_file_name(id)));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .dma_open(&tmp)
            .await
            .map_err(|e| IoError::new("create segment", &tmp, e))?;
        let result = Self::initialize(&file, &tmp, &path, id, capacity).await;
        let closed = file
            .close()
            .await
            .map_err(|e| IoError::new("close new segment", &tmp, e));
        if let Err(error) = result.and(closed) {
            // Best effort: a leftover .tmp file is also removed at the next open.
            let _ = glommio::io::remove(&tmp).await;
            return Err(error.into());
        }
        Self::open(path, id).await
    }

    async fn initialize(
        file: &DmaFile,
        tmp: &Path,
        path: &Path,
        id: u64,
        capacity: u64,
    ) -> Result<(), IoError> {
        file.pre_allocate(capacity, false)
            .await
            .map_err(|e| IoError::new("pre-allocate segment", tmp, e))?;
        let nonce = getrandom::u64().map_err(|e| {
            IoError::new(
                "draw segment nonce",
                tmp,
                std::io::Error::other(e.to_string()),
            )
        })?;
        let header = SegmentHeader {
            id,
            nonce,
            capacity,
        };
        let mut block = file.alloc_dma_buffer(SEGMENT_HEADER_BYTES as usize);
        block.as_bytes_mut().fill(0);
        header.encode(block.as_bytes_mut());
        let written = file
            .write_at(block, 0)
            .await
            .map_err(|e| IoError::new("write segment header", tmp, e))?;
        if written != SEGMENT_HEADER_BYTES as usize {
            let short =
                std::io::Error::new(std::io::ErrorKind::WriteZero, "short segment header write");
            return Err(IoError::new("write segment header", tmp, short));
        }
        file.fdatasync()
            .await
            .map_err(|e| IoError::new("fdatasync segment", tmp, e))?;
        file.rename(path)
            .await
            .map_err(|e| IoError::new("rename segment", tmp, e))
    }

    /// Opens an existing segment and checks its header against `id`.
    pub(crate) async fn open(path: PathBuf, id: u64) -> Result<Segment, OpenSegmentError> {
        // Never open a file shorter than its header readable (see `create`).
        let size = std::fs::metadata(&path)
            .map_err(|e| IoError::new("stat segment", &path, e))?
            .len();
        if size < SEGMENT_HEADER_BYTES {
            let source = DecodeSegmentHeaderError::Short(size as usize);
            return Err(OpenSegmentError::Header { path, source });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&path)
            .await
            .map_err(|e| IoError::new("open segment", &path, e))?;
        let head = file.read_at_aligned(0, SEGMENT_HEADER_BYTES as usize).await;
        let head = head.map_err(|e| IoError::new("read segment header", &path, e))?;
        let header = match SegmentHeader::decode(&head) {
            Ok(header) => header,
            Err(source) => return Err(OpenSegmentError::Header { path, source }),
        };
        if header.id != id {
            return Err(OpenSegmentError::Id {
                path,
                header_id: header.id,
            });
        }
        let data_end = header.capacity.min(size / BLOCK_BYTES * BLOCK_BYTES);
        Ok(Segment {
            id,
            nonce: header.nonce,
            capacity: header.capacity,
            data_end,
            path,
            file,
        })
    }

    async fn read_aligned(
        &self,
        offset: u64,
        len: usize,
        op: &'static str,
    ) -> Result<ReadResult, IoError> {
        self.file
            .read_at_aligned(offset, len)
            .await
            .map_err(|e| IoError::new(op, &self.path, e))
    }

    /// Reads `len` bytes at any `offset` (glommio aligns the request).
    pub(crate) async fn read(&self, offset: u64, len: usize) -> Result<ReadResult, IoError> {
        self.file
            .read_at(offset, len)
            .await
            .map_err(|e| IoError::new("read record", &self.path, e))
    }

    /// Scans from `start` (4096-aligned) to the end of the segment with large
    /// sequential reads. At every 4096 boundary it tries to decode a record
    /// (magic, nonce, header crc, payload crc, payload structure); a valid one
    /// is passed to `visit` and skipped over, anything else advances one block.
    /// A hole (a reserved, never-written block) may sit before a later
    /// acknowledged record, so zero blocks do not end the scan, except a run
    /// longer than every reservation that can be in flight at once
    /// (`RESERVED_BYTES_IN_FLIGHT_MAX`): nothing was ever written past it.
    pub(crate) async fn scan(
        &self,
        start: u64,
        mut visit: impl FnMut(ScannedRecord<'_>),
    ) -> Result<ScanSummary, IoError> {
        let mut summary = ScanSummary::default();
        let mut window = Window { start, bytes: None };
        let mut at = start;
        let mut zero_run = 0u64;
        while at + BLOCK_BYTES <= self.data_end {
            if zero_run > RESERVED_BYTES_IN_FLIGHT_MAX {
                summary.stopped_at_zeros = Some(at);
                break;
            }
            if !window.covers(at, BLOCK_BYTES) {
                let len = (self.data_end - at).min(SCAN_READ_BYTES as u64) as usize;
                window = Window {
                    start: at,
                    bytes: Some(self.read_aligned(at, len, "scan segment").await?),
                };
                if !window.covers(at, BLOCK_BYTES) {
                    break;
                }
            }
            if let Ok(header) = record::decode_header(window.slice(at, BLOCK_BYTES)) {
                let total = header.record_bytes();
                if header.nonce == self.nonce && at + total <= self.data_end {
                    if !window.covers(at, total) {
                        let len =
                            total.max(SCAN_READ_BYTES as u64).min(self.data_end - at) as usize;
                        window = Window {
                            start: at,
                            bytes: Some(self.read_aligned(at, len, "scan segment").await?),
                        };
                    }
                    if let Ok((header, payload)) =
                        record::decode_record(window.slice(at, total), self.nonce)
                    {
                        visit(ScannedRecord {
                            offset: at,
                            header,
                            payload,
                        });
                        summary.records += 1;
                        summary.end_of_last_record = Some(at + total);
                        at += total;
                        zero_run = 0;
                        continue;
                    }
                    if !window.covers(at, BLOCK_BYTES) {
                        break;
                    }
                }
            }
            if is_zero(window.slice(at, BLOCK_BYTES)) {
                summary.bytes_unwritten += BLOCK_BYTES;
                zero_run += BLOCK_BYTES;
            } else {
                summary.bytes_invalid += BLOCK_BYTES;
                zero_run = 0;
            }
            at += BLOCK_BYTES;
        }
        Ok(summary)
    }

    /// Reads the whole record at `offset` and checks it completely.
    pub(crate) async fn read_whole_record(
        &self,
        offset: u64,
        record_bytes: u64,
        seq: u64,
    ) -> Result<ReadResult, ReadError> {
        let bytes = self.read(offset, record_bytes as usize).await?;
        let corrupt = |source| ReadError::Corrupt {
            segment: self.id,
            offset,
            source,
        };
        let (header, _) = record::decode_record(&bytes, self.nonce).map_err(corrupt)?;
        if header.seq != seq || header.record_bytes() != record_bytes {
            return Err(corrupt(DecodeRecordError::Malformed(
                "record does not match the index",
            )));
        }
        Ok(bytes)
    }

    /// Reads `len` bytes at `offset` of the data of the record at
    /// `record_offset`, verifying the header, the prefix and every data block
    /// the range touches. Never returns unverified bytes.
    pub(crate) async fn read_data(
        &self,
        record_offset: u64,
        expect: &DataExpectation<'_>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ReadError> {
        let size = expect.data_len as u64;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(ReadError::OutOfRange { offset, len, size });
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let prefix_bytes = match expect.owner {
            DataOwner::Object { key, .. } => {
                record::object_prefix_bytes(key.len(), expect.meta_len, expect.data_len)
            }
            DataOwner::Chunk { .. } => record::chunk_prefix_bytes(expect.data_len),
        };
        let data_start = RECORD_HEADER_BYTES + prefix_bytes;
        let first_block = offset as usize / DATA_BLOCK_BYTES;
        let blocks_end = ((offset + len) as usize).div_ceil(DATA_BLOCK_BYTES) * DATA_BLOCK_BYTES;
        let blocks_end = blocks_end.min(expect.data_len);
        let blocks_lo = data_start + first_block * DATA_BLOCK_BYTES;
        let blocks_hi = data_start + blocks_end;
        let (head, blocks, blocks_at) = if blocks_lo <= data_start + HEADER_READ_SLACK_BYTES {
            let all = self.read(record_offset, blocks_hi).await?;
            (all, None, blocks_lo)
        } else {
            let (head, blocks) = future::zip(
                self.read(record_offset, data_start),
                self.read(record_offset + blocks_lo as u64, blocks_hi - blocks_lo),
            )
            .await;
            (head?, Some(blocks?), 0)
        };
        let corrupt = |source| ReadError::Corrupt {
            segment: self.id,
            offset: record_offset,
            source,
        };
        let prefix = self
            .check_data_head(&head, expect, prefix_bytes)
            .map_err(corrupt)?;
        let blocks: &[u8] = match &blocks {
            Some(blocks) => blocks,
            None => head.get(blocks_at..blocks_hi).unwrap_or(&[]),
        };
        if blocks.len() != blocks_hi - blocks_lo {
            return Err(corrupt(DecodeRecordError::Short {
                needed: blocks_hi - blocks_lo,
                available: blocks.len(),
            }));
        }
        prefix.verify_blocks(first_block, blocks).map_err(corrupt)?;
        let from = offset as usize - first_block * DATA_BLOCK_BYTES;
        Ok(blocks[from..from + len as usize].to_vec())
    }

    /// Checks the header and prefix of a data record against the index.
    fn check_data_head<'h>(
        &self,
        head: &'h [u8],
        expect: &DataExpectation<'_>,
        prefix_bytes: usize,
    ) -> Result<DataPrefix<'h>, DecodeRecordError> {
        let header = record::decode_header(head)?;
        let mismatch = DecodeRecordError::Malformed("record does not match the index");
        if header.nonce != self.nonce {
            return Err(DecodeRecordError::Nonce);
        }
        if header.seq != expect.seq
            || header.kind != expect.kind
            || header.payload_len as usize != prefix_bytes + expect.data_len
        {
            return Err(mismatch);
        }
        let prefix = record::decode_data_prefix(
            expect.kind,
            head.get(RECORD_HEADER_BYTES..).unwrap_or(&[]),
        )?;
        if prefix.owner != expect.owner
            || prefix.data_len != expect.data_len
            || prefix.meta.len() != expect.meta_len
        {
            return Err(mismatch);
        }
        Ok(prefix)
    }
}

/// The bytes of one sequential scan read, starting at segment offset `start`.
struct Window {
    start: u64,
    bytes: Option<ReadResult>,
}

impl Window {
    fn len(&self) -> u64 {
        self.bytes.as_ref().map_or(0, |b| b.len() as u64)
    }

    fn covers(&self, at: u64, len: u64) -> bool {
        at >= self.start && at + len <= self.start + self.len()
    }

    /// The bytes at `[at, at + len)`, or an empty slice if not covered
    /// (callers check `covers` first; empty bytes never decode).
    fn slice(&self, at: u64, len: u64) -> &[u8] {
        match &self.bytes {
            Some(bytes) if self.covers(at, len) => {
                let rel = (at - self.start) as usize;
                &bytes[rel..rel + len as usize]
            }
            _ => &[],
        }
    }
}

fn is_zero(block: &[u8]) -> bool {
    block
        .chunks_exact(16)
        .all(|c| u128::from_ne_bytes(c.try_into().unwrap_or([1; 16])) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(segment_file_name(0xab), "seg-00000000000000ab.log");
        assert_eq!(
            parse_segment_file_name("seg-00000000000000ab.log"),
            Some(0xab)
        );
        assert_eq!(parse_segment_file_name("seg-ab.log"), None);
        assert_eq!(
            parse_segment_file_name("seg-00000000000000ab.log.tmp"),
            None
        );
        assert!(is_zero(&[0u8; 4096]));
        let mut block = [0u8; 4096];
        block[4095] = 1;
        assert!(!is_zero(&block));
    }
}
