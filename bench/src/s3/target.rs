//! The S3 servers `bench s3` measures: its own `photon dev` on a scratch
//! directory, a running node named by `--data-dir` or `--endpoint`, and a
//! single-node Garage set up by scripts/garage.sh (embedded in the binary,
//! so the benchmark runs from any directory).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::client::Endpoint;
use super::load::ensure_bucket;
pub use crate::child::WorkDir;
use crate::child::{free_port, log_tail, Proc};

/// Longest a server may take to start and accept a request.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `photon dev` may list its endpoints without an `s3` one before
/// the benchmark concludes that this build has no S3 service.
pub const S3_ENDPOINT_GRACE: Duration = Duration::from_secs(10);
/// The file `photon dev` writes with the S3 endpoint and its credentials.
pub const S3_ENV_FILE: &str = "s3.env";
/// The region PhotonCloud's S3 answers to unless its s3.env says otherwise.
pub const PHOTON_REGION: &str = "us-east-1";
/// The script that sets Garage up, embedded at build time.
pub const GARAGE_SCRIPT: &str = include_str!("../../../scripts/garage.sh");

/// A server being measured; its processes stop on drop.
pub struct Target {
    pub endpoint: Arc<Endpoint>,
    /// One line saying what runs: version, settings, data directory.
    pub description: String,
    processes: Vec<Proc>,
}

impl Target {
    /// An already running server: nothing to stop.
    pub fn external(endpoint: Endpoint, description: String) -> anyhow::Result<Self> {
        let endpoint = Arc::new(endpoint);
        ensure_bucket(&endpoint, STARTUP_TIMEOUT)?;
        Ok(Self {
            endpoint,
            description,
            processes: Vec::new(),
        })
    }

    /// Fails, with the end of its log, if a process of the target exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            process.check_alive()?;
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.endpoint.name
    }
}

/// The endpoint of a running photon node from `DIR/s3.env`.
pub fn photon_from_data_dir(dir: &Path, bucket: &str) -> anyhow::Result<Endpoint> {
    let env = read_env_file(&dir.join(S3_ENV_FILE))?;
    endpoint_from_env("photon", &env, bucket)
}

