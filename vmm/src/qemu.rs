//! QEMU processes: the command line of a VM, starting it detached from us
//! (`-daemonize`: its own session, so it outlives a photon killed with
//! kill -9), finding it again by its pid file, and the one-time probe of
//! KVM.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files of one VM in its directory.
pub const QMP_SOCKET: &str = "qmp.sock";
pub const CONSOLE_SOCKET: &str = "console.sock";
pub const PID_FILE: &str = "qemu.pid";
pub const SEED_FILE: &str = "seed.img";

/// The accelerator a VM runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

/// One disk as QEMU opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    /// `nbd://host:port/export`
    pub uri: String,
    pub read_only: bool,
    /// The volume's id (names its QEMU block backend and device).
    pub id: u64,
    /// Its hot-plug port (`VmDisk::slot`); 0: the boot disk, on the root bus.
    pub slot: u32,
}

/// PCIe root ports a VM gets at least for disks after the boot disk, so
/// disks can be hot-plugged; more when its record's disks use higher ports
/// ([`hotplug_ports`]). Each port costs boot time under TCG (15 ports added
/// ~0.3 s to a 3 s boot, 4 nothing measurable).
pub const HOTPLUG_PORTS_MIN: u32 = 4;

/// The hot-plug ports of a VM whose disks sit on ports `slots`: a function
/// of the record only, so the source and destination of a migration build
/// the same layout.
pub fn hotplug_ports(slots: impl IntoIterator<Item = u32>) -> u32 {
    slots.into_iter().fold(HOTPLUG_PORTS_MIN, u32::max)
}

/// QEMU's names for the backend and the device of volume `id`.
pub fn drive_names(id: u64) -> (String, String) {
    (format!("vol{id}"), format!("dev{id}"))
}

/// The QMP `blockdev-add` arguments that open `uri` (`nbd://host:port/export`).
pub fn nbd_blockdev(uri: &str, node_name: &str, read_only: bool) -> Option<serde_json::Value> {
    let rest = uri.strip_prefix("nbd://")?;
    let (address, export) = rest.split_once('/')?;
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(serde_json::json!({
        "driver": "raw",
        "node-name": node_name,
        "read-only": read_only,
        "cache": { "direct": true },
        "file": {
            "driver": "nbd",
            "server": { "type": "inet", "host": host, "port": port },
            "export": export,
        },
    }))
}

/// A kernel booted directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// Everything QEMU is started with.
#[derive(Debug, Clone)]
pub struct Launch {
    pub dir: PathBuf,
    pub name: String,
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    pub drives: Vec<Drive>,
    pub kernel: Option<Kernel>,
    pub seed: Option<PathBuf>,
    pub mac: String,
    /// The tap device of the NIC; `None`: QEMU's user-mode network.
    pub tap: Option<String>,
    /// Start waiting for a live migration's state (`-incoming defer`,
    /// then QMP `migrate-incoming`) instead of booting.
    pub incoming: bool,
    /// PCIe root ports for disks after the boot disk ([`hotplug_ports`]).
    pub hotplug_ports: u32,
}

