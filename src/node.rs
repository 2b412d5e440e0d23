//! `photon dev` and `photon node`: load the config, start the engine with
//! this node's services, print where they listen, run until SIGINT/SIGTERM,
//! drain and exit.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use photon_core::admin::AdminService;
use photon_core::config::{ConfigLoader, LogFormat};
use photon_core::listen::Endpoint;
use photon_core::{EngineBuilder, RunningEngine, StopReason};

use crate::config::Config;

/// Exit code for configuration errors (as for usage errors).
const EXIT_CONFIG: u8 = 2;
/// Exit code when the node failed to start or a shard died.
const EXIT_FAILED: u8 = 1;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Number of shards (one pinned executor per core); 0 means one per CPU.
    #[arg(long)]
    cores: Option<usize>,
    /// Log line format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Log filter, `RUST_LOG` syntax (`RUST_LOG` itself wins when set).
    #[arg(long)]
    log_filter: Option<String>,
    /// Override any config key, e.g. `--set engine.mesh_queue_depth=512`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Data directory of the dev node.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the admin endpoint (/metrics, /healthz, /readyz).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Address of the control plane's Cap'n Proto API (`photon ctl`).
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Address of the S3 endpoint.
    #[arg(long)]
    s3: Option<SocketAddr>,
    /// Address of the NBD endpoint (volumes).
    #[arg(long)]
    nbd: Option<SocketAddr>,
    /// Address of NightLight's HTTP endpoint (metrics: remote_write, PromQL).
    #[arg(long)]
    nightlight: Option<SocketAddr>,
    /// Optional config file; flags win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's config file (TOML).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run_dev(args: DevArgs) -> ExitCode {
    let mut flags: Vec<(String, String)> = Vec::new();
    if let Some(dir) = &args.data_dir {
        flags.push((
            "node.data_dir".into(),
            toml_string(&dir.display().to_string()),
        ));
    }
    if let Some(addr) = args.admin {
        flags.push(("admin.listen".into(), toml_string(&addr.to_string())));
    }
    if let Some(addr) = args.control {
        flags.push(("control.listen".into(), toml_string(&addr.to_string())));
    }
    if let Some(addr) = args.s3 {
        flags.push(("s3.listen".into(), toml_string(&addr.to_string())));
    }
    if let Some(addr) = args.nbd {
        flags.push(("nbd.listen".into(), toml_string(&addr.to_string())));
    }
    if let Some(addr) = args.nightlight {
        flags.push(("nightlight.listen".into(), toml_string(&addr.to_string())));
    }
    let preset = [("node.name", "\"dev\"")];
    let config = match load_config(&preset, args.config.as_deref(), &args.common, flags) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    serve("dev", config)
}

pub fn run_node(args: NodeArgs) -> ExitCode {
    let config = match load_config(&[], Some(&args.config), &args.common, Vec::new()) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    serve("node", config)
}

fn config_error(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(EXIT_CONFIG)
}

fn toml_string(s: &str) -> String {
    toml_escape(s)
}

fn toml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Defaults, then presets, then the file, then `PHOTON_*` variables, then flags.
fn load_config(
    preset: &[(&str, &str)],
    file: Option<&Path>,
    common: &CommonArgs,
    mut flags: Vec<(String, String)>,
) -> anyhow::Result<Config> {
    let mut loader = ConfigLoader::<Config>::new();
    if let Some(path) = file {
        loader = loader.file(path)?;
    }
    for (key, value) in preset {
        // A preset only fills what the file left unset.
        if !loader.is_set(key) {
            loader = loader.with(key, value, "photon dev default")?;
        }
    }
    loader = loader.env(std::env::vars())?;
    if let Some(cores) = common.cores {
        flags.push(("engine.cores".into(), cores.to_string()));
    }
    if let Some(format) = common.log_format {
        let f = match format {
            LogFormatArg::Pretty => "\"pretty\"",
            LogFormatArg::Json => "\"json\"",
        };
        flags.push(("log.format".into(), f.into()));
    }
    if let Some(filter) = &common.log_filter {
        flags.push(("log.filter".into(), toml_string(filter)));
    }
    for (key, value) in flags {
        let origin = format!("flag for {key}");
        loader = loader.with(&key, &value, &origin)?;
    }
    for item in &common.set {
        let Some((key, value)) = item.split_once('=') else {
            bail!("--set {item}: expected KEY=VALUE, e.g. engine.cores=2");
        };
        loader = loader.with(key.trim(), value.trim(), &format!("--set {item}"))?;
    }
    Ok(loader.build()?)
}

