//! Real openraft nodes over our log store and state machine, connected by an
//! in-process network: elections, replication, restart from disk, catch-up
//! through a snapshot after the log was purged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
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

/// Faults the test network injects, decided by a seeded generator.
#[derive(Default)]
struct Faults {
    /// Nodes cut off from every other node.
    isolated: std::collections::BTreeSet<u64>,
    /// Messages dropped, per thousand.
    drop_per_mille: u64,
    /// Upper bound of a random delay added to each message.
    delay_max_ms: u64,
    rng: u64,
}

impl Faults {
    /// xorshift64*: a fixed seed gives the same fault sequence.
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, Raft>>>,
    faults: Arc<Mutex<Faults>>,
    /// The node whose outgoing messages this handle carries.
    from: u64,
}

impl Router {
    fn get(&self, id: u64) -> Option<Raft> {
        self.nodes.lock().unwrap().get(&id).cloned()
    }

    fn for_node(&self, from: u64) -> Router {
        Router {
            from,
            ..self.clone()
        }
    }

    /// Applies the faults to one message from `self.from` to `target`:
    /// `None` if it is lost, else how long to hold it.
    fn fate(&self, target: u64) -> Option<Duration> {
        let mut f = self.faults.lock().unwrap();
        if f.isolated.contains(&self.from) || f.isolated.contains(&target) {
            return None;
        }
        if f.drop_per_mille > 0 && f.next() % 1000 < f.drop_per_mille {
            return None;
        }
        let delay = if f.delay_max_ms > 0 {
            f.next() % f.delay_max_ms
        } else {
            0
        };
        Some(Duration::from_millis(delay))
    }

    async fn deliver(&self, target: u64) -> Option<Raft> {
        let delay = self.fate(target)?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.get(target)
    }
}

struct Connection {
    target: u64,
    router: Router,
}

fn unreachable<E: std::error::Error>(target: u64) -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
        "node {target} is down or cut off"
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

impl Connection {
    /// The target node, after the faults had their say about this message.
    async fn reach<E: std::error::Error>(&self) -> Result<Raft, RPCError<u64, BasicNode, E>> {
        self.router
            .deliver(self.target)
            .await
            .ok_or_else(|| unreachable(self.target))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<u64, BasicNode, E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.reach().await?;
        raft.append_entries(rpc).await.map_err(|e| self.remote(e))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let raft = self.reach().await?;
        raft.install_snapshot(rpc).await.map_err(|e| self.remote(e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.reach().await?;
        raft.vote(rpc).await.map_err(|e| self.remote(e))
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
    let state_machine = KvStateMachine::open(&node_dir.join("state"), None).unwrap();
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
        router.for_node(id),
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
    Proposal::one(
        1_700_000_000_000,
        Command::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            lease: 0,
            prev_kv: false,
            ignore_value: false,
            ignore_lease: false,
        }),
    )
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
        assert!(matches!(response.data.as_deref(), Some([Ok(_)])));
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
    // Restarted nodes hold elections (a stored vote is read as not
    // committed), so the first leader seen may lose to a later one: follow
    // the redirect as a client does.
    let mut leader_id = leader(&nodes).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match nodes[&leader_id]
            .raft
            .client_write(put("after-restart", "yes"))
            .await
        {
            Ok(_) => break,
            Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(f),
            )) if std::time::Instant::now() < deadline => {
                leader_id = match f.leader_id {
                    Some(id) => id,
                    None => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        leader(&nodes).await
                    }
                };
            }
            Err(e) => panic!("write after the restart: {e}"),
        }
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

/// Shared state of the linearizability run: the live nodes' state machines
/// (for reads) and the recorded history.
struct LinWorld {
    router: Router,
    machines: std::cell::RefCell<BTreeMap<u64, KvStateMachine>>,
    history: std::cell::RefCell<Vec<crate::lincheck::Operation>>,
    started: std::time::Instant,
}

