//! Checkpoints: the whole index as an rkyv archive, loaded with memmap2.
//!
//! File `checkpoint-<max seq:016x>.rkyv` = the archive, zero padding to a
//! multiple of 4096 minus the trailer, then a 32-byte trailer:
//! ```text
//! 0  magic u64 = CHECKPOINT_MAGIC   16 archive length u64
//! 8  format version u32             24 crc32c of the archive u32
//! 12 reserved u32 = 0               28 crc32c of trailer bytes 0..28 u32
//! ```
//! Written as `<name>.tmp` through a `DmaFile`, fdatasync'ed, renamed, and the
//! directory synced; older checkpoints are deleted after that. On load the
//! trailer and the archive crc are checked, then rkyv's bytecheck validates
//! the archive (`rkyv::access`) before any field is used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};
use rkyv::rancor;

use crate::error::{CheckpointError, IoError};
use crate::index::{ChunkEntry, Index, Location, ObjectEntry};
use crate::limits::{
    BLOCK_BYTES, CHECKPOINT_BYTES_MAX, CHECKPOINT_WRITE_BYTES, KEY_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use crate::record::{self, align_up};
use crate::segment::Segment;

/// First bytes of the checkpoint trailer: "PHOBJCKP".
const CHECKPOINT_MAGIC: u64 = u64::from_le_bytes(*b"PHOBJCKP");
const CHECKPOINT_VERSION: u32 = 1;
const TRAILER_BYTES: usize = 32;
const CHECKPOINT_PREFIX: &str = "checkpoint-";
const CHECKPOINT_SUFFIX: &str = ".rkyv";

/// The archived index.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
pub(crate) struct CheckpointImage {
    pub(crate) max_seq: u64,
    pub(crate) replay_segment: u64,
    pub(crate) replay_offset: u64,
    pub(crate) segments: Vec<SegmentLive>,
    pub(crate) objects: Vec<CheckpointObject>,
    pub(crate) chunks: Vec<CheckpointChunk>,
}

/// Live bytes of one segment.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
pub(crate) struct SegmentLive {
    pub(crate) id: u64,
    pub(crate) live_bytes: u64,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
pub(crate) struct CheckpointObject {
    pub(crate) bucket: u64,
    pub(crate) key: String,
    pub(crate) seq: u64,
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) record_bytes: u64,
    pub(crate) meta: Vec<u8>,
    pub(crate) inline_len: u32,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
pub(crate) struct CheckpointChunk {
    pub(crate) blob: u64,
    pub(crate) index: u32,
    pub(crate) seq: u64,
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) record_bytes: u64,
    pub(crate) len: u32,
}

/// The index as it was at one instant, taken while no write was in flight.
/// Cheap to take (reference-count bumps); turned into an image afterwards.
pub(crate) struct Snapshot {
    pub(crate) max_seq: u64,
    pub(crate) replay_segment: u64,
    pub(crate) replay_offset: u64,
    pub(crate) live: Vec<(u64, u64)>,
    pub(crate) objects: Vec<(u64, Rc<str>, ObjectEntry)>,
    pub(crate) chunks: Vec<((u64, u32), ChunkEntry)>,
}

impl Snapshot {
    pub(crate) fn into_image(self) -> CheckpointImage {
        let objects = self
            .objects
            .into_iter()
            .map(|(bucket, key, e)| CheckpointObject {
                bucket,
                key: key.to_string(),
                seq: e.seq,
                segment: e.location.segment.id,
                offset: e.location.offset,
                record_bytes: e.location.record_bytes,
                meta: e.meta.to_vec(),
                inline_len: e.inline_len,
            });
        let chunks = self
            .chunks
            .into_iter()
            .map(|((blob, index), e)| CheckpointChunk {
                blob,
                index,
                seq: e.seq,
                segment: e.location.segment.id,
                offset: e.location.offset,
                record_bytes: e.location.record_bytes,
                len: e.len,
            });
        CheckpointImage {
            max_seq: self.max_seq,
            replay_segment: self.replay_segment,
            replay_offset: self.replay_offset,
            segments: self
                .live
                .into_iter()
                .map(|(id, live_bytes)| SegmentLive { id, live_bytes })
                .collect(),
            objects: objects.collect(),
            chunks: chunks.collect(),
        }
    }
}

/// The file name of the checkpoint covering records up to `seq`.
pub(crate) fn checkpoint_file_name(seq: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{seq:016x}{CHECKPOINT_SUFFIX}")
}

/// The seq in a checkpoint file name, if `name` is one.
pub(crate) fn parse_checkpoint_file_name(name: &str) -> Option<u64> {
    let hex = name
        .strip_prefix(CHECKPOINT_PREFIX)?
        .strip_suffix(CHECKPOINT_SUFFIX)?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

fn encode_trailer(archive: &[u8]) -> [u8; TRAILER_BYTES] {
    let mut trailer = [0u8; TRAILER_BYTES];
    trailer[0..8].copy_from_slice(&CHECKPOINT_MAGIC.to_le_bytes());
    trailer[8..12].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    trailer[16..24].copy_from_slice(&(archive.len() as u64).to_le_bytes());
    trailer[24..28].copy_from_slice(&crc32c::crc32c(archive).to_le_bytes());
    let crc = crc32c::crc32c(&trailer[..28]);
    trailer[28..32].copy_from_slice(&crc.to_le_bytes());
    trailer
}

/// Fills `out` with bytes `[at, at + out.len())` of the checkpoint file made
/// of `archive`, zero padding and `trailer` ending at `total`.
fn fill_file_bytes(out: &mut [u8], at: usize, archive: &[u8], trailer: &[u8], total: usize) {
    out.fill(0);
    let end = at + out.len();
    if at < archive.len() {
        let n = archive.len().min(end) - at;
        out[..n].copy_from_slice(&archive[at..at + n]);
    }
    let trailer_at = total - trailer.len();
    if end > trailer_at {
        let from = at.max(trailer_at);
        out[from - at..].copy_from_slice(&trailer[from - trailer_at..]);
    }
}

/// Serializes `image` and writes it durably as `dir/checkpoint-<seq>.rkyv`.
/// The caller syncs the directory afterwards.
pub(crate) async fn write_checkpoint(
    dir: &Path,
    image: &CheckpointImage,
) -> Result<PathBuf, CheckpointError> {
    let archive = rkyv::to_bytes::<rancor::Error>(image).map_err(CheckpointError::Serialize)?;
    let trailer = encode_trailer(&archive);
    let total = align_up((archive.len() + TRAILER_BYTES) as u64) as usize;
    let path = dir.join(checkpoint_file_name(image.max_seq));
    let tmp = dir.join(format!("{}.tmp", checkpoint_file_name(image.max_seq)));
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .dma_open(&tmp)
        .await
        .map_err(|e| IoError::new("create checkpoint", &tmp, e))?;
    let written = write_all(&file, &tmp, &archive, &trailer, total).await;
    let synced = match written {
        Ok(()) => file
            .fdatasync()
            .await
            .map_err(|e| IoError::new("fdatasync checkpoint", &tmp, e)),
        Err(e) => Err(e),
    };
    let closed = file
        .close()
        .await
        .map_err(|e| IoError::new("close checkpoint", &tmp, e));
    if let Err(e) = synced.and(closed) {
        let _ = glommio::io::remove(&tmp).await;
        return Err(e.into());
    }
    glommio::io::rename(&tmp, &path)
        .await
        .map_err(|e| IoError::new("rename checkpoint", &tmp, e))?;
    Ok(path)
}

async fn write_all(
    file: &DmaFile,
    path: &Path,
    archive: &[u8],
    trailer: &[u8],
    total: usize,
) -> Result<(), IoError> {
    let mut at = 0;
    while at < total {
        let len = CHECKPOINT_WRITE_BYTES.min(total - at);
        let mut buffer = file.alloc_dma_buffer(len);
        fill_file_bytes(buffer.as_bytes_mut(), at, archive, trailer, total);
        let written = file
            .write_at(buffer, at as u64)
            .await
            .map_err(|e| IoError::new("write checkpoint", path, e))?;
        if written != len {
            let short =
                std::io::Error::new(std::io::ErrorKind::WriteZero, "short checkpoint write");
            return Err(IoError::new("write checkpoint", path, short));
        }
        at += len;
    }
    Ok(())
}

/// Why a checkpoint file was not used (recovery then tries an older one or
/// scans every segment).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadCheckpointError {
    #[error("reading the checkpoint failed")]
    Io(#[from] std::io::Error),
    #[error("checkpoint damaged: {0}")]
    Damaged(&'static str),
    #[error("checkpoint archive invalid")]
    Archive(#[source] rancor::Error),
    #[error("checkpoint references missing segment {0:016x}")]
    MissingSegment(u64),
}

/// A checkpoint turned back into an index.
pub(crate) struct LoadedCheckpoint {
    pub(crate) index: Index,
    pub(crate) max_seq: u64,
    pub(crate) replay_segment: u64,
    pub(crate) replay_offset: u64,
}

/// Maps `path`, checks trailer, crc and archive, and rebuilds the index
/// against the open `segments`.
pub(crate) fn load_checkpoint(
    path: &Path,
    segments: &HashMap<u64, Rc<Segment>>,
) -> Result<LoadedCheckpoint, LoadCheckpointError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if !(TRAILER_BYTES as u64..=CHECKPOINT_BYTES_MAX).contains(&size) || size % BLOCK_BYTES != 0 {
        return Err(LoadCheckpointError::Damaged("file size"));
    }
    // SAFETY: checkpoint files are written once under a temporary name and
    // renamed; nothing modifies or truncates a renamed checkpoint while the
    // store (the only user of its directory) is opening, and the map is
    // dropped before this function returns.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let archive = check_trailer(&map)?;
    let image = rkyv::access::<ArchivedCheckpointImage, rancor::Error>(archive)
        .map_err(LoadCheckpointError::Archive)?;
    rebuild_index(image, segments)
}

fn check_trailer(bytes: &[u8]) -> Result<&[u8], LoadCheckpointError> {
    let trailer = &bytes[bytes.len() - TRAILER_BYTES..];
    let field = |at: usize| {
        let mut out = [0u8; 8];
        out.copy_from_slice(&trailer[at..at + 8]);
        u64::from_le_bytes(out)
    };
    if field(0) != CHECKPOINT_MAGIC {
        return Err(LoadCheckpointError::Damaged("trailer magic"));
    }
    if crc32c::crc32c(&trailer[..28]).to_le_bytes() != trailer[28..32] {
        return Err(LoadCheckpointError::Damaged("trailer checksum"));
    }
    if field(8) != u64::from(CHECKPOINT_VERSION) {
        return Err(LoadCheckpointError::Damaged("format version"));
    }
    let archive_len = field(16);
    if archive_len > (bytes.len() - TRAILER_BYTES) as u64 {
        return Err(LoadCheckpointError::Damaged("archive length"));
    }
    let archive = &bytes[..archive_len as usize];
    if crc32c::crc32c(archive).to_le_bytes() != trailer[24..28] {
        return Err(LoadCheckpointError::Damaged("archive checksum"));
    }
    Ok(archive)
}

fn locate(
    segments: &HashMap<u64, Rc<Segment>>,
    segment: u64,
    offset: u64,
    record_bytes: u64,
) -> Result<Location, LoadCheckpointError> {
    let segment = segments
        .get(&segment)
        .ok_or(LoadCheckpointError::MissingSegment(segment))?;
    let in_bounds = offset >= SEGMENT_HEADER_BYTES
        && offset.is_multiple_of(BLOCK_BYTES)
        && record_bytes.is_multiple_of(BLOCK_BYTES)
        && record_bytes > 0
        && offset
            .checked_add(record_bytes)
            .is_some_and(|end| end <= segment.data_end);
    if !in_bounds {
        return Err(LoadCheckpointError::Damaged(
            "record location outside its segment",
        ));
    }
    Ok(Location {
        segment: segment.clone(),
        offset,
        record_bytes,
    })
}

fn rebuild_index(
    image: &ArchivedCheckpointImage,
    segments: &HashMap<u64, Rc<Segment>>,
) -> Result<LoadedCheckpoint, LoadCheckpointError> {
    let mut index = Index::default();
    rebuild_entries(image, segments, &mut index)?;
    let mut listed_live = 0u64;
    for s in image.segments.iter() {
        if index.live_bytes(s.id.to_native()) != s.live_bytes.to_native() {
            return Err(LoadCheckpointError::Damaged(
                "live bytes disagree with the entries",
            ));
        }
        listed_live = listed_live.saturating_add(s.live_bytes.to_native());
    }
    if listed_live != index.live_bytes_total() {
        return Err(LoadCheckpointError::Damaged(
            "live bytes disagree with the entries",
        ));
    }
    let replay_segment = image.replay_segment.to_native();
    let replay_offset = image.replay_offset.to_native();
    let segment = segments
        .get(&replay_segment)
        .ok_or(LoadCheckpointError::MissingSegment(replay_segment))?;
    if replay_offset < SEGMENT_HEADER_BYTES
        || !replay_offset.is_multiple_of(BLOCK_BYTES)
        || replay_offset > segment.capacity
    {
        return Err(LoadCheckpointError::Damaged(
            "replay position outside its segment",
        ));
    }
    Ok(LoadedCheckpoint {
        index,
        max_seq: image.max_seq.to_native(),
        replay_segment,
        replay_offset,
    })
}

fn rebuild_entries(
    image: &ArchivedCheckpointImage,
    segments: &HashMap<u64, Rc<Segment>>,
    index: &mut Index,
) -> Result<(), LoadCheckpointError> {
    for o in image.objects.iter() {
        let (key_len, meta_len) = (o.key.len(), o.meta.len());
        let payload =
            record::object_prefix_bytes(key_len, meta_len, o.inline_len.to_native() as usize)
                + o.inline_len.to_native() as usize;
        if key_len > KEY_BYTES_MAX || record::record_bytes(payload) != o.record_bytes.to_native() {
            return Err(LoadCheckpointError::Damaged(
                "object sizes disagree with its record",
            ));
        }
        let location = locate(
            segments,
            o.segment.to_native(),
            o.offset.to_native(),
            o.record_bytes.to_native(),
        )?;
        let entry = ObjectEntry {
            seq: o.seq.to_native(),
            location,
            meta: Rc::from(o.meta.as_slice()),
            inline_len: o.inline_len.to_native(),
        };
        if index
            .put_object(o.bucket.to_native(), Rc::from(o.key.as_str()), entry)
            .is_some()
        {
            return Err(LoadCheckpointError::Damaged("duplicate object"));
        }
    }
    for c in image.chunks.iter() {
        let len = c.len.to_native() as usize;
        if record::record_bytes(record::chunk_prefix_bytes(len) + len) != c.record_bytes.to_native()
        {
            return Err(LoadCheckpointError::Damaged(
                "chunk size disagrees with its record",
            ));
        }
        let location = locate(
            segments,
            c.segment.to_native(),
            c.offset.to_native(),
            c.record_bytes.to_native(),
        )?;
        let entry = ChunkEntry {
            seq: c.seq.to_native(),
            location,
            len: c.len.to_native(),
        };
        if index
            .put_chunk(c.blob.to_native(), c.index.to_native(), entry)
            .is_some()
        {
            return Err(LoadCheckpointError::Damaged("duplicate chunk"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_bytes_place_archive_padding_and_trailer() {
        let archive: Vec<u8> = (1..=100u8).collect();
        let trailer = encode_trailer(&archive);
        let total = 4096;
        let mut whole = vec![0u8; total];
        fill_file_bytes(&mut whole, 0, &archive, &trailer, total);
        let mut pieces = vec![0u8; total];
        for at in (0..total).step_by(1024) {
            fill_file_bytes(&mut pieces[at..at + 1024], at, &archive, &trailer, total);
        }
        assert_eq!(whole, pieces);
        assert_eq!(check_trailer(&whole).unwrap(), &archive[..]);
        let mut bad = whole.clone();
        bad[3] ^= 1;
        assert!(matches!(
            check_trailer(&bad),
            Err(LoadCheckpointError::Damaged("archive checksum"))
        ));
    }

    #[test]
    fn image_round_trips_through_rkyv() {
        let image = CheckpointImage {
            max_seq: 9,
            replay_segment: 2,
            replay_offset: 8192,
            segments: vec![SegmentLive {
                id: 1,
                live_bytes: 4096,
            }],
            objects: vec![CheckpointObject {
                bucket: 1,
                key: "k".into(),
                seq: 3,
                segment: 1,
                offset: 4096,
                record_bytes: 4096,
                meta: vec![1, 2],
                inline_len: 5,
            }],
            chunks: vec![],
        };
        let bytes = rkyv::to_bytes::<rancor::Error>(&image).unwrap();
        let back = rkyv::from_bytes::<CheckpointImage, rancor::Error>(&bytes).unwrap();
        assert_eq!(back, image);
        assert_eq!(
            parse_checkpoint_file_name(&checkpoint_file_name(77)),
            Some(77)
        );
    }
}
