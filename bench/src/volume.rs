//! `photon bench volume`: a CoronaFS volume (NBD, served by `photon dev`)
//! beside the limits and the peer, measured in the same run with the same
//! load generator, fio.
//!
//! Targets: `raw` (fio's io_uring engine, O_DIRECT, on a file of the same
//! filesystem: the disk's limit), `nbdkit` (its memory plugin through fio's
//! nbd engine: the NBD protocol and client limit on this machine, no disk),
//! `qemu-nbd` (a raw file, `--cache=none --aio=io_uring`: the server a user
//! would pick) and `photon`. Every target is pre-filled with one sequential
//! 1 MiB write pass over the whole test area, so that reads hit written data
//! everywhere (a thin volume would answer holes from memory). Then every job
//! (4 KiB random reads and writes at QD1 and QD32, 1 MiB sequential reads and
//! writes by default) runs on each target in turn, so that a slow stretch of
//! the shared machine hits all of them.
//!
//! fio is the load generator of record: IOPS, bytes/s and the completion
//! latency (clat) percentiles come from its JSON, computed by its own
//! histograms, not from an hdrhistogram of ours.

mod fio;
mod target;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;

use self::fio::{Job, Measurement, RunSettings};
use self::target::{StartSettings, Stop, Target, TargetName};
use crate::child::WorkDir;
use crate::disk::ByteSize;

/// Largest test area (each target holds one; nbdkit holds it in memory).
pub const SIZE_BYTES_MAX: u64 = 64 << 30;
/// Longest measured time of one job.
pub const RUNTIME_S_MAX: u64 = 3600;
/// Longest ramp of one job.
pub const RAMP_S_MAX: u64 = 600;
/// Most jobs in one run.
pub const JOBS_MAX: usize = 64;
/// Goal of the issue: photon at least this many times qemu-nbd's IOPS.
pub const GOAL_VERSUS_QEMU_NBD: f64 = 1.5;
/// Goal of the issue: photon at least this fraction of the lower limit.
pub const GOAL_VERSUS_LIMIT: f64 = 0.85;

#[derive(Debug, Clone, Args)]
pub struct VolumeArgs {
    /// fio jobs, run in this order: PATTERN-SIZE-qdN with PATTERN one of
    /// randread, randwrite, read, write (sequential).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "randread-4k-qd1,randread-4k-qd32,randwrite-4k-qd1,randwrite-4k-qd32,\
                         read-1m-qd8,write-1m-qd8"
    )]
    pub jobs: Vec<Job>,
    /// Targets to measure, each job on each in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "raw,nbdkit,qemu-nbd,photon"
    )]
    pub targets: Vec<TargetName>,
    /// Size of the test area of every target (pre-filled, then used by every job).
    #[arg(long, default_value = "1g")]
    pub size: ByteSize,
    /// Measured seconds per job and target (fio --runtime).
    #[arg(long, default_value_t = 10)]
    pub runtime: u64,
    /// Unmeasured seconds before each (fio --ramp_time).
    #[arg(long, alias = "ramp_time", default_value_t = 2)]
    pub ramp_time: u64,
    /// A flush after every N writes of the write jobs (fio --fsync=N); 0: none.
    #[arg(long, default_value_t = 0)]
    pub fsync_every: u32,
    /// Name of the photon volume the benchmark creates.
    #[arg(long, default_value = "benchvol")]
    pub volume: String,
    /// An extra argument for the `photon dev` the benchmark starts (repeat it).
    #[arg(long = "photon-arg", allow_hyphen_values = true)]
    pub photon_args: Vec<String>,
    /// `engine.spin_before_park_us` for the photon target: a shard polls this
    /// long before it parks, which saves the wake-up of an idle vCPU per I/O at
    /// the cost of CPU the client could use (0: park at once, the engine's
    /// default and what `photon dev` does).
    #[arg(long, default_value_t = 0)]
    pub photon_spin_us: u64,
    /// The fio binary (3.x with the nbd engine, as Debian's).
    #[arg(long, default_value = "fio")]
    pub fio: PathBuf,
    /// The nbdkit binary.
    #[arg(long, default_value = "nbdkit")]
    pub nbdkit: PathBuf,
    /// The qemu-nbd binary.
    #[arg(long, default_value = "qemu-nbd")]
    pub qemu_nbd: PathBuf,
    /// Where the run's directory goes (removed at the end); a real disk.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write every row as JSON to this file (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One job on one target.
