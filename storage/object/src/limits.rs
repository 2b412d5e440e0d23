//! Every limit of the store, in one place.
//!
//! Hard limits (`*_MAX`, `*_LIMIT`) hold for every store and every file the
//! store reads; the configurable limits in [`crate::StoreConfig`] must stay
//! within them (`StoreConfig::validate` checks).

/// Alignment of every record and of the segment header: the O_DIRECT block.
pub const BLOCK_BYTES: u64 = 4096;

/// Bytes at the start of a segment reserved for its header.
pub const SEGMENT_HEADER_BYTES: u64 = BLOCK_BYTES;

/// Bytes of the fixed record header that precedes every payload.
pub const RECORD_HEADER_BYTES: usize = 40;

/// Granularity of the per-block crc32c of object and chunk data: a ranged
/// read verifies only the blocks it touches.
pub const DATA_BLOCK_BYTES: usize = 64 * 1024;

/// Longest object key, in bytes (S3's limit).
pub const KEY_BYTES_MAX: usize = 1024;

/// Upper bound for `StoreConfig::meta_bytes_max`.
pub const META_BYTES_LIMIT: usize = 1 << 20;

/// Upper bound for `StoreConfig::inline_bytes_max`.
pub const INLINE_BYTES_LIMIT: usize = 16 << 20;

/// Upper bound for `StoreConfig::chunk_bytes_max`.
pub const CHUNK_BYTES_LIMIT: usize = 32 << 20;

/// Longest record payload any reader accepts; larger lengths in a header are
/// treated as garbage. Larger than any record the limits above allow.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 40 << 20;

/// Smallest segment file.
pub const SEGMENT_BYTES_MIN: u64 = 64 << 10;

/// Largest segment file.
pub const SEGMENT_BYTES_MAX: u64 = 16 << 30;

/// Records reserved but not yet applied to the index, per store; further
/// writers wait. Bounds the memory held by write buffers in flight.
pub const RECORDS_IN_FLIGHT_MAX: usize = 1024;

/// Bytes of records reserved but not yet applied, at most (a record larger
/// than this waits until it is the only one in flight). Every never-written
/// gap a crash can leave lies inside reservations in flight at that moment,
/// so a recovery scan that meets a longer run of zero blocks knows no record
/// follows and stops there instead of reading the rest of the segment.
pub const RESERVED_BYTES_IN_FLIGHT_MAX: u64 = 64 << 20;

/// Size of one sequential read of the recovery scan.
pub const SCAN_READ_BYTES: usize = 1 << 20;

/// Chunk ids in one chunk-delete record; longer lists become several records.
pub const CHUNK_DELETE_BATCH_MAX: usize = 4096;

/// Bytes of live records a compaction reads and copies at once.
pub const COMPACT_COPY_BYTES_IN_FLIGHT_MAX: usize = 32 << 20;

/// Records a compaction copies at once.
pub const COMPACT_COPIES_IN_FLIGHT_MAX: usize = 64;

/// Compactions the background compactor runs back to back before sleeping.
pub const COMPACTIONS_PER_ROUND_MAX: usize = 4;

/// Size of one write of a checkpoint file.
pub const CHECKPOINT_WRITE_BYTES: usize = 1 << 20;

/// Largest checkpoint file the store loads.
pub const CHECKPOINT_BYTES_MAX: u64 = 64 << 30;

const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX < u32::MAX as usize);
const _: () = assert!(RECORD_HEADER_BYTES as u64 <= BLOCK_BYTES);
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(SEGMENT_BYTES_MAX.is_multiple_of(BLOCK_BYTES));
const _: () = assert!((SCAN_READ_BYTES as u64).is_multiple_of(BLOCK_BYTES));
const _: () = assert!((CHECKPOINT_WRITE_BYTES as u64).is_multiple_of(BLOCK_BYTES));
