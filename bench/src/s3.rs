//! `photon bench s3`: PhotonCloud's S3 service (LightningStor) beside
//! Garage and beside the raw disk, measured in the same run with the same
//! load generator.
//!
//! First the disk under the data directories (bench/src/disk.rs: O_DIRECT
//! sequential write and read, 4 KiB random reads at QD 128). Then both
//! servers run side by side on 127.0.0.1 (the benchmark's own `photon dev`
//! or a running node, and a single-node Garage from scripts/garage.sh), and
//! every workload runs on one and then on the other, so that a slow stretch
//! of a shared machine hits both. A workload is one operation on objects of
//! one size: N keep-alive connections in closed loops, each request signed
//! with PhotonCloud's own SigV4 signer; GETs read objects a fill phase wrote
//! beforehand and check every body's length, its per-object stamp and
//! samples of its content. Output: ops/s, MB/s, p50/p99/p999 per workload
//! and target, each target's throughput as a fraction of the disk's, and the
//! photon/garage ratios.

mod client;
mod load;
mod objects;
mod target;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{ArgAction, Args, ValueEnum};
use serde_json::json;

use self::client::{Endpoint, Payload};
use self::load::{Operation, Plan, Window, Workload};
use self::objects::ObjectSet;
use self::target::{GarageSettings, Target, WorkDir};
use crate::disk::{ByteSize, DiskArgs, DiskBaseline};
use crate::report::{Latency, Table};

/// Most connections one workload may open.
pub const CONNECTIONS_MAX: usize = 4096;
/// Most load generator threads.
pub const THREADS_MAX: usize = 64;
/// Largest key space of one object size.
pub const KEYS_MAX: u64 = 10_000_000;
/// GETs of objects up to this size are compared with the disk's random-read
/// IOPS (one object, one small read); larger ones with its read throughput.
pub const SMALL_OBJECT_BYTES_MAX: u64 = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum TargetName {
    /// PhotonCloud: its own `photon dev`, or the node of --data-dir / --endpoint.
    Photon,
    /// A single-node Garage started with scripts/garage.sh (needs `garage`).
    Garage,
}

impl TargetName {
    fn as_str(self) -> &'static str {
        match self {
            TargetName::Photon => "photon",
            TargetName::Garage => "garage",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadArg {
    /// The real SHA-256 up to --payload-sha256-size-max, UNSIGNED-PAYLOAD above.
    Auto,
    /// The real SHA-256 of every body (what the aws CLI sends over http).
    Sha256,
    /// UNSIGNED-PAYLOAD for every body (what SDKs send over https).
    Unsigned,
}

#[derive(Debug, Clone, Args)]
pub struct S3Args {
    /// Workloads, run in this order: put-SIZE, get-SIZE, mixed-SIZE (SIZE as 4k, 1m, 64m).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "put-4k,get-4k,mixed-4k,put-1m,get-1m,put-64m,get-64m"
    )]
    pub workloads: Vec<Workload>,
    /// Servers to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "photon,garage"
    )]
    pub targets: Vec<TargetName>,
    /// Keep-alive connections per workload (closed loop, one request at a time each).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Load generator threads (one tokio current_thread runtime each).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Measured seconds per workload and target.
    #[arg(long, default_value_t = 3.0)]
    pub duration_s: f64,
    /// Longest measured time of a point that has fewer than --samples-min
    /// completed requests after --duration-s (large objects).
    #[arg(long, default_value_t = 15.0)]
    pub duration_max_s: f64,
    /// Completed requests a point needs before it may end (its latency samples).
    #[arg(long, default_value_t = 32)]
    pub samples_min: u64,
    /// Unmeasured seconds before each (connections open, caches settle).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Keys per object size; each request picks one uniformly.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Caps the bytes of one size's key space: keys = min(--keys, this / size), at least 1.
    #[arg(long, default_value = "512m")]
    pub fill_size_max: ByteSize,
    /// Percentage of GETs in the mixed workloads (the rest are PUTs).
    #[arg(long, default_value_t = 90)]
    pub mixed_get_percent: u64,
    /// Payload hash PUTs sign (x-amz-content-sha256).
    #[arg(long, value_enum, default_value = "auto")]
    pub payload: PayloadArg,
    /// With --payload auto: the largest body signed with its real SHA-256.
    #[arg(long, default_value = "64k")]
    pub payload_sha256_size_max: ByteSize,
    /// Compare every byte of every GET body (default: length, stamp and the
    /// first 64 bytes of every received frame).
    #[arg(long)]
    pub verify_full: bool,
    /// A request without a reply after this long fails and its connection is dropped.
    #[arg(long, default_value_t = 120.0)]
    pub request_timeout_s: f64,
    /// Measure a running S3 endpoint (http://HOST:PORT, path-style) as "photon".
    #[arg(long, requires_all = ["access_key", "secret_key"], conflicts_with = "data_dir")]
    pub endpoint: Option<String>,
    /// Access key id for --endpoint.
    #[arg(long)]
    pub access_key: Option<String>,
    /// Secret access key for --endpoint.
    #[arg(long)]
    pub secret_key: Option<String>,
    /// Region to sign with for --endpoint.
    #[arg(long, default_value = target::PHOTON_REGION)]
    pub region: String,
    /// Measure the running node of this data directory (reads its s3.env);
    /// the disk probe also runs there.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// An extra argument for the `photon dev` the benchmark starts (repeat it).
    #[arg(long = "photon-arg", allow_hyphen_values = true)]
    pub photon_args: Vec<String>,
    /// Bucket to use (created when missing).
    #[arg(long, default_value = "photon-bench")]
    pub bucket: String,
    /// The garage binary (found on PATH or in ~/.cargo/bin when a bare name).
    #[arg(long, default_value = "garage")]
    pub garage: PathBuf,
    /// Garage's metadata_fsync and data_fsync (its own default is false).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub garage_fsync: bool,
    /// Where the run's directories go (removed at the end); a real disk.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Drop the page cache (sync; echo 3 > /proc/sys/vm/drop_caches, needs
    /// root, affects the whole machine) after each fill, so GETs start cold.
    #[arg(long)]
    pub drop_caches: bool,
    /// Also write every row as JSON to this file (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub disk: DiskArgs,
}