#[derive(Debug, Clone)]
struct Point {
    job: Job,
    target: TargetName,
    result: Result<Measurement, String>,
    /// The server's CPU time over the fio run (ramp included), % of one core.
    server_cpu_percent: Option<f64>,
}

impl Point {
    fn iops(&self) -> Option<f64> {
        self.result.as_ref().ok().map(|m| m.iops)
    }
}

/// A target that could not be started or filled.
struct Missing {
    target: TargetName,
    reason: String,
}

pub fn run(args: VolumeArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let stop = Stop::default();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.0.clone())
            .context("cannot install a signal handler")?;
    }
    let fio_version = fio::version(&args.fio)?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::create(&base, "volume")?;
    let (mut targets, mut missing) = start_targets(&args, &work.path, &stop)?;
    print_header(&args, &fio_version, &targets, &work.path);
    let fills = fill_targets(&args, &work.path, &mut targets, &mut missing, &stop)?;
    if targets.is_empty() {
        for m in &missing {
            println!("{} MISSING: {}", m.target.as_str(), m.reason);
        }
        bail!("no target could be started and filled");
    }
    let points = run_jobs(&args, &work.path, &mut targets, &stop)?;
    let rows = print_report(&args, &points, &missing);
    if let Some(path) = &args.json {
        let doc = json!({
            "bench": "volume",
            "load_generator": fio_version,
            "latency": "fio completion latency (clat) percentiles, from fio's own histograms",
            "cpus": cpus(),
            "settings": {
                "size_bytes": args.size.0, "runtime_s": args.runtime,
                "ramp_s": args.ramp_time, "fsync_every": args.fsync_every,
                "jobs": args.jobs.iter().map(Job::to_string).collect::<Vec<_>>(),
            },
            "targets": targets.iter().map(|t| json!({"name": t.name.as_str(),
                "description": t.description})).collect::<Vec<_>>(),
            "missing": missing.iter().map(|m| json!({"name": m.target.as_str(),
                "reason": m.reason})).collect::<Vec<_>>(),
            "fill": fills,
            "rows": rows,
        });
        write_json(path, &doc)?;
    }
    Ok(())
}

fn validate(args: &VolumeArgs) -> anyhow::Result<()> {
    let size = args.size.0;
    if !(fio::FILL_BLOCK_BYTES..=SIZE_BYTES_MAX).contains(&size)
        || !size.is_multiple_of(fio::FILL_BLOCK_BYTES)
    {
        bail!(
            "--size must be a multiple of 1 MiB up to {}",
            ByteSize(SIZE_BYTES_MAX)
        );
    }
    if args.runtime == 0 || args.runtime > RUNTIME_S_MAX {
        bail!("--runtime must be in 1..={RUNTIME_S_MAX} seconds");
    }
    if args.ramp_time > RAMP_S_MAX {
        bail!("--ramp-time must be at most {RAMP_S_MAX} seconds");
    }
    if args.jobs.is_empty() || args.jobs.len() > JOBS_MAX {
        bail!("--jobs must name 1 to {JOBS_MAX} jobs");
    }
    if let Some(job) = args
        .jobs
        .iter()
        .find(|j| !size.is_multiple_of(j.block_bytes))
    {
        bail!("--size must be a multiple of the block size of {job}");
    }
    if args.targets.is_empty() {
        bail!("--targets must name at least one");
    }
    if args.volume.is_empty()
        || !args
            .volume
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("--volume must be letters, digits, '-' or '_'");
    }
    Ok(())
}

/// Starts every target; one that fails is reported MISSING and the run goes
/// on with the others.
fn start_targets(
    args: &VolumeArgs,
    work: &Path,
    stop: &Stop,
) -> anyhow::Result<(Vec<Target>, Vec<Missing>)> {
    let settings = StartSettings {
        dir: work,
        size_bytes: args.size.0,
        nbdkit: &args.nbdkit,
        qemu_nbd: &args.qemu_nbd,
        volume: &args.volume,
        photon_args: &args.photon_args,
        photon_spin_us: args.photon_spin_us,
        stop,
    };
    let nbd_engine = fio::has_nbd_engine(&args.fio);
    let mut targets = Vec::new();
    let mut missing = Vec::new();
    let mut wanted = HashSet::new();
    for &name in &args.targets {
        if !wanted.insert(name) {
            continue;
        }
        stop.check()?;
        if name != TargetName::Raw && !nbd_engine {
            missing.push(Missing {
                target: name,
                reason: format!("{} has no nbd ioengine (libnbd)", args.fio.display()),
            });
            continue;
        }
        let started = Instant::now();
        match target::start(name, &settings) {
            Ok(t) => {
                eprintln!(
                    "{} up in {:.1} s",
                    name.as_str(),
                    started.elapsed().as_secs_f64()
                );
                targets.push(t);
            }
            Err(e) => {
                stop.check()?;
                eprintln!("{} MISSING: could not start it: {e:#}", name.as_str());
                missing.push(Missing {
                    target: name,
                    reason: format!("could not start it: {e:#}"),
                });
            }
        }
    }
    Ok((targets, missing))
}