/// Starts `photon dev` (this very binary) on `dir`, waits for its s3.env.
pub fn start_photon(dir: &Path, extra_args: &[String], bucket: &str) -> anyhow::Result<Target> {
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
    // Every shard listens on the S3 address, so it cannot be port 0; a free
    // port keeps the default 9000 free for a node already running.
    if !extra_args.iter().any(|a| a.contains("s3.listen")) {
        command
            .arg("--set")
            .arg(format!("s3.listen=\"127.0.0.1:{}\"", free_port()?));
    }
    command.args(extra_args);
    let log = dir.with_extension("log");
    let mut process = Proc::spawn("photon dev".into(), &mut command, log)?;
    let env_file = dir.join(S3_ENV_FILE);
    let started = Instant::now();
    let mut listed_without_s3: Option<Instant> = None;
    while !env_file.exists() {
        process.check_alive()?;
        if started.elapsed() > STARTUP_TIMEOUT {
            bail!(
                "photon dev wrote no {} in {STARTUP_TIMEOUT:?}",
                env_file.display()
            );
        }
        if listed_without_s3.is_none() && endpoints_lack_s3(dir) {
            listed_without_s3 = Some(Instant::now());
        }
        if listed_without_s3.is_some_and(|t| t.elapsed() > S3_ENDPOINT_GRACE) {
            bail!(
                "photon dev runs but lists no s3 endpoint in {}/endpoints.json and wrote no \
                 {S3_ENV_FILE}: this build has no S3 service yet",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // s3.env may be written just before it is complete: retry a parse failure.
    let endpoint = retry_parse(|| photon_from_data_dir(dir, bucket))?;
    let endpoint = Arc::new(endpoint);
    ensure_bucket(&endpoint, STARTUP_TIMEOUT)?;
    process.check_alive()?;
    Ok(Target {
        description: format!(
            "photon {} `photon dev` (pid {}), data in {}",
            env!("CARGO_PKG_VERSION"),
            process.child.id(),
            dir.display()
        ),
        endpoint,
        processes: vec![process],
    })
}

fn endpoints_lack_s3(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("endpoints.json")) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map(|v| v["endpoints"].get("s3").is_none())
        .unwrap_or(false)
}

fn retry_parse<T>(mut parse: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut attempts = 0;
    loop {
        match parse() {
            Ok(v) => return Ok(v),
            Err(e) if attempts >= 20 => return Err(e),
            Err(_) => attempts += 1,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The garage binary: the flag's path, else the same name on PATH or in
/// ~/.cargo/bin (where `cargo install garage` puts it).
pub fn find_garage(flag: &Path) -> Option<PathBuf> {
    if flag.components().count() > 1 {
        return flag.is_file().then(|| flag.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(flag)).find(|p| p.is_file())
}

/// Settings of the Garage node the benchmark starts.
#[derive(Debug, Clone)]
pub struct GarageSettings {
    pub binary: PathBuf,
    pub fsync: bool,
    pub bucket: String,
}

/// Starts a single-node Garage on `dir`: scripts/garage.sh writes its
/// config, the benchmark runs `garage server` as its child (so that it dies
/// with the benchmark), then the script assigns the layout and creates the
/// key and the bucket, writing `dir/s3.env`.
pub fn start_garage(dir: &Path, settings: &GarageSettings) -> anyhow::Result<Target> {
    std::fs::create_dir_all(dir)?;
    let script = dir.join("garage.sh");
    std::fs::write(&script, GARAGE_SCRIPT)?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let script_env = |command: &mut Command| {
        command
            .env("GARAGE", &settings.binary)
            .env("GARAGE_S3_PORT", ports[0].to_string())
            .env("GARAGE_RPC_PORT", ports[1].to_string())
            .env("GARAGE_ADMIN_PORT", ports[2].to_string())
            .env("GARAGE_FSYNC", settings.fsync.to_string())
            .env("GARAGE_BUCKET", &settings.bucket);
    };
    run_script(&script, "config", dir, script_env)?;
    let mut command = Command::new(&settings.binary);
    command.arg("-c").arg(dir.join("garage.toml")).arg("server");
    let mut process = Proc::spawn("garage server".into(), &mut command, dir.join("server.log"))?;
    run_script(&script, "setup", dir, script_env)
        .and_then(|()| process.check_alive())
        .with_context(|| format!("garage server log:\n{}", log_tail(&process.log)))?;
    let env = read_env_file(&dir.join(S3_ENV_FILE))?;
    let endpoint = Arc::new(endpoint_from_env("garage", &env, &settings.bucket)?);
    ensure_bucket(&endpoint, STARTUP_TIMEOUT)?;
    let version = Command::new(&settings.binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Ok(Target {
        description: format!(
            "{} single node, lmdb metadata, compression off, fsync {}, data in {}",
            if version.is_empty() {
                "garage"
            } else {
                &version
            },
            if settings.fsync {
                "on (metadata_fsync, data_fsync)"
            } else {
                "off"
            },
            dir.display()
        ),
        endpoint,
        processes: vec![process],
    })
}

fn run_script(
    script: &Path,
    step: &str,
    dir: &Path,
    env: impl Fn(&mut Command),
) -> anyhow::Result<()> {
    let mut command = Command::new("bash");
    command.arg(script).arg(step).arg(dir);
    env(&mut command);
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "garage.sh {step} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Reads `KEY=VALUE` lines (an `export ` prefix and quotes are allowed,
/// `#` starts a comment).
pub fn read_env_file(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse_env(&text))
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_owned(), unquoted.to_owned()))
        })
        .collect()
}

fn endpoint_from_env(
    name: &str,
    env: &HashMap<String, String>,
    bucket: &str,
) -> anyhow::Result<Endpoint> {
    let get = |key: &str| {
        env.get(key)
            .filter(|v| !v.is_empty())
            .with_context(|| format!("{name}: {S3_ENV_FILE} has no {key}"))
    };
    let region = env
        .get("AWS_DEFAULT_REGION")
        .or_else(|| env.get("AWS_REGION"))
        .map_or(PHOTON_REGION, String::as_str);
    Endpoint::from_url(
        name,
        get("AWS_ENDPOINT_URL")?,
        get("AWS_ACCESS_KEY_ID")?,
        get("AWS_SECRET_ACCESS_KEY")?,
        region,
        bucket,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_parse_with_export_quotes_and_comments() {
        let env = parse_env(
            "# written by photon dev\nexport AWS_ACCESS_KEY_ID=AK\nAWS_SECRET_ACCESS_KEY=\"s/e=cret\"\n\
             AWS_ENDPOINT_URL='http://127.0.0.1:9000'\n\nAWS_DEFAULT_REGION=us-east-1\n",
        );
        assert_eq!(env["AWS_ACCESS_KEY_ID"], "AK");
        assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "s/e=cret");
        let endpoint = endpoint_from_env("photon", &env, "b").unwrap();
        assert_eq!(endpoint.host, "127.0.0.1:9000");
        assert_eq!(endpoint.region, "us-east-1");
        assert!(endpoint_from_env("photon", &parse_env("AWS_ACCESS_KEY_ID=a"), "b").is_err());
    }

    #[test]
    fn the_embedded_garage_script_has_every_step() {
        for step in ["config)", "setup)", "start)", "stop)"] {
            assert!(GARAGE_SCRIPT.contains(step), "{step}");
        }
    }
}