/// One measured workload on one target.
#[derive(Debug, Clone)]
struct Point {
    target: String,
    workload: Workload,
    keys: u64,
    /// Requests completed inside the window (the latency samples).
    completed: u64,
    /// Requests and bytes counted by their share of the window.
    ops: f64,
    bytes: f64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    latency: Latency,
}

impl Point {
    fn ops_per_s(&self) -> f64 {
        self.ops / self.elapsed.as_secs_f64()
    }

    fn bytes_per_s(&self) -> f64 {
        self.bytes / self.elapsed.as_secs_f64()
    }

    fn to_json(
        &self,
        disk_ratio: Option<(f64, &str)>,
        garage_ratio: Option<(f64, f64)>,
    ) -> serde_json::Value {
        json!({
            "target": self.target,
            "workload": self.workload.to_string(),
            "object_bytes": self.workload.size,
            "keys": self.keys,
            "completed": self.completed,
            "ops": self.ops,
            "bytes": self.bytes,
            "ops_per_s": self.ops_per_s(),
            "bytes_per_s": self.bytes_per_s(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "errors": self.errors,
            "first_error": self.first_error,
            "latency_us": self.latency.to_json(),
            "vs_disk": disk_ratio.map(|(r, what)| json!({"ratio": r, "of": what})),
            "photon_vs_garage_ops_per_s": garage_ratio.map(|r| r.0),
            "photon_vs_garage_p99": garage_ratio.map(|r| r.1),
        })
    }
}

pub fn run(args: S3Args) -> anyhow::Result<()> {
    validate(&args)?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::create(&base, "s3")?;
    let disk_dir = args.data_dir.clone().unwrap_or_else(|| work.path.clone());
    let disk = if args.disk.skip_disk {
        println!("--skip-disk: no raw disk baseline");
        None
    } else {
        eprintln!("measuring the disk under {} ...", disk_dir.display());
        let disk = crate::disk::measure(&disk_dir, &args.disk)?;
        println!("disk: {disk}");
        Some(disk)
    };
    let mut targets = start_targets(&args, &work.path)?;
    print_header(&args, &targets, &work.path);
    let points = run_workloads(&args, &mut targets)?;
    for target in &mut targets {
        target.check_alive()?;
    }
    let rows = print_table(&args, &points, disk.as_ref());
    print_errors(&points);
    if let Some(path) = &args.json {
        write_json(&args, path, disk.as_ref(), &targets, rows)?;
    }
    Ok(())
}

fn validate(args: &S3Args) -> anyhow::Result<()> {
    if !(args.duration_s > 0.0 && args.duration_s <= 3600.0) {
        bail!("--duration-s must be in (0, 3600]");
    }
    if !(args.duration_max_s >= args.duration_s && args.duration_max_s <= 3600.0) {
        bail!("--duration-max-s must be in [--duration-s, 3600]");
    }
    if !(0.0..=600.0).contains(&args.warmup_s) {
        bail!("--warmup-s must be in [0, 600]");
    }
    if args.connections == 0 || args.connections > CONNECTIONS_MAX {
        bail!("--connections must be in 1..={CONNECTIONS_MAX}");
    }
    if args.threads == 0 || args.threads > THREADS_MAX {
        bail!("--threads must be in 1..={THREADS_MAX}");
    }
    if args.keys == 0 || args.keys > KEYS_MAX {
        bail!("--keys must be in 1..={KEYS_MAX}");
    }
    if args.mixed_get_percent > 100 {
        bail!("--mixed-get-percent must be at most 100");
    }
    if !(args.request_timeout_s > 0.0 && args.request_timeout_s <= 3600.0) {
        bail!("--request-timeout-s must be in (0, 3600]");
    }
    if args.workloads.is_empty() || args.targets.is_empty() {
        bail!("--workloads and --targets must name at least one");
    }
    if args.bucket.len() < 3
        || !args
            .bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!("--bucket must be 3+ lowercase letters, digits or '-'");
    }
    if !args.disk.skip_disk {
        args.disk.validate()?;
    }
    Ok(())
}

