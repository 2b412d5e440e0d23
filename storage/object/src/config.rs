//! Store configuration and its validation.

use std::path::PathBuf;

use crate::limits::{
    BLOCK_BYTES, CHUNK_BYTES_LIMIT, INLINE_BYTES_LIMIT, KEY_BYTES_MAX, META_BYTES_LIMIT,
    SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES,
};
use crate::record;

/// Settings of one store (one shard's directory).
#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    /// Directory holding the segment and checkpoint files (created if absent).
    pub dir: PathBuf,
    /// Size of each segment file, a multiple of 4096 (default 256 MiB).
    pub segment_bytes: u64,
    /// Longest inline data of an object (default 1 MiB).
    pub inline_bytes_max: usize,
    /// Longest chunk (default 8 MiB).
    pub chunk_bytes_max: usize,
    /// Longest object meta (default 64 KiB).
    pub meta_bytes_max: usize,
    /// Take a checkpoint after this many bytes of appended records
    /// (default 64 MiB); 0 means only on `checkpoint()`, compaction and `close()`.
    pub checkpoint_every_bytes: u64,
    /// Sealed segments whose live ratio is below this are compacted (default 0.5).
    pub compact_live_ratio_max: f64,
    /// Space kept aside in `dir` for a full disk (default 0: none). When a
    /// segment or checkpoint finds the disk full, it is released: puts are
    /// refused with ENOSPC while deletes, compaction and checkpoints go on
    /// in it, and it is taken back once space returns
    /// ([`Store::maintain_reserve`](crate::Store::maintain_reserve)). One
    /// segment plus the largest checkpoint covers them.
    pub reserve_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            segment_bytes: 256 << 20,
            inline_bytes_max: 1 << 20,
            chunk_bytes_max: 8 << 20,
            meta_bytes_max: 64 << 10,
            checkpoint_every_bytes: 64 << 20,
            compact_live_ratio_max: 0.5,
            reserve_bytes: 0,
        }
    }
}

/// Why a [`StoreConfig`] is unusable.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `dir` is empty.
    #[error("store directory is empty")]
    NoDirectory,
    /// `segment_bytes` outside the limits or not a multiple of 4096.
    #[error("segment_bytes {0} must be a multiple of 4096 within [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]")]
    SegmentBytes(u64),
    /// A size limit above its hard limit.
    #[error("{name} {value} exceeds the hard limit {limit}")]
    AboveLimit {
        /// Field name.
        name: &'static str,
        /// Configured value.
        value: usize,
        /// Hard limit from [`crate::limits`].
        limit: usize,
    },
    /// The largest record would not fit in a segment.
    #[error(
        "largest record ({record_bytes} bytes) does not fit in a segment of {segment_bytes} bytes"
    )]
    RecordExceedsSegment {
        /// Bytes of the largest possible record.
        record_bytes: u64,
        /// Configured segment size.
        segment_bytes: u64,
    },
    /// `compact_live_ratio_max` not in (0, 1].
    #[error("compact_live_ratio_max {0} must be in (0, 1]")]
    LiveRatio(f64),
}

impl StoreConfig {
    /// The default configuration for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// Bytes of the largest record this configuration allows.
    pub fn record_bytes_max(&self) -> u64 {
        let object =
            record::object_prefix_bytes(KEY_BYTES_MAX, self.meta_bytes_max, self.inline_bytes_max)
                + self.inline_bytes_max;
        let chunk = record::chunk_prefix_bytes(self.chunk_bytes_max) + self.chunk_bytes_max;
        record::record_bytes(object.max(chunk))
    }

    /// Checks every field against the hard limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(ConfigError::NoDirectory);
        }
        let segment_ok = (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes)
            && self.segment_bytes.is_multiple_of(BLOCK_BYTES);
        if !segment_ok {
            return Err(ConfigError::SegmentBytes(self.segment_bytes));
        }
        for (name, value, limit) in [
            (
                "inline_bytes_max",
                self.inline_bytes_max,
                INLINE_BYTES_LIMIT,
            ),
            ("chunk_bytes_max", self.chunk_bytes_max, CHUNK_BYTES_LIMIT),
            ("meta_bytes_max", self.meta_bytes_max, META_BYTES_LIMIT),
        ] {
            if value > limit {
                return Err(ConfigError::AboveLimit { name, value, limit });
            }
        }
        let record_bytes = self.record_bytes_max();
        if record_bytes > self.segment_bytes - SEGMENT_HEADER_BYTES {
            return Err(ConfigError::RecordExceedsSegment {
                record_bytes,
                segment_bytes: self.segment_bytes,
            });
        }
        let ratio = self.compact_live_ratio_max;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(ConfigError::LiveRatio(ratio));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_validates_and_bad_values_are_named() {
        StoreConfig::new("/tmp/x").validate().unwrap();
        assert_eq!(
            StoreConfig::default().validate(),
            Err(ConfigError::NoDirectory)
        );
        let config = StoreConfig {
            segment_bytes: 5000,
            ..StoreConfig::new("/x")
        };
        assert_eq!(config.validate(), Err(ConfigError::SegmentBytes(5000)));
        let config = StoreConfig {
            segment_bytes: 1 << 20,
            ..StoreConfig::new("/x")
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::RecordExceedsSegment { .. })
        ));
        let config = StoreConfig {
            compact_live_ratio_max: f64::NAN,
            ..StoreConfig::new("/x")
        };
        assert!(matches!(config.validate(), Err(ConfigError::LiveRatio(_))));
        let config = StoreConfig {
            chunk_bytes_max: 1 << 30,
            ..StoreConfig::new("/x")
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::AboveLimit {
                name: "chunk_bytes_max",
                ..
            })
        ));
    }
}
