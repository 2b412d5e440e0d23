//! `photon bench metrics`: NightLight's remote-write ingestion, its bytes
//! per sample on disk, its dashboard query latency and its memory per
//! active series, beside Prometheus' remote-write receiver and
//! VictoriaMetrics measured in the same run with the same data.
//!
//! The data (bench/src/metrics/series.rs): N simulated hosts with 100
//! node-exporter series each, R scrapes 15 s apart ending now, encoded as
//! Prometheus' remote write 1.0 sends it (one `TimeSeries` per sample, at
//! most `--batch-samples` per request, series spread over `--connections`
//! shards that keep within `--lag-rounds` scrapes of each other), all
//! before the clock starts. Every target gets the same bytes.
//!
//! Targets run one after another, each alone on the machine: start it,
//! read its idle RSS, send everything (closed loop, one request in flight
//! per connection: samples/s is the server's ingestion rate, latency is per
//! request), wait until its files stop changing (VictoriaMetrics is asked
//! to flush and merge first), read its RSS, CPU time and data directory,
//! run the dashboard's range queries, stop it.
//!
//! NightLight and Prometheus get the same block range (`--block-minutes`,
//! default 20, instead of their 2 h) so that an hour of data is cut into
//! blocks at all; "compacted bytes per sample" is their block files over
//! the samples in them, and VictoriaMetrics' whole merged store over every
//! sample. "All bytes per sample" counts every file, WAL and head chunks
//! included.

mod http;
mod series;
mod target;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;

use self::http::{Ingested, Panel, PanelResult};
use self::series::{Dataset, Shape, SCRAPE_INTERVAL_MS, SERIES_PER_HOST};
use self::target::{Disk, Kind, Settings, Target};
use crate::child::{Stop, WorkDir};
use crate::report::{Latency, Table};

/// Most simulated hosts.
pub const HOSTS_MAX: usize = 100_000;
/// Most samples one run sends to each target (the encoded bodies are held
/// in memory, ~20 bytes a sample).
pub const SAMPLES_MAX: u64 = 200_000_000;
/// Most remote-write connections.
pub const CONNECTIONS_MAX: usize = 256;
/// Largest request, samples.
pub const BATCH_SAMPLES_MAX: usize = 100_000;
/// Most repeats of one query.
pub const QUERY_REPEATS_MAX: u32 = 1000;
/// Block range bounds, minutes (NightLight's own limit is 24 h).
pub const BLOCK_MINUTES_MAX: u64 = 24 * 60;
/// Wait after a server is up before its idle RSS is read.
pub const IDLE_SETTLE: Duration = Duration::from_secs(2);
/// Goals of the issue.
pub const GOAL_INGEST_VS_PROMETHEUS: f64 = 3.0;
pub const GOAL_INGEST_VS_VICTORIA: f64 = 1.0;
pub const GOAL_BYTES_PER_SAMPLE_VS_VICTORIA: f64 = 1.0;

