//! Guarded writes of resource records through Raft: txns that create keys
//! only if absent, change or delete them only if unchanged since they were
//! read, and may also require that a prefix holds no keys, or no keys
//! created after a count was taken (so a limit on the number of records
//! holds under concurrent writers).
//!
//! [`update`] is the one read-modify-write loop: it plans a write from this
//! node's applied state, commits it if the compares still hold, and plans
//! again when they did not (the plan then sees what changed and may refuse
//! with the precise reason), [`ATTEMPTS_MAX`] times at most.

use crate::kv::{
    prefix_end, Command, CommandResponse, Compare, CompareResult, CompareTarget,
    DeleteRangeRequest, KeyValue, PutRequest, RequestOp, TxnRequest,
};
use crate::proposer::{ProposeError, Proposer};
use crate::raft::KvStateMachine;

/// Txns a write tries when records it read changed meanwhile.
pub const ATTEMPTS_MAX: usize = 8;

/// Compare: `key` does not exist.
pub fn absent(key: impl AsRef<[u8]>) -> Compare {
    Compare {
        key: key.as_ref().to_vec(),
        range_end: Vec::new(),
        target: CompareTarget::Version(0),
        result: CompareResult::Equal,
    }
}

/// Compare: `key` exists.
pub fn present(key: impl AsRef<[u8]>) -> Compare {
    Compare {
        key: key.as_ref().to_vec(),
        range_end: Vec::new(),
        target: CompareTarget::Version(0),
        result: CompareResult::Greater,
    }
}

/// Compare: the record read as `kv` was not changed since.
pub fn unchanged(kv: &KeyValue) -> Compare {
    Compare {
        key: kv.key.clone(),
        range_end: Vec::new(),
        target: CompareTarget::ModRevision(kv.mod_revision),
        result: CompareResult::Equal,
    }
}

/// Compare: the key read as `kv` still exists and was not deleted and
/// created again since (it may have been changed).
pub fn still_exists(kv: &KeyValue) -> Compare {
    Compare {
        key: kv.key.clone(),
        range_end: Vec::new(),
        target: CompareTarget::CreateRevision(kv.create_revision),
        result: CompareResult::Equal,
    }
}

/// Compare: `key` holds exactly `value`.
pub fn holds(key: impl AsRef<[u8]>, value: &[u8]) -> Compare {
    Compare {
        key: key.as_ref().to_vec(),
        range_end: Vec::new(),
        target: CompareTarget::Value(value.to_vec()),
        result: CompareResult::Equal,
    }
}

/// Compare: no key starts with `prefix`.
pub fn none_under(prefix: impl AsRef<[u8]>) -> Compare {
    let prefix = prefix.as_ref();
    Compare {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        // Every live key has version >= 1; an empty range compares as 0.
        target: CompareTarget::Version(0),
        result: CompareResult::Equal,
    }
}

/// Compare: every key under `prefix` was created at or before `revision`.
/// With `revision` the newest creation among keys counted under `prefix`
/// (0 for none), it holds only while no key was added since the count.
pub fn none_created_after(prefix: impl AsRef<[u8]>, revision: i64) -> Compare {
    let prefix = prefix.as_ref();
    Compare {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        target: CompareTarget::CreateRevision(revision.saturating_add(1)),
        result: CompareResult::Less,
    }
}

/// The newest creation revision among `kvs` (0 when empty), for
/// [`none_created_after`].
pub fn newest_creation(kvs: &[KeyValue]) -> i64 {
    kvs.iter().map(|kv| kv.create_revision).max().unwrap_or(0)
}

/// Op: put `value` at `key`.
pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

/// Op: delete `key`.
pub fn delete(key: impl AsRef<[u8]>) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest {
        key: key.as_ref().to_vec(),
        range_end: Vec::new(),
        prev_kv: false,
    })
}

/// Op: delete every key under `prefix`.
pub fn delete_prefix(prefix: impl AsRef<[u8]>) -> RequestOp {
    let prefix = prefix.as_ref();
    RequestOp::DeleteRange(DeleteRangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        prev_kv: false,
    })
}

/// Why a guarded write did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The records the write read kept changing under it.
    #[error(
        "unavailable: {what} changed {ATTEMPTS_MAX} times while this write tried to commit; retry"
    )]
    Contended { what: String },
    /// The txn could not be proposed (not the leader, busy, a full disk).
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

impl CommitError {
    /// Whether the same request may succeed if sent again.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Contended { .. } => true,
            Self::Propose(e) => e.retryable(),
        }
    }
}

