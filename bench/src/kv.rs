//! `photon bench kv`: PhotonCloud's replicated KV (the control plane's Raft
//! store) beside etcd, measured in the same run with the same harness.
//!
//! For every cluster size both systems run as real processes on 127.0.0.1
//! (`photon node` and Debian's `etcd`), side by side, and every point is
//! measured on one and then on the other, so that a slow stretch of a shared
//! machine hits both. Each keeps its durable defaults (photon fdatasyncs its
//! log before acknowledging, etcd fsyncs its WAL); the disk's own append +
//! fdatasync latency is measured first in the same directory.
//!
//! The harness is one closed loop per client, all on one tokio current_thread
//! runtime by default. N clients are N clients of the system's own Rust
//! library, each given every endpoint: a `photon_control::client::Client` (one
//! Cap'n Proto connection, redirected to the leader by the first write) or an
//! `etcd_client::Client` (one gRPC channel balancing over a connection per
//! member, as etcd's own Go client does). Puts write uniformly random keys of
//! a fixed key space; gets read keys all written beforehand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::Histogram;
use photon_control::client::Client as PhotonClient;
use photon_control::kv::{PutRequest, RangeRequest};
use serde_json::json;

use crate::child::{free_port, Proc, WorkDir};
use crate::report::{new_histogram, Latency, Table};

/// Most concurrent clients one point may run.
pub const CLIENTS_MAX: usize = 4096;
/// Largest cluster the benchmark starts.
pub const NODES_MAX: usize = 7;
/// Largest value written (both systems refuse requests above ~1.5 MiB).
pub const VALUE_BYTES_MAX: usize = 1 << 20;
/// Longest a cluster may take to start and accept a write.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a point may run past its planned end before it counts as hung
/// (photon's client retries one call for up to 10 s).
pub const POINT_GRACE: Duration = Duration::from_secs(30);
/// Concurrent writers that fill the key space before the get workloads.
pub const FILL_CLIENTS: usize = 64;
/// Longest the fill may take.
pub const FILL_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause of a client after a failed call, so that a failing server is not
/// hammered in a tight loop.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// The disk probe: appends of this size, each followed by fdatasync...
pub const DISK_PROBE_BYTES: usize = 4096;
/// ...this many times, or for this long, whichever ends first.
pub const DISK_PROBE_APPENDS: usize = 500;
pub const DISK_PROBE_TIME: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Args)]
pub struct KvArgs {
    /// Measured seconds per point.
    #[arg(long, default_value_t = 5.0)]
    pub duration_s: f64,
    /// Unmeasured seconds before each point (connections, leader redirects).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Concurrent clients of the put workload (one connection each).
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub clients: Vec<usize>,
    /// Cluster sizes to run.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub nodes: Vec<usize>,
    /// Concurrent clients of the get workloads.
    #[arg(long, default_value_t = 16)]
    pub get_clients: usize,
    /// Cluster sizes (of --nodes) the get workloads run on.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub get_nodes: Vec<usize>,
    /// Bytes of every value written.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Size of the key space; every operation picks a key uniformly in it.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Load generator threads (one tokio current_thread runtime each); the
    /// clients are spread over them.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Run PhotonCloud only.
    #[arg(long)]
    pub skip_etcd: bool,
    /// The etcd server binary (Debian: `apt-get install -y etcd-server`).
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Where the run's data directories go (removed at the end). Must be a
    /// real disk: both systems fsync, and that is part of what is measured.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write every row as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Photon,
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Photon => "photon",
            System::Etcd => "etcd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Put,
    GetLinearizable,
    GetSerializable,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::GetLinearizable => "get linearizable",
            Workload::GetSerializable => "get serializable",
        }
    }
}

/// Where a running cluster answers.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
enum Endpoints {
    /// Addresses, and the cluster administrator's token once it is known.
    Photon(Vec<SocketAddr>, Option<String>),
    /// `http://127.0.0.1:PORT` client URLs.
    Etcd(Vec<String>),
}

/// What one closed loop needs to know.
#[derive(Debug, Clone)]
struct Plan {
    workload: Workload,
    keys: u64,
    value: Vec<u8>,
    measure_from: Instant,
    stop: Instant,
}