#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Simulated hosts, each with 100 node-exporter series.
    #[arg(long, default_value_t = 200)]
    pub hosts: usize,
    /// Scrapes of every host, 15 s of simulated time apart, the last one now.
    #[arg(long, default_value_t = 240)]
    pub rounds: usize,
    /// Remote-write connections (Prometheus' shards), one request in flight each.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Samples per request (Prometheus' max_samples_per_send).
    #[arg(long, default_value_t = 2000)]
    pub batch_samples: usize,
    /// How many scrapes a connection may run ahead of the slowest one.
    #[arg(long, default_value_t = 4)]
    pub lag_rounds: u32,
    /// Block range of NightLight and Prometheus, minutes (both default to 120).
    #[arg(long, default_value_t = 20)]
    pub block_minutes: u64,
    /// Measured repeats of each dashboard query (after one unmeasured).
    #[arg(long, default_value_t = 10)]
    pub query_repeats: u32,
    /// Step of the range queries, seconds.
    #[arg(long, default_value_t = 60)]
    pub query_step_s: u64,
    /// A request without a reply after this long counts as an error.
    #[arg(long, default_value_t = 60.0)]
    pub request_timeout_s: f64,
    /// Servers to measure, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "nightlight,prometheus,victoriametrics"
    )]
    pub targets: Vec<Kind>,
    /// Measure NightLight only (no Prometheus, no VictoriaMetrics).
    #[arg(long)]
    pub skip_peers: bool,
    /// The Prometheus binary (PATH is searched for a bare name).
    #[arg(long, default_value = "prometheus")]
    pub prometheus: PathBuf,
    /// The VictoriaMetrics binary (Debian package `victoria-metrics`).
    #[arg(long, default_value = "victoria-metrics")]
    pub victoria_metrics: PathBuf,
    /// An extra argument for the `photon dev` the benchmark starts (repeat it).
    #[arg(long = "photon-arg", allow_hyphen_values = true)]
    pub photon_args: Vec<String>,
    /// Threads that encode the requests before the run (default: the CPUs).
    #[arg(long)]
    pub encode_threads: Option<usize>,
    /// Where the run's directory goes (removed at the end unless --keep).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the run's directory (every server's data and log).
    #[arg(long)]
    pub keep: bool,
    /// Also write the results as JSON to this file (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Everything measured of one target.
#[derive(Debug)]
struct Outcome {
    kind: Kind,
    description: String,
    ingested: Ingested,
    latency: Latency,
    cpu_s: Option<f64>,
    settle: Duration,
    rss_idle_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    disk: Disk,
    panels: Vec<PanelResult>,
}

impl Outcome {
    fn samples_per_s(&self) -> f64 {
        self.ingested.samples as f64 / self.ingested.elapsed.as_secs_f64().max(1e-9)
    }

    fn bytes_per_sample_all(&self) -> Option<f64> {
        (self.ingested.samples > 0)
            .then(|| self.disk.total_bytes as f64 / self.ingested.samples as f64)
    }

    fn bytes_per_sample_compacted(&self) -> Option<f64> {
        (self.disk.compacted_samples > 0)
            .then(|| self.disk.compacted_bytes as f64 / self.disk.compacted_samples as f64)
    }

    fn bytes_per_series(&self, series: usize) -> Option<f64> {
        let (idle, after) = (self.rss_idle_kib?, self.rss_after_kib?);
        Some((after as f64 - idle as f64) * 1024.0 / series as f64)
    }
}

pub fn run(args: MetricsArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let stop = Stop::install()?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::create(&base, "metrics")?;
    let shape = Shape {
        hosts: args.hosts,
        rounds: args.rounds,
        connections: args.connections,
        batch_samples: args.batch_samples,
        // The last scrape of the last host lands at most one interval ago.
        start_ms: now_ms() - (args.rounds as i64 + 1) * SCRAPE_INTERVAL_MS,
    };
    let kinds = wanted_targets(&args);
    let encode_started = Instant::now();
    let threads = args.encode_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let data = series::build(shape, threads);
    print_header(&args, &data, encode_started.elapsed(), &work.path);
    let settings = Settings {
        block_minutes: args.block_minutes,
        photon_args: args.photon_args.clone(),
        prometheus: args.prometheus.clone(),
        victoria_metrics: args.victoria_metrics.clone(),
    };
    let panels = panels();
    let mut outcomes = Vec::new();
    for kind in kinds {
        stop.check()?;
        let Some(target) = start(kind, &settings, &work.path, &stop)? else {
            continue;
        };
        outcomes.push(measure(&args, target, &data, &panels, &stop)?);
    }
    if outcomes.is_empty() {
        bail!("no target could be measured");
    }
    let doc = report(&args, &data, &panels, &outcomes);
    if let Some(path) = &args.json {
        write_json(path, &doc)?;
    }
    if args.keep {
        println!("\nkept: {}", work.path.display());
        std::mem::forget(work);
    }
    Ok(())
}

