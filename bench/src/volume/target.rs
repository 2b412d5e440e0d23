//! The block targets `bench volume` measures, each started on a scratch
//! directory of the run: a raw file (fio's io_uring engine, O_DIRECT),
//! nbdkit's memory plugin, qemu-nbd serving a raw file, and a CoronaFS volume
//! of the benchmark's own `photon dev`. Their processes stop on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::ValueEnum;

use super::fio::{short_size, Engine};
pub use crate::child::Stop;
use crate::child::{free_port, DevCtl, Proc};

/// Longest a server may take to start and accept a connection (photon:
/// also to elect its control-plane leader and accept a login).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one `photon ctl` command may run.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections qemu-nbd accepts at once (`-e`); fio opens one per run.
pub const QEMU_NBD_CLIENTS_MAX: u32 = 8;
/// The export name qemu-nbd serves.
pub const QEMU_NBD_EXPORT: &str = "bench";
/// The endpoint `photon dev` lists for NBD in its endpoints.json.
pub const PHOTON_NBD_ENDPOINT: &str = "nbd";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum TargetName {
    /// A raw file on the scratch filesystem through fio's io_uring engine, O_DIRECT.
    Raw,
    /// nbdkit's memory plugin through fio's nbd engine (no disk at all).
    Nbdkit,
    /// qemu-nbd serving a raw file (--cache=none --aio=io_uring).
    QemuNbd,
    /// A CoronaFS volume of the benchmark's own `photon dev`.
    Photon,
}

impl TargetName {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetName::Raw => "raw",
            TargetName::Nbdkit => "nbdkit",
            TargetName::QemuNbd => "qemu-nbd",
            TargetName::Photon => "photon",
        }
    }
}

/// What fio is pointed at.
enum Access {
    Fixed(Engine),
    /// A fresh attach URI for every run: attach tokens are short-lived.
    Photon(PhotonCtl),
}

/// A target being measured; its server (if any) stops on drop.
pub struct Target {
    pub name: TargetName,
    /// One line saying what runs: version, settings, data.
    pub description: String,
    access: Access,
    server: Option<Proc>,
}

impl Target {
    /// How fio reaches the target for its next run.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        match &self.access {
            Access::Fixed(engine) => Ok(engine.clone()),
            Access::Photon(ctl) => ctl.attach().map(Engine::Nbd),
        }
    }

    /// The server process, whose CPU time the report shows.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(|p| p.child.id())
    }

    /// Fails, with the end of its log, if the server exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match &mut self.server {
            Some(server) => server.check_alive(),
            None => Ok(()),
        }
    }
}

/// Paths and settings every target starts from.
pub struct StartSettings<'a> {
    pub dir: &'a Path,
    pub size_bytes: u64,
    pub nbdkit: &'a Path,
    pub qemu_nbd: &'a Path,
    pub volume: &'a str,
    pub photon_args: &'a [String],
    pub photon_spin_us: u64,
    pub stop: &'a Stop,
}

/// The arguments after `--nbd ADDR` (the tuning the report should show).
fn command_extra(command: &Command) -> Vec<String> {
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args.iter()
        .position(|a| a == "--set")
        .map_or_else(Vec::new, |at| args[at..].to_vec())
}

pub fn start(name: TargetName, settings: &StartSettings) -> anyhow::Result<Target> {
    let dir = settings.dir.join(name.as_str());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match name {
        TargetName::Raw => Ok(raw(&dir, settings.size_bytes)),
        TargetName::Nbdkit => start_nbdkit(&dir, settings),
        TargetName::QemuNbd => start_qemu_nbd(&dir, settings),
        TargetName::Photon => start_photon(&dir, settings),
    }
}

fn raw(dir: &Path, size_bytes: u64) -> Target {
    let file = dir.join("raw.img");
    Target {
        name: TargetName::Raw,
        description: format!(
            "fio io_uring engine, O_DIRECT, on a {} file {}",
            crate::disk::ByteSize(size_bytes),
            file.display()
        ),
        access: Access::Fixed(Engine::RawFile(file)),
        server: None,
    }
}

