//! `photon bench engine`: the first evidence for the thread-per-core design.
//!
//! 1. Cross-shard calls: one caller on shard 0 calls shard 1 through the
//!    channel mesh (round-trip percentiles, then throughput with many
//!    callers), beside tokio tasks doing the same over mpsc + oneshot.
//! 2. Small HTTP requests: the engine's hyper-on-glommio path beside hyper on
//!    a tokio multi-thread runtime, both answering the same body, driven by the
//!    same closed-loop load generator in a separate process, in two layouts:
//!    `pinned` (server on one CPU, load generator on another) and `shared`
//!    (server on every CPU, load generator competing with it).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use crossbeam_channel::Sender;
use http_body_util::Full;
use photon_core::config::CoreConfig;
use photon_core::http::{HttpLimits, HttpMetrics, ServeOptions};
use photon_core::{BoxError, EngineBuilder, RunningEngine, ShardContext, ShardId, ShardService};
use serde_json::json;

use crate::loadgen::LoadResult;
use crate::report::Table;
use crate::tokio_baseline::{self, CallResult, TokioHttpServer, HELLO_BODY};

#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Measured seconds per HTTP run.
    #[arg(long, default_value_t = 5.0)]
    pub duration_s: f64,
    /// Warm-up seconds before each HTTP run.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// HTTP connections of the load generator.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Sequential cross-shard calls measured (after 10% warm-up).
    #[arg(long, default_value_t = 20_000)]
    pub calls: usize,
    /// Concurrent callers for the cross-shard throughput run.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Idle-spin settings of the shards to compare, in microseconds (0 = park at once).
    #[arg(long, value_delimiter = ',', default_value = "0,50")]
    pub spin_us: Vec<u64>,
    /// Runs of every HTTP configuration (interleaved); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Layouts to run: pinned, shared.
    #[arg(long, value_delimiter = ',', default_value = "pinned,shared")]
    pub layouts: Vec<String>,
    /// Also write every result as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

