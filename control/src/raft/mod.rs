//! The KV replicated by openraft: type configuration, the log storage over
//! [`crate::logstore`], the state machine over [`crate::kv`], and the codecs
//! between openraft's types and our on-disk records.
//!
//! A proposal carries the leader's clock (`now_ms`) so that every replica
//! applies lease deadlines identically: applying never reads a local clock.

// openraft's `StorageError` is large and is what its traits return; boxing
// it in our helpers would only move the allocation.
#![allow(clippy::result_large_err)]

pub mod codec;
mod log_store;
mod state_machine;

use std::io::Cursor;

pub use codec::CodecError;
pub use log_store::RaftLogStore;
pub use state_machine::{follow_prefix, KvStateMachine, SnapshotStore};

use crate::kv::{Command, CommandResponse, KvError};

/// Client commands as they travel through the log: one entry carries every
/// command a node batched while the previous entry was being made durable
/// (openraft 0.9 writes one log entry batch per fdatasync, so batching here
/// is what lets concurrent clients share a sync). Each command applies on its
/// own, in order, as if it were its own entry.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Proposal {
    /// The leader's wall clock when it accepted the commands, in ms since the epoch.
    pub now_ms: u64,
    pub commands: Vec<Command>,
}

impl Proposal {
    pub fn one(now_ms: u64, command: Command) -> Self {
        Self {
            now_ms,
            commands: vec![command],
        }
    }
}

/// What applying a log entry returned: `Some` with one result per command
/// for a client entry, `None` for Raft's own entries (blank, membership).
pub type ApplyResult = Option<Vec<Result<CommandResponse, KvError>>>;

openraft::declare_raft_types!(
    /// openraft types of the PhotonCloud control plane.
    pub TypeConfig:
        D = Proposal,
        R = ApplyResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A Raft node of the control plane.
pub type Raft = openraft::Raft<TypeConfig>;

#[cfg(test)]
mod tests;
