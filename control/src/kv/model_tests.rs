//! Property tests: the store against a simple model, and snapshot round
//! trips.
//!
//! The model keeps the whole key space as a `BTreeMap` per revision (the
//! vector index is the revision) and the events of each revision, and
//! re-derives every answer from them with no indexes, no history search and
//! no compaction bookkeeping beyond "reads below this fail".

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;

use super::limits::LEASE_TTL_MS_MAX;
use super::snapshot::HEADER_BYTES;
use super::*;

/// The key space; small so that random ops collide often.
const KEYS: [&[u8]; 6] = [b"a", b"b", b"c", b"d", b"e", b"f"];

/// Lease ids the generator refers to (automatic grants count up from 1).
const LEASE_IDS_MAX: LeaseId = 3;

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    value: Vec<u8>,
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
    lease: LeaseId,
}

type ModelState = BTreeMap<Vec<u8>, Entry>;

fn to_kv(key: &[u8], entry: &Entry) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        value: entry.value.clone(),
        create_revision: entry.create_revision,
        mod_revision: entry.mod_revision,
        version: entry.version,
        lease: entry.lease,
    }
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        _ => key >= start && key < end,
    }
}

fn read(state: &ModelState, request: &RangeRequest, revision: Revision) -> RangeResponse {
    let matching: Vec<KeyValue> = state
        .iter()
        .filter(|(key, _)| in_range(key, &request.key, &request.range_end))
        .map(|(key, entry)| KeyValue {
            value: if request.keys_only {
                Vec::new()
            } else {
                entry.value.clone()
            },
            ..to_kv(key, entry)
        })
        .collect();
    let count = matching.len() as u64;
    let kvs = match (request.count_only, request.limit) {
        (true, _) => Vec::new(),
        (false, 0) => matching,
        (false, limit) => matching.into_iter().take(limit as usize).collect(),
    };
    RangeResponse {
        kvs,
        count,
        more: !request.count_only && request.limit != 0 && count > request.limit,
        revision,
    }
}

fn compare_holds(state: &ModelState, compare: &Compare) -> bool {
    let kvs: Vec<KeyValue> = state
        .iter()
        .filter(|(key, _)| in_range(key, &compare.key, &compare.range_end))
        .map(|(key, entry)| to_kv(key, entry))
        .collect();
    let holds = |kv: &KeyValue| {
        let ordering = match &compare.target {
            CompareTarget::Value(value) => kv.value.cmp(value),
            CompareTarget::Version(operand) => kv.version.cmp(operand),
            CompareTarget::CreateRevision(operand) => kv.create_revision.cmp(operand),
            CompareTarget::ModRevision(operand) => kv.mod_revision.cmp(operand),
            CompareTarget::Lease(operand) => kv.lease.cmp(operand),
        };
        match compare.result {
            CompareResult::Equal => ordering == std::cmp::Ordering::Equal,
            CompareResult::NotEqual => ordering != std::cmp::Ordering::Equal,
            CompareResult::Greater => ordering == std::cmp::Ordering::Greater,
            CompareResult::Less => ordering == std::cmp::Ordering::Less,
        }
    };
    if kvs.is_empty() {
        return !matches!(compare.target, CompareTarget::Value(_)) && holds(&KeyValue::default());
    }
    kvs.iter().all(holds)
}

/// The writes of one command, on a copy of the current state.
struct Pending {
    base_revision: Revision,
    work: ModelState,
    events: Vec<Event>,
}

impl Pending {
    fn revision(&self) -> Revision {
        self.base_revision + 1
    }

    fn visible(&self) -> Revision {
        if self.events.is_empty() {
            self.base_revision
        } else {
            self.revision()
        }
    }

