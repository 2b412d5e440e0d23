//! Requests, responses, events and commands of the KV state machine, and the
//! etcd key-range convention.

use std::collections::BTreeMap;
use std::ops::Bound;

/// A global store revision. 1 is the revision of an empty store.
pub type Revision = i64;

/// A lease id; [`NO_LEASE`] means "no lease".
pub type LeaseId = i64;

/// The lease id of a key without a lease.
pub const NO_LEASE: LeaseId = 0;

/// The `range_end` meaning "every key from `key` on".
pub(crate) const FROM_KEY_END: &[u8] = &[0];

/// A key and its current version, as etcd reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the put that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last change of the key.
    pub mod_revision: Revision,
    /// Puts since creation: 1 after the creating put.
    pub version: i64,
    pub lease: LeaseId,
}

/// Reads a key or a key range.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// Most key-values to return; 0 means no limit.
    pub limit: u64,
    /// Return keys and metadata without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Read the state as of this revision; 0 means the current one.
    pub revision: Revision,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// Matching key-values in key order, at most `limit`.
    pub kvs: Vec<KeyValue>,
    /// Number of matching keys, before the limit.
    pub count: u64,
    /// Whether the limit left keys out.
    pub more: bool,
    /// The store revision when the range was served.
    pub revision: Revision,
}

/// Writes one key.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Lease to attach the key to; [`NO_LEASE`] detaches it.
    pub lease: LeaseId,
    /// Return the key-value this put replaced.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist; `value` must be empty).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist; `lease` must be 0).
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub revision: Revision,
    pub prev_kv: Option<KeyValue>,
}

/// Deletes a key or a key range.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct DeleteRangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub revision: Revision,
    pub deleted: u64,
    pub prev_kvs: Vec<KeyValue>,
}

/// What a [`Compare`] looks at, and the operand it compares with.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum CompareTarget {
    Value(Vec<u8>),
    Version(i64),
    CreateRevision(Revision),
    ModRevision(Revision),
    Lease(LeaseId),
}

/// How the key's field must relate to the operand: `field <op> operand`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum CompareResult {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// A txn guard. Over a range it holds only if it holds for every key in it;
/// a missing key (or empty range) has version, revisions and lease 0 and
/// makes every `Value` compare false.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub target: CompareTarget,
    pub result: CompareResult,
}

#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(serialize_bounds(__S: rkyv::ser::Writer + rkyv::ser::Allocator, __S::Error: rkyv::rancor::Source))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(__C: rkyv::validation::ArchiveContext, __C::Error: rkyv::rancor::Source)))]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(#[rkyv(omit_bounds)] TxnRequest),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

/// If every compare holds, run `success`, else `failure`, atomically.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(serialize_bounds(__S: rkyv::ser::Writer + rkyv::ser::Allocator, __S::Error: rkyv::rancor::Source))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(__C: rkyv::validation::ArchiveContext, __C::Error: rkyv::rancor::Source)))]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    #[rkyv(omit_bounds)]
    pub success: Vec<RequestOp>,
    #[rkyv(omit_bounds)]
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// One response per op of the branch that ran. Each carries the store
    /// revision right after that op (the txn's revision once it has written).
    pub responses: Vec<ResponseOp>,
    pub revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactResponse {
    /// The current store revision (compaction does not change it).
    pub revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseGrantResponse {
    pub id: LeaseId,
    pub ttl_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRevokeResponse {
    /// The revision of the deletions, or the unchanged current revision if no
    /// key was attached.
    pub revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseKeepAliveResponse {
    pub id: LeaseId,
    /// The renewed time to live: the granted TTL.
    pub ttl_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTimeToLiveResponse {
    pub id: LeaseId,
    pub granted_ttl_ms: u64,
    /// Time until expiry; 0 once expired (never negative).
    pub remaining_ms: u64,
    /// Attached keys in key order, if asked for.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, for watchers. `kv.mod_revision` is the change's revision; a
/// delete's `kv` holds only the key and that revision. `prev_kv` is the
/// key-value the change replaced, if the key existed and that version is
/// still retained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// One entry of the Raft log, applied by [`super::KvStore::apply`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(Revision),
    /// Grant a lease; `id` 0 picks the next free id.
    LeaseGrant {
        id: LeaseId,
        ttl_ms: u64,
    },
    LeaseRevoke {
        id: LeaseId,
    },
    LeaseKeepAlive {
        id: LeaseId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseKeepAlive(LeaseKeepAliveResponse),
}

/// The end of the range of every key that starts with `prefix` (etcd's
/// `GetPrefixRangeEnd`): the prefix with its last byte below 0xff
/// incremented and the 0xff bytes after it dropped. A prefix of only 0xff
/// bytes, or an empty one, has no such end and gets `[0]`, "every key from
/// `key` on".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&byte| byte < 0xff) {
        Some(last) => {
            let mut end = prefix[..=last].to_vec();
            end[last] += 1;
            end
        }
        None => FROM_KEY_END.to_vec(),
    }
}

/// Start and end bounds of a key range, as `BTreeMap::range` takes them.
type KeyBounds<'k> = (Bound<&'k [u8]>, Bound<&'k [u8]>);

/// A borrowed etcd key range.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyRange<'a> {
    Single(&'a [u8]),
    From(&'a [u8]),
    /// `[start, end)`; empty when `end <= start`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    pub(crate) fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Single(key),
            FROM_KEY_END => KeyRange::From(key),
            end => KeyRange::Between(key, end),
        }
    }

    pub(crate) fn contains(&self, candidate: &[u8]) -> bool {
        match *self {
            KeyRange::Single(key) => candidate == key,
            KeyRange::From(start) => candidate >= start,
            KeyRange::Between(start, end) => candidate >= start && candidate < end,
        }
    }

    /// The entries of `map` inside the range, in key order.
    pub(crate) fn entries<'m, V>(
        &self,
        map: &'m BTreeMap<Vec<u8>, V>,
    ) -> impl Iterator<Item = (&'m Vec<u8>, &'m V)> + use<'m, 'a, V> {
        // BTreeMap::range panics on an inverted range, which clients can
        // send, so an empty range is answered without calling it.
        let bounds: Option<KeyBounds<'a>> = match *self {
            KeyRange::Single(key) => Some((Bound::Included(key), Bound::Included(key))),
            KeyRange::From(start) => Some((Bound::Included(start), Bound::Unbounded)),
            KeyRange::Between(start, end) if start < end => {
                Some((Bound::Included(start), Bound::Excluded(end)))
            }
            KeyRange::Between(..) => None,
        };
        bounds
            .into_iter()
            .flat_map(move |bounds| map.range::<[u8], _>(bounds))
    }
}
