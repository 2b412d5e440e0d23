//! NightLight's time-series store, without I/O: the types every metrics
//! crate shares (label sets, matchers, samples) and the formats of the
//! per-shard store (docs/design/0011-nightlight.md).
//!
//! It owns the in-memory structures and byte formats: XOR chunks
//! (`chunk`), the head (`head`) with its postings index (`postings`), the
//! WAL record codec (`wal`) and immutable blocks (`block`). The service
//! does every read, write, sync and mmap; this crate must never import an
//! I/O runtime (glommio, tokio) or touch files, so that it stays
//! deterministic and testable against simple models.
//!
//! Measured (`cargo test -p photon-tsdb -- --nocapture measure memory`):
//! a counter scraped every 15 s takes ~2.1 bytes a sample (3.9 with ±5 ms
//! scrape jitter), a random-float gauge ~7.4, a constant ~0.4; an active
//! series in the head costs ~1 KiB with 6 labels plus its chunks.

pub mod block;
pub mod chunk;
mod encoding;
pub mod fuzzing;
pub mod head;
pub mod labels;
pub mod postings;
pub mod wal;

pub use block::{Block, BlockError, BlockQueryError};
pub use chunk::{ChunkError, ChunkIter, XorChunk, SAMPLES_PER_CHUNK_MAX};
pub use head::{AppendError, Head, HeadLimits, HeadStats, SeriesRef, SERIES_REF_MAX};
pub use labels::{
    is_stale, Labels, MatchOp, Matcher, MatcherError, Sample, METRIC_NAME, STALE_NAN,
};
pub use postings::EmptyMatchersError;
pub use wal::{WalEnd, WalReader, WalRecord};
