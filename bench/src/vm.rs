//! `photon bench vm`: PlasmaVMC's create-to-ready time and memory per VM,
//! beside the floor measured in the same run: the same guest booted by a
//! plain `qemu-system-x86_64` command line with a local raw disk.
//!
//! The guest is the test guest of `scripts/build-test-guest.sh` (Debian's
//! kernel and a busybox initramfs that prints `PHOTON-GUEST-READY` on its
//! serial console), copied into the run's scratch directory first. The
//! benchmark starts its own `photon dev` on free ports there, imports the
//! guest once as image `tiny`, boots one untimed warm-up VM (it copies the
//! kernel and initrd into the node's cache and tells which accelerator
//! photon uses, which the floor then uses too), then times N VMs of each
//! kind one after another, interleaved (floor 1, photon 1, floor 2, ...) so
//! that a slow stretch of the shared machine hits both:
//!
//! * floor: from just before QEMU is spawned until its serial console (a
//!   pipe, read by a thread) shows the marker;
//! * photon: from just before `photon ctl vm create` until `photon ctl vm
//!   logs` shows the marker. The logs are polled, so a boot is seen up to
//!   one poll period late, and the polls' processes share the cores with
//!   the guest; both costs are measured and reported.
//!
//! Memory: each QEMU's VmRSS once its guest is ready, and the growth of the
//! `photon dev` process's VmRSS with N VMs running. Photon's QEMUs run
//! detached from it by design, so at the end every QEMU whose command line
//! names the scratch directory is killed, after `photon dev` (which would
//! otherwise restart them).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;

use crate::child::{free_port, log_tail, DevCtl, Proc, Stop, WorkDir};
use crate::report::{new_histogram, Latency, Table};

/// Most VMs timed per kind.
pub const VMS_MAX: u32 = 1000;
/// Most photon VMs kept running together for the memory measurement.
pub const RESIDENT_VMS_MAX: u32 = 32;
/// Guest memory bounds, MiB.
pub const MEMORY_MIB_MIN: u32 = 64;
pub const MEMORY_MIB_MAX: u32 = 16 * 1024;
/// Longest sleep between two `vm logs` polls.
pub const POLL_MS_MAX: u64 = 1000;
/// What the test guest prints on its serial console once booted.
pub const READY_MARKER: &str = "PHOTON-GUEST-READY";
/// The guest's kernel command line, in the image and on the floor.
pub const GUEST_CMDLINE: &str = "console=ttyS0 quiet";
/// The image's empty root disk, and each floor VM's raw file.
pub const ROOT_DISK_BYTES: u64 = 64 << 20;
/// Name of the image the benchmark imports.
pub const IMAGE: &str = "tiny";
/// Longest one VM may take from create (or spawn) to ready.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest `photon dev` may take to list its endpoints and accept a login.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one `photon ctl` command may run (`image import` copies the guest).
pub const CTL_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a VM may take to stop and its QEMU to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Wait after a guest is ready (or after VMs start) before reading RSS, so
/// that the numbers are of an idle guest and an idle node.
pub const SETTLE: Duration = Duration::from_millis(500);
/// Bytes of a floor console kept while looking for the marker.
pub const CONSOLE_BYTES_MAX: usize = 1 << 20;
/// Goal of the issue: photon's create-to-ready within this ratio of the floor.
pub const GOAL_READY_RATIO: f64 = 1.2;
/// Goal of the issue: photon's own memory per running VM, beyond QEMU's.
pub const GOAL_OVERHEAD_MIB_PER_VM: f64 = 10.0;