    fn put(&mut self, request: &PutRequest) -> PutResponse {
        let previous = self.work.get(&request.key).cloned();
        let value = match (&previous, request.ignore_value) {
            (Some(entry), true) => entry.value.clone(),
            _ => request.value.clone(),
        };
        let lease = match (&previous, request.ignore_lease) {
            (Some(entry), true) => entry.lease,
            _ => request.lease,
        };
        let entry = Entry {
            value,
            create_revision: previous
                .as_ref()
                .map_or(self.revision(), |entry| entry.create_revision),
            mod_revision: self.revision(),
            version: previous.as_ref().map_or(1, |entry| entry.version + 1),
            lease,
        };
        let prev_kv = previous.map(|entry| to_kv(&request.key, &entry));
        self.events.push(Event {
            kind: EventKind::Put,
            kv: to_kv(&request.key, &entry),
            prev_kv: prev_kv.clone(),
        });
        self.work.insert(request.key.clone(), entry);
        PutResponse {
            revision: self.revision(),
            prev_kv: prev_kv.filter(|_| request.prev_kv),
        }
    }

    fn delete(&mut self, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<Vec<u8>> = self
            .work
            .keys()
            .filter(|key| in_range(key, &request.key, &request.range_end))
            .cloned()
            .collect();
        let mut prev_kvs = Vec::new();
        for key in &doomed {
            let kv = self.delete_key(key);
            if request.prev_kv {
                prev_kvs.push(kv);
            }
        }
        DeleteRangeResponse {
            revision: self.visible(),
            deleted: doomed.len() as u64,
            prev_kvs,
        }
    }

    fn delete_key(&mut self, key: &[u8]) -> KeyValue {
        let entry = self.work.remove(key).expect("deleting an existing key");
        let kv = to_kv(key, &entry);
        self.events.push(Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_vec(),
                mod_revision: self.revision(),
                ..KeyValue::default()
            },
            prev_kv: Some(kv.clone()),
        });
        kv
    }
}

#[derive(Clone, Debug)]
struct ModelLease {
    ttl_ms: u64,
    deadline_ms: u64,
}

struct Model {
    /// The state at each revision; index 0 is unused, 1 is the empty store.
    states: Vec<ModelState>,
    /// The events of each revision.
    events: Vec<Vec<Event>>,
    compacted: Revision,
    leases: BTreeMap<LeaseId, ModelLease>,
    next_lease_id: LeaseId,
}

type Outcome<T> = Result<(T, Vec<Event>), KvError>;

impl Model {
    fn new() -> Model {
        Model {
            states: vec![ModelState::new(), ModelState::new()],
            events: vec![Vec::new(), Vec::new()],
            compacted: 0,
            leases: BTreeMap::new(),
            next_lease_id: 1,
        }
    }

    fn revision(&self) -> Revision {
        self.states.len() as Revision - 1
    }

    fn current(&self) -> &ModelState {
        &self.states[self.states.len() - 1]
    }

    fn pending(&self) -> Pending {
        Pending {
            base_revision: self.revision(),
            work: self.current().clone(),
            events: Vec::new(),
        }
    }

    fn commit(&mut self, pending: Pending) -> (Revision, Vec<Event>) {
        let revision = pending.visible();
        if !pending.events.is_empty() {
            self.states.push(pending.work);
            self.events.push(pending.events.clone());
        }
        (revision, pending.events)
    }

    fn check_read(&self, revision: Revision) -> Result<(), KvError> {
        match revision {
            0 => Ok(()),
            r if r < 0 => Err(KvError::NegativeRevision { requested: r }),
            r if r < self.compacted => Err(KvError::Compacted {
                requested: r,
                compacted: self.compacted,
            }),
            r if r > self.revision() => Err(KvError::FutureRevision {
                requested: r,
                current: self.revision(),
            }),
            _ => Ok(()),
        }
    }

    fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        self.check_read(request.revision)?;
        let at = if request.revision == 0 {
            self.revision()
        } else {
            request.revision
        };
        Ok(read(&self.states[at as usize], request, self.revision()))
    }

    fn check_put(&self, request: &PutRequest) -> Result<(), KvError> {
        if (request.ignore_value || request.ignore_lease)
            && !self.current().contains_key(&request.key)
        {
            return Err(KvError::KeyNotFound {
                key: request.key.clone(),
            });
        }
        if request.lease != NO_LEASE && !self.leases.contains_key(&request.lease) {
            return Err(KvError::LeaseNotFound { id: request.lease });
        }
        Ok(())
    }

    fn put(&mut self, request: &PutRequest) -> Outcome<PutResponse> {
        put_shape(request)?;
        self.check_put(request)?;
        let mut pending = self.pending();
        let response = pending.put(request);
        let (_, events) = self.commit(pending);
        Ok((response, events))
    }

    fn delete(&mut self, request: &DeleteRangeRequest) -> Outcome<DeleteRangeResponse> {
        let mut pending = self.pending();
        let mut response = pending.delete(request);
        let (revision, events) = self.commit(pending);
        response.revision = revision;
        Ok((response, events))
    }

    fn txn(&mut self, request: &TxnRequest) -> Outcome<TxnResponse> {
        txn_shape(request)?;
        writes(&request.success)?;
        writes(&request.failure)?;
        self.check_txn(request)?;
        let mut pending = self.pending();
        let mut response = self.execute(&mut pending, request);
        let (revision, events) = self.commit(pending);
        response.revision = revision;
        Ok((response, events))
    }

    fn branch<'r>(&self, request: &'r TxnRequest) -> (bool, &'r [RequestOp]) {
        let state = self.current();
        if request.compare.iter().all(|c| compare_holds(state, c)) {
            (true, &request.success)
        } else {
            (false, &request.failure)
        }
    }

    fn check_txn(&self, request: &TxnRequest) -> Result<(), KvError> {
        for op in self.branch(request).1 {
            match op {
                RequestOp::Range(range) => self.check_read(range.revision)?,
                RequestOp::Put(put) => self.check_put(put)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(nested) => self.check_txn(nested)?,
            }
        }
        Ok(())
    }

    fn execute(&self, pending: &mut Pending, request: &TxnRequest) -> TxnResponse {
        let (succeeded, ops) = self.branch(request);
        let mut responses = Vec::new();
        for op in ops {
            responses.push(match op {
                RequestOp::Range(range) => {
                    let state = match range.revision {
                        0 => &pending.work,
                        revision => &self.states[revision as usize],
                    };
                    ResponseOp::Range(read(state, range, pending.visible()))
                }
                RequestOp::Put(put) => ResponseOp::Put(pending.put(put)),
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(pending.delete(delete)),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.execute(pending, nested)),
            });
        }
        TxnResponse {
            succeeded,
            responses,
            revision: pending.visible(),
        }
    }

    fn compact(&mut self, revision: Revision) -> Result<CompactResponse, KvError> {
        if revision <= self.compacted {
            return Err(KvError::Compacted {
                requested: revision,
                compacted: self.compacted,
            });
        }
        if revision > self.revision() {
            return Err(KvError::FutureRevision {
                requested: revision,
                current: self.revision(),
            });
        }
        self.compacted = revision;
        Ok(CompactResponse {
            revision: self.revision(),
        })
    }

    fn events_since(&self, start: Revision, key: &[u8], end: &[u8]) -> Result<Vec<Event>, KvError> {
        if start < self.compacted {
            return Err(KvError::Compacted {
                requested: start,
                compacted: self.compacted,
            });
        }
        let mut events = Vec::new();
        for (revision, changes) in self.events.iter().enumerate().skip(start as usize) {
            for event in changes.iter().filter(|e| in_range(&e.kv.key, key, end)) {
                let mut event = event.clone();
                // The version an event at the compacted revision replaced
                // is gone.
                if self.compacted > 0 && revision as Revision == self.compacted {
                    event.prev_kv = None;
                }
                events.push(event);
            }
        }
        Ok(events)
    }

    fn lease_grant(
        &mut self,
        id: LeaseId,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<LeaseGrantResponse, KvError> {
        if ttl_ms == 0 || ttl_ms > LEASE_TTL_MS_MAX {
            return Err(KvError::InvalidLeaseTtl {
                ttl_ms,
                max: LEASE_TTL_MS_MAX,
            });
        }
        let id = if id == NO_LEASE {
            let mut candidate = self.next_lease_id;
            while self.leases.contains_key(&candidate) {
                candidate += 1;
            }
            self.next_lease_id = candidate + 1;
            candidate
        } else if self.leases.contains_key(&id) {
            return Err(KvError::LeaseExists { id });
        } else {
            id
        };
        let deadline_ms = now_ms + ttl_ms;
        self.leases.insert(
            id,
            ModelLease {
                ttl_ms,
                deadline_ms,
            },
        );
        Ok(LeaseGrantResponse { id, ttl_ms })
    }

    fn attached(&self, id: LeaseId) -> Vec<Vec<u8>> {
        let state = self.current();
        state
            .iter()
            .filter(|(_, entry)| entry.lease == id)
            .map(|(key, _)| key.clone())
            .collect()
    }

    fn lease_revoke(&mut self, id: LeaseId) -> Outcome<LeaseRevokeResponse> {
        if self.leases.remove(&id).is_none() {
            return Err(KvError::LeaseNotFound { id });
        }
        let mut pending = self.pending();
        for key in self.attached(id) {
            pending.delete_key(&key);
        }
        let (revision, events) = self.commit(pending);
        Ok((LeaseRevokeResponse { revision }, events))
    }

    fn lease_keep_alive(
        &mut self,
        id: LeaseId,
        now_ms: u64,
    ) -> Result<LeaseKeepAliveResponse, KvError> {
        let lease = self
            .leases
            .get_mut(&id)
            .ok_or(KvError::LeaseNotFound { id })?;
        if lease.deadline_ms <= now_ms {
            return Err(KvError::LeaseExpired { id });
        }
        lease.deadline_ms = now_ms + lease.ttl_ms;
        Ok(LeaseKeepAliveResponse {
            id,
            ttl_ms: lease.ttl_ms,
        })
    }

    fn lease_time_to_live(
        &self,
        id: LeaseId,
        now_ms: u64,
    ) -> Result<LeaseTimeToLiveResponse, KvError> {
        let lease = self.leases.get(&id).ok_or(KvError::LeaseNotFound { id })?;
        Ok(LeaseTimeToLiveResponse {
            id,
            granted_ttl_ms: lease.ttl_ms,
            remaining_ms: lease.deadline_ms.saturating_sub(now_ms),
            keys: self.attached(id),
        })
    }

    fn expired_leases(&self, now_ms: u64) -> Vec<LeaseId> {
        let mut expired: Vec<(u64, LeaseId)> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.deadline_ms <= now_ms)
            .map(|(&id, lease)| (lease.deadline_ms, id))
            .collect();
        expired.sort();
        expired.into_iter().map(|(_, id)| id).collect()
    }
}