/// Starts (or connects to) every target. A server the benchmark starts
/// itself and that fails is reported MISSING and the run goes on with the
/// others; a server named by the user must work.
fn start_targets(args: &S3Args, work: &Path) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    let mut wanted = HashSet::new();
    for &name in &args.targets {
        if !wanted.insert(name) {
            continue;
        }
        let started = Instant::now();
        let target = match name {
            TargetName::Photon => start_photon(args, work),
            TargetName::Garage => start_garage(args, work),
        };
        match target {
            Ok(Some(t)) => {
                eprintln!(
                    "{} up in {:.1} s",
                    t.name(),
                    started.elapsed().as_secs_f64()
                );
                targets.push(t);
            }
            Ok(None) => {}
            Err(e)
                if (args.endpoint.is_none() && args.data_dir.is_none())
                    || name == TargetName::Garage =>
            {
                println!("{} MISSING: could not start it: {e:#}", name.as_str());
            }
            Err(e) => return Err(e),
        }
    }
    if targets.is_empty() {
        bail!("no S3 target could be started");
    }
    Ok(targets)
}

fn start_photon(args: &S3Args, work: &Path) -> anyhow::Result<Option<Target>> {
    if let Some(url) = &args.endpoint {
        let (Some(access), Some(secret)) = (&args.access_key, &args.secret_key) else {
            bail!("--endpoint needs --access-key and --secret-key");
        };
        let endpoint =
            Endpoint::from_url("photon", url, access, secret, &args.region, &args.bucket)?;
        return Target::external(endpoint, format!("S3 endpoint {url}")).map(Some);
    }
    if let Some(dir) = &args.data_dir {
        let endpoint = target::photon_from_data_dir(dir, &args.bucket)?;
        let description = format!("the photon node of {}", dir.display());
        return Target::external(endpoint, description).map(Some);
    }
    target::start_photon(&work.join("photon"), &args.photon_args, &args.bucket).map(Some)
}

fn start_garage(args: &S3Args, work: &Path) -> anyhow::Result<Option<Target>> {
    let Some(binary) = target::find_garage(&args.garage) else {
        println!(
            "garage MISSING: no {} on PATH or in ~/.cargo/bin (cargo install garage --version \
             2.5.0 --locked); the photon/garage comparison is not made",
            args.garage.display()
        );
        return Ok(None);
    };
    let settings = GarageSettings {
        binary,
        fsync: args.garage_fsync,
        bucket: args.bucket.clone(),
    };
    target::start_garage(&work.join("garage"), &settings).map(Some)
}