fn validate(args: &MetricsArgs) -> anyhow::Result<()> {
    if args.hosts == 0 || args.hosts > HOSTS_MAX {
        bail!("--hosts must be in 1..={HOSTS_MAX}");
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let samples = (args.hosts * SERIES_PER_HOST) as u64 * args.rounds as u64;
    if samples > SAMPLES_MAX {
        bail!("--hosts x 100 x --rounds = {samples} samples, over {SAMPLES_MAX}");
    }
    if args.connections == 0 || args.connections > CONNECTIONS_MAX {
        bail!("--connections must be in 1..={CONNECTIONS_MAX}");
    }
    if args.batch_samples == 0 || args.batch_samples > BATCH_SAMPLES_MAX {
        bail!("--batch-samples must be in 1..={BATCH_SAMPLES_MAX}");
    }
    if args.block_minutes == 0 || args.block_minutes > BLOCK_MINUTES_MAX {
        bail!("--block-minutes must be in 1..={BLOCK_MINUTES_MAX}");
    }
    if args.query_repeats == 0 || args.query_repeats > QUERY_REPEATS_MAX {
        bail!("--query-repeats must be in 1..={QUERY_REPEATS_MAX}");
    }
    if args.query_step_s == 0 {
        bail!("--query-step-s must be at least 1");
    }
    if !(args.request_timeout_s > 0.0 && args.request_timeout_s <= 3600.0) {
        bail!("--request-timeout-s must be in (0, 3600]");
    }
    if args.encode_threads == Some(0) {
        bail!("--encode-threads must be at least 1");
    }
    if args.targets.is_empty() {
        bail!("--targets must name at least one");
    }
    Ok(())
}

fn wanted_targets(args: &MetricsArgs) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = Vec::new();
    for &kind in &args.targets {
        if kinds.contains(&kind) || (args.skip_peers && kind != Kind::Nightlight) {
            continue;
        }
        kinds.push(kind);
    }
    if args.skip_peers {
        println!("--skip-peers: NightLight only, no Prometheus or VictoriaMetrics baseline");
    }
    kinds
}

/// The dashboard: panels of Grafana's "Node Exporter Full" kind.
fn panels() -> Vec<Panel> {
    let host = series::instance(0);
    vec![
        Panel {
            name: "cpu by mode, all hosts",
            expr: "sum by (mode) (rate(node_cpu_seconds_total[5m]))".into(),
        },
        Panel {
            name: "memory available ratio",
            expr: "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes".into(),
        },
        Panel {
            name: "network rx top 5",
            expr: "topk(5, rate(node_network_receive_bytes_total[5m]))".into(),
        },
        Panel {
            name: "disk writes by host",
            expr: "sum by (instance) (rate(node_disk_written_bytes_total[5m]))".into(),
        },
        Panel {
            name: "root fs used ratio",
            expr: "1 - node_filesystem_avail_bytes{mountpoint=\"/\"} / \
                   node_filesystem_size_bytes{mountpoint=\"/\"}"
                .into(),
        },
        Panel {
            name: "one host's cpu",
            expr: format!(
                "sum by (mode) (rate(node_cpu_seconds_total{{instance=\"{host}\",mode!=\"idle\"}}[5m]))"
            ),
        },
    ]
}

/// Starts one target; a peer whose binary is missing is reported and skipped.
fn start(
    kind: Kind,
    settings: &Settings,
    work: &Path,
    stop: &Stop,
) -> anyhow::Result<Option<Target>> {
    let started = Instant::now();
    let dir = work.join(kind.as_str());
    let target = match kind {
        Kind::Nightlight => target::start_nightlight(&dir, settings, stop)?,
        Kind::Prometheus => {
            let Some(binary) = target::find_binary(&settings.prometheus) else {
                println!(
                    "prometheus MISSING: no {} on PATH (apt-get install prometheus); the \
                     comparison with Prometheus is not made",
                    settings.prometheus.display()
                );
                return Ok(None);
            };
            target::start_prometheus(&binary, &dir, settings, stop)?
        }
        Kind::Victoriametrics => {
            let Some(binary) = target::find_binary(&settings.victoria_metrics) else {
                println!(
                    "victoriametrics MISSING: no {} on PATH (apt-get install -y \
                     --no-install-recommends victoria-metrics); the comparison with \
                     VictoriaMetrics is not made",
                    settings.victoria_metrics.display()
                );
                return Ok(None);
            };
            target::start_victoria_metrics(&binary, &dir, stop)?
        }
    };
    eprintln!(
        "{} up in {:.1} s",
        target.name(),
        started.elapsed().as_secs_f64()
    );
    println!("  {}: {}", target.name(), target.description);
    Ok(Some(target))
}