fn start_nbdkit(dir: &Path, settings: &StartSettings) -> anyhow::Result<Target> {
    let port = free_port()?;
    let mut command = Command::new(settings.nbdkit);
    command
        .args([
            "--foreground",
            "--exit-with-parent",
            "--ipaddr",
            "127.0.0.1",
        ])
        .arg("--port")
        .arg(port.to_string())
        .arg("memory")
        .arg(format!("size={}", settings.size_bytes));
    let mut server = Proc::spawn("nbdkit".into(), &mut command, dir.join("nbdkit.log"))
        .context("is nbdkit installed (apt-get install nbdkit)?")?;
    wait_for_port(port, &mut server, settings.stop)?;
    Ok(Target {
        name: TargetName::Nbdkit,
        description: format!(
            "{} memory plugin, size={} (default allocator and threads), 127.0.0.1:{port}",
            tool_version(settings.nbdkit, "nbdkit"),
            settings.size_bytes
        ),
        access: Access::Fixed(Engine::Nbd(format!("nbd://127.0.0.1:{port}/"))),
        server: Some(server),
    })
}

fn start_qemu_nbd(dir: &Path, settings: &StartSettings) -> anyhow::Result<Target> {
    let file = dir.join("qemu-nbd.img");
    let image = std::fs::File::create(&file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    image.set_len(settings.size_bytes)?;
    drop(image);
    let port = free_port()?;
    let mut command = Command::new(settings.qemu_nbd);
    command
        .args(["-f", "raw", "--cache=none", "--aio=io_uring", "-t"])
        .arg("-e")
        .arg(QEMU_NBD_CLIENTS_MAX.to_string())
        .arg("-p")
        .arg(port.to_string())
        .args(["-b", "127.0.0.1", "-x", QEMU_NBD_EXPORT])
        .arg(&file);
    let mut server = Proc::spawn("qemu-nbd".into(), &mut command, dir.join("qemu-nbd.log"))
        .context("is qemu-nbd installed (apt-get install qemu-utils)?")?;
    wait_for_port(port, &mut server, settings.stop)?;
    Ok(Target {
        name: TargetName::QemuNbd,
        description: format!(
            "{}: -f raw --cache=none --aio=io_uring -t -e {QEMU_NBD_CLIENTS_MAX} on {}",
            tool_version(settings.qemu_nbd, "qemu-nbd"),
            file.display()
        ),
        access: Access::Fixed(Engine::Nbd(format!(
            "nbd://127.0.0.1:{port}/{QEMU_NBD_EXPORT}"
        ))),
        server: Some(server),
    })
}

/// Waits until `port` on 127.0.0.1 accepts a connection.
fn wait_for_port(port: u16, server: &mut Proc, stop: &Stop) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    loop {
        stop.check()?;
        server.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            bail!(
                "{} accepts no connection on {addr} after {STARTUP_TIMEOUT:?}",
                server.name
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first line of `BINARY --version`, else `fallback`.
fn tool_version(binary: &Path, fallback: &str) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
}

/// `photon ctl` against the benchmark's `photon dev`, logged in as its
/// administrator with a token kept in the run's own config directory.
struct PhotonCtl {
    ctl: DevCtl,
    volume: String,
}

impl PhotonCtl {
    /// A fresh `nbd://` URI (with its attach token) for the volume.
    fn attach(&self) -> anyhow::Result<String> {
        let stdout = self.ctl.run(&["volume", "attach", &self.volume])?;
        parse_attach_uri(&stdout)
            .with_context(|| format!("photon ctl volume attach printed no nbd:// URI: {stdout:?}"))
    }
}

/// The `nbd://` URI in the output of `photon ctl volume attach`.
pub fn parse_attach_uri(stdout: &str) -> Option<String> {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("nbd://"))
        .map(str::to_owned)
}

/// `--size` for `photon ctl volume create`: `1G`, `512M`, or bytes.
pub fn volume_size_arg(bytes: u64) -> String {
    short_size(bytes).to_ascii_uppercase()
}

/// Starts `photon dev` (this very binary) with an NBD endpoint, logs in as
/// its administrator, creates the volume.
fn start_photon(dir: &Path, settings: &StartSettings) -> anyhow::Result<Target> {
    let exe = std::env::current_exe().context("cannot find the photon binary")?;
    check_photon_has_volumes(&exe)?;
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir)?;
    let mut command = Command::new(&exe);
    command.arg("dev").arg("--data-dir").arg(&data_dir).args([
        "--admin",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
    ]);
    // Every shard listens on the S3 address (SO_REUSEPORT), so it cannot be
    // port 0; a free port keeps the default free for a node already running
    // here. Port 0 for NBD picks a free one, listed in endpoints.json.
    if !settings.photon_args.iter().any(|a| a.contains("s3")) {
        command
            .arg("--s3")
            .arg(format!("127.0.0.1:{}", free_port()?));
    }
    if !settings.photon_args.iter().any(|a| a.contains("nbd")) {
        command.args(["--nbd", "127.0.0.1:0", "--nightlight", "127.0.0.1:0"]);
    }
    if !settings
        .photon_args
        .iter()
        .any(|a| a.contains("spin_before_park"))
    {
        command.args([
            "--set".to_owned(),
            format!("engine.spin_before_park_us={}", settings.photon_spin_us),
        ]);
    }
    command.args(settings.photon_args);
    let mut server = Proc::spawn("photon dev".into(), &mut command, dir.join("photon.log"))?;
    let (nbd, shards) = wait_for_nbd_endpoint(&data_dir, &mut server, settings.stop)?;
    let ctl = PhotonCtl {
        ctl: DevCtl {
            exe,
            data_dir: data_dir.clone(),
            config_dir: dir.join("ctl-config"),
            timeout: CTL_TIMEOUT,
        },
        volume: settings.volume.to_owned(),
    };
    ctl.ctl.login(&mut server, settings.stop, STARTUP_TIMEOUT)?;
    let size = volume_size_arg(settings.size_bytes);
    ctl.ctl
        .run(&["volume", "create", &ctl.volume, "--size", &size])?;
    // One attach up front, so a failing attach shows before the baselines run.
    let uri = ctl.attach()?;
    server.check_alive()?;
    Ok(Target {
        name: TargetName::Photon,
        description: format!(
            "photon {} `photon dev` (pid {}, {shards} shards, NBD on {nbd}, extra args {:?}), \
             volume {} of {size} (first URI {}), data in {}",
            env!("CARGO_PKG_VERSION"),
            server.child.id(),
            command_extra(&command),
            ctl.volume,
            redact_token(&uri),
            data_dir.display()
        ),
        access: Access::Photon(ctl),
        server: Some(server),
    })
}

