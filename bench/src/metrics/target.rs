//! The servers `bench metrics` measures, each the benchmark's child on free
//! ports and a scratch directory: its own `photon dev` (NightLight),
//! Prometheus with its remote-write receiver, and single-node
//! VictoriaMetrics; and what is read of them from outside: RSS and CPU time
//! from /proc, bytes on disk, and how much of the data the compacted form
//! (blocks, merged parts) holds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;

use super::http::{block_on, Connection, Server};
use crate::child::{free_port, Proc, Stop};

/// Longest a server may take to start and answer.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the files of a store must stay unchanged before it counts as
/// settled (longer than NightLight's 5 s maintenance period).
pub const SETTLE_QUIET: Duration = Duration::from_secs(6);
/// Longest wait for a store to settle after ingestion.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Kind {
    /// NightLight in the benchmark's own `photon dev`.
    Nightlight,
    /// Prometheus with --web.enable-remote-write-receiver.
    Prometheus,
    /// Single-node VictoriaMetrics.
    Victoriametrics,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Nightlight => "nightlight",
            Kind::Prometheus => "prometheus",
            Kind::Victoriametrics => "victoriametrics",
        }
    }
}

/// A running server.
pub struct Target {
    pub kind: Kind,
    pub server: Server,
    /// Where its data lives (the part that is measured on disk).
    pub data_dir: PathBuf,
    /// One line: version, settings, data directory.
    pub description: String,
    pub process: Proc,
}

/// What the benchmark sets on every server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Block range of NightLight and Prometheus, minutes.
    pub block_minutes: u64,
    pub photon_args: Vec<String>,
    pub prometheus: PathBuf,
    pub victoria_metrics: PathBuf,
}

impl Target {
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    pub fn name(&self) -> &'static str {
        self.kind.as_str()
    }
}

/// Finds `binary` on PATH (or takes it as a path when it has a slash).
pub fn find_binary(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return binary.is_file().then(|| binary.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

fn version_line(binary: &Path, flag: &str) -> String {
    Command::new(binary)
        .arg(flag)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// Debian's build of VictoriaMetrics prints no version: ask dpkg then.
fn victoria_metrics_version(binary: &Path) -> String {
    let own = version_line(binary, "-version");
    if !own.is_empty() {
        return own;
    }
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "victoria-metrics"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            format!(
                "(Debian package {})",
                String::from_utf8_lossy(&o.stdout).trim()
            )
        })
        .unwrap_or_else(|| "(version unknown)".into())
}

/// Starts `photon dev` (this very binary) on `dir` and waits until
/// NightLight answers a query with the dev administrator's key.
pub fn start_nightlight(dir: &Path, settings: &Settings, stop: &Stop) -> anyhow::Result<Target> {
    std::fs::create_dir_all(dir)?;
    let exe = std::env::current_exe().context("cannot find the photon binary")?;
    let mut command = Command::new(&exe);
    command.arg("dev").arg("--data-dir").arg(dir).args([
        "--admin",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--nbd",
        "127.0.0.1:0",
        "--nightlight",
        "127.0.0.1:0",
    ]);
    if !settings.photon_args.iter().any(|a| a.contains("s3.listen")) {
        command
            .arg("--set")
            .arg(format!("s3.listen=\"127.0.0.1:{}\"", free_port()?));
    }
    if !settings
        .photon_args
        .iter()
        .any(|a| a.contains("nightlight.block_minutes"))
    {
        command.arg("--set").arg(format!(
            "nightlight.block_minutes={}",
            settings.block_minutes
        ));
    }
    // Its own /metrics pushed every 15 s would add series and keep the
    // WAL changing after the run; the peers scrape nothing either.
    if !settings
        .photon_args
        .iter()
        .any(|a| a.contains("nightlight.self_scrape"))
    {
        command.arg("--set").arg("nightlight.self_scrape=false");
    }
    command.args(&settings.photon_args);
    let mut process = Proc::spawn("photon dev".into(), &mut command, dir.with_extension("log"))?;
    let started = Instant::now();
    let (addr, shards, key) = loop {
        stop.check()?;
        process.check_alive()?;
        if let (Some((addr, shards)), Some(key)) = (nightlight_endpoint(dir), dev_key(dir)) {
            break (addr, shards, key);
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            bail!(
                "photon dev listed no nightlight endpoint in {}/endpoints.json or wrote no \
                 s3.env in {STARTUP_TIMEOUT:?} (does this build have NightLight?)",
                dir.display()
            );
        }
        std::thread::sleep(POLL);
    };
    let raw = format!("{}:{}", key.0, key.1);
    let server = Server {
        name: Kind::Nightlight.as_str().into(),
        addr,
        authorization: Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )),
    };
    // The key reaches NightLight's IAM directory a moment after s3.env.
    wait_ready(&server, "/api/v1/query?query=1", &mut process, stop)?;
    Ok(Target {
        kind: Kind::Nightlight,
        server,
        data_dir: dir.join("metrics"),
        description: format!(
            "photon {} `photon dev` (pid {}), {shards} shards, nightlight.block_minutes={}, \
             self_scrape off, WAL fdatasync before every reply; data in {}",
            env!("CARGO_PKG_VERSION"),
            process.child.id(),
            settings.block_minutes,
            dir.join("metrics").display()
        ),
        process,
    })
}

