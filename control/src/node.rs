//! One control-plane node: the Raft log and state machine on disk, openraft,
//! the Cap'n Proto server, and the leader's lease-expiry loop. Runs on the
//! control-plane thread (tokio current_thread + `LocalSet`).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, SnapshotPolicy};

use crate::kv::Command;
use crate::logstore::{LogConfig, LogError, LogStore, LogWriter};
use crate::raft::{KvStateMachine, Proposal, Raft, RaftLogStore};
use crate::rpc::{self, NodeService, RaftNetworkFactoryImpl};

/// How often the leader looks for expired leases.
pub const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Settings of one control-plane node.
#[derive(Debug, Clone)]
pub struct ControlNodeConfig {
    pub node_id: u64,
    /// Where the Cap'n Proto server listens.
    pub listen: SocketAddr,
    /// Where other nodes and clients reach it (defaults to `listen`).
    pub advertise: SocketAddr,
    pub data_dir: PathBuf,
    /// Members to initialize the cluster with when this node's log is empty;
    /// empty means "wait to be added to an existing cluster".
    pub initial_members: BTreeMap<u64, SocketAddr>,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every_entries: u64,
    /// Entries kept behind the latest snapshot.
    pub snapshot_keep_entries: u64,
    /// Space kept aside in the data dir for a full disk (0: none); see
    /// `photon_core::reserve`.
    pub reserve_bytes: u64,
    pub limits: crate::rpc::ServiceLimits,
    /// Admission and handshake timeout of the Cap'n Proto listener.
    pub connections: photon_core::gate::ConnectionLimits,
    /// This node's IAM view, holding the cluster key (which seals secrets in
    /// the KV and proves this node to its peers; every node of a cluster
    /// holds the same one). Created by the caller so the node's data-plane
    /// shards can share it.
    pub directory: Arc<photon_iam::Directory>,
    pub auth: crate::rpc::AuthSettings,
    /// The S3 bucket API's region and emptiness check.
    pub buckets: crate::resource::bucket::BucketSettings,
    pub volumes: crate::resource::volume::VolumeSettings,
    /// The load-balancer API's view of this node's FiberLB agent.
    pub lb: crate::resource::lb::LbSettings,
    /// This node's VM agent (compute role).
    pub vms: crate::resource::vm::VmSettings,
    /// When nodes of the registry count as suspect and down.
    pub liveness: photon_records::Liveness,
    /// Print notices for a person on stderr (off when stderr carries JSON logs).
    pub tell_stderr: bool,
}

