//! Every limit of the KV state machine, in one place.
//!
//! They bound what one client request can make a replica do or store. A
//! violation is rejected with an error that names the limit; it never
//! truncates silently.

/// Largest key (and range end), in bytes. etcd has no separate key limit
/// (only its request size); 8 KiB covers every realistic key while keeping
/// range scans and duplicate checks cheap.
pub const KEY_BYTES_MAX: usize = 8 * 1024;

/// Largest value, in bytes: etcd's default maximum request size (1.5 MiB).
pub const VALUE_BYTES_MAX: usize = 1536 * 1024;

/// Most entries in each list of a txn (its compares, its success ops, its
/// failure ops): etcd's default `--max-txn-ops`.
pub const TXN_OPS_MAX: usize = 128;

/// Most compares and ops in a whole txn request, nested txns included.
/// Nesting multiplies [`TXN_OPS_MAX`]; this bounds the total work (and the
/// quadratic duplicate-key check) of one request.
pub const TXN_OPS_TOTAL_MAX: usize = 1024;

/// Deepest txn nesting; the top-level txn has depth 1.
pub const TXN_DEPTH_MAX: usize = 8;

/// Most leases alive at once. etcd has no such limit; each lease costs
/// memory on every replica and a place in the expiry index.
pub const LEASES_MAX: usize = 1 << 20;

/// Longest lease TTL: etcd's `MaxLeaseTTL` (9,000,000,000 s), in ms.
pub const LEASE_TTL_MS_MAX: u64 = 9_000_000_000 * 1000;