/// Ingests, settles, measures and queries one target, then stops it.
fn measure(
    args: &MetricsArgs,
    mut target: Target,
    data: &Dataset,
    panels: &[Panel],
    stop: &Stop,
) -> anyhow::Result<Outcome> {
    std::thread::sleep(IDLE_SETTLE);
    let pid = target.pid();
    let rss_idle_kib = target::status_kib(pid, "VmRSS");
    let cpu_before = target::cpu_seconds(pid);
    let timeout = Duration::from_secs_f64(args.request_timeout_s);
    let ingested = http::ingest(&target.server, data, args.lag_rounds, timeout, stop)?;
    let cpu_s = target::cpu_seconds(pid).zip(cpu_before).map(|(a, b)| a - b);
    target.process.check_alive()?;
    let latency = Latency::from_histogram(&ingested.histogram);
    eprintln!(
        "  {} ingested {} samples in {:.1} s: {:.0} samples/s, {}, {} errors",
        target.name(),
        ingested.samples,
        ingested.elapsed.as_secs_f64(),
        ingested.samples as f64 / ingested.elapsed.as_secs_f64(),
        latency,
        ingested.errors
    );
    let settle = target::settle(&mut target, stop)?;
    let rss_after_kib = target::status_kib(pid, "VmRSS");
    let disk = target::disk(&target, ingested.samples)?;
    eprintln!(
        "  {} settled in {:.1} s: {:.1} MB on disk, RSS {} -> {} KiB",
        target.name(),
        settle.as_secs_f64(),
        disk.total_bytes as f64 / 1e6,
        rss_idle_kib.unwrap_or(0),
        rss_after_kib.unwrap_or(0)
    );
    let range = (data.shape.start_ms, data.shape.end_ms());
    let panel_results = http::run_panels(
        &target.server,
        panels,
        range,
        args.query_step_s,
        args.query_repeats,
        timeout,
    )?;
    target.process.check_alive()?;
    Ok(Outcome {
        kind: target.kind,
        description: target.description.clone(),
        ingested,
        latency,
        cpu_s,
        settle,
        rss_idle_kib,
        rss_after_kib,
        disk,
        panels: panel_results,
    })
}

fn print_header(args: &MetricsArgs, data: &Dataset, encode: Duration, dir: &Path) {
    let shape = &data.shape;
    let requests: usize = data.connections.iter().map(Vec::len).sum();
    println!(
        "photon bench metrics: {} hosts x {SERIES_PER_HOST} node-exporter series = {} series, \
         {} scrapes 15 s apart ({:.0} min of data ending now) = {} samples; remote write 1.0 \
         over {} connections, {} samples per request: {requests} requests, {:.1} MB of \
         snappy protobuf ({:.1} bytes/sample on the wire), encoded in {:.1} s before the run; \
         block range {} min; scratch in {}",
        shape.hosts,
        shape.series(),
        shape.rounds,
        (shape.rounds as i64 * SCRAPE_INTERVAL_MS) as f64 / 60_000.0,
        shape.samples(),
        shape.connections,
        shape.batch_samples,
        data.body_bytes as f64 / 1e6,
        data.body_bytes as f64 / shape.samples() as f64,
        encode.as_secs_f64(),
        args.block_minutes,
        dir.display()
    );
}

