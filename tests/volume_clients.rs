//! CoronaFS volumes driven by the real NBD clients of the ecosystem, each
//! test against a `photon dev --nbd` of its own:
//!
//! * `qemu_io_patterns_zeroes_multi_conn`: patterns at several offsets
//!   (first and last block, 32 MiB requests, unaligned writes qemu must
//!   read-modify-write), discard and write-zeroes read back as zeroes and
//!   show as zero in `qemu-img map`, pipelined aio writes, FUA, flush; four
//!   qemu-io processes writing disjoint ranges of one volume at once over
//!   one or several attach URIs.
//! * `qemu_img_map_convert_import_bench`: info, map (thin: only written
//!   ranges are data), a 32 MiB raw image with holes converted in and out
//!   byte for byte, qcow2 imported from a file and from a URL with
//!   `photon ctl volume import`, bench.
//! * `libnbd_tools`: nbdinfo (size, flags, block sizes, `--map` holes),
//!   nbdcopy in and out (multi-connection by default).
//! * `fio_verify`: fio's nbd engine writes with crc32c verify headers, a
//!   second fio run only verifies.
//! * `crash_keeps_flushed_writes`: writes acknowledged with FUA or covered
//!   by an acknowledged FLUSH (sent on either of two connections) while fio
//!   writes with fsync beside them; photon is killed with SIGKILL, restarted on the same data
//!   directory, and every durable write must read back (the newest durable
//!   version of each block, or a later unacknowledged one, never older data,
//!   never a torn block).
//! * `snapshot_and_clone`: snapshots keep their data, are read-only, clones
//!   are independent, removing the volume keeps both.
//! * `handshake_and_bad_input`: the advertised export (flags, block sizes),
//!   tampered, empty and expired tokens refused with `NBD_REP_ERR_POLICY`,
//!   garbage in the handshake and in transmission closes only that
//!   connection, bad requests get errnos and the connection goes on.
//! * `resize_and_errors`: grow, refuse to shrink, unknown volumes, bad names
//!   and sizes.
//! * `tenant_isolation`: another tenant neither sees nor attaches our volume
//!   and has its own namespace.
//!
//! The precise checks (handshake replies, errnos, the crash driver's
//! acknowledgements) use the small NBD client in `mod wire`, written from
//! the protocol document; everything else uses qemu-io, qemu-img, nbdinfo,
//! nbdcopy and fio, which `scripts/test.sh` installs. On failure the data
//! directory and photon's logs are kept and their path printed.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ctl_as, ctl_stdin_as, login_as, need, photon, temp_dir, Proc};
use serde_json::Value;

const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(60);
/// Any single client command; generous, as two tests share two cores.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;
const BLOCK_BYTES: u64 = 4096;
const PAYLOAD_BYTES_MAX: u64 = 32 * MIB;
/// How long the crash driver writes before photon is killed, at least.
const CRASH_AFTER: Duration = Duration::from_secs(3);
/// Durable writes wanted before the kill, so the test proves something.
const CRASH_MIN_DURABLE: usize = 200;
/// The crash driver writes blocks 0..CRASH_BLOCKS (1 MiB), so each is
/// overwritten many times.
const CRASH_BLOCKS: u64 = 256;
const CRASH_SEED: u64 = 0x00c0_0a5f_5eed_0001;
/// Kill and restart cycles of the crash test.
const CRASH_ROUNDS: usize = 2;

/// A `photon dev` with NBD, which can be killed and restarted on its data
/// directory, its cluster administrator logged in.
struct VolDev {
    dir: PathBuf,
    data: PathBuf,
    cores: usize,
    proc_: Option<Proc>,
    starts: usize,
    control: SocketAddr,
    nbd: SocketAddr,
    admin_config: PathBuf,
    runs: Cell<usize>,
}

