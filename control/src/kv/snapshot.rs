//! Snapshots for Raft: the replicated [`State`] as an rkyv archive behind a
//! checksummed header, and the checks that a loaded state is one this store
//! could have produced.
//!
//! Layout: `magic (8) | format u32 LE | payload length u64 LE | CRC32C of
//! the payload u32 LE | payload`. The checksum catches damage that would
//! still be a valid archive (a flipped value byte); rkyv's checked access
//! catches malformed archives; [`Indexes::build`] catches valid archives of
//! inconsistent states. Snapshots arrive from the network, so none of this
//! may panic.

use std::collections::BTreeSet;

use rkyv::util::AlignedVec;

use super::error::SnapshotError;
use super::limits::{KEY_BYTES_MAX, LEASE_TTL_MS_MAX, VALUE_BYTES_MAX};
use super::store::{Indexes, KvStore, State, Version, FIRST_REVISION};
use super::types::{Revision, NO_LEASE};

const MAGIC: [u8; 8] = *b"PHKVSNAP";
const FORMAT: u32 = 1;
pub(crate) const HEADER_BYTES: usize = 8 + 4 + 8 + 4;

/// rkyv archives need aligned bytes; received bytes are copied into a
/// buffer with this alignment.
const ARCHIVE_ALIGNMENT: usize = 16;

impl KvStore {
    /// The whole replicated state (history, revisions, leases) as bytes for
    /// a Raft snapshot.
    pub fn to_snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let payload =
            rkyv::to_bytes::<rkyv::rancor::Error>(&self.state).map_err(SnapshotError::Encode)?;
        let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        Ok(bytes)
    }

    /// Loads a store from [`KvStore::to_snapshot`] bytes, checking them
    /// fully; the result answers every request exactly as the original.
    pub fn from_snapshot(bytes: &[u8]) -> Result<KvStore, SnapshotError> {
        let payload = check_header(bytes)?;
        let mut aligned = AlignedVec::<ARCHIVE_ALIGNMENT>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        let state = rkyv::from_bytes::<State, rkyv::rancor::Error>(&aligned)
            .map_err(SnapshotError::Decode)?;
        let indexes =
            Indexes::build(&state).map_err(|reason| SnapshotError::Inconsistent { reason })?;
        Ok(KvStore { state, indexes })
    }
}

/// Checks the header and returns the payload.
fn check_header(bytes: &[u8]) -> Result<&[u8], SnapshotError> {
    let Some((header, payload)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
        return Err(SnapshotError::Truncated {
            bytes: bytes.len(),
            header: HEADER_BYTES,
        });
    };
    let (magic, rest) = header.split_at(8);
    let (format, rest) = rest.split_at(4);
    let (length, checksum) = rest.split_at(8);
    if magic != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let format = u32::from_le_bytes(format.try_into().unwrap_or_default());
    if format != FORMAT {
        return Err(SnapshotError::UnsupportedFormat {
            format,
            supported: FORMAT,
        });
    }
    let announced = u64::from_le_bytes(length.try_into().unwrap_or_default());
    if announced != payload.len() as u64 {
        return Err(SnapshotError::LengthMismatch {
            announced,
            actual: payload.len(),
        });
    }
    let expected = u32::from_le_bytes(checksum.try_into().unwrap_or_default());
    let actual = crc32c::crc32c(payload);
    if actual != expected {
        return Err(SnapshotError::ChecksumMismatch { expected, actual });
    }
    Ok(payload)
}

impl Indexes {
    /// Derives the indexes of a state, checking on the way every invariant
    /// the store relies on. The error says which one broke.
    pub(crate) fn build(state: &State) -> Result<Indexes, String> {
        check_counters(state)?;
        let mut indexes = Indexes::default();
        for (&id, lease) in &state.leases {
            if id <= NO_LEASE || lease.ttl_ms == 0 || lease.ttl_ms > LEASE_TTL_MS_MAX {
                return Err(format!(
                    "lease {id} has a bad id or TTL {} ms",
                    lease.ttl_ms
                ));
            }
            indexes.lease_deadlines.insert((lease.deadline_ms, id));
            indexes.lease_keys.insert(id, BTreeSet::new());
        }
        for (key, history) in &state.keys {
            if key.is_empty() || key.len() > KEY_BYTES_MAX {
                return Err(format!("a key has {} bytes", key.len()));
            }
            check_history(state, history)
                .map_err(|reason| format!("key {:?}: {reason}", String::from_utf8_lossy(key)))?;
            for version in history
                .iter()
                .filter(|version| version.revision >= state.compacted_revision)
            {
                let at = (version.revision, version.sub_revision);
                if indexes.changes.insert(at, key.clone()).is_some() {
                    return Err(format!("two changes at revision {at:?}"));
                }
            }
            let lease = history
                .last()
                .and_then(|version| version.live.as_ref())
                .map_or(NO_LEASE, |live| live.lease);
            if lease != NO_LEASE {
                let Some(keys) = indexes.lease_keys.get_mut(&lease) else {
                    return Err(format!(
                        "key {:?} is attached to missing lease {lease}",
                        String::from_utf8_lossy(key)
                    ));
                };
                keys.insert(key.clone());
            }
        }
        check_changes(state, &indexes)?;
        Ok(indexes)
    }
}