/// Prints every table, the ratios and the goals; returns the JSON document.
fn report(
    args: &MetricsArgs,
    data: &Dataset,
    panels: &[Panel],
    outcomes: &[Outcome],
) -> serde_json::Value {
    let find = |kind: Kind| outcomes.iter().find(|o| o.kind == kind);
    let (prometheus, victoria) = (find(Kind::Prometheus), find(Kind::Victoriametrics));
    print_ingestion(args, outcomes, prometheus, victoria);
    print_storage(data, outcomes);
    print_queries(args, panels, outcomes);
    print_errors(panels, outcomes);
    let goals = print_goals(find(Kind::Nightlight), prometheus, victoria);
    json!({
        "bench": "metrics",
        "settings": {
            "hosts": args.hosts, "series_per_host": SERIES_PER_HOST, "rounds": args.rounds,
            "scrape_interval_ms": SCRAPE_INTERVAL_MS, "connections": args.connections,
            "batch_samples": args.batch_samples, "lag_rounds": args.lag_rounds,
            "block_minutes": args.block_minutes, "query_repeats": args.query_repeats,
            "query_step_s": args.query_step_s, "samples": data.shape.samples(),
            "series": data.shape.series(), "wire_bytes": data.body_bytes,
            "start_ms": data.shape.start_ms, "end_ms": data.shape.end_ms(),
        },
        "targets": outcomes.iter().map(|o| outcome_json(o, panels, data.shape.series())).collect::<Vec<_>>(),
        "goals": goals,
    })
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn print_ingestion(
    args: &MetricsArgs,
    outcomes: &[Outcome],
    prometheus: Option<&Outcome>,
    victoria: Option<&Outcome>,
) {
    println!(
        "\n== remote-write ingestion: {} connections, one request of {} samples in flight on \
         each; latency per request; server CPU = user+system of its process during ingestion ==",
        args.connections, args.batch_samples
    );
    let mut table = Table::new(&[
        "target",
        "samples",
        "requests",
        "errors",
        "s",
        "samples/s",
        "p50 us",
        "p99 us",
        "p999 us",
        "max us",
        "server CPU s",
        "CPU us/1k samples",
        "vs prometheus",
        "vs victoriametrics",
    ]);
    for o in outcomes {
        let per_k = o
            .cpu_s
            .filter(|_| o.ingested.samples > 0)
            .map_or("-".into(), |c| {
                format!("{:.1}", c * 1e9 / o.ingested.samples as f64)
            });
        table.row(vec![
            o.kind.as_str().into(),
            o.ingested.samples.to_string(),
            o.ingested.requests.to_string(),
            o.ingested.errors.to_string(),
            format!("{:.2}", o.ingested.elapsed.as_secs_f64()),
            format!("{:.0}", o.samples_per_s()),
            o.latency.p50_us.to_string(),
            o.latency.p99_us.to_string(),
            o.latency.p999_us.to_string(),
            o.latency.max_us.to_string(),
            o.cpu_s.map_or("-".into(), |c| format!("{c:.1}")),
            per_k,
            ratio_cell(prometheus.and_then(|p| ratio(o.samples_per_s(), p.samples_per_s()))),
            ratio_cell(victoria.and_then(|v| ratio(o.samples_per_s(), v.samples_per_s()))),
        ]);
    }
    print!("{table}");
}

fn print_storage(data: &Dataset, outcomes: &[Outcome]) {
    let series = data.shape.series();
    println!(
        "\n== storage and memory after ingestion, once the files stopped changing for {} s: \
         all = every file of the data dir / samples stored; compacted = blocks (nightlight, \
         prometheus: their files / the samples in them) or the merged store (victoriametrics); \
         memory per series = (RSS after - RSS idle) / {series} active series ==",
        target::SETTLE_QUIET.as_secs()
    );
    let mut table = Table::new(&[
        "target",
        "settle s",
        "files",
        "all MB",
        "all B/sample",
        "compacted MB",
        "compacted samples",
        "compacted B/sample",
        "RSS idle MiB",
        "RSS after MiB",
        "B/series",
    ]);
    let mib = |kib: Option<u64>| kib.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    for o in outcomes {
        table.row(vec![
            o.kind.as_str().into(),
            format!("{:.1}", o.settle.as_secs_f64()),
            o.disk.files.to_string(),
            format!("{:.2}", o.disk.total_bytes as f64 / 1e6),
            o.bytes_per_sample_all()
                .map_or("-".into(), |b| format!("{b:.2}")),
            format!("{:.2}", o.disk.compacted_bytes as f64 / 1e6),
            o.disk.compacted_samples.to_string(),
            o.bytes_per_sample_compacted()
                .map_or("-".into(), |b| format!("{b:.2}")),
            mib(o.rss_idle_kib),
            mib(o.rss_after_kib),
            o.bytes_per_series(series)
                .map_or("-".into(), |b| format!("{b:.0}")),
        ]);
    }
    print!("{table}");
    for o in outcomes {
        println!("  {} compacted: {}", o.kind.as_str(), o.disk.what);
    }
}

fn print_queries(args: &MetricsArgs, panels: &[Panel], outcomes: &[Outcome]) {
    println!(
        "\n== dashboard range queries over the whole data set, step {} s, each run once \
         unmeasured then {} times, one after another on one connection ==",
        args.query_step_s, args.query_repeats
    );
    let mut table = Table::new(&[
        "panel",
        "target",
        "series",
        "points",
        "p50 us",
        "p99 us",
        "max us",
        "errors",
        "p50 vs prometheus",
        "p50 vs victoriametrics",
    ]);
    for (i, panel) in panels.iter().enumerate() {
        let p50_of = |kind: Kind| {
            outcomes
                .iter()
                .find(|o| o.kind == kind)
                .map(|o| Latency::from_histogram(&o.panels[i].histogram).p50_us as f64)
        };
        for o in outcomes {
            let result = &o.panels[i];
            let latency = Latency::from_histogram(&result.histogram);
            let p50 = latency.p50_us as f64;
            table.row(vec![
                panel.name.into(),
                o.kind.as_str().into(),
                result.series.to_string(),
                result.points.to_string(),
                latency.p50_us.to_string(),
                latency.p99_us.to_string(),
                latency.max_us.to_string(),
                result.errors.to_string(),
                ratio_cell(p50_of(Kind::Prometheus).and_then(|p| ratio(p50, p))),
                ratio_cell(p50_of(Kind::Victoriametrics).and_then(|v| ratio(p50, v))),
            ]);
        }
    }
    print!("{table}");
    for panel in panels {
        println!("  {}: {}", panel.name, panel.expr);
    }
}

fn print_errors(panels: &[Panel], outcomes: &[Outcome]) {
    let mut any = false;
    for o in outcomes {
        if let Some(e) = &o.ingested.first_error {
            any = true;
            println!(
                "{} remote write: {} failed requests, first: {e}",
                o.kind.as_str(),
                o.ingested.errors
            );
        }
        for (panel, result) in panels.iter().zip(&o.panels) {
            if let Some(e) = &result.first_error {
                any = true;
                println!(
                    "{} query {:?}: {} errors, first: {e}",
                    o.kind.as_str(),
                    panel.name,
                    result.errors
                );
            }
        }
    }
    if !any {
        println!("\nno failed requests");
    }
}

fn print_goals(
    nightlight: Option<&Outcome>,
    prometheus: Option<&Outcome>,
    victoria: Option<&Outcome>,
) -> serde_json::Value {
    let Some(n) = nightlight else {
        println!("\ngoals: nightlight was not measured");
        return json!(null);
    };
    println!();
    let verdict = |r: Option<f64>, goal: f64, at_least: bool| -> (String, Option<bool>) {
        match r {
            None => ("missing".into(), None),
            Some(_) if n.ingested.errors > 0 => {
                ("NOT met (nightlight had errors)".into(), Some(false))
            }
            Some(r) if (at_least && r >= goal) || (!at_least && r <= goal) => {
                (format!("{r:.2}x, met"), Some(true))
            }
            Some(r) => (format!("{r:.2}x, NOT met"), Some(false)),
        }
    };
    let vs_prometheus = prometheus.and_then(|p| ratio(n.samples_per_s(), p.samples_per_s()));
    let vs_victoria = victoria.and_then(|v| ratio(n.samples_per_s(), v.samples_per_s()));
    let bytes_vs_victoria = victoria.and_then(|v| {
        ratio(
            n.bytes_per_sample_compacted()?,
            v.bytes_per_sample_compacted()?,
        )
    });
    let lines = [
        (
            "ingestion samples/s nightlight/prometheus",
            vs_prometheus,
            GOAL_INGEST_VS_PROMETHEUS,
            true,
        ),
        (
            "ingestion samples/s nightlight/victoriametrics",
            vs_victoria,
            GOAL_INGEST_VS_VICTORIA,
            true,
        ),
        (
            "compacted bytes/sample nightlight/victoriametrics",
            bytes_vs_victoria,
            GOAL_BYTES_PER_SAMPLE_VS_VICTORIA,
            false,
        ),
    ];
    let mut out = Vec::new();
    for (what, r, goal, at_least) in lines {
        let (text, met) = verdict(r, goal, at_least);
        let sign = if at_least { ">=" } else { "<=" };
        println!("goal {what} {sign} {goal}x: {text}");
        out.push(json!({"what": what, "ratio": r, "goal": goal, "at_least": at_least, "met": met}));
    }
    json!(out)
}

fn outcome_json(o: &Outcome, panels: &[Panel], series: usize) -> serde_json::Value {
    json!({
        "target": o.kind.as_str(),
        "description": o.description,
        "ingest": {
            "samples": o.ingested.samples, "requests": o.ingested.requests,
            "errors": o.ingested.errors, "first_error": o.ingested.first_error,
            "elapsed_s": o.ingested.elapsed.as_secs_f64(), "samples_per_s": o.samples_per_s(),
            "latency_us": o.latency.to_json(), "server_cpu_s": o.cpu_s,
        },
        "settle_s": o.settle.as_secs_f64(),
        "disk": {
            "files": o.disk.files, "total_bytes": o.disk.total_bytes,
            "compacted_bytes": o.disk.compacted_bytes,
            "compacted_samples": o.disk.compacted_samples, "compacted_what": o.disk.what,
            "bytes_per_sample_all": o.bytes_per_sample_all(),
            "bytes_per_sample_compacted": o.bytes_per_sample_compacted(),
        },
        "memory": {
            "rss_idle_kib": o.rss_idle_kib, "rss_after_kib": o.rss_after_kib,
            "active_series": series, "bytes_per_series": o.bytes_per_series(series),
        },
        "queries": panels.iter().zip(&o.panels).map(|(p, r)| json!({
            "panel": p.name, "expr": p.expr, "series": r.series, "points": r.points,
            "errors": r.errors, "first_error": r.first_error,
            "latency_us": Latency::from_histogram(&r.histogram).to_json(),
        })).collect::<Vec<_>>(),
    })
}

fn write_json(path: &Path, doc: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(doc)?;
    if path == Path::new("-") {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MetricsArgs,
    }

    fn parse(argv: &[&str]) -> MetricsArgs {
        Cli::try_parse_from(std::iter::once("metrics").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults_validate_and_name_every_target() {
        let args = parse(&[]);
        validate(&args).unwrap();
        assert_eq!(args.connections, 8);
        assert_eq!(args.batch_samples, 2000);
        assert_eq!(
            wanted_targets(&args),
            vec![Kind::Nightlight, Kind::Prometheus, Kind::Victoriametrics]
        );
        let only = parse(&["--skip-peers"]);
        assert_eq!(wanted_targets(&only), vec![Kind::Nightlight]);
    }

    #[test]
    fn limits_are_enforced() {
        assert!(validate(&parse(&["--hosts", "0"])).is_err());
        assert!(validate(&parse(&["--hosts", "100000", "--rounds", "100000"])).is_err());
        assert!(validate(&parse(&["--connections", "0"])).is_err());
        assert!(validate(&parse(&["--batch-samples", "1000000"])).is_err());
        assert!(validate(&parse(&["--block-minutes", "0"])).is_err());
    }

    #[test]
    fn every_panel_parses_as_a_query_string() {
        for panel in panels() {
            assert!(!http::url_encode(&panel.expr).contains(' '));
        }
    }
}