/// NightLight's address and the shard count from `dir/endpoints.json`.
fn nightlight_endpoint(dir: &Path) -> Option<(std::net::SocketAddr, u64)> {
    let text = std::fs::read_to_string(dir.join("endpoints.json")).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let addr = doc["endpoints"]["nightlight"].as_str()?.parse().ok()?;
    Some((addr, doc["shards"].as_u64().unwrap_or(0)))
}

/// The dev administrator's access key from `dir/s3.env` (it may be read
/// while being written: a missing line is "not yet").
fn dev_key(dir: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.join("s3.env")).ok()?;
    let get = |name: &str| {
        text.lines().find_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let value = line.strip_prefix(name)?.strip_prefix('=')?.trim();
            let value = value.trim_matches('"').trim_matches('\'');
            (!value.is_empty()).then(|| value.to_owned())
        })
    };
    Some((get("AWS_ACCESS_KEY_ID")?, get("AWS_SECRET_ACCESS_KEY")?))
}

/// Starts Prometheus with its remote-write receiver and no scrape jobs.
/// `--storage.tsdb.{min,max}-block-duration` (hidden flags) set the same
/// block range NightLight gets, so that both cut blocks from the data.
pub fn start_prometheus(
    binary: &Path,
    dir: &Path,
    settings: &Settings,
    stop: &Stop,
) -> anyhow::Result<Target> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global: {}\n")?;
    let data = dir.join("data");
    let port = free_port()?;
    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .arg(format!(
            "--storage.tsdb.min-block-duration={}m",
            settings.block_minutes
        ))
        .arg(format!(
            "--storage.tsdb.max-block-duration={}m",
            settings.block_minutes * 12
        ));
    let mut process = Proc::spawn("prometheus".into(), &mut command, dir.join("server.log"))?;
    let server = Server {
        name: Kind::Prometheus.as_str().into(),
        addr: ([127, 0, 0, 1], port).into(),
        authorization: None,
    };
    wait_ready(&server, "/-/ready", &mut process, stop)?;
    Ok(Target {
        kind: Kind::Prometheus,
        server,
        description: format!(
            "{} (pid {}), --web.enable-remote-write-receiver, block range {} min \
             (--storage.tsdb.min-block-duration), WAL uncompressed, no fsync per request; \
             data in {}",
            version_line(binary, "--version"),
            process.child.id(),
            settings.block_minutes,
            data.display()
        ),
        data_dir: data,
        process,
    })
}

/// Starts single-node VictoriaMetrics; its response cache is off so that
/// repeated queries are computed each time, as on the other targets.
pub fn start_victoria_metrics(binary: &Path, dir: &Path, stop: &Stop) -> anyhow::Result<Target> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join("data");
    let port = free_port()?;
    let mut command = Command::new(binary);
    command
        .arg(format!("-storageDataPath={}", data.display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-search.disableCache");
    let mut process = Proc::spawn(
        "victoria-metrics".into(),
        &mut command,
        dir.join("server.log"),
    )?;
    let server = Server {
        name: Kind::Victoriametrics.as_str().into(),
        addr: ([127, 0, 0, 1], port).into(),
        authorization: None,
    };
    wait_ready(&server, "/health", &mut process, stop)?;
    Ok(Target {
        kind: Kind::Victoriametrics,
        server,
        description: format!(
            "victoria-metrics {} (pid {}), -retentionPeriod=100y -search.disableCache, \
             no fsync per request; data in {}",
            victoria_metrics_version(binary),
            process.child.id(),
            data.display()
        ),
        data_dir: data,
        process,
    })
}

/// Polls `path` until it answers 2xx.
fn wait_ready(server: &Server, path: &str, process: &mut Proc, stop: &Stop) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        stop.check()?;
        process.check_alive()?;
        let answer = block_on(async {
            let mut connection = Connection::open(server).await?;
            connection.get(path).await
        })?;
        match answer {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > STARTUP_TIMEOUT => {
                bail!(
                    "{} did not answer {path} in {STARTUP_TIMEOUT:?}: {e}",
                    server.name
                )
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// A field of /proc/PID/status in KiB (`VmRSS`).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != key {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// User plus system CPU seconds of process `pid`, all its threads.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / per_second.max(1) as f64)
}

/// Bytes of every regular file under `dir` (their lengths), and how many
/// files; a file that disappears while walking is skipped.
pub fn tree_bytes(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            let (b, f) = tree_bytes(&entry.path());
            bytes += b;
            files += f;
        } else if meta.is_file() {
            bytes += meta.len();
            files += 1;
        }
    }
    (bytes, files)
}

