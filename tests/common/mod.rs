//! Shared by the integration tests: start `photon dev` and `photon node`
//! processes, log in, and run `photon ctl` as a given user.
#![allow(dead_code)]

pub mod http;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use photon_control::client::Client;

pub fn photon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_photon"))
}

/// `photon dev` on one core, every listener on a free loopback port, small
/// S3 segments, its data in `data`.
pub fn dev_command(data: &Path) -> Command {
    let mut command = photon();
    command
        .args([
            "dev",
            "--cores",
            "1",
            "--admin",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--s3",
            "127.0.0.1:0",
            "--nbd",
            "127.0.0.1:0",
            "--nightlight",
            "127.0.0.1:0",
            "--set",
            "s3.segment_mib=16",
            "--data-dir",
        ])
        .arg(data);
    command
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("photon-ctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `dir/endpoints.json` and returns its endpoints by name.
pub fn endpoints(dir: &Path, child: &mut Child) -> BTreeMap<String, SocketAddr> {
    let file = dir.join("endpoints.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            return v["endpoints"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, a)| (k.clone(), a.as_str().unwrap().parse().unwrap()))
                .collect();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("photon exited early: {status}");
        }
        assert!(Instant::now() < deadline, "no {}", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last 60 lines of a log file, headed by its path (for failure messages).
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    format!("--- last lines of {}:\n{tail}", path.display())
}

/// Waits up to `timeout` for `data/endpoints.json` and returns its endpoints
/// as written (`name -> address`); a failure shows the tail of `log`.
pub fn wait_endpoints(
    data: &Path,
    child: &mut Child,
    log: &Path,
    timeout: Duration,
) -> BTreeMap<String, String> {
    let file = data.join("endpoints.json");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                return v["endpoints"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, a)| (k.clone(), a.as_str().unwrap_or_default().to_owned()))
                    .collect();
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("photon exited early: {status}\n{}", log_tail(log));
        }
        assert!(
            Instant::now() < deadline,
            "no {}\n{}",
            file.display(),
            log_tail(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `photon ctl` as the user logged in under `config_dir`.
pub fn ctl_as(config_dir: &Path, endpoint: SocketAddr, args: &[&str]) -> Output {
    photon()
        .env("PHOTON_CONFIG_DIR", config_dir)
        .env_remove("PHOTON_TOKEN")
        .args(["ctl", "--endpoints", &endpoint.to_string()])
        .args(args)
        .output()
        .unwrap()
}

/// Like [`ctl_as`] with `--json`; panics unless it succeeds.
pub fn ctl_json_as(config_dir: &Path, endpoint: SocketAddr, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl_as(config_dir, endpoint, &all);
    assert!(
        out.status.success(),
        "photon ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `photon ctl login` as `user` of `tenant`, storing the token in `config_dir`.
pub fn login_as(config_dir: &Path, endpoint: SocketAddr, tenant: &str, user: &str, password: &str) {
    use std::io::Write;
    let mut child = photon()
        .env("PHOTON_CONFIG_DIR", config_dir)
        .args([
            "ctl",
            "--endpoints",
            &endpoint.to_string(),
            "login",
            "--tenant",
            tenant,
            "--user",
            user,
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "login as {tenant}/{user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `photon ctl` with `stdin` fed to it.
pub fn ctl_stdin_as(config_dir: &Path, endpoint: SocketAddr, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = photon()
        .env("PHOTON_CONFIG_DIR", config_dir)
        .env_remove("PHOTON_TOKEN")
        .args(["ctl", "--endpoints", &endpoint.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{stdin}").unwrap();
    child.wait_with_output().unwrap()
}

/// A running `photon dev` with its cluster administrator logged in (token
/// in `admin_config`).
pub struct Dev {
    pub dir: PathBuf,
    pub control: SocketAddr,
    pub admin_config: PathBuf,
    _proc: Proc,
}

impl Dev {
    pub fn start(name: &str) -> Self {
        let dir = temp_dir(name);
        let data = dir.join("data");
        let mut child = dev_command(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let control = endpoints(&data, &mut child)["control"];
        let proc_ = Proc(child);
        let admin_config = dir.join("admin-config");
        // The administrator appears once the node has bootstrapped IAM.
        let credentials = data.join("control").join("admin.credentials");
        wait_for(&credentials);
        login_dev_admin(&admin_config, &data);
        Self {
            dir,
            control,
            admin_config,
            _proc: proc_,
        }
    }

    /// `photon ctl --json` as the cluster administrator.
    pub fn admin_json(&self, args: &[&str]) -> serde_json::Value {
        ctl_json_as(&self.admin_config, self.control, args)
    }
}

/// Waits (up to a minute) for `path` to exist.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "no {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads the cluster administrator's password from a credentials file.
pub fn admin_password(credentials: &Path) -> String {
    let text = std::fs::read_to_string(credentials).unwrap();
    let table: toml::Table = text.parse().unwrap();
    table["password"].as_str().unwrap().to_owned()
}

/// A free port on 127.0.0.1, for addresses that must be known before start.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Cluster {
    pub dir: PathBuf,
    pub addresses: BTreeMap<u64, SocketAddr>,
    pub nodes: BTreeMap<u64, Proc>,
    /// The cluster key every node shares (`iam.cluster_key_file`).
    pub key_file: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        if std::thread::panicking() {
            eprintln!("node logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Cluster {
    pub fn new(name: &str) -> Self {
        let dir = temp_dir(name);
        // Nodes 1-3 form the initial cluster; node 4 starts empty and joins.
        let addresses = (1..=4u64)
            .map(|id| (id, SocketAddr::from(([127, 0, 0, 1], free_port()))))
            .collect();
        let key_file = dir.join("cluster.key");
        photon_iam::seal::ClusterKey::generate()
            .write_new(&key_file)
            .unwrap();
        Self {
            dir,
            addresses,
            nodes: BTreeMap::new(),
            key_file,
        }
    }

    pub fn start(&mut self, id: u64) {
        self.start_with(id, &["control"], "");
    }

    /// Starts node `id` with `roles` (its S3 and NBD listeners, with the
    /// storage role, on free ports) and `extra` appended to its config.
    pub fn start_with(&mut self, id: u64, roles: &[&str], extra: &str) {
        let members: Vec<String> = self
            .addresses
            .iter()
            .filter(|(i, _)| **i <= 3)
            .map(|(i, a)| format!("\"{i}={a}\""))
            .collect();
        let node_dir = self.dir.join(format!("n{id}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
        let storage = if roles.iter().any(|r| r == "\"storage\"") {
            "[s3]\nlisten = \"127.0.0.1:0\"\nsegment_mib = 16\n[nbd]\nlisten = \"127.0.0.1:0\"\n"
        } else {
            ""
        };
        let config = format!(
            "[node]\nname = \"n{id}\"\ndata_dir = \"{}\"\nroles = [{}]\n[engine]\ncores = 1\npin = false\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[control]\nnode_id = {id}\nlisten = \"{}\"\n\
             initial_members = [{}]\nsnapshot_every_entries = 100\nsnapshot_keep_entries = 0\n\
             [iam]\ncluster_key_file = \"{}\"\n{storage}",
            node_dir.display(),
            roles.join(", "),
            self.addresses[&id],
            if id <= 3 { members.join(", ") } else { String::new() },
            self.key_file.display()
        );
        let file = self.dir.join(format!("n{id}.toml"));
        std::fs::write(&file, format!("{config}{extra}")).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("n{id}.log"))).unwrap();
        let mut child = photon()
            .args(["node", "--config"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let _ = std::fs::remove_file(node_dir.join("endpoints.json"));
        endpoints(&node_dir, &mut child);
        self.nodes.insert(id, Proc(child));
    }

    pub fn kill9(&mut self, id: u64) {
        if let Some(mut p) = self.nodes.remove(&id) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(p.0.id() as i32, libc::SIGKILL) };
            let _ = p.0.wait();
        }
    }

    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.addresses
            .iter()
            .filter(|(i, _)| **i <= 3)
            .map(|(_, a)| *a)
            .collect()
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, f)
}

impl Cluster {
    /// Logs in as the cluster administrator (whose credentials the
    /// bootstrapping node wrote into its data directory) and returns a token.
    pub fn admin_token(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let credentials = loop {
            let found = (1..=4u64)
                .map(|id| self.dir.join(format!("n{id}/control/admin.credentials")))
                .find(|p| p.exists());
            if let Some(path) = found {
                break path;
            }
            assert!(Instant::now() < deadline, "no node wrote admin.credentials");
            std::thread::sleep(Duration::from_millis(50));
        };
        let password = admin_password(&credentials);
        let endpoints = self.endpoints();
        block_on(async move {
            let mut client = Client::new(endpoints).unwrap();
            client
                .login("system", "admin", &password, "", 0)
                .await
                .unwrap()
                .0
        })
    }

    /// A client for `endpoints` presenting `token`.
    pub fn client(endpoints: Vec<SocketAddr>, token: &str) -> Client {
        Client::with_token(endpoints, token.to_owned()).unwrap()
    }
}

/// `photon ctl login --data-dir DATA` (the `photon dev` administrator),
/// storing the token in `config_dir`.
pub fn login_dev_admin(config_dir: &Path, data: &Path) {
    let out = photon()
        .env("PHOTON_CONFIG_DIR", config_dir)
        .args(["ctl", "login", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dev login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pids of the QEMUs whose command line names `dir` (PlasmaVMC runs
/// QEMU detached from photon, so a test's VMs outlive its photon).
pub fn qemu_pids(dir: &Path) -> Vec<u32> {
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

/// Kills the QEMUs of `dir` when dropped, whether the test passed or not.
pub struct QemuGuard(pub PathBuf);

impl Drop for QemuGuard {
    fn drop(&mut self) {
        for pid in qemu_pids(&self.0) {
            // SAFETY: kill(2) on a QEMU this test started (through photon).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Panics with a clear message unless `program` runs.
pub fn need(program: &str, package: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{program}` is not installed: install the Debian package {package} \
         (scripts/test.sh does)"
    );
}

/// Serves `files` (`/NAME` -> bytes) over HTTP/1.1 on a free loopback port
/// until the test ends: GET and HEAD, one byte range per request,
/// keep-alive, 404 for any other path.
pub fn serve_files(files: BTreeMap<String, Vec<u8>>) -> SocketAddr {
    let files = std::sync::Arc::new(files);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = files.clone();
            std::thread::spawn(move || {
                let _ = http_connection(stream, &files);
            });
        }
    });
    address
}

fn http_connection(
    mut stream: std::net::TcpStream,
    files: &BTreeMap<String, Vec<u8>>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte)? == 0 || head.len() > 16 << 10 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut words = head.split(' ');
        let method = words.next().unwrap_or_default().to_owned();
        let Some(body) = files.get(words.next().unwrap_or_default()) else {
            let missing = b"no such file\n";
            write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n",
                missing.len()
            )?;
            stream.write_all(missing)?;
            continue;
        };
        let total = body.len() as u64;
        let range = head.lines().find_map(|l| {
            let lower = l.to_ascii_lowercase();
            let spec = lower
                .strip_prefix("range:")?
                .trim()
                .strip_prefix("bytes=")?
                .to_owned();
            let (a, b) = spec.split_once('-')?;
            let start: u64 = a.parse().ok()?;
            let end: u64 = b.parse().unwrap_or(total - 1).min(total - 1);
            Some((start, end))
        });
        let (status, start, end) = match range {
            Some((s, e)) if s <= e => ("206 Partial Content", s, e + 1),
            _ => ("200 OK", 0, total),
        };
        let mut reply = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n\
             Content-Type: application/octet-stream\r\n",
            end - start
        );
        if range.is_some() {
            reply.push_str(&format!(
                "Content-Range: bytes {start}-{}/{total}\r\n",
                end - 1
            ));
        }
        reply.push_str("\r\n");
        stream.write_all(reply.as_bytes())?;
        if method != "HEAD" {
            stream.write_all(&body[start as usize..end as usize])?;
        }
    }
}
