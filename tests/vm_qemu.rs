//! PlasmaVMC against a real QEMU (TCG here) and the test guest of
//! `scripts/build-test-guest.sh` (a Debian kernel and a busybox initramfs
//! that prints `PHOTON-GUEST-READY` on its serial console and runs
//! cloud-init user data that is a script), all through `photon ctl`:
//!
//! * `vm_life_cycle`: an image imported with a kernel and initrd; two VMs
//!   cloned from it boot from their NBD disks, run their user data, and are
//!   independent (read back with qemu-io from snapshots); the console shows
//!   output and takes input; data written by the guest survives stop and
//!   start; photon killed with SIGKILL leaves the VMs running, and the
//!   restarted agent adopts them (same QEMU pid, `vm stop` works); a killed
//!   QEMU is restarted per its policy; `vm rm` removes the clone,
//!   `--keep-volumes` keeps it.
//! * bad input in the same run: zero CPUs, an unknown image, a duplicate
//!   name, a volume another VM holds, user data over the limit, each with
//!   its exit code and nothing left behind; another tenant sees none of it.
//!
//! * `vm_tap_network`: with `compute.bridge`, a VM gets a tap NIC on the
//!   node's bridge and a static address through cloud-init's
//!   network-config, and pings the bridge (root, as CI runs).
//! * `vm_live_migration`: a counting guest moves between the nodes of a
//!   3-node cluster while it runs; a migration to a node whose QEMU cannot
//!   start fails and leaves it running; the node registry.
//! * `vm_bios_boot`: an image that is a whole bootable disk (a boot sector
//!   that writes to the serial port) boots through SeaBIOS.
//! * in `vm_life_cycle` too: a volume hot-plugged into the running guest
//!   appears there, and goes when detached.
//!
//! QEMU runs detached from photon by design, so the test kills every QEMU
//! of its data directory when it ends, passed or not.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{
    ctl_as, ctl_stdin_as, dev_command, endpoints, login_as, login_dev_admin, photon, qemu_pids,
    temp_dir, Proc, QemuGuard,
};
use serde_json::Value;

/// A TCG boot takes ~5 s alone; two tests share two cores.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The cached test guest: `$PHOTON_TEST_GUEST`, or what the script builds.
fn guest() -> PathBuf {
    if let Some(dir) = std::env::var_os("PHOTON_TEST_GUEST") {
        return dir.into();
    }
    let out = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/build-test-guest.sh"
        ))
        .stderr(Stdio::inherit())
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "scripts/build-test-guest.sh failed");
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        text.lines()
            .last()
            .expect("the script prints the guest dir")
            .trim(),
    )
}

/// Kills the test's QEMUs, then removes its directory if it passed.
struct QemuSweeper(PathBuf);

impl Drop for QemuSweeper {
    fn drop(&mut self) {
        drop(QemuGuard(self.0.clone()));
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!("data and logs kept in {}", self.0.display());
        }
    }
}

/// Whether `pid` runs (a zombie, which a reaper may not have collected in
/// a container, has ended).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

struct Node {
    dir: PathBuf,
    config: PathBuf,
    control: SocketAddr,
    proc_: Option<Proc>,
}