/// Waits until the store's files stop changing: every name and length
/// under its data directory the same for [`SETTLE_QUIET`]. VictoriaMetrics
/// is first asked to flush its in-memory parts and to merge its
/// partitions. Returns how long it took.
pub fn settle(target: &mut Target, stop: &Stop) -> anyhow::Result<Duration> {
    let started = Instant::now();
    if target.kind == Kind::Victoriametrics {
        let answers = block_on(async {
            let mut connection = Connection::open(&target.server).await?;
            connection.get("/internal/force_flush").await?;
            connection.get("/internal/force_merge").await
        })?;
        if let Err(e) = answers {
            eprintln!("  victoriametrics: force_flush/force_merge: {e}");
        }
    }
    let mut last = listing(&target.data_dir);
    let mut quiet_since = Instant::now();
    loop {
        stop.check()?;
        target.process.check_alive()?;
        std::thread::sleep(POLL);
        let now = listing(&target.data_dir);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= SETTLE_QUIET {
            return Ok(started.elapsed());
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            eprintln!(
                "  {}: files still changing after {SETTLE_TIMEOUT:?}; measuring anyway",
                target.name()
            );
            return Ok(started.elapsed());
        }
    }
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// The store on disk after it settled.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    /// Every file of the data directory.
    pub total_bytes: u64,
    pub files: u64,
    /// The compacted form: blocks (NightLight, Prometheus) or the whole
    /// store (VictoriaMetrics, merged).
    pub compacted_bytes: u64,
    /// Samples the compacted form holds.
    pub compacted_samples: u64,
    /// What `compacted_*` counts, in words.
    pub what: String,
}

/// Measures a settled store.
pub fn disk(target: &Target, samples_sent: u64) -> anyhow::Result<Disk> {
    let (total_bytes, files) = tree_bytes(&target.data_dir);
    let mut disk = Disk {
        total_bytes,
        files,
        ..Disk::default()
    };
    match target.kind {
        Kind::Nightlight => {
            let (bytes, samples, blocks) = nightlight_blocks(&target.data_dir)?;
            disk.compacted_bytes = bytes;
            disk.compacted_samples = samples;
            disk.what = format!(
                "{blocks} block file(s) in shard-*/blocks; samples counted by reading them"
            );
        }
        Kind::Prometheus => {
            let (bytes, samples, blocks) = prometheus_blocks(&target.data_dir)?;
            disk.compacted_bytes = bytes;
            disk.compacted_samples = samples;
            disk.what = format!("{blocks} block dir(s); samples from meta.json numSamples");
        }
        Kind::Victoriametrics => {
            disk.compacted_bytes = total_bytes;
            disk.compacted_samples = samples_sent;
            disk.what = "the whole storage dir (data + indexdb) after force_flush and \
                         force_merge; every sample sent"
                .into();
        }
    }
    Ok(disk)
}

/// Bytes, samples and count of NightLight's block files, every shard.
fn nightlight_blocks(metrics_dir: &Path) -> anyhow::Result<(u64, u64, u64)> {
    let everything = photon_tsdb::Matcher::new("__name__", photon_tsdb::MatchOp::Regex, ".+")
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (mut bytes, mut samples, mut blocks) = (0, 0, 0);
    let shards = std::fs::read_dir(metrics_dir)
        .with_context(|| format!("cannot list {}", metrics_dir.display()))?;
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path().join("blocks")) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().and_then(|e| e.to_str()) != Some("block") {
                continue;
            }
            let data =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            bytes += data.len() as u64;
            blocks += 1;
            let block = photon_tsdb::Block::open(data.as_slice())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let series = block
                .select(std::slice::from_ref(&everything), i64::MIN, i64::MAX)
                .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
            samples += series.iter().map(|(_, s)| s.len() as u64).sum::<u64>();
        }
    }
    Ok((bytes, samples, blocks))
}

/// Bytes, samples and count of Prometheus' block directories (those with a
/// meta.json; `wal`, `chunks_head` and temporary dirs are not blocks).
fn prometheus_blocks(data_dir: &Path) -> anyhow::Result<(u64, u64, u64)> {
    let (mut bytes, mut samples, mut blocks) = (0, 0, 0);
    let entries = std::fs::read_dir(data_dir)
        .with_context(|| format!("cannot list {}", data_dir.display()))?;
    for entry in entries.flatten() {
        let meta = entry.path().join("meta.json");
        let Ok(text) = std::fs::read_to_string(&meta) else {
            continue;
        };
        if entry.file_name().to_string_lossy().contains(".tmp") {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", meta.display()))?;
        samples += doc["stats"]["numSamples"].as_u64().unwrap_or(0);
        bytes += tree_bytes(&entry.path()).0;
        blocks += 1;
    }
    Ok((bytes, samples, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_keys_are_read_from_s3_env() {
        let dir =
            std::env::temp_dir().join(format!("photon-bench-metrics-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("s3.env"),
            "# photon dev\nAWS_ACCESS_KEY_ID=AK\nexport AWS_SECRET_ACCESS_KEY=\"s/cret\"\n",
        )
        .unwrap();
        assert_eq!(dev_key(&dir), Some(("AK".into(), "s/cret".into())));
        std::fs::write(dir.join("s3.env"), "AWS_ACCESS_KEY_ID=AK\n").unwrap();
        assert_eq!(dev_key(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_process_has_cpu_time_and_rss() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        assert!(status_kib(pid, "VmRSS").is_some_and(|kib| kib > 0));
    }
}
