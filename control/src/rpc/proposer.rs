//! Proposals through Raft and linearizable reads, shared by every service a
//! node serves (KV, IAM).

use std::rc::Rc;

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};

use super::convert::kv_error;
use super::{now_ms, ServiceLimits};
use crate::kv::{Command, CommandResponse};
use crate::raft::{KvStateMachine, Proposal, Raft};

/// Prefix of the error a follower returns for a request only the leader can
/// serve; the client library parses the rest (`leader <id> at <address>`).
pub const NOT_LEADER: &str = "not the leader";

/// A node's way into Raft, with the node-wide limit on waiting proposals.
#[derive(Clone)]
pub struct Proposer {
    pub raft: Raft,
    pub state_machine: KvStateMachine,
    proposals: Rc<tokio::sync::Semaphore>,
    pub limits: ServiceLimits,
}

pub(crate) fn not_leader(forward: &ForwardToLeader<u64, openraft::BasicNode>) -> capnp::Error {
    match (&forward.leader_id, &forward.leader_node) {
        (Some(id), Some(node)) => {
            capnp::Error::failed(format!("{NOT_LEADER}: leader {id} at {}", node.addr))
        }
        _ => capnp::Error::failed(format!("{NOT_LEADER}: no leader is known yet; retry")),
    }
}

impl Proposer {
    pub fn new(raft: Raft, state_machine: KvStateMachine, limits: ServiceLimits) -> Self {
        Self {
            raft,
            state_machine,
            proposals: Rc::new(tokio::sync::Semaphore::new(limits.proposals_pending_max)),
            limits,
        }
    }

    /// Proposes `command` through Raft; a follower answers with the leader.
    pub async fn propose(&self, command: Command) -> capnp::Result<CommandResponse> {
        let _permit = self.proposals.try_acquire().map_err(|_| {
            capnp::Error::overloaded(format!(
                "{} proposals are already waiting on this node (control.proposals_pending_max); retry",
                self.limits.proposals_pending_max
            ))
        })?;
        let proposal = Proposal {
            now_ms: now_ms(),
            command,
        };
        match self.raft.client_write(proposal).await {
            Ok(response) => match response.data {
                Some(result) => result.map_err(kv_error),
                None => Err(capnp::Error::failed(
                    "internal: a command applied as a blank entry".into(),
                )),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(&f)),
            Err(e) => Err(capnp::Error::failed(e.to_string())),
        }
    }

    /// Waits until this node may serve a linearizable read (openraft's read
    /// index: the leader confirms its leadership with a quorum and waits for
    /// its state machine to apply up to the commit index it saw).
    pub async fn linearizable(&self) -> capnp::Result<()> {
        use openraft::error::CheckIsLeaderError;
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(&f)),
            // The quorum round timed out (a busy or partitioned cluster): the
            // read can simply be tried again, so say so in the error's kind.
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(capnp::Error::overloaded(format!(
                    "the leader could not confirm its leadership with a quorum ({q}); retry"
                )))
            }
            Err(e) => Err(capnp::Error::failed(e.to_string())),
        }
    }

    /// Whether this node believes it leads (for background duties).
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.current_leader == Some(m.id)
    }
}

pub(crate) fn wrong_response() -> capnp::Error {
    capnp::Error::failed("internal: the state machine answered another command".into())
}
