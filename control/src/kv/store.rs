//! The store: replicated state, derived indexes, reads, single-key writes,
//! compaction, watch history and the Raft apply entry point.

use std::collections::{BTreeMap, BTreeSet};

use super::error::KvError;
use super::limits::{KEY_BYTES_MAX, VALUE_BYTES_MAX};
use super::types::{
    Command, CommandResponse, CompactResponse, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventKind, KeyRange, KeyValue, LeaseId, PutRequest, PutResponse, RangeRequest, RangeResponse,
    Revision, NO_LEASE,
};

/// The revision of an empty store (etcd's convention).
pub(crate) const FIRST_REVISION: Revision = 1;

/// A key's value while it exists.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct LiveValue {
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: Revision,
    pub(crate) version: i64,
    pub(crate) lease: LeaseId,
}

/// One entry of a key's history.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Version {
    pub(crate) revision: Revision,
    /// Position among the changes of `revision`; orders a txn's events.
    pub(crate) sub_revision: u64,
    /// `None` is a tombstone: the key was deleted at `revision`.
    pub(crate) live: Option<LiveValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Lease {
    pub(crate) ttl_ms: u64,
    pub(crate) deadline_ms: u64,
}

/// The replicated state; exactly what a snapshot carries.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct State {
    pub(crate) revision: Revision,
    /// Reads below this revision fail; 0 before the first compaction.
    pub(crate) compacted_revision: Revision,
    /// Where the search for a free id starts when a grant asks for id 0.
    pub(crate) next_lease_id: LeaseId,
    /// Each key's versions in revision order; never empty.
    pub(crate) keys: BTreeMap<Vec<u8>, Vec<Version>>,
    pub(crate) leases: BTreeMap<LeaseId, Lease>,
}

/// Indexes derived from [`State`]; see the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Indexes {
    pub(crate) changes: BTreeMap<(Revision, u64), Vec<u8>>,
    /// An entry for every lease, possibly with no keys.
    pub(crate) lease_keys: BTreeMap<LeaseId, BTreeSet<Vec<u8>>>,
    pub(crate) lease_deadlines: BTreeSet<(u64, LeaseId)>,
}

/// The etcd-like KV state machine. See the [module documentation](super).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvStore {
    pub(crate) state: State,
    pub(crate) indexes: Indexes,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore::new()
    }
}

impl KvStore {
    /// An empty store at revision 1.
    pub fn new() -> KvStore {
        KvStore {
            state: State {
                revision: FIRST_REVISION,
                compacted_revision: 0,
                next_lease_id: 1,
                keys: BTreeMap::new(),
                leases: BTreeMap::new(),
            },
            indexes: Indexes::default(),
        }
    }

    /// The current revision.
    pub fn revision(&self) -> Revision {
        self.state.revision
    }

    /// The revision of the last compaction (0 if none); reads and watches
    /// below it fail with [`KvError::Compacted`].
    pub fn compacted_revision(&self) -> Revision {
        self.state.compacted_revision
    }

    /// Applies one Raft log entry. `now_ms` is the leader's timestamp of the
    /// entry; only lease commands use it. A failed command changes nothing.
    pub fn apply(
        &mut self,
        command: Command,
        now_ms: u64,
    ) -> Result<(CommandResponse, Vec<Event>), KvError> {
        match command {
            Command::Put(request) => self
                .put(request)
                .map(|(response, events)| (CommandResponse::Put(response), events)),
            Command::DeleteRange(request) => self
                .delete_range(&request)
                .map(|(response, events)| (CommandResponse::DeleteRange(response), events)),
            Command::Txn(request) => self
                .txn(request)
                .map(|(response, events)| (CommandResponse::Txn(response), events)),
            Command::Compact(revision) => self
                .compact(revision)
                .map(|response| (CommandResponse::Compact(response), Vec::new())),
            Command::LeaseGrant { id, ttl_ms } => self
                .lease_grant(id, ttl_ms, now_ms)
                .map(|response| (CommandResponse::LeaseGrant(response), Vec::new())),
            Command::LeaseRevoke { id } => self
                .lease_revoke(id)
                .map(|(response, events)| (CommandResponse::LeaseRevoke(response), events)),
            Command::LeaseKeepAlive { id } => self
                .lease_keep_alive(id, now_ms)
                .map(|response| (CommandResponse::LeaseKeepAlive(response), Vec::new())),
        }
    }