/// One measured point: a system, a workload, a cluster size, a client count.
#[derive(Debug, Clone)]
struct Point {
    system: System,
    workload: Workload,
    nodes: usize,
    clients: usize,
    ops: u64,
    /// Failed calls during the whole point, warm-up included.
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    latency: Latency,
}

impl Point {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn to_json(&self, ratios: Option<(f64, f64)>) -> serde_json::Value {
        json!({
            "system": self.system.name(),
            "workload": self.workload.name(),
            "nodes": self.nodes,
            "clients": self.clients,
            "ops": self.ops,
            "ops_per_s": self.ops_per_s(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "errors": self.errors,
            "first_error": self.first_error,
            "latency_us": self.latency.to_json(),
            "photon_vs_etcd_ops_per_s": ratios.map(|r| r.0),
            "photon_vs_etcd_p99": ratios.map(|r| r.1),
        })
    }
}

pub fn run(args: KvArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let etcd = if cfg!(feature = "etcd") {
        etcd_version(&args)
    } else {
        println!(
            "this photon was built without the `etcd` feature (it needs protoc); for the etcd \
             comparison run: cargo run --release --features etcd -- bench kv"
        );
        None
    };
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::create(&base, "kv")?;
    print_header(&args, etcd.as_deref(), &work.path);
    let disk = fdatasync_probe(&work.path)?;
    println!(
        "disk under {}: {} appends of {DISK_PROBE_BYTES} bytes + fdatasync, {}",
        work.path.display(),
        disk.count,
        disk
    );

    let mut points = Vec::new();
    for &nodes in &args.nodes {
        let mut systems = vec![System::Photon];
        if etcd.is_some() {
            systems.push(System::Etcd);
        }
        points.extend(run_clusters(&args, &systems, nodes, &work.path)?);
    }

    let rows = print_tables(&args, &points, etcd.is_some());
    if etcd.is_none() {
        println!("\netcd comparison MISSING: only PhotonCloud was measured.");
    }
    print_errors(&points);
    if let Some(path) = &args.json {
        let doc = json!({
            "bench": "kv",
            "settings": {
                "duration_s": args.duration_s, "warmup_s": args.warmup_s,
                "value_bytes": args.value_bytes, "keys": args.keys, "threads": args.threads,
                "etcd": etcd,
            },
            "disk_fdatasync_us": disk.to_json(),
            "rows": rows,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn validate(args: &KvArgs) -> anyhow::Result<()> {
    if !(args.duration_s > 0.0 && args.duration_s <= 3600.0) {
        bail!("--duration-s must be in (0, 3600]");
    }
    if !(0.0..=600.0).contains(&args.warmup_s) {
        bail!("--warmup-s must be in [0, 600]");
    }
    let all_clients = args
        .clients
        .iter()
        .chain(std::iter::once(&args.get_clients));
    for &c in all_clients {
        if c == 0 || c > CLIENTS_MAX {
            bail!("client counts must be in 1..={CLIENTS_MAX}, got {c}");
        }
    }
    for &n in &args.nodes {
        if n == 0 || n > NODES_MAX {
            bail!("cluster sizes must be in 1..={NODES_MAX}, got {n}");
        }
    }
    if args.value_bytes > VALUE_BYTES_MAX {
        bail!("--value-bytes must be at most {VALUE_BYTES_MAX}");
    }
    if args.keys == 0 || args.threads == 0 {
        bail!("--keys and --threads must be at least 1");
    }
    Ok(())
}

/// The etcd version line, or None when etcd is skipped or missing (then the
/// reason is printed: a missing baseline must never go unnoticed).
fn etcd_version(args: &KvArgs) -> Option<String> {
    if args.skip_etcd {
        eprintln!("--skip-etcd: etcd is not measured, the comparison is missing");
        return None;
    }
    let output = Command::new(&args.etcd).arg("--version").output();
    match output {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            Some(text.lines().next().unwrap_or("etcd").trim().to_string())
        }
        _ => {
            eprintln!(
                "etcd not found at {} (install it with `apt-get install -y etcd-server`): \
                 running PhotonCloud only, the etcd comparison is MISSING",
                args.etcd.display()
            );
            None
        }
    }
}

fn print_header(args: &KvArgs, etcd: Option<&str>, dir: &Path) {
    let per_point = args.warmup_s + args.duration_s;
    let points_per_system = args.nodes.len() * args.clients.len()
        + 2 * args
            .nodes
            .iter()
            .filter(|n| args.get_nodes.contains(n))
            .count();
    let systems = if etcd.is_some() { 2 } else { 1 };
    println!(
        "photon bench kv: photon {} vs {}; {}-byte values, {} keys, {} s per point after {} s \
         warm-up, {} load thread(s); data in {} (~{:.0} s of measurement)",
        env!("CARGO_PKG_VERSION"),
        etcd.unwrap_or("no etcd"),
        args.value_bytes,
        args.keys,
        args.duration_s,
        args.warmup_s,
        args.threads,
        dir.display(),
        per_point * (points_per_system * systems) as f64
    );
}

/// Latency of append + fdatasync in `dir`: the floor under every durable
/// put of both systems, measured in the same run.
fn fdatasync_probe(dir: &Path) -> anyhow::Result<Latency> {
    use std::io::Write;
    let path = dir.join("fdatasync-probe");
    let mut file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = vec![0x5a_u8; DISK_PROBE_BYTES];
    let mut histogram = new_histogram();
    let deadline = Instant::now() + DISK_PROBE_TIME;
    for _ in 0..DISK_PROBE_APPENDS {
        let started = Instant::now();
        file.write_all(&block)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot append to {}", path.display()))?;
        let _ = histogram.record((started.elapsed().as_micros() as u64).max(1));
        if Instant::now() > deadline {
            break;
        }
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Latency::from_histogram(&histogram))
}

/// Starts one cluster per system, runs every point against each of them in
/// turn (photon, etcd, photon, ...), stops them. Interleaving spreads any
/// drift of a shared machine over both systems; the cluster that is not
/// measured only exchanges heartbeats meanwhile.
fn run_clusters(
    args: &KvArgs,
    systems: &[System],
    nodes: usize,
    base: &Path,
) -> anyhow::Result<Vec<Point>> {
    let mut clusters = Vec::new();
    for &system in systems {
        let started = Instant::now();
        clusters.push(match system {
            System::Photon => Cluster::start_photon(base, nodes)?,
            System::Etcd => Cluster::start_etcd(&args.etcd, base, nodes)?,
        });
        eprintln!(
            "{} {nodes}-node cluster up in {:.1} s",
            system.name(),
            started.elapsed().as_secs_f64()
        );
    }
    let mut points = Vec::new();
    for &clients in &args.clients {
        for cluster in &clusters {
            points.push(measure(args, cluster, Workload::Put, clients)?);
        }
    }
    if args.get_nodes.contains(&nodes) {
        for cluster in &clusters {
            let started = Instant::now();
            fill(&cluster.endpoints, args.keys, args.value_bytes).with_context(|| {
                format!("cannot fill the key space of {}", cluster.system.name())
            })?;
            eprintln!(
                "{} key space filled in {:.1} s",
                cluster.system.name(),
                started.elapsed().as_secs_f64()
            );
        }
        for workload in [Workload::GetLinearizable, Workload::GetSerializable] {
            for cluster in &clusters {
                points.push(measure(args, cluster, workload, args.get_clients)?);
            }
        }
    }
    for cluster in &mut clusters {
        cluster.check_alive()?;
    }
    Ok(points)
}

/// Runs one closed-loop point against a running cluster.
fn measure(
    args: &KvArgs,
    cluster: &Cluster,
    workload: Workload,
    clients: usize,
) -> anyhow::Result<Point> {
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs_f64(args.warmup_s);
    let plan = Plan {
        workload,
        keys: args.keys,
        value: value_of(args.value_bytes),
        measure_from,
        stop: measure_from + Duration::from_secs_f64(args.duration_s),
    };
    let mut handles = Vec::new();
    for thread in 0..args.threads.min(clients) {
        let indices: Vec<usize> = (thread..clients).step_by(args.threads).collect();
        let (endpoints, plan) = (cluster.endpoints.clone(), plan.clone());
        handles.push(std::thread::spawn(move || {
            block_on(run_clients(endpoints, indices, plan)).and_then(|r| r)
        }));
    }
    let mut total = Tally::new();
    for handle in handles {
        let part = handle
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        total.merge(part)?;
    }
    let point = Point {
        system: cluster.system,
        workload,
        nodes: cluster.nodes.len(),
        clients,
        ops: total.ok,
        errors: total.errors,
        first_error: total.first_error,
        elapsed: plan.stop - plan.measure_from,
        latency: Latency::from_histogram(&total.histogram),
    };
    eprintln!(
        "  {} {}-node {} x{}: {:.0} ops/s, {}, {} errors",
        point.system.name(),
        point.nodes,
        workload.name(),
        clients,
        point.ops_per_s(),
        point.latency,
        point.errors
    );
    Ok(point)
}

/// Counts and latencies of some clients.
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    histogram: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            first_error: None,
            histogram: new_histogram(),
        }
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.histogram.add(&other.histogram)?;
        Ok(())
    }

    fn failed(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// One load thread: connects its clients, runs their loops, merges them.
async fn run_clients(
    endpoints: Endpoints,
    indices: Vec<usize>,
    plan: Plan,
) -> anyhow::Result<Tally> {
    let deadline = tokio::time::Instant::from_std(plan.stop + POINT_GRACE);
    let mut tasks = Vec::new();
    for index in indices {
        let client = KvClient::connect(&endpoints, index).await?;
        let plan = plan.clone();
        tasks.push(tokio::task::spawn_local(closed_loop(client, index, plan)));
    }
    let mut total = Tally::new();
    for task in tasks {
        let part = tokio::time::timeout_at(deadline, task)
            .await
            .context("a client was still in a call 30 s after the point ended")??;
        total.merge(part)?;
    }
    Ok(total)
}

/// One client: call, wait for the answer, call again, until `plan.stop`.
async fn closed_loop(mut client: KvClient, index: usize, plan: Plan) -> Tally {
    let mut tally = Tally::new();
    let mut random = SplitMix64(0x9e37_79b9_7f4a_7c15 ^ index as u64);
    let mut key = Vec::with_capacity(32);
    loop {
        let sent = Instant::now();
        if sent >= plan.stop {
            break;
        }
        key_into(&mut key, random.next() % plan.keys);
        let result = match plan.workload {
            Workload::Put => client.put(&key, &plan.value).await,
            Workload::GetLinearizable => client.get(&key, false).await,
            Workload::GetSerializable => client.get(&key, true).await,
        };
        match result {
            Ok(()) if sent >= plan.measure_from => {
                tally.ok += 1;
                let _ = tally
                    .histogram
                    .record((sent.elapsed().as_micros() as u64).max(1));
            }
            Ok(()) => {}
            Err(e) => {
                tally.failed(e);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    tally
}

/// Writes every key of the key space once, so that every get finds its key.
fn fill(endpoints: &Endpoints, keys: u64, value_bytes: usize) -> anyhow::Result<()> {
    let value = value_of(value_bytes);
    block_on(async move {
        let mut tasks = Vec::new();
        for writer in 0..FILL_CLIENTS {
            let mut client = KvClient::connect(endpoints, writer).await?;
            let value = value.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let mut key = Vec::with_capacity(32);
                for k in (writer as u64..keys).step_by(FILL_CLIENTS) {
                    key_into(&mut key, k);
                    client.put(&key, &value).await.map_err(anyhow::Error::msg)?;
                }
                anyhow::Ok(())
            }));
        }
        let deadline = tokio::time::Instant::now() + FILL_TIMEOUT;
        for task in tasks {
            tokio::time::timeout_at(deadline, task)
                .await
                .context("the fill did not finish in time")???;
        }
        Ok(())
    })
    .and_then(|r| r)
}

/// A value of `n` printable bytes (neither system compresses values).
fn value_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `bench/` plus the key number, zero-padded so that keys sort by number;
/// reuses `key`'s buffer (no allocation per call).
fn key_into(key: &mut Vec<u8>, n: u64) {
    use std::io::Write;
    key.clear();
    let _ = write!(key, "bench/{n:010}");
}

/// A small deterministic generator (SplitMix64): every client gets its own
/// key sequence, the same in every run.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One client connection of either system.
enum KvClient {
    Photon(PhotonClient),
    /// Boxed: tonic's channel makes it ~400 bytes.
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd_client::KvClient>),
}

impl KvClient {
    /// Client `index` gets every endpoint, starting at a different one per
    /// client, so that serializable reads spread over the members.
    async fn connect(endpoints: &Endpoints, index: usize) -> anyhow::Result<Self> {
        match endpoints {
            Endpoints::Photon(addresses, token) => {
                let mut list = addresses.clone();
                list.rotate_left(index % addresses.len());
                let token = token.clone().context("no token yet")?;
                Ok(Self::Photon(PhotonClient::with_token(list, token)?))
            }
            #[cfg(not(feature = "etcd"))]
            Endpoints::Etcd(_) => anyhow::bail!("built without the `etcd` feature"),
            #[cfg(feature = "etcd")]
            Endpoints::Etcd(urls) => {
                let mut list = urls.clone();
                list.rotate_left(index % urls.len());
                let client = etcd_client::Client::connect(&list, None)
                    .await
                    .with_context(|| format!("cannot connect to etcd at {list:?}"))?;
                Ok(Self::Etcd(Box::new(client.kv_client())))
            }
        }
    }

    async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        match self {
            Self::Photon(client) => client
                .put(PutRequest {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    lease: 0,
                    prev_kv: false,
                    ignore_value: false,
                    ignore_lease: false,
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Self::Etcd(client) => client
                .put(key, value, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// Reads one key; a key that is not there is an error (the key space
    /// was filled before the get workloads).
    async fn get(&mut self, key: &[u8], serializable: bool) -> Result<(), String> {
        let found = match self {
            Self::Photon(client) => {
                let request = RangeRequest {
                    key: key.to_vec(),
                    ..RangeRequest::default()
                };
                let response = client
                    .range(request, serializable)
                    .await
                    .map_err(|e| e.to_string())?;
                response.kvs.len()
            }
            #[cfg(feature = "etcd")]
            Self::Etcd(client) => {
                let options =
                    serializable.then(|| etcd_client::GetOptions::new().with_serializable());
                let response = client.get(key, options).await.map_err(|e| e.to_string())?;
                response.kvs().len()
            }
        };
        if found == 1 {
            Ok(())
        } else {
            Err(format!(
                "get {} found {found} keys, expected 1",
                String::from_utf8_lossy(key)
            ))
        }
    }
}

/// Runs `future` on a tokio current_thread runtime inside a `LocalSet`
/// (photon's Cap'n Proto client is `!Send`).
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build a tokio runtime")?;
    Ok(tokio::task::LocalSet::new().block_on(&runtime, future))
}

/// A running cluster of one system; its processes stop and its data goes on drop.
struct Cluster {
    system: System,
    dir: PathBuf,
    nodes: Vec<Proc>,
    endpoints: Endpoints,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// `photon node` processes with only the control role, one shard each,
    /// unpinned (several nodes share the machine's cores).
    fn start_photon(base: &Path, nodes: usize) -> anyhow::Result<Self> {
        let dir = base.join(format!("photon-{nodes}"));
        std::fs::create_dir_all(&dir)?;
        let addresses = (0..nodes)
            .map(|_| Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let members: Vec<String> = addresses
            .iter()
            .enumerate()
            .map(|(i, a)| format!("\"{}={a}\"", i + 1))
            .collect();
        let exe = std::env::current_exe().context("cannot find the photon binary")?;
        let mut cluster = Self {
            system: System::Photon,
            dir: dir.clone(),
            nodes: Vec::new(),
            endpoints: Endpoints::Photon(addresses.clone(), None),
        };
        // Every node of a cluster shares one cluster key.
        let key_file = dir.join("cluster.key");
        let _ = std::fs::remove_file(&key_file);
        photon_iam::seal::ClusterKey::generate()
            .write_new(&key_file)
            .context("cannot write the cluster key")?;
        for (i, address) in addresses.iter().enumerate() {
            let id = i + 1;
            let data_dir = dir.join(format!("n{id}"));
            let config = format!(
                "[node]\nname = \"n{id}\"\ndata_dir = \"{}\"\nroles = [\"control\"]\n\
                 [engine]\ncores = 1\npin = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                 [control]\nnode_id = {id}\nlisten = \"{address}\"\ninitial_members = [{}]\n\
                 [iam]\ncluster_key_file = \"{}\"\n",
                data_dir.display(),
                members.join(", "),
                key_file.display()
            );
            let file = dir.join(format!("n{id}.toml"));
            std::fs::write(&file, config)?;
            let mut command = Command::new(&exe);
            command.args(["node", "--config"]).arg(&file);
            let log = dir.join(format!("n{id}.log"));
            cluster
                .nodes
                .push(Proc::spawn(format!("photon node {id}"), &mut command, log)?);
        }
        for (i, node) in cluster.nodes.iter_mut().enumerate() {
            let file = dir.join(format!("n{}", i + 1)).join("endpoints.json");
            let deadline = Instant::now() + STARTUP_TIMEOUT;
            while !file.exists() {
                node.check_alive()?;
                if Instant::now() > deadline {
                    bail!("{} wrote no {} in time", node.name, file.display());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let token = admin_token(&dir, &addresses, &mut cluster)?;
        cluster.endpoints = Endpoints::Photon(addresses, Some(token));
        cluster.wait_writable()?;
        Ok(cluster)
    }

    /// Debian's etcd with its defaults (WAL fsync on), one member per node.
    fn start_etcd(binary: &Path, base: &Path, nodes: usize) -> anyhow::Result<Self> {
        let dir = base.join(format!("etcd-{nodes}"));
        std::fs::create_dir_all(&dir)?;
        let ports = (0..nodes)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<Vec<(u16, u16)>>>()?;
        let initial_cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
            .collect();
        let urls: Vec<String> = ports
            .iter()
            .map(|(client, _)| format!("http://127.0.0.1:{client}"))
            .collect();
        let mut cluster = Self {
            system: System::Etcd,
            dir: dir.clone(),
            nodes: Vec::new(),
            endpoints: Endpoints::Etcd(urls.clone()),
        };
        let token = format!("photon-bench-{}-{nodes}", std::process::id());
        for (i, (_, peer)) in ports.iter().enumerate() {
            let name = format!("e{}", i + 1);
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut command = Command::new(binary);
            command
                .arg(format!("--name={name}"))
                .arg(format!("--data-dir={}", dir.join(&name).display()))
                .arg(format!("--listen-client-urls={}", urls[i]))
                .arg(format!("--advertise-client-urls={}", urls[i]))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={}", initial_cluster.join(",")))
                .arg("--initial-cluster-state=new")
                .arg(format!("--initial-cluster-token={token}"))
                .arg("--logger=zap")
                .arg("--log-outputs=stderr");
            let log = dir.join(format!("{name}.log"));
            cluster
                .nodes
                .push(Proc::spawn(format!("etcd {name}"), &mut command, log)?);
        }
        cluster.wait_writable()?;
        Ok(cluster)
    }

    /// Waits until a write through the normal client succeeds (a leader is
    /// elected and the log is writable), checking that no process died.
    fn wait_writable(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.check_alive()?;
            let endpoints = self.endpoints.clone();
            let attempt = block_on(async move {
                let mut client = KvClient::connect(&endpoints, 0)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                tokio::time::timeout(Duration::from_secs(5), client.put(b"bench/ready", b"1"))
                    .await
                    .map_err(|_| "no answer in 5 s".to_string())?
            })?;
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "{} cluster took no write in {STARTUP_TIMEOUT:?}: {last}",
            self.system.name()
        )
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.check_alive()?;
        }
        Ok(())
    }
}

/// Prints one table per workload and cluster size; returns every row as JSON.
/// Logs in as the cluster administrator whose credentials the bootstrapping
/// node wrote into its data directory.
fn admin_token(
    dir: &Path,
    addresses: &[SocketAddr],
    cluster: &mut Cluster,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let credentials = loop {
        cluster.check_alive()?;
        let found = (1..=addresses.len())
            .map(|id| dir.join(format!("n{id}/control/admin.credentials")))
            .find(|p| p.exists());
        if let Some(path) = found {
            break path;
        }
        if Instant::now() > deadline {
            bail!("no node wrote admin.credentials in {STARTUP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&credentials)?;
    let table: toml::Table = text.parse().context("admin.credentials")?;
    let password = table["password"]
        .as_str()
        .context("admin.credentials has no password")?
        .to_owned();
    let addresses = addresses.to_vec();
    block_on(async move {
        let mut client = PhotonClient::new(addresses)?;
        let (token, _) = client.login("system", "admin", &password, "", 0).await?;
        Ok::<_, anyhow::Error>(token)
    })?
}

fn print_tables(args: &KvArgs, points: &[Point], with_etcd: bool) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    let workloads = [
        Workload::Put,
        Workload::GetLinearizable,
        Workload::GetSerializable,
    ];
    for workload in workloads {
        for &nodes in &args.nodes {
            let group: Vec<&Point> = points
                .iter()
                .filter(|p| p.workload == workload && p.nodes == nodes)
                .collect();
            if group.is_empty() {
                continue;
            }
            println!(
                "\n== {}, {nodes}-node cluster: {}-byte values, {} keys, {} s per point ==",
                workload.name(),
                args.value_bytes,
                args.keys,
                args.duration_s
            );
            let mut table = Table::new(&[
                "clients",
                "system",
                "ops/s",
                "p50 us",
                "p99 us",
                "p999 us",
                "errors",
                "ops/s photon/etcd",
                "p99 photon/etcd",
            ]);
            for point in &group {
                let etcd = group
                    .iter()
                    .find(|p| p.system == System::Etcd && p.clients == point.clients && with_etcd);
                let ratios = match (point.system, etcd) {
                    (System::Photon, Some(e)) => Some((
                        point.ops_per_s() / e.ops_per_s().max(f64::MIN_POSITIVE),
                        point.latency.p99_us as f64 / e.latency.p99_us.max(1) as f64,
                    )),
                    _ => None,
                };
                let (ops_ratio, p99_ratio) = match (point.system, ratios) {
                    (_, Some((o, p))) => (format!("{o:.2}x"), format!("{p:.2}x")),
                    (System::Photon, None) => ("missing".into(), "missing".into()),
                    (System::Etcd, None) => (String::new(), String::new()),
                };
                table.row(vec![
                    point.clients.to_string(),
                    point.system.name().to_string(),
                    format!("{:.0}", point.ops_per_s()),
                    point.latency.p50_us.to_string(),
                    point.latency.p99_us.to_string(),
                    point.latency.p999_us.to_string(),
                    point.errors.to_string(),
                    ops_ratio,
                    p99_ratio,
                ]);
                rows.push(point.to_json(ratios));
            }
            print!("{table}");
        }
    }
    rows
}

/// Every failed call is reported, with the first error text of its point.
fn print_errors(points: &[Point]) {
    let failing: Vec<&Point> = points.iter().filter(|p| p.errors > 0).collect();
    if failing.is_empty() {
        println!("\nno failed calls");
        return;
    }
    println!("\nfailed calls:");
    for p in failing {
        println!(
            "  {} {}-node {} x{}: {} errors, first: {}",
            p.system.name(),
            p.nodes,
            p.workload.name(),
            p.clients,
            p.errors,
            p.first_error.as_deref().unwrap_or("?")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_and_sort_by_number() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        key_into(&mut a, 9);
        key_into(&mut b, 10);
        assert_eq!(a, b"bench/0000000009");
        assert!(a < b);
    }

    #[test]
    fn clients_draw_different_key_sequences() {
        let mut one = SplitMix64(0x9e37_79b9_7f4a_7c15);
        let mut two = SplitMix64(0x9e37_79b9_7f4a_7c15 ^ 1);
        assert_ne!(one.next(), two.next());
    }

    #[test]
    fn values_have_the_requested_size() {
        assert_eq!(value_of(256).len(), 256);
        assert!(value_of(0).is_empty());
    }
}
