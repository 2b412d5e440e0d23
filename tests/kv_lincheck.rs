//! Linearizability of the KV through the production path: three real
//! `photon node` processes, each in its own network namespace on a bridge,
//! clients speaking Cap'n Proto through `photon_control::client` (so every
//! request goes through `KvService`, the `Proposer` and its read-index
//! batching), while a nemesis partitions the leader from its followers (it
//! stays reachable by clients: a deposed leader), cuts single links,
//! freezes the leader with SIGSTOP and thaws it, and kill -9s and restarts
//! nodes. The recorded history must be linearizable
//! (`photon_control::lincheck`).
//!
//! Needs root and iproute2 (CI has both). Seeds are fixed; PHOTON_LIN_SEED
//! replays one, and a failure names its seed and keeps the node logs.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{photon, temp_dir, Proc};
use photon_control::client::{Client, ClientError};
use photon_control::kv::{PutRequest, RangeRequest};
use photon_control::lincheck::{self, OpKind, Operation};

const NODES: u64 = 3;
const PORT: u16 = 7100;
const CLIENTS: usize = 5;
const KEYS: u64 = 3;
/// How long clients run while the nemesis works.
const RUN: Duration = Duration::from_secs(12);
/// How long one operation may take before its outcome counts as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces `<tag>1..3` on a bridge in `<tag>h`, and a veth from the
/// test's own namespace to the bridge for the clients.
struct Net {
    tag: String,
    subnet: u8,
}

impl Net {
    fn new() -> Net {
        let pid = std::process::id();
        let net = Net {
            tag: format!("pl{}", pid % 100_000),
            subnet: 100 + (pid % 100) as u8,
        };
        let hub = net.ns("h");
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        let (outer, inner) = (format!("{}r", net.tag), format!("{}rh", net.tag));
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        ip(&["link", "set", &inner, "netns", &hub]);
        ip(&["-n", &hub, "link", "set", &inner, "master", "br0", "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.addr(254)),
            "dev",
            &outer,
        ]);
        ip(&["link", "set", &outer, "up"]);
        for id in 1..=NODES {
            let ns = net.ns(&id.to_string());
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let (node_end, hub_end) = (format!("{}n{id}", net.tag), format!("{}b{id}", net.tag));
            ip(&[
                "link", "add", &node_end, "type", "veth", "peer", "name", &hub_end,
            ]);
            ip(&["link", "set", &node_end, "netns", &ns]);
            ip(&["link", "set", &hub_end, "netns", &hub]);
            ip(&["-n", &hub, "link", "set", &hub_end, "master", "br0", "up"]);
            let address = format!("{}/24", net.addr(id as u8));
            ip(&["-n", &ns, "addr", "add", &address, "dev", &node_end]);
            ip(&["-n", &ns, "link", "set", &node_end, "up"]);
        }
        net
    }

    fn ns(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.tag)
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, host)
    }

    fn endpoint(&self, id: u64) -> SocketAddr {
        SocketAddr::from((self.addr(id as u8), PORT))
    }

    /// Cuts (or heals) the link between nodes `a` and `b`, both ways;
    /// clients still reach both.
    fn cut(&self, a: u64, b: u64, cut: bool) {
        let verb = if cut { "add" } else { "del" };
        for (from, to) in [(a, b), (b, a)] {
            let dest = format!("{}/32", self.addr(to as u8));
            ip(&[
                "-n",
                &self.ns(&from.to_string()),
                "route",
                verb,
                "blackhole",
                &dest,
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The kernel frees a deleted namespace's devices later, in the
        // background: delete the test namespace's veth now (its peer goes
        // with it) so the next seed can make one of the same name.
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}r", self.tag)])
            .status();
        for suffix in ["1", "2", "3", "h"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(suffix)])
                .status();
        }
    }
}

struct Nodes {
    dir: PathBuf,
    key_file: PathBuf,
    procs: BTreeMap<u64, Proc>,
}

