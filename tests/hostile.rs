//! `photon dev` under hostile clients: floods of idle, half-sent and
//! unauthenticated connections on every listener (S3, control, NBD, admin)
//! while real clients keep getting answers, and request bodies that stall.
//! The limits are set small (`--set limits.*`) so that a few hundred
//! sockets are a flood; docs/running.md has the defaults.
//!
//! Flood sockets come from 127.0.0.2..=127.0.0.9 and the honest clients
//! from 127.0.0.1, so the per-source limit refuses part of the flood while
//! the eviction of the oldest strangers makes room for the honest ones.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{photon, temp_dir, Proc};
use photon_core::testing::SmallDisk;

const HANDSHAKE_TIMEOUT_MS: u64 = 3_000;
const BODY_IDLE_TIMEOUT_MS: u64 = 2_000;
/// Flood sockets per source and listener; 8 sources.
const FLOOD_PER_SOURCE: usize = 24;
const FLOOD_SOURCES: std::ops::RangeInclusive<u8> = 2..=9;
/// How long an honest request may take while the flood is on.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

struct Dev {
    dir: PathBuf,
    data: PathBuf,
    proc_: Proc,
    endpoints: BTreeMap<String, String>,
    config: PathBuf,
}

impl Dev {
    fn start(name: &str) -> Self {
        let dir = temp_dir(&format!("hostile-{name}"));
        let data = dir.join("data");
        Self::start_on(dir, data, "2", &[])
    }

