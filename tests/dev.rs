//! Starts the real `photon` binary and drives it from outside: the admin
//! endpoint, SIGTERM, and every kind of bad configuration.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn photon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_photon"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("photon-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `photon dev`, killed if the test fails.
struct Dev {
    child: Child,
    data_dir: PathBuf,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    fn start(name: &str, extra: &[&str]) -> Self {
        Self::start_in(temp_dir(name), extra, None)
    }

    /// Starts photon dev on `data_dir`, under `umask` when given.
    fn start_in(data_dir: PathBuf, extra: &[&str], umask: Option<u32>) -> Self {
        let mut command = photon();
        if let Some(mask) = umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask(2) is async-signal-safe; the closure touches no
            // memory shared with the parent.
            unsafe {
                command.pre_exec(move || {
                    libc::umask(mask as libc::mode_t);
                    Ok(())
                });
            }
        }
        let child = command
            .args([
                "dev",
                "--cores",
                "2",
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
            .arg(&data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { child, data_dir }
    }

    /// The admin address, from the endpoints file the node writes once it serves.
    fn admin(&mut self) -> SocketAddr {
        let file = self.data_dir.join("endpoints.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                return v["endpoints"]["admin"].as_str().unwrap().parse().unwrap();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("photon dev exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "photon dev did not write {}",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(mut self) -> Output {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "photon dev did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let child = std::mem::replace(&mut self.child, photon().arg("version").spawn().unwrap());
        child.wait_with_output().unwrap()
    }
}

/// A minimal HTTP/1.1 GET; returns (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn dev_serves_admin_endpoints_and_exits_cleanly_on_sigterm() {
    let mut dev = Dev::start("admin", &[]);
    let admin = dev.admin();

    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".into()));
    let (status, metrics) = get(admin, "/metrics");
    assert_eq!(status, 200);
    // One series per shard, merged into one exposition.
    assert!(
        metrics.contains("photon_shard_info{shard=\"0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("photon_shard_info{shard=\"1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("photon_scrape_shards_missing 0"),
        "{metrics}"
    );
    // The earlier requests were counted (on whichever shard served them).
    let ok_line = metrics
        .lines()
        .find(|l| l.starts_with("photon_http_responses_total{class=\"2xx\",service=\"admin\"}"))
        .unwrap();
    let ok: u64 = ok_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(ok >= 2, "{ok_line}");
    assert_eq!(get(admin, "/nope").0, 404);

    let data_dir = dev.data_dir.clone();
    let out = dev.terminate();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("admin") && stdout.contains(&admin.to_string()),
        "{stdout}"
    );
    assert!(
        !data_dir.join("endpoints.json").exists(),
        "endpoints file removed on exit"
    );
    assert!(
        TcpStream::connect(admin).is_err(),
        "nothing listens after exit"
    );
}

#[test]
fn a_second_node_on_the_same_data_dir_is_refused() {
    let mut dev = Dev::start("lock", &[]);
    dev.admin();
    let out = photon()
        .args([
            "dev",
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
        .arg(&dev.data_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another photon process"),
        "{stderr}"
    );
    assert!(dev.terminate().status.success());
}

fn run_with_config(name: &str, toml: &str, extra: &[&str]) -> Output {
    let dir = temp_dir(name);
    let file = dir.join("node.toml");
    std::fs::write(&file, toml).unwrap();
    photon()
        .args(["node", "--config"])
        .arg(&file)
        .args([
            "--set",
            &format!("node.data_dir=\"{}\"", dir.join("data").display()),
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn assert_config_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}: {stderr}");
    }
}

#[test]
fn unknown_key_is_named() {
    let out = run_with_config("unknown", "[engine]\ncorez = 2\n", &[]);
    assert_config_error(&out, &["engine", "unknown field `corez`"]);
}

#[test]
fn wrong_type_is_named() {
    let out = run_with_config("type", "[admin]\nlisten = 9400\n", &[]);
    assert_config_error(&out, &["admin.listen", "invalid type"]);
}

#[test]
fn invalid_value_and_bad_override_are_named() {
    let out = run_with_config("value", "[engine]\nmesh_queue_depth = 0\n", &[]);
    assert_config_error(&out, &["engine.mesh_queue_depth", "outside 1..="]);
    let out = run_with_config("override", "", &["--set", "nosuch.key=1"]);
    assert_config_error(&out, &["nosuch.key", "unknown section"]);
    let out = run_with_config("syntax", "[engine\n", &[]);
    assert_config_error(&out, &["not valid TOML"]);
}

#[test]
fn environment_overrides_are_validated_too() {
    let dir = temp_dir("env");
    let out = photon()
        .args(["dev", "--data-dir"])
        .arg(&dir)
        .env("PHOTON_ENGINE_CORES", "\"two\"")
        .output()
        .unwrap();
    assert_config_error(&out, &["engine.cores", "invalid type"]);
}

#[test]
fn port_in_use_is_a_clear_start_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let dir = temp_dir("port");
    let out = photon()
        .args([
            "dev",
            "--admin",
            &addr,
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
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("address {addr} is already in use")),
        "{stderr}"
    );
}

#[test]
fn version_and_completions() {
    let out = photon().arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("photon "));
    let out = photon().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("photon"));
}

#[test]
fn json_logs_are_json_lines() {
    let mut dev = Dev::start("json", &["--log-format", "json"]);
    dev.admin();
    let out = dev.terminate();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

/// Every directory under `root` is 0700 and every file 0600 at most.
fn loose_modes(root: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut loose = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // removed meanwhile (a temporary file)
        };
        if meta.mode() & 0o077 != 0 {
            loose.push(format!("{} {:o}", path.display(), meta.mode() & 0o7777));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                stack.push(entry.path());
            }
        }
    }
    loose
}

#[test]
fn data_dir_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    for (name, umask) in [("umask000", 0o000), ("umask022", 0o022)] {
        let data_dir = temp_dir(name);
        // Left by an older release or a copy: readable by everyone.
        std::fs::create_dir_all(data_dir.join("old")).unwrap();
        std::fs::write(data_dir.join("old/segment"), b"old data").unwrap();
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(data_dir.join("old"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(
            data_dir.join("old/segment"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let mut dev = Dev::start_in(data_dir.clone(), &[], Some(umask));
        dev.admin();
        // The stores, the Raft log, the credentials: all written by now.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !data_dir.join("s3.env").exists() {
            assert!(
                Instant::now() < deadline,
                "no s3.env in {}",
                data_dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let files = std::fs::read_dir(&data_dir).unwrap().count();
        assert!(
            files >= 4,
            "photon dev wrote too little to check: {files} entries"
        );
        let loose = loose_modes(&data_dir);
        assert!(
            loose.is_empty(),
            "umask {umask:03o}: readable by others: {loose:?}"
        );
        assert!(dev.terminate().status.success());
        let loose = loose_modes(&data_dir);
        assert!(loose.is_empty(), "umask {umask:03o}, after exit: {loose:?}");
        let _ = std::fs::remove_dir_all(&data_dir);
    }
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let mut dev = Dev::start("halfclose", &[]);
    let admin = dev.admin();
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    // Done sending, still listening (as `nc -N` or `curl -T` do).
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(text.ends_with("ok\n"), "{text:?}");
    assert!(dev.terminate().status.success());
}