impl VolDev {
    fn start(name: &str, cores: usize) -> Self {
        let dir = temp_dir(&format!("vol-{name}"));
        let mut dev = Self {
            data: dir.join("data"),
            admin_config: dir.join("admin-config"),
            dir,
            cores,
            proc_: None,
            starts: 0,
            control: SocketAddr::from(([127, 0, 0, 1], 0)),
            nbd: SocketAddr::from(([127, 0, 0, 1], 0)),
            runs: Cell::new(0),
        };
        dev.spawn();
        dev
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("photon-{}.log", self.starts))
    }

    /// Starts photon on the data directory, waits for its endpoints and
    /// logs the administrator in.
    fn spawn(&mut self) {
        // A killed node leaves its endpoints behind; wait for this start's.
        let _ = std::fs::remove_file(self.data.join("endpoints.json"));
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = photon()
            .args(["dev", "--cores", &self.cores.to_string()])
            .args(["--admin", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            // Every listener on a port of its own: tests run in parallel.
            .args(["--s3", "127.0.0.1:0", "--nbd", "127.0.0.1:0"])
            .args(["--nightlight", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        // Owned (killed on drop) before anything here can panic.
        let mut proc_ = Proc(child);
        let endpoints = self.wait_endpoints(&mut proc_.0);
        self.proc_ = Some(proc_);
        self.control = endpoints
            .get("control")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no control endpoint: {endpoints:?}"));
        let nbd = endpoints.get("nbd").unwrap_or_else(|| {
            panic!(
                "photon dev has no `nbd` endpoint in endpoints.json: {endpoints:?}\n{}",
                self.log_tail()
            )
        });
        self.nbd = nbd
            .trim_start_matches("nbd://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("nbd endpoint {nbd:?}: {e}"));
        let credentials = self.data.join("control").join("admin.credentials");
        let deadline = Instant::now() + BOOTSTRAP_TIMEOUT;
        while !credentials.exists() {
            assert!(
                Instant::now() < deadline,
                "no {}\n{}",
                credentials.display(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = photon()
            .env("PHOTON_CONFIG_DIR", &self.admin_config)
            .args(["ctl", "login", "--data-dir"])
            .arg(&self.data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dev login: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }

    fn wait_endpoints(&self, child: &mut Child) -> BTreeMap<String, String> {
        common::wait_endpoints(&self.data, child, &self.log_path(), BOOTSTRAP_TIMEOUT)
    }

    fn kill9(&mut self) {
        if let Some(mut p) = self.proc_.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(p.0.id() as i32, libc::SIGKILL) };
            let _ = p.0.wait();
        }
    }

    fn log_tail(&self) -> String {
        common::log_tail(&self.log_path())
    }

    /// `photon ctl ARGS` as the user logged in under `config`.
    fn ctl_as(&self, config: &Path, args: &[&str]) -> Output {
        ctl_as(config, self.control, args)
    }

    /// Succeeds, returns stdout.
    fn ok_as(&self, config: &Path, args: &[&str]) -> String {
        let out = self.ctl_as(config, args);
        assert!(
            out.status.success(),
            "photon ctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json_as(&self, config: &Path, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let stdout = self.ok_as(config, &all);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("photon ctl {all:?}: {e}: {stdout}"))
    }

    /// Fails with a message on stderr; returns it.
    fn refused_as(&self, config: &Path, args: &[&str]) -> String {
        let out = self.ctl_as(config, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "photon ctl {args:?} should fail, but printed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            !stderr.trim().is_empty(),
            "photon ctl {args:?} failed without saying why"
        );
        stderr
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_as(&self.admin_config, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.json_as(&self.admin_config, args)
    }

    fn refused(&self, args: &[&str]) -> String {
        self.refused_as(&self.admin_config, args)
    }

    /// `photon ctl --json volume create NAME --size SIZE`, checked.
    fn create(&self, name: &str, size: &str) -> Value {
        let v = self.json(&["volume", "create", name, "--size", size]);
        assert_eq!(v["name"], name, "{v}");
        assert_eq!(v["kind"], "volume", "{v}");
        assert_eq!(v["block_size"], BLOCK_BYTES, "{v}");
        assert!(v["id"].is_string() || v["id"].is_u64(), "no id: {v}");
        v
    }

    fn info(&self, name: &str) -> Value {
        self.json(&["volume", "info", name])
    }

    /// The NBD URI `photon ctl volume attach` prints for the administrator.
    fn attach(&self, name: &str) -> String {
        self.attach_as(&self.admin_config, name, &[])
    }

    fn attach_as(&self, config: &Path, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["volume", "attach", name];
        args.extend_from_slice(extra);
        let stdout = self.ok_as(config, &args);
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "attach must print one line: {stdout:?}");
        let uri = lines[0].trim().to_owned();
        let want = format!("nbd://{}/", self.nbd);
        assert!(
            uri.starts_with(&want) && uri.len() > want.len(),
            "attach printed {uri:?}, want {want}<token>"
        );
        uri
    }

    /// Runs a client command (stdin closed, output to a log file, killed
    /// after TOOL_TIMEOUT); returns its status and output.
    fn run(&self, command: &mut Command) -> (Option<ExitStatus>, String) {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let program = Path::new(command.get_program())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let log = self.dir.join(format!("run-{n:03}-{program}.log"));
        run(command.current_dir(&self.dir), &log, TOOL_TIMEOUT)
    }

    /// Runs a client command that must succeed; returns its output.
    fn tool(&self, command: &mut Command) -> String {
        let shown = format!("{command:?}");
        let (status, output) = self.run(command);
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!("{shown} failed ({s}):\n{output}\n{}", self.log_tail()),
            None => panic!("{shown} timed out:\n{output}\n{}", self.log_tail()),
        }
        // qemu-io goes on after a failed command; its status says so, and
        // so does its output.
        for bad in [
            "Pattern verification failed",
            "failed:",
            "Input/output error",
        ] {
            assert!(
                !output.contains(bad),
                "{shown}: {bad:?}:\n{output}\n{}",
                self.log_tail()
            );
        }
        output
    }

    /// Runs a client command that must fail (not hang); returns its output.
    fn tool_fails(&self, command: &mut Command) -> String {
        let shown = format!("{command:?}");
        let (status, output) = self.run(command);
        match status {
            Some(s) if s.success() => panic!("{shown} should fail:\n{output}"),
            Some(_) => output,
            None => panic!("{shown} hung instead of failing:\n{output}"),
        }
    }

    /// `qemu-io -f raw -c CMD... URI`, which must succeed.
    fn qemu_io(&self, uri: &str, commands: &[&str]) -> String {
        self.tool(&mut qemu_io(uri, commands))
    }

    /// `qemu-io -r`, for snapshots.
    fn qemu_io_ro(&self, uri: &str, commands: &[&str]) -> String {
        self.tool(&mut qemu_io_opts(uri, commands, &["-r"]))
    }

    /// `qemu-img map --output=json`.
    fn map(&self, uri: &str) -> Vec<Value> {
        let out =
            self.tool(Command::new("qemu-img").args(["map", "-f", "raw", "--output=json", uri]));
        let json = &out[out
            .find('[')
            .unwrap_or_else(|| panic!("qemu-img map: {out}"))..];
        serde_json::from_str(json).unwrap_or_else(|e| panic!("qemu-img map: {e}: {out}"))
    }

    /// `qemu-img info`'s virtual size.
    fn virtual_size(&self, uri: &str) -> u64 {
        let out =
            self.tool(Command::new("qemu-img").args(["info", "-f", "raw", "--output=json", uri]));
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v["virtual-size"]
            .as_u64()
            .unwrap_or_else(|| panic!("{out}"))
    }
}

impl Drop for VolDev {
    fn drop(&mut self) {
        self.proc_ = None;
        if std::thread::panicking() {
            eprintln!("data and logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A command without stdin, its stdout and stderr together in `log`,
/// killed after `timeout`. Returns its status (None: timed out) and output.
fn run(command: &mut Command, log: &Path, timeout: Duration) -> (Option<ExitStatus>, String) {
    let file = std::fs::File::create(log).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

fn qemu_io(uri: &str, commands: &[&str]) -> Command {
    qemu_io_opts(uri, commands, &[])
}

/// qemu-io opens read-write unless told `-r`, and a read-only export
/// (a snapshot) refuses that.
fn qemu_io_opts(uri: &str, commands: &[&str], options: &[&str]) -> Command {
    let mut command = Command::new("qemu-io");
    command.args(["-f", "raw"]).args(options);
    for c in commands {
        command.args(["-c", c]);
    }
    command.arg(uri);
    command
}

/// The attach token: the URI's export name.
fn token(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap()
}

/// `uri` with one character of its token changed.
fn tampered(uri: &str) -> String {
    let (base, token) = uri.rsplit_once('/').unwrap();
    let mut chars: Vec<char> = token.chars().collect();
    let at = chars.len() / 2;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    format!("{base}/{}", chars.into_iter().collect::<String>())
}

/// True if the `qemu-img map` entries covering [start, end) all have `key`
/// (`data` or `zero`) set.
fn map_says(map: &[Value], start: u64, end: u64, key: &str) -> bool {
    let mut at = start;
    let mut entries: Vec<(u64, u64, bool)> = map
        .iter()
        .map(|e| {
            (
                e["start"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                e[key].as_bool().unwrap_or(false),
            )
        })
        .collect();
    entries.sort();
    for (s, len, set) in entries {
        if s <= at && at < s + len {
            if !set {
                return false;
            }
            at = s + len;
            if at >= end {
                return true;
            }
        }
    }
    at >= end
}

/// A volume's `allocated_bytes` from `volume info`.
fn allocated(info: &Value) -> u64 {
    info["allocated_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("volume info has no allocated_bytes: {info}"))
}

/// xorshift64*: random test data from a fixed seed, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A raw image of `size` bytes: random data in `extents` (offset, length),
/// holes elsewhere (a sparse file).
fn raw_image(path: &Path, size: u64, extents: &[(u64, u64)], seed: u64) {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::create(path).unwrap();
    file.set_len(size).unwrap();
    let mut rng = Rng(seed | 1);
    for &(offset, length) in extents {
        let mut buf = vec![0u8; length as usize];
        rng.fill(&mut buf);
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&buf).unwrap();
    }
}

/// Panics at the first byte where `a` and `b` differ.
fn assert_same(what: &str, a: &[u8], b: &[u8]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    if let Some(at) = a.iter().zip(b).position(|(x, y)| x != y) {
        panic!(
            "{what}: first difference at byte {at} (block {}): {:#04x} != {:#04x}",
            at as u64 / BLOCK_BYTES,
            a[at],
            b[at]
        );
    }
}

#[test]
fn qemu_io_patterns_zeroes_multi_conn() {
    need("qemu-io", "qemu-utils");
    let dev = VolDev::start("qemu-io", 2);
    let size = 64 * MIB;
    let v = dev.create("disk", "64M");
    assert_eq!(v["size"], size, "{v}");
    assert_eq!(allocated(&dev.info("disk")), 0, "a new volume is thin");
    let uri = dev.attach("disk");

    // Never-written ranges read as zeroes.
    dev.qemu_io(&uri, &["read -P 0 0 1M", "read -P 0 63M 1M"]);

    let last = format!("write -P 0x44 {} 4k", size - BLOCK_BYTES);
    let last_read = format!("read -P 0x44 {} 4k", size - BLOCK_BYTES);
    dev.qemu_io(
        &uri,
        &[
            "write -P 0x11 0 4k",
            "write -P 0x22 64k 128k",
            "write -P 0x33 1028k 12k",
            &last,
            // One request of the maximum payload, and one qemu must split.
            "write -P 0x55 8M 32M",
            "write -P 0x66 40M 20M",
            // Unaligned: qemu reads, modifies and writes whole 4 KiB blocks
            // because the export's minimum block size is 4096.
            "write -P 0x77 2097252 200",
            "flush",
        ],
    );
    dev.qemu_io(
        &uri,
        &[
            "read -P 0x11 0 4k",
            "read -P 0 4k 60k",
            "read -P 0x22 64k 128k",
            "read -P 0 192k 64k",
            "read -P 0x33 1028k 12k",
            &last_read,
            "read -P 0x55 8M 32M",
            "read -P 0x66 40M 20M",
            "read -P 0 2M 100",
            "read -P 0x77 2097252 200",
            "read -P 0 2097452 3892",
        ],
    );
    let written = allocated(&dev.info("disk"));
    assert!(
        written >= 52 * MIB && written <= size,
        "allocated_bytes {written} after writing ~52 MiB"
    );
    // `volume ls` reports the same usage (it asks the owner shards too).
    let listed = dev.json(&["volume", "ls"]);
    let disk = listed
        .as_array()
        .and_then(|all| all.iter().find(|v| v["name"] == "disk"))
        .unwrap_or_else(|| panic!("volume ls has no disk: {listed}"));
    assert_eq!(allocated(disk), written, "volume ls: {disk}");

    // Discard and write-zeroes read back as zeroes and become holes.
    dev.qemu_io(
        &uri,
        &[
            "discard 64k 128k",
            "write -z 8M 4M",
            "write -z -u 12M 4M",
            "flush",
        ],
    );
    dev.qemu_io(
        &uri,
        &[
            "read -P 0x11 0 4k",
            "read -P 0 64k 128k",
            "read -P 0 8M 8M",
            "read -P 0x55 16M 24M",
        ],
    );
    let map = dev.map(&uri);
    assert!(
        map_says(&map, 64 << 10, 192 << 10, "zero"),
        "discarded range not zero in map: {map:?}"
    );
    // (write -z without -u asks the server to keep the range allocated.)
    assert!(
        map_says(&map, 12 * MIB, 16 * MIB, "zero"),
        "zeroed range not zero in map: {map:?}"
    );
    assert!(
        map_says(&map, 16 * MIB, 40 * MIB, "data"),
        "written range not data in map: {map:?}"
    );

    // Pipelined writes on one connection, FUA, then one aio flush.
    dev.qemu_io(
        &uri,
        &[
            "aio_write -P 0x81 20M 64k",
            "aio_write -P 0x82 21M 64k",
            "aio_write -P 0x83 22M 4k",
            "aio_flush",
            "write -f -P 0x84 23M 8k",
        ],
    );
    dev.qemu_io(
        &uri,
        &[
            "read -P 0x81 20M 64k",
            "read -P 0x82 21M 64k",
            "read -P 0x83 22M 4k",
            "read -P 0x84 23M 8k",
        ],
    );

    // Four writers at once on one volume (NBD_FLAG_CAN_MULTI_CONN): two
    // share a URI, two attach on their own.
    dev.create("shared", "64M");
    let uris = [
        dev.attach("shared"),
        dev.attach("shared"),
        dev.attach("shared"),
    ];
    let mut writers = Vec::new();
    for i in 0..4u64 {
        let uri = &uris[(i as usize).saturating_sub(1).min(2)];
        let mut commands = Vec::new();
        for j in 0..16u64 {
            commands.push(format!("write -P {} {} 1M", 0xa0 + i, (i * 16 + j) * MIB));
            if j % 4 == 3 {
                commands.push("flush".to_owned());
            }
        }
        let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
        let log = std::fs::File::create(dev.dir.join(format!("writer-{i}.log"))).unwrap();
        let child = qemu_io(uri, &commands)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        writers.push(Proc(child));
    }
    let deadline = Instant::now() + TOOL_TIMEOUT;
    for (i, w) in writers.iter_mut().enumerate() {
        let status = loop {
            if let Some(s) = w.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "writer {i} hung\n{}",
                dev.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(dev.dir.join(format!("writer-{i}.log"))).unwrap();
        assert!(
            status.success(),
            "writer {i} failed: {log}\n{}",
            dev.log_tail()
        );
    }
    let reads: Vec<String> = (0..4u64)
        .map(|i| format!("read -P {} {} 16M", 0xa0 + i, i * 16 * MIB))
        .collect();
    let reads: Vec<&str> = reads.iter().map(String::as_str).collect();
    dev.qemu_io(&uris[2], &reads);
}

#[test]
fn qemu_img_map_convert_import_bench() {
    need("qemu-img", "qemu-utils");
    need("qemu-io", "qemu-utils");
    // `volume import --from-url` downloads with curl.
    need("curl", "curl");
    let dev = VolDev::start("qemu-img", 1);
    dev.create("disk", "64M");
    let uri = dev.attach("disk");
    assert_eq!(dev.virtual_size(&uri), 64 * MIB);
    let map = dev.map(&uri);
    assert!(
        map_says(&map, 0, 64 * MIB, "zero"),
        "a new volume is all zero: {map:?}"
    );
    assert!(
        !map_says(&map, 0, 64 * MIB, "data"),
        "a new volume has no data: {map:?}"
    );

    // A 32 MiB raw image with holes, in and out byte for byte.
    let source = dev.dir.join("source.raw");
    let extents = [
        (0, 4 * MIB),
        (12 * MIB, MIB),
        (20 * MIB, 64 << 10),
        (31 * MIB, MIB),
    ];
    raw_image(&source, 32 * MIB, &extents, 7);
    dev.tool(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&source)
            .arg(&uri),
    );
    let out = dev.dir.join("out.raw");
    dev.tool(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "raw", &uri])
            .arg(&out),
    );
    let written = std::fs::read(&source).unwrap();
    let read = std::fs::read(&out).unwrap();
    assert_eq!(read.len() as u64, 64 * MIB);
    assert_same("volume vs source.raw", &read[..written.len()], &written);
    assert!(
        read[written.len()..].iter().all(|b| *b == 0),
        "bytes past the image are not zero"
    );
    dev.tool(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&source)
            .arg(&uri),
    );
    let map = dev.map(&uri);
    assert!(map_says(&map, 0, 4 * MIB, "data"), "{map:?}");
    assert!(map_says(&map, 12 * MIB, 13 * MIB, "data"), "{map:?}");
    assert!(
        map_says(&map, 4 * MIB, 12 * MIB, "zero"),
        "a hole of the image is not zero: {map:?}"
    );
    assert!(map_says(&map, 32 * MIB, 64 * MIB, "zero"), "{map:?}");

    // qcow2 from a file: the volume takes the image's virtual size.
    let qcow2 = dev.dir.join("source.qcow2");
    dev.tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&qcow2)
            .arg("48M"),
    );
    dev.tool(
        Command::new("qemu-io")
            .args([
                "-f",
                "qcow2",
                "-c",
                "write -P 0x5a 1M 64k",
                "-c",
                "write -P 0x5b 47M 1M",
            ])
            .arg(&qcow2),
    );
    dev.ok(&["volume", "import", "imported", qcow2.to_str().unwrap()]);
    let info = dev.info("imported");
    assert_eq!(info["size"], 48 * MIB, "{info}");
    let imported = dev.attach("imported");
    dev.tool(
        Command::new("qemu-img")
            .args(["compare", "-f", "qcow2", "-F", "raw"])
            .arg(&qcow2)
            .arg(&imported),
    );
    dev.qemu_io(
        &imported,
        &[
            "read -P 0 0 1M",
            "read -P 0x5a 1M 64k",
            "read -P 0x5b 47M 1M",
        ],
    );

    // A raw file into an existing, larger volume.
    dev.create("existing", "64M");
    dev.ok(&["volume", "import", "existing", source.to_str().unwrap()]);
    assert_eq!(
        dev.info("existing")["size"],
        64 * MIB,
        "import must not resize an existing volume"
    );
    let existing = dev.attach("existing");
    dev.tool(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&source)
            .arg(&existing),
    );

    // qcow2 from a URL.
    let http = common::serve_files(BTreeMap::from([(
        "/source.qcow2".to_owned(),
        std::fs::read(&qcow2).unwrap(),
    )]));
    let url = format!("http://{http}/source.qcow2");
    dev.ok(&["volume", "import", "fromurl", "--from-url", &url]);
    assert_eq!(dev.info("fromurl")["size"], 48 * MIB);
    let fromurl = dev.attach("fromurl");
    dev.tool(
        Command::new("qemu-img")
            .args(["compare", "-f", "qcow2", "-F", "raw"])
            .arg(&qcow2)
            .arg(&fromurl),
    );

    // bench: 2000 writes of 4 KiB, 16 in flight, a flush every 100, then
    // the pattern it wrote reads back; and a read run.
    dev.tool(Command::new("qemu-img").args([
        "bench",
        "-f",
        "raw",
        "-w",
        "-c",
        "2000",
        "-d",
        "16",
        "-s",
        "4k",
        "--pattern=0x5c",
        "--flush-interval=100",
        &uri,
    ]));
    dev.qemu_io(&uri, &["read -P 0x5c 0 8000k"]);
    dev.tool(Command::new("qemu-img").args([
        "bench", "-f", "raw", "-c", "2000", "-d", "16", "-s", "4k", &uri,
    ]));
}

#[test]
fn libnbd_tools() {
    need("nbdinfo", "libnbd-bin");
    need("nbdcopy", "libnbd-bin");
    need("qemu-img", "qemu-utils");
    let dev = VolDev::start("libnbd", 1);
    dev.create("disk", "64M");
    let uri = dev.attach("disk");
    let size = dev.tool(Command::new("nbdinfo").args(["--size", &uri]));
    assert_eq!(size.trim(), (64 * MIB).to_string());
    let out = dev.tool(Command::new("nbdinfo").args(["--json", &uri]));
    let info: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let export = &info["exports"][0];
    assert_eq!(export["export-size"], 64 * MIB, "{out}");
    for (flag, want) in [
        ("is_read_only", false),
        ("can_flush", true),
        ("can_fua", true),
        ("can_trim", true),
        ("can_zero", true),
        ("can_multi_conn", true),
    ] {
        assert_eq!(export[flag], want, "nbdinfo {flag}: {out}");
    }
    assert_eq!(export["block_size_minimum"], BLOCK_BYTES, "{out}");
    assert_eq!(export["block_size_maximum"], PAYLOAD_BYTES_MAX, "{out}");

    // nbdcopy in (it opens several connections when the server allows).
    let source = dev.dir.join("source.raw");
    raw_image(&source, 16 * MIB, &[(0, 2 * MIB), (8 * MIB, MIB)], 11);
    dev.tool(
        Command::new("nbdcopy")
            .arg("--flush")
            .arg(&source)
            .arg(&uri),
    );
    // --map: the written ranges are data, the rest holes.
    let map = dev.tool(Command::new("nbdinfo").args(["--map", &uri]));
    let extents = parse_nbdinfo_map(&map);
    let hole = |start: u64, end: u64| {
        extents
            .iter()
            .filter(|(s, l, _)| *s < end && s + l > start)
            .all(|(_, _, t)| t & 1 != 0)
    };
    assert!(
        hole(2 * MIB, 8 * MIB),
        "the image's hole is not a hole:\n{map}"
    );
    assert!(
        hole(16 * MIB, 64 * MIB),
        "never written, not a hole:\n{map}"
    );
    assert!(!hole(0, 2 * MIB), "written data shows as a hole:\n{map}");
    assert_eq!(
        extents.iter().map(|(_, l, _)| l).sum::<u64>(),
        64 * MIB,
        "the map does not cover the volume:\n{map}"
    );

    // nbdcopy out.
    let out = dev.dir.join("out.raw");
    dev.tool(Command::new("nbdcopy").arg(&uri).arg(&out));
    let written = std::fs::read(&source).unwrap();
    let read = std::fs::read(&out).unwrap();
    assert_eq!(read.len() as u64, 64 * MIB);
    assert_same("nbdcopy out vs in", &read[..written.len()], &written);
    assert!(read[written.len()..].iter().all(|b| *b == 0));
}

/// `nbdinfo --map` lines: start, length, type (bit 0 hole, bit 1 zero).
fn parse_nbdinfo_map(text: &str) -> Vec<(u64, u64, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let start = fields.next()?.parse().ok()?;
            let length = fields.next()?.parse().ok()?;
            let kind = fields.next()?.parse().ok()?;
            Some((start, length, kind))
        })
        .collect()
}

#[test]
fn fio_verify() {
    need("fio", "fio");
    let dev = VolDev::start("fio", 1);
    dev.create("disk", "128M");
    let uri = dev.attach("disk");
    let job = |extra: &[&str]| {
        let mut command = Command::new("fio");
        command
            .args([
                "--name=randwrite",
                "--ioengine=nbd",
                "--rw=randwrite",
                "--bs=4k",
            ])
            .args([
                "--size=32M",
                "--iodepth=16",
                "--verify=crc32c",
                "--verify_fatal=1",
            ])
            .args(["--verify_state_save=0", "--randseed=1234"])
            .arg(format!("--uri={uri}"))
            .args(extra);
        command
    };
    let out = dev.tool(&mut job(&["--do_verify=0"]));
    assert!(out.contains("err= 0"), "fio write pass:\n{out}");
    let out = dev.tool(&mut job(&["--verify_only=1"]));
    assert!(out.contains("err= 0"), "fio verify pass:\n{out}");

    // Large requests near the payload limit, verified inline.
    let out = dev.tool(
        Command::new("fio")
            .args([
                "--name=seq",
                "--ioengine=nbd",
                "--rw=write",
                "--bs=8M",
                "--iodepth=4",
            ])
            .args([
                "--offset=64M",
                "--size=64M",
                "--verify=crc32c",
                "--verify_fatal=1",
            ])
            .arg("--verify_state_save=0")
            .arg(format!("--uri={uri}")),
    );
    assert!(out.contains("err= 0"), "fio sequential pass:\n{out}");
    // The first pass is untouched by the second.
    let out = dev.tool(&mut job(&["--verify_only=1"]));
    assert!(out.contains("err= 0"), "fio verify pass:\n{out}");
}

/// What the crash driver wrote and which of it must survive.
struct CrashModel {
    /// Per block: the sequence numbers written to it, in order.
    history: Vec<Vec<u64>>,
    /// Per block: how many entries of `history` are known durable (the
    /// newest durable write is `history[b][durable[b] - 1]`).
    durable: Vec<usize>,
    /// Writes acknowledged but not yet covered by an acknowledged flush.
    pending: Vec<(usize, usize)>,
    durable_writes: usize,
    flushes: usize,
}

impl CrashModel {
    fn new() -> Self {
        Self {
            history: vec![Vec::new(); CRASH_BLOCKS as usize],
            durable: vec![0; CRASH_BLOCKS as usize],
            pending: Vec::new(),
            durable_writes: 0,
            flushes: 0,
        }
    }

    fn make_durable(&mut self, block: usize, index: usize) {
        self.durable[block] = self.durable[block].max(index + 1);
        self.durable_writes += 1;
    }

    /// After a restart: what each block holds is its only durable version.
    fn restart_from(&mut self, found: &[u64]) {
        for (b, seq) in found.iter().enumerate() {
            self.history[b] = if *seq == 0 { Vec::new() } else { vec![*seq] };
            self.durable[b] = self.history[b].len();
        }
        self.pending.clear();
    }

    /// The sequence numbers block `b` may hold after a crash: its newest
    /// durable write or any later one (0: never written).
    fn allowed(&self, b: usize) -> Vec<u64> {
        let d = self.durable[b];
        if d == 0 {
            std::iter::once(0)
                .chain(self.history[b].iter().copied())
                .collect()
        } else {
            self.history[b][d - 1..].to_vec()
        }
    }
}

/// The contents of `block` as written by write number `seq`: a header that
/// names both, then bytes that depend on both (so a torn or misplaced
/// block is caught).
fn crash_block(block: u64, seq: u64) -> Vec<u8> {
    let mut buf = vec![0u8; BLOCK_BYTES as usize];
    Rng(((block << 40) ^ seq ^ CRASH_SEED) | 1).fill(&mut buf[16..]);
    buf[..8].copy_from_slice(&block.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    buf
}

/// Writes 4 KiB blocks over two connections until one fails, recording in
/// `model` what was acknowledged: a write with FUA is durable once
/// answered; one without, once a later FLUSH on either connection is
/// answered (the export sets NBD_FLAG_CAN_MULTI_CONN). Returns why it
/// stopped.
fn crash_driver(nbd: SocketAddr, token: &str, model: &Mutex<CrashModel>, first_seq: u64) -> String {
    let mut conns = Vec::new();
    for _ in 0..2 {
        match wire::go(nbd, token) {
            Ok(wire::Go::Ready(c)) => conns.push(c),
            Ok(wire::Go::Refused { reply, message }) => {
                return format!("refused: {reply:#x} {message}")
            }
            Err(e) => return format!("connect: {e}"),
        }
    }
    let mut rng = Rng(CRASH_SEED ^ first_seq);
    for seq in first_seq.. {
        let block = rng.next() % CRASH_BLOCKS;
        let fua = rng.next().is_multiple_of(4);
        let c = (rng.next() % 2) as usize;
        let index = {
            let mut m = model.lock().unwrap();
            m.history[block as usize].push(seq);
            m.history[block as usize].len() - 1
        };
        match conns[c].write(block * BLOCK_BYTES, &crash_block(block, seq), fua) {
            Ok(0) => {}
            Ok(errno) => return format!("write {seq}: errno {errno}"),
            Err(e) => return format!("write {seq}: {e}"),
        }
        {
            let mut m = model.lock().unwrap();
            if fua {
                m.make_durable(block as usize, index);
            } else {
                m.pending.push((block as usize, index));
            }
        }
        if seq % 8 == 0 {
            let c = (rng.next() % 2) as usize;
            // Single-threaded: every pending write was answered before
            // this flush is sent.
            match conns[c].flush() {
                Ok(0) => {}
                Ok(errno) => return format!("flush after {seq}: errno {errno}"),
                Err(e) => return format!("flush after {seq}: {e}"),
            }
            let mut m = model.lock().unwrap();
            let pending = std::mem::take(&mut m.pending);
            for (b, i) in pending {
                m.make_durable(b, i);
            }
            m.flushes += 1;
        }
    }
    unreachable!()
}

#[test]
fn crash_keeps_flushed_writes() {
    need("qemu-io", "qemu-utils");
    need("fio", "fio");
    let mut dev = VolDev::start("crash", 2);
    dev.create("crash", "64M");
    let uri = dev.attach("crash");
    // Acknowledged by qemu-io (each run ends with a flush).
    for i in 0..4u64 {
        dev.qemu_io(
            &uri,
            &[
                &format!("write -P {} {} 64k", 0x51 + i, MIB + i * (64 << 10)),
                "flush",
            ],
        );
    }
    let qemu_reads: Vec<String> = (0..4u64)
        .map(|i| format!("read -P {} {} 64k", 0x51 + i, MIB + i * (64 << 10)))
        .collect();
    let qemu_reads: Vec<&str> = qemu_reads.iter().map(String::as_str).collect();

    // The second round recovers a store that was itself recovered.
    let model = Arc::new(Mutex::new(CrashModel::new()));
    let mut first_seq = 1;
    for round in 1..=CRASH_ROUNDS {
        let uri = dev.attach("crash");
        crash_round(&mut dev, &uri, &model, first_seq, round);
        let uri = dev.attach("crash");
        let found = crash_verify(&dev, &uri, &model.lock().unwrap(), round);
        dev.qemu_io(&uri, &qemu_reads);
        // Everything reads without error (fio's region too).
        dev.qemu_io(&uri, &["read 0 64M"]);
        let mut m = model.lock().unwrap();
        first_seq = m.history.iter().flatten().max().copied().unwrap_or(0) + 1;
        m.restart_from(&found);
    }
    let uri = dev.attach("crash");
    dev.qemu_io(
        &uri,
        &["write -P 0x99 2M 64k", "flush", "read -P 0x99 2M 64k"],
    );
}

/// Runs the crash driver (and fio beside it, with an fsync, i.e. an NBD
/// flush, every 16 writes in 32 MiB..64 MiB) until enough writes are
/// durable, kills photon with SIGKILL and starts it again.
fn crash_round(
    dev: &mut VolDev,
    uri: &str,
    model: &Arc<Mutex<CrashModel>>,
    first_seq: u64,
    round: usize,
) {
    let fio_log = std::fs::File::create(dev.dir.join(format!("fio-load-{round}.log"))).unwrap();
    let mut fio = Proc(
        Command::new("fio")
            .args(["--name=load", "--ioengine=nbd", "--rw=randwrite"])
            .args(["--bs=4k", "--iodepth=8", "--offset=32M", "--size=32M"])
            .args(["--fsync=16", "--time_based", "--runtime=120"])
            .arg(format!("--uri={uri}"))
            .current_dir(&dev.dir)
            .stdin(Stdio::null())
            .stdout(fio_log.try_clone().unwrap())
            .stderr(fio_log)
            .spawn()
            .unwrap(),
    );
    let driver = {
        let model = model.clone();
        let token = token(uri).to_owned();
        let nbd = dev.nbd;
        std::thread::spawn(move || crash_driver(nbd, &token, &model, first_seq))
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let durable_before = model.lock().unwrap().durable_writes;
    loop {
        let durable = model.lock().unwrap().durable_writes - durable_before;
        if started.elapsed() >= CRASH_AFTER && durable >= CRASH_MIN_DURABLE {
            break;
        }
        if driver.is_finished() {
            let why = driver.join().unwrap();
            panic!(
                "round {round}: the crash driver stopped before the kill: {why}\n{}",
                dev.log_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: only {durable} durable writes in a minute\n{}",
            dev.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    dev.kill9();
    let why = driver.join().unwrap();
    let fio_running = fio.0.try_wait().unwrap().is_none();
    let _ = fio.0.kill();
    let _ = fio.0.wait();
    let m = model.lock().unwrap();
    eprintln!(
        "round {round}: killed photon after {:.1} s, {} durable writes and {} flushes in all \
         (driver: {why}; fio still running: {fio_running})",
        started.elapsed().as_secs_f64(),
        m.durable_writes,
        m.flushes
    );
    drop(m);
    dev.spawn();
    let info = dev.info("crash");
    assert_eq!(info["size"], 64 * MIB, "round {round}: {info}");
}

/// Reads the driver's blocks back and checks each against the model;
/// returns the write each block holds (0: never written).
fn crash_verify(dev: &VolDev, uri: &str, model: &CrashModel, round: usize) -> Vec<u64> {
    let mut conn = match wire::go(dev.nbd, token(uri)).unwrap() {
        wire::Go::Ready(c) => c,
        wire::Go::Refused { reply, message } => {
            panic!("round {round}: after restart: {reply:#x} {message}")
        }
    };
    let bytes = conn
        .read(0, (CRASH_BLOCKS * BLOCK_BYTES) as u32)
        .unwrap()
        .unwrap_or_else(|errno| {
            panic!(
                "round {round}: read after restart: errno {errno}\n{}",
                dev.log_tail()
            )
        });
    drop(conn);
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for (b, data) in bytes.chunks(BLOCK_BYTES as usize).enumerate() {
        let seq = if data.iter().all(|x| *x == 0) {
            0
        } else {
            u64::from_le_bytes(data[8..16].try_into().unwrap())
        };
        found.push(seq);
        if seq != 0 && data != crash_block(b as u64, seq).as_slice() {
            failures.push(format!(
                "block {b}: torn or foreign data (header seq {seq})"
            ));
        } else if !model.allowed(b).contains(&seq) {
            failures.push(format!(
                "block {b}: holds write {seq}; durable {} of history {:?}",
                model.durable[b], model.history[b]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "round {round}: {} blocks lost durable writes (seed {CRASH_SEED:#x}):\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        dev.log_tail()
    );
    found
}

#[test]
fn snapshot_and_clone() {
    need("qemu-io", "qemu-utils");
    let dev = VolDev::start("snapshot", 2);
    dev.create("base", "64M");
    let base = dev.attach("base");
    dev.qemu_io(
        &base,
        &["write -P 0xa1 0 1M", "write -P 0xa2 8M 64k", "flush"],
    );

    dev.ok(&["volume", "snapshot", "base", "s1"]);
    let snap_info = dev.info("base@s1");
    assert_eq!(snap_info["kind"], "snapshot", "{snap_info}");
    assert_eq!(snap_info["size"], 64 * MIB, "{snap_info}");
    dev.refused(&["volume", "snapshot", "base", "s1"]);

    // The volume moves on; the snapshot keeps what it had.
    dev.qemu_io(&base, &["write -P 0xb1 0 1M", "discard 8M 64k", "flush"]);
    let snap = dev.attach("base@s1");
    dev.qemu_io_ro(
        &snap,
        &[
            "read -P 0xa1 0 1M",
            "read -P 0xa2 8M 64k",
            "read -P 0 9M 1M",
        ],
    );
    dev.qemu_io(&base, &["read -P 0xb1 0 1M", "read -P 0 8M 64k"]);

    // Read-only: qemu refuses to open it for writing, and a raw WRITE gets
    // EPERM.
    dev.tool_fails(&mut qemu_io(&snap, &["write -P 0xee 0 4k"]));
    let mut conn = match wire::go(dev.nbd, token(&snap)).unwrap() {
        wire::Go::Ready(c) => c,
        wire::Go::Refused { reply, message } => panic!("snapshot attach: {reply:#x} {message}"),
    };
    assert_ne!(
        conn.export.flags & wire::FLAG_READ_ONLY,
        0,
        "snapshot export not read-only"
    );
    let errno = conn.write(0, &[0xee; 4096], false).unwrap();
    assert_eq!(errno, wire::EPERM, "WRITE to a snapshot");
    drop(conn);
    dev.qemu_io_ro(&snap, &["read -P 0xa1 0 1M"]);

    // A clone starts as the snapshot and goes its own way.
    dev.ok(&["volume", "clone", "base@s1", "c1"]);
    let clone_info = dev.info("c1");
    assert_eq!(clone_info["kind"], "volume", "{clone_info}");
    assert_eq!(clone_info["size"], 64 * MIB, "{clone_info}");
    let clone = dev.attach("c1");
    dev.qemu_io(&clone, &["read -P 0xa1 0 1M", "read -P 0xa2 8M 64k"]);
    dev.qemu_io(
        &clone,
        &["write -P 0xc1 0 64k", "write -P 0xc2 30M 4k", "flush"],
    );
    dev.qemu_io(
        &clone,
        &[
            "read -P 0xc1 0 64k",
            "read -P 0xa1 64k 960k",
            "read -P 0xc2 30M 4k",
        ],
    );
    dev.qemu_io_ro(&snap, &["read -P 0xa1 0 1M", "read -P 0 30M 4k"]);
    dev.qemu_io(&base, &["read -P 0xb1 0 1M", "read -P 0 30M 4k"]);

    let names: Vec<String> = dev
        .json(&["volume", "ls"])
        .as_array()
        .unwrap_or_else(|| panic!("volume ls is not an array"))
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    for name in ["base", "base@s1", "c1"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} not in volume ls: {names:?}"
        );
    }

    // Removing the volume keeps the snapshot and the clone.
    dev.ok(&["volume", "rm", "base"]);
    dev.refused(&["volume", "info", "base"]);
    dev.tool_fails(&mut qemu_io(&base, &["read 0 4k"]));
    let snap = dev.attach("base@s1");
    dev.qemu_io_ro(&snap, &["read -P 0xa1 0 1M", "read -P 0xa2 8M 64k"]);
    dev.qemu_io(&clone, &["read -P 0xc1 0 64k", "read -P 0xa1 64k 960k"]);

    // A snapshot with a clone may be refused; if removed, the clone keeps
    // its data.
    let out = dev.ctl_as(&dev.admin_config, &["volume", "rm", "base@s1"]);
    if out.status.success() {
        dev.qemu_io(
            &clone,
            &[
                "read -P 0xc1 0 64k",
                "read -P 0xa1 64k 960k",
                "read -P 0xa2 8M 64k",
            ],
        );
        dev.ok(&["volume", "rm", "c1"]);
    } else {
        eprintln!(
            "rm of a snapshot with a clone refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dev.ok(&["volume", "rm", "c1"]);
        dev.ok(&["volume", "rm", "base@s1"]);
    }
    let left = dev.json(&["volume", "ls"]);
    assert_eq!(
        left.as_array().map(Vec::len),
        Some(0),
        "volumes left: {left}"
    );
}

#[test]
fn handshake_and_bad_input() {
    need("qemu-io", "qemu-utils");
    need("nbdinfo", "libnbd-bin");
    let dev = VolDev::start("handshake", 2);
    dev.create("disk", "64M");
    let uri = dev.attach("disk");
    dev.qemu_io(&uri, &["write -P 0x42 0 64k", "flush"]);

    // What the export advertises.
    let mut conn = match wire::go(dev.nbd, token(&uri)).unwrap() {
        wire::Go::Ready(c) => c,
        wire::Go::Refused { reply, message } => panic!("attach: {reply:#x} {message}"),
    };
    let export = conn.export.clone();
    assert_eq!(export.size, 64 * MIB);
    for (flag, name) in [
        (wire::FLAG_HAS_FLAGS, "HAS_FLAGS"),
        (wire::FLAG_SEND_FLUSH, "SEND_FLUSH"),
        (wire::FLAG_SEND_FUA, "SEND_FUA"),
        (wire::FLAG_SEND_TRIM, "SEND_TRIM"),
        (wire::FLAG_SEND_WRITE_ZEROES, "SEND_WRITE_ZEROES"),
        (wire::FLAG_CAN_MULTI_CONN, "CAN_MULTI_CONN"),
    ] {
        assert_ne!(
            export.flags & flag,
            0,
            "NBD_FLAG_{name} not set: {:#x}",
            export.flags
        );
    }
    assert_eq!(
        export.flags & wire::FLAG_READ_ONLY,
        0,
        "volume export read-only"
    );
    let (minimum, preferred, maximum) = export.block_sizes.expect("no NBD_INFO_BLOCK_SIZE");
    assert_eq!(minimum as u64, BLOCK_BYTES);
    assert!(
        preferred as u64 >= BLOCK_BYTES && preferred % minimum == 0,
        "preferred {preferred}"
    );
    assert_eq!(maximum as u64, PAYLOAD_BYTES_MAX);

    // Bad requests get an errno and the connection goes on.
    let end = export.size;
    match conn.read(end, 4096) {
        Ok(Err(errno)) => assert_ne!(errno, 0),
        other => panic!("READ past the end: {other:?}"),
    }
    let errno = conn.write(end - BLOCK_BYTES, &[1u8; 8192], false).unwrap();
    assert_ne!(errno, 0, "WRITE across the end accepted");
    let errno = conn.write(100, &[1u8; 100], false).unwrap();
    assert_ne!(
        errno, 0,
        "unaligned WRITE accepted (minimum block size 4096)"
    );
    let data = conn.read(0, 65536).unwrap().expect("READ after errors");
    assert!(
        data.iter().all(|b| *b == 0x42),
        "data changed by refused writes"
    );
    // Longer than the maximum payload: an errno, or the connection closed.
    match conn.read(0, (2 * PAYLOAD_BYTES_MAX) as u32) {
        Ok(Err(errno)) => assert_ne!(errno, 0),
        Ok(Ok(_)) => panic!("a READ over the maximum payload was served"),
        Err(e) => eprintln!("READ over the maximum payload closed the connection: {e}"),
    }
    drop(conn);

    // Tokens: tampered, empty, for nothing, expired.
    for (what, name) in [
        ("tampered", token(&tampered(&uri)).to_owned()),
        ("empty", String::new()),
        ("made up", "not-a-token".to_owned()),
    ] {
        match wire::go(dev.nbd, &name).unwrap() {
            wire::Go::Refused { reply, .. } => {
                assert!(
                    reply & wire::REP_ERROR != 0,
                    "{what} token: reply {reply:#x}"
                )
            }
            wire::Go::Ready(_) => panic!("{what} token accepted"),
        }
    }
    match wire::go(dev.nbd, token(&tampered(&uri))).unwrap() {
        wire::Go::Refused { reply, .. } => {
            assert_eq!(reply, wire::REP_ERR_POLICY, "tampered token")
        }
        wire::Go::Ready(_) => unreachable!(),
    }
    dev.tool_fails(&mut qemu_io(&tampered(&uri), &["read 0 4k"]));
    dev.tool_fails(Command::new("nbdinfo").arg(tampered(&uri)));
    let short = dev.attach_as(&dev.admin_config, "disk", &["--ttl", "2s"]);
    dev.qemu_io(&short, &["read -P 0x42 0 4k"]);
    std::thread::sleep(Duration::from_millis(3500));
    match wire::go(dev.nbd, token(&short)).unwrap() {
        wire::Go::Refused { reply, .. } => assert_eq!(reply, wire::REP_ERR_POLICY, "expired token"),
        wire::Go::Ready(_) => panic!("an expired token was accepted"),
    }
    dev.tool_fails(&mut qemu_io(&short, &["read 0 4k"]));

    // Garbage closes that connection only. A client that connects and
    // says nothing is held open throughout.
    let idle = TcpStream::connect(dev.nbd).unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("unknown client flags", vec![0xff; 4]),
        (
            "bad option magic",
            [&wire::client_flags()[..], &[0xab_u8; 16][..]].concat(),
        ),
        ("an option of 4 GiB", {
            let mut b = wire::client_flags().to_vec();
            b.extend_from_slice(&wire::IHAVEOPT.to_be_bytes());
            b.extend_from_slice(&wire::OPT_GO.to_be_bytes());
            b.extend_from_slice(&0xffff_fff0u32.to_be_bytes());
            b
        }),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ];
    for (what, bytes) in &cases {
        let mut s = TcpStream::connect(dev.nbd).unwrap();
        if *what != "an HTTP request" {
            wire::read_greeting(&mut s).unwrap_or_else(|e| panic!("greeting: {e}"));
        }
        let _ = s.write_all(bytes);
        assert!(
            wire::closed_within(&mut s, Duration::from_secs(10)),
            "{what}: the server kept the connection open\n{}",
            dev.log_tail()
        );
    }
    // Garbage after a good handshake, in transmission.
    let mut conn = match wire::go(dev.nbd, token(&uri)).unwrap() {
        wire::Go::Ready(c) => c,
        wire::Go::Refused { reply, message } => panic!("attach: {reply:#x} {message}"),
    };
    let _ = conn.stream.write_all(&[0x5a; 28]);
    assert!(
        wire::closed_within(&mut conn.stream, Duration::from_secs(10)),
        "garbage request: connection kept open"
    );
    drop(conn);
    // Still serving, the idle client still connected.
    dev.qemu_io(
        &uri,
        &[
            "read -P 0x42 0 64k",
            "write -P 0x43 64k 4k",
            "read -P 0x43 64k 4k",
        ],
    );
    let out = dev.tool(Command::new("nbdinfo").args(["--size", &uri]));
    assert_eq!(out.trim(), (64 * MIB).to_string());
    drop(idle);
}

#[test]
fn resize_and_errors() {
    need("qemu-io", "qemu-utils");
    need("qemu-img", "qemu-utils");
    let dev = VolDev::start("resize", 1);
    dev.create("grow", "64M");
    let uri = dev.attach("grow");
    dev.qemu_io(
        &uri,
        &["write -P 0x61 0 4k", "write -P 0x62 63M 1M", "flush"],
    );

    dev.ok(&["volume", "resize", "grow", "--size", "128M"]);
    assert_eq!(dev.info("grow")["size"], 128 * MIB);
    let uri = dev.attach("grow");
    assert_eq!(dev.virtual_size(&uri), 128 * MIB);
    dev.qemu_io(
        &uri,
        &[
            "read -P 0x61 0 4k",
            "read -P 0x62 63M 1M",
            "read -P 0 64M 64M",
            "write -P 0x63 127M 1M",
            "flush",
            "read -P 0x63 127M 1M",
        ],
    );
    dev.refused(&["volume", "resize", "grow", "--size", "64M"]);
    dev.refused(&["volume", "resize", "grow", "--size", "0"]);
    assert_eq!(
        dev.info("grow")["size"],
        128 * MIB,
        "a refused shrink changed the size"
    );
    dev.qemu_io(&uri, &["read -P 0x63 127M 1M"]);

    // Unknown volumes, in every command.
    for args in [
        &["volume", "info", "nope"][..],
        &["volume", "attach", "nope"],
        &["volume", "rm", "nope"],
        &["volume", "resize", "nope", "--size", "1G"],
        &["volume", "snapshot", "nope", "s"],
        &["volume", "clone", "nope@s", "c"],
        &["volume", "clone", "grow@nope", "c"],
        &["volume", "attach", "grow@nope"],
    ] {
        dev.refused(args);
    }
    // Bad names and sizes; a name taken.
    for args in [
        &["volume", "create", "grow", "--size", "64M"][..],
        &["volume", "create", "a@b", "--size", "64M"],
        &["volume", "create", "a/b", "--size", "64M"],
        &["volume", "create", "", "--size", "64M"],
        &["volume", "create", "zero", "--size", "0"],
        &["volume", "create", "junk", "--size", "lots"],
    ] {
        dev.refused(args);
    }
    let names: Vec<Value> = dev
        .json(&["volume", "ls"])
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(names.len(), 1, "only `grow` exists: {names:?}");
}

#[test]
fn tenant_isolation() {
    need("qemu-io", "qemu-utils");
    let dev = VolDev::start("tenants", 1);
    let ours = dev.create("disk", "64M");
    let uri = dev.attach("disk");
    dev.qemu_io(&uri, &["write -P 0x42 0 64k", "flush"]);

    let hank = dev.dir.join("config-globex-hank");
    let password = "Globex-hank-pw-7Qz";
    let out = ctl_stdin_as(
        &dev.admin_config,
        dev.control,
        &[
            "iam",
            "tenant",
            "create",
            "globex",
            "--admin",
            "hank",
            "--password-stdin",
        ],
        password,
    );
    assert!(
        out.status.success(),
        "tenant create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    login_as(&hank, dev.control, "globex", "hank", password);

    let theirs = dev.json_as(&hank, &["volume", "ls"]);
    assert_eq!(
        theirs.as_array().map(Vec::len),
        Some(0),
        "globex sees: {theirs}"
    );
    for args in [
        &["volume", "info", "disk"][..],
        &["volume", "attach", "disk"],
        &["volume", "resize", "disk", "--size", "128M"],
        &["volume", "snapshot", "disk", "s"],
        &["volume", "rm", "disk"],
    ] {
        dev.refused_as(&hank, args);
    }
    // Names are per tenant: globex's `disk` is another volume.
    let mine = dev.json_as(&hank, &["volume", "create", "disk", "--size", "64M"]);
    assert_ne!(mine["id"], ours["id"], "the same volume id in two tenants");
    let their_uri = dev.attach_as(&hank, "disk", &[]);
    assert_ne!(token(&their_uri), token(&uri));
    dev.qemu_io(
        &their_uri,
        &["read -P 0 0 64k", "write -P 0x43 0 64k", "flush"],
    );
    dev.qemu_io(&uri, &["read -P 0x42 0 64k"]);
    assert_eq!(dev.info("disk")["size"], 64 * MIB);
}

/// A minimal NBD client written from the protocol document
/// (doc/proto.md in the NBD project): fixed newstyle, NBD_OPT_GO, simple
/// replies only. Used where the test needs exact replies or exact
/// acknowledgements.
mod wire {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
    pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
    pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
    pub const REQUEST_MAGIC: u32 = 0x2560_9513;
    pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
    pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
    pub const FLAG_NO_ZEROES: u16 = 1 << 1;
    pub const OPT_GO: u32 = 7;
    pub const REP_ACK: u32 = 1;
    pub const REP_INFO: u32 = 3;
    pub const REP_ERROR: u32 = 1 << 31;
    pub const REP_ERR_POLICY: u32 = REP_ERROR | 2;
    pub const INFO_EXPORT: u16 = 0;
    pub const INFO_BLOCK_SIZE: u16 = 3;
    pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
    pub const FLAG_READ_ONLY: u16 = 1 << 1;
    pub const FLAG_SEND_FLUSH: u16 = 1 << 2;
    pub const FLAG_SEND_FUA: u16 = 1 << 3;
    pub const FLAG_SEND_TRIM: u16 = 1 << 5;
    pub const FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
    pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
    pub const CMD_READ: u16 = 0;
    pub const CMD_WRITE: u16 = 1;
    pub const CMD_DISC: u16 = 2;
    pub const CMD_FLUSH: u16 = 3;
    pub const CMD_FLAG_FUA: u16 = 1 << 0;
    pub const EPERM: u32 = 1;
    /// Option replies longer than this are not believed.
    const OPTION_REPLY_BYTES_MAX: u32 = 64 << 10;
    const IO_TIMEOUT: Duration = Duration::from_secs(30);

    #[derive(Debug, Clone)]
    pub struct Export {
        pub size: u64,
        pub flags: u16,
        /// (minimum, preferred, maximum) from NBD_INFO_BLOCK_SIZE.
        pub block_sizes: Option<(u32, u32, u32)>,
    }

    pub enum Go {
        Ready(Conn),
        Refused { reply: u32, message: String },
    }

    pub struct Conn {
        pub stream: TcpStream,
        pub export: Export,
        cookie: u64,
    }

    /// The client flags this client sends: fixed newstyle, no zeroes.
    pub fn client_flags() -> [u8; 4] {
        (u32::from(FLAG_FIXED_NEWSTYLE) | u32::from(FLAG_NO_ZEROES)).to_be_bytes()
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn invalid(message: String) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, message)
    }

    /// Reads and checks the server's greeting; returns its handshake flags.
    pub fn read_greeting(s: &mut TcpStream) -> std::io::Result<u16> {
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut g = [0u8; 18];
        s.read_exact(&mut g)?;
        if u64_at(&g, 0) != NBD_MAGIC || u64_at(&g, 8) != IHAVEOPT {
            return Err(invalid(format!("not a newstyle greeting: {g:02x?}")));
        }
        let flags = u16_at(&g, 16);
        if flags & FLAG_FIXED_NEWSTYLE == 0 || flags & FLAG_NO_ZEROES == 0 {
            return Err(invalid(format!("handshake flags {flags:#x}")));
        }
        Ok(flags)
    }

    /// Handshake and NBD_OPT_GO for export `name`, asking for block sizes.
    pub fn go(address: SocketAddr, name: &str) -> std::io::Result<Go> {
        let mut s = TcpStream::connect(address)?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        read_greeting(&mut s)?;
        let mut out = client_flags().to_vec();
        let mut data = (name.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        out.extend_from_slice(&IHAVEOPT.to_be_bytes());
        out.extend_from_slice(&OPT_GO.to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&data);
        s.write_all(&out)?;
        let mut export = Export {
            size: 0,
            flags: 0,
            block_sizes: None,
        };
        let mut have_export = false;
        loop {
            let mut h = [0u8; 20];
            s.read_exact(&mut h)?;
            let (magic, option, reply, length) =
                (u64_at(&h, 0), u32_at(&h, 8), u32_at(&h, 12), u32_at(&h, 16));
            if magic != OPTION_REPLY_MAGIC || option != OPT_GO || length > OPTION_REPLY_BYTES_MAX {
                return Err(invalid(format!("option reply header {h:02x?}")));
            }
            let mut body = vec![0u8; length as usize];
            s.read_exact(&mut body)?;
            match reply {
                REP_ACK if have_export => {
                    return Ok(Go::Ready(Conn {
                        stream: s,
                        export,
                        cookie: 0,
                    }))
                }
                REP_ACK => return Err(invalid("NBD_REP_ACK without NBD_INFO_EXPORT".into())),
                REP_INFO if body.len() >= 2 => match u16_at(&body, 0) {
                    INFO_EXPORT if body.len() == 12 => {
                        export.size = u64_at(&body, 2);
                        export.flags = u16_at(&body, 10);
                        have_export = true;
                    }
                    INFO_BLOCK_SIZE if body.len() == 14 => {
                        export.block_sizes =
                            Some((u32_at(&body, 2), u32_at(&body, 6), u32_at(&body, 10)));
                    }
                    INFO_EXPORT | INFO_BLOCK_SIZE => {
                        return Err(invalid(format!("NBD_REP_INFO of {} bytes", body.len())))
                    }
                    _ => {}
                },
                r if r & REP_ERROR != 0 => {
                    return Ok(Go::Refused {
                        reply: r,
                        message: String::from_utf8_lossy(&body).into_owned(),
                    })
                }
                r => return Err(invalid(format!("unexpected option reply {r:#x}"))),
            }
        }
    }

    impl Conn {
        /// Sends one request and waits for its simple reply; returns the
        /// errno and, for a successful READ, the data.
        fn request(
            &mut self,
            command: u16,
            flags: u16,
            offset: u64,
            length: u32,
            data: &[u8],
        ) -> std::io::Result<(u32, Vec<u8>)> {
            self.cookie += 1;
            let mut out = Vec::with_capacity(28 + data.len());
            out.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
            out.extend_from_slice(&flags.to_be_bytes());
            out.extend_from_slice(&command.to_be_bytes());
            out.extend_from_slice(&self.cookie.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(data);
            self.stream.write_all(&out)?;
            let mut r = [0u8; 16];
            self.stream.read_exact(&mut r)?;
            if u32_at(&r, 0) != SIMPLE_REPLY_MAGIC || u64_at(&r, 8) != self.cookie {
                return Err(invalid(format!("reply {r:02x?} to cookie {}", self.cookie)));
            }
            let errno = u32_at(&r, 4);
            let mut payload = Vec::new();
            if command == CMD_READ && errno == 0 {
                payload = vec![0u8; length as usize];
                self.stream.read_exact(&mut payload)?;
            }
            Ok((errno, payload))
        }

        pub fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> std::io::Result<u32> {
            let flags = if fua { CMD_FLAG_FUA } else { 0 };
            let (errno, _) = self.request(CMD_WRITE, flags, offset, data.len() as u32, data)?;
            Ok(errno)
        }

        pub fn flush(&mut self) -> std::io::Result<u32> {
            Ok(self.request(CMD_FLUSH, 0, 0, 0, &[])?.0)
        }

        /// The data, or the errno the server answered.
        pub fn read(&mut self, offset: u64, length: u32) -> std::io::Result<Result<Vec<u8>, u32>> {
            let (errno, data) = self.request(CMD_READ, 0, offset, length, &[])?;
            Ok(if errno == 0 { Ok(data) } else { Err(errno) })
        }
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            let mut out = Vec::with_capacity(28);
            out.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
            out.extend_from_slice(&0u16.to_be_bytes());
            out.extend_from_slice(&CMD_DISC.to_be_bytes());
            out.extend_from_slice(&[0u8; 20]);
            let _ = self.stream.write_all(&out);
        }
    }

    /// True if the peer closes `s` (EOF or reset) within `timeout`; bytes
    /// it sends first (an error reply) are read and dropped.
    pub fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        let mut seen = 0usize;
        while Instant::now() < deadline && seen < (1 << 20) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => seen += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }
}
