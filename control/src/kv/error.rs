//! Errors of the KV state machine.

use super::types::{LeaseId, Revision};

/// Why a KV request or command was rejected. A rejected command changes
/// nothing.
///
/// Every replica must reject the same command with the same error, so this
/// is plain data that compares equal across replicas; messages are meant to
/// be shown to API users as they are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("key is empty; every request needs a non-empty key")]
    EmptyKey,
    #[error("key is {bytes} bytes, more than the limit of {max} bytes (KEY_BYTES_MAX)")]
    KeyTooLarge { bytes: usize, max: usize },
    #[error("range end is {bytes} bytes, more than the limit of {max} bytes (KEY_BYTES_MAX)")]
    RangeEndTooLarge { bytes: usize, max: usize },
    #[error("value is {bytes} bytes, more than the limit of {max} bytes (VALUE_BYTES_MAX)")]
    ValueTooLarge { bytes: usize, max: usize },
    #[error("value must be empty when ignore_value is set")]
    ValueProvided,
    #[error("lease must be 0 when ignore_lease is set")]
    LeaseProvided,
    #[error(
        "key {:?} not found; ignore_value and ignore_lease need an existing key",
        String::from_utf8_lossy(key)
    )]
    KeyNotFound { key: Vec<u8> },
    #[error("revision {requested} is negative; use 0 for the current revision")]
    NegativeRevision { requested: Revision },
    #[error(
        "revision {requested} has been compacted; the oldest readable revision is {compacted}"
    )]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future; the current revision is {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("txn list has {ops} entries, more than the limit of {max} (TXN_OPS_MAX)")]
    TooManyTxnOps { ops: usize, max: usize },
    #[error("txn has more than {max} compares and ops in total (TXN_OPS_TOTAL_MAX)")]
    TxnTooLarge { max: usize },
    #[error("txn nesting depth {depth} is more than the limit of {max} (TXN_DEPTH_MAX)")]
    TxnTooDeep { depth: usize, max: usize },
    #[error(
        "duplicate key given in txn request: {:?} is written more than once",
        String::from_utf8_lossy(key)
    )]
    DuplicateKey { key: Vec<u8> },
    #[error("lease {id} not found")]
    LeaseNotFound { id: LeaseId },
    #[error("lease {id} already exists")]
    LeaseExists { id: LeaseId },
    #[error("lease {id} has expired and is being revoked")]
    LeaseExpired { id: LeaseId },
    #[error("lease id {id} is negative; use 0 to let the store pick one")]
    NegativeLeaseId { id: LeaseId },
    #[error("lease TTL {ttl_ms} ms is outside 1..={max} ms (LEASE_TTL_MS_MAX)")]
    InvalidLeaseTtl { ttl_ms: u64, max: u64 },
    #[error("{leases} leases exist, the limit (LEASES_MAX); revoke some first")]
    TooManyLeases { leases: usize },
}

/// Why a snapshot could not be written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("encoding the snapshot failed")]
    Encode(#[source] rkyv::rancor::Error),
    #[error("snapshot is {bytes} bytes, shorter than its {header} byte header")]
    Truncated { bytes: usize, header: usize },
    #[error("snapshot does not start with the KV snapshot magic")]
    BadMagic,
    #[error("snapshot format {format} is not supported (expected {supported})")]
    UnsupportedFormat { format: u32, supported: u32 },
    #[error("snapshot header announces {announced} payload bytes but {actual} follow")]
    LengthMismatch { announced: u64, actual: usize },
    #[error("snapshot checksum is {actual:#010x}, expected {expected:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("snapshot payload is not a valid archive")]
    Decode(#[source] rkyv::rancor::Error),
    #[error("snapshot state is inconsistent: {reason}")]
    Inconsistent { reason: String },
}
