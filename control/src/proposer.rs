//! Proposals through Raft and linearizable reads, shared by every service a
//! node serves (KV, IAM, the resource kinds) and by the followers that
//! write back (bucket usage). Errors are typed ([`ProposeError`]); the RPC
//! adapters turn them into Cap'n Proto errors.

use std::rc::Rc;

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};

use crate::kv::{Command, CommandResponse, CompareTarget, KvError, RequestOp, TxnRequest};
use crate::now_ms;
use crate::raft::{KvStateMachine, Proposal, Raft};

/// Commands one log entry carries at most.
pub const BATCH_COMMANDS_MAX: usize = 256;
/// Approximate bytes of commands one log entry carries at most (a larger
/// single command goes alone); keeps entries far below the RPC message limit.
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// Batches proposed to Raft at once. openraft 0.9 makes one append durable
/// at a time, so commands arriving meanwhile wait here and share the next
/// entry (and its fdatasync); a second batch in flight keeps it ready.
pub const BATCHES_IN_FLIGHT_MAX: usize = 2;
/// Linearizable reads one read-index round serves at most.
pub const READS_PER_ROUND_MAX: usize = 4096;

/// A linearizable read waiting for its read-index round.
type ReadWaiter = tokio::sync::oneshot::Sender<Result<(), ProposeError>>;

/// A command waiting for its batch.
struct Pending {
    command: Command,
    reply: tokio::sync::oneshot::Sender<Result<CommandResponse, ProposeError>>,
}

/// Prefix of the message of a follower's refusal of a request only the
/// leader can serve (the leader's id and address travel as typed fields,
/// [`crate::api_error::ApiError::leader`]).
pub const NOT_LEADER: &str = "not the leader";

/// The leader a follower knows of, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    pub id: u64,
    pub address: String,
}

/// Why a proposal or a linearizable read did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader serves this; `None` while no leader is known.
    #[error("{NOT_LEADER}: {}", match .0 {
        Some(l) => format!("leader {} at {}", l.id, l.address),
        None => "no leader is known yet; retry".to_owned(),
    })]
    NotLeader(Option<LeaderHint>),
    /// Refused for now (a full queue, a quorum that did not answer in
    /// time): the same request may simply be tried again.
    #[error("{0}; retry")]
    Busy(String),
    /// The node's disk is full and the command would add data.
    #[error(
        "{DISK_FULL}: writes that add data are refused until space is freed (deletes still work)"
    )]
    DiskFull,
    /// The command was applied and refused by the KV.
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("node is shutting down")]
    ShuttingDown,
    /// Raft failed otherwise (its core stopped, a storage error).
    #[error("{0}")]
    Raft(String),
}

impl ProposeError {
    /// Whether the same request may succeed if sent again (here or, for
    /// [`ProposeError::NotLeader`], to the leader).
    pub fn retryable(&self) -> bool {
        matches!(self, Self::NotLeader(_) | Self::Busy(_))
    }
}

/// Named limits of the KV API on one node.
#[derive(Debug, Clone, Copy)]
pub struct ServiceLimits {
    /// Proposals waiting for commit on this node, all clients together.
    pub proposals_pending_max: usize,
    /// Watches one connection may hold.
    pub watches_per_connection_max: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            proposals_pending_max: 4096,
            watches_per_connection_max: 1024,
        }
    }
}

/// A txn's outcome as the leader reports it to a follower that forwarded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every compare held (and the ops ran).
    pub succeeded: bool,
    /// The KV revision right after the txn.
    pub revision: i64,
}

