//! How openraft's types are written into the log and the meta file: rkyv
//! mirrors of `Entry`, `Vote` and `LogId`, so the on-disk format is ours and
//! does not change when openraft's serde layout does.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LeaderId, LogId, Membership, Vote};
use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;

use super::Proposal;
use super::TypeConfig;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {what}: {reason}")]
    Encode { what: &'static str, reason: String },
    #[error("stored {what} does not decode: {reason}")]
    Decode { what: &'static str, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredLogId {
    pub term: u64,
    pub node_id: u64,
    pub index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredVote {
    pub term: u64,
    pub node_id: u64,
    pub committed: bool,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum StoredPayload {
    Blank,
    Normal(Proposal),
    Membership {
        configs: Vec<Vec<u64>>,
        nodes: Vec<(u64, String)>,
    },
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredEntry {
    pub log_id: StoredLogId,
    pub payload: StoredPayload,
}

fn encode<T>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError>
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            RkyvError,
        >,
    >,
{
    rkyv::to_bytes::<RkyvError>(value)
        .map(|b| b.to_vec())
        .map_err(|e| CodecError::Encode {
            what,
            reason: e.to_string(),
        })
}

fn decode<T>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, RkyvError>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<RkyvError>>,
{
    // Bytes read from disk carry no alignment; rkyv needs it.
    let mut aligned: AlignedVec = AlignedVec::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, RkyvError>(&aligned).map_err(|e| CodecError::Decode {
        what,
        reason: e.to_string(),
    })
}

pub fn log_id_to_stored(id: &LogId<u64>) -> StoredLogId {
    StoredLogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

pub fn log_id_from_stored(id: &StoredLogId) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(id.term, id.node_id), id.index)
}

pub fn encode_log_id(id: &LogId<u64>) -> Result<Vec<u8>, CodecError> {
    encode("log id", &log_id_to_stored(id))
}

pub fn decode_log_id(bytes: &[u8]) -> Result<LogId<u64>, CodecError> {
    decode::<StoredLogId>("log id", bytes).map(|s| log_id_from_stored(&s))
}

pub fn encode_vote(vote: &Vote<u64>) -> Result<Vec<u8>, CodecError> {
    encode(
        "vote",
        &StoredVote {
            term: vote.leader_id.term,
            node_id: vote.leader_id.node_id,
            committed: vote.committed,
        },
    )
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote<u64>, CodecError> {
    let v: StoredVote = decode("vote", bytes)?;
    Ok(Vote {
        leader_id: LeaderId::new(v.term, v.node_id),
        committed: v.committed,
    })
}

pub fn membership_to_stored(m: &Membership<u64, BasicNode>) -> StoredPayload {
    StoredPayload::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|c| c.iter().copied().collect())
            .collect(),
        nodes: m.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
    }
}

pub fn membership_from_stored(
    configs: &[Vec<u64>],
    nodes: &[(u64, String)],
) -> Membership<u64, BasicNode> {
    let configs: Vec<BTreeSet<u64>> = configs
        .iter()
        .map(|c| c.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    Membership::new(configs, nodes)
}

/// A KV txn a follower forwards to the leader (`Raft.propose`).
pub fn encode_txn(txn: &crate::kv::TxnRequest) -> Result<Vec<u8>, CodecError> {
    encode("forwarded txn", txn)
}

pub fn decode_txn(bytes: &[u8]) -> Result<crate::kv::TxnRequest, CodecError> {
    decode("forwarded txn", bytes)
}

pub fn encode_entry(entry: &openraft::Entry<TypeConfig>) -> Result<Vec<u8>, CodecError> {
    let payload = match &entry.payload {
        EntryPayload::Blank => StoredPayload::Blank,
        EntryPayload::Normal(proposal) => StoredPayload::Normal(proposal.clone()),
        EntryPayload::Membership(m) => membership_to_stored(m),
    };
    encode(
        "log entry",
        &StoredEntry {
            log_id: log_id_to_stored(&entry.log_id),
            payload,
        },
    )
}

pub fn decode_entry(bytes: &[u8]) -> Result<openraft::Entry<TypeConfig>, CodecError> {
    let stored: StoredEntry = decode("log entry", bytes)?;
    let payload = match stored.payload {
        StoredPayload::Blank => EntryPayload::Blank,
        StoredPayload::Normal(proposal) => EntryPayload::Normal(proposal),
        StoredPayload::Membership { configs, nodes } => {
            EntryPayload::Membership(membership_from_stored(&configs, &nodes))
        }
    };
    Ok(openraft::Entry {
        log_id: log_id_from_stored(&stored.log_id),
        payload,
    })
}

/// Raft metadata of a snapshot, as stored on disk and sent between nodes.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredSnapshotMeta {
    pub last_log_id: Option<StoredLogId>,
    pub membership_log_id: Option<StoredLogId>,
    pub configs: Vec<Vec<u64>>,
    pub nodes: Vec<(u64, String)>,
    pub snapshot_id: String,
}

pub fn encode_snapshot_meta(
    meta: &openraft::SnapshotMeta<u64, BasicNode>,
) -> Result<Vec<u8>, CodecError> {
    let (configs, nodes) = match membership_to_stored(meta.last_membership.membership()) {
        StoredPayload::Membership { configs, nodes } => (configs, nodes),
        _ => unreachable!("membership_to_stored returns Membership"),
    };
    encode(
        "snapshot meta",
        &StoredSnapshotMeta {
            last_log_id: meta.last_log_id.as_ref().map(log_id_to_stored),
            membership_log_id: meta.last_membership.log_id().as_ref().map(log_id_to_stored),
            configs,
            nodes,
            snapshot_id: meta.snapshot_id.clone(),
        },
    )
}

pub fn decode_snapshot_meta(
    bytes: &[u8],
) -> Result<openraft::SnapshotMeta<u64, BasicNode>, CodecError> {
    let stored: StoredSnapshotMeta = decode("snapshot meta", bytes)?;
    Ok(openraft::SnapshotMeta {
        last_log_id: stored.last_log_id.as_ref().map(log_id_from_stored),
        last_membership: openraft::StoredMembership::new(
            stored.membership_log_id.as_ref().map(log_id_from_stored),
            membership_from_stored(&stored.configs, &stored.nodes),
        ),
        snapshot_id: stored.snapshot_id,
    })
}