    /// Starts photon dev with its data in `data` (which may be elsewhere
    /// than `dir`, e.g. on a small filesystem).
    fn start_on(dir: PathBuf, data: PathBuf, cores: &str, extra: &[&str]) -> Self {
        let log = dir.join("photon.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut child = photon()
            .args(["dev", "--cores", cores])
            .args(["--admin", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(["--s3", "127.0.0.1:0", "--nbd", "127.0.0.1:0"])
            .args(["--nightlight", "127.0.0.1:0"])
            .args(["--set", "s3.segment_mib=16"])
            .args(["--set", "limits.unauthenticated_per_listener=64"])
            .args(["--set", "limits.unauthenticated_per_source=16"])
            .args([
                "--set",
                &format!("limits.handshake_timeout_ms={HANDSHAKE_TIMEOUT_MS}"),
            ])
            .args([
                "--set",
                &format!("limits.body_idle_timeout_ms={BODY_IDLE_TIMEOUT_MS}"),
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(&data)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let endpoints = common::wait_endpoints(&data, &mut child, &log, Duration::from_secs(60));
        let proc_ = Proc(child);
        common::wait_for(&data.join("s3.env"));
        let config = dir.join("config");
        common::login_dev_admin(&config, &data);
        Self {
            dir,
            data,
            proc_,
            endpoints,
            config,
        }
    }

    fn address(&self, name: &str) -> SocketAddr {
        let text = &self.endpoints[name];
        text.trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|_| panic!("endpoint {name}: {text}"))
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        let child = photon()
            .env("PHOTON_CONFIG_DIR", &self.config)
            .args(["ctl", "--endpoints", &self.address("control").to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, CLIENT_TIMEOUT, &format!("photon ctl {args:?}"))
    }

    fn s3_env(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.data.join("s3.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }

    fn log_tail(&self) -> String {
        common::log_tail(&self.dir.join("photon.log"))
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.proc_.0.kill();
        if std::thread::panicking() {
            eprintln!("data and log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn wait_output(
    mut child: std::process::Child,
    timeout: Duration,
    what: &str,
) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} took longer than {timeout:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A TCP connection from `source` to `to`.
fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// Opens the flood against `to`; `first_bytes` is what each socket sends
/// (nothing: idle; a partial request: half-sent). Refused connects (the
/// backlog is full) are counted, not fatal.
fn flood(to: SocketAddr, first_bytes: &[u8]) -> Vec<TcpStream> {
    let mut sockets = Vec::new();
    for last in FLOOD_SOURCES {
        for _ in 0..FLOOD_PER_SOURCE {
            if let Ok(mut s) = connect_from(Ipv4Addr::new(127, 0, 0, last), to) {
                let _ = s.write_all(first_bytes);
                sockets.push(s);
            }
        }
    }
    sockets
}

/// How many of `sockets` the server has closed (EOF or reset within a
/// short read).
fn closed_by_server(sockets: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for s in sockets.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue, // an error reply before the close
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    closed
}

/// A plain HTTP/1.1 exchange on a fresh connection from 127.0.0.1.
fn http_exchange(to: SocketAddr, request: &[u8], body_after: Option<(&[u8], Duration)>) -> String {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    if let Some((body, pause)) = body_after {
        std::thread::sleep(pause);
        let _ = s.write_all(body);
    }
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// A signed S3 request head (no body) with the dev administrator's key.
fn signed_head(
    dev: &Dev,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    sha256: &str,
) -> String {
    let env = dev.s3_env();
    let host = dev.address("s3").to_string();
    let mut headers: Vec<(&str, &[u8])> = vec![("host", host.as_bytes())];
    for (n, v) in extra {
        headers.push((n, v.as_bytes()));
    }
    let parts = photon_s3::sigv4::RequestParts {
        method,
        path,
        query: "",
        headers: &headers,
    };
    let credentials = photon_s3::sigv4::Credentials {
        access_key_id: &env["AWS_ACCESS_KEY_ID"],
        secret_access_key: env["AWS_SECRET_ACCESS_KEY"].as_bytes(),
    };
    let signed = photon_s3::sigv4::sign_request(
        &parts,
        &credentials,
        "us-east-1",
        SystemTime::now(),
        sha256,
    )
    .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n");
    for (n, v) in extra
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .chain(signed.headers)
    {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    // Each exchange reads to the end of the connection.
    head.push_str("connection: close\r\n\r\n");
    head
}

/// The honest clients: a KV round trip, an S3 bucket + object round trip,
/// /healthz, and an NBD read through qemu-io.
fn honest_clients_work(dev: &Dev, round: usize, nbd_url: &str) {
    let key = format!("k{round}");
    let out = dev.ctl(&["kv", "put", &key, "v"]);
    assert!(
        out.status.success(),
        "kv put: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dev.log_tail()
    );
    let out = dev.ctl(&["kv", "get", &key]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains('v'),
        "kv get: {out:?}"
    );

    let path = format!("/flood-{round}");
    let reply = http_exchange(
        dev.address("s3"),
        signed_head(dev, "PUT", &path, &[("content-length", "0")], EMPTY_SHA256).as_bytes(),
        None,
    );
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "CreateBucket under the flood: {reply}\n{}",
        dev.log_tail()
    );
    let object = format!("{path}/o");
    let body = b"hello under fire";
    let sha = sha256_hex(body);
    let head = signed_head(
        dev,
        "PUT",
        &object,
        &[("content-length", &body.len().to_string())],
        &sha,
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let reply = http_exchange(dev.address("s3"), &request, None);
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "PutObject under the flood: {reply}"
    );
    let reply = http_exchange(
        dev.address("s3"),
        signed_head(dev, "GET", &object, &[], EMPTY_SHA256).as_bytes(),
        None,
    );
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("hello under fire"),
        "GetObject under the flood: {reply}"
    );

    let reply = http_exchange(
        dev.address("admin"),
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        None,
    );
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "healthz under the flood: {reply}"
    );

    let child = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "read -P 0 0 4k", nbd_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, CLIENT_TIMEOUT, "qemu-io read");
    assert!(
        out.status.success(),
        "qemu-io under the flood: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn metric(dev: &Dev, prefix: &str) -> u64 {
    let text = http_exchange(
        dev.address("admin"),
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        None,
    );
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The flood needs about a thousand descriptors in this process.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[test]
fn floods_of_strangers_leave_room_for_honest_clients() {
    raise_open_files();
    let dev = Dev::start("flood");
    let out = dev.ctl(&["volume", "create", "flood-disk", "--size", "16M"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dev.ctl(&["volume", "attach", "flood-disk"]);
    let nbd_url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(nbd_url.starts_with("nbd://"), "{nbd_url:?}");

    // Idle strangers on every listener, and half-sent anonymous uploads.
    let mut sockets = Vec::new();
    for name in ["control", "nbd", "admin"] {
        sockets.extend(flood(dev.address(name), b""));
    }
    let half_sent =
        b"PUT /victim/key HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\nonly a few bytes";
    let mut s3_flood = flood(dev.address("s3"), half_sent);
    sockets.extend(flood(dev.address("s3"), b""));
    let flooded = Instant::now();
    let opened = sockets.len() + s3_flood.len();
    assert!(opened > 600, "only {opened} flood connections opened");

    for round in 0..3 {
        honest_clients_work(&dev, round, &nbd_url);
    }
    // Every stranger is gone once the handshake timeout (plus the body
    // timeout for the half-sent uploads) has passed since the flood was
    // open; slack for a loaded machine, and at least one look.
    let bound = Duration::from_millis(HANDSHAKE_TIMEOUT_MS + BODY_IDLE_TIMEOUT_MS + 5_000);
    let deadline = (flooded + bound).max(Instant::now() + Duration::from_secs(1));
    let mut closed;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        closed = closed_by_server(&mut sockets) + closed_by_server(&mut s3_flood);
        if closed == opened || Instant::now() >= deadline {
            break;
        }
    }
    assert_eq!(
        closed,
        opened,
        "flood connections still open after the timeouts\n{}",
        dev.log_tail()
    );
    let limited = metric(&dev, "photon_http_connections_limited_total");
    assert!(limited > 0, "no HTTP connection was limited");
    honest_clients_work(&dev, 3, &nbd_url);
}

#[test]
fn stalled_request_bodies_are_cut() {
    let dev = Dev::start("slowbody");
    let s3 = dev.address("s3");
    let reply = http_exchange(
        s3,
        signed_head(
            &dev,
            "PUT",
            "/slow",
            &[("content-length", "0")],
            EMPTY_SHA256,
        )
        .as_bytes(),
        None,
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // A signed upload that stops after a few bytes: RequestTimeout.
    let head = signed_head(
        &dev,
        "PUT",
        "/slow/object",
        &[("content-length", "100000")],
        "UNSIGNED-PAYLOAD",
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(b"just a few bytes");
    let started = Instant::now();
    let reply = http_exchange(s3, &request, None);
    let took = started.elapsed();
    assert!(
        reply.starts_with("HTTP/1.1 400") && reply.contains("RequestTimeout"),
        "{reply}"
    );
    assert!(
        took < Duration::from_millis(BODY_IDLE_TIMEOUT_MS + 5_000),
        "took {took:?}"
    );

    // An anonymous upload that stops short: refused at once, and the
    // connection does not wait for the rest of the body.
    let started = Instant::now();
    let reply = http_exchange(s3, b"PUT /slow/anon HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\nConnection: close\r\n\r\nfew", None);
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(started.elapsed() < Duration::from_millis(BODY_IDLE_TIMEOUT_MS + 5_000));

    // Nothing was stored.
    let reply = http_exchange(
        s3,
        signed_head(&dev, "GET", "/slow/object", &[], EMPTY_SHA256).as_bytes(),
        None,
    );
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
}

fn status_of(reply: &str) -> u16 {
    reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn put(dev: &Dev, path: &str, body: &[u8]) -> String {
    let sha = sha256_hex(body);
    let head = signed_head(
        dev,
        "PUT",
        path,
        &[("content-length", &body.len().to_string())],
        &sha,
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    http_exchange(dev.address("s3"), &request, None)
}

#[test]
fn s3_on_a_full_disk_answers_507_and_recovers_when_space_is_freed() {
    let dir = temp_dir("hostile-fulldisk");
    let disk = SmallDisk::mount(dir.join("disk"), 160);
    let dev = Dev::start_on(
        dir.clone(),
        disk.path().join("data"),
        "1",
        &["--set", "nbd.journal_mib=4"],
    );
    let reply = http_exchange(
        dev.address("s3"),
        signed_head(
            &dev,
            "PUT",
            "/full",
            &[("content-length", "0")],
            EMPTY_SHA256,
        )
        .as_bytes(),
        None,
    );
    assert_eq!(status_of(&reply), 200, "{reply}");
    assert_eq!(
        status_of(&put(&dev, "/full/keep", b"kept through the full disk")),
        200
    );
    let body = vec![0x5au8; 4 << 20];
    let mut stored = Vec::new();
    let mut full = 0;
    for i in 0..60 {
        let reply = put(&dev, &format!("/full/o{i}"), &body);
        match status_of(&reply) {
            200 => stored.push(i),
            507 => {
                assert!(reply.contains("InsufficientStorage"), "{reply}");
                full += 1;
                if full >= 3 {
                    break;
                }
            }
            _ => panic!(
                "a PUT on a filling disk answered {reply}\n{}",
                dev.log_tail()
            ),
        }
    }
    assert!(
        full > 0 && !stored.is_empty(),
        "the disk never filled: {} stored",
        stored.len()
    );
    // Deletes work on the full disk, and compaction gives the space back
    // without a restart.
    for i in &stored {
        let path = format!("/full/o{i}");
        let reply = http_exchange(
            dev.address("s3"),
            signed_head(&dev, "DELETE", &path, &[], EMPTY_SHA256).as_bytes(),
            None,
        );
        assert_eq!(status_of(&reply), 204, "DELETE on a full disk: {reply}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = put(&dev, "/full/after", &body);
        if status_of(&reply) == 200 {
            break;
        }
        assert_eq!(status_of(&reply), 507, "{reply}");
        assert!(
            Instant::now() < deadline,
            "space never came back\n{}",
            dev.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let reply = http_exchange(
        dev.address("s3"),
        signed_head(&dev, "GET", "/full/keep", &[], EMPTY_SHA256).as_bytes(),
        None,
    );
    assert!(reply.ends_with("kept through the full disk"), "{reply}");
    let health = http_exchange(
        dev.address("admin"),
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        None,
    );
    assert_eq!(status_of(&health), 200, "{health}");
    drop(dev);
    drop(disk);
}

/// Runs qemu-io commands against an NBD URL; (succeeded, stdout+stderr).
fn qemu_io(url: &str, commands: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let child = cmd
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(120), "qemu-io");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // qemu-io exits 0 even when a command failed; its messages say so.
    let ok = out.status.success() && !text.contains("failed") && !text.contains("error");
    (ok, text)
}

/// Settings that fit a node on a small tmpfs: a small volume journal and
/// control-plane reserve.
const SMALL_DISK_SETTINGS: [&str; 4] = [
    "--set",
    "nbd.journal_mib=4",
    "--set",
    "control.reserve_mib=4",
];

#[test]
fn a_volume_write_on_a_full_disk_is_enospc_and_trim_frees_space_without_a_restart() {
    let dir = temp_dir("hostile-fullvolume");
    let disk = SmallDisk::mount(dir.join("disk"), 96);
    let dev = Dev::start_on(
        dir.clone(),
        disk.path().join("data"),
        "1",
        &SMALL_DISK_SETTINGS,
    );
    let attach = |name: &str| {
        let out = dev.ctl(&["volume", "create", name, "--size", "1G"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = dev.ctl(&["volume", "attach", name]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let keep = attach("keep");
    let (ok, text) = qemu_io(&keep, &["write -P 0x11 0 4M", "flush"]);
    assert!(ok, "{text}");
    let big = attach("big");
    // Far more than the disk holds, in 4 MiB writes.
    let (_, text) = qemu_io(&big, &["write -P 0x5a 0 512M"]);
    assert!(
        text.contains("No space left on device"),
        "a write past the full disk must fail with ENOSPC, got: {text}\n{}",
        dev.log_tail()
    );
    // Data flushed before the disk filled still reads back.
    let (ok, text) = qemu_io(&keep, &["read -P 0x11 0 4M"]);
    assert!(ok, "flushed data after ENOSPC: {text}\n{}", dev.log_tail());
    // TRIM on the full disk gives the space back; writes resume without a
    // restart, and the node says it is healthy.
    let (ok, text) = qemu_io(&big, &["discard 0 512M", "flush"]);
    assert!(ok, "TRIM on a full disk: {text}\n{}", dev.log_tail());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = qemu_io(&big, &["write -P 0x22 0 8M", "flush"]);
        if ok {
            break;
        }
        assert!(
            text.contains("No space left on device") && Instant::now() < deadline,
            "space never came back: {text}\n{}",
            dev.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ok, text) = qemu_io(&big, &["read -P 0x22 0 8M"]);
    assert!(ok, "{text}");
    let (ok, text) = qemu_io(&keep, &["read -P 0x11 0 4M"]);
    assert!(ok, "{text}");
    let health = http_exchange(
        dev.address("admin"),
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        None,
    );
    assert_eq!(status_of(&health), 200, "{health}");
    drop(dev);
    drop(disk);
}

fn admin_get(dev: &Dev, path: &str) -> String {
    http_exchange(
        dev.address("admin"),
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        None,
    )
}

#[test]
fn the_kv_on_a_full_disk_refuses_new_data_keeps_serving_and_recovers_without_a_restart() {
    let dir = temp_dir("hostile-fullkv");
    let disk = SmallDisk::mount(dir.join("disk"), 160);
    let dev = Dev::start_on(
        dir.clone(),
        disk.path().join("data"),
        "1",
        &SMALL_DISK_SETTINGS,
    );
    let ok = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            dev.log_tail()
        )
    };
    ok(&dev.ctl(&["kv", "put", "kept", "before the disk filled"]));
    let ballast = disk.fill("ballast");
    // The first writes may still land (the reserve takes them); then new
    // data is refused with the reason, and Raft keeps running.
    let mut refused = None;
    for i in 0..50 {
        let out = dev.ctl(&["kv", "put", &format!("fill/{i}"), &"v".repeat(4096)]);
        if !out.status.success() {
            refused = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let refused = refused.unwrap_or_else(|| panic!("no put was refused\n{}", dev.log_tail()));
    assert!(refused.contains("disk is full"), "{refused}");
    let out = dev.ctl(&["kv", "get", "kept"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("before the disk filled"));
    // Deletes still work on the full disk.
    ok(&dev.ctl(&["kv", "del", "fill/", "--prefix"]));
    let health = admin_get(&dev, "/healthz");
    assert_eq!(status_of(&health), 503, "{health}");
    assert!(health.contains("control plane disk"), "{health}");
    // Space comes back: writes resume without a restart.
    std::fs::remove_file(ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = dev.ctl(&["kv", "put", "after", "space came back"]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the KV never took writes again: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            dev.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = dev.ctl(&["kv", "get", "kept"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("before the disk filled"));
    let health = admin_get(&dev, "/healthz");
    assert_eq!(status_of(&health), 200, "{health}");
    drop(dev);
    drop(disk);
}