impl Launch {
    /// QEMU's arguments. The monitor and the serial port are Unix sockets
    /// in the VM's directory; QEMU detaches and writes its pid file once
    /// the machine is built, so a failure to start is the launcher's exit
    /// status and its stderr.
    pub fn args(&self) -> Vec<String> {
        let dir = |f: &str| self.dir.join(f).display().to_string();
        let mut a: Vec<String> = vec![
            "-name".into(),
            format!("{},process=photon-vm-{}", self.name, self.name),
            "-machine".into(),
            "q35".into(),
            "-accel".into(),
            self.accel.as_str().into(),
            "-cpu".into(),
            match self.accel {
                Accel::Kvm => "host".into(),
                Accel::Tcg => "max".into(),
            },
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            format!("{}M", self.memory_mib),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", dir(QMP_SOCKET)),
            "-chardev".into(),
            format!(
                "socket,id=console,path={},server=on,wait=off",
                dir(CONSOLE_SOCKET)
            ),
            "-serial".into(),
            "chardev:console".into(),
            "-netdev".into(),
            match &self.tap {
                Some(tap) => format!("tap,id=net0,ifname={tap},script=no,downscript=no"),
                None => "user,id=net0".into(),
            },
            "-device".into(),
            format!("virtio-net-pci,netdev=net0,mac={},romfile=", self.mac),
            "-daemonize".into(),
            "-pidfile".into(),
            dir(PID_FILE),
        ];
        for port in 1..=self.hotplug_ports {
            a.push("-device".into());
            a.push(format!("pcie-root-port,id=hp{port},chassis={port}"));
        }
        for (i, d) in self.drives.iter().enumerate() {
            let read_only = if d.read_only { "on" } else { "off" };
            let file = d.uri.replace(',', ",,");
            a.push("-drive".into());
            if d.slot == 0 {
                a.push(format!(
                    "file={file},format=raw,if=virtio,cache=none,aio=threads,read-only={read_only},id=disk{i}"
                ));
            } else {
                let (backend, device) = drive_names(d.id);
                a.push(format!(
                    "file={file},format=raw,if=none,cache=none,aio=threads,read-only={read_only},id={backend}"
                ));
                a.push("-device".into());
                a.push(format!(
                    "virtio-blk-pci,drive={backend},id={device},bus=hp{}",
                    d.slot
                ));
            }
        }
        if let Some(seed) = &self.seed {
            a.push("-drive".into());
            a.push(format!(
                "file={},format=raw,if=virtio,read-only=on,id=seed",
                seed.display().to_string().replace(',', ",,")
            ));
        }
        if self.incoming {
            a.push("-incoming".into());
            a.push("defer".into());
        }
        if let Some(k) = &self.kernel {
            a.push("-kernel".into());
            a.push(k.kernel.display().to_string());
            if let Some(initrd) = &k.initrd {
                a.push("-initrd".into());
                a.push(initrd.display().to_string());
            }
            a.push("-append".into());
            a.push(k.cmdline.clone());
        }
        a
    }
}