fn print_header(args: &S3Args, targets: &[Target], dir: &Path) {
    let names: Vec<&str> = targets.iter().map(Target::name).collect();
    let points = args.workloads.len() * targets.len();
    println!(
        "photon bench s3: {}; {} connections, {} load thread(s), {} s per point after {} s warm-up, \
         longer (up to {} s) until {} requests completed (~{:.0} s of measurement at least); \
         payload hash: {}; scratch in {}",
        names.join(" vs "),
        args.connections,
        args.threads,
        args.duration_s,
        args.warmup_s,
        args.duration_max_s,
        args.samples_min,
        points as f64 * (args.duration_s + args.warmup_s),
        payload_description(args),
        dir.display()
    );
    for target in targets {
        println!("  {}: {}", target.name(), target.description);
    }
}

fn payload_description(args: &S3Args) -> String {
    match args.payload {
        PayloadArg::Auto => format!(
            "real SHA-256 up to {}, UNSIGNED-PAYLOAD above",
            args.payload_sha256_size_max
        ),
        PayloadArg::Sha256 => "real SHA-256 of every body".into(),
        PayloadArg::Unsigned => "UNSIGNED-PAYLOAD".into(),
    }
}

fn payload_for(args: &S3Args, size: u64) -> Payload {
    match args.payload {
        PayloadArg::Sha256 => Payload::Sha256,
        PayloadArg::Unsigned => Payload::Unsigned,
        PayloadArg::Auto if size <= args.payload_sha256_size_max.0 => Payload::Sha256,
        PayloadArg::Auto => Payload::Unsigned,
    }
}

/// Every workload on every target in turn; a size's key space is filled on
/// a target before the first workload that reads it.
fn run_workloads(args: &S3Args, targets: &mut [Target]) -> anyhow::Result<Vec<Point>> {
    let mut sets: Vec<Arc<ObjectSet>> = Vec::new();
    let mut filled: HashSet<(usize, u64)> = HashSet::new();
    let mut points = Vec::new();
    for &workload in &args.workloads {
        let set = match sets.iter().find(|s| s.size as u64 == workload.size) {
            Some(set) => set.clone(),
            None => {
                let keys = (args.fill_size_max.0 / workload.size).clamp(1, args.keys);
                let signed = payload_for(args, workload.size) == Payload::Sha256;
                let set = Arc::new(ObjectSet::new(workload.size as usize, keys, signed));
                sets.push(set.clone());
                set
            }
        };
        for (index, target) in targets.iter_mut().enumerate() {
            target.check_alive()?;
            if workload.reads() && filled.insert((index, workload.size)) {
                fill(args, target, &set)?;
            }
            points.push(measure(args, target, workload, &set)?);
        }
    }
    Ok(points)
}

fn fill(args: &S3Args, target: &Target, set: &Arc<ObjectSet>) -> anyhow::Result<()> {
    let started = Instant::now();
    let payload = payload_for(args, set.size as u64);
    let timeout = Duration::from_secs_f64(args.request_timeout_s);
    load::fill(&target.endpoint, set, payload, args.connections, timeout).with_context(|| {
        format!(
            "{}: cannot write the {} objects of {}",
            target.name(),
            set.keys,
            ByteSize(set.size as u64)
        )
    })?;
    eprintln!(
        "  {} filled {} x {} in {:.1} s",
        target.name(),
        set.keys,
        ByteSize(set.size as u64),
        started.elapsed().as_secs_f64()
    );
    if args.drop_caches {
        drop_page_cache();
    }
    Ok(())
}

/// Best effort: a failure (not root) is printed, not fatal.
fn drop_page_cache() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
        eprintln!("  cannot drop the page cache: {e}");
    }
}

fn measure(
    args: &S3Args,
    target: &Target,
    workload: Workload,
    set: &Arc<ObjectSet>,
) -> anyhow::Result<Point> {
    let window = Window::new(
        Instant::now() + Duration::from_secs_f64(args.warmup_s),
        Duration::from_secs_f64(args.duration_s),
        Duration::from_secs_f64(args.duration_max_s),
        args.samples_min,
    );
    let plan = Arc::new(Plan {
        operation: workload.operation,
        set: set.clone(),
        payload: payload_for(args, workload.size),
        get_percent: args.mixed_get_percent,
        verify_full: args.verify_full,
        request_timeout: Duration::from_secs_f64(args.request_timeout_s),
        window,
    });
    let tally = load::measure(
        &target.endpoint,
        plan.clone(),
        args.connections,
        args.threads,
    )?;
    let point = Point {
        target: target.name().to_owned(),
        workload,
        keys: set.keys,
        completed: tally.completed,
        ops: tally.ops,
        bytes: tally.bytes,
        errors: tally.errors,
        first_error: tally.first_error,
        elapsed: tally.elapsed,
        latency: Latency::from_histogram(&tally.histogram),
    };
    eprintln!(
        "  {} {workload}: {:.0} ops/s, {:.1} MB/s, {}, {} errors",
        point.target,
        point.ops_per_s(),
        point.bytes_per_s() / 1e6,
        point.latency,
        point.errors
    );
    Ok(point)
}

