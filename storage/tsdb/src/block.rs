//! Immutable blocks: the head's cut-off data, and compactions of blocks,
//! in one self-checking byte format that is queried in place (the service
//! maps the file).
//!
//! All integers little-endian. Layout:
//!
//! ```text
//! header   magic "PHTSDBK1" | version u32 | flags u32 (0) | mint i64 | maxt i64
//!          | crc32c of the 32 bytes before u32 | reserved u32 (0)        40 bytes
//! symbols  count u32 | start offsets u32 x count | UTF-8 strings
//!          (sorted, unique: every label name and value once)
//! series   count u32 | entry offsets u64 x count | entries, sorted by labels
//!          entry: labels uvarint | (name sym uvarint, value sym uvarint)..
//!                 chunks uvarint | per chunk: min_t (varint; the first
//!                 absolute, later ones minus the previous max_t),
//!                 max_t - min_t uvarint, offset in chunks uvarint, len uvarint
//! chunks   XOR chunks back to back (crate::chunk)
//! postings per label pair: count u32 | series indexes u32 x count (sorted)
//! postings table  count u32 | (name sym u32, value sym u32, offset u64) x count,
//!          sorted by (name, value): one per label pair
//! label table     count u32 | (name sym u32, first u32, count u32) x count:
//!          each name's run of rows in the postings table (its values)
//! toc      per section (offset u64, len u64, crc32c u32, reserved u32) x 6
//!          | crc32c of those 144 bytes u32 | "PTOC"                  152 bytes
//! ```
//!
//! Opening checks the header, the table of contents, every section's
//! bounds and checksum, and the shape of the symbol and lookup tables; the
//! series entries, postings lists and chunks are checked as queries read
//! them, so a corrupt block yields `BlockError` and never a panic or an
//! out-of-bounds read. Every sample of a block lies in `mint..=maxt`.

mod merge;
mod read;
mod write;

pub(crate) use write::assemble;

pub use merge::merge;
pub use read::{Block, BlockQueryError};
pub use write::write;

use crate::chunk::ChunkError;

pub const MAGIC: &[u8; 8] = b"PHTSDBK1";
pub const VERSION: u32 = 1;
const TOC_MAGIC: &[u8; 4] = b"PTOC";
pub(crate) const HEADER_BYTES: usize = 40;
pub(crate) const SECTION_COUNT: usize = 6;
const TOC_ENTRY_BYTES: usize = 24;
pub(crate) const TOC_BYTES: usize = SECTION_COUNT * TOC_ENTRY_BYTES + 8;
const POSTINGS_ROW_BYTES: usize = 16;
const LABEL_ROW_BYTES: usize = 12;

/// Series indexes are u32 in postings.
pub const SERIES_PER_BLOCK_MAX: usize = u32::MAX as usize;
/// Symbol offsets are u32.
pub const SYMBOL_BYTES_MAX: usize = u32::MAX as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Section {
    Symbols,
    Series,
    Chunks,
    Postings,
    PostingsTable,
    LabelTable,
}

const SECTION_NAMES: [&str; SECTION_COUNT] = [
    "symbols",
    "series",
    "chunks",
    "postings",
    "postings table",
    "label table",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block of {len} bytes is shorter than its header and table of contents")]
    TooShort { len: usize },
    #[error("not a block (bad magic)")]
    BadMagic,
    #[error("block version {version} is not supported (expected {VERSION})")]
    UnsupportedVersion { version: u32 },
    #[error("block header checksum mismatch")]
    HeaderChecksum,
    #[error("block table of contents checksum mismatch")]
    TocChecksum,
    #[error("block {section} section lies outside the block")]
    SectionBounds { section: &'static str },
    #[error("block {section} section checksum mismatch")]
    SectionChecksum { section: &'static str },
    #[error("block {section} section is malformed: {what}")]
    Malformed {
        section: &'static str,
        what: &'static str,
    },
    #[error("block series {index} has a bad chunk")]
    Chunk {
        index: u32,
        #[source]
        source: ChunkError,
    },
}

fn malformed(section: Section, what: &'static str) -> BlockError {
    BlockError::Malformed {
        section: SECTION_NAMES[section as usize],
        what,
    }
}

#[cfg(test)]
mod tests;