fn flush_description(fsync_every: u32) -> String {
    match fsync_every {
        0 => "write jobs send no flush (as fio's default; the fill pass ends with one)".into(),
        n => format!("write jobs flush every {n} writes (fio --fsync={n})"),
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

fn print_header(args: &VolumeArgs, fio_version: &str, targets: &[Target], dir: &Path) {
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let jobs: Vec<String> = args.jobs.iter().map(Job::to_string).collect();
    let seconds = (args.runtime + args.ramp_time) as usize * args.jobs.len() * targets.len();
    println!(
        "photon bench volume: {}; {} over a {} area each, {} s per job after {} s ramp \
         (~{} s of jobs, plus one fill pass per target); {fio_version}; {} CPUs shared by fio \
         and every server; {}; scratch in {}",
        names.join(" vs "),
        jobs.join(","),
        ByteSize(args.size.0),
        args.runtime,
        args.ramp_time,
        seconds,
        cpus(),
        flush_description(args.fsync_every),
        dir.display()
    );
    for target in targets {
        println!("  {}: {}", target.name.as_str(), target.description);
    }
}

/// The pre-fill pass on every target; a target whose fill fails is dropped
/// (and reported MISSING). Returns the fill rates as JSON.
fn fill_targets(
    args: &VolumeArgs,
    work: &Path,
    targets: &mut Vec<Target>,
    missing: &mut Vec<Missing>,
    stop: &Stop,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut fills = Vec::new();
    let mut kept = Vec::new();
    for mut target in targets.drain(..) {
        let name = target.name.as_str();
        let started = Instant::now();
        let output = work.join(format!("fill-{name}.json"));
        let result = target.check_alive().and_then(|()| {
            let engine = target.engine()?;
            let argv = fio::fill_args(&engine, args.size.0, &output);
            let log = work.join(format!("fill-{name}.log"));
            let doc = fio::run(&args.fio, &argv, &output, log, fio::FILL_TIMEOUT, stop)?;
            fio::parse(&doc, true)
        });
        match result {
            Ok(m) => {
                let seconds = started.elapsed().as_secs_f64();
                eprintln!(
                    "  {name} filled {} in {seconds:.1} s ({:.0} MB/s by fio, end flush included \
                     in the wall time)",
                    ByteSize(args.size.0),
                    m.bytes_per_s / 1e6
                );
                fills.push(json!({"target": name, "wall_s": seconds,
                                  "bytes_per_s": m.bytes_per_s}));
                kept.push(target);
            }
            Err(e) => {
                stop.check()?;
                println!("{name} MISSING: the fill pass failed: {e:#}");
                missing.push(Missing {
                    target: target.name,
                    reason: format!("the fill pass failed: {e:#}"),
                });
            }
        }
    }
    *targets = kept;
    Ok(fills)
}

/// Every job on every target in turn. A failing run is recorded and the
/// run goes on; a target whose server died is skipped from then on.
fn run_jobs(
    args: &VolumeArgs,
    work: &Path,
    targets: &mut [Target],
    stop: &Stop,
) -> anyhow::Result<Vec<Point>> {
    let settings = RunSettings {
        size_bytes: args.size.0,
        runtime_s: args.runtime,
        ramp_s: args.ramp_time,
        fsync_every: args.fsync_every,
    };
    let timeout = Duration::from_secs(args.runtime + args.ramp_time) + fio::RUN_GRACE;
    let mut points = Vec::new();
    let mut dead: HashSet<TargetName> = HashSet::new();
    for (index, &job) in args.jobs.iter().enumerate() {
        for target in targets.iter_mut() {
            stop.check()?;
            let result = if dead.contains(&target.name) {
                Err("skipped: the server exited earlier".to_owned())
            } else if let Err(e) = target.check_alive() {
                dead.insert(target.name);
                Err(format!("{e:#}"))
            } else {
                let output = work.join(format!("{index}-{job}-{}.json", target.name.as_str()));
                measure(args, target, job, &settings, &output, timeout, stop)
            };
            let point = match result {
                Ok(point) => point,
                Err(e) => {
                    stop.check()?;
                    eprintln!("  {} {job}: FAILED: {e}", target.name.as_str());
                    Point {
                        job,
                        target: target.name,
                        result: Err(e),
                        server_cpu_percent: None,
                    }
                }
            };
            points.push(point);
        }
    }
    Ok(points)
}

fn measure(
    args: &VolumeArgs,
    target: &Target,
    job: Job,
    settings: &RunSettings,
    output: &Path,
    timeout: Duration,
    stop: &Stop,
) -> Result<Point, String> {
    let engine = target.engine().map_err(|e| format!("{e:#}"))?;
    let argv = fio::job_args(job, &engine, settings, output);
    let log = output.with_extension("log");
    let pid = target.server_pid();
    let cpu_before = pid.and_then(process_cpu_seconds);
    let started = Instant::now();
    let doc =
        fio::run(&args.fio, &argv, output, log, timeout, stop).map_err(|e| format!("{e:#}"))?;
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = pid.and_then(process_cpu_seconds);
    let measurement = fio::parse(&doc, job.pattern.writes()).map_err(|e| format!("{e:#}"))?;
    let server_cpu_percent = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) if wall > 0.0 => Some((b - a) / wall * 100.0),
        _ => None,
    };
    let m = &measurement;
    eprintln!(
        "  {} {job}: {:.0} IOPS, {:.1} MB/s, clat p50 {:.0} us, p99 {:.0} us, fio CPU {:.0}%{}",
        target.name.as_str(),
        m.iops,
        m.bytes_per_s / 1e6,
        m.clat_p50_us,
        m.clat_p99_us,
        m.fio_cpu_percent,
        server_cpu_percent.map_or(String::new(), |c| format!(", server CPU {c:.0}%"))
    );
    Ok(Point {
        job,
        target: target.name,
        result: Ok(measurement),
        server_cpu_percent,
    })
}