/// A follower's way to the leader for its own writes (the node registry's
/// heartbeat, a VM agent's reports): over the peer connection, which only
/// holders of the cluster key open. Implemented in `rpc` (this module
/// imports nothing from there).
pub trait LeaderLink {
    fn propose_txn(
        &self,
        leader: LeaderHint,
        txn: TxnRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<TxnOutcome, ProposeError>>>>;
}

/// A node's way into Raft, with the node-wide limit on waiting proposals.
#[derive(Clone)]
pub struct Proposer {
    pub raft: Raft,
    pub state_machine: KvStateMachine,
    proposals: Rc<tokio::sync::Semaphore>,
    pub limits: ServiceLimits,
    queue: tokio::sync::mpsc::UnboundedSender<Pending>,
    /// Linearizable reads waiting for the next read-index round.
    reads: tokio::sync::mpsc::UnboundedSender<ReadWaiter>,
    /// The disk's space reserve: while it is released, commands that add
    /// data are refused and those that remove it still go through.
    reserve: Option<std::sync::Arc<photon_core::reserve::SpaceReserve>>,
    /// How this node's own writes reach the leader when it follows.
    leader_link: Option<Rc<dyn LeaderLink>>,
}

/// The error of a command refused because the node's disk is full.
pub const DISK_FULL: &str = "the control plane's disk is full";

pub(crate) fn not_leader(forward: &ForwardToLeader<u64, openraft::BasicNode>) -> ProposeError {
    ProposeError::NotLeader(match (&forward.leader_id, &forward.leader_node) {
        (Some(id), Some(node)) => Some(LeaderHint {
            id: *id,
            address: node.addr.clone(),
        }),
        _ => None,
    })
}

impl Proposer {
    /// Must be called inside the control thread's `LocalSet`: it starts the
    /// batching task, which ends when every clone is dropped.
    pub fn new(
        raft: Raft,
        state_machine: KvStateMachine,
        limits: ServiceLimits,
        reserve: Option<std::sync::Arc<photon_core::reserve::SpaceReserve>>,
    ) -> Self {
        // Unbounded, but every entry holds a `proposals` permit: at most
        // `proposals_pending_max` wait.
        let (queue, pending) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(batch_proposals(raft.clone(), pending));
        let (reads, waiting) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(batch_reads(raft.clone(), waiting));
        Self {
            raft,
            state_machine,
            proposals: Rc::new(tokio::sync::Semaphore::new(limits.proposals_pending_max)),
            limits,
            queue,
            reads,
            reserve,
            leader_link: None,
        }
    }

    /// Lets [`Proposer::propose_txn_anywhere`] forward through `link`.
    pub fn with_leader_link(mut self, link: Rc<dyn LeaderLink>) -> Self {
        self.leader_link = Some(link);
        self
    }

    /// Proposes a txn of this node's own (not a client's): here when this
    /// node leads, else forwarded to the leader over the peer link. For
    /// node duties only; client requests are redirected, never forwarded.
    pub async fn propose_txn_anywhere(&self, txn: TxnRequest) -> Result<TxnOutcome, ProposeError> {
        match self.propose(Command::Txn(txn.clone())).await {
            Ok(CommandResponse::Txn(r)) => Ok(TxnOutcome {
                succeeded: r.succeeded,
                revision: r.revision,
            }),
            Ok(_) => Err(ProposeError::Raft(
                "internal: the state machine answered another command".into(),
            )),
            Err(ProposeError::NotLeader(Some(leader))) => match &self.leader_link {
                Some(link) => link.propose_txn(leader, txn).await,
                None => Err(ProposeError::NotLeader(Some(leader))),
            },
            Err(e) => Err(e),
        }
    }

    /// One of the node's `proposals_pending_max` places for a waiting
    /// proposal or read; `Busy` (retry) when all are taken.
    fn waiting_slot(&self, what: &str) -> Result<tokio::sync::SemaphorePermit<'_>, ProposeError> {
        self.proposals.try_acquire().map_err(|_| {
            ProposeError::Busy(format!(
                "{} {what} are already waiting on this node (control.proposals_pending_max)",
                self.limits.proposals_pending_max
            ))
        })
    }

    /// Proposes `command` through Raft, in a batch with the commands other
    /// clients propose meanwhile; a follower answers with the leader.
    pub async fn propose(&self, command: Command) -> Result<CommandResponse, ProposeError> {
        if adds_data(&command) && self.reserve.as_ref().is_some_and(|r| r.is_released()) {
            return Err(ProposeError::DiskFull);
        }
        let _permit = self.waiting_slot("proposals")?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue
            .send(Pending { command, reply })
            .map_err(|_| ProposeError::ShuttingDown)?;
        answer.await.map_err(|_| ProposeError::ShuttingDown)?
    }

    /// Waits until this node may serve a linearizable read (openraft's read
    /// index: the leader confirms its leadership with a quorum and waits for
    /// its state machine to apply up to the commit index it saw). Reads that
    /// arrive while a round is running share the next round.
    pub async fn linearizable(&self) -> Result<(), ProposeError> {
        let _permit = self.waiting_slot("requests")?;
        let (waiter, answer) = tokio::sync::oneshot::channel();
        self.reads
            .send(waiter)
            .map_err(|_| ProposeError::ShuttingDown)?;
        answer.await.map_err(|_| ProposeError::ShuttingDown)?
    }

    /// Whether this node believes it leads (for background duties).
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.current_leader == Some(m.id)
    }
}

