//! The KV API over Cap'n Proto: conversions between the wire structs and the
//! state machine's types, writes proposed through Raft, linearizable reads
//! through openraft's read index, and watches fed by applied events.

use capnp::capability::Rc;
use control_schema::kv_capnp::{kv, watch_handle, watcher};
use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};

use super::convert::{
    bytes, kv_error, read_delete, read_put, read_range, read_txn, write_delete, write_event,
    write_put, write_range, write_txn,
};
use super::now_ms;
use crate::kv::{Command, CommandResponse, Event};
use crate::raft::{KvStateMachine, Proposal, Raft};

/// Prefix of the error a follower returns for a request only the leader can
/// serve; the client library parses the rest (`leader <id> at <address>`).
pub const NOT_LEADER: &str = "not the leader";

pub struct KvService {
    raft: Raft,
    state_machine: KvStateMachine,
    proposals: Rc<tokio::sync::Semaphore>,
    limits: super::ServiceLimits,
    /// Watches open on this connection.
    watches: Rc<std::cell::Cell<usize>>,
}

impl KvService {
    pub fn new(
        raft: Raft,
        state_machine: KvStateMachine,
        proposals: Rc<tokio::sync::Semaphore>,
        limits: super::ServiceLimits,
        watches: Rc<std::cell::Cell<usize>>,
    ) -> Self {
        Self {
            raft,
            state_machine,
            proposals,
            limits,
            watches,
        }
    }
}

/// Counts one open watch on its connection for as long as it lives.
struct WatchSlot(Rc<std::cell::Cell<usize>>);

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

fn not_leader(forward: &ForwardToLeader<u64, openraft::BasicNode>) -> capnp::Error {
    match (&forward.leader_id, &forward.leader_node) {
        (Some(id), Some(node)) => {
            capnp::Error::failed(format!("{NOT_LEADER}: leader {id} at {}", node.addr))
        }
        _ => capnp::Error::failed(format!("{NOT_LEADER}: no leader is known yet; retry")),
    }
}

// ---- calls ----