impl LinWorld {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

/// How long a client keeps retrying one operation across leader changes.
const LIN_OP_DEADLINE: Duration = Duration::from_secs(3);
const LIN_CLIENTS: usize = 4;
/// How long the clients run while the nemesis works.
const LIN_RUN: Duration = Duration::from_secs(4);
const LIN_KEYS: u64 = 3;

fn ids_from(start: u64) -> impl Iterator<Item = u64> + Clone {
    (0..3).map(move |i| (start + i) % 3 + 1)
}

/// One write: retried only when the node certainly did not propose it
/// (not the leader); any other failure leaves the outcome unknown.
async fn lin_write(world: &LinWorld, client: usize, key: String, value: String, mut node: u64) {
    let call = world.now();
    let deadline = tokio::time::Instant::now() + LIN_OP_DEADLINE;
    let mut ret = None;
    while tokio::time::Instant::now() < deadline {
        let Some(raft) = world.router.get(node) else {
            node = node % 3 + 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let proposal = put(&key, &value);
        match tokio::time::timeout_at(deadline, raft.client_write(proposal)).await {
            Ok(Ok(_)) => {
                ret = Some(world.now());
                break;
            }
            Ok(Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f)))) => {
                node = f.leader_id.unwrap_or(node % 3 + 1);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Timed out or failed after proposing: it may still commit.
            _ => break,
        }
    }
    world.history.borrow_mut().push(crate::lincheck::Operation {
        client,
        key,
        kind: crate::lincheck::OpKind::Write(value),
        call,
        ret,
    });
}

