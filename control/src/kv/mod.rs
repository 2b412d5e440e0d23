//! The etcd-like KV state machine: the deterministic core that the Raft log
//! drives.
//!
//! It performs no I/O, reads no clock and draws no random numbers: time
//! arrives as `now_ms` arguments stamped by the Raft leader, so every replica
//! that applies the same [`Command`]s in the same order reaches the same state
//! and returns the same answers, errors included (that is why [`KvError`] is
//! plain, comparable data).
//!
//! # Semantics (etcd v3)
//!
//! - A global [`Revision`] is 1 for an empty store. Every command that
//!   changes something bumps it exactly once; all changes of one txn or one
//!   lease revocation share that revision. Within a revision, changes are
//!   ordered by a sub-revision, which is also the order of their events.
//! - Key ranges: an empty `range_end` means the single key, `[0]` means every
//!   key `>= key`, anything else the half-open range `[key, range_end)`
//!   ([`prefix_end`] builds the end of a prefix range).
//! - A txn evaluates all of its compares, nested ones included, against the
//!   state before the txn (as etcd does), then checks the branch it will run
//!   (leases exist, keys exist for `ignore_value`/`ignore_lease`, read
//!   revisions are readable) and only then writes. Writing cannot fail, so a
//!   failed command changes nothing without an undo log. Reads inside a txn
//!   see its earlier writes.
//! - A txn writes every key at most once: a put whose key is put elsewhere in
//!   the request, or falls inside one of its delete ranges, is rejected as a
//!   duplicate (etcd's rule, applied to both branches of every nested txn and
//!   additionally across sibling nested txns, where etcd itself is lax).
//! - Leases expire only through [`KvStore::lease_revoke`]: the leader asks
//!   [`KvStore::expired_leases`] and proposes revocations through the log.
//!
//! # Data layout
//!
//! The replicated state (`store::State`, the whole snapshot) is:
//! - `keys`: `BTreeMap<key, Vec<Version>>`, each key's history in revision
//!   order. A version is `(revision, sub_revision, Some(live value) | None)`;
//!   `None` is a tombstone. A range at revision `r` walks the key range and
//!   binary-searches each history for the newest version `<= r`, skipping
//!   tombstones: O(log n + k log h).
//! - `leases`: `BTreeMap<id, (ttl_ms, deadline_ms)>`, plus the revision, the
//!   compacted revision and the next automatic lease id.
//!
//! Three indexes are derived from it, rebuilt (and thereby cross-checked)
//! when a snapshot is loaded, and never serialized:
//! - `changes`: `BTreeMap<(revision, sub_revision), key>`, so
//!   [`KvStore::events_since`] costs O(events since the start revision);
//! - `lease_keys`: the keys attached to each lease (the keys whose newest
//!   version is live and carries the lease), for revocation;
//! - `lease_deadlines`: `BTreeSet<(deadline_ms, id)>`, the expiry order.
//!
//! Compaction at `c` keeps, per key, the newest version `<= c` and everything
//! newer. A newest version that is a tombstone older than `c` goes with the
//! history before it; a tombstone exactly at `c` stays until the next
//! compaction so that [`KvStore::events_since`]`(c, ..)` still reports the
//! deletion. Events at exactly the compacted revision carry no `prev_kv`,
//! because the version they replaced is gone.

mod error;
mod lease;
pub mod limits;
mod snapshot;
mod store;
mod txn;
mod types;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use error::{KvError, SnapshotError};
pub use store::KvStore;
pub use types::{
    prefix_end, Command, CommandResponse, CompactResponse, Compare, CompareResult, CompareTarget,
    DeleteRangeRequest, DeleteRangeResponse, Event, EventKind, KeyValue, LeaseGrantResponse,
    LeaseId, LeaseKeepAliveResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, Revision, TxnRequest,
    TxnResponse, NO_LEASE,
};