/// A point's throughput as a fraction of the disk's: PUT bytes/s against
/// sequential writes; GET (and mixed) of small objects ops/s against 4 KiB
/// random reads, of large objects bytes/s against sequential reads.
fn versus_disk(point: &Point, disk: &DiskBaseline) -> (f64, &'static str) {
    let small = point.workload.size <= SMALL_OBJECT_BYTES_MAX;
    match point.workload.operation {
        Operation::Put => (
            point.bytes_per_s() / disk.write_bytes_per_s(),
            "seq write MB/s",
        ),
        Operation::Get | Operation::Mixed if small => (
            point.ops_per_s() / disk.random_reads_per_s(),
            "4k randread IOPS",
        ),
        Operation::Get | Operation::Mixed => (
            point.bytes_per_s() / disk.read_bytes_per_s(),
            "seq read MB/s",
        ),
    }
}

/// The photon/garage ratios of a point: throughput and p99.
fn versus_garage(point: &Point, points: &[Point]) -> Option<(f64, f64)> {
    if point.target == "garage" {
        return None;
    }
    let garage = points
        .iter()
        .find(|p| p.target == "garage" && p.workload == point.workload)?;
    Some((
        point.ops_per_s() / garage.ops_per_s().max(f64::MIN_POSITIVE),
        point.latency.p99_us as f64 / garage.latency.p99_us.max(1) as f64,
    ))
}

/// Prints one table of every workload and target; returns the rows as JSON.
fn print_table(
    args: &S3Args,
    points: &[Point],
    disk: Option<&DiskBaseline>,
) -> Vec<serde_json::Value> {
    let with_garage = points.iter().any(|p| p.target == "garage");
    println!(
        "\n== S3, {} connections; ops/s and MB/s count each request by its share of the \
         window; latency of the requests completed in it (samples); vs disk: PUT MB/s / disk seq \
         write, GET MB/s / disk seq read, GET and mixed of objects <= {} ops/s / disk 4 KiB \
         random reads ==",
        args.connections,
        ByteSize(SMALL_OBJECT_BYTES_MAX)
    );
    let mut table = Table::new(&[
        "workload",
        "target",
        "keys",
        "window s",
        "samples",
        "ops/s",
        "MB/s",
        "p50 us",
        "p99 us",
        "p999 us",
        "errors",
        "vs disk",
        "ops/s photon/garage",
        "p99 photon/garage",
    ]);
    let mut rows = Vec::new();
    for point in points {
        let disk_ratio = disk.map(|d| versus_disk(point, d));
        let garage_ratio = versus_garage(point, points);
        let (ops_ratio, p99_ratio) = match (garage_ratio, point.target.as_str()) {
            (Some((o, p)), _) => (format!("{o:.2}x"), format!("{p:.2}x")),
            (None, "garage") => (String::new(), String::new()),
            (None, _) if with_garage => ("?".into(), "?".into()),
            (None, _) => ("missing".into(), "missing".into()),
        };
        table.row(vec![
            point.workload.to_string(),
            point.target.clone(),
            point.keys.to_string(),
            format!("{:.1}", point.elapsed.as_secs_f64()),
            point.completed.to_string(),
            format!("{:.0}", point.ops_per_s()),
            format!("{:.1}", point.bytes_per_s() / 1e6),
            point.latency.p50_us.to_string(),
            point.latency.p99_us.to_string(),
            point.latency.p999_us.to_string(),
            point.errors.to_string(),
            disk_ratio.map_or("-".into(), |(r, what)| format!("{r:.2}x {what}")),
            ops_ratio,
            p99_ratio,
        ]);
        rows.push(point.to_json(disk_ratio, garage_ratio));
    }
    print!("{table}");
    if !with_garage {
        println!("\ngarage comparison MISSING: Garage was not measured");
    }
    if points.iter().all(|p| p.target == "garage") {
        println!("\nphoton MISSING: only Garage was measured");
    }
    rows
}