/// The checks of a put that need no state.
fn put_shape(request: &PutRequest) -> Result<(), KvError> {
    if request.ignore_value && !request.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if request.ignore_lease && request.lease != NO_LEASE {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

fn txn_shape(request: &TxnRequest) -> Result<(), KvError> {
    for op in request.success.iter().chain(&request.failure) {
        match op {
            RequestOp::Put(put) => put_shape(put)?,
            RequestOp::Txn(nested) => txn_shape(nested)?,
            RequestOp::Range(_) | RequestOp::DeleteRange(_) => {}
        }
    }
    Ok(())
}

type KeySet = BTreeSet<Vec<u8>>;

/// The keys `ops` may put and the keys of [`KEYS`] it may delete; fails on
/// a key that one execution could write twice.
fn writes(ops: &[RequestOp]) -> Result<(KeySet, KeySet), KvError> {
    let mut puts = BTreeSet::new();
    let mut deletes = BTreeSet::new();
    for op in ops {
        let (op_puts, op_deletes) = match op {
            RequestOp::Range(_) => continue,
            RequestOp::Put(put) => (BTreeSet::from([put.key.clone()]), BTreeSet::new()),
            RequestOp::DeleteRange(delete) => (
                BTreeSet::new(),
                KEYS.iter()
                    .filter(|key| in_range(key, &delete.key, &delete.range_end))
                    .map(|key| key.to_vec())
                    .collect(),
            ),
            RequestOp::Txn(nested) => {
                let (mut either_puts, mut either_deletes) = writes(&nested.success)?;
                let (failure_puts, failure_deletes) = writes(&nested.failure)?;
                either_puts.extend(failure_puts);
                either_deletes.extend(failure_deletes);
                (either_puts, either_deletes)
            }
        };
        let duplicate = |key: &Vec<u8>| KvError::DuplicateKey { key: key.clone() };
        if let Some(key) = op_puts
            .iter()
            .find(|k| puts.contains(*k) || deletes.contains(*k))
        {
            return Err(duplicate(key));
        }
        if let Some(key) = puts.iter().find(|k| op_deletes.contains(*k)) {
            return Err(duplicate(key));
        }
        puts.extend(op_puts);
        deletes.extend(op_deletes);
    }
    Ok((puts, deletes))
}

// ---- generators ----

#[derive(Clone, Debug)]
enum Step {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Range(RangeRequest),
    /// Compact at the current revision minus `back`.
    Compact {
        back: Revision,
    },
    Grant {
        id: LeaseId,
        ttl_ms: u64,
    },
    Revoke {
        id: LeaseId,
    },
    KeepAlive {
        id: LeaseId,
    },
    Advance {
        ms: u64,
    },
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(KEYS.to_vec()).prop_map(<[u8]>::to_vec)
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(Vec::new()),
        1 => Just(vec![0]),
        2 => key(),
        1 => Just(b"g".to_vec()),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"01".to_vec()), 0..4)
}