impl KvService {
    /// Proposes `command` through Raft; a follower answers with the leader.
    async fn propose(&self, command: Command) -> capnp::Result<CommandResponse> {
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
    async fn linearizable(&self) -> capnp::Result<()> {
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
}

fn wrong_response() -> capnp::Error {
    capnp::Error::failed("internal: the state machine answered another command".into())
}

impl kv::Server for KvService {
    async fn range(
        self: Rc<Self>,
        params: kv::RangeParams,
        mut results: kv::RangeResults,
    ) -> Result<(), capnp::Error> {
        let wire = params.get()?.get_request()?;
        let request = read_range(wire)?;
        if !wire.get_serializable() {
            self.linearizable().await?;
        }
        let response = self
            .state_machine
            .state()
            .kv
            .range(&request)
            .map_err(kv_error)?;
        write_range(results.get().init_response(), &response);
        Ok(())
    }

    async fn put(
        self: Rc<Self>,
        params: kv::PutParams,
        mut results: kv::PutResults,
    ) -> Result<(), capnp::Error> {
        let request = read_put(params.get()?.get_request()?)?;
        let CommandResponse::Put(response) = self.propose(Command::Put(request)).await? else {
            return Err(wrong_response());
        };
        write_put(results.get().init_response(), &response);
        Ok(())
    }

    async fn delete_range(
        self: Rc<Self>,
        params: kv::DeleteRangeParams,
        mut results: kv::DeleteRangeResults,
    ) -> Result<(), capnp::Error> {
        let request = read_delete(params.get()?.get_request()?)?;
        let CommandResponse::DeleteRange(response) =
            self.propose(Command::DeleteRange(request)).await?
        else {
            return Err(wrong_response());
        };
        write_delete(results.get().init_response(), &response);
        Ok(())
    }

    async fn txn(
        self: Rc<Self>,
        params: kv::TxnParams,
        mut results: kv::TxnResults,
    ) -> Result<(), capnp::Error> {
        let request = read_txn(params.get()?.get_request()?, 1)?;
        let CommandResponse::Txn(response) = self.propose(Command::Txn(request)).await? else {
            return Err(wrong_response());
        };
        write_txn(results.get().init_response(), &response);
        Ok(())
    }

    async fn compact(
        self: Rc<Self>,
        params: kv::CompactParams,
        mut results: kv::CompactResults,
    ) -> Result<(), capnp::Error> {
        let revision = params.get()?.get_revision();
        let CommandResponse::Compact(response) = self.propose(Command::Compact(revision)).await?
        else {
            return Err(wrong_response());
        };
        results.get().set_revision(response.revision);
        Ok(())
    }

    async fn lease_grant(
        self: Rc<Self>,
        params: kv::LeaseGrantParams,
        mut results: kv::LeaseGrantResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let command = Command::LeaseGrant {
            id: p.get_id(),
            ttl_ms: p.get_ttl_ms(),
        };
        let CommandResponse::LeaseGrant(response) = self.propose(command).await? else {
            return Err(wrong_response());
        };
        let mut r = results.get();
        r.set_id(response.id);
        r.set_ttl_ms(response.ttl_ms);
        Ok(())
    }

    async fn lease_revoke(
        self: Rc<Self>,
        params: kv::LeaseRevokeParams,
        mut results: kv::LeaseRevokeResults,
    ) -> Result<(), capnp::Error> {
        let id = params.get()?.get_id();
        let CommandResponse::LeaseRevoke(response) =
            self.propose(Command::LeaseRevoke { id }).await?
        else {
            return Err(wrong_response());
        };
        results.get().set_revision(response.revision);
        Ok(())
    }

    async fn lease_keep_alive(
        self: Rc<Self>,
        params: kv::LeaseKeepAliveParams,
        mut results: kv::LeaseKeepAliveResults,
    ) -> Result<(), capnp::Error> {
        let id = params.get()?.get_id();
        let CommandResponse::LeaseKeepAlive(response) =
            self.propose(Command::LeaseKeepAlive { id }).await?
        else {
            return Err(wrong_response());
        };
        results.get().set_ttl_ms(response.ttl_ms);
        Ok(())
    }

    async fn lease_time_to_live(
        self: Rc<Self>,
        params: kv::LeaseTimeToLiveParams,
        mut results: kv::LeaseTimeToLiveResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        self.linearizable().await?;
        let response = self
            .state_machine
            .state()
            .kv
            .lease_time_to_live(p.get_id(), now_ms(), p.get_keys())
            .map_err(kv_error)?;
        let mut r = results.get();
        r.set_granted_ttl_ms(response.granted_ttl_ms);
        r.set_remaining_ms(response.remaining_ms);
        let mut keys = r.init_keys(response.keys.len() as u32);
        for (i, k) in response.keys.iter().enumerate() {
            keys.set(i as u32, k);
        }
        Ok(())
    }

    async fn watch(
        self: Rc<Self>,
        params: kv::WatchParams,
        mut results: kv::WatchResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        if self.watches.get() >= self.limits.watches_per_connection_max {
            return Err(capnp::Error::failed(format!(
                "this connection already holds {} watches (control.watches_per_connection_max)",
                self.limits.watches_per_connection_max
            )));
        }
        let key = bytes(p.get_key())?;
        let range_end = bytes(p.get_range_end())?;
        let watcher = p.get_watcher()?;
        let with_prev = p.get_prev_kv();
        // Subscribe before reading history so no event falls in between.
        let mut live = self.state_machine.subscribe();
        let (history, revision) = {
            let state = self.state_machine.state();
            let current = state.kv.revision();
            let start = match p.get_start_revision() {
                0 => current + 1,
                r => r,
            };
            (
                state
                    .kv
                    .events_since(start, &key, &range_end)
                    .map_err(kv_error)?,
                current,
            )
        };
        let (cancel_tx, mut cancel_rx) = tokio::sync::oneshot::channel::<()>();
        results.get().set_revision(revision);
        results
            .get()
            .set_handle(capnp_rpc::new_client(WatchHandleImpl {
                cancel: std::cell::RefCell::new(Some(cancel_tx)),
            }));
        self.watches.set(self.watches.get() + 1);
        let slot = WatchSlot(self.watches.clone());
        tokio::task::spawn_local(async move {
            let _slot = slot;
            if deliver(&watcher, &history, with_prev).await.is_err() {
                return;
            }
            loop {
                let batch = tokio::select! {
                    _ = &mut cancel_rx => return,
                    b = live.recv() => b,
                };
                match batch {
                    Ok(events) => {
                        let mine: Vec<Event> = events
                            .iter()
                            .filter(|e| {
                                e.revision() > revision && in_range(&e.kv.key, &key, &range_end)
                            })
                            .cloned()
                            .collect();
                        if !mine.is_empty() && deliver(&watcher, &mine, with_prev).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let mut request = watcher.cancelled_request();
                        request.get().set_reason(format!(
                            "watcher fell {n} batches behind; watch again from the last revision it saw"
                        ));
                        let _ = request.send().promise.await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(())
    }
}

/// Whether `k` is in the etcd-style range `key`..`range_end`.
fn in_range(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

/// Sends events to a watcher in batches of at most `WATCH_BATCH_MAX`.
async fn deliver(
    watcher: &watcher::Client,
    events: &[Event],
    with_prev: bool,
) -> capnp::Result<()> {
    const WATCH_BATCH_MAX: usize = 256;
    for chunk in events.chunks(WATCH_BATCH_MAX) {
        let mut request = watcher.events_request();
        let mut p = request.get();
        p.set_revision(chunk.last().map_or(0, Event::revision));
        let mut list = p.init_events(chunk.len() as u32);
        for (i, e) in chunk.iter().enumerate() {
            let mut e = e.clone();
            if !with_prev {
                e.prev_kv = None;
            }
            write_event(list.reborrow().get(i as u32), &e);
        }
        request.send().await?;
    }
    Ok(())
}

struct WatchHandleImpl {
    cancel: std::cell::RefCell<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl watch_handle::Server for WatchHandleImpl {
    fn cancel(
        self: Rc<Self>,
        _params: watch_handle::CancelParams,
        _results: watch_handle::CancelResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        if let Some(tx) = self.cancel.borrow_mut().take() {
            let _ = tx.send(());
        }
        std::future::ready(Ok(()))
    }
}

impl Drop for WatchHandleImpl {
    fn drop(&mut self) {
        if let Some(tx) = self.cancel.borrow_mut().take() {
            let _ = tx.send(());
        }
    }
}