fn serve(mode: &str, config: Config) -> ExitCode {
    if let Err(e) = photon_core::logging::init(&config.log.filter, config.log.format) {
        eprintln!("error: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match serve_inner(mode, config) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn serve_inner(mode: &str, mut config: Config) -> anyhow::Result<ExitCode> {
    // Services open their directories through glommio, which refuses
    // relative paths (EBADF): every path below the data dir is absolute.
    config.node.data_dir = std::path::absolute(&config.node.data_dir).with_context(|| {
        format!(
            "cannot resolve data directory {}",
            config.node.data_dir.display()
        )
    })?;
    let data_dir = config.node.data_dir.clone();
    let tightened = crate::data_dir::secure(&data_dir)?;
    if !tightened.fixed.is_empty() {
        tracing::warn!(
            paths = tightened.fixed.len(),
            first = %tightened.fixed[0].display(),
            "the data directory was readable by other users: made it private (dirs 0700, files 0600)"
        );
    }
    let _lock = lock_data_dir(&data_dir)?;
    let open_files = crate::descriptors::raise_open_files(config.limits.open_files)?;
    let serves = |role: &str| config.node.roles.iter().any(|r| r == role);
    // admin always; control; S3 and NBD with the storage role; NightLight
    // with the metrics role.
    let listeners = 1
        + usize::from(serves("control"))
        + 2 * usize::from(serves("storage"))
        + usize::from(serves("metrics"));
    if crate::descriptors::fit_connections(&mut config.limits, open_files, listeners) {
        tracing::warn!(
            open_files,
            listeners,
            connections_per_listener = config.limits.connections_per_listener,
            "the open-file limit allows fewer connections than limits.connections_per_listener: cut to fit"
        );
    }
    let name = config.node.name.clone();
    let json_logs = config.log.format == LogFormat::Json;

    let has_role = |role: &str| config.node.roles.iter().any(|r| r == role);
    if has_role("storage") && !has_role("control") {
        bail!("the storage role needs the control role on the same node (node.roles); storage-only nodes are not supported yet");
    }
    if has_role("edge") && !has_role("control") {
        bail!("the edge role needs the control role on the same node (node.roles); edge-only nodes are not supported yet");
    }
    if has_role("metrics") && !has_role("control") {
        bail!("the metrics role needs the control role on the same node (node.roles): NightLight checks credentials with its IAM view");
    }
    if has_role("compute") && !has_role("control") {
        bail!("the compute role needs the control role on the same node (node.roles); compute-only nodes are not supported yet");
    }
    // The load balancer's agent (edge role): XDP data plane, health checks.
    let lb = if has_role("edge") {
        Some(crate::lb::start(&config)?)
    } else {
        None
    };
    let mut admin = photon_core::admin::AdminParams::default();
    if let Some(link) = &lb {
        admin
            .extra_metrics
            .push(Arc::new(link.agent.metrics_source()));
    }
    let mut builder = EngineBuilder::new(config.core()).service::<AdminService>(admin);
    let mut dev_credentials = None;
    let nbd_address = Arc::new(std::sync::Mutex::new(None));
    let admin_address = Arc::new(std::sync::Mutex::new(None));
    let registration = crate::registry::Registration::new(&config);
    let published = registration.endpoints.clone();
    if has_role("control") {
        let node_config = crate::control_plane::node_config(&config, mode == "dev")?;
        let storage = if has_role("storage") {
            let depth = config.engine.control_queue_depth;
            let shards = config.engine.shard_count();
            let (s3_link, s3_control) = photon_core::link::link(shards, depth);
            let params = crate::storage::s3_params(&config, node_config.directory.clone(), s3_link);
            builder = builder.service::<lightningstor::S3Service>(params);
            let (nbd_link, nbd_control) = photon_core::link::link(shards, depth);
            builder = builder.service::<coronafs::NbdService>(crate::volumes::nbd_params(
                &config,
                node_config.directory.clone(),
                nbd_link,
            ));
            let link_credentials = (mode == "dev").then(|| {
                let (tx, rx) = std::sync::mpsc::channel();
                dev_credentials = Some(rx);
                (data_dir.join(crate::storage::S3_ENV_FILE), tx)
            });
            Some(crate::control_plane::StorageLink {
                s3: s3_control,
                dev_credentials: link_credentials,
                volumes: crate::volumes::VolumeLink {
                    control: nbd_control,
                    nbd_address: nbd_address.clone(),
                },
            })
        } else {
            None
        };
        if has_role("metrics") {
            builder =
                builder.service::<nightlight::NightLightService>(nightlight::NightLightParams {
                    config: config.nightlight.clone(),
                    dir: data_dir.join("metrics"),
                    directory: node_config.directory.clone(),
                    http: photon_core::http::HttpLimits::default(),
                    node_name: config.node.name.clone(),
                    admin_address: admin_address.clone(),
                    body_idle_timeout: config.limits.body_idle_timeout(),
                });
        }
        let vms = has_role("compute").then(|| crate::vms::VmLink {
            config: crate::vms::agent_config(&config),
            board: photon_vmm::agent::Board::default(),
            nbd_address: nbd_address.clone(),
        });
        builder = builder.control_plane(crate::control_plane::main(
            node_config,
            storage,
            lb,
            vms,
            registration,
        ));
    }
    let engine = builder.start().context("node failed to start")?;

    let endpoints = engine.endpoints();
    if let Some(nbd) = endpoints.iter().find(|e| e.name == "nbd") {
        if let Ok(mut address) = nbd_address.lock() {
            *address = Some(nbd.addr);
        }
    }
    if let Some(admin) = endpoints.iter().find(|e| e.name == "admin") {
        if let Ok(mut address) = admin_address.lock() {
            *address = Some(admin.addr);
        }
    }
    if let Ok(mut published) = published.lock() {
        for e in &endpoints {
            published.entry(e.name.clone()).or_insert(e.addr);
        }
    }
    write_endpoints_file(&data_dir, &name, &engine, &endpoints)?;
    print_endpoints(mode, &name, &data_dir, &engine, &endpoints, json_logs);
    if let Some(rx) = dev_credentials {
        // On its own thread: the main thread must be waiting for signals
        // while the control plane is still bootstrapping the key.
        let (dir, config, endpoints) = (data_dir.clone(), config.clone(), endpoints.clone());
        std::thread::Builder::new()
            .name("photon-dev-s3-env".into())
            .spawn(move || write_dev_credentials(&dir, &config, &endpoints, &rx, json_logs))
            .context("cannot start the thread that writes s3.env")?;
    }

    let mut engine = engine;
    let reason = engine.wait_for_stop().context("cannot wait for signals")?;
    match reason {
        StopReason::Signal(sig) => tracing::info!(signal = sig, "shutting down"),
        StopReason::ShardDied(shard) => tracing::error!(shard, "a shard died; shutting down"),
    }
    let report = engine.shutdown();
    let _ = std::fs::remove_file(data_dir.join(ENDPOINTS_FILE));
    tracing::info!(
        drained = report.drained,
        shards = report.shards,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "stopped"
    );
    if !report.clean() {
        tracing::warn!("some shards did not drain before the deadline");
    }
    Ok(match reason {
        StopReason::Signal(_) => ExitCode::SUCCESS,
        StopReason::ShardDied(_) => ExitCode::from(EXIT_FAILED),
    })
}

/// Name of the file, in the data directory, that lists the node's endpoints
/// while it runs (tests and scripts read it; it is removed on exit).
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// What [`ENDPOINTS_FILE`] holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct EndpointsFile {
    pub node: String,
    pub pid: u32,
    pub shards: usize,
    /// Endpoint name (`s3`, `nbd`, `control`, `admin`, ...) to address.
    pub endpoints: std::collections::BTreeMap<String, std::net::SocketAddr>,
}

fn write_endpoints_file(
    dir: &Path,
    name: &str,
    engine: &RunningEngine,
    endpoints: &[Endpoint],
) -> anyhow::Result<()> {
    let doc = EndpointsFile {
        node: name.to_owned(),
        pid: std::process::id(),
        shards: engine.shards(),
        endpoints: endpoints.iter().map(|e| (e.name.clone(), e.addr)).collect(),
    };
    let tmp = dir.join(format!("{ENDPOINTS_FILE}.tmp"));
    let path = dir.join(ENDPOINTS_FILE);
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn print_endpoints(
    mode: &str,
    name: &str,
    data_dir: &Path,
    engine: &RunningEngine,
    endpoints: &[Endpoint],
    json_logs: bool,
) {
    let mut out = std::io::stdout().lock();
    if json_logs {
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"photon": mode, "node": name, "shards": engine.shards(),
                "data_dir": data_dir.display().to_string(),
                "endpoints": endpoints.iter().map(|e| (e.name.clone(), e.addr.to_string())).collect::<std::collections::BTreeMap<_,_>>()})
        );
        return;
    }
    let _ = writeln!(
        out,
        "PhotonCloud {mode} node \"{name}\": {} shards, data in {}",
        engine.shards(),
        data_dir.display()
    );
    let _ = writeln!(out, "{:<10} {:<28} WHAT", "SERVICE", "ENDPOINT");
    for e in endpoints {
        let (url, what) = match e.service {
            "admin" => (format!("http://{}", e.addr), "/metrics /healthz /readyz"),
            "control" => (
                e.addr.to_string(),
                "Cap'n Proto API: photon ctl login|kv|lease|iam|bucket|volume|vm|image|lb|cluster",
            ),
            "s3" => (
                format!("http://{}", e.addr),
                "S3 API (aws CLI, boto3): credentials in <data>/s3.env",
            ),
            "nightlight" => (
                format!("http://{}", e.addr),
                "metrics: Prometheus remote_write /api/v1/write, PromQL /api/v1/query (photon ctl metrics)",
            ),
            "nbd" => (
                format!("nbd://{}", e.addr),
                "NBD volumes (qemu, qemu-img, fio): photon ctl volume attach NAME",
            ),
            _ => (e.addr.to_string(), ""),
        };
        let _ = writeln!(out, "{:<10} {:<28} {what}", e.name, url);
    }
    let _ = writeln!(out, "Stop with Ctrl-C (SIGINT) or SIGTERM.");
    let _ = out.flush();
}