/// A URI with its export name (the attach token) shortened, for the report.
fn redact_token(uri: &str) -> String {
    match uri.rsplit_once('/') {
        Some((base, token)) if token.len() > 12 => format!("{base}/{}...", &token[..8]),
        _ => uri.to_owned(),
    }
}

/// Fails early, with a clear message, on a build without CoronaFS.
fn check_photon_has_volumes(exe: &Path) -> anyhow::Result<()> {
    let dev_help = Command::new(exe).args(["dev", "--help"]).output()?;
    if !String::from_utf8_lossy(&dev_help.stdout).contains("--nbd") {
        bail!("this build's `photon dev` has no --nbd flag (no CoronaFS yet)");
    }
    let ctl_help = Command::new(exe)
        .args(["ctl", "volume", "--help"])
        .output()?;
    if !ctl_help.status.success() {
        bail!("this build has no `photon ctl volume` (no CoronaFS yet)");
    }
    Ok(())
}

/// Waits for endpoints.json to list the `nbd` and `control` endpoints;
/// returns the NBD address and the shard count.
fn wait_for_nbd_endpoint(
    data_dir: &Path,
    server: &mut Proc,
    stop: &Stop,
) -> anyhow::Result<(String, u64)> {
    let file = data_dir.join("endpoints.json");
    let started = Instant::now();
    loop {
        stop.check()?;
        server.check_alive()?;
        let doc = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if let Some(doc) = doc {
            let endpoints = &doc["endpoints"];
            if let (Some(nbd), Some(_)) = (
                endpoints[PHOTON_NBD_ENDPOINT].as_str(),
                endpoints["control"].as_str(),
            ) {
                return Ok((nbd.to_owned(), doc["shards"].as_u64().unwrap_or(0)));
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!(
                    "photon dev lists no {PHOTON_NBD_ENDPOINT} endpoint in {}: {doc}",
                    file.display()
                );
            }
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            bail!(
                "photon dev wrote no {} in {STARTUP_TIMEOUT:?}",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_output_gives_the_uri() {
        assert_eq!(
            parse_attach_uri("nbd://127.0.0.1:10809/v4.public.abc\n").as_deref(),
            Some("nbd://127.0.0.1:10809/v4.public.abc")
        );
        assert_eq!(
            parse_attach_uri("attached: nbd://127.0.0.1:1/t (expires in 1h)").as_deref(),
            Some("nbd://127.0.0.1:1/t")
        );
        assert_eq!(parse_attach_uri("no uri"), None);
        assert_eq!(
            redact_token("nbd://127.0.0.1:1/v4.public.abcdefghijkl"),
            "nbd://127.0.0.1:1/v4.publi..."
        );
    }

    #[test]
    fn volume_sizes_use_suffixes() {
        assert_eq!(volume_size_arg(1 << 30), "1G");
        assert_eq!(volume_size_arg(512 << 20), "512M");
        assert_eq!(volume_size_arg(4097), "4097");
    }
}