    /// Reads a key or range, at the current or a past revision.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        validate_range(request)?;
        self.check_read_revision(request.revision)?;
        let at = if request.revision == 0 {
            self.state.revision
        } else {
            request.revision
        };
        Ok(self.range_at(request, at, self.state.revision))
    }

    /// Writes one key at a new revision.
    pub fn put(&mut self, request: PutRequest) -> Result<(PutResponse, Vec<Event>), KvError> {
        validate_put(&request)?;
        self.check_put(&request)?;
        let mut writer = Writer::new(self);
        let mut response = writer.put(request);
        let (revision, events) = writer.finish();
        response.revision = revision;
        Ok((response, events))
    }

    /// Deletes a key or range; bumps the revision only if a key was deleted.
    pub fn delete_range(
        &mut self,
        request: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, Vec<Event>), KvError> {
        validate_key_range(&request.key, &request.range_end)?;
        let mut writer = Writer::new(self);
        let mut response = writer.delete_range(request);
        let (revision, events) = writer.finish();
        response.revision = revision;
        Ok((response, events))
    }

    /// Drops the history that no read at or after `revision` needs. Reads
    /// and watches below `revision` fail afterwards.
    pub fn compact(&mut self, revision: Revision) -> Result<CompactResponse, KvError> {
        if revision <= self.state.compacted_revision {
            return Err(KvError::Compacted {
                requested: revision,
                compacted: self.state.compacted_revision,
            });
        }
        if revision > self.state.revision {
            return Err(KvError::FutureRevision {
                requested: revision,
                current: self.state.revision,
            });
        }
        self.state.keys.retain(|_, history| {
            compact_history(history, revision);
            !history.is_empty()
        });
        self.indexes.changes = self.indexes.changes.split_off(&(revision, 0));
        self.state.compacted_revision = revision;
        Ok(CompactResponse {
            revision: self.state.revision,
        })
    }

    /// Every retained event with revision `>= start_revision` on a key in
    /// the range, in revision order (and write order within a revision).
    /// Events at exactly the compacted revision carry no `prev_kv`.
    pub fn events_since(
        &self,
        start_revision: Revision,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<Vec<Event>, KvError> {
        validate_key_range(key, range_end)?;
        if start_revision < 0 {
            return Err(KvError::NegativeRevision {
                requested: start_revision,
            });
        }
        if start_revision < self.state.compacted_revision {
            return Err(KvError::Compacted {
                requested: start_revision,
                compacted: self.state.compacted_revision,
            });
        }
        let range = KeyRange::new(key, range_end);
        let events = self
            .indexes
            .changes
            .range((start_revision, 0)..)
            .filter(|(_, changed)| range.contains(changed))
            .filter_map(|(&(revision, _), changed)| self.event_at(changed, revision))
            .collect();
        Ok(events)
    }

    /// The event of `key`'s change at `revision`, rebuilt from its history.
    fn event_at(&self, key: &[u8], revision: Revision) -> Option<Event> {
        let history = self.state.keys.get(key)?;
        let index = history
            .binary_search_by_key(&revision, |version| version.revision)
            .ok()?;
        let prev_kv = index
            .checked_sub(1)
            .and_then(|previous| history.get(previous))
            .and_then(|previous| key_value(key, previous, false));
        Some(match key_value(key, &history[index], false) {
            Some(kv) => Event {
                kind: EventKind::Put,
                kv,
                prev_kv,
            },
            None => Event {
                kind: EventKind::Delete,
                kv: tombstone_kv(key, revision),
                prev_kv,
            },
        })
    }

    /// Fails unless `revision` (0 = current) can be read.
    pub(crate) fn check_read_revision(&self, revision: Revision) -> Result<(), KvError> {
        if revision < 0 {
            return Err(KvError::NegativeRevision {
                requested: revision,
            });
        }
        if revision == 0 {
            return Ok(());
        }
        if revision < self.state.compacted_revision {
            return Err(KvError::Compacted {
                requested: revision,
                compacted: self.state.compacted_revision,
            });
        }
        if revision > self.state.revision {
            return Err(KvError::FutureRevision {
                requested: revision,
                current: self.state.revision,
            });
        }
        Ok(())
    }

    /// Fails unless the put can be applied to the current state.
    pub(crate) fn check_put(&self, request: &PutRequest) -> Result<(), KvError> {
        if (request.ignore_value || request.ignore_lease)
            && self.live_at(&request.key, self.state.revision).is_none()
        {
            return Err(KvError::KeyNotFound {
                key: request.key.clone(),
            });
        }
        if request.lease != NO_LEASE && !self.state.leases.contains_key(&request.lease) {
            return Err(KvError::LeaseNotFound { id: request.lease });
        }
        Ok(())
    }

    /// Serves a validated range at `at`, reporting `revision` as the store's.
    pub(crate) fn range_at(
        &self,
        request: &RangeRequest,
        at: Revision,
        revision: Revision,
    ) -> RangeResponse {
        let range = KeyRange::new(&request.key, &request.range_end);
        let mut kvs = Vec::new();
        let mut count: u64 = 0;
        for (key, history) in range.entries(&self.state.keys) {
            let Some(version) = version_at(history, at) else {
                continue;
            };
            let Some(kv) = key_value(key, version, request.keys_only) else {
                continue;
            };
            count += 1;
            let full = request.limit != 0 && kvs.len() as u64 >= request.limit;
            if !request.count_only && !full {
                kvs.push(kv);
            }
        }
        RangeResponse {
            kvs,
            count,
            more: !request.count_only && request.limit != 0 && count > request.limit,
            revision,
        }
    }

    /// The key-value of `key` at revision `at`, if it existed then.
    pub(crate) fn live_at(&self, key: &[u8], at: Revision) -> Option<KeyValue> {
        let history = self.state.keys.get(key)?;
        key_value(key, version_at(history, at)?, false)
    }
}