pub fn run(args: EngineArgs) -> anyhow::Result<()> {
    let cpus = online_cpus();
    if cpus.len() < 2 {
        bail!("bench engine needs at least 2 CPUs, found {}", cpus.len());
    }
    let mut json_rows = Vec::new();

    println!(
        "== cross-shard calls: shard 0 -> shard 1 (pinned to CPUs {} and {}) ==",
        cpus[0], cpus[1]
    );
    let mut table = Table::new(&[
        "runtime",
        "p50 us",
        "p99 us",
        "p999 us",
        "calls/s seq",
        "calls/s x concurrency",
    ]);
    let warmup = args.calls / 10;
    let tokio_calls = tokio_baseline::cross_task_calls(
        2,
        vec![cpus[0], cpus[1]],
        args.calls,
        warmup,
        args.concurrency,
        Duration::from_secs(2),
        256,
    )?;
    let tokio_pinned = tokio_baseline::cross_thread_calls(
        [cpus[0], cpus[1]],
        args.calls,
        warmup,
        args.concurrency,
        Duration::from_secs(2),
        256,
    )?;
    let mut photon_calls = Vec::new();
    for spin in &args.spin_us {
        photon_calls.push((*spin, photon_cross_shard(&args, [cpus[0], cpus[1]], *spin)?));
    }
    let mut add = |name: String, r: &CallResult| {
        table.row(vec![
            name.clone(),
            r.sequential.p50_us.to_string(),
            r.sequential.p99_us.to_string(),
            r.sequential.p999_us.to_string(),
            format!("{:.0}", 1e6 / r.sequential.mean_us.max(0.001)),
            format!("{:.0} x{}", r.concurrent_calls_per_s, r.concurrency),
        ]);
        json_rows.push(json!({"bench": "cross_shard", "runtime": name,
            "latency_us": r.sequential.to_json(), "concurrent_calls_per_s": r.concurrent_calls_per_s}));
    };
    for (spin, r) in &photon_calls {
        add(format!("photon mesh (spin {spin} us)"), r);
    }
    add("tokio multi-thread, 2 workers".into(), &tokio_calls);
    add("tokio 2 current_thread, pinned".into(), &tokio_pinned);
    print!("{table}");
    for (spin, r) in &photon_calls {
        for (name, base) in [
            ("multi-thread", &tokio_calls),
            ("pinned current_thread", &tokio_pinned),
        ] {
            println!(
                "photon (spin {spin} us) vs tokio {name}: throughput {:.2}x, p50 latency {:.2}x",
                r.concurrent_calls_per_s / base.concurrent_calls_per_s,
                r.sequential.p50_us as f64 / base.sequential.p50_us.max(1) as f64
            );
        }
    }

    for layout in &args.layouts {
        let (server_cpus, load_cpus): (Vec<usize>, Vec<usize>) = match layout.as_str() {
            "pinned" => (vec![cpus[1]], vec![cpus[0]]),
            "shared" => (cpus.clone(), Vec::new()),
            other => bail!("unknown layout {other} (expected pinned or shared)"),
        };
        println!(
            "\n== HTTP GET, {}-byte body, {} connections, {} s, layout {layout}: server CPUs {:?}, load generator CPUs {} ==",
            HELLO_BODY.len(),
            args.connections,
            args.duration_s,
            server_cpus,
            if load_cpus.is_empty() { "any".to_string() } else { format!("{load_cpus:?}") }
        );
        let mut table = Table::new(&[
            "server",
            "req/s median (min-max)",
            "p50 us",
            "p99 us",
            "p999 us",
            "sleeps/req",
            "vs tokio",
        ]);
        // Every configuration runs `repeat` times, interleaved, so that a slow
        // stretch of a shared machine hits all of them; the median run is
        // reported with the spread.
        let mut configs: Vec<(String, Option<u64>)> = args
            .spin_us
            .iter()
            .map(|spin| {
                (
                    format!("photon {} shard(s), spin {spin} us", server_cpus.len()),
                    Some(*spin),
                )
            })
            .collect();
        configs.push((format!("tokio {} worker(s)", server_cpus.len()), None));
        let mut runs: Vec<Vec<(LoadResult, f64)>> = vec![Vec::new(); configs.len()];
        for _ in 0..args.repeat.max(1) {
            for (i, (_, spin)) in configs.iter().enumerate() {
                let result = match spin {
                    Some(spin) => {
                        let engine = photon_http_engine(&server_cpus, *spin)?;
                        let addr = engine.endpoint("bench-http").context("bench listener")?;
                        let result = measure_http(&args, addr, &load_cpus)?;
                        engine.shutdown();
                        result
                    }
                    None => {
                        let server =
                            TokioHttpServer::start(server_cpus.len(), server_cpus.clone())?;
                        measure_http(&args, server.addr, &load_cpus)?
                    }
                };
                runs[i].push(result);
            }
        }
        let medians: Vec<(LoadResult, f64, f64, f64)> = runs
            .iter_mut()
            .map(|r| {
                r.sort_by(|a, b| a.0.rps().total_cmp(&b.0.rps()));
                let (min, max) = (r[0].0.rps(), r[r.len() - 1].0.rps());
                let (median, sleeps) = r[r.len() / 2].clone();
                (median, sleeps, min, max)
            })
            .collect();
        let tokio_rps = medians[medians.len() - 1].0.rps();
        for ((name, _), (r, sleeps, min, max)) in configs.iter().zip(&medians) {
            table.row(vec![
                name.clone(),
                format!("{:.0} ({:.0}-{:.0})", r.rps(), min, max),
                r.latency.p50_us.to_string(),
                r.latency.p99_us.to_string(),
                r.latency.p999_us.to_string(),
                format!("{sleeps:.2}"),
                format!("{:.2}x", r.rps() / tokio_rps),
            ]);
            json_rows.push(json!({"bench": "http", "layout": layout, "server": name,
                "median": r.to_json(), "rps_min": min, "rps_max": max, "repeat": args.repeat,
                "sleeps_per_request": sleeps, "ratio_vs_tokio": r.rps() / tokio_rps}));
        }
        print!("{table}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&json_rows)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs the load generator as a child process against `addr`; returns its
/// result and the server process's voluntary context switches per request.
fn measure_http(
    args: &EngineArgs,
    addr: SocketAddr,
    cpus: &[usize],
) -> anyhow::Result<(LoadResult, f64)> {
    let exe = std::env::current_exe().context("cannot find the photon binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", "http", "--json", "--addr", &addr.to_string()])
        .args(["--connections", &args.connections.to_string()])
        .args(["--duration-s", &args.duration_s.to_string()])
        .args(["--warmup-s", &args.warmup_s.to_string()]);
    if !cpus.is_empty() {
        let list: Vec<String> = cpus.iter().map(ToString::to_string).collect();
        cmd.args(["--cpus", &list.join(",")]);
    }
    let before = crate::voluntary_context_switches();
    let output = cmd.output().context("cannot run the load generator")?;
    let after = crate::voluntary_context_switches();
    if !output.status.success() {
        bail!(
            "load generator failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let value: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("load generator output")?;
    let result = LoadResult::from_json(&value)?;
    if result.requests == 0 {
        bail!("load generator completed no request against {addr}");
    }
    // The warm-up also counts in the context switches; scale requests to it.
    let total_s = args.duration_s + args.warmup_s;
    let requests_all = result.rps() * total_s;
    Ok((result, (after - before) as f64 / requests_all.max(1.0)))
}

fn engine_config(cpus: &[usize], spin_us: u64) -> CoreConfig {
    let mut config = CoreConfig::default();
    config.engine.cores = cpus.len();
    config.engine.cpu_list = cpus.to_vec();
    config.engine.spin_before_park_us = spin_us;
    config.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.shutdown.drain_timeout_ms = 2_000;
    config
}

fn photon_http_engine(cpus: &[usize], spin_us: u64) -> anyhow::Result<RunningEngine> {
    Ok(EngineBuilder::new(engine_config(cpus, spin_us))
        .service::<HelloService>(())
        .start()?)
}

/// Answers every request with HELLO_BODY on every shard.
pub struct HelloService {
    listener: RefCell<Option<glommio::net::TcpListener>>,
}

impl ShardService for HelloService {
    type Params = ();
    type Request = ();
    type Reply = ();
    const NAME: &'static str = "bench-http";

    async fn start(ctx: &ShardContext<Self>, _params: &()) -> Result<Self, BoxError> {
        let listener = ctx.listen("bench-http", SocketAddr::from(([127, 0, 0, 1], 0)))?;
        Ok(Self {
            listener: RefCell::new(Some(listener)),
        })
    }

    async fn run(self: Rc<Self>, ctx: ShardContext<Self>) {
        let Some(listener) = self.listener.borrow_mut().take() else {
            return;
        };
        let options = ServeOptions {
            service: Self::NAME,
            limits: HttpLimits::default(),
            shutdown: ctx.shutdown().clone(),
            in_flight: ctx.in_flight().clone(),
            metrics: HttpMetrics::new(ctx.metrics(), Self::NAME),
            drain_deadline: ctx.drain_deadline(),
            task_queue: ctx.latency_queue(),
        };
        photon_core::http::serve(
            listener,
            |_req| async { hyper::Response::new(Full::new(Bytes::from_static(HELLO_BODY))) },
            options,
        )
        .await;
    }

    async fn handle(self: Rc<Self>, _ctx: &ShardContext<Self>, _from: ShardId, _request: ()) {}
}

/// Settings of the cross-shard run, and where shard 0 reports.
pub struct PingParams {
    calls: usize,
    warmup: usize,
    concurrency: usize,
    duration: Duration,
    results: Sender<CallResult>,
}

/// Shard 0 calls shard 1; shard 1 doubles the number.
pub struct PingService;

impl ShardService for PingService {
    type Params = PingParams;
    type Request = u64;
    type Reply = u64;
    const NAME: &'static str = "bench-ping";

    async fn start(ctx: &ShardContext<Self>, params: &PingParams) -> Result<Self, BoxError> {
        if ctx.shard() == 0 {
            let ctx = ctx.clone();
            let (calls, warmup, concurrency, duration) = (
                params.calls,
                params.warmup,
                params.concurrency,
                params.duration,
            );
            let results = params.results.clone();
            ctx.clone()
                .spawn(async move {
                    ctx.shutdown()
                        .reached(photon_core::shutdown::Phase::Running)
                        .await;
                    let r = ping_run(&ctx, calls, warmup, concurrency, duration).await;
                    let _ = results.send(r);
                })
                .detach();
        }
        Ok(Self)
    }

    async fn run(self: Rc<Self>, ctx: ShardContext<Self>) {
        ctx.shutdown().draining().await;
    }

    async fn handle(
        self: Rc<Self>,
        _ctx: &ShardContext<Self>,
        _from: ShardId,
        request: u64,
    ) -> u64 {
        request * 2
    }
}

async fn ping_run(
    ctx: &ShardContext<PingService>,
    calls: usize,
    warmup: usize,
    concurrency: usize,
    duration: Duration,
) -> CallResult {
    let sequential =
        crate::calls::sequential(|n| async move { ctx.call(1, n).await.ok() }, warmup, calls).await;
    let stop = Instant::now() + duration;
    let started = Instant::now();
    let callers: Vec<_> = (0..concurrency)
        .map(|_| {
            let ctx = ctx.clone();
            ctx.clone().spawn(async move {
                crate::calls::closed_loop(
                    |n| {
                        let ctx = ctx.clone();
                        async move { ctx.call(1, n).await.ok() }
                    },
                    stop,
                )
                .await
            })
        })
        .collect();
    let mut total = 0u64;
    for caller in callers {
        total += caller.await;
    }
    CallResult {
        sequential,
        concurrent_calls_per_s: total as f64 / started.elapsed().as_secs_f64(),
        concurrency,
    }
}

fn photon_cross_shard(
    args: &EngineArgs,
    cpus: [usize; 2],
    spin_us: u64,
) -> anyhow::Result<CallResult> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let engine = EngineBuilder::new(engine_config(&cpus, spin_us))
        .service::<PingService>(PingParams {
            calls: args.calls,
            warmup: args.calls / 10,
            concurrency: args.concurrency,
            duration: Duration::from_secs(2),
            results: tx,
        })
        .start()?;
    let result = rx
        .recv_timeout(Duration::from_secs(120))
        .context("cross-shard run did not finish")?;
    engine.shutdown();
    Ok(result)
}

fn online_cpus() -> Vec<usize> {
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Which server: photon (the engine's HTTP path) or tokio (the baseline).
    #[arg(long, default_value = "photon")]
    pub runtime: String,
    /// CPUs to serve on (one shard or worker each); empty = all.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Shards' idle spin before parking, in microseconds (photon only).
    #[arg(long, default_value_t = 0)]
    pub spin_us: u64,
}

/// Serves the benchmark's HTTP response until SIGINT/SIGTERM, so outside
/// tools (wrk, strace -c, perf) can be pointed at either server.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cpus = if args.cpus.is_empty() {
        online_cpus()
    } else {
        args.cpus.clone()
    };
    match args.runtime.as_str() {
        "photon" => {
            let mut engine = photon_http_engine(&cpus, args.spin_us)?;
            let addr = engine.endpoint("bench-http").context("bench listener")?;
            println!(
                "photon serving http://{addr} on CPUs {cpus:?} (pid {})",
                std::process::id()
            );
            engine.wait_for_stop()?;
            engine.shutdown();
        }
        "tokio" => {
            let server = TokioHttpServer::start(cpus.len(), cpus.clone())?;
            println!(
                "tokio serving http://{} on CPUs {cpus:?} (pid {})",
                server.addr,
                std::process::id()
            );
            let mut signals = signal_hook::iterator::Signals::new([
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
            ])?;
            let _ = signals.forever().next();
        }
        other => bail!("unknown runtime {other} (expected photon or tokio)"),
    }
    Ok(())
}