impl Nodes {
    fn start(&mut self, net: &Net, id: u64) {
        let members: Vec<String> = (1..=NODES)
            .map(|i| format!("\"{i}={}\"", net.endpoint(i)))
            .collect();
        let node_dir = self.dir.join(format!("n{id}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let config = format!(
            "[node]\nname = \"n{id}\"\ndata_dir = \"{}\"\nroles = [\"control\"]\n[engine]\ncores = 1\npin = false\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[control]\nnode_id = {id}\nlisten = \"{}\"\n\
             initial_members = [{}]\nsnapshot_every_entries = 200\nsnapshot_keep_entries = 20\nreserve_mib = 1\n\
             [iam]\ncluster_key_file = \"{}\"\n",
            node_dir.display(),
            net.endpoint(id),
            members.join(", "),
            self.key_file.display()
        );
        let file = self.dir.join(format!("n{id}.toml"));
        std::fs::write(&file, config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{id}.log")))
            .unwrap();
        let _ = std::fs::remove_file(node_dir.join("endpoints.json"));
        // `ip netns exec` execs photon: the child's pid is the node's.
        let mut child = Command::new("ip")
            .args(["netns", "exec", &net.ns(&id.to_string())])
            .arg(photon().get_program())
            .args(["node", "--config"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        common::endpoints(&node_dir, &mut child);
        self.procs.insert(id, Proc(child));
    }

    fn signal(&self, id: u64, signal: i32) {
        if let Some(p) = self.procs.get(&id) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(p.0.id() as i32, signal) };
        }
    }

    fn kill9(&mut self, id: u64) {
        if let Some(mut p) = self.procs.remove(&id) {
            // SAFETY: as above.
            unsafe { libc::kill(p.0.id() as i32, libc::SIGKILL) };
            let _ = p.0.wait();
        }
    }
}

/// A small xorshift, so a seed replays the same choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct World {
    net_endpoints: Vec<SocketAddr>,
    token: String,
    started: Instant,
    history: RefCell<Vec<Operation>>,
}

impl World {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// A fresh client that starts at node `id` and never sends a request
    /// twice once it may have reached a node.
    fn client(&self, id: u64) -> Client {
        let mut endpoints = self.net_endpoints.clone();
        endpoints.rotate_left((id - 1) as usize);
        Client::with_token(endpoints, self.token.clone())
            .unwrap()
            .at_most_once()
    }
}

async fn write(world: &World, client: usize, node: u64, key: String, value: String) {
    let call = world.now();
    let mut c = world.client(node);
    let request = PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..PutRequest::default()
    };
    let outcome = tokio::time::timeout(OP_TIMEOUT, c.put(request)).await;
    // Only a success is certain; any failure may have been applied.
    let ret = matches!(outcome, Ok(Ok(_))).then(|| world.now());
    world.history.borrow_mut().push(Operation {
        client,
        key,
        kind: OpKind::Write(value),
        call,
        ret,
    });
}

async fn read(world: &World, client: usize, node: u64, key: String) {
    let call = world.now();
    let mut c = world.client(node);
    let request = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..RangeRequest::default()
    };
    // A read that failed says nothing: it is left out.
    if let Ok(Ok(reply)) = tokio::time::timeout(OP_TIMEOUT, c.range(request, false)).await {
        let value = reply
            .kvs
            .first()
            .map(|kv| String::from_utf8(kv.value.clone()).unwrap());
        world.history.borrow_mut().push(Operation {
            client,
            key,
            kind: OpKind::Read(value),
            call,
            ret: Some(world.now()),
        });
    }
}

async fn run_client(world: Rc<World>, client: usize, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut i = 0;
    while world.started.elapsed() < RUN {
        i += 1;
        let key = format!("k{}", rng.next() % KEYS);
        let node = rng.next() % NODES + 1;
        if rng.next().is_multiple_of(2) {
            write(&world, client, node, key, format!("c{client}-{i}")).await;
        } else {
            read(&world, client, node, key).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.next() % 15)).await;
    }
}

/// The leader as the reachable nodes see it (None while there is none).
fn leader(world_endpoints: &[SocketAddr], token: &str) -> Option<u64> {
    let endpoints = world_endpoints.to_vec();
    let token = token.to_owned();
    common::block_on(async move {
        let mut c = Client::with_token(endpoints, token).ok()?;
        let status = tokio::time::timeout(Duration::from_secs(2), c.status())
            .await
            .ok()?
            .ok()?;
        (status.leader_id != 0).then_some(status.leader_id)
    })
}

/// Faults until `stop`; returns how many of each it did.
fn nemesis(net: &Net, nodes: &Mutex<Nodes>, token: &str, seed: u64, stop: &AtomicBool) -> [u32; 5] {
    let endpoints: Vec<SocketAddr> = (1..=NODES).map(|i| net.endpoint(i)).collect();
    let mut rng = Rng(seed | 1);
    let mut done = [0u32; 5];
    std::thread::sleep(Duration::from_millis(500));
    while !stop.load(Ordering::Relaxed) {
        let action = (rng.next() % 5) as usize;
        let victim = match leader(&endpoints, token) {
            Some(l) if action != 3 => l,
            _ => rng.next() % NODES + 1,
        };
        let others: Vec<u64> = (1..=NODES).filter(|&i| i != victim).collect();
        let hold = Duration::from_millis(800 + rng.next() % 1200);
        match action {
            // The leader loses its followers but keeps its clients.
            0 | 1 => {
                for &o in &others {
                    net.cut(victim, o, true);
                }
                std::thread::sleep(hold);
                for &o in &others {
                    net.cut(victim, o, false);
                }
            }
            // The leader freezes; clients queue requests it serves on waking.
            2 => {
                nodes.lock().unwrap().signal(victim, libc::SIGSTOP);
                std::thread::sleep(hold);
                nodes.lock().unwrap().signal(victim, libc::SIGCONT);
            }
            // One link only (of any node).
            3 => {
                net.cut(victim, others[0], true);
                std::thread::sleep(hold);
                net.cut(victim, others[0], false);
            }
            _ => {
                let mut n = nodes.lock().unwrap();
                n.kill9(victim);
                std::thread::sleep(Duration::from_millis(300));
                n.start(net, victim);
            }
        }
        done[action] += 1;
        std::thread::sleep(Duration::from_millis(300 + rng.next() % 400));
    }
    done
}