/// The newest version at or before `at`.
pub(crate) fn version_at(history: &[Version], at: Revision) -> Option<&Version> {
    let after = history.partition_point(|version| version.revision <= at);
    history.get(after.checked_sub(1)?)
}

/// The key-value of a live version; `None` for a tombstone.
pub(crate) fn key_value(key: &[u8], version: &Version, keys_only: bool) -> Option<KeyValue> {
    let live = version.live.as_ref()?;
    Some(KeyValue {
        key: key.to_vec(),
        value: if keys_only {
            Vec::new()
        } else {
            live.value.clone()
        },
        create_revision: live.create_revision,
        mod_revision: version.revision,
        version: live.version,
        lease: live.lease,
    })
}

/// The `kv` of a delete event: the key and the deletion revision.
fn tombstone_kv(key: &[u8], revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        mod_revision: revision,
        ..KeyValue::default()
    }
}

/// Drops the versions of one key that compaction at `at` makes unreadable.
fn compact_history(history: &mut Vec<Version>, at: Revision) {
    let after = history.partition_point(|version| version.revision <= at);
    let Some(newest) = after.checked_sub(1) else {
        return;
    };
    let keep_from = match &history[newest] {
        // A deletion before `at` leaves nothing readable at `at` or later,
        // and no watcher may start before `at`.
        Version {
            live: None,
            revision,
            ..
        } if *revision < at => newest + 1,
        _ => newest,
    };
    history.drain(..keep_from);
}

pub(crate) fn validate_key(key: &[u8]) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(KvError::KeyTooLarge {
            bytes: key.len(),
            max: KEY_BYTES_MAX,
        });
    }
    Ok(())
}

pub(crate) fn validate_key_range(key: &[u8], range_end: &[u8]) -> Result<(), KvError> {
    validate_key(key)?;
    if range_end.len() > KEY_BYTES_MAX {
        return Err(KvError::RangeEndTooLarge {
            bytes: range_end.len(),
            max: KEY_BYTES_MAX,
        });
    }
    Ok(())
}

pub(crate) fn validate_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(KvError::ValueTooLarge {
            bytes: value.len(),
            max: VALUE_BYTES_MAX,
        });
    }
    Ok(())
}

pub(crate) fn validate_range(request: &RangeRequest) -> Result<(), KvError> {
    validate_key_range(&request.key, &request.range_end)
}

/// Checks a put on its own, before looking at the state.
pub(crate) fn validate_put(request: &PutRequest) -> Result<(), KvError> {
    validate_key(&request.key)?;
    validate_value(&request.value)?;
    if request.ignore_value && !request.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if request.ignore_lease && request.lease != NO_LEASE {
        return Err(KvError::LeaseProvided);
    }
    if request.lease < 0 {
        return Err(KvError::LeaseNotFound { id: request.lease });
    }
    Ok(())
}

