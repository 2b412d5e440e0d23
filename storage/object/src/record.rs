//! The on-disk format: segment headers, record headers and payloads.
//!
//! Pure functions over byte slices (no I/O), so the decoder can be fuzzed on
//! its own (`fuzz/fuzz_targets/object_record.rs`). All integers are
//! little-endian. The format is described in
//! `docs/design/0006-object-store-format.md`.
//!
//! # Segment header (first 4096 bytes of `seg-<id:016x>.log`)
//! ```text
//! 0  magic u64 = SEGMENT_MAGIC      24 nonce u64 (random, from getrandom)
//! 8  format version u32             32 capacity u64 (file size in bytes)
//! 12 reserved u32 = 0               40 crc32c u32 of bytes 0..40
//! 16 segment id u64                 44.. zero up to 4096
//! ```
//!
//! # Record (at a 4096-aligned offset, padded with zeros to a multiple of 4096)
//! ```text
//! 0  magic u32 = RECORD_MAGIC       16 seq u64
//! 4  kind u8                        24 segment nonce u64
//! 5  reserved [u8; 3] = 0           32 reserved u32 = 0
//! 8  payload length u32             36 crc32c u32 of bytes 0..36
//! 12 payload crc32c u32             40 payload
//! ```
//! Payloads by kind:
//! ```text
//! ObjectPut    bucket u64, key_len u16, meta_len u32, data_len u32, key, meta,
//!              block crcs [u32; ceil(data_len / 64 KiB)], prefix crc u32, data
//! ObjectDelete bucket u64, key_len u16, key
//! ChunkPut     blob u64, index u32, data_len u32,
//!              block crcs [u32; ceil(data_len / 64 KiB)], prefix crc u32, data
//! ChunkDelete  count u32, count × (blob u64, index u32)
//! ```
//! The "prefix" of a data record is everything before the data; its crc lets
//! a ranged read trust the block crcs without reading the whole record.

use crate::limits::{
    BLOCK_BYTES, DATA_BLOCK_BYTES, KEY_BYTES_MAX, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX,
    SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES,
};

/// First bytes of every segment file: "PHOBJSEG".
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"PHOBJSEG");
/// Version of the segment and record format described above.
pub const FORMAT_VERSION: u32 = 1;
/// First bytes of every record header: "PORC".
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"PORC");
/// Bytes of the segment header that carry data (the rest is zero).
pub const SEGMENT_HEADER_USED_BYTES: usize = 44;

const OBJECT_PUT_FIXED_BYTES: usize = 18;
const CHUNK_PUT_FIXED_BYTES: usize = 16;
const OBJECT_DELETE_FIXED_BYTES: usize = 10;
const CHUNK_ID_BYTES: usize = 12;

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// Creates or replaces an object (key, meta, inline data).
    ObjectPut = 1,
    /// Removes an object (a tombstone).
    ObjectDelete = 2,
    /// Creates or replaces a chunk of a large object.
    ChunkPut = 3,
    /// Removes a list of chunks (tombstones).
    ChunkDelete = 4,
}

impl RecordKind {
    fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::ObjectPut),
            2 => Some(Self::ObjectDelete),
            3 => Some(Self::ChunkPut),
            4 => Some(Self::ChunkDelete),
            _ => None,
        }
    }
}

/// The fixed header in front of every payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the payload is.
    pub kind: RecordKind,
    /// Payload bytes after the header (padding excluded).
    pub payload_len: u32,
    /// crc32c of the payload.
    pub payload_crc: u32,
    /// Store-wide sequence number; the highest seq of a key wins.
    pub seq: u64,
    /// Nonce of the segment the record was written to.
    pub nonce: u64,
}

impl RecordHeader {
    /// Bytes the record occupies on disk, header and padding included.
    pub fn record_bytes(&self) -> u64 {
        record_bytes(self.payload_len as usize)
    }