/// Starts QEMU detached; returns its pid.
pub async fn start(qemu: &Path, launch: &Launch) -> Result<u32, String> {
    let _ = std::fs::remove_file(launch.dir.join(PID_FILE));
    let output = tokio::process::Command::new(qemu)
        .args(launch.args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", qemu.display()))?;
    if !output.status.success() {
        return Err(format!(
            "QEMU did not start ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    running_pid(&launch.dir).ok_or_else(|| "QEMU started but wrote no pid file".to_owned())
}

/// The pid of the QEMU of the VM in `dir`, if it runs: its pid file names
/// a live process whose command line names that directory (a pid reused
/// by another process is not ours).
pub fn running_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(PID_FILE)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let needle = dir.join(QMP_SOCKET).display().to_string();
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| String::from_utf8_lossy(arg).contains(&needle));
    ours.then_some(pid)
}

/// Kills the QEMU with pid `pid` (SIGKILL): the last resort when QMP does
/// not answer.
pub fn kill(pid: u32) {
    // SAFETY: kill(2) with a pid and a signal number; no memory is passed.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Whether KVM works with `qemu`: `/dev/kvm` opens, the CPU offers VT-x or
/// AMD-V (a paravirtual `/dev/kvm` such as kvm-pvm, where stock guests do
/// not boot, runs on CPUs without them), and QEMU builds a machine on it
/// with the host's CPU model. Returns TCG and the reason otherwise.
pub async fn probe_accel(qemu: &Path) -> (Accel, String) {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return (Accel::Tcg, format!("/dev/kvm: {e}"));
    }
    if !hardware_virtualization() {
        return (
            Accel::Tcg,
            "the CPU offers no hardware virtualization (no vmx or svm flag): /dev/kvm is a paravirtual or emulated one, where stock guests do not boot".into(),
        );
    }
    let probe = tokio::process::Command::new(qemu)
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-machine",
            "q35",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-S",
            "-qmp",
            "stdio",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match probe {
        Ok(child) => child,
        Err(e) => return (Accel::Tcg, format!("cannot run {}: {e}", qemu.display())),
    };
    // The QMP greeting comes once the machine is built.
    use tokio::io::AsyncBufReadExt;
    let Some(stdout) = child.stdout.take() else {
        return (Accel::Tcg, "no stdout".into());
    };
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let greeting = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    let outcome = match greeting {
        Ok(Ok(Some(line))) if line.contains("\"QMP\"") => (Accel::Kvm, String::new()),
        _ => {
            let _ = child.start_kill();
            let output = child.wait_with_output().await;
            let stderr = output
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
                .unwrap_or_default();
            return (Accel::Tcg, format!("QEMU cannot use KVM here: {stderr}"));
        }
    };
    let _ = child.start_kill();
    let _ = child.wait().await;
    outcome
}

/// The host's memory (`MemTotal`), MiB; 0 if unknown.
pub fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

/// Whether the CPU flags offer VT-x or AMD-V (hardware KVM needs one).
fn hardware_virtualization() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_names_every_part() {
        let launch = Launch {
            dir: "/data/vms/7".into(),
            name: "web".into(),
            cpus: 2,
            memory_mib: 512,
            accel: Accel::Tcg,
            drives: vec![
                Drive {
                    uri: "nbd://127.0.0.1:10809/tok,en".into(),
                    read_only: false,
                    id: 5,
                    slot: 0,
                },
                Drive {
                    uri: "nbd://127.0.0.1:10809/x".into(),
                    read_only: true,
                    id: 6,
                    slot: 2,
                },
            ],
            kernel: Some(Kernel {
                kernel: "/c/k".into(),
                initrd: None,
                cmdline: "console=ttyS0".into(),
            }),
            seed: Some("/data/vms/7/seed.img".into()),
            mac: "52:54:00:01:02:03".into(),
            tap: Some("pvm0".into()),
            incoming: false,
            hotplug_ports: hotplug_ports([0, 2]),
        };
        let a = launch.args().join(" ");
        assert!(a.contains("-accel tcg -cpu max -smp 2 -m 512M"));
        assert!(a.contains("file=nbd://127.0.0.1:10809/tok,,en,format=raw"));
        assert!(a.contains("unix:/data/vms/7/qmp.sock,server=on,wait=off"));
        assert!(a.contains("-daemonize -pidfile /data/vms/7/qemu.pid"));
        assert!(a.contains("mac=52:54:00:01:02:03"));
        assert!(a.contains("-kernel /c/k -append console=ttyS0"));
        assert!(a.contains("read-only=on,id=seed"));
        assert!(a.contains("tap,id=net0,ifname=pvm0,script=no,downscript=no"));
        assert!(!a.contains("-incoming"));
        assert!(
            a.contains("read-only=on,id=vol6 -device virtio-blk-pci,drive=vol6,id=dev6,bus=hp2")
        );
        assert!(a.contains("pcie-root-port,id=hp4,chassis=4"));
        assert!(!a.contains("id=hp5,"));
        assert_eq!(hotplug_ports([0, 9, 2]), 9);
        let b = nbd_blockdev("nbd://127.0.0.1:10809/tok", "vol6", true).unwrap();
        assert_eq!(b["file"]["server"]["port"], "10809");
        assert_eq!(b["file"]["export"], "tok");
        assert_eq!(b["read-only"], true);
        assert!(nbd_blockdev("file:///x", "v", false).is_none());
        let incoming = Launch {
            incoming: true,
            ..launch
        };
        assert!(incoming.args().join(" ").contains("-incoming defer"));
    }
}