fn lease() -> impl Strategy<Value = LeaseId> {
    prop_oneof![Just(NO_LEASE), 1..=LEASE_IDS_MAX]
}

/// Mostly ids the other steps refer to; sometimes 0, "pick one".
fn granted_id() -> impl Strategy<Value = LeaseId> {
    prop_oneof![1 => Just(NO_LEASE), 4 => 1..=LEASE_IDS_MAX]
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    let flags = (
        any::<bool>(),
        prop::bool::weighted(0.06),
        prop::bool::weighted(0.06),
        prop::bool::weighted(0.2),
    );
    (key(), value(), lease(), flags).prop_map(
        |(key, value, lease, (prev_kv, ignore_value, ignore_lease, keep_conflict))| {
            // Mostly well-formed: clear what the ignore flags forbid.
            let clean = ignore_value && !keep_conflict;
            PutRequest {
                key,
                value: if clean { Vec::new() } else { value },
                lease: if ignore_lease && !keep_conflict {
                    NO_LEASE
                } else {
                    lease
                },
                prev_kv,
                ignore_value,
                ignore_lease,
            }
        },
    )
}

fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn range_request() -> impl Strategy<Value = RangeRequest> {
    let revision = prop_oneof![3 => Just(0), 1 => 1..10i64];
    let options = (
        0..3u64,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    );
    (key(), range_end(), options, revision).prop_map(
        |(key, range_end, (limit, keys_only, count_only), revision)| RangeRequest {
            key,
            range_end,
            limit,
            keys_only,
            count_only,
            revision,
        },
    )
}

fn compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        value().prop_map(CompareTarget::Value),
        (0..3i64).prop_map(CompareTarget::Version),
        (0..8i64).prop_map(CompareTarget::CreateRevision),
        (0..8i64).prop_map(CompareTarget::ModRevision),
        (0..3i64).prop_map(CompareTarget::Lease),
    ];
    let result = prop::sample::select(vec![
        CompareResult::Equal,
        CompareResult::NotEqual,
        CompareResult::Greater,
        CompareResult::Less,
    ]);
    let range_end = prop_oneof![3 => Just(Vec::new()), 1 => range_end()];
    (key(), range_end, target, result).prop_map(|(key, range_end, target, result)| Compare {
        key,
        range_end,
        target,
        result,
    })
}

fn txn_request<S>(op: S) -> impl Strategy<Value = TxnRequest>
where
    S: Strategy<Value = RequestOp> + Clone,
{
    let ops = prop::collection::vec(op, 0..3);
    (prop::collection::vec(compare(), 0..3), ops.clone(), ops).prop_map(
        |(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        },
    )
}

fn request_op() -> impl Strategy<Value = RequestOp> + Clone {
    let leaf = prop_oneof![
        2 => range_request().prop_map(RequestOp::Range),
        3 => put_request().prop_map(RequestOp::Put),
        1 => delete_request().prop_map(RequestOp::DeleteRange),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        txn_request(inner).prop_map(RequestOp::Txn)
    })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => put_request().prop_map(Step::Put),
        2 => delete_request().prop_map(Step::Delete),
        3 => txn_request(request_op()).prop_map(Step::Txn),
        1 => range_request().prop_map(Step::Range),
        1 => (0..6i64).prop_map(|back| Step::Compact { back }),
        3 => (granted_id(), prop_oneof![1 => Just(0u64), 9 => 1..400u64])
            .prop_map(|(id, ttl_ms)| Step::Grant { id, ttl_ms }),
        1 => (1..=LEASE_IDS_MAX).prop_map(|id| Step::Revoke { id }),
        2 => (1..=LEASE_IDS_MAX).prop_map(|id| Step::KeepAlive { id }),
        2 => (0..200u64).prop_map(|ms| Step::Advance { ms }),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..64)
}