    /// Writes the header (with its crc) into the first 40 bytes of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than [`RECORD_HEADER_BYTES`] (a caller bug).
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..RECORD_HEADER_BYTES];
        out.fill(0);
        out[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        out[4] = self.kind as u8;
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.nonce.to_le_bytes());
        let crc = crc32c::crc32c(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Why bytes are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeRecordError {
    /// Fewer bytes than the header or payload needs.
    #[error("record truncated: {needed} bytes needed, {available} available")]
    Short {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes that were given.
        available: usize,
    },
    /// The first four bytes are not [`RECORD_MAGIC`].
    #[error("bad record magic")]
    Magic,
    /// The header crc does not match.
    #[error("record header checksum mismatch")]
    HeaderCrc,
    /// A reserved header field is not zero.
    #[error("reserved record header bytes are not zero")]
    Reserved,
    /// Unknown kind byte.
    #[error("unknown record kind {0}")]
    Kind(u8),
    /// Payload length above [`RECORD_PAYLOAD_BYTES_MAX`].
    #[error("record payload length {0} exceeds the limit")]
    PayloadTooLong(u32),
    /// The record was written to another segment (or is user data).
    #[error("record nonce does not match the segment")]
    Nonce,
    /// The payload crc does not match.
    #[error("record payload checksum mismatch")]
    PayloadCrc,
    /// The crc of a data record's prefix does not match.
    #[error("record prefix checksum mismatch")]
    PrefixCrc,
    /// The crc of a data block does not match.
    #[error("data block {0} checksum mismatch")]
    BlockCrc(usize),
    /// Lengths inside the payload are inconsistent.
    #[error("record payload malformed: {0}")]
    Malformed(&'static str),
}

/// Who a data record (ObjectPut, ChunkPut) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataOwner<'a> {
    /// An object's inline data.
    Object {
        /// Bucket id.
        bucket: u64,
        /// Object key.
        key: &'a str,
    },
    /// A chunk of a large object.
    Chunk {
        /// Blob id.
        blob: u64,
        /// Chunk index within the blob.
        index: u32,
    },
}

/// The prefix of a data record: everything before the data, crc-checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPrefix<'a> {
    /// Who the data belongs to.
    pub owner: DataOwner<'a>,
    /// Object meta (empty for chunks).
    pub meta: &'a [u8],
    /// Bytes of data after the prefix.
    pub data_len: usize,
    /// Bytes of the prefix within the payload.
    pub prefix_bytes: usize,
    block_crcs: &'a [u8],
}

impl DataPrefix<'_> {
    /// Checks `data`, which starts at block `first_block` of the record's data
    /// and ends at a block boundary or at the end of the data.
    pub fn verify_blocks(&self, first_block: usize, data: &[u8]) -> Result<(), DecodeRecordError> {
        for (i, block) in data.chunks(DATA_BLOCK_BYTES).enumerate() {
            let number = first_block + i;
            let at = number * 4;
            let expected = self
                .block_crcs
                .get(at..at + 4)
                .ok_or(DecodeRecordError::Malformed("block beyond the data"))?;
            if crc32c::crc32c(block).to_le_bytes() != expected {
                return Err(DecodeRecordError::BlockCrc(number));
            }
        }
        Ok(())
    }
}

/// A decoded payload, borrowing from the record bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// See [`RecordKind::ObjectPut`].
    ObjectPut {
        /// Bucket id.
        bucket: u64,
        /// Object key.
        key: &'a str,
        /// Opaque meta.
        meta: &'a [u8],
        /// Inline data.
        data: &'a [u8],
    },
    /// See [`RecordKind::ObjectDelete`].
    ObjectDelete {
        /// Bucket id.
        bucket: u64,
        /// Object key.
        key: &'a str,
    },
    /// See [`RecordKind::ChunkPut`].
    ChunkPut {
        /// Blob id.
        blob: u64,
        /// Chunk index.
        index: u32,
        /// Chunk data.
        data: &'a [u8],
    },
    /// See [`RecordKind::ChunkDelete`].
    ChunkDelete(ChunkIdList<'a>),
}

/// The chunk ids of a chunk-delete record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkIdList<'a>(&'a [u8]);

impl<'a> ChunkIdList<'a> {
    /// Number of ids.
    pub fn len(&self) -> usize {
        self.0.len() / CHUNK_ID_BYTES
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids, in record order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + 'a {
        self.0.chunks_exact(CHUNK_ID_BYTES).map(|id| {
            let mut blob = [0u8; 8];
            let mut index = [0u8; 4];
            blob.copy_from_slice(&id[..8]);
            index.copy_from_slice(&id[8..]);
            (u64::from_le_bytes(blob), u32::from_le_bytes(index))
        })
    }
}

