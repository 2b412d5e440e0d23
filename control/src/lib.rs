//! `photon-control`: the replicated control plane's durable pieces.
//!
//! It owns: the Raft log store ([`logstore`]: segment files of CRC32C-framed
//! records, group commit, torn-tail recovery, atomically persisted vote and
//! committed index) and the etcd-like KV state machine ([`kv`]: revisions,
//! range, put, delete, txn, compaction, leases, watch events). Both are free
//! of Raft and RPC types so they can be tested and fuzzed on their own; the
//! openraft and Cap'n Proto glue builds on them.
//!
//! It must never import the data-plane crates (storage, ebpf, vmm) nor
//! `photon-core`'s shard types: the control plane runs on its own thread.

pub mod api_error;
pub mod client;
pub mod config;
pub mod iam_node;
pub mod kv;
pub mod lincheck;
pub mod logstore;
pub mod node;
pub mod proposer;
pub mod raft;
pub mod resource;
pub mod rpc;

/// Wall clock in ms since the epoch: the leader stamps proposals with it.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
