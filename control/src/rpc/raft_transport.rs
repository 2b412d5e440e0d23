//! Raft's messages as Cap'n Proto calls: the server side hands each call to
//! the local openraft node; the client side is openraft's network factory.
//! Log entries travel as the same rkyv records the log store writes.

use std::net::SocketAddr;

use capnp::capability::Rc;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, CommittedLeaderId, LeaderId, LogId, Vote};
use photon_schema::raft_capnp::{optional_log_id, raft, vote};

use super::connect;
use crate::kv::{Command, CommandResponse, TxnRequest};
use crate::proposer::{LeaderHint, LeaderLink, ProposeError, TxnOutcome};
use crate::raft::{codec, Raft, TypeConfig};

pub(crate) fn write_vote(mut b: vote::Builder<'_>, v: &Vote<u64>) {
    b.set_term(v.leader_id.term);
    b.set_node_id(v.leader_id.node_id);
    b.set_committed(v.committed);
}

pub(crate) fn read_vote(r: vote::Reader<'_>) -> Vote<u64> {
    Vote {
        leader_id: LeaderId::new(r.get_term(), r.get_node_id()),
        committed: r.get_committed(),
    }
}

pub(crate) fn write_log_id(mut b: optional_log_id::Builder<'_>, id: &Option<LogId<u64>>) {
    match id {
        None => b.set_none(()),
        Some(id) => {
            let mut s = b.init_some();
            s.set_term(id.leader_id.term);
            s.set_node_id(id.leader_id.node_id);
            s.set_index(id.index);
        }
    }
}

pub(crate) fn read_log_id(r: optional_log_id::Reader<'_>) -> capnp::Result<Option<LogId<u64>>> {
    Ok(match r.which()? {
        optional_log_id::None(()) => None,
        optional_log_id::Some(s) => {
            let s = s?;
            Some(LogId::new(
                CommittedLeaderId::new(s.get_term(), s.get_node_id()),
                s.get_index(),
            ))
        }
    })
}

fn failed(e: impl std::fmt::Display) -> capnp::Error {
    capnp::Error::failed(e.to_string())
}

/// Serves Raft calls from peers into the local node.
pub struct RaftService {
    raft: Raft,
    /// Proposes the txns followers forward (`propose`).
    proposer: crate::proposer::Proposer,
}

impl RaftService {
    pub fn new(proposer: crate::proposer::Proposer) -> Self {
        Self {
            raft: proposer.raft.clone(),
            proposer,
        }
    }
}

impl raft::Server for RaftService {
    async fn append_entries(
        self: Rc<Self>,
        params: raft::AppendEntriesParams,
        mut results: raft::AppendEntriesResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let mut entries = Vec::new();
        for bytes in p.get_entries()?.iter() {
            entries.push(codec::decode_entry(bytes?).map_err(failed)?);
        }
        let request = AppendEntriesRequest {
            vote: read_vote(p.get_vote()?),
            prev_log_id: read_log_id(p.get_prev_log_id()?)?,
            entries,
            leader_commit: read_log_id(p.get_leader_commit()?)?,
        };
        let response = self.raft.append_entries(request).await.map_err(failed)?;
        let mut r = results.get().init_result();
        match response {
            AppendEntriesResponse::Success => r.set_success(()),
            AppendEntriesResponse::PartialSuccess(id) => {
                write_log_id(r.init_partial_success(), &id)
            }
            AppendEntriesResponse::Conflict => r.set_conflict(()),
            AppendEntriesResponse::HigherVote(v) => write_vote(r.init_higher_vote(), &v),
        }
        Ok(())
    }

    async fn vote(
        self: Rc<Self>,
        params: raft::VoteParams,
        mut results: raft::VoteResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let request = VoteRequest {
            vote: read_vote(p.get_vote()?),
            last_log_id: read_log_id(p.get_last_log_id()?)?,
        };
        let response = self.raft.vote(request).await.map_err(failed)?;
        let mut r = results.get();
        write_vote(r.reborrow().init_vote(), &response.vote);
        r.set_vote_granted(response.vote_granted);
        write_log_id(r.init_last_log_id(), &response.last_log_id);
        Ok(())
    }