/// Rounds `bytes` up to the next multiple of [`BLOCK_BYTES`].
pub fn align_up(bytes: u64) -> u64 {
    bytes.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

/// Bytes a record with `payload_len` payload bytes occupies on disk.
pub fn record_bytes(payload_len: usize) -> u64 {
    align_up((RECORD_HEADER_BYTES + payload_len) as u64)
}

/// Number of crc blocks of `data_len` bytes of data.
pub fn block_count(data_len: usize) -> usize {
    data_len.div_ceil(DATA_BLOCK_BYTES)
}

/// Prefix bytes of an ObjectPut payload.
pub fn object_prefix_bytes(key_len: usize, meta_len: usize, data_len: usize) -> usize {
    OBJECT_PUT_FIXED_BYTES + key_len + meta_len + 4 * block_count(data_len) + 4
}

/// Prefix bytes of a ChunkPut payload.
pub fn chunk_prefix_bytes(data_len: usize) -> usize {
    CHUNK_PUT_FIXED_BYTES + 4 * block_count(data_len) + 4
}

/// Payload bytes of an ObjectDelete record.
pub fn object_delete_payload_bytes(key_len: usize) -> usize {
    OBJECT_DELETE_FIXED_BYTES + key_len
}

/// Payload bytes of a ChunkDelete record of `count` ids.
pub fn chunk_delete_payload_bytes(count: usize) -> usize {
    4 + count * CHUNK_ID_BYTES
}

/// Sequential little-endian writer over a payload buffer. Callers size the
/// buffer exactly, so running past its end is a bug (panic).
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn put_block_crcs(&mut self, data: &[u8]) {
        for block in data.chunks(DATA_BLOCK_BYTES) {
            self.put(&crc32c::crc32c(block).to_le_bytes());
        }
    }

    fn put_prefix_crc(&mut self) {
        let crc = crc32c::crc32c(&self.out[..self.at]);
        self.put(&crc.to_le_bytes());
    }
}

/// Encodes an ObjectPut payload into `out`, which must be exactly
/// `object_prefix_bytes(..) + data.len()` long. Lengths must be within the
/// limits (callers check; a violation panics).
pub fn encode_object_put(out: &mut [u8], bucket: u64, key: &str, meta: &[u8], data: &[u8]) {
    assert!(key.len() <= KEY_BYTES_MAX);
    assert!(meta.len() <= u32::MAX as usize && data.len() <= u32::MAX as usize);
    let expected = object_prefix_bytes(key.len(), meta.len(), data.len()) + data.len();
    assert_eq!(out.len(), expected, "ObjectPut payload buffer size");
    let mut w = Writer { out, at: 0 };
    w.put(&bucket.to_le_bytes());
    w.put(&(key.len() as u16).to_le_bytes());
    w.put(&(meta.len() as u32).to_le_bytes());
    w.put(&(data.len() as u32).to_le_bytes());
    w.put(key.as_bytes());
    w.put(meta);
    w.put_block_crcs(data);
    w.put_prefix_crc();
    w.put(data);
}

/// Encodes a ChunkPut payload into `out` (exactly `chunk_prefix_bytes(..) +
/// data.len()` long).
pub fn encode_chunk_put(out: &mut [u8], blob: u64, index: u32, data: &[u8]) {
    assert!(data.len() <= u32::MAX as usize);
    assert_eq!(out.len(), chunk_prefix_bytes(data.len()) + data.len());
    let mut w = Writer { out, at: 0 };
    w.put(&blob.to_le_bytes());
    w.put(&index.to_le_bytes());
    w.put(&(data.len() as u32).to_le_bytes());
    w.put_block_crcs(data);
    w.put_prefix_crc();
    w.put(data);
}