#[derive(Debug, Clone, Args)]
pub struct VmArgs {
    /// VMs timed per kind (floor and photon), one at a time, interleaved.
    #[arg(long, default_value_t = 10)]
    pub vms: u32,
    /// Memory of every guest, MiB.
    #[arg(long, default_value_t = 256)]
    pub memory_mib: u32,
    /// photon VMs kept running together to measure photon's own memory per VM.
    #[arg(long, default_value_t = 5)]
    pub resident_vms: u32,
    /// Sleep between two `photon ctl vm logs` polls, ms.
    #[arg(long, default_value_t = 25)]
    pub poll_ms: u64,
    /// The floor's `-cpu` model; default the one photon gives its VMs (max
    /// under TCG, host under KVM); `none` leaves QEMU's default.
    #[arg(long)]
    pub floor_cpu: Option<String>,
    /// The guest directory (vmlinuz, initrd.gz); default $PHOTON_TEST_GUEST,
    /// else what scripts/build-test-guest.sh builds.
    #[arg(long)]
    pub guest: Option<PathBuf>,
    /// The QEMU binary, of the floor and of photon (`compute.qemu`).
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// An extra argument for the `photon dev` the benchmark starts (repeat it).
    #[arg(long = "photon-arg", allow_hyphen_values = true)]
    pub photon_args: Vec<String>,
    /// Where the run's directory goes (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write the results as JSON to this file (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: VmArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let stop = Stop::install()?;
    let qemu_version = tool_version(&args.qemu)
        .with_context(|| format!("is {} installed?", args.qemu.display()))?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    // Locals drop in reverse order: photon dev dies first, then the sweeper
    // kills every QEMU of the run (a live photon would restart them), then
    // the directory goes.
    let work = WorkDir::create(&base, "vm")?;
    let sweeper = QemuSweeper(work.path.clone());
    let guest = Guest::copy_into(&guest_dir(&args)?, &work.path)?;
    let mut photon = Photon::start(&args, &work.path, &stop)?;
    let setup = prepare(&args, &mut photon, &guest, qemu_version, &stop)?;
    let floor_cpu = floor_cpu(&args, &setup.accel);
    let floor_line = floor_args(&args, &guest, &setup.accel, floor_cpu.as_deref(), "DISK");
    print_header(&args, &guest, &photon, &setup, &floor_line);
    let mut runs = Runs::default();
    for i in 1..=args.vms {
        stop.check()?;
        let floor = floor_vm(
            &args,
            &work.path,
            &guest,
            &setup,
            floor_cpu.as_deref(),
            i,
            &stop,
        )
        .with_context(|| format!("floor VM {i}"))?;
        eprintln!(
            "  floor {i}: ready in {:.0} ms",
            floor.ready.as_secs_f64() * 1e3
        );
        runs.floor.push(floor);
        let name = format!("vm{i}");
        let boot = photon.boot(&args, &name, &stop)?;
        photon.remove(&name, boot.pid, &stop)?;
        eprintln!(
            "  photon {i}: ready in {:.0} ms",
            boot.ready.as_secs_f64() * 1e3
        );
        runs.photon.push(boot);
    }
    let resident = resident_memory(&args, &mut photon, &stop)?;
    let doc = report(&args, &setup, &runs, &resident);
    drop(photon);
    drop(sweeper);
    if let Some(path) = &args.json {
        let doc = json!({
            "bench": "vm",
            "qemu": setup.qemu_version,
            "cpus": std::thread::available_parallelism().map_or(0, usize::from),
            "settings": {"vms": args.vms, "memory_mib": args.memory_mib,
                         "resident_vms": args.resident_vms, "poll_ms": args.poll_ms,
                         "guest_cmdline": GUEST_CMDLINE},
            "accel": setup.accel,
            "floor_command": floor_line,
            "results": doc,
        });
        write_json(path, &doc)?;
    }
    Ok(())
}

fn validate(args: &VmArgs) -> anyhow::Result<()> {
    if args.vms == 0 || args.vms > VMS_MAX {
        bail!("--vms must be in 1..={VMS_MAX}");
    }
    if !(MEMORY_MIB_MIN..=MEMORY_MIB_MAX).contains(&args.memory_mib) {
        bail!("--memory-mib must be in {MEMORY_MIB_MIN}..={MEMORY_MIB_MAX}");
    }
    if args.resident_vms == 0 || args.resident_vms > RESIDENT_VMS_MAX {
        bail!("--resident-vms must be in 1..={RESIDENT_VMS_MAX}");
    }
    if args.poll_ms > POLL_MS_MAX {
        bail!("--poll-ms must be at most {POLL_MS_MAX}");
    }
    Ok(())
}

/// The guest's files, copied into the scratch directory (the cache that
/// the script keeps may be rebuilt while the benchmark runs).
struct Guest {
    source: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
}

impl Guest {
    fn copy_into(source: &Path, work: &Path) -> anyhow::Result<Self> {
        let dir = work.join("guest");
        std::fs::create_dir_all(&dir)?;
        let copy = |name: &str| -> anyhow::Result<PathBuf> {
            let to = dir.join(name);
            std::fs::copy(source.join(name), &to)
                .with_context(|| format!("cannot copy {}", source.join(name).display()))?;
            Ok(to)
        };
        Ok(Self {
            kernel: copy("vmlinuz")?,
            initrd: copy("initrd.gz")?,
            source: source.to_path_buf(),
        })
    }
}

/// `--guest`, else `$PHOTON_TEST_GUEST`, else the last line that
/// scripts/build-test-guest.sh prints (it builds the guest once).
fn guest_dir(args: &VmArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.guest {
        return Ok(dir.clone());
    }
    if let Some(dir) = std::env::var_os("PHOTON_TEST_GUEST") {
        return Ok(dir.into());
    }
    let script = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/build-test-guest.sh"
    ));
    if !script.exists() {
        bail!(
            "no guest: pass --guest DIR or set PHOTON_TEST_GUEST (built by \
             scripts/build-test-guest.sh of the repository)"
        );
    }
    eprintln!(
        "building or finding the test guest with {}",
        script.display()
    );
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run bash")?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().map(str::trim).unwrap_or_default();
    if last.is_empty() {
        bail!("{} printed no guest directory", script.display());
    }
    Ok(PathBuf::from(last))
}

/// Kills every QEMU whose command line names the run's directory: photon's
/// VMs run detached from photon by design and would outlive the run.
struct QemuSweeper(PathBuf);