fn scenario(seed: u64) {
    let net = Net::new();
    let dir = temp_dir(&format!("kv-lincheck-{seed}"));
    let key_file = dir.join("cluster.key");
    photon_iam::seal::ClusterKey::generate()
        .write_new(&key_file)
        .unwrap();
    let nodes = Mutex::new(Nodes {
        dir: dir.clone(),
        key_file,
        procs: BTreeMap::new(),
    });
    for id in 1..=NODES {
        nodes.lock().unwrap().start(&net, id);
    }
    let endpoints: Vec<SocketAddr> = (1..=NODES).map(|i| net.endpoint(i)).collect();
    let token = admin_token(&dir, endpoints.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let (history, faults) = std::thread::scope(|scope| {
        let chaos = scope.spawn(|| nemesis(&net, &nodes, &token, seed, &stop));
        let world = Rc::new(World {
            net_endpoints: endpoints.clone(),
            token: token.clone(),
            started: Instant::now(),
            history: RefCell::new(Vec::new()),
        });
        common::block_on(async {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    tokio::task::spawn_local(run_client(
                        world.clone(),
                        c,
                        seed.wrapping_add(c as u64 + 1),
                    ))
                })
                .collect();
            for c in clients {
                c.await.unwrap();
            }
        });
        stop.store(true, Ordering::Relaxed);
        let faults = chaos.join().unwrap();
        (world.history.take(), faults)
    });
    let known = history.iter().filter(|o| o.ret.is_some()).count();
    let reads = history
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Read(_)))
        .count();
    eprintln!(
        "seed {seed}: {} operations ({known} certain, {reads} reads); leader cut off {}, \
         leader frozen {}, single links cut {}, kill -9 and restart {}",
        history.len(),
        faults[0] + faults[1],
        faults[2],
        faults[3],
        faults[4]
    );
    let keep = || {
        eprintln!("node logs kept in {}", dir.display());
    };
    if known < 100 || reads < 30 {
        keep();
        panic!("seed {seed}: too few operations completed ({known} certain, {reads} reads)");
    }
    if let Err(v) = lincheck::check(&history) {
        keep();
        let ops: Vec<&Operation> = history.iter().filter(|o| o.key == v.key).collect();
        panic!(
            "seed {seed}: the history of key {} ({} operations) is not linearizable \
             (replay with PHOTON_LIN_SEED={seed}): {ops:#?}",
            v.key, v.operations
        );
    }
    drop(nodes);
    drop(net);
    let _ = std::fs::remove_dir_all(&dir);
}

fn admin_token(dir: &std::path::Path, endpoints: Vec<SocketAddr>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let credentials = loop {
        let found = (1..=NODES)
            .map(|id| dir.join(format!("n{id}/control/admin.credentials")))
            .find(|p| p.exists());
        if let Some(path) = found {
            break path;
        }
        assert!(Instant::now() < deadline, "no node wrote admin.credentials");
        std::thread::sleep(Duration::from_millis(50));
    };
    let password = common::admin_password(&credentials);
    common::block_on(async move {
        let mut client = Client::new(endpoints).unwrap();
        loop {
            match client.login("system", "admin", &password, "", 0).await {
                Ok((token, _)) => return token,
                Err(ClientError::Exhausted(_)) if Instant::now() < deadline => continue,
                Err(e) => panic!("admin login: {e}"),
            }
        }
    })
}

#[test]
fn kv_histories_through_the_rpc_path_are_linearizable_under_partitions_and_deposed_leaders() {
    let seeds: Vec<u64> = match std::env::var("PHOTON_LIN_SEED") {
        Ok(s) => vec![s.parse().expect("PHOTON_LIN_SEED is a number")],
        Err(_) => vec![11, 12],
    };
    for seed in seeds {
        scenario(seed);
    }
}