/// Every failed request is reported, with the first error of its point.
fn print_errors(points: &[Point]) {
    let failing: Vec<&Point> = points.iter().filter(|p| p.errors > 0).collect();
    if failing.is_empty() {
        println!("\nno failed requests");
        return;
    }
    println!("\nfailed requests:");
    for p in failing {
        println!(
            "  {} {}: {} errors, first: {}",
            p.target,
            p.workload,
            p.errors,
            p.first_error.as_deref().unwrap_or("?")
        );
    }
}

fn write_json(
    args: &S3Args,
    path: &Path,
    disk: Option<&DiskBaseline>,
    targets: &[Target],
    rows: Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    let doc = json!({
        "bench": "s3",
        "settings": {
            "connections": args.connections, "threads": args.threads,
            "duration_s": args.duration_s, "duration_max_s": args.duration_max_s,
            "samples_min": args.samples_min, "warmup_s": args.warmup_s,
            "keys": args.keys, "fill_size_max": args.fill_size_max.0,
            "mixed_get_percent": args.mixed_get_percent,
            "payload": payload_description(args), "verify_full": args.verify_full,
        },
        "targets": targets.iter().map(|t| json!({"name": t.name(), "description": t.description})).collect::<Vec<_>>(),
        "disk": disk.map(DiskBaseline::to_json),
        "rows": rows,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    if path == Path::new("-") {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: S3Args,
    }

    fn parse(argv: &[&str]) -> S3Args {
        Cli::try_parse_from(std::iter::once("s3").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults_cover_every_workload_and_validate() {
        let args = parse(&[]);
        assert_eq!(args.workloads.len(), 7);
        assert_eq!(args.targets, vec![TargetName::Photon, TargetName::Garage]);
        assert_eq!(args.connections, 16);
        validate(&args).unwrap();
        assert_eq!(payload_for(&args, 4096), Payload::Sha256);
        assert_eq!(payload_for(&args, 1 << 20), Payload::Unsigned);
    }

    #[test]
    fn an_endpoint_needs_its_keys() {
        let ok = Cli::try_parse_from([
            "s3",
            "--endpoint",
            "http://127.0.0.1:1",
            "--access-key",
            "a",
            "--secret-key",
            "b",
        ]);
        assert!(ok.is_ok());
        assert!(Cli::try_parse_from(["s3", "--endpoint", "http://127.0.0.1:1"]).is_err());
    }

    fn point(target: &str, operation: Operation, size: u64, ops: u64, p99_us: u64) -> Point {
        Point {
            target: target.into(),
            workload: Workload { operation, size },
            keys: 1,
            completed: ops,
            ops: ops as f64,
            bytes: (ops * size) as f64,
            errors: 0,
            first_error: None,
            elapsed: Duration::from_secs(1),
            latency: Latency {
                p99_us,
                ..Latency::default()
            },
        }
    }

    #[test]
    fn ratios_compare_against_the_right_baseline() {
        let disk = DiskBaseline {
            dir: PathBuf::new(),
            file_bytes: 1000 << 20,
            block_bytes: 1 << 20,
            queue_depth: 8,
            random_queue_depth: 128,
            write_elapsed: Duration::from_secs(2),
            read_elapsed: Duration::from_secs(1),
            random_reads: 100_000,
            random_elapsed: Duration::from_secs(1),
            random_latency: Latency::default(),
        };
        let put = point("photon", Operation::Put, 1 << 20, 250, 10);
        let (r, what) = versus_disk(&put, &disk);
        assert!((r - 0.5).abs() < 1e-9 && what.contains("write"));
        let get = point("photon", Operation::Get, 4096, 50_000, 10);
        let (r, what) = versus_disk(&get, &disk);
        assert!((r - 0.5).abs() < 1e-9 && what.contains("randread"));
        let big = point("photon", Operation::Get, 64 << 20, 5, 10);
        assert!(versus_disk(&big, &disk).1.contains("seq read"));
        let garage = point("garage", Operation::Get, 4096, 25_000, 20);
        let points = vec![get.clone(), garage.clone()];
        assert_eq!(versus_garage(&get, &points), Some((2.0, 0.5)));
        assert_eq!(versus_garage(&garage, &points), None);
    }
}