impl Drop for QemuSweeper {
    fn drop(&mut self) {
        let pids = qemu_pids(&self.0);
        for &pid in &pids {
            // SAFETY: kill(2) with a pid and a signal number; the pid is a
            // QEMU whose command line names this run's own directory.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !pids.is_empty() {
            eprintln!("killed {} QEMU process(es) of the run", pids.len());
        }
    }
}

fn qemu_pids(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("qemu-system") && c.contains(&needle)
            })
        })
        .collect()
}

/// Whether `pid` runs (a zombie has ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// A field of /proc/PID/status in KiB (`VmRSS`).
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&text, key)
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != key {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// CPU seconds of this process's children that ended and were reaped.
fn reaped_children_cpu_seconds() -> f64 {
    // SAFETY: a zeroed rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_CHILDREN with a pointer to a live rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The first line of `BINARY --version`.
fn tool_version(binary: &Path) -> anyhow::Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// The benchmark's `photon dev` and its `photon ctl`.
struct Photon {
    server: Proc,
    ctl: DevCtl,
    description: String,
}

/// One photon VM from create to ready.
#[derive(Debug, Clone)]
struct PhotonBoot {
    ready: Duration,
    /// How long `vm create` took to answer.
    create_call: Duration,
    /// `vm logs` calls until the marker showed, and their mean duration.
    polls: u32,
    poll_call_mean: Duration,
    /// The time between the last two polls' answers: the marker was
    /// printed at most this long before it was seen.
    detection: Duration,
    /// CPU of the `photon ctl` processes of this boot (create and polls).
    ctl_cpu: Duration,
    accel: String,
    pid: u32,
    qemu_rss_kib: Option<u64>,
}

impl Photon {
    /// Starts `photon dev` (this very binary) on free ports and logs in.
    fn start(args: &VmArgs, work: &Path, stop: &Stop) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the photon binary")?;
        let dir = work.join("photon");
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir)?;
        let mut command = Command::new(&exe);
        command.arg("dev").arg("--data-dir").arg(&data_dir).args([
            "--admin",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ]);
        // Every shard listens on the S3 address (SO_REUSEPORT), so it
        // cannot be port 0; NBD on port 0 is listed in endpoints.json.
        if !args.photon_args.iter().any(|a| a.contains("s3")) {
            command
                .arg("--s3")
                .arg(format!("127.0.0.1:{}", free_port()?));
        }
        if !args.photon_args.iter().any(|a| a.contains("nbd")) {
            command.args(["--nbd", "127.0.0.1:0", "--nightlight", "127.0.0.1:0"]);
        }
        let qemu = toml::Value::String(args.qemu.display().to_string());
        command.args(["--set".to_owned(), format!("compute.qemu={qemu}")]);
        command.args(&args.photon_args);
        let mut server = Proc::spawn("photon dev".into(), &mut command, dir.join("photon.log"))?;
        let started = Instant::now();
        let shards = wait_for_control(&data_dir, &mut server, stop)?;
        let ctl = DevCtl {
            exe,
            data_dir: data_dir.clone(),
            config_dir: dir.join("ctl-config"),
            timeout: CTL_TIMEOUT,
        };
        ctl.login(&mut server, stop, STARTUP_TIMEOUT)?;
        let description = format!(
            "photon {} `photon dev` (pid {}, {shards} shards, extra args {:?}), up in {:.1} s, \
             data in {}",
            env!("CARGO_PKG_VERSION"),
            server.child.id(),
            args.photon_args,
            started.elapsed().as_secs_f64(),
            data_dir.display()
        );
        Ok(Self {
            server,
            ctl,
            description,
        })
    }

    fn rss_kib(&self) -> Option<u64> {
        status_kib(self.server.child.id(), "VmRSS")
    }

    /// Creates VM `name` from the image and waits until its console shows
    /// the marker; then reads its QEMU's pid, accelerator and RSS.
    fn boot(&mut self, args: &VmArgs, name: &str, stop: &Stop) -> anyhow::Result<PhotonBoot> {
        let memory = format!("{}M", args.memory_mib);
        let ctl_cpu_before = reaped_children_cpu_seconds();
        let started = Instant::now();
        self.ctl
            .run(&["vm", "create", name, "--image", IMAGE, "--memory", &memory])?;
        let create_call = started.elapsed();
        let seen = self.wait_ready(args, name, started, stop)?;
        let ctl_cpu = (reaped_children_cpu_seconds() - ctl_cpu_before).max(0.0);
        let info = self.ctl.json(&["vm", "info", name])?;
        let pid = info["pid"].as_u64().unwrap_or(0) as u32;
        std::thread::sleep(SETTLE);
        Ok(PhotonBoot {
            ready: seen.at - started,
            create_call,
            polls: seen.polls,
            poll_call_mean: seen.poll_calls / seen.polls.max(1),
            detection: seen.period,
            ctl_cpu: Duration::from_secs_f64(ctl_cpu),
            accel: info["accel"].as_str().unwrap_or_default().to_owned(),
            pid,
            qemu_rss_kib: (pid != 0).then(|| status_kib(pid, "VmRSS")).flatten(),
        })
    }

    /// Polls `vm logs` until it shows the marker.
    fn wait_ready(
        &mut self,
        args: &VmArgs,
        name: &str,
        started: Instant,
        stop: &Stop,
    ) -> anyhow::Result<Seen> {
        let mut polls = 0u32;
        let mut poll_calls = Duration::ZERO;
        let mut previous = Instant::now();
        loop {
            stop.check()?;
            let asked = Instant::now();
            let result = self.ctl.run(&["vm", "logs", name]);
            let answered = Instant::now();
            polls += 1;
            poll_calls += answered - asked;
            let last = match result {
                Ok(log) if log.contains(READY_MARKER) => {
                    return Ok(Seen {
                        at: answered,
                        polls,
                        poll_calls,
                        period: answered - previous,
                    });
                }
                Ok(log) => log,
                // The agent may not have made the VM's console log yet.
                Err(e) => format!("{e:#}"),
            };
            previous = answered;
            if started.elapsed() > BOOT_TIMEOUT {
                self.server.check_alive()?;
                let info = self.ctl.run(&["vm", "info", name]).unwrap_or_default();
                bail!(
                    "vm {name}: no {READY_MARKER} in {BOOT_TIMEOUT:?}; last logs: {last}\n{info}"
                );
            }
            std::thread::sleep(Duration::from_millis(args.poll_ms));
        }
    }

    /// `vm stop --force`, then `vm rm` once it is stopped; returns when its
    /// QEMU has exited, so that the next boot has the cores to itself.
    fn remove(&mut self, name: &str, pid: u32, stop: &Stop) -> anyhow::Result<()> {
        self.ctl.run(&["vm", "stop", "--force", name])?;
        let started = Instant::now();
        loop {
            stop.check()?;
            let info = self.ctl.json(&["vm", "info", name])?;
            if info["state"] == "stopped" {
                break;
            }
            if started.elapsed() > STOP_TIMEOUT {
                bail!("vm {name} not stopped after {STOP_TIMEOUT:?}: {info}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.ctl.run(&["vm", "rm", name])?;
        while pid != 0 && alive(pid) {
            stop.check()?;
            if started.elapsed() > STOP_TIMEOUT {
                bail!("vm {name}: QEMU pid {pid} still runs after vm rm");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// How a photon VM's marker was seen: the boot time ends at the answer of
/// the `vm logs` call that showed it.
struct Seen {
    at: Instant,
    polls: u32,
    poll_calls: Duration,
    /// The time between the last two answers.
    period: Duration,
}

/// Waits for endpoints.json to list the `control` endpoint; returns the
/// shard count.
fn wait_for_control(data_dir: &Path, server: &mut Proc, stop: &Stop) -> anyhow::Result<u64> {
    let file = data_dir.join("endpoints.json");
    let started = Instant::now();
    loop {
        stop.check()?;
        server.check_alive()?;
        let doc = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if let Some(doc) = doc.filter(|d| d["endpoints"]["control"].is_string()) {
            return Ok(doc["shards"].as_u64().unwrap_or(0));
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            bail!(
                "photon dev listed no control endpoint in {} in {STARTUP_TIMEOUT:?}",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the runs start from: the image, the warm-up VM, the accelerator.
struct Setup {
    /// The first line of `qemu-system-x86_64 --version`.
    qemu_version: String,
    import: Duration,
    warmup: PhotonBoot,
    accel: String,
    /// photon dev's RSS after the import, before any VM (KiB).
    rss_after_import_kib: Option<u64>,
}

/// Imports the image, then boots and removes one untimed warm-up VM.
fn prepare(
    args: &VmArgs,
    photon: &mut Photon,
    guest: &Guest,
    qemu_version: String,
    stop: &Stop,
) -> anyhow::Result<Setup> {
    let disk = photon.ctl.data_dir.with_file_name("root.raw");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(ROOT_DISK_BYTES))
        .with_context(|| format!("cannot create {}", disk.display()))?;
    let started = Instant::now();
    let image = photon.ctl.json(&[
        "image",
        "import",
        IMAGE,
        "--from",
        &disk.display().to_string(),
        "--kernel",
        &guest.kernel.display().to_string(),
        "--initrd",
        &guest.initrd.display().to_string(),
        "--cmdline",
        GUEST_CMDLINE,
    ])?;
    let import = started.elapsed();
    if image["state"] != "ready" {
        bail!("image {IMAGE} imported but not ready: {image}");
    }
    eprintln!("image {IMAGE} imported in {:.1} s", import.as_secs_f64());
    std::thread::sleep(SETTLE);
    let rss_after_import_kib = photon.rss_kib();
    let warmup = photon.boot(args, "warmup", stop)?;
    photon.remove("warmup", warmup.pid, stop)?;
    eprintln!(
        "warm-up VM ready in {:.0} ms (untimed), accel {}",
        warmup.ready.as_secs_f64() * 1e3,
        warmup.accel
    );
    let accel = match warmup.accel.as_str() {
        a @ ("kvm" | "tcg") => a.to_owned(),
        other => bail!("vm info of the warm-up VM gave accel {other:?}, not kvm or tcg"),
    };
    Ok(Setup {
        qemu_version,
        import,
        warmup,
        accel,
        rss_after_import_kib,
    })
}

/// The floor's `-cpu`: `--floor-cpu`, else photon's choice for `accel`.
fn floor_cpu(args: &VmArgs, accel: &str) -> Option<String> {
    match args.floor_cpu.as_deref() {
        Some("none") => None,
        Some(model) => Some(model.to_owned()),
        None if accel == "kvm" => Some("host".into()),
        None => Some("max".into()),
    }
}

/// The floor's command line (without the binary): the same guest, memory,
/// machine, accelerator and NIC as photon's VMs, a local raw disk, and the
/// serial console on QEMU's stdout.
fn floor_args(
    args: &VmArgs,
    guest: &Guest,
    accel: &str,
    cpu: Option<&str>,
    disk: &str,
) -> Vec<String> {
    let cpu = cpu.map_or(String::new(), |c| format!(" -cpu {c}"));
    let fixed = format!(
        "-accel {accel}{cpu} -M q35 -m {} -nodefaults -display none -serial stdio \
         -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=",
        args.memory_mib
    );
    let mut a: Vec<String> = fixed.split(' ').map(str::to_owned).collect();
    let kernel = guest.kernel.display().to_string();
    let initrd = guest.initrd.display().to_string();
    let drive = format!("file={},format=raw,if=virtio", disk.replace(',', ",,"));
    let paths = [
        "-kernel",
        &kernel,
        "-initrd",
        &initrd,
        "-append",
        GUEST_CMDLINE,
    ];
    a.extend(paths.into_iter().map(str::to_owned));
    a.extend(["-drive".to_owned(), drive]);
    a
}

/// One floor VM from spawn to ready.
#[derive(Debug, Clone)]
struct FloorBoot {
    ready: Duration,
    qemu_rss_kib: Option<u64>,
}

/// Boots floor VM `i` (a fresh local raw file), waits for the marker on
/// its console, reads its RSS and kills it.
fn floor_vm(
    args: &VmArgs,
    dir: &Path,
    guest: &Guest,
    setup: &Setup,
    cpu: Option<&str>,
    i: u32,
    stop: &Stop,
) -> anyhow::Result<FloorBoot> {
    let disk = dir.join(format!("floor-{i}.raw"));
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(ROOT_DISK_BYTES))
        .with_context(|| format!("cannot create {}", disk.display()))?;
    let log = dir.join(format!("floor-{i}.log"));
    let mut command = Command::new(&args.qemu);
    let disk_arg = disk.display().to_string();
    command.args(floor_args(args, guest, &setup.accel, cpu, &disk_arg));
    let stderr = std::fs::File::create(&log)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent; it runs in the child between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", args.qemu.display()))?;
    let console = child.stdout.take().context("no stdout")?;
    // Killed and reaped on drop, also on the error paths.
    let mut qemu = Proc {
        name: format!("floor QEMU {i}"),
        child,
        log,
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    let reader = std::thread::spawn(move || watch_console(console, tx));
    let result = wait_floor_ready(&mut qemu, &rx, started, stop).map(|ready| {
        std::thread::sleep(SETTLE);
        let qemu_rss_kib = status_kib(qemu.child.id(), "VmRSS");
        FloorBoot {
            ready,
            qemu_rss_kib,
        }
    });
    drop(qemu);
    let _ = reader.join();
    let _ = std::fs::remove_file(&disk);
    result
}

fn wait_floor_ready(
    qemu: &mut Proc,
    ready: &crossbeam_channel::Receiver<Instant>,
    started: Instant,
    stop: &Stop,
) -> anyhow::Result<Duration> {
    use crossbeam_channel::RecvTimeoutError;
    loop {
        match ready.recv_timeout(Duration::from_millis(100)) {
            Ok(at) => return Ok(at.saturating_duration_since(started)),
            Err(RecvTimeoutError::Disconnected) => {
                qemu.check_alive()?;
                bail!("{}: console closed without {READY_MARKER}", qemu.name);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        stop.check()?;
        qemu.check_alive()?;
        if started.elapsed() > BOOT_TIMEOUT {
            bail!(
                "{}: no {READY_MARKER} in {BOOT_TIMEOUT:?}; its stderr:\n{}",
                qemu.name,
                log_tail(&qemu.log)
            );
        }
    }
}

/// Reads a floor console until it ends; sends the instant the marker
/// arrived (the console is drained to the end so QEMU never blocks on it).
fn watch_console(mut console: impl Read, ready: crossbeam_channel::Sender<Instant>) {
    let mut seen: Vec<u8> = Vec::new();
    let mut found = false;
    let mut buf = [0u8; 4096];
    while let Ok(n) = console.read(&mut buf) {
        if n == 0 {
            break;
        }
        if found {
            continue;
        }
        let at = Instant::now();
        seen.extend_from_slice(&buf[..n]);
        let marker = READY_MARKER.as_bytes();
        if seen.windows(marker.len()).any(|w| w == marker) {
            found = true;
            let _ = ready.send(at);
        } else if seen.len() > CONSOLE_BYTES_MAX {
            // Keep what a marker cut in two could start with.
            seen.drain(..seen.len() - marker.len());
        }
    }
}

#[derive(Debug, Default)]
struct Runs {
    floor: Vec<FloorBoot>,
    photon: Vec<PhotonBoot>,
}

/// photon's own memory with VMs running.
struct Resident {
    before_kib: Option<u64>,
    after_kib: Option<u64>,
    boots: Vec<PhotonBoot>,
}

impl Resident {
    /// VmRSS growth per running VM, MiB.
    fn per_vm_mib(&self) -> Option<f64> {
        let vms = u32::try_from(self.boots.len()).ok().filter(|&n| n > 0)?;
        Some((self.after_kib? as f64 - self.before_kib? as f64) / 1024.0 / f64::from(vms))
    }
}

/// Starts `--resident-vms` photon VMs one after another (each until
/// ready) and keeps them running; photon's RSS before and after. They are
/// killed with the run.
fn resident_memory(args: &VmArgs, photon: &mut Photon, stop: &Stop) -> anyhow::Result<Resident> {
    std::thread::sleep(SETTLE);
    let before_kib = photon.rss_kib();
    let mut boots = Vec::new();
    for i in 1..=args.resident_vms {
        let boot = photon.boot(args, &format!("resident{i}"), stop)?;
        eprintln!(
            "  resident {i}: ready in {:.0} ms with {} other VM(s) running",
            boot.ready.as_secs_f64() * 1e3,
            i - 1
        );
        boots.push(boot);
    }
    std::thread::sleep(SETTLE);
    photon.server.check_alive()?;
    Ok(Resident {
        before_kib,
        after_kib: photon.rss_kib(),
        boots,
    })
}

fn print_header(args: &VmArgs, guest: &Guest, photon: &Photon, setup: &Setup, floor: &[String]) {
    println!(
        "photon bench vm: create-to-ready of {} VMs per kind, one at a time, interleaved \
         (floor 1, photon 1, floor 2, ...); guest {} (copied to the run), 1 vCPU, {} MiB, \
         accel {}; {}; {} CPUs",
        args.vms,
        guest.source.display(),
        args.memory_mib,
        setup.accel,
        setup.qemu_version,
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    println!(
        "  floor: {} {} (console on a pipe read by a thread; a fresh sparse {} MiB raw file \
         per VM)",
        args.qemu.display(),
        shell_words(floor),
        ROOT_DISK_BYTES >> 20
    );
    println!("  photon: {}", photon.description);
    println!(
        "  photon: image {IMAGE} imported in {:.1} s; per VM `photon ctl vm create vmI --image \
         {IMAGE} --memory {}M`, then `photon ctl vm logs vmI` every {} ms until the marker; \
         `vm stop --force` and `vm rm` after each",
        setup.import.as_secs_f64(),
        args.memory_mib,
        args.poll_ms
    );
    println!(
        "  warm-up (untimed): one photon VM, ready in {:.0} ms (the node's first VM from the \
         image: its kernel and initrd are copied into the node's cache, the accelerator probed)",
        setup.warmup.ready.as_secs_f64() * 1e3
    );
}

/// Arguments as a shell would need them (quoted when they hold a space).
fn shell_words(args: &[String]) -> String {
    let word = |a: &String| {
        if a.is_empty() || a.contains([' ', '\'', '"']) {
            format!("'{}'", a.replace('\'', "'\\''"))
        } else {
            a.clone()
        }
    };
    args.iter().map(word).collect::<Vec<_>>().join(" ")
}

/// Percentiles in microseconds, and the minimum.
fn latency_of(ready: impl Iterator<Item = Duration>) -> (Latency, u64) {
    let mut h = new_histogram();
    for d in ready {
        h.saturating_record((d.as_micros() as u64).max(1));
    }
    (Latency::from_histogram(&h), h.min())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// The median of some values (the lower middle for an even count).
fn median(mut values: Vec<u64>) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len().saturating_sub(1) / 2).copied()
}

fn mean_ms<'a>(boots: &'a [PhotonBoot], of: impl Fn(&'a PhotonBoot) -> Duration) -> f64 {
    let sum: f64 = boots.iter().map(|b| of(b).as_secs_f64()).sum();
    sum / boots.len().max(1) as f64 * 1e3
}

fn ms_list(times: impl Iterator<Item = Duration>) -> String {
    let list: Vec<String> = times
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
        .collect();
    list.join(" ")
}

/// Prints the table, the ratios and the memory; returns them as JSON.
fn report(args: &VmArgs, setup: &Setup, runs: &Runs, resident: &Resident) -> serde_json::Value {
    let (floor, floor_min) = latency_of(runs.floor.iter().map(|b| b.ready));
    let (photon, photon_min) = latency_of(runs.photon.iter().map(|b| b.ready));
    let floor_rss = median(runs.floor.iter().filter_map(|b| b.qemu_rss_kib).collect());
    let photon_rss = median(runs.photon.iter().filter_map(|b| b.qemu_rss_kib).collect());
    println!(
        "\n== create-to-ready, ms (hdrhistogram; with {} VMs per kind p99 is the slowest); \
         QEMU VmRSS p50, {} ms after ready ==",
        args.vms,
        SETTLE.as_millis()
    );
    let header = [
        "system", "VMs", "p50 ms", "p99 ms", "mean ms", "min ms", "max ms", "QEMU RSS",
    ];
    let mut table = Table::new(&header);
    let rows = [
        ("floor", &floor, floor_min, floor_rss),
        ("photon", &photon, photon_min, photon_rss),
    ];
    for (name, l, min, rss) in rows {
        let ms = |us: u64| format!("{:.0}", us as f64 / 1e3);
        table.row(vec![
            name.into(),
            l.count.to_string(),
            ms(l.p50_us),
            ms(l.p99_us),
            format!("{:.0}", l.mean_us / 1e3),
            ms(min),
            ms(l.max_us),
            mib(rss),
        ]);
    }
    print!("{table}");
    let ratio = |p: u64, f: u64| (f > 0).then(|| p as f64 / f as f64);
    let (p50, p99) = (
        ratio(photon.p50_us, floor.p50_us),
        ratio(photon.p99_us, floor.p99_us),
    );
    let verdict = |r: Option<f64>| match r {
        Some(r) if r <= GOAL_READY_RATIO => format!("{r:.2}x (met)"),
        Some(r) => format!("{r:.2}x (NOT met)"),
        None => "missing".into(),
    };
    println!(
        "photon/floor create-to-ready: p50 {}, p99 {}; goal <= {GOAL_READY_RATIO}x",
        verdict(p50),
        verdict(p99)
    );
    print_photon_detail(args, &runs.photon);
    println!(
        "per VM, ms, in order: floor {}; photon {}",
        ms_list(runs.floor.iter().map(|b| b.ready)),
        ms_list(runs.photon.iter().map(|b| b.ready))
    );
    let memory = print_memory(floor_rss, photon_rss, setup, resident);
    json!({
        "floor": {"latency_us": floor.to_json(), "qemu_rss_kib_p50": floor_rss,
                  "runs": runs.floor.iter().map(|b| json!({"ready_us": b.ready.as_micros() as u64,
                      "qemu_rss_kib": b.qemu_rss_kib})).collect::<Vec<_>>()},
        "photon": {"latency_us": photon.to_json(), "qemu_rss_kib_p50": photon_rss,
                   "runs": runs.photon.iter().map(photon_json).collect::<Vec<_>>()},
        "photon_vs_floor": {"p50": p50, "p99": p99, "goal": GOAL_READY_RATIO},
        "warmup": photon_json(&setup.warmup),
        "import_s": setup.import.as_secs_f64(),
        "memory": memory,
    })
}

/// Where photon's time goes, and what the polling costs.
fn print_photon_detail(args: &VmArgs, photon: &[PhotonBoot]) {
    let polls = photon.iter().map(|b| f64::from(b.polls)).sum::<f64>() / photon.len() as f64;
    println!(
        "photon, means per VM: `vm create` answered in {:.0} ms; {polls:.0} `vm logs` polls of \
         {:.0} ms each, {} ms apart, so a ready guest is seen up to one poll period late (last \
         period {:.0} ms); the `photon ctl` processes used {:.0} ms of CPU per boot, on the \
         cores the guest boots on",
        mean_ms(photon, |b| b.create_call),
        mean_ms(photon, |b| b.poll_call_mean),
        args.poll_ms,
        mean_ms(photon, |b| b.detection),
        mean_ms(photon, |b| b.ctl_cpu),
    );
}

fn print_memory(
    floor_rss: Option<u64>,
    photon_rss: Option<u64>,
    setup: &Setup,
    resident: &Resident,
) -> serde_json::Value {
    println!("\n== memory (VmRSS) ==");
    let difference = floor_rss
        .zip(photon_rss)
        .map(|(f, p)| (p as f64 - f as f64) / 1024.0);
    println!(
        "QEMU with the guest ready (p50 of the timed VMs): floor {}, photon's {} (photon - \
         floor: {})",
        mib(floor_rss),
        mib(photon_rss),
        difference.map_or("-".into(), |d| format!("{d:+.1} MiB"))
    );
    let per_vm = resident.per_vm_mib();
    let goal = match per_vm {
        Some(v) if v <= GOAL_OVERHEAD_MIB_PER_VM => "met",
        Some(_) => "NOT met",
        None => "missing",
    };
    println!(
        "photon dev: {} after the import, {} before {} resident VMs, {} with them running: {} \
         per VM; goal <= {GOAL_OVERHEAD_MIB_PER_VM} MiB per VM beyond QEMU's: {goal}",
        mib(setup.rss_after_import_kib),
        mib(resident.before_kib),
        resident.boots.len(),
        mib(resident.after_kib),
        per_vm.map_or("-".into(), |v| format!("{v:+.2} MiB")),
    );
    let qemus: Vec<String> = resident.boots.iter().map(|b| mib(b.qemu_rss_kib)).collect();
    println!(
        "resident VMs ready in {} ms (with 0, 1, ... others running); their QEMUs: {}",
        ms_list(resident.boots.iter().map(|b| b.ready)),
        qemus.join(", ")
    );
    json!({
        "floor_qemu_rss_kib_p50": floor_rss,
        "photon_qemu_rss_kib_p50": photon_rss,
        "photon_rss_kib_after_import": setup.rss_after_import_kib,
        "photon_rss_kib_before_resident": resident.before_kib,
        "photon_rss_kib_with_resident": resident.after_kib,
        "photon_rss_mib_per_vm": per_vm,
        "goal_mib_per_vm": GOAL_OVERHEAD_MIB_PER_VM,
        "resident": resident.boots.iter().map(photon_json).collect::<Vec<_>>(),
    })
}

fn photon_json(b: &PhotonBoot) -> serde_json::Value {
    let us = |d: Duration| d.as_micros() as u64;
    json!({
        "ready_us": us(b.ready),
        "create_call_us": us(b.create_call),
        "polls": b.polls,
        "poll_call_mean_us": us(b.poll_call_mean),
        "last_poll_period_us": us(b.detection),
        "ctl_cpu_us": us(b.ctl_cpu),
        "accel": b.accel,
        "qemu_rss_kib": b.qemu_rss_kib,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: VmArgs,
    }

    fn parse(argv: &[&str]) -> VmArgs {
        Cli::try_parse_from(std::iter::once("vm").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults_follow_the_issue_and_validate() {
        let args = parse(&[]);
        assert_eq!((args.vms, args.memory_mib, args.resident_vms), (10, 256, 5));
        validate(&args).unwrap();
        assert!(validate(&parse(&["--vms", "0"])).is_err());
        assert!(validate(&parse(&["--memory-mib", "8"])).is_err());
        assert!(validate(&parse(&["--poll-ms", "5000"])).is_err());
    }

    #[test]
    fn the_floor_matches_photons_machine() {
        let args = parse(&["--memory-mib", "512"]);
        let guest = Guest {
            source: "/g".into(),
            kernel: "/w/guest/vmlinuz".into(),
            initrd: "/w/guest/initrd.gz".into(),
        };
        let line = floor_args(
            &args,
            &guest,
            "tcg",
            floor_cpu(&args, "tcg").as_deref(),
            "/w/a,b.raw",
        )
        .join(" ");
        assert!(
            line.starts_with("-accel tcg -cpu max -M q35 -m 512 -nodefaults"),
            "{line}"
        );
        assert!(
            line.contains("-drive file=/w/a,,b.raw,format=raw,if=virtio"),
            "{line}"
        );
        assert!(line.contains("-append console=ttyS0 quiet"), "{line}");
        assert!(line.contains("virtio-net-pci,netdev=n0,romfile="), "{line}");
        assert_eq!(floor_cpu(&args, "kvm").as_deref(), Some("host"));
        assert_eq!(floor_cpu(&parse(&["--floor-cpu", "none"]), "tcg"), None);
        assert_eq!(
            shell_words(&["-append".into(), "console=ttyS0 quiet".into()]),
            "-append 'console=ttyS0 quiet'"
        );
    }

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tqemu\nVmRSS:\t  123456 kB\nRssAnon:\t  1000 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(123_456));
        assert_eq!(parse_status_kib(status, "RssAnon"), Some(1000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert!(status_kib(std::process::id(), "VmRSS").unwrap() > 0);
    }

    #[test]
    fn the_console_watcher_finds_a_marker_cut_in_two() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let first = std::io::Cursor::new(b"boot...\nPHOTON-GU".to_vec());
        let second = std::io::Cursor::new(b"EST-READY\n~ # ".to_vec());
        watch_console(first.chain(second), tx);
        assert!(rx.try_recv().is_ok());
        let (tx, rx) = crossbeam_channel::bounded(1);
        watch_console(std::io::Cursor::new(b"PHOTON-GUEST-BOOTED\n".to_vec()), tx);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn medians_and_histograms() {
        assert_eq!(median(vec![3, 1, 2]), Some(2));
        assert_eq!(median(vec![4, 1, 3, 2]), Some(2));
        assert_eq!(median(vec![]), None);
        let (l, min) = latency_of([1, 2, 3].into_iter().map(Duration::from_millis));
        assert_eq!(l.count, 3);
        assert!((1990..=2010).contains(&l.p50_us), "{l:?}");
        assert!((995..=1005).contains(&min), "{min}");
    }
}