/// Waits for the dev administrator's S3 key and writes `<data>/s3.env`.
fn write_dev_credentials(
    data_dir: &Path,
    config: &Config,
    endpoints: &[Endpoint],
    rx: &std::sync::mpsc::Receiver<(String, String)>,
    json_logs: bool,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let Some(s3) = endpoints.iter().find(|e| e.name == "s3") else {
        return;
    };
    let (id, secret) = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(pair) => pair,
        // The node is stopping.
        Err(RecvTimeoutError::Disconnected) => return,
        Err(RecvTimeoutError::Timeout) => {
            tracing::warn!("the administrator's S3 key is not ready; create one with `photon ctl iam access-key create`");
            return;
        }
    };
    let path = data_dir.join(crate::storage::S3_ENV_FILE);
    let endpoint = format!("http://{}", s3.addr);
    match crate::storage::write_env_file(&path, &endpoint, &config.s3.region, &id, &secret) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "wrote the administrator's S3 credentials");
            if !json_logs {
                eprintln!(
                    "photon: S3 credentials of the administrator are in {} (mode 0600): set -a; . {}; set +a; aws s3 ls",
                    path.display(),
                    path.display()
                );
            }
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot write the S3 credentials")
        }
    }
}

/// Holds an exclusive lock on the data directory for the life of the node.
struct DataDirLock {
    _file: File,
}

fn lock_data_dir(dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = dir.join("LOCK");
    let file = File::create(&path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            bail!(
                "data directory {} is in use by another photon process",
                dir.display()
            );
        }
        return Err(e).with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(DataDirLock { _file: file })
}