/// One linearizable read: a read has no effect, so any failure is retried on
/// another node; a read that never succeeds is left out of the history.
async fn lin_read(world: &LinWorld, client: usize, key: String, start: u64) {
    let call = world.now();
    let deadline = tokio::time::Instant::now() + LIN_OP_DEADLINE;
    for node in ids_from(start).cycle() {
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        let (Some(raft), Some(machine)) = (
            world.router.get(node),
            world.machines.borrow().get(&node).cloned(),
        ) else {
            continue;
        };
        match tokio::time::timeout_at(deadline, raft.ensure_linearizable()).await {
            Ok(Ok(_)) => {
                let request = RangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..RangeRequest::default()
                };
                let value = machine
                    .state()
                    .kv
                    .range(&request)
                    .unwrap()
                    .kvs
                    .first()
                    .map(|kv| String::from_utf8(kv.value.clone()).unwrap());
                world.history.borrow_mut().push(crate::lincheck::Operation {
                    client,
                    key,
                    kind: crate::lincheck::OpKind::Read(value),
                    call,
                    ret: Some(world.now()),
                });
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn lin_client(world: Rc<LinWorld>, client: usize, seed: u64) {
    let mut rng = Faults {
        rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        ..Faults::default()
    };
    let mut i = 0;
    while world.started.elapsed() < LIN_RUN {
        i += 1;
        tokio::time::sleep(Duration::from_millis(2 + rng.next() % 8)).await;
        let key = format!("k{}", rng.next() % LIN_KEYS);
        let node = rng.next() % 3 + 1;
        if rng.next().is_multiple_of(2) {
            lin_write(&world, client, key, format!("c{client}-{i}"), node).await;
        } else {
            lin_read(&world, client, key, node).await;
        }
    }
}

/// Cuts nodes off, drops and delays messages, kills and restarts nodes.
async fn nemesis(
    world: Rc<LinWorld>,
    dir: PathBuf,
    nodes: Rc<std::cell::RefCell<BTreeMap<u64, Node>>>,
    stop: Rc<std::cell::Cell<bool>>,
) -> [u32; 4] {
    let mut done = [0u32; 4];
    while !stop.get() {
        let action = world.router.faults.lock().unwrap().next() % 4;
        let victim = world.router.faults.lock().unwrap().next() % 3 + 1;
        match action {
            0 => {
                world.router.faults.lock().unwrap().isolated.insert(victim);
                tokio::time::sleep(Duration::from_millis(400)).await;
                world.router.faults.lock().unwrap().isolated.clear();
            }
            1 => {
                {
                    let mut f = world.router.faults.lock().unwrap();
                    f.drop_per_mille = 150;
                    f.delay_max_ms = 30;
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
                let mut f = world.router.faults.lock().unwrap();
                f.drop_per_mille = 0;
                f.delay_max_ms = 0;
            }
            2 => {
                let node = nodes.borrow_mut().remove(&victim);
                if let Some(node) = node {
                    world.machines.borrow_mut().remove(&victim);
                    stop_node(node, &world.router, victim).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let node = start_node(victim, &dir, &world.router).await;
                    world
                        .machines
                        .borrow_mut()
                        .insert(victim, node.state_machine.clone());
                    nodes.borrow_mut().insert(victim, node);
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
        done[action as usize] += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done
}

async fn linearizability_scenario(seed: u64) {
    let dir = temp_dir(&format!("lin-{seed}"));
    let router = Router::default();
    router.faults.lock().unwrap().rng = seed | 1;
    let nodes = Rc::new(std::cell::RefCell::new(BTreeMap::new()));
    let world = Rc::new(LinWorld {
        router: router.clone(),
        machines: std::cell::RefCell::new(BTreeMap::new()),
        history: std::cell::RefCell::new(Vec::new()),
        started: std::time::Instant::now(),
    });
    for id in 1..=3 {
        let node = start_node(id, &dir, &router).await;
        world
            .machines
            .borrow_mut()
            .insert(id, node.state_machine.clone());
        nodes.borrow_mut().insert(id, node);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("node-{id}"))))
        .collect();
    router.get(1).unwrap().initialize(members).await.unwrap();
    router
        .get(1)
        .unwrap()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "leader")
        .await
        .unwrap();

    let stop = Rc::new(std::cell::Cell::new(false));
    let chaos = tokio::task::spawn_local(nemesis(
        world.clone(),
        dir.clone(),
        nodes.clone(),
        stop.clone(),
    ));
    let clients: Vec<_> = (0..LIN_CLIENTS)
        .map(|c| {
            tokio::task::spawn_local(lin_client(
                world.clone(),
                c,
                seed.wrapping_add(c as u64 + 1),
            ))
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    stop.set(true);
    let faults = chaos.await.unwrap();
    eprintln!(
        "seed {seed}: partitions {}, lossy periods {}, restarts {}, quiet {}",
        faults[0], faults[1], faults[2], faults[3]
    );

    let history = world.history.borrow().clone();
    let known = history.iter().filter(|o| o.ret.is_some()).count();
    eprintln!(
        "seed {seed}: {} operations, {known} with a known outcome",
        history.len()
    );
    assert!(
        known >= history.len() / 2,
        "seed {seed}: too few operations completed ({known})"
    );
    if let Err(v) = crate::lincheck::check(&history) {
        panic!(
            "seed {seed}: history of key {} ({} operations) is not linearizable: {history:#?}",
            v.key, v.operations
        );
    }
    let all: Vec<(u64, Node)> = std::mem::take(&mut *nodes.borrow_mut())
        .into_iter()
        .collect();
    for (id, node) in all {
        stop_node(node, &router, id).await;
    }
    eprintln!("seed {seed}: nodes stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Concurrent clients record a history while the network cuts nodes off,
/// drops and delays messages, and nodes are stopped and restarted from disk;
/// the history must be linearizable. Seeds are fixed; set PHOTON_LIN_SEED to
/// replay one, and every failure names its seed.
#[test]
fn histories_under_partitions_and_restarts_are_linearizable() {
    let seeds: Vec<u64> = match std::env::var("PHOTON_LIN_SEED") {
        Ok(s) => vec![s.parse().expect("PHOTON_LIN_SEED is a number")],
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // The deadline is created inside the runtime: tokio timers need it.
        let run = async {
            tokio::time::timeout(Duration::from_secs(120), linearizability_scenario(seed)).await
        };
        if tokio::task::LocalSet::new()
            .block_on(&runtime, run)
            .is_err()
        {
            panic!("seed {seed}: the scenario did not finish within 120 s (replay with PHOTON_LIN_SEED={seed})");
        }
    }
}
