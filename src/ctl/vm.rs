//! `photon ctl vm` and `photon ctl image`: PlasmaVMC's virtual machines and
//! the images they start from, in the caller's project.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use photon_control::client::{Client, ConsoleEvent, ImageInfo, ImageSpec, VmInfo, VmSpec};
use serde_json::json;

use crate::ctl::fetch::{fetch, image_info, Fetched, Source};
use crate::ctl::output::Output;
use crate::ctl::utc_time;
use crate::ctl::volume::parse_size;

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create a VM from an image (its boot disk is a copy-on-write clone)
    /// or from an existing volume, and start it.
    Create {
        name: String,
        #[arg(long, required_unless_present = "volume", conflicts_with = "volume")]
        image: Option<String>,
        /// Boot from this volume instead of an image.
        #[arg(long)]
        volume: Option<String>,
        /// More volumes to attach (read-write), in order.
        #[arg(long = "attach")]
        attach: Vec<String>,
        #[arg(long, default_value_t = 1)]
        cpus: u32,
        /// Memory: MiB or with a unit (512M, 2G).
        #[arg(long, default_value = "512M", value_parser = parse_size)]
        memory: u64,
        /// cloud-init user data (a `#cloud-config` or a script).
        #[arg(long)]
        user_data: Option<PathBuf>,
        /// An SSH public key file for cloud-init (repeatable).
        #[arg(long = "ssh-key")]
        ssh_key: Vec<PathBuf>,
        /// always, on-failure (default) or never.
        #[arg(long)]
        restart: Option<String>,
        /// Create it without starting it.
        #[arg(long)]
        stopped: bool,
    },
    /// List the project's VMs.
    Ls,
    /// Show one VM: what was asked, and what its node's agent sees.
    Info {
        name: String,
    },
    Start {
        name: String,
    },
    /// Ask the guest to power off (ACPI); pull the plug after the node's
    /// stop timeout, or at once with --force.
    Stop {
        name: String,
        #[arg(long)]
        force: bool,
    },
    Reboot {
        name: String,
    },
    /// Move a running VM to another compute node while it runs (live
    /// migration; its disks stay where they are, on CoronaFS).
    Migrate {
        name: String,
        /// The destination's node id (`photon ctl node ls`).
        #[arg(long)]
        to: u64,
        /// Wait until it completed (or failed) instead of returning at once.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up waiting after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Delete a VM and the volumes made with it.
    Rm {
        name: String,
        /// Keep the volumes made with it (its boot disk clone).
        #[arg(long)]
        keep_volumes: bool,
    },
    /// Print the serial console's log.
    Logs {
        name: String,
        /// Bytes from the end (default 64K).
        #[arg(long, value_parser = parse_size)]
        tail: Option<u64>,
    },
    /// Attach to the serial console (Ctrl-] leaves).
    Console {
        name: String,
        /// When input ends (stdin is not a terminal), leave this many
        /// seconds later instead of when the console closes.
        #[arg(long)]
        linger: Option<u64>,
    },
    /// Add a volume to a stopped VM.
    AttachVolume {
        name: String,
        volume: String,
        #[arg(long)]
        read_only: bool,
    },
    /// Remove a volume from a stopped VM.
    DetachVolume {
        name: String,
        volume: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image: a bootable disk (raw or qcow2), or for direct boot
    /// a disk plus a kernel and initrd. Each comes from a file, an
    /// http(s):// URL or s3://BUCKET/KEY (with the aws CLI's AWS_*
    /// variables); downloads need curl. Needs qemu-img.
    Import {
        name: String,
        /// The disk image: FILE, http(s)://URL or s3://BUCKET/KEY.
        #[arg(long, value_parser = Source::parse)]
        from: Source,
        /// raw or qcow2 (detected when omitted).
        #[arg(long)]
        format: Option<String>,
        /// A kernel to boot directly (the disk is then its root disk):
        /// FILE, http(s)://URL or s3://BUCKET/KEY.
        #[arg(long, value_parser = Source::parse)]
        kernel: Option<Source>,
        #[arg(long, requires = "kernel", value_parser = Source::parse)]
        initrd: Option<Source>,
        /// The kernel's command line.
        #[arg(long, requires = "kernel", default_value = "console=ttyS0")]
        cmdline: String,
    },
    Ls,
    Info {
        name: String,
    },
    /// Delete an image (VMs made from it keep their disks).
    Rm {
        name: String,
    },
}

pub async fn run(client: &mut Client, cmd: VmCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        VmCommand::Create {
            name,
            image,
            volume,
            attach,
            cpus,
            memory,
            user_data,
            ssh_key,
            restart,
            stopped,
        } => {
            let user_data = match user_data {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => None,
            };
            let ssh_keys = ssh_key
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map(|k| k.trim().to_owned())
                        .with_context(|| format!("cannot read {}", p.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let memory_mib = u32::try_from(memory >> 20).unwrap_or(u32::MAX);
            let spec = VmSpec {
                name,
                image,
                volume,
                extra_volumes: attach,
                cpus,
                memory_mib,
                user_data,
                ssh_keys,
                restart,
                stopped,
            };
            let vm = client.create_vm(&spec).await?;
            show(&vm, out, "created");
        }
        VmCommand::Ls => {
            let vms = client.list_vms().await?;
            out.list(
                &vms,
                [
                    "NAME", "STATE", "ASKED", "CPUS", "MEMORY", "IMAGE", "NODE", "CREATED",
                ],
                |v| {
                    [
                        v.name.clone(),
                        v.state.clone(),
                        v.power.clone(),
                        v.cpus.to_string(),
                        format!("{}M", v.memory_mib),
                        v.image.clone().unwrap_or_else(|| "-".into()),
                        v.node.to_string(),
                        utc_time(v.created_ms),
                    ]
                },
            );
        }
        VmCommand::Info { name } => out.show(&client.vm_info(&name).await?, info_text),
        VmCommand::Start { name } => show(&client.start_vm(&name).await?, out, "starting"),
        VmCommand::Stop { name, force } => {
            show(&client.stop_vm(&name, force).await?, out, "stopping")
        }
        VmCommand::Reboot { name } => show(&client.reboot_vm(&name).await?, out, "rebooting"),
        VmCommand::Migrate {
            name,
            to,
            wait,
            timeout,
        } => migrate(client, &name, to, wait, timeout, out).await?,
        VmCommand::Rm { name, keep_volumes } => {
            client.delete_vm(&name, keep_volumes).await?;
            out.done(json!({"deleted": name}), format!("deleted vm {name}"));
        }
        VmCommand::Logs { name, tail } => {
            let tail = u32::try_from(tail.unwrap_or(0)).unwrap_or(u32::MAX);
            let data = client.vm_logs(&name, tail).await?;
            if out.is_json() {
                println!("{}", json!({"log": String::from_utf8_lossy(&data)}));
            } else {
                std::io::stdout().write_all(&data)?;
            }
        }
        VmCommand::Console { name, linger } => console(client, &name, linger).await?,
        VmCommand::AttachVolume {
            name,
            volume,
            read_only,
        } => show(
            &client.attach_vm_volume(&name, &volume, read_only).await?,
            out,
            "attached to",
        ),
        VmCommand::DetachVolume { name, volume } => show(
            &client.detach_vm_volume(&name, &volume).await?,
            out,
            "detached from",
        ),
    }
    Ok(())
}

/// `vm migrate`: starts the migration and, with `wait`, follows it to its
/// end: the VM on node `to` (success) or a failure, which is an error.
async fn migrate(
    client: &mut Client,
    name: &str,
    to: u64,
    wait: bool,
    timeout_s: u64,
    out: Output,
) -> anyhow::Result<()> {
    let mut vm = client.migrate_vm(name, to).await?;
    if !wait {
        show(&vm, out, "migrating");
        return Ok(());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
    loop {
        match &vm.migration {
            None if vm.node == to => break,
            Some(m) if m.starts_with("failed") => bail!("vm {name} did not migrate: {m}"),
            None => bail!(
                "vm {name}'s migration was replaced or cancelled (it runs on node {})",
                vm.node
            ),
            Some(_) => {}
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "vm {name} is still migrating after {timeout_s} s: {}",
                vm.migration.as_deref().unwrap_or("")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        vm = client.vm_info(name).await?;
    }
    out.show(&vm, |v| {
        format!("vm {} runs on node {} ({})", v.name, v.node, v.state)
    });
    Ok(())
}

fn show(vm: &VmInfo, out: Output, verb: &str) {
    out.show(vm, |v| format!("{verb} vm {} ({})", v.name, v.state));
}

fn info_text(v: &VmInfo) -> String {
    let disks: Vec<String> = v
        .disks
        .iter()
        .map(|d| {
            let mut s = d.volume.clone();
            if d.read_only {
                s.push_str(" (ro)");
            }
            if d.owned {
                s.push_str(" (owned)");
            }
            s
        })
        .collect();
    let lines = [
        ("name", v.name.clone()),
        ("id", v.id.to_string()),
        ("state", v.state.clone()),
        ("detail", v.state_detail.clone()),
        ("asked", v.power.clone()),
        ("restart", v.restart.clone()),
        ("restarts", v.restarts.to_string()),
        ("accel", v.accel.clone()),
        ("pid", v.pid.to_string()),
        ("node", v.node.to_string()),
        ("cpus", v.cpus.to_string()),
        ("memory", format!("{} MiB", v.memory_mib)),
        ("image", v.image.clone().unwrap_or_else(|| "-".into())),
        ("disks", disks.join(", ")),
        ("mac", v.mac.clone()),
        ("address", v.address.clone().unwrap_or_else(|| "-".into())),
        (
            "migration",
            v.migration.clone().unwrap_or_else(|| "-".into()),
        ),
        ("user_data", v.user_data.to_string()),
        ("created", utc_time(v.created_ms)),
    ];
    lines
        .iter()
        .map(|(key, value)| format!("{key:<10} {value}\n"))
        .collect()
}

/// The terminal in raw mode while the console is attached, restored on drop.
struct RawTerminal(Option<libc::termios>);

impl RawTerminal {
    fn enter() -> Self {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own.
        unsafe {
            if libc::isatty(0) == 0 {
                return Self(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return Self(None);
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(0, libc::TCSANOW, &raw);
            Self(Some(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the attributes read in `enter`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, saved);
            }
        }
    }
}

/// Ctrl-] leaves the console, as in telnet and virsh.
const ESCAPE: u8 = 0x1d;

async fn console(client: &mut Client, name: &str, linger: Option<u64>) -> anyhow::Result<()> {
    match attached(client, name, linger).await {
        // The reader went away (`... | grep -m1`): not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn attached(client: &mut Client, name: &str, linger: Option<u64>) -> anyhow::Result<()> {
    let mut console = client.vm_console(name).await?;
    eprintln!("connected to vm {name}'s console (Ctrl-] leaves)\r");
    let _raw = RawTerminal::enter();
    let (keys_tx, mut keys) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || keys_tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            event = console.output.recv() => match event {
                Some(ConsoleEvent::Output(data)) => {
                    stdout.write_all(&data)?;
                    stdout.flush()?;
                }
                Some(ConsoleEvent::Closed(reason)) => {
                    eprintln!("\r\nconsole closed: {reason}\r");
                    return Ok(());
                }
                None => bail!("the console connection broke"),
            },
            keys = keys.recv() => match keys {
                Some(data) => {
                    let (data, leave) = match data.iter().position(|&b| b == ESCAPE) {
                        Some(at) => (data[..at].to_vec(), true),
                        None => (data, false),
                    };
                    if !data.is_empty() {
                        console.send(&data).await?;
                    }
                    if leave {
                        eprintln!("\r");
                        return Ok(());
                    }
                }
                // Input ended (not a terminal): keep showing output, until
                // the console closes or the linger time is over.
                None => {
                    let until = linger.map_or(std::time::Duration::MAX, std::time::Duration::from_secs);
                    let deadline = tokio::time::Instant::now()
                        .checked_add(until)
                        .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(1 << 40));
                    while let Ok(Some(event)) =
                        tokio::time::timeout_at(deadline, console.output.recv()).await
                    {
                        match event {
                            ConsoleEvent::Output(data) => {
                                stdout.write_all(&data)?;
                                stdout.flush()?;
                            }
                            ConsoleEvent::Closed(_) => return Ok(()),
                        }
                    }
                    return Ok(());
                }
            },
        }
    }
}

pub async fn run_image(client: &mut Client, cmd: ImageCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Import {
            name,
            from,
            format,
            kernel,
            initrd,
            cmdline,
        } => {
            let sources = ImportSources {
                disk: from,
                format,
                kernel,
                initrd,
            };
            let image = import(client, &name, &sources, cmdline).await?;
            out.show(&image, |i| {
                format!("imported image {} ({})", i.name, i.state)
            });
        }
        ImageCommand::Ls => {
            let images = client.list_images().await?;
            out.list(
                &images,
                ["NAME", "STATE", "SIZE", "KERNEL", "CREATED"],
                |i| {
                    [
                        i.name.clone(),
                        i.state.clone(),
                        i.disk.bytes.to_string(),
                        if i.kernel.is_some() { "yes" } else { "no" }.into(),
                        utc_time(i.created_ms),
                    ]
                },
            );
        }
        ImageCommand::Info { name } => {
            let image = client.image_info(&name).await?;
            out.show(&image, |i| {
                format!(
                    "name     {}\nstate    {}\ndisk     {} ({} bytes, from {})\nkernel   {}\ninitrd   {}\ncmdline  {}\ncreated  {}\n",
                    i.name,
                    i.state,
                    i.disk.volume,
                    i.disk.bytes,
                    i.source_format,
                    i.kernel.as_ref().map_or("-".into(), |k| format!("{} ({} bytes)", k.volume, k.bytes)),
                    i.initrd.as_ref().map_or("-".into(), |k| format!("{} ({} bytes)", k.volume, k.bytes)),
                    i.cmdline,
                    utc_time(i.created_ms)
                )
            });
        }
        ImageCommand::Rm { name } => {
            client.delete_image(&name).await?;
            out.done(json!({"deleted": name}), format!("deleted image {name}"));
        }
    }
    Ok(())
}

fn file_len(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len())
}

/// Writes `source` (in `format`) through `uri` with qemu-img.
fn write_through(source: &Fetched, format: &str, uri: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-n", "-f", format, "-O", "raw"])
        .arg(source.path())
        .arg(uri)
        .output()
        .context("cannot run qemu-img (apt-get install qemu-utils)")?;
    if !out.status.success() {
        bail!(
            "qemu-img convert of {} failed: {}",
            source.label(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Where `image import` reads an image's parts from.
struct ImportSources {
    disk: Source,
    /// The disk's format: raw or qcow2 (qemu-img detects it when None).
    format: Option<String>,
    kernel: Option<Source>,
    initrd: Option<Source>,
}

async fn import(
    client: &mut Client,
    name: &str,
    sources: &ImportSources,
    cmdline: String,
) -> anyhow::Result<ImageInfo> {
    // Every part is fetched and checked before the image exists, so that a
    // bad source leaves nothing behind; downloads go when these drop.
    let disk = fetch(&sources.disk)?;
    let info = image_info(&disk, sources.format.as_deref())?;
    if !matches!(info.format.as_str(), "raw" | "qcow2") {
        bail!("{} is {}: import raw or qcow2", disk.label(), info.format);
    }
    let kernel = sources.kernel.as_ref().map(fetch).transpose()?;
    let initrd = sources.initrd.as_ref().map(fetch).transpose()?;
    let length = |part: &Option<Fetched>| part.as_ref().map(|f| file_len(f.path())).transpose();
    let spec = ImageSpec {
        name: name.to_owned(),
        disk_bytes: info.virtual_size,
        kernel_bytes: length(&kernel)?.unwrap_or(0),
        initrd_bytes: length(&initrd)?.unwrap_or(0),
        cmdline: if kernel.is_some() {
            cmdline
        } else {
            String::new()
        },
        source_format: info.format.clone(),
    };
    let image = client.create_image(&spec).await?;
    let parts = [(&kernel, &image.kernel), (&initrd, &image.initrd)];
    let written = write_through(&disk, &info.format, &image.disk.uri).and_then(|()| {
        parts.into_iter().try_for_each(|part| match part {
            (Some(file), Some(part)) => write_through(file, "raw", &part.uri),
            _ => Ok(()),
        })
    });
    if let Err(e) = written {
        // A half-written image is no image: remove it and its volumes.
        if let Err(removal) = client.delete_image(name).await {
            eprintln!("warning: the half-imported image {name} stays: {removal}");
        }
        return Err(e);
    }
    Ok(client.seal_image(name).await?)
}