/// Applies validated and checked writes at one new revision.
///
/// Writes go straight into the histories at `revision`; the store's
/// revision moves there in [`Writer::finish`] only if something was
/// written. Reads through the writer at the latest revision therefore see
/// the writes so far, while reads at the store's revision see the state
/// before them. Nothing here fails: every check ran before.
pub(crate) struct Writer<'a> {
    pub(crate) store: &'a mut KvStore,
    pub(crate) revision: Revision,
    next_sub_revision: u64,
    events: Vec<Event>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(store: &'a mut KvStore) -> Writer<'a> {
        let revision = store.state.revision + 1;
        Writer {
            store,
            revision,
            next_sub_revision: 0,
            events: Vec::new(),
        }
    }

    /// The store revision as a reader inside the write sees it.
    pub(crate) fn visible_revision(&self) -> Revision {
        if self.events.is_empty() {
            self.store.state.revision
        } else {
            self.revision
        }
    }

    /// Moves the store to the new revision if anything was written.
    pub(crate) fn finish(self) -> (Revision, Vec<Event>) {
        let revision = self.visible_revision();
        self.store.state.revision = revision;
        (revision, self.events)
    }

    pub(crate) fn range(&self, request: &RangeRequest) -> RangeResponse {
        let at = if request.revision == 0 {
            self.revision
        } else {
            request.revision
        };
        self.store.range_at(request, at, self.visible_revision())
    }

    pub(crate) fn put(&mut self, request: PutRequest) -> PutResponse {
        let previous = self.store.live_at(&request.key, self.revision);
        let (value, lease) = match &previous {
            Some(kv) if request.ignore_value || request.ignore_lease => (
                if request.ignore_value {
                    kv.value.clone()
                } else {
                    request.value
                },
                if request.ignore_lease {
                    kv.lease
                } else {
                    request.lease
                },
            ),
            _ => (request.value, request.lease),
        };
        let (create_revision, version) = match &previous {
            Some(kv) => (kv.create_revision, kv.version + 1),
            None => (self.revision, 1),
        };
        let previous_lease = previous.as_ref().map_or(NO_LEASE, |kv| kv.lease);
        self.move_lease(&request.key, previous_lease, lease);
        let kv = KeyValue {
            key: request.key,
            value: value.clone(),
            create_revision,
            mod_revision: self.revision,
            version,
            lease,
        };
        self.record(
            &kv.key,
            Some(LiveValue {
                value,
                create_revision,
                version,
                lease,
            }),
        );
        let response = PutResponse {
            revision: self.revision,
            prev_kv: if request.prev_kv {
                previous.clone()
            } else {
                None
            },
        };
        self.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: previous,
        });
        response
    }

    pub(crate) fn delete_range(&mut self, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let range = KeyRange::new(&request.key, &request.range_end);
        let doomed: Vec<KeyValue> = range
            .entries(&self.store.state.keys)
            .filter_map(|(key, history)| key_value(key, history.last()?, false))
            .collect();
        let deleted = doomed.len() as u64;
        let mut prev_kvs = Vec::new();
        for kv in doomed {
            if request.prev_kv {
                prev_kvs.push(kv.clone());
            }
            self.delete(kv);
        }
        DeleteRangeResponse {
            revision: self.visible_revision(),
            deleted,
            prev_kvs,
        }
    }

    /// Deletes one live key, given its current key-value.
    pub(crate) fn delete(&mut self, previous: KeyValue) {
        self.move_lease(&previous.key, previous.lease, NO_LEASE);
        self.record(&previous.key, None);
        self.events.push(Event {
            kind: EventKind::Delete,
            kv: tombstone_kv(&previous.key, self.revision),
            prev_kv: Some(previous),
        });
    }

    /// Appends a version of `key` at the writer's revision.
    fn record(&mut self, key: &[u8], live: Option<LiveValue>) {
        let sub_revision = self.next_sub_revision;
        self.next_sub_revision += 1;
        let version = Version {
            revision: self.revision,
            sub_revision,
            live,
        };
        match self.store.state.keys.get_mut(key) {
            Some(history) => {
                // The txn duplicate-key check guarantees one write per key
                // and revision; two would make the history ambiguous.
                assert!(
                    history
                        .last()
                        .is_none_or(|last| last.revision < self.revision),
                    "key written twice at revision {}",
                    self.revision
                );
                history.push(version);
            }
            None => {
                self.store.state.keys.insert(key.to_vec(), vec![version]);
            }
        }
        self.store
            .indexes
            .changes
            .insert((self.revision, sub_revision), key.to_vec());
    }

    /// Moves `key` from lease `from` to lease `to` in the attachment index.
    fn move_lease(&mut self, key: &[u8], from: LeaseId, to: LeaseId) {
        let lease_keys = &mut self.store.indexes.lease_keys;
        if from != NO_LEASE && from != to {
            if let Some(keys) = lease_keys.get_mut(&from) {
                keys.remove(key);
            }
        }
        if to != NO_LEASE && from != to {
            if let Some(keys) = lease_keys.get_mut(&to) {
                keys.insert(key.to_vec());
            }
        }
    }
}