/// Turns a step into the command the store applies, or `None` for steps
/// that are not commands.
fn command(step: &Step, revision: Revision) -> Option<Command> {
    Some(match step.clone() {
        Step::Put(request) => Command::Put(request),
        Step::Delete(request) => Command::DeleteRange(request),
        Step::Txn(request) => Command::Txn(request),
        Step::Compact { back } => Command::Compact(revision - back),
        Step::Grant { id, ttl_ms } => Command::LeaseGrant { id, ttl_ms },
        Step::Revoke { id } => Command::LeaseRevoke { id },
        Step::KeepAlive { id } => Command::LeaseKeepAlive { id },
        Step::Range(_) | Step::Advance { .. } => return None,
    })
}

/// What the model answers to a command.
fn model_apply(model: &mut Model, command: &Command, now_ms: u64) -> Outcome<CommandResponse> {
    let no_events = |response| (response, Vec::new());
    match command {
        Command::Put(request) => model
            .put(request)
            .map(|(response, events)| (CommandResponse::Put(response), events)),
        Command::DeleteRange(request) => model
            .delete(request)
            .map(|(response, events)| (CommandResponse::DeleteRange(response), events)),
        Command::Txn(request) => model
            .txn(request)
            .map(|(response, events)| (CommandResponse::Txn(response), events)),
        Command::Compact(revision) => model
            .compact(*revision)
            .map(|response| no_events(CommandResponse::Compact(response))),
        Command::LeaseGrant { id, ttl_ms } => model
            .lease_grant(*id, *ttl_ms, now_ms)
            .map(|response| no_events(CommandResponse::LeaseGrant(response))),
        Command::LeaseRevoke { id } => model
            .lease_revoke(*id)
            .map(|(response, events)| (CommandResponse::LeaseRevoke(response), events)),
        Command::LeaseKeepAlive { id } => model
            .lease_keep_alive(*id, now_ms)
            .map(|response| no_events(CommandResponse::LeaseKeepAlive(response))),
    }
}

const EVERY_KEY: &[u8] = &[0];
const TO_THE_END: &[u8] = &[0];

/// Compares every observable answer of the store with the model's.
fn check_agreement(store: &KvStore, model: &Model, now_ms: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.revision(), model.revision());
    prop_assert_eq!(store.compacted_revision(), model.compacted);
    for revision in 0..=model.revision() + 1 {
        let request = RangeRequest {
            key: EVERY_KEY.to_vec(),
            range_end: TO_THE_END.to_vec(),
            revision,
            ..RangeRequest::default()
        };
        prop_assert_eq!(
            store.range(&request),
            model.range(&request),
            "at {}",
            revision
        );
    }
    let starts = [model.compacted - 1, model.compacted, model.compacted + 2];
    for start in starts.into_iter().filter(|&start| start >= 0) {
        prop_assert_eq!(
            store.events_since(start, EVERY_KEY, TO_THE_END),
            model.events_since(start, EVERY_KEY, TO_THE_END),
            "events since {}",
            start
        );
        prop_assert_eq!(
            store.events_since(start, b"c", b""),
            model.events_since(start, b"c", b""),
            "events of c since {}",
            start
        );
    }
    for id in 0..=LEASE_IDS_MAX + 2 {
        prop_assert_eq!(
            store.lease_time_to_live(id, now_ms, true),
            model.lease_time_to_live(id, now_ms)
        );
    }
    prop_assert_eq!(
        store.lease_ids(),
        model.leases.keys().copied().collect::<Vec<_>>()
    );
    for later_ms in [now_ms, now_ms + 100, now_ms + 1000] {
        prop_assert_eq!(
            store.expired_leases(later_ms),
            model.expired_leases(later_ms)
        );
    }
    Ok(())
}