/// What one attempt of [`update`] decided, from the state it read.
pub enum Plan<T> {
    /// Commit `ops` if every compare holds, then answer `value`.
    Write {
        compares: Vec<Compare>,
        ops: Vec<RequestOp>,
        value: T,
    },
    /// Nothing needs writing: answer `value`.
    Done(T),
}

impl<T> Plan<T> {
    pub fn write(compares: Vec<Compare>, ops: Vec<RequestOp>, value: T) -> Self {
        Self::Write {
            compares,
            ops,
            value,
        }
    }

    /// Replace the record read as `kv` with `record` unless it changed
    /// since, then answer `value`.
    pub fn replace(kv: &KeyValue, record: Vec<u8>, value: T) -> Self {
        Self::write(
            vec![unchanged(kv)],
            vec![put(kv.key.clone(), record)],
            value,
        )
    }
}

/// The guarded read-modify-write: `plan` reads this node's applied state
/// and returns the write (or a refusal, `Err`); the write commits only if
/// its compares still hold, or `plan` runs again on the newer state. After
/// [`ATTEMPTS_MAX`] lost races it gives up with [`CommitError::Contended`]
/// naming `what`.
///
/// A leader applies a txn before answering it, so the next plan sees what
/// beat this one; a follower's propose fails with "not the leader".
pub async fn update<T, E, F>(proposer: &Proposer, what: &str, plan: F) -> Result<T, E>
where
    E: From<CommitError>,
    F: FnMut(&KvStateMachine) -> Result<Plan<T>, E>,
{
    run(proposer, what, Route::Here, plan).await
}

/// [`update`] for a node's own writes (agents, the node registry) on any
/// node: the txn goes through the leader when this node follows
/// ([`Proposer::propose_txn_anywhere`]), and after a lost race the next
/// plan waits (up to [`CATCH_UP_MAX`]) until this node applied what beat it.
pub async fn update_anywhere<T, E, F>(proposer: &Proposer, what: &str, plan: F) -> Result<T, E>
where
    E: From<CommitError>,
    F: FnMut(&KvStateMachine) -> Result<Plan<T>, E>,
{
    run(proposer, what, Route::ThroughLeader, plan).await
}

/// Where a write's txn is proposed.
#[derive(Clone, Copy)]
enum Route {
    /// On this node (a client's request: a follower refuses it).
    Here,
    /// On this node if it leads, else forwarded to the leader.
    ThroughLeader,
}

/// The loop behind [`update`] and [`update_anywhere`].
async fn run<T, E, F>(proposer: &Proposer, what: &str, route: Route, mut plan: F) -> Result<T, E>
where
    E: From<CommitError>,
    F: FnMut(&KvStateMachine) -> Result<Plan<T>, E>,
{
    for _ in 0..ATTEMPTS_MAX {
        let (compares, ops, value) = match plan(&proposer.state_machine)? {
            Plan::Done(value) => return Ok(value),
            Plan::Write {
                compares,
                ops,
                value,
            } => (compares, ops, value),
        };
        match route {
            Route::Here => {
                if commit(proposer, compares, ops)
                    .await
                    .map_err(CommitError::from)?
                {
                    return Ok(value);
                }
            }
            Route::ThroughLeader => {
                let txn = TxnRequest {
                    compare: compares,
                    success: ops,
                    failure: Vec::new(),
                };
                let outcome = proposer
                    .propose_txn_anywhere(txn)
                    .await
                    .map_err(CommitError::from)?;
                if outcome.succeeded {
                    return Ok(value);
                }
                let deadline = tokio::time::Instant::now() + CATCH_UP_MAX;
                while proposer.state_machine.state().kv.revision() < outcome.revision
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }
    Err(CommitError::Contended {
        what: what.to_owned(),
    }
    .into())
}

/// How long [`update_anywhere`] waits for this node to apply a write that
/// beat one of its own.
pub const CATCH_UP_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs every op of `ops` if every compare of `compares` holds, all in one
/// txn: `Ok(false)` when one did not hold (nothing was written).
pub async fn commit(
    proposer: &Proposer,
    compares: Vec<Compare>,
    ops: Vec<RequestOp>,
) -> Result<bool, ProposeError> {
    let command = Command::Txn(TxnRequest {
        compare: compares,
        success: ops,
        failure: Vec::new(),
    });
    match proposer.propose(command).await? {
        CommandResponse::Txn(r) => Ok(r.succeeded),
        _ => Err(ProposeError::Raft(
            "internal: the state machine answered another command".into(),
        )),
    }
}