/// Encodes an ObjectDelete payload into `out` (exactly
/// `object_delete_payload_bytes(key.len())` long).
pub fn encode_object_delete(out: &mut [u8], bucket: u64, key: &str) {
    assert!(key.len() <= KEY_BYTES_MAX);
    assert_eq!(out.len(), object_delete_payload_bytes(key.len()));
    let mut w = Writer { out, at: 0 };
    w.put(&bucket.to_le_bytes());
    w.put(&(key.len() as u16).to_le_bytes());
    w.put(key.as_bytes());
}

/// Encodes a ChunkDelete payload into `out` (exactly
/// `chunk_delete_payload_bytes(ids.len())` long).
pub fn encode_chunk_delete(out: &mut [u8], ids: &[(u64, u32)]) {
    assert!(ids.len() <= u32::MAX as usize);
    assert_eq!(out.len(), chunk_delete_payload_bytes(ids.len()));
    let mut w = Writer { out, at: 0 };
    w.put(&(ids.len() as u32).to_le_bytes());
    for (blob, index) in ids {
        w.put(&blob.to_le_bytes());
        w.put(&index.to_le_bytes());
    }
}

/// Replaces the nonce of the record at the start of `record` and recomputes
/// its header crc (compaction copies a record into another segment).
pub fn restamp_nonce(record: &mut [u8], nonce: u64) {
    record[24..32].copy_from_slice(&nonce.to_le_bytes());
    let crc = crc32c::crc32c(&record[..36]);
    record[36..40].copy_from_slice(&crc.to_le_bytes());
}

/// Bounds-checked little-endian reader for untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeRecordError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(DecodeRecordError::Short {
            needed: self.at.saturating_add(len),
            available: self.bytes.len(),
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeRecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, DecodeRecordError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeRecordError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeRecordError> {
        self.array().map(u64::from_le_bytes)
    }

    fn key(&mut self, len: usize) -> Result<&'a str, DecodeRecordError> {
        if len > KEY_BYTES_MAX {
            return Err(DecodeRecordError::Malformed("key too long"));
        }
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| DecodeRecordError::Malformed("key not UTF-8"))
    }
}

/// Decodes and checks a record header (magic, crc, reserved bytes, kind,
/// payload length). The nonce is returned, not checked.
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, DecodeRecordError> {
    let mut r = Reader { bytes, at: 0 };
    let head = r.take(RECORD_HEADER_BYTES)?;
    let mut r = Reader { bytes: head, at: 0 };
    if r.u32()? != RECORD_MAGIC {
        return Err(DecodeRecordError::Magic);
    }
    let stored_crc = u32::from_le_bytes([head[36], head[37], head[38], head[39]]);
    if crc32c::crc32c(&head[..36]) != stored_crc {
        return Err(DecodeRecordError::HeaderCrc);
    }
    let kind_byte = r.array::<4>()?;
    if kind_byte[1..] != [0, 0, 0] || head[32..36] != [0, 0, 0, 0] {
        return Err(DecodeRecordError::Reserved);
    }
    let kind = RecordKind::from_u8(kind_byte[0]).ok_or(DecodeRecordError::Kind(kind_byte[0]))?;
    let payload_len = r.u32()?;
    if payload_len as usize > RECORD_PAYLOAD_BYTES_MAX {
        return Err(DecodeRecordError::PayloadTooLong(payload_len));
    }
    let payload_crc = r.u32()?;
    let seq = r.u64()?;
    let nonce = r.u64()?;
    Ok(RecordHeader {
        kind,
        payload_len,
        payload_crc,
        seq,
        nonce,
    })
}

