//! The control plane's Cap'n Proto RPC: a node serves one bootstrap `Node`
//! capability per connection (KV, cluster administration, Raft between
//! peers); clients and peers connect with [`connect`].
//!
//! Everything here runs on the control-plane thread inside a tokio
//! `LocalSet` (`RpcSystem` is `!Send`).

mod cluster_service;
pub(crate) mod convert;
mod kv_service;
mod raft_transport;

use std::net::SocketAddr;

use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use control_schema::raft_capnp::node;
use futures::AsyncReadExt;
use tokio_util::compat::TokioAsyncReadCompatExt;

pub use cluster_service::ClusterService;
pub use kv_service::{KvService, NOT_LEADER};
pub(crate) use raft_transport::read_log_id as read_optional_log_id;
pub use raft_transport::{RaftNetworkFactoryImpl, RaftService};

use crate::raft::{KvStateMachine, Raft};

/// Largest message a connection accepts, in 8-byte words (64 MiB): bounds
/// what one peer or client can make a node allocate.
pub const MESSAGE_WORDS_MAX: usize = 8 << 20;

/// Opens a connection to the node at `address` and returns its bootstrap
/// capability. The connection lives until every capability from it is dropped.
pub async fn connect(address: SocketAddr) -> std::io::Result<node::Client> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.compat().split();
    let network = Box::new(twoparty::VatNetwork::new(
        futures::io::BufReader::new(reader),
        futures::io::BufWriter::new(writer),
        Side::Client,
        reader_options(),
    ));
    let mut rpc = RpcSystem::new(network, None);
    let client: node::Client = rpc.bootstrap(Side::Server);
    tokio::task::spawn_local(async move {
        if let Err(e) = rpc.await {
            tracing::debug!(%address, error = %e, "control connection closed");
        }
    });
    Ok(client)
}

fn reader_options() -> capnp::message::ReaderOptions {
    let mut options = capnp::message::ReaderOptions::new();
    options.traversal_limit_in_words(Some(MESSAGE_WORDS_MAX));
    options
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

/// The bootstrap capability of a node.
#[derive(Clone)]
pub struct NodeService {
    node_id: u64,
    raft: Raft,
    state_machine: KvStateMachine,
    limits: ServiceLimits,
    /// Shared by every connection: proposals in flight on this node.
    proposals: std::rc::Rc<tokio::sync::Semaphore>,
    /// Per connection (see `serve`): watches open on it.
    watches: std::rc::Rc<std::cell::Cell<usize>>,
}

impl NodeService {
    pub fn new(
        node_id: u64,
        raft: Raft,
        state_machine: KvStateMachine,
        limits: ServiceLimits,
    ) -> Self {
        Self {
            node_id,
            raft,
            state_machine,
            limits,
            proposals: std::rc::Rc::new(tokio::sync::Semaphore::new(limits.proposals_pending_max)),
            watches: std::rc::Rc::default(),
        }
    }
}

impl node::Server for NodeService {
    fn kv(
        self: capnp::capability::Rc<Self>,
        _params: node::KvParams,
        mut results: node::KvResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        let kv = KvService::new(
            self.raft.clone(),
            self.state_machine.clone(),
            self.proposals.clone(),
            self.limits,
            self.watches.clone(),
        );
        results.get().set_kv(capnp_rpc::new_client(kv));
        std::future::ready(Ok(()))
    }

    fn cluster(
        self: capnp::capability::Rc<Self>,
        _params: node::ClusterParams,
        mut results: node::ClusterResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        let cluster = ClusterService::new(self.node_id, self.raft.clone());
        results.get().set_cluster(capnp_rpc::new_client(cluster));
        std::future::ready(Ok(()))
    }

    fn raft(
        self: capnp::capability::Rc<Self>,
        _params: node::RaftParams,
        mut results: node::RaftResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        results
            .get()
            .set_raft(capnp_rpc::new_client(RaftService::new(self.raft.clone())));
        std::future::ready(Ok(()))
    }
}

/// Accepts connections on `listener` until it fails or the task is dropped;
/// a bad connection affects only itself.
pub async fn serve(listener: tokio::net::TcpListener, service: NodeService) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "control listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.compat().split();
        let network = twoparty::VatNetwork::new(
            futures::io::BufReader::new(reader),
            futures::io::BufWriter::new(writer),
            Side::Server,
            reader_options(),
        );
        // One bootstrap per connection, so per-connection limits count
        // that connection only.
        let bootstrap: node::Client = capnp_rpc::new_client(NodeService {
            watches: std::rc::Rc::default(),
            ..service.clone()
        });
        let rpc = RpcSystem::new(Box::new(network), Some(bootstrap.client));
        tokio::task::spawn_local(async move {
            if let Err(e) = rpc.await {
                tracing::debug!(%peer, error = %e, "control connection ended");
            }
        });
    }
}

/// Wall clock in ms since the epoch: the leader stamps proposals with it.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