/// User plus system CPU seconds of a process (all its threads) so far.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5) (utime, stime); the slice starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system and touches no memory.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// The comparison of a photon point: against qemu-nbd, and against the
/// lower of the two limits (raw, nbdkit) measured for the same job.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ratios {
    versus_qemu_nbd: Option<f64>,
    /// The ratio and the limit it was taken against.
    versus_limit: Option<(f64, TargetName)>,
}

impl Ratios {
    fn of(point: &Point, points: &[Point]) -> Option<Self> {
        if point.target != TargetName::Photon {
            return None;
        }
        let iops = point.iops()?;
        let of = |name: TargetName| {
            points
                .iter()
                .find(|p| p.job == point.job && p.target == name)
                .and_then(Point::iops)
                .filter(|&v| v > 0.0)
        };
        let limit = [TargetName::Raw, TargetName::Nbdkit]
            .into_iter()
            .filter_map(|name| of(name).map(|v| (v, name)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        Some(Self {
            versus_qemu_nbd: of(TargetName::QemuNbd).map(|q| iops / q),
            versus_limit: limit.map(|(v, name)| (iops / v, name)),
        })
    }

    /// Whether both goals are met; None when a baseline is missing.
    fn goal_met(&self) -> Option<bool> {
        let qemu = self.versus_qemu_nbd?;
        let (limit, _) = self.versus_limit?;
        Some(qemu >= GOAL_VERSUS_QEMU_NBD && limit >= GOAL_VERSUS_LIMIT)
    }
}

/// Prints the table (markdown) and the failures; returns the rows as JSON.
fn print_report(
    args: &VolumeArgs,
    points: &[Point],
    missing: &[Missing],
) -> Vec<serde_json::Value> {
    println!(
        "\n== block volumes, {} area, fio {} s per job after {} s ramp; IOPS, MB/s and clat \
         percentiles from fio's JSON (fio's own histograms); CPU in % of one core, server CPU \
         over the whole fio run; photon ratios are of IOPS; goal: >= {GOAL_VERSUS_QEMU_NBD}x \
         qemu-nbd and >= {GOAL_VERSUS_LIMIT}x min(raw, nbdkit) ==\n",
        ByteSize(args.size.0),
        args.runtime,
        args.ramp_time
    );
    let header = [
        "job",
        "target",
        "IOPS",
        "MB/s",
        "p50 us",
        "p99 us",
        "p999 us",
        "fio CPU%",
        "server CPU%",
        "photon/qemu-nbd",
        "photon/min(raw,nbdkit)",
        "goal",
    ];
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    for point in points {
        let ratios = Ratios::of(point, points);
        cells.push(row_cells(point, ratios.as_ref()));
        rows.push(row_json(point, ratios.as_ref()));
    }
    print!("{}", markdown_table(&header, &cells));
    for m in missing {
        println!("\n{} MISSING: {}", m.target.as_str(), m.reason);
    }
    print_goals(points);
    let photon_listed = missing.iter().any(|m| m.target == TargetName::Photon);
    if !photon_listed && !points.iter().any(|p| p.target == TargetName::Photon) {
        println!("\nphoton MISSING: not measured, so neither are the ratios and the goal");
    }
    let failed: Vec<&Point> = points.iter().filter(|p| p.result.is_err()).collect();
    if failed.is_empty() {
        println!("\nno failed runs");
    } else {
        println!("\nfailed runs:");
        for p in failed {
            let error = p.result.as_ref().err().map_or("", String::as_str);
            println!("  {} {}: {error}", p.target.as_str(), p.job);
        }
    }
    rows
}

/// Per job, the IOPS photon needs to meet the goal, from the baselines of
/// this run, and what it did.
fn print_goals(points: &[Point]) {
    let mut jobs: Vec<Job> = Vec::new();
    for p in points {
        if !jobs.contains(&p.job) {
            jobs.push(p.job);
        }
    }
    println!(
        "\ngoal per job: photon IOPS >= max({GOAL_VERSUS_QEMU_NBD} x qemu-nbd, \
         {GOAL_VERSUS_LIMIT} x min(raw, nbdkit)) of this run"
    );
    for job in jobs {
        let of = |name: TargetName| {
            points
                .iter()
                .find(|p| p.job == job && p.target == name)
                .and_then(Point::iops)
        };
        let qemu = of(TargetName::QemuNbd).map(|v| v * GOAL_VERSUS_QEMU_NBD);
        let limit = [of(TargetName::Raw), of(TargetName::Nbdkit)]
            .into_iter()
            .flatten()
            .min_by(f64::total_cmp)
            .map(|v| v * GOAL_VERSUS_LIMIT);
        let (Some(qemu), Some(limit)) = (qemu, limit) else {
            println!("  {job}: a baseline is missing");
            continue;
        };
        let needed = qemu.max(limit);
        let photon = of(TargetName::Photon).map_or("photon not measured".to_owned(), |v| {
            format!("photon {v:.0} ({:.0}% of it)", v / needed * 100.0)
        });
        println!(
            "  {job}: needs {needed:.0} IOPS (qemu-nbd x {GOAL_VERSUS_QEMU_NBD}: {qemu:.0}, \
             min limit x {GOAL_VERSUS_LIMIT}: {limit:.0}); {photon}"
        );
    }
}

fn row_cells(point: &Point, ratios: Option<&Ratios>) -> Vec<String> {
    let mut cells = vec![point.job.to_string(), point.target.as_str().to_owned()];
    match &point.result {
        Ok(m) => cells.extend([
            format!("{:.0}", m.iops),
            format!("{:.1}", m.bytes_per_s / 1e6),
            format!("{:.0}", m.clat_p50_us),
            format!("{:.0}", m.clat_p99_us),
            format!("{:.0}", m.clat_p999_us),
            format!("{:.0}", m.fio_cpu_percent),
            point
                .server_cpu_percent
                .map_or("-".into(), |c| format!("{c:.0}")),
        ]),
        Err(_) => {
            cells.push("FAILED".into());
            cells.extend(std::iter::repeat_n("-".to_owned(), 6));
        }
    }
    match ratios {
        Some(r) => cells.extend([
            r.versus_qemu_nbd
                .map_or("missing".into(), |v| format!("{v:.2}x")),
            r.versus_limit.map_or("missing".into(), |(v, of)| {
                format!("{v:.2}x ({})", of.as_str())
            }),
            match r.goal_met() {
                Some(true) => "met".into(),
                Some(false) => "not met".into(),
                None => "?".into(),
            },
        ]),
        None => cells.extend(std::iter::repeat_n(String::new(), 3)),
    }
    cells
}

fn row_json(point: &Point, ratios: Option<&Ratios>) -> serde_json::Value {
    json!({
        "job": point.job.to_string(),
        "pattern": point.job.pattern.as_str(),
        "block_bytes": point.job.block_bytes,
        "queue_depth": point.job.queue_depth,
        "target": point.target.as_str(),
        "result": point.result.as_ref().ok().map(Measurement::to_json),
        "error": point.result.as_ref().err(),
        "server_cpu_percent": point.server_cpu_percent,
        "photon_vs_qemu_nbd_iops": ratios.and_then(|r| r.versus_qemu_nbd),
        "photon_vs_limit_iops": ratios.and_then(|r| r.versus_limit).map(|(v, _)| v),
        "limit": ratios.and_then(|r| r.versus_limit).map(|(_, of)| of.as_str()),
        "goal_met": ratios.and_then(Ratios::goal_met),
    })
}

/// A markdown table with aligned columns (readable as text, pastes into docs).
fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .chain([header[c].len(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut text = line(header.to_vec());
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let _ = writeln!(text, "|-{}-|", rule.join("-|-"));
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

fn write_json(path: &Path, doc: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(doc)?;
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
        args: VolumeArgs,
    }

    fn parse(argv: &[&str]) -> VolumeArgs {
        Cli::try_parse_from(std::iter::once("volume").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults_cover_the_issue_and_validate() {
        let args = parse(&[]);
        assert_eq!(args.jobs.len(), 6);
        assert_eq!(args.jobs[1].to_string(), "randread-4k-qd32");
        assert_eq!(
            args.targets,
            vec![
                TargetName::Raw,
                TargetName::Nbdkit,
                TargetName::QemuNbd,
                TargetName::Photon
            ]
        );
        assert_eq!(args.size.0, 1 << 30);
        assert_eq!((args.runtime, args.ramp_time), (10, 2));
        validate(&args).unwrap();
        let short = parse(&[
            "--targets",
            "raw,qemu-nbd",
            "--ramp_time",
            "1",
            "--size",
            "64m",
        ]);
        assert_eq!(short.ramp_time, 1);
        validate(&short).unwrap();
        assert!(validate(&parse(&["--size", "1000k"])).is_err());
        assert!(validate(&parse(&["--runtime", "0"])).is_err());
    }

    fn point(target: TargetName, iops: f64) -> Point {
        Point {
            job: "randread-4k-qd32".parse().unwrap(),
            target,
            result: Ok(Measurement {
                iops,
                ..Measurement::default()
            }),
            server_cpu_percent: None,
        }
    }

    #[test]
    fn ratios_take_the_lower_limit() {
        let points = vec![
            point(TargetName::Raw, 85_000.0),
            point(TargetName::Nbdkit, 66_000.0),
            point(TargetName::QemuNbd, 36_000.0),
            point(TargetName::Photon, 57_000.0),
        ];
        let r = Ratios::of(&points[3], &points).unwrap();
        assert!((r.versus_qemu_nbd.unwrap() - 57.0 / 36.0).abs() < 1e-9);
        let (limit, of) = r.versus_limit.unwrap();
        assert_eq!(of, TargetName::Nbdkit);
        assert!((limit - 57.0 / 66.0).abs() < 1e-9);
        assert_eq!(r.goal_met(), Some(true));
        assert_eq!(Ratios::of(&points[0], &points), None);
        let without_qemu = &points[..2];
        let mut all = without_qemu.to_vec();
        all.push(points[3].clone());
        let r = Ratios::of(&points[3], &all).unwrap();
        assert_eq!(r.versus_qemu_nbd, None);
        assert_eq!(r.goal_met(), None);
        let slow = point(TargetName::Photon, 40_000.0);
        assert_eq!(Ratios::of(&slow, &points).unwrap().goal_met(), Some(false));
    }

    #[test]
    fn markdown_tables_align() {
        let text = markdown_table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(text, "| a   | bb  |\n|-----|-----|\n| xyz | 1   |\n");
    }

    #[test]
    fn this_process_has_cpu_time() {
        assert!(process_cpu_seconds(std::process::id()).is_some());
    }
}
