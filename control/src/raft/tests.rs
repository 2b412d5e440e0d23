//! Real openraft nodes over our log store and state machine, connected by an
//! in-process network: elections, replication, restart from disk, catch-up
//! through a snapshot after the log was purged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, SnapshotPolicy};

use super::*;
use crate::kv::{Command, PutRequest, RangeRequest};
use crate::logstore::{LogConfig, LogStore, LogWriter};

#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, Raft>>>,
}

impl Router {
    fn get(&self, id: u64) -> Option<Raft> {
        self.nodes.lock().unwrap().get(&id).cloned()
    }
}

struct Connection {
    target: u64,
    router: Router,
}

fn unreachable<E: std::error::Error>(target: u64) -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
        "node {target} is down"
    ))))
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Connection {
        Connection {
            target,
            router: self.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

struct Node {
    raft: Raft,
    state_machine: KvStateMachine,
    writer: LogWriter,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("photon-raft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start_node(id: u64, dir: &Path, router: &Router) -> Node {
    let node_dir = dir.join(format!("node-{id}"));
    let (store, _) = LogStore::open(LogConfig::new(node_dir.join("log"))).unwrap();
    let writer = LogWriter::start(store, 4096, 1024).unwrap();
    let state_machine = KvStateMachine::open(&node_dir.join("state")).unwrap();
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(40),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    };
    let raft = Raft::new(
        id,
        Arc::new(config.validate().unwrap()),
        router.clone(),
        RaftLogStore::new(writer.clone()),
        state_machine.clone(),
    )
    .await
    .unwrap();
    router.nodes.lock().unwrap().insert(id, raft.clone());
    Node {
        raft,
        state_machine,
        writer,
    }
}

async fn stop_node(node: Node, router: &Router, id: u64) {
    router.nodes.lock().unwrap().remove(&id);
    node.raft.shutdown().await.unwrap();
    drop(node.raft);
    node.writer.shutdown();
}

async fn leader(nodes: &BTreeMap<u64, Node>) -> u64 {
    let any = nodes.values().next().unwrap();
    any.raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .unwrap()
        .current_leader
        .unwrap()
}

fn put(key: &str, value: &str) -> Proposal {
    Proposal {
        now_ms: 1_700_000_000_000,
        command: Command::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            lease: 0,
            prev_kv: false,
            ignore_value: false,
            ignore_lease: false,
        }),
    }
}

fn all_keys(node: &Node) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let state = node.state_machine.state();
    let response = state
        .kv
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            limit: 0,
            keys_only: false,
            count_only: false,
            revision: 0,
        })
        .unwrap();
    response
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.mod_revision))
        .collect()
}

async fn wait_applied(node: &Node, index: u64) {
    node.raft
        .wait(Some(Duration::from_secs(15)))
        .applied_index_at_least(Some(index), "caught up")
        .await
        .unwrap();
}

#[test]
fn three_nodes_replicate_restart_and_catch_up_through_a_snapshot() {
    // openraft runs single-threaded (`spawn_local`), as on the control thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, cluster_scenario());
}

async fn cluster_scenario() {
    let dir = temp_dir("cluster");
    let router = Router::default();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start_node(id, &dir, &router).await);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("node-{id}"))))
        .collect();
    nodes[&1].raft.initialize(members).await.unwrap();
    let leader_id = leader(&nodes).await;

    for i in 0..30 {
        let response = nodes[&leader_id]
            .raft
            .client_write(put(&format!("key-{i:03}"), &format!("value-{i}")))
            .await
            .unwrap();
        assert!(matches!(response.data, Some(Ok(_))));
    }
    let last = nodes[&leader_id]
        .raft
        .metrics()
        .borrow()
        .last_applied
        .unwrap()
        .index;
    for node in nodes.values() {
        wait_applied(node, last).await;
    }
    let expected = all_keys(&nodes[&leader_id]);
    assert_eq!(expected.len(), 30);
    for node in nodes.values() {
        assert_eq!(all_keys(node), expected);
    }

    // Stop a follower, write past the snapshot threshold so the leader's log
    // is purged, restart the follower from its own disk: it must catch up
    // through a snapshot.
    let follower = (1..=3).find(|id| *id != leader_id).unwrap();
    let stopped = nodes.remove(&follower).unwrap();
    stop_node(stopped, &router, follower).await;
    for i in 30..120 {
        nodes[&leader_id]
            .raft
            .client_write(put(&format!("key-{i:03}"), &format!("value-{i}")))
            .await
            .unwrap();
    }
    let snapshot_index = nodes[&leader_id]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.purged.is_some(),
            "leader purged its log after a snapshot",
        )
        .await
        .unwrap()
        .purged
        .unwrap()
        .index;
    assert!(snapshot_index >= 40);

    nodes.insert(follower, start_node(follower, &dir, &router).await);
    let last = nodes[&leader_id]
        .raft
        .metrics()
        .borrow()
        .last_applied
        .unwrap()
        .index;
    wait_applied(&nodes[&follower], last).await;
    let expected = all_keys(&nodes[&leader_id]);
    assert_eq!(expected.len(), 120);
    assert_eq!(all_keys(&nodes[&follower]), expected);

    // Stop every node and start them all from disk: the state is the same.
    for (id, node) in std::mem::take(&mut nodes) {
        stop_node(node, &router, id).await;
    }
    for id in 1..=3 {
        nodes.insert(id, start_node(id, &dir, &router).await);
    }
    let leader_id = leader(&nodes).await;
    nodes[&leader_id]
        .raft
        .client_write(put("after-restart", "yes"))
        .await
        .unwrap();
    let last = nodes[&leader_id]
        .raft
        .metrics()
        .borrow()
        .last_applied
        .unwrap()
        .index;
    for node in nodes.values() {
        wait_applied(node, last).await;
        let keys = all_keys(node);
        assert_eq!(keys.len(), 121);
        let old: Vec<_> = keys
            .into_iter()
            .filter(|(k, _, _)| k.starts_with(b"key-"))
            .collect();
        assert!(old == expected, "state after a full restart differs");
    }
    for (id, node) in std::mem::take(&mut nodes) {
        stop_node(node, &router, id).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