impl Node {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// A `photon dev` with `--set` options `sets` (KEY=VALUE).
    fn start_with(dir: &Path, sets: &[String]) -> Self {
        let data = dir.join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("photon.log"))
            .unwrap();
        let mut command = dev_command(&data);
        for set in sets {
            command.args(["--set", set]);
        }
        let mut child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let control = endpoints(&data, &mut child)["control"];
        common::wait_for(&data.join("control").join("admin.credentials"));
        let config = dir.join("admin-config");
        login_dev_admin(&config, &data);
        Self {
            dir: dir.to_path_buf(),
            config,
            control,
            proc_: Some(Proc(child)),
        }
    }

    fn kill9(&mut self) {
        if let Some(mut p) = self.proc_.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(p.0.id() as i32, libc::SIGKILL) };
            let _ = p.0.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("data").join("endpoints.json"));
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        ctl_as(&self.config, self.control, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "photon ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Imports image `tiny`: an empty `disk_mib` MiB root disk and the test
    /// guest's kernel and initrd.
    fn import_tiny(&self, dir: &Path, guest: &Path, disk_mib: u64) -> Value {
        let disk = dir.join("disk.raw");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(disk_mib << 20)
            .unwrap();
        self.json(&[
            "image",
            "import",
            "tiny",
            "--from",
            &disk.display().to_string(),
            "--kernel",
            &guest.join("vmlinuz").display().to_string(),
            "--initrd",
            &guest.join("initrd.gz").display().to_string(),
            "--cmdline",
            "console=ttyS0 quiet",
        ])
    }

    /// Refused with exit code `code`, the message containing `words`.
    fn refused(&self, args: &[&str], code: i32, words: &str) {
        let out = self.ctl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }

    fn logs(&self, vm: &str) -> String {
        self.ok(&["vm", "logs", vm, "--tail", "1M"])
    }

    /// Waits until `vm`'s log holds `marker` `count` times.
    fn wait_log(&self, vm: &str, marker: &str, count: usize) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let log = self.logs(vm);
            if log.matches(marker).count() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vm {vm}: no {marker} (x{count}) in {BOOT_TIMEOUT:?}; log:\n{log}\ninfo: {}",
                self.ok(&["vm", "info", vm])
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until `vm info` says `state`.
    fn wait_state(&self, vm: &str, state: &str) -> Value {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let info = self.json(&["vm", "info", vm]);
            if info["state"] == state {
                return info;
            }
            assert!(Instant::now() < deadline, "vm {vm} never {state}: {info}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The first `len` bytes of volume `name`, read with qemu-io.
    fn read_volume(&self, name: &str, len: usize) -> Vec<u8> {
        let uri = self.ok(&["volume", "attach", name]).trim().to_owned();
        let out = std::process::Command::new("qemu-io")
            .args(["-r", "-f", "raw", "-c"])
            .arg(format!("read -v 0 {len}"))
            .arg(&uri)
            .output()
            .expect("qemu-io runs (scripts/test.sh installs qemu-utils)");
        assert!(
            out.status.success(),
            "qemu-io: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `read -v` dumps lines of `offset:  hex bytes  ascii`.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(":  ").map(|(_, rest)| rest.to_owned()))
            .flat_map(|rest| {
                rest.split_whitespace()
                    .take_while(|w| w.len() == 2 && w.chars().all(|c| c.is_ascii_hexdigit()))
                    .map(|w| u8::from_str_radix(w, 16).unwrap())
                    .collect::<Vec<_>>()
            })
            .take(len)
            .collect()
    }
}

/// A console attached with `photon ctl vm console` on pipes.
struct Console(Child);

impl Console {
    fn attach(node: &Node, vm: &str) -> Self {
        let child = photon()
            .env("PHOTON_CONFIG_DIR", &node.config)
            .args([
                "ctl",
                "--endpoints",
                &node.control.to_string(),
                "vm",
                "console",
                vm,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self(child)
    }

    /// Types `line` and waits until the output holds `expect`.
    fn expect(&mut self, line: &str, expect: &str) {
        self.0
            .stdin
            .as_mut()
            .unwrap()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        let stdout = self.0.stdout.as_mut().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut reader = unsafe_clone_stdout(stdout);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if tx
                    .send(String::from_utf8_lossy(&seen).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(seen) = rx.recv_timeout(Duration::from_millis(200)) {
                if seen.contains(expect) {
                    return;
                }
                last = seen;
            }
        }
        panic!("console: no {expect:?} after typing {line:?}; saw {last:?}");
    }
}

/// A second handle on the console's stdout pipe for the reader thread.
fn unsafe_clone_stdout(stdout: &std::process::ChildStdout) -> std::fs::File {
    use std::os::fd::AsFd;
    std::fs::File::from(stdout.as_fd().try_clone_to_owned().unwrap())
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn vm_life_cycle() {
    let guest = guest();
    let dir = temp_dir("vm");
    let _sweeper = QemuSweeper(dir.clone());
    let mut node = Node::start(&dir);

    // An image: a 64 MiB empty root disk, the guest's kernel and initrd.
    let image = node.import_tiny(&dir, &guest, 64);
    assert_eq!(image["state"], "ready", "{image}");

    // Two VMs from it, each writing its name at the start of its disk,
    // after printing what was there.
    for name in ["a", "b"] {
        let script = dir.join(format!("{name}.sh"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"before: $(head -c 7 /dev/vda | tr -d '\\0')\"\necho data-{name} | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null\n"
            ),
        )
        .unwrap();
        let vm = node.json(&[
            "vm",
            "create",
            name,
            "--image",
            "tiny",
            "--memory",
            "256M",
            "--user-data",
            &script.display().to_string(),
        ]);
        assert_eq!(vm["power"], "running", "{vm}");
        assert_eq!(vm["disks"][0]["volume"], format!("{name}.boot"));
    }
    for name in ["a", "b"] {
        node.wait_log(name, "PHOTON-GUEST-READY", 1);
        let log = node.logs(name);
        assert!(log.contains(&format!("hostname={name}")), "{log}");
        assert!(log.contains("PHOTON-GUEST-USERDATA rc=0"), "{log}");
    }
    let info = node.json(&["vm", "info", "a"]);
    assert_eq!(info["state"], "running");
    assert!(
        ["tcg", "kvm"].contains(&info["accel"].as_str().unwrap()),
        "{info}"
    );
    assert!(info["user_data"].as_bool().unwrap());

    // The console shows output and takes input.
    {
        let mut console = Console::attach(&node, "a");
        console.expect("echo con$((40+2))sole", "con42sole");
    }

    // Hot-plug: a volume attached to the running VM appears in the guest
    // (vda is the boot disk, vdb the cloud-init seed); detached, it goes
    // (once the guest released it) and is free again.
    node.ok(&["volume", "create", "hp1", "--size", "8M"]);
    let attached = node.json(&["vm", "attach-volume", "a", "hp1"]);
    assert_eq!(attached["disks"][1]["volume"], "hp1", "{attached}");
    {
        let mut console = Console::attach(&node, "a");
        console.expect(
            "while [ ! -e /sys/block/vdc ]; do sleep 0.2; done; echo vdc-sectors-$(cat /sys/block/vdc/size)",
            "vdc-sectors-16384",
        );
        node.ok(&["vm", "detach-volume", "a", "hp1"]);
        console.expect(
            "while [ -e /sys/block/vdc ]; do sleep 0.2; done; echo vdc-gone",
            "vdc-gone",
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node.json(&["vm", "info", "a"])["state_detail"]
        .as_str()
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            node.ok(&["vm", "info", "a"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    node.ok(&["volume", "rm", "hp1"]);

    // Bad input: a clear error, exit code, nothing left behind.
    node.refused(
        &["vm", "create", "c", "--image", "tiny", "--cpus", "0"],
        3,
        "cpus",
    );
    node.refused(
        &["vm", "create", "c", "--image", "nope"],
        5,
        "no image nope",
    );
    node.refused(
        &["vm", "create", "a", "--image", "tiny"],
        6,
        "already exists",
    );
    node.refused(
        &["vm", "create", "c", "--volume", "a.boot"],
        6,
        "attached to vm a",
    );
    let big = dir.join("big.sh");
    std::fs::write(&big, vec![b'#'; 64 * 1024 + 1]).unwrap();
    node.refused(
        &[
            "vm",
            "create",
            "c",
            "--image",
            "tiny",
            "--user-data",
            &big.display().to_string(),
        ],
        3,
        "user data",
    );
    node.refused(&["volume", "rm", "a.boot"], 6, "in use by vm a");
    let volumes = node.ok(&["volume", "ls"]);
    assert!(!volumes.contains("c.boot"), "{volumes}");
    assert!(node.ctl(&["vm", "info", "c"]).status.code() == Some(5));

    // Another tenant sees none of it.
    let other = dir.join("globex-config");
    let out = ctl_stdin_as(
        &node.config,
        node.control,
        &[
            "iam",
            "tenant",
            "create",
            "globex",
            "--admin",
            "hank",
            "--password-stdin",
        ],
        "Globex-hank-pw-7Qz",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    login_as(&other, node.control, "globex", "hank", "Globex-hank-pw-7Qz");
    let theirs = ctl_as(&other, node.control, &["--json", "vm", "ls"]);
    assert_eq!(String::from_utf8_lossy(&theirs.stdout).trim(), "[]");
    for args in [
        &["vm", "info", "a"][..],
        &["vm", "logs", "a"],
        &["vm", "console", "a"],
        &["vm", "stop", "a"],
        &["image", "info", "tiny"],
    ] {
        let out = ctl_as(&other, node.control, args);
        assert_eq!(
            out.status.code(),
            Some(5),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // photon dies; the VMs do not; the restarted agent adopts them.
    let pid_a = node.json(&["vm", "info", "a"])["pid"].as_u64().unwrap();
    node.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        Path::new(&format!("/proc/{pid_a}")).exists(),
        "QEMU died with photon"
    );
    node = Node::start(&dir);
    let info = node.wait_state("a", "running");
    assert_eq!(info["pid"].as_u64(), Some(pid_a), "{info}");

    // A killed QEMU is restarted (policy on-failure): its user data runs
    // again and finds what the first boot wrote.
    let pid_b = node.json(&["vm", "info", "b"])["pid"].as_u64().unwrap();
    // SAFETY: kill(2) on the QEMU this test made.
    unsafe { libc::kill(pid_b as i32, libc::SIGKILL) };
    node.wait_log("b", "PHOTON-GUEST-READY", 2);
    let info = node.json(&["vm", "info", "b"]);
    assert_eq!(info["restarts"], 1, "{info}");
    assert_ne!(info["pid"].as_u64(), Some(pid_b));
    assert!(
        node.logs("b").contains("before: data-b"),
        "{}",
        node.logs("b")
    );

    // ACPI stop works on the adopted VM; its data survives stop and start.
    node.ok(&["vm", "stop", "a"]);
    let info = node.wait_state("a", "stopped");
    assert_eq!(info["pid"], 0, "{info}");
    assert!(!alive(pid_a));
    node.ok(&["vm", "start", "a"]);
    node.wait_log("a", "PHOTON-GUEST-READY", 2);
    assert!(
        node.logs("a").contains("before: data-a"),
        "{}",
        node.logs("a")
    );

    // The clones are independent, and the image is untouched (read from
    // snapshots with qemu-io).
    node.ok(&["vm", "stop", "--force", "a"]);
    node.ok(&["vm", "stop", "--force", "b"]);
    node.wait_state("a", "stopped");
    node.wait_state("b", "stopped");
    node.ok(&["volume", "snapshot", "a.boot", "s"]);
    node.ok(&["volume", "snapshot", "b.boot", "s"]);
    assert_eq!(node.read_volume("a.boot@s", 6), b"data-a");
    assert_eq!(node.read_volume("b.boot@s", 6), b"data-b");
    assert_eq!(node.read_volume("tiny.disk@image", 6), vec![0u8; 6]);

    // rm removes the clone; --keep-volumes keeps it.
    node.ok(&["volume", "rm", "a.boot@s"]);
    node.ok(&["vm", "rm", "a"]);
    node.ok(&["vm", "rm", "b", "--keep-volumes"]);
    let volumes = node.ok(&["volume", "ls"]);
    assert!(!volumes.contains("a.boot "), "{volumes}");
    assert!(volumes.contains("b.boot "), "{volumes}");
    assert!(qemu_pids(&dir).is_empty());
    node.refused(&["image", "rm", "nope"], 5, "no image nope");
    node.ok(&["image", "rm", "tiny"]);
}

/// Removes the test's bridge when it ends.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

#[test]
fn vm_tap_network() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "tap NICs need root (CAP_NET_ADMIN); scripts/test.sh runs as root on CI machines"
    );
    let guest = guest();
    let dir = temp_dir("vm-net");
    let _sweeper = QemuSweeper(dir.clone());
    let bridge = format!("pbr{}", std::process::id() % 100_000);
    let _bridge = Bridge(bridge.clone());
    let node = Node::start_with(
        &dir,
        &[
            format!("compute.bridge={bridge}"),
            "compute.network=10.213.9.0/24".into(),
        ],
    );
    node.import_tiny(&dir, &guest, 16);
    // No user data: the seed is there for the address alone.
    node.ok(&["vm", "create", "n1", "--image", "tiny", "--memory", "256M"]);
    node.wait_log("n1", "PHOTON-GUEST-READY", 1);
    let info = node.json(&["vm", "info", "n1"]);
    assert_eq!(info["address"], "10.213.9.2", "{info}");
    assert!(
        node.logs("n1")
            .contains("PHOTON-GUEST-NET address=10.213.9.2/24 via=10.213.9.1"),
        "{}",
        node.logs("n1")
    );
    let tap = format!("/sys/class/net/{bridge}/brif");
    assert_eq!(
        std::fs::read_dir(&tap).unwrap().count(),
        1,
        "one tap on the bridge"
    );
    {
        let mut console = Console::attach(&node, "n1");
        console.expect("ping -c 1 -W 5 10.213.9.1", "1 packets received");
    }
    node.ok(&["vm", "rm", "n1"]);
    assert_eq!(
        std::fs::read_dir(&tap).unwrap().count(),
        0,
        "the tap went with the VM"
    );
}

/// The `PHOTON-COUNT n` numbers in a console log, in order.
fn counts(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.trim().strip_prefix("PHOTON-COUNT "))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Live migration between the nodes of a 3-node cluster (every node
/// control, storage and compute): a guest counting on its console moves
/// from the node it was created on to another while it runs; the count
/// goes on there from where it was (no reboot), the source's QEMU goes,
/// and the VM is stopped through its new node. A migration to a node
/// whose QEMU cannot start fails and leaves the VM running. The node
/// registry lists every node, and a node killed with SIGKILL turns suspect.
#[test]
fn vm_live_migration() {
    let guest = guest();
    let dir = temp_dir("vm-migrate");
    let _sweeper = QemuSweeper(dir.clone());
    let mut cluster = common::Cluster::new("vm-migrate-cluster");
    for id in 1..=3 {
        cluster.start_with(id, &["control", "storage", "compute"], "");
    }
    let config = dir.join("admin-config");
    let (nodes_dir, addresses) = (cluster.dir.clone(), cluster.addresses.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    let data = loop {
        let found = (1..=3u64)
            .map(|id| nodes_dir.join(format!("n{id}")))
            .find(|d| d.join("control/admin.credentials").exists());
        if let Some(d) = found {
            break d;
        }
        assert!(Instant::now() < deadline, "no node wrote admin.credentials");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = photon()
        .env("PHOTON_CONFIG_DIR", &config)
        .args([
            "ctl",
            "--endpoints",
            &addresses[&1].to_string(),
            "login",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = |id: u64| Node {
        dir: nodes_dir.join(format!("n{id}")),
        config: config.clone(),
        control: addresses[&id],
        proc_: None,
    };

    // The registry: every node up, with its NBD endpoint.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = node(1).json(&["node", "ls"]);
        let up = nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "up" && n["endpoints"]["nbd"].is_string())
            .count();
        if up == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every node registered: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    node(1).import_tiny(&dir, &guest, 16);
    let script = dir.join("count.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n(i=0; while true; do i=$((i+1)); echo \"PHOTON-COUNT $i\"; sleep 0.2; done) &\n",
    )
    .unwrap();
    let vm = node(1).json(&[
        "vm",
        "create",
        "mover",
        "--image",
        "tiny",
        "--memory",
        "256M",
        "--user-data",
        &script.display().to_string(),
    ]);
    // Writes go to the leader, which creates the VM on itself.
    let from = vm["node"].as_u64().unwrap();
    let to = if from == 3 { 2 } else { from + 1 };
    let source = node(from);
    source.wait_log("mover", "PHOTON-COUNT 10", 1);
    let before = *counts(&source.logs("mover")).last().unwrap();
    let source_qemu = qemu_pids(&source.dir);
    assert_eq!(source_qemu.len(), 1, "{source_qemu:?}");

    // Refused: a node that does not exist, the node it is on.
    source.refused(
        &["vm", "migrate", "mover", "--to", "99"],
        5,
        "node registry",
    );
    source.refused(
        &["vm", "migrate", "mover", "--to", &from.to_string()],
        6,
        "already",
    );

    let started = Instant::now();
    let moved = node(to).json(&["vm", "migrate", "mover", "--to", &to.to_string(), "--wait"]);
    eprintln!(
        "vm migrate --wait from node {from} to node {to}: {:?}",
        started.elapsed()
    );
    assert_eq!(moved["node"], to, "{moved}");
    let target = node(to);
    let info = target.wait_state("mover", "running");
    assert!(info["migration"].is_null(), "{info}");
    // The count goes on on the new node, from where it was: same guest,
    // no reboot.
    target.wait_log("mover", &format!("PHOTON-COUNT {}", before + 10), 1);
    let log = target.logs("mover");
    assert!(!log.contains("PHOTON-GUEST-READY"), "rebooted:\n{log}");
    let after = counts(&log);
    assert!(after[0] > before, "{before} then {after:?}");
    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "the count skipped or restarted: {after:?}"
    );
    // The source's QEMU went; the VM runs only on the target.
    let deadline = Instant::now() + Duration::from_secs(30);
    while source_qemu.iter().any(|p| alive(u64::from(*p))) {
        assert!(Instant::now() < deadline, "the source's QEMU still runs");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(qemu_pids(&target.dir).len(), 1);
    source.refused(&["vm", "logs", "mover"], 6, &format!("runs on node {to}"));

    // A migration that fails leaves the VM running where it was: the third
    // node, restarted with a QEMU that cannot start, is the destination.
    let third = (1..=3u64).find(|id| *id != from && *id != to).unwrap();
    cluster.kill9(third);
    cluster.start_with(
        third,
        &["control", "storage", "compute"],
        "[compute]\nqemu = \"/bin/false\"\n",
    );
    let out = target.ctl(&[
        "vm",
        "migrate",
        "mover",
        "--to",
        &third.to_string(),
        "--wait",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "migrated to a node without QEMU");
    assert!(
        stderr.contains("did not migrate") && stderr.contains("QEMU did not start"),
        "{stderr}"
    );
    let info = target.json(&["vm", "info", "mover"]);
    assert_eq!(info["node"], to, "{info}");
    assert_eq!(info["state"], "running", "{info}");
    assert!(
        info["migration"].as_str().unwrap().starts_with("failed"),
        "{info}"
    );
    let last = *counts(&target.logs("mover")).last().unwrap();
    target.wait_log("mover", &format!("PHOTON-COUNT {}", last + 3), 1);
    assert!(qemu_pids(&node(third).dir).is_empty());

    // A stopped VM does not migrate; the moved one stops through its node.
    target.ok(&["vm", "stop", "mover"]);
    target.wait_state("mover", "stopped");
    source.refused(
        &["vm", "migrate", "mover", "--to", &from.to_string()],
        6,
        "stopped",
    );
    target.ok(&["vm", "rm", "mover"]);

    // A node killed with SIGKILL turns suspect in the registry.
    let victim = third;
    cluster.kill9(victim);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = node(from).json(&["node", "ls"]);
        let state = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == victim)
            .map(|n| n["state"].clone())
            .unwrap();
        if state == "suspect" || state == "down" {
            break;
        }
        assert!(Instant::now() < deadline, "node {victim} still {state}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A boot sector (real mode, 512 bytes) that writes `PHOTON-BIOS-BOOT` to
/// the first serial port and halts: the smallest whole bootable disk.
fn boot_sector() -> Vec<u8> {
    let mut code = vec![
        0x31, 0xc0, // xor ax, ax
        0x8e, 0xd8, // mov ds, ax
        0xfc, // cld
        0xbe, 0x17, 0x7c, // mov si, 0x7c00 + 23 (the message)
        0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1)
        0xac, // next: lodsb
        0x84, 0xc0, // test al, al
        0x74, 0x03, // jz done
        0xee, // out dx, al
        0xeb, 0xf8, // jmp next
        0xfa, // done: cli
        0xf4, // hlt
        0xeb, 0xfc, // jmp done
    ];
    assert_eq!(code.len(), 23);
    code.extend_from_slice(b"PHOTON-BIOS-BOOT\r\n\0");
    code.resize(510, 0);
    code.extend_from_slice(&[0x55, 0xaa]);
    code
}

/// An image that is a whole bootable disk (no kernel): SeaBIOS boots it
/// from the VM's NBD-backed virtio disk.
#[test]
fn vm_bios_boot() {
    let dir = temp_dir("vm-bios");
    let _sweeper = QemuSweeper(dir.clone());
    let node = Node::start(&dir);
    let disk = dir.join("boot.raw");
    let mut image = boot_sector();
    image.resize(1 << 20, 0);
    std::fs::write(&disk, image).unwrap();
    let imported = node.json(&[
        "image",
        "import",
        "mbr",
        "--from",
        &disk.display().to_string(),
    ]);
    assert!(imported["kernel"].is_null(), "{imported}");
    node.ok(&["vm", "create", "bios", "--image", "mbr", "--memory", "128M"]);
    node.wait_log("bios", "PHOTON-BIOS-BOOT", 1);
    // No OS answers the ACPI request: --force pulls the plug.
    node.ok(&["vm", "stop", "--force", "bios"]);
    node.wait_state("bios", "stopped");
    node.ok(&["vm", "rm", "bios"]);
    node.ok(&["image", "rm", "mbr"]);
}