/// Takes the first waiting command, waits for a free in-flight slot (more
/// commands queue meanwhile), then proposes everything queued as one entry.
async fn batch_proposals(raft: Raft, mut pending: tokio::sync::mpsc::UnboundedReceiver<Pending>) {
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    while let Some(first) = pending.recv().await {
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = command_bytes(&first.command);
        let mut batch = vec![first];
        while batch.len() < BATCH_COMMANDS_MAX && bytes < BATCH_BYTES_MAX {
            match pending.try_recv() {
                Ok(next) => {
                    bytes += command_bytes(&next.command);
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::task::spawn_local(async move {
            let _slot = slot;
            propose_batch(&raft, batch).await;
        });
    }
}

async fn propose_batch(raft: &Raft, batch: Vec<Pending>) {
    let count = batch.len();
    let (commands, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let outcome = raft
        .client_write(Proposal {
            now_ms: now_ms(),
            commands,
        })
        .await;
    match outcome {
        Ok(response) => match response.data {
            Some(results) if results.len() == count => {
                for (result, reply) in results.into_iter().zip(replies) {
                    let _ = reply.send(result.map_err(ProposeError::Kv));
                }
            }
            _ => {
                for reply in replies {
                    let _ = reply.send(Err(ProposeError::Raft(
                        "internal: a batch applied without one result per command".into(),
                    )));
                }
            }
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            for reply in replies {
                let _ = reply.send(Err(not_leader(&f)));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(ProposeError::Raft(message.clone())));
            }
        }
    }
}

/// Runs one read-index round at a time for every read that arrived before
/// it started: a round that starts after a read arrived sees a commit index
/// at least as new as that read's arrival, so each read stays linearizable.
async fn batch_reads(raft: Raft, mut waiting: tokio::sync::mpsc::UnboundedReceiver<ReadWaiter>) {
    while let Some(first) = waiting.recv().await {
        let mut waiters = vec![first];
        while waiters.len() < READS_PER_ROUND_MAX {
            match waiting.try_recv() {
                Ok(next) => waiters.push(next),
                Err(_) => break,
            }
        }
        let outcome = read_index(&raft).await;
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }
}

/// One read-index round.
async fn read_index(raft: &Raft) -> Result<(), ProposeError> {
    use openraft::error::CheckIsLeaderError;
    match raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(&f)),
        // The quorum round timed out (a busy or partitioned cluster): the
        // read can simply be tried again, so say so in the error's kind.
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
            Err(ProposeError::Busy(format!(
                "the leader could not confirm its leadership with a quorum ({q})"
            )))
        }
        Err(e) => Err(ProposeError::Raft(e.to_string())),
    }
}

/// Whether `command` may add data (and so is refused on a full disk).
fn adds_data(command: &Command) -> bool {
    fn op_adds(op: &RequestOp) -> bool {
        match op {
            RequestOp::Range(_) | RequestOp::DeleteRange(_) => false,
            RequestOp::Put(_) => true,
            RequestOp::Txn(t) => t.success.iter().chain(&t.failure).any(op_adds),
        }
    }
    match command {
        Command::Put(_) | Command::LeaseGrant { .. } => true,
        Command::Txn(t) => t.success.iter().chain(&t.failure).any(op_adds),
        Command::DeleteRange(_)
        | Command::Compact(_)
        | Command::LeaseRevoke { .. }
        | Command::LeaseKeepAlive { .. } => false,
    }
}

/// About how many bytes a command adds to a log entry.
fn command_bytes(command: &Command) -> usize {
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match command {
            Command::Put(p) => p.key.len() + p.value.len(),
            Command::DeleteRange(d) => d.key.len() + d.range_end.len(),
            Command::Txn(t) => txn_bytes(t),
            _ => 0,
        }
}

fn txn_bytes(txn: &TxnRequest) -> usize {
    let compares: usize = txn
        .compare
        .iter()
        .map(|c| {
            c.key.len()
                + c.range_end.len()
                + match &c.target {
                    CompareTarget::Value(v) => v.len(),
                    _ => 8,
                }
        })
        .sum();
    let ops: usize = txn
        .success
        .iter()
        .chain(&txn.failure)
        .map(|op| match op {
            RequestOp::Range(r) => r.key.len() + r.range_end.len(),
            RequestOp::Put(p) => p.key.len() + p.value.len(),
            RequestOp::DeleteRange(d) => d.key.len() + d.range_end.len(),
            RequestOp::Txn(t) => txn_bytes(t),
        })
        .sum();
    compares + ops
}