impl ControlNodeConfig {
    /// A single-node cluster, for `photon dev`.
    pub fn single(
        listen: SocketAddr,
        data_dir: PathBuf,
        cluster_key: photon_iam::seal::ClusterKey,
    ) -> Self {
        Self {
            node_id: 1,
            listen,
            advertise: listen,
            data_dir,
            initial_members: BTreeMap::from([(1, listen)]),
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_every_entries: 10_000,
            snapshot_keep_entries: 1_000,
            reserve_bytes: 32 << 20,
            limits: crate::rpc::ServiceLimits::default(),
            connections: photon_core::gate::ConnectionLimits::default(),
            directory: photon_iam::Directory::new(cluster_key),
            auth: crate::rpc::AuthSettings::default(),
            buckets: crate::resource::bucket::BucketSettings::default(),
            volumes: crate::resource::volume::VolumeSettings::default(),
            lb: crate::resource::lb::LbSettings::default(),
            vms: crate::resource::vm::VmSettings::default(),
            liveness: photon_records::Liveness::default(),
            tell_stderr: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartNodeError {
    #[error("cannot open the Raft log in {dir}")]
    Log {
        dir: PathBuf,
        #[source]
        source: LogError,
    },
    #[error("cannot create the control plane's space reserve")]
    Reserve(#[source] std::io::Error),
    #[error("cannot start the Raft log writer thread")]
    Writer(#[source] std::io::Error),
    #[error("cannot open the state machine: {0}")]
    StateMachine(String),
    #[error("invalid Raft settings: {0}")]
    RaftConfig(String),
    #[error("cannot start Raft: {0}")]
    Raft(String),
    #[error("this node's cluster key does not open the cluster's IAM records: every node of a cluster must use the same iam.cluster_key_file")]
    ClusterKey,
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running node; dropping it does not stop it, [`ControlNode::shutdown`] does.
pub struct ControlNode {
    pub raft: Raft,
    /// Commits commands through Raft (batched) and serves linearizable reads.
    pub proposer: rpc::Proposer,
    pub state_machine: KvStateMachine,
    /// This node's IAM view (fed by applied `iam/` records).
    pub directory: Arc<photon_iam::Directory>,
    pub address: SocketAddr,
    /// The last log index this node held when it started (see [`caught_up`]).
    pub start_log_index: u64,
    writer: LogWriter,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Whether a node that held log index `start_log_index` when it started
/// has applied that far, or as far as a leader has sent it since: only
/// then does its applied state hold everything it had applied before the
/// restart (a restarted node replays only up to the commit index it
/// persisted, lazily). Once true it stays true.
pub fn caught_up(raft: &Raft, start_log_index: u64) -> bool {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let applied = m.last_applied.map_or(0, |id| id.index);
    applied >= start_log_index
        || (m.current_leader.is_some() && applied >= m.last_log_index.unwrap_or(0))
}

impl ControlNode {
    /// Opens the node's files, starts Raft and the RPC server, and initializes
    /// the cluster if this node's log is empty and initial members are given.
    pub async fn start(config: ControlNodeConfig) -> Result<ControlNode, StartNodeError> {
        let log_dir = config.data_dir.join("raft-log");
        let reserve = match config.reserve_bytes {
            0 => None,
            bytes => Some(Arc::new(
                std::fs::create_dir_all(&config.data_dir)
                    .and_then(|()| {
                        photon_core::reserve::SpaceReserve::new(
                            config.data_dir.join("control.reserve"),
                            bytes,
                            "control plane disk",
                        )
                    })
                    .map_err(StartNodeError::Reserve)?,
            )),
        };
        let log_config = LogConfig {
            reserve: reserve.clone(),
            ..LogConfig::new(&log_dir)
        };
        let (store, recovery) =
            LogStore::open(log_config.clone()).map_err(|source| StartNodeError::Log {
                dir: log_dir.clone(),
                source,
            })?;
        if let Some(torn) = &recovery.torn_tail {
            tracing::warn!(path = %torn.path.display(), offset = torn.offset, bytes = torn.bytes_dropped,
                reason = %torn.reason, "cut a torn, unacknowledged tail off the Raft log");
        }
        let fresh = recovery.last_index == 0 && recovery.meta.vote.is_none();
        let writer = LogWriter::start(store, log_config.queue_depth, log_config.batch_requests_max)
            .map_err(StartNodeError::Writer)?;
        let state_machine = KvStateMachine::open(&config.data_dir.join("state"), reserve.clone())
            .map_err(|e| StartNodeError::StateMachine(e.to_string()))?;
        let raft_config = openraft::Config {
            cluster_name: "photon-control".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
            max_in_snapshot_log_to_keep: config.snapshot_keep_entries,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartNodeError::RaftConfig(e.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            RaftNetworkFactoryImpl {
                peer_proof: config.directory.cluster_key().peer_proof(),
            },
            RaftLogStore::new(writer.clone()),
            state_machine.clone(),
        )
        .await
        .map_err(|e| StartNodeError::Raft(e.to_string()))?;

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartNodeError::Listen {
                address: config.listen,
                source,
            })?;
        let address = listener
            .local_addr()
            .map_err(|source| StartNodeError::Listen {
                address: config.listen,
                source,
            })?;
        let iam_state = crate::iam_node::load(&state_machine);
        let directory = config.directory.clone();
        if crate::iam_node::key_mismatch(&iam_state, directory.cluster_key()) {
            return Err(StartNodeError::ClusterKey);
        }
        directory.replace(iam_state);
        let proposer = rpc::Proposer::new(
            raft.clone(),
            state_machine.clone(),
            config.limits,
            reserve.clone(),
        )
        .with_leader_link(std::rc::Rc::new(rpc::PeerLink::new(
            config.directory.cluster_key().peer_proof(),
        )));
        let proposer_handle = proposer.clone();
        // The log's record numbers are Raft indexes plus one.
        let start_log_index = recovery.last_index.saturating_sub(1);
        let auth = rpc::Auth::new(
            directory.clone(),
            raft.clone(),
            config.auth,
            start_log_index,
        );
        let service = NodeService::new(
            config.node_id,
            proposer.clone(),
            auth,
            config.buckets.clone(),
            config.volumes.clone(),
            config.lb.clone(),
            config.vms.clone(),
            config.liveness,
        );
        let mut tasks = vec![
            tokio::task::spawn_local(rpc::serve(listener, service, config.connections.clone())),
            tokio::task::spawn_local(crate::iam_node::follow(
                state_machine.clone(),
                directory.clone(),
            )),
            tokio::task::spawn_local(crate::iam_node::bootstrap(
                proposer,
                directory.clone(),
                crate::iam_node::BootstrapSettings {
                    credentials_path: config
                        .data_dir
                        .join(crate::iam_node::ADMIN_CREDENTIALS_FILE),
                    tell_stderr: config.tell_stderr,
                },
            )),
        ];
        tasks.push(tokio::task::spawn_local(expire_leases(
            raft.clone(),
            state_machine.clone(),
        )));
        tasks.push(tokio::task::spawn_local(watch_raft(raft.clone())));

        if fresh && !config.initial_members.is_empty() {
            let mut members: BTreeMap<u64, BasicNode> = config
                .initial_members
                .iter()
                .map(|(id, a)| (*id, BasicNode::new(a.to_string())))
                .collect();
            // This node's own entry uses the address it actually bound.
            if config.listen.port() == 0 {
                members.insert(config.node_id, BasicNode::new(address.to_string()));
            }
            if let Err(e) = raft.initialize(members).await {
                // Another member initialized first; its log wins.
                tracing::info!(error = %e, "cluster already initialized");
            }
        }
        tracing::info!(node = config.node_id, %address, "control-plane node serving");
        Ok(ControlNode {
            raft,
            proposer: proposer_handle,
            state_machine,
            directory,
            address,
            start_log_index,
            writer,
            tasks,
        })
    }

    /// Serves until `stop` resolves, then shuts down.
    pub async fn run_until(self, stop: impl Future<Output = ()>) {
        stop.await;
        self.shutdown().await;
    }

    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not shut down cleanly");
        }
        drop(self.raft);
        if let Ok(state) = self.writer.state().await {
            let s = state.stats;
            tracing::info!(
                entries = s.entries_appended,
                append_requests = s.append_requests,
                syncs = s.syncs,
                "Raft log writer: entries per sync shows group commit at work"
            );
        }
        self.writer.shutdown();
    }
}

/// Reports a stopped Raft core on the node's health board (`/healthz`):
/// openraft stops for good on a storage error, and every KV call fails from
/// then on.
async fn watch_raft(raft: Raft) {
    let mut metrics = raft.metrics();
    loop {
        let fatal = match &metrics.borrow().running_state {
            Ok(()) => None,
            Err(fatal) => Some(fatal.to_string()),
        };
        match fatal {
            Some(reason) => photon_core::health::report_failed("raft", &reason),
            None => photon_core::health::clear("raft"),
        }
        // Closed: Raft shut down with the node.
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The leader revokes expired leases through the log, so every replica
/// deletes their keys at the same revision.
async fn expire_leases(raft: Raft, state_machine: KvStateMachine) {
    let mut tick = tokio::time::interval(LEASE_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let is_leader = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            m.current_leader == Some(m.id)
        };
        if !is_leader {
            continue;
        }
        let now = rpc::now_ms();
        let expired = state_machine.state().kv.expired_leases(now);
        for id in expired {
            let proposal = Proposal::one(now, Command::LeaseRevoke { id });
            if let Err(e) = raft.client_write(proposal).await {
                tracing::debug!(lease = id, error = %e, "lease revocation not committed; retrying later");
                break;
            }
        }
    }
}