/// Decodes the prefix of a data record from the start of its payload
/// (`bytes` may extend past the prefix) and checks the prefix crc.
pub fn decode_data_prefix(
    kind: RecordKind,
    bytes: &[u8],
) -> Result<DataPrefix<'_>, DecodeRecordError> {
    let mut r = Reader { bytes, at: 0 };
    let (owner, meta, data_len) = match kind {
        RecordKind::ObjectPut => {
            let bucket = r.u64()?;
            let key_len = r.u16()? as usize;
            let meta_len = r.u32()? as usize;
            let data_len = r.u32()? as usize;
            if object_prefix_bytes(key_len, meta_len, data_len) + data_len
                > RECORD_PAYLOAD_BYTES_MAX
            {
                return Err(DecodeRecordError::Malformed(
                    "lengths exceed the payload limit",
                ));
            }
            let key = r.key(key_len)?;
            let meta = r.take(meta_len)?;
            (DataOwner::Object { bucket, key }, meta, data_len)
        }
        RecordKind::ChunkPut => {
            let blob = r.u64()?;
            let index = r.u32()?;
            let data_len = r.u32()? as usize;
            if chunk_prefix_bytes(data_len) + data_len > RECORD_PAYLOAD_BYTES_MAX {
                return Err(DecodeRecordError::Malformed(
                    "lengths exceed the payload limit",
                ));
            }
            (DataOwner::Chunk { blob, index }, &[][..], data_len)
        }
        RecordKind::ObjectDelete | RecordKind::ChunkDelete => {
            return Err(DecodeRecordError::Malformed("not a data record"));
        }
    };
    let block_crcs = r.take(4 * block_count(data_len))?;
    let covered = r.at;
    let prefix_crc = r.u32()?;
    if crc32c::crc32c(&bytes[..covered]) != prefix_crc {
        return Err(DecodeRecordError::PrefixCrc);
    }
    Ok(DataPrefix {
        owner,
        meta,
        data_len,
        prefix_bytes: r.at,
        block_crcs,
    })
}

/// Decodes a whole payload of `kind`, checking every length and crc inside.
pub fn decode_payload(kind: RecordKind, payload: &[u8]) -> Result<Payload<'_>, DecodeRecordError> {
    match kind {
        RecordKind::ObjectPut | RecordKind::ChunkPut => {
            let prefix = decode_data_prefix(kind, payload)?;
            let data = &payload[prefix.prefix_bytes..];
            if data.len() != prefix.data_len {
                return Err(DecodeRecordError::Malformed("data length"));
            }
            prefix.verify_blocks(0, data)?;
            Ok(match prefix.owner {
                DataOwner::Object { bucket, key } => Payload::ObjectPut {
                    bucket,
                    key,
                    meta: prefix.meta,
                    data,
                },
                DataOwner::Chunk { blob, index } => Payload::ChunkPut { blob, index, data },
            })
        }
        RecordKind::ObjectDelete => {
            let mut r = Reader {
                bytes: payload,
                at: 0,
            };
            let bucket = r.u64()?;
            let key_len = r.u16()? as usize;
            let key = r.key(key_len)?;
            if r.at != payload.len() {
                return Err(DecodeRecordError::Malformed("trailing bytes"));
            }
            Ok(Payload::ObjectDelete { bucket, key })
        }
        RecordKind::ChunkDelete => {
            let mut r = Reader {
                bytes: payload,
                at: 0,
            };
            let count = r.u32()? as usize;
            if count.checked_mul(CHUNK_ID_BYTES) != Some(payload.len() - 4) {
                return Err(DecodeRecordError::Malformed("chunk id count"));
            }
            Ok(Payload::ChunkDelete(ChunkIdList(&payload[4..])))
        }
    }
}

/// Decodes the record at the start of `bytes` written to the segment with
/// `nonce`: header, nonce, payload crc and payload structure. Padding after
/// the payload is not inspected.
pub fn decode_record(
    bytes: &[u8],
    nonce: u64,
) -> Result<(RecordHeader, Payload<'_>), DecodeRecordError> {
    let header = decode_header(bytes)?;
    if header.nonce != nonce {
        return Err(DecodeRecordError::Nonce);
    }
    let end = RECORD_HEADER_BYTES + header.payload_len as usize;
    let payload = bytes
        .get(RECORD_HEADER_BYTES..end)
        .ok_or(DecodeRecordError::Short {
            needed: end,
            available: bytes.len(),
        })?;
    if crc32c::crc32c(payload) != header.payload_crc {
        return Err(DecodeRecordError::PayloadCrc);
    }
    Ok((header, decode_payload(header.kind, payload)?))
}

/// The header of a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment id (also in the file name).
    pub id: u64,
    /// Random nonce stamped into every record of the segment.
    pub nonce: u64,
    /// Size of the segment file in bytes.
    pub capacity: u64,
}