    async fn install_snapshot(
        self: Rc<Self>,
        params: raft::InstallSnapshotParams,
        mut results: raft::InstallSnapshotResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let request = InstallSnapshotRequest {
            vote: read_vote(p.get_vote()?),
            meta: codec::decode_snapshot_meta(p.get_meta()?).map_err(failed)?,
            offset: p.get_offset(),
            data: p.get_data()?.to_vec(),
            done: p.get_done(),
        };
        let response = self.raft.install_snapshot(request).await.map_err(failed)?;
        write_vote(results.get().init_vote(), &response.vote);
        Ok(())
    }

    async fn propose(
        self: Rc<Self>,
        params: raft::ProposeParams,
        mut results: raft::ProposeResults,
    ) -> Result<(), capnp::Error> {
        let txn = codec::decode_txn(params.get()?.get_txn()?).map_err(failed)?;
        // Proposed here only: a node that does not lead says so and the
        // follower asks again, so a txn never travels a chain of nodes.
        let outcome = self.proposer.propose(Command::Txn(txn)).await;
        let mut r = results.get();
        match outcome {
            Ok(CommandResponse::Txn(t)) => {
                r.set_succeeded(t.succeeded);
                r.set_revision(t.revision);
            }
            Ok(_) => r.set_error("internal: the state machine answered another command"),
            Err(e) => {
                r.set_retry(e.retryable());
                r.set_error(e.to_string());
            }
        }
        Ok(())
    }
}

/// [`LeaderLink`] over the peer connection: one cached connection to the
/// leader this node last forwarded to. Clones share the cache.
#[derive(Clone)]
pub struct PeerLink {
    peer_proof: [u8; 32],
    leader: std::rc::Rc<std::cell::RefCell<Option<(String, raft::Client)>>>,
}

impl PeerLink {
    pub fn new(peer_proof: [u8; 32]) -> Self {
        Self {
            peer_proof,
            leader: std::rc::Rc::default(),
        }
    }

    async fn client(&self, address: &str) -> Result<raft::Client, String> {
        if let Some((cached, client)) = &*self.leader.borrow() {
            if cached == address {
                return Ok(client.clone());
            }
        }
        let parsed: SocketAddr = address
            .parse()
            .map_err(|e| format!("bad address {address}: {e}"))?;
        let node = connect(parsed).await.map_err(|e| e.to_string())?;
        let mut request = node.peer_request();
        request.get().set_proof(&self.peer_proof);
        let client = request
            .send()
            .promise
            .await
            .and_then(|r| r.get()?.get_raft())
            .map_err(|e| e.to_string())?;
        *self.leader.borrow_mut() = Some((address.to_owned(), client.clone()));
        Ok(client)
    }

    async fn forward(
        &self,
        leader: LeaderHint,
        txn: TxnRequest,
    ) -> Result<TxnOutcome, ProposeError> {
        let bytes = codec::encode_txn(&txn).map_err(|e| ProposeError::Raft(e.to_string()))?;
        let unreachable = |e: String| {
            ProposeError::Busy(format!(
                "the leader (node {} at {}) did not take this node's write: {e}",
                leader.id, leader.address
            ))
        };
        let client = self.client(&leader.address).await.map_err(unreachable)?;
        let mut request = client.propose_request();
        request.get().set_txn(&bytes);
        let reply = match request.send().promise.await {
            Ok(reply) => reply,
            Err(e) => {
                *self.leader.borrow_mut() = None;
                return Err(unreachable(e.to_string()));
            }
        };
        let r = reply.get().map_err(|e| unreachable(e.to_string()))?;
        let error = r
            .get_error()
            .ok()
            .and_then(|t| t.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if error.is_empty() {
            Ok(TxnOutcome {
                succeeded: r.get_succeeded(),
                revision: r.get_revision(),
            })
        } else if r.get_retry() {
            Err(ProposeError::Busy(format!(
                "node {} did not take this node's write: {error}",
                leader.id
            )))
        } else {
            Err(ProposeError::Raft(format!(
                "node {} refused this node's write: {error}",
                leader.id
            )))
        }
    }
}

impl LeaderLink for PeerLink {
    fn propose_txn(
        &self,
        leader: LeaderHint,
        txn: TxnRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<TxnOutcome, ProposeError>>>>
    {
        let link = self.clone();
        Box::pin(async move { link.forward(leader, txn).await })
    }
}

/// openraft's view of the other nodes: one Cap'n Proto connection per peer,
/// opened on first use and again after it failed.
#[derive(Clone, Default)]
pub struct RaftNetworkFactoryImpl {
    /// What this node shows its peers: proof it holds the cluster key.
    pub peer_proof: [u8; 32],
}

/// The connection to one peer.
pub struct PeerConnection {
    target: u64,
    peer_proof: [u8; 32],
    address: String,
    client: Option<raft::Client>,
}

impl RaftNetworkFactory<TypeConfig> for RaftNetworkFactoryImpl {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            target,
            peer_proof: self.peer_proof,
            address: node.addr.clone(),
            client: None,
        }
    }
}