fn check_counters(state: &State) -> Result<(), String> {
    // Revision::MAX is refused so that the next write's revision cannot
    // overflow.
    if state.revision < FIRST_REVISION
        || state.revision == Revision::MAX
        || state.compacted_revision < 0
        || state.compacted_revision > state.revision
        || state.next_lease_id <= NO_LEASE
    {
        return Err(format!(
            "revision {}, compacted revision {} or next lease id {} out of range",
            state.revision, state.compacted_revision, state.next_lease_id
        ));
    }
    Ok(())
}

/// Checks one key's history: ordered revisions within the store's, and
/// version counters that follow from puts and deletes.
fn check_history(state: &State, history: &[Version]) -> Result<(), String> {
    let Some(first) = history.first() else {
        return Err("empty history".to_string());
    };
    let compacted = state.compacted_revision;
    // Only the version a compaction kept can predate it; a tombstone is
    // kept only at exactly the compacted revision.
    let first_ok = match &first.live {
        None => first.revision == compacted,
        Some(live) if first.revision > compacted => {
            live.version == 1 && live.create_revision == first.revision
        }
        Some(live) => live.version >= 1 && live.create_revision <= first.revision,
    };
    if !first_ok {
        return Err(format!("bad first version at revision {}", first.revision));
    }
    let mut previous: Option<&Version> = None;
    for version in history {
        if version.revision <= FIRST_REVISION || version.revision > state.revision {
            return Err(format!("version at revision {}", version.revision));
        }
        if let Some(live) = &version.live {
            if live.value.len() > VALUE_BYTES_MAX || live.lease < NO_LEASE {
                return Err(format!("bad value or lease at {}", version.revision));
            }
        }
        if let Some(previous) = previous {
            check_successor(previous, version)?;
        }
        previous = Some(version);
    }
    Ok(())
}

fn check_successor(previous: &Version, version: &Version) -> Result<(), String> {
    if version.revision <= previous.revision {
        return Err(format!("revision {} out of order", version.revision));
    }
    let ok = match (&previous.live, &version.live) {
        (Some(before), Some(after)) => {
            after.version == before.version + 1 && after.create_revision == before.create_revision
        }
        (None, Some(after)) => after.version == 1 && after.create_revision == version.revision,
        (Some(_), None) => true,
        (None, None) => false,
    };
    if !ok {
        return Err(format!("version counters broken at {}", version.revision));
    }
    Ok(())
}

/// Every revision from the compacted one (or the first write) to the
/// current one had changes, numbered 0, 1, ... within the revision.
fn check_changes(state: &State, indexes: &Indexes) -> Result<(), String> {
    let start = state.compacted_revision.max(FIRST_REVISION + 1);
    let (mut revision_expected, mut sub_expected) = (start, 0);
    for &(revision, sub_revision) in indexes.changes.keys() {
        if (revision, sub_revision) == (revision_expected, sub_expected) {
            sub_expected += 1;
        } else if revision == revision_expected + 1 && sub_revision == 0 && sub_expected > 0 {
            (revision_expected, sub_expected) = (revision, 1);
        } else {
            return Err(format!(
                "change ({revision}, {sub_revision}) out of sequence"
            ));
        }
    }
    let covered_to = if sub_expected > 0 {
        revision_expected
    } else {
        start - 1
    };
    if covered_to != state.revision.max(start - 1) {
        return Err(format!(
            "changes end at revision {covered_to}, the store is at {}",
            state.revision
        ));
    }
    Ok(())
}