/// Why the first block of a segment file is not a valid header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeSegmentHeaderError {
    /// Fewer than [`SEGMENT_HEADER_USED_BYTES`] bytes.
    #[error("segment header truncated ({0} bytes)")]
    Short(usize),
    /// Not a segment file.
    #[error("bad segment magic")]
    Magic,
    /// Written by another format version.
    #[error("unsupported segment format version {0}")]
    Version(u32),
    /// The header crc does not match.
    #[error("segment header checksum mismatch")]
    Crc,
    /// Capacity outside the segment size limits or not block-aligned.
    #[error("segment capacity {0} out of range")]
    Capacity(u64),
}

impl SegmentHeader {
    /// Writes the header into the first [`SEGMENT_HEADER_USED_BYTES`] of `out`.
    pub fn encode(&self, out: &mut [u8]) {
        let out = &mut out[..SEGMENT_HEADER_USED_BYTES];
        out.fill(0);
        out[0..8].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.id.to_le_bytes());
        out[24..32].copy_from_slice(&self.nonce.to_le_bytes());
        out[32..40].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32c::crc32c(&out[..40]);
        out[40..44].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and checks a segment header.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeSegmentHeaderError> {
        let head = bytes
            .get(..SEGMENT_HEADER_USED_BYTES)
            .ok_or(DecodeSegmentHeaderError::Short(bytes.len()))?;
        let field = |at: usize| {
            let mut out = [0u8; 8];
            out.copy_from_slice(&head[at..at + 8]);
            u64::from_le_bytes(out)
        };
        if field(0) != SEGMENT_MAGIC {
            return Err(DecodeSegmentHeaderError::Magic);
        }
        if crc32c::crc32c(&head[..40]).to_le_bytes() != head[40..44] {
            return Err(DecodeSegmentHeaderError::Crc);
        }
        let version = field(8) as u32;
        if version != FORMAT_VERSION || field(8) >> 32 != 0 {
            return Err(DecodeSegmentHeaderError::Version(version));
        }
        let capacity = field(32);
        let capacity_ok = (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&capacity)
            && capacity % BLOCK_BYTES == 0
            && capacity > SEGMENT_HEADER_BYTES;
        if !capacity_ok {
            return Err(DecodeSegmentHeaderError::Capacity(capacity));
        }
        Ok(Self {
            id: field(16),
            nonce: field(24),
            capacity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(kind: RecordKind, payload: &[u8], seq: u64, nonce: u64) -> Vec<u8> {
        let mut out = vec![0u8; record_bytes(payload.len()) as usize];
        out[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload.len()].copy_from_slice(payload);
        let header = RecordHeader {
            kind,
            payload_len: payload.len() as u32,
            payload_crc: crc32c::crc32c(payload),
            seq,
            nonce,
        };
        header.encode(&mut out);
        out
    }

    fn object_put(bucket: u64, key: &str, meta: &[u8], data: &[u8]) -> Vec<u8> {
        let mut payload =
            vec![0u8; object_prefix_bytes(key.len(), meta.len(), data.len()) + data.len()];
        encode_object_put(&mut payload, bucket, key, meta, data);
        payload
    }

    #[test]
    fn segment_header_round_trip_and_rejections() {
        let header = SegmentHeader {
            id: 7,
            nonce: 0xdead_beef,
            capacity: 1 << 20,
        };
        let mut block = vec![0u8; 4096];
        header.encode(&mut block);
        assert_eq!(SegmentHeader::decode(&block), Ok(header));
        let mut bad = block.clone();
        bad[17] ^= 1;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(DecodeSegmentHeaderError::Crc)
        );
        assert_eq!(
            SegmentHeader::decode(&block[..10]),
            Err(DecodeSegmentHeaderError::Short(10))
        );
        assert_eq!(
            SegmentHeader::decode(&[0u8; 64]),
            Err(DecodeSegmentHeaderError::Magic)
        );
    }

    #[test]
    fn record_round_trip_and_every_check() {
        let payload = object_put(3, "a/b", b"meta", &[7u8; 70_000]);
        let bytes = record(RecordKind::ObjectPut, &payload, 42, 99);
        let (header, decoded) = decode_record(&bytes, 99).unwrap();
        assert_eq!(header.seq, 42);
        assert_eq!(header.record_bytes(), bytes.len() as u64);
        assert_eq!(
            decoded,
            Payload::ObjectPut {
                bucket: 3,
                key: "a/b",
                meta: b"meta",
                data: &[7u8; 70_000]
            }
        );
        assert_eq!(
            decode_record(&bytes, 98).unwrap_err(),
            DecodeRecordError::Nonce
        );
        let mut flipped = bytes.clone();
        flipped[RECORD_HEADER_BYTES + 200] ^= 0x10;
        assert_eq!(
            decode_record(&flipped, 99).unwrap_err(),
            DecodeRecordError::PayloadCrc
        );
        let mut flipped = bytes.clone();
        flipped[17] ^= 1;
        assert_eq!(
            decode_record(&flipped, 99).unwrap_err(),
            DecodeRecordError::HeaderCrc
        );
        assert!(matches!(
            decode_record(&bytes[..100], 99),
            Err(DecodeRecordError::Short { .. })
        ));
    }

    #[test]
    fn ranged_block_verification() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let payload = object_put(1, "k", b"", &data);
        let prefix = decode_data_prefix(RecordKind::ObjectPut, &payload).unwrap();
        assert_eq!(prefix.data_len, data.len());
        let start = prefix.prefix_bytes;
        prefix
            .verify_blocks(1, &payload[start + DATA_BLOCK_BYTES..])
            .unwrap();
        let mut bad = payload.clone();
        bad[start + 2 * DATA_BLOCK_BYTES + 5] ^= 1;
        let prefix = decode_data_prefix(RecordKind::ObjectPut, &bad).unwrap();
        assert_eq!(
            prefix.verify_blocks(2, &bad[start + 2 * DATA_BLOCK_BYTES..]),
            Err(DecodeRecordError::BlockCrc(2))
        );
    }

    #[test]
    fn restamped_record_decodes_with_the_new_nonce() {
        let mut payload = vec![0u8; chunk_delete_payload_bytes(2)];
        encode_chunk_delete(&mut payload, &[(1, 2), (3, 4)]);
        let mut bytes = record(RecordKind::ChunkDelete, &payload, 5, 1);
        restamp_nonce(&mut bytes, 2);
        let (header, decoded) = decode_record(&bytes, 2).unwrap();
        assert_eq!(header.seq, 5);
        let Payload::ChunkDelete(ids) = decoded else {
            panic!("kind")
        };
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![(1, 2), (3, 4)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn payload_codecs_round_trip(
            bucket: u64,
            key in "[a-z/]{0,40}",
            meta in proptest::collection::vec(any::<u8>(), 0..300),
            data in proptest::collection::vec(any::<u8>(), 0..70_000),
            seq: u64,
            nonce: u64,
        ) {
            let bytes = record(RecordKind::ObjectPut, &object_put(bucket, &key, &meta, &data), seq, nonce);
            let (_, decoded) = decode_record(&bytes, nonce).unwrap();
            prop_assert_eq!(decoded, Payload::ObjectPut { bucket, key: &key, meta: &meta, data: &data });

            let mut payload = vec![0u8; chunk_prefix_bytes(data.len()) + data.len()];
            encode_chunk_put(&mut payload, bucket, seq as u32, &data);
            let bytes = record(RecordKind::ChunkPut, &payload, seq, nonce);
            let (_, decoded) = decode_record(&bytes, nonce).unwrap();
            prop_assert_eq!(decoded, Payload::ChunkPut { blob: bucket, index: seq as u32, data: &data });

            let mut payload = vec![0u8; object_delete_payload_bytes(key.len())];
            encode_object_delete(&mut payload, bucket, &key);
            let bytes = record(RecordKind::ObjectDelete, &payload, seq, nonce);
            let (_, decoded) = decode_record(&bytes, nonce).unwrap();
            prop_assert_eq!(decoded, Payload::ObjectDelete { bucket, key: &key });
        }

        #[test]
        fn decoder_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..5000), nonce: u64) {
            let _ = decode_record(&bytes, nonce);
            let _ = SegmentHeader::decode(&bytes);
            for kind in [RecordKind::ObjectPut, RecordKind::ObjectDelete, RecordKind::ChunkPut, RecordKind::ChunkDelete] {
                let _ = decode_payload(kind, &bytes);
            }
        }
    }
}