fn run_against_model(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut store = KvStore::new();
    let mut model = Model::new();
    let mut now_ms = 0;
    for step in steps {
        if let Some(command) = command(step, model.revision()) {
            let expected = model_apply(&mut model, &command, now_ms);
            let actual = store.apply(command.clone(), now_ms);
            prop_assert_eq!(actual, expected, "{:?}", command);
        }
        match step {
            Step::Range(request) => prop_assert_eq!(store.range(request), model.range(request)),
            Step::Advance { ms } => now_ms += ms,
            _ => {}
        }
        check_agreement(&store, &model, now_ms)?;
    }
    Ok(())
}

/// Drives a store alone, ignoring rejected commands.
fn drive(steps: &[Step]) -> (KvStore, u64) {
    let mut store = KvStore::new();
    let mut now_ms = 0;
    for step in steps {
        if let Some(command) = command(step, store.revision()) {
            let _rejected_or_applied = store.apply(command, now_ms);
        }
        if let Step::Advance { ms } = step {
            now_ms += ms;
        }
    }
    (store, now_ms)
}

/// Asserts that two stores answer every range, watch and lease query alike.
fn assert_same_answers(a: &KvStore, b: &KvStore, now_ms: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.revision(), b.revision());
    for revision in 0..=a.revision() {
        for start in KEYS {
            for end in [&b""[..], &[0], b"d"] {
                let request = RangeRequest {
                    key: start.to_vec(),
                    range_end: end.to_vec(),
                    revision,
                    ..RangeRequest::default()
                };
                prop_assert_eq!(a.range(&request), b.range(&request));
            }
        }
        prop_assert_eq!(
            a.events_since(revision, EVERY_KEY, TO_THE_END),
            b.events_since(revision, EVERY_KEY, TO_THE_END)
        );
    }
    for id in 0..=LEASE_IDS_MAX + 2 {
        prop_assert_eq!(
            a.lease_time_to_live(id, now_ms, true),
            b.lease_time_to_live(id, now_ms, true)
        );
    }
    prop_assert_eq!(
        a.expired_leases(now_ms + 100),
        b.expired_leases(now_ms + 100)
    );
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn store_matches_model(steps in steps()) {
        run_against_model(&steps)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn snapshot_round_trip_answers_identically(
        steps in steps(),
        more_steps in steps(),
        flip in any::<Index>(),
        bit in 0..8u8,
        cut in any::<Index>(),
    ) {
        let (store, now_ms) = drive(&steps);
        let bytes = store.to_snapshot().expect("encode");
        let restored = KvStore::from_snapshot(&bytes).expect("decode");
        prop_assert_eq!(&restored, &store);
        assert_same_answers(&restored, &store, now_ms)?;

        // Both copies go on alike.
        let (mut original, mut copy) = (store.clone(), restored);
        for step in &more_steps {
            if let Some(command) = command(step, original.revision()) {
                prop_assert_eq!(
                    original.apply(command.clone(), now_ms),
                    copy.apply(command, now_ms)
                );
            }
        }
        prop_assert_eq!(&original, &copy);

        let mut flipped = bytes.clone();
        flipped[flip.index(bytes.len())] ^= 1 << bit;
        prop_assert!(KvStore::from_snapshot(&flipped).is_err());
        prop_assert!(KvStore::from_snapshot(&bytes[..cut.index(bytes.len())]).is_err());

        // Damage behind a valid checksum must be caught by the archive and
        // state checks, or load as a state that survives another round trip.
        let mut forged = bytes.clone();
        let payload_index = HEADER_BYTES + flip.index(bytes.len() - HEADER_BYTES);
        forged[payload_index] ^= 1 << bit;
        let checksum = crc32c::crc32c(&forged[HEADER_BYTES..]);
        forged[HEADER_BYTES - 4..HEADER_BYTES].copy_from_slice(&checksum.to_le_bytes());
        if let Ok(loaded) = KvStore::from_snapshot(&forged) {
            let again = loaded.to_snapshot().expect("encode");
            prop_assert!(KvStore::from_snapshot(&again).is_ok());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        payload in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = KvStore::new().to_snapshot().expect("encode");
        bytes.truncate(HEADER_BYTES);
        bytes[12..20].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes[20..24].copy_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let _rejected_or_loaded = KvStore::from_snapshot(&bytes);
    }
}