fn unreachable<E: std::error::Error>(
    target: u64,
    why: impl std::fmt::Display,
) -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
        "node {target}: {why}"
    ))))
}

fn network<E: std::error::Error>(e: capnp::Error) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
}

impl PeerConnection {
    async fn client<E: std::error::Error>(
        &mut self,
    ) -> Result<raft::Client, RPCError<u64, BasicNode, E>> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let address: SocketAddr = self
            .address
            .parse()
            .map_err(|e| unreachable(self.target, format!("bad address {}: {e}", self.address)))?;
        let node = connect(address)
            .await
            .map_err(|e| unreachable(self.target, e))?;
        let mut request = node.peer_request();
        request.get().set_proof(&self.peer_proof);
        let raft = request
            .send()
            .promise
            .await
            .and_then(|r| r.get()?.get_raft())
            .map_err(|e| unreachable(self.target, e))?;
        self.client = Some(raft.clone());
        Ok(raft)
    }

    /// Forgets a connection after an error so the next call reconnects.
    fn on_error<T, E>(&mut self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let client = self.client().await?;
        let mut request = client.append_entries_request();
        {
            let mut p = request.get();
            write_vote(p.reborrow().init_vote(), &rpc.vote);
            write_log_id(p.reborrow().init_prev_log_id(), &rpc.prev_log_id);
            write_log_id(p.reborrow().init_leader_commit(), &rpc.leader_commit);
            let mut list = p.init_entries(rpc.entries.len() as u32);
            for (i, entry) in rpc.entries.iter().enumerate() {
                let bytes = codec::encode_entry(entry).map_err(|e| network(failed(e)))?;
                list.set(i as u32, &bytes);
            }
        }
        let result = async {
            let reply = request.send().promise.await?;
            let r = reply.get()?.get_result()?;
            use photon_schema::raft_capnp::append_result::Which;
            Ok(match r.which()? {
                Which::Success(()) => AppendEntriesResponse::Success,
                Which::PartialSuccess(id) => {
                    AppendEntriesResponse::PartialSuccess(read_log_id(id?)?)
                }
                Which::Conflict(()) => AppendEntriesResponse::Conflict,
                Which::HigherVote(v) => AppendEntriesResponse::HigherVote(read_vote(v?)),
            })
        }
        .await
        .map_err(network);
        self.on_error(result)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let client = self.client().await?;
        let mut request = client.install_snapshot_request();
        {
            let mut p = request.get();
            write_vote(p.reborrow().init_vote(), &rpc.vote);
            let meta = codec::encode_snapshot_meta(&rpc.meta).map_err(|e| network(failed(e)))?;
            p.set_meta(&meta);
            p.set_offset(rpc.offset);
            p.set_data(&rpc.data);
            p.set_done(rpc.done);
        }
        let result = async {
            let reply = request.send().promise.await?;
            Ok(InstallSnapshotResponse {
                vote: read_vote(reply.get()?.get_vote()?),
            })
        }
        .await
        .map_err(network);
        self.on_error(result)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let client = self.client().await?;
        let mut request = client.vote_request();
        {
            let mut p = request.get();
            write_vote(p.reborrow().init_vote(), &rpc.vote);
            write_log_id(p.init_last_log_id(), &rpc.last_log_id);
        }
        let result = async {
            let reply = request.send().promise.await?;
            let r = reply.get()?;
            Ok(VoteResponse {
                vote: read_vote(r.get_vote()?),
                vote_granted: r.get_vote_granted(),
                last_log_id: read_log_id(r.get_last_log_id()?)?,
            })
        }
        .await
        .map_err(network);
        self.on_error(result)
    }
}
