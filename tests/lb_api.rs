//! FiberLB's control plane driven through `photon ctl lb`, each test against
//! a `photon dev` of its own (its edge agent has no interface: nothing is
//! attached, nothing probed):
//!
//! * `vips_and_backends`: create (defaults, UDP, IPv6, HTTP check), list,
//!   info, set-health (flags not given keep their value), backends add, list,
//!   set-weight (0 drains), remove; a VIP with backends is not deleted; a
//!   deleted VIP frees its address for a new one.
//! * `invalid_input_refused`: bad, unspecified, multicast, broadcast,
//!   loopback, link-local and IPv4-mapped addresses, port 0, bad names, a
//!   name or address:port:protocol taken, health settings out of range,
//!   weights too large, backends of unknown VIPs, of the other address
//!   family or at the VIP's own address; each refused with a message naming
//!   the field, and none leaves a record behind.
//! * `limits_hold_under_concurrent_writers`: 72 VIPs created at once (each
//!   on a connection of its own) leave exactly `VIPS_MAX` (64), 264 backends
//!   added at once exactly `BACKENDS_PER_VIP_MAX` (256), the next is refused
//!   with the limit; of VIPs created at once on one address one wins; a VIP
//!   deleted while backends are added leaves no backend behind.
//! * `tenants_projects_and_roles`: another tenant neither sees nor touches
//!   our VIPs, cannot take our address (and is not told whose it is), and
//!   has its own names; another project of our tenant sees nothing; a
//!   viewer reads but changes nothing.
//! * `stats_without_data_plane`: `photon dev` runs the agent without an
//!   interface: `lb stats` lists the VIP with zero counters and says why
//!   nothing is attached.

mod common;

use std::path::{Path, PathBuf};

use common::{admin_password, block_on, ctl_as, ctl_stdin_as, login_as, photon, Dev};
use photon_control::client::{Client, ClientError, HealthChange};
use serde_json::Value;

const VIPS_MAX: usize = 64;
const BACKENDS_PER_VIP_MAX: usize = 256;
/// Writes the concurrency test sends beyond a limit.
const EXTRA_WRITES: usize = 8;

struct Lb {
    dev: Dev,
}

/// What one `photon ctl` run printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Lb {
    fn start(name: &str) -> Self {
        Self {
            dev: Dev::start(&format!("lb-{name}")),
        }
    }

    fn data(&self) -> PathBuf {
        self.dev.dir.join("data")
    }

    fn run_as(&self, config: &Path, args: &[&str]) -> Run {
        let out = ctl_as(config, self.dev.control, args);
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn ok_as(&self, config: &Path, args: &[&str]) -> String {
        let run = self.run_as(config, args);
        assert!(
            run.ok,
            "photon ctl {args:?} failed: {}{}",
            run.stderr, run.stdout
        );
        run.stdout
    }

    fn json_as(&self, config: &Path, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let stdout = self.ok_as(config, &all);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("photon ctl {all:?}: {e}: {stdout}"))
    }

    /// Fails, and stderr holds every one of `expect`; returns stderr.
    fn refused_as(&self, config: &Path, args: &[&str], expect: &[&str]) -> String {
        let run = self.run_as(config, args);
        assert!(
            !run.ok,
            "photon ctl {args:?} should fail, but printed: {}",
            run.stdout
        );
        for e in expect {
            assert!(
                run.stderr.contains(e),
                "photon ctl {args:?}: stderr lacks {e:?}: {}",
                run.stderr
            );
        }
        run.stderr
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_as(&self.dev.admin_config, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.json_as(&self.dev.admin_config, args)
    }

    fn refused(&self, args: &[&str], expect: &[&str]) -> String {
        self.refused_as(&self.dev.admin_config, args, expect)
    }

    fn vip_names_as(&self, config: &Path) -> Vec<String> {
        self.json_as(config, &["lb", "vip", "ls"])
            .as_array()
            .unwrap_or_else(|| panic!("vip ls printed no array"))
            .iter()
            .map(|v| v["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn vip_names(&self) -> Vec<String> {
        self.vip_names_as(&self.dev.admin_config)
    }

    /// A user `name` of `tenant` (created by `creator`), bound to `role` in
    /// `project`, logged in under a config dir of its own.
    fn user(&self, creator: &Path, tenant: &str, name: &str, role: &str, project: &str) -> PathBuf {
        let password = format!("Pw-{name}-9xQ7-lb");
        let out = ctl_stdin_as(
            creator,
            self.dev.control,
            &["iam", "user", "create", name, "--password-stdin"],
            &password,
        );
        assert!(
            out.status.success(),
            "user create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.ok_as(creator, &["iam", "bind", name, role, "--project", project]);
        let config = self.dev.dir.join(format!("config-{tenant}-{name}"));
        login_as(&config, self.dev.control, tenant, name, &password);
        config
    }
}

#[test]
fn vips_and_backends() {
    let lb = Lb::start("crud");
    let web = lb.json(&[
        "lb",
        "vip",
        "create",
        "web",
        "--address",
        "203.0.113.10",
        "--port",
        "80",
    ]);
    assert_eq!(web["name"], "web");
    assert_eq!(web["address"], "203.0.113.10");
    assert_eq!(web["port"], 80);
    assert_eq!(web["protocol"], "tcp");
    assert_eq!(web["tenant"], "system");
    assert_eq!(web["project"], "default");
    assert_eq!(web["backend_count"], 0);
    let h = &web["health"];
    assert_eq!(
        (
            h["check"].as_str(),
            h["port"].is_null(),
            h["interval_ms"].as_i64(),
            h["timeout_ms"].as_i64(),
            h["rise"].as_i64(),
            h["fall"].as_i64()
        ),
        (Some("tcp"), true, Some(1000), Some(500), Some(2), Some(2)),
        "default health check: {h}"
    );

    // UDP on the same address and port is another VIP; so is another port.
    let dns = lb.json(&[
        "lb",
        "vip",
        "create",
        "dns",
        "--address",
        "203.0.113.10",
        "--port",
        "80",
        "--protocol",
        "udp",
        "--check-port",
        "8053",
    ]);
    assert_eq!(dns["protocol"], "udp");
    assert_eq!(dns["health"]["port"], 8053);
    let api = lb.json(&[
        "lb",
        "vip",
        "create",
        "api6",
        "--address",
        "2001:db8::10",
        "--port",
        "443",
        "--check",
        "http",
        "--http-path",
        "/healthz",
        "--interval-ms",
        "2000",
        "--timeout-ms",
        "1500",
        "--rise",
        "3",
        "--fall",
        "4",
    ]);
    assert_eq!(api["address"], "2001:db8::10");
    let h = &api["health"];
    assert_eq!(h["check"], "http");
    assert_eq!(h["http_path"], "/healthz");
    assert_eq!(
        (h["interval_ms"].as_i64(), h["timeout_ms"].as_i64()),
        (Some(2000), Some(1500))
    );
    assert_eq!((h["rise"].as_i64(), h["fall"].as_i64()), (Some(3), Some(4)));
    let table = lb.ok(&["lb", "vip", "ls"]);
    assert!(
        table.contains("tcp [2001:db8::10]:443") && table.contains("http /healthz"),
        "{table}"
    );
    assert_eq!(lb.vip_names(), ["api6", "dns", "web"]);

    // set-health changes what it names and keeps the rest.
    let changed = lb.json(&["lb", "vip", "set-health", "api6", "--fall", "6"]);
    let h = &changed["health"];
    assert_eq!(
        (
            h["check"].as_str(),
            h["http_path"].as_str(),
            h["fall"].as_i64(),
            h["rise"].as_i64()
        ),
        (Some("http"), Some("/healthz"), Some(6), Some(3)),
        "{h}"
    );
    let back = lb.json(&[
        "lb",
        "vip",
        "set-health",
        "dns",
        "--check",
        "tcp",
        "--check-port",
        "0",
    ]);
    assert!(back["health"]["port"].is_null(), "{back}");
    let text = lb.ok(&["lb", "vip", "set-health", "web", "--interval-ms", "5000"]);
    assert!(text.contains("every 5000 ms"), "{text}");

    // Backends.
    let b1 = lb.json(&["lb", "backend", "add", "web", "b1", "--address", "10.0.0.5"]);
    assert_eq!(
        (
            b1["vip"].as_str(),
            b1["name"].as_str(),
            b1["address"].as_str(),
            b1["weight"].as_u64()
        ),
        (Some("web"), Some("b1"), Some("10.0.0.5"), Some(100))
    );
    lb.ok(&[
        "lb",
        "backend",
        "add",
        "web",
        "b2",
        "--address",
        "10.0.0.6",
        "--weight",
        "65536",
    ]);
    let drained = lb.ok(&[
        "lb",
        "backend",
        "add",
        "web",
        "b3",
        "--address",
        "10.0.0.7",
        "--weight",
        "0",
    ]);
    assert!(drained.contains("weight 0 drains it"), "{drained}");
    lb.ok(&[
        "lb",
        "backend",
        "add",
        "api6",
        "a1",
        "--address",
        "2001:db8:1::5",
    ]);
    let list = lb.json(&["lb", "backend", "ls", "web"]);
    let got: Vec<(String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("b1".into(), 100), ("b2".into(), 65536), ("b3".into(), 0)]
    );
    let w = lb.json(&["lb", "backend", "set-weight", "web", "b1", "0"]);
    assert_eq!(w["weight"], 0);
    let w = lb.json(&["lb", "backend", "set-weight", "web", "b3", "250"]);
    assert_eq!(w["weight"], 250);
    let info = lb.json(&["lb", "vip", "info", "web"]);
    assert_eq!(info["backend_count"], 3);
    let weights: Vec<u64> = info["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [0, 65536, 250]);
    assert_eq!(info["health"]["interval_ms"], 5000);
    let text = lb.ok(&["lb", "vip", "info", "web"]);
    assert!(
        text.contains("tcp 203.0.113.10:80") && text.contains("10.0.0.6"),
        "{text}"
    );
    let listed = lb.json(&["lb", "vip", "ls"]);
    let counts: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["backend_count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 0, 3], "api6, dns, web: {listed}");

    // A VIP with backends stays until they are removed.
    lb.refused(
        &["lb", "vip", "rm", "web"],
        &["failed precondition: vip web has 3 backends; remove them first"],
    );
    lb.refused(
        &["lb", "vip", "rm", "api6"],
        &["failed precondition: vip api6 has 1 backend; remove them first"],
    );
    assert_eq!(lb.vip_names(), ["api6", "dns", "web"]);
    for b in ["b1", "b2"] {
        lb.ok(&["lb", "backend", "rm", "web", b]);
    }
    lb.refused(
        &["lb", "backend", "rm", "web", "b1"],
        &["not found: no backend b1 in vip web"],
    );
    lb.refused(&["lb", "vip", "rm", "web"], &["has 1 backend"]);
    lb.ok(&["lb", "backend", "rm", "web", "b3"]);
    assert_eq!(
        lb.json(&["lb", "backend", "ls", "web"]),
        Value::Array(vec![])
    );
    let gone = lb.json(&["lb", "vip", "rm", "web"]);
    assert_eq!(gone["deleted"], "web");
    assert_eq!(lb.vip_names(), ["api6", "dns"]);
    lb.refused(&["lb", "vip", "info", "web"], &["not found: no vip web"]);
    lb.refused(&["lb", "vip", "rm", "web"], &["not found: no vip web"]);

    // Its address is free again, under any name.
    let again = lb.json(&[
        "lb",
        "vip",
        "create",
        "web2",
        "--address",
        "203.0.113.10",
        "--port",
        "80",
    ]);
    assert_eq!(again["backend_count"], 0);
    // A re-created VIP starts without the old one's backends.
    lb.ok(&[
        "lb",
        "vip",
        "create",
        "web",
        "--address",
        "203.0.113.11",
        "--port",
        "80",
    ]);
    assert_eq!(
        lb.json(&["lb", "vip", "info", "web"])["backends"],
        Value::Array(vec![])
    );
}

#[test]
fn invalid_input_refused() {
    let lb = Lb::start("invalid");
    lb.ok(&[
        "lb",
        "vip",
        "create",
        "web",
        "--address",
        "203.0.113.10",
        "--port",
        "80",
    ]);
    lb.ok(&["lb", "backend", "add", "web", "b1", "--address", "10.0.0.5"]);
    let create = |name: &str, address: &str, port: &str, extra: &[&str], expect: &[&str]| {
        let mut args = vec![
            "lb",
            "vip",
            "create",
            name,
            "--address",
            address,
            "--port",
            port,
        ];
        args.extend_from_slice(extra);
        lb.refused(&args, expect);
    };
    // Addresses.
    for (address, why) in [
        ("10.0.0", "is not an IP address"),
        ("web.example", "is not an IP address"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:203.0.113.20", "write the IPv4 form 203.0.113.20"),
    ] {
        create("x", address, "80", &[], &["invalid argument: address", why]);
    }
    create(
        "x",
        "203.0.113.20",
        "0",
        &[],
        &["invalid argument: port: 0 is not a port"],
    );
    // Names.
    for name in ["Web", "a/b", "_web", "a b", &"x".repeat(64)] {
        create(name, "203.0.113.20", "80", &[], &["invalid argument: name"]);
    }
    // Taken: the name, the address, port and protocol.
    create(
        "web",
        "203.0.113.20",
        "80",
        &[],
        &["already exists: vip web"],
    );
    create(
        "web-copy",
        "203.0.113.10",
        "80",
        &[],
        &["already exists: tcp 203.0.113.10:80 is taken by vip web"],
    );
    // Health settings.
    for (extra, expect) in [
        (
            &["--interval-ms", "99"][..],
            "health interval_ms: 99 is outside 100..=60000",
        ),
        (
            &["--interval-ms", "60001"],
            "health interval_ms: 60001 is outside 100..=60000",
        ),
        (
            &["--timeout-ms", "49"],
            "health timeout_ms: 49 is outside 50..=1000",
        ),
        (
            &["--timeout-ms", "1001"],
            "health timeout_ms: 1001 is outside 50..=1000",
        ),
        (
            &["--interval-ms", "200"],
            "health timeout_ms: 500 is outside 50..=200",
        ),
        (&["--rise", "0"], "health rise: 0 is outside 1..=10"),
        (&["--rise", "11"], "health rise: 11 is outside 1..=10"),
        (&["--fall", "0"], "health fall: 0 is outside 1..=10"),
        (&["--fall", "11"], "health fall: 11 is outside 1..=10"),
        (&["--http-path", "/x"], "only an http check has a path"),
        (
            &["--check", "http", "--http-path", "healthz"],
            "must start with '/'",
        ),
        (
            &["--check", "http", "--http-path", "/a b"],
            "printable ASCII",
        ),
    ] {
        create(
            "x",
            "203.0.113.20",
            "80",
            extra,
            &["invalid argument", expect],
        );
        lb.refused(
            &[&["lb", "vip", "set-health", "web"][..], extra].concat(),
            &["invalid argument", expect],
        );
    }
    // Flags the CLI itself refuses.
    for extra in [
        &["--protocol", "sctp"][..],
        &["--check", "icmp"],
        &["--rise", "300"],
        &["--check-port", "70000"],
    ] {
        create("x", "203.0.113.20", "80", extra, &[]);
    }
    lb.refused(
        &["lb", "vip", "set-health", "nope", "--fall", "3"],
        &["not found: no vip nope"],
    );

    // Backends.
    let add = |vip: &str, name: &str, address: &str, extra: &[&str], expect: &[&str]| {
        let mut args = vec!["lb", "backend", "add", vip, name, "--address", address];
        args.extend_from_slice(extra);
        lb.refused(&args, expect);
    };
    add("nope", "b9", "10.0.0.9", &[], &["not found: no vip nope"]);
    add(
        "web",
        "b9",
        "10.0.0.9",
        &["--weight", "65537"],
        &["invalid argument: weight: 65537 is more than 65536"],
    );
    add(
        "web",
        "b1",
        "10.0.0.9",
        &[],
        &["already exists: backend b1 of vip web"],
    );
    add(
        "web",
        "b9",
        "10.0.0.5",
        &[],
        &["already exists: vip web has backend b1 at 10.0.0.5"],
    );
    add(
        "web",
        "b9",
        "2001:db8::9",
        &[],
        &["invalid argument: backend address", "IPv6", "IPv4"],
    );
    add("web", "b9", "203.0.113.10", &[], &["the VIP's own address"]);
    add(
        "web",
        "b9",
        "0.0.0.0",
        &[],
        &["invalid argument: backend address", "unspecified"],
    );
    add("web", "b9", "224.1.1.1", &[], &["multicast"]);
    add("web", "b9", "127.0.0.2", &[], &["loopback"]);
    add("web", "b9", "10.0.0.256", &[], &["is not an IP address"]);
    add(
        "web",
        "B9",
        "10.0.0.9",
        &[],
        &["invalid argument: backend name"],
    );
    lb.refused(
        &["lb", "backend", "set-weight", "web", "b1", "70000"],
        &["invalid argument: weight: 70000 is more than 65536"],
    );
    lb.refused(
        &["lb", "backend", "set-weight", "web", "b7", "1"],
        &["not found: no backend b7 in vip web"],
    );
    lb.refused(
        &["lb", "backend", "set-weight", "nope", "b1", "1"],
        &["not found: no vip nope"],
    );
    lb.refused(
        &["lb", "backend", "ls", "nope"],
        &["not found: no vip nope"],
    );
    lb.refused(
        &["lb", "backend", "rm", "nope", "b1"],
        &["not found: no vip nope"],
    );

    // Nothing refused left a record behind, nor changed what exists.
    assert_eq!(lb.vip_names(), ["web"]);
    let info = lb.json(&["lb", "vip", "info", "web"]);
    assert_eq!(info["health"]["interval_ms"], 1000);
    assert_eq!(info["health"]["check"], "tcp");
    let backends: Vec<(&str, u64)> = info["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["weight"].as_u64().unwrap()))
        .collect();
    assert_eq!(backends, [("b1", 100)]);
}

/// One write the concurrency test sends.
#[derive(Clone, Debug)]
enum Write {
    Vip {
        name: String,
        address: String,
    },
    Backend {
        vip: String,
        name: String,
        address: String,
    },
}

impl Write {
    /// The same write as `photon ctl` arguments.
    fn ctl_args(&self) -> Vec<String> {
        let args: Vec<&str> = match self {
            Write::Vip { name, address } => {
                vec![
                    "lb",
                    "vip",
                    "create",
                    name,
                    "--address",
                    address,
                    "--port",
                    "80",
                ]
            }
            Write::Backend { vip, name, address } => {
                vec!["lb", "backend", "add", vip, name, "--address", address]
            }
        };
        args.into_iter().map(str::to_owned).collect()
    }

    async fn send(&self, client: &mut Client) -> Result<(), ClientError> {
        match self {
            Write::Vip { name, address } => {
                client
                    .create_vip(name, address, 80, "", &HealthChange::default())
                    .await?;
            }
            Write::Backend { vip, name, address } => {
                client.add_backend(vip, name, address, None).await?;
            }
        }
        Ok(())
    }
}

/// Sends every write at once, each on a connection of its own (the
/// project's Cap'n Proto client), so the node reads and counts for many of
/// them before it commits any; then sends again, one by one, those refused
/// only because others changed the records meanwhile ("... retry", a fair
/// answer to a crowd). Returns how many succeeded and the other refusals.
fn write_at_once(lb: &Lb, writes: &[Write]) -> (usize, Vec<String>) {
    let password = admin_password(&lb.data().join("control").join("admin.credentials"));
    let endpoint = lb.dev.control;
    let outcomes: Vec<Result<(), String>> = block_on(async move {
        let mut login = Client::new(vec![endpoint]).unwrap();
        let (token, _) = login
            .login("system", "admin", &password, "", 0)
            .await
            .unwrap();
        // Connect and authenticate every client first, so the writes
        // themselves leave together.
        let mut clients = Vec::new();
        for _ in writes {
            let mut client = Client::with_token(vec![endpoint], token.clone()).unwrap();
            client.whoami().await.unwrap();
            clients.push(client);
        }
        let tasks: Vec<_> = writes
            .iter()
            .cloned()
            .zip(clients)
            .map(|(write, mut client)| {
                tokio::task::spawn_local(async move {
                    write.send(&mut client).await.map_err(|e| e.to_string())
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    });
    let mut done = 0;
    let mut refused = Vec::new();
    for (write, outcome) in writes.iter().zip(outcomes) {
        let mut outcome = outcome;
        while matches!(&outcome, Err(e) if e.contains("retry")) {
            let args = write.ctl_args();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = lb.run_as(&lb.dev.admin_config, &args);
            outcome = if run.ok { Ok(()) } else { Err(run.stderr) };
        }
        match outcome {
            Ok(()) => done += 1,
            Err(e) => refused.push(e),
        }
    }
    (done, refused)
}

#[test]
fn limits_hold_under_concurrent_writers() {
    let lb = Lb::start("limits");
    let writes: Vec<Write> = (0..VIPS_MAX + EXTRA_WRITES)
        .map(|i| Write::Vip {
            name: format!("v{i}"),
            address: format!("198.51.100.{}", i + 1),
        })
        .collect();
    let (created, refused) = write_at_once(&lb, &writes);
    assert_eq!(created, VIPS_MAX, "VIPs created; refused: {refused:?}");
    assert_eq!(refused.len(), EXTRA_WRITES);
    for e in &refused {
        assert!(
            e.contains("failed precondition: the cluster has 64 VIPs"),
            "{e}"
        );
    }
    assert_eq!(lb.vip_names().len(), VIPS_MAX);
    lb.refused(
        &[
            "lb",
            "vip",
            "create",
            "one-more",
            "--address",
            "198.51.100.200",
            "--port",
            "80",
        ],
        &["the cluster has 64 VIPs, the most it holds (VIPS_MAX); delete one first"],
    );
    // Deleting one makes room for one.
    let first = lb.vip_names()[0].clone();
    lb.ok(&["lb", "vip", "rm", &first]);
    lb.ok(&[
        "lb",
        "vip",
        "create",
        "one-more",
        "--address",
        "198.51.100.200",
        "--port",
        "80",
    ]);
    lb.refused(
        &[
            "lb",
            "vip",
            "create",
            "two-more",
            "--address",
            "198.51.100.201",
            "--port",
            "80",
        ],
        &["the cluster has 64 VIPs"],
    );
    // Two creations of one address at once: one wins.
    lb.ok(&["lb", "vip", "rm", "one-more"]);
    let same: Vec<Write> = (0..EXTRA_WRITES)
        .map(|i| Write::Vip {
            name: format!("same-{i}"),
            address: "198.51.100.222".into(),
        })
        .collect();
    let (created, refused) = write_at_once(&lb, &same);
    assert_eq!(created, 1, "one address, several VIPs: {refused:?}");
    for e in &refused {
        assert!(
            e.contains("already exists: tcp 198.51.100.222:80 is taken by vip same-"),
            "{e}"
        );
    }

    let vip = lb.vip_names()[0].clone();
    let writes: Vec<Write> = (0..BACKENDS_PER_VIP_MAX + EXTRA_WRITES)
        .map(|i| Write::Backend {
            vip: vip.clone(),
            name: format!("b{i}"),
            address: format!("10.7.{}.{}", i / 200, i % 200 + 1),
        })
        .collect();
    let (added, refused) = write_at_once(&lb, &writes);
    assert_eq!(
        added, BACKENDS_PER_VIP_MAX,
        "backends added; refused: {refused:?}"
    );
    assert_eq!(refused.len(), EXTRA_WRITES);
    let full = format!("failed precondition: vip {vip} has 256 backends, the most a VIP holds");
    for e in &refused {
        assert!(e.contains(&full), "{e}");
    }
    let listed = lb.json(&["lb", "backend", "ls", &vip]);
    assert_eq!(listed.as_array().map(Vec::len), Some(BACKENDS_PER_VIP_MAX));
    // Another VIP has its own allowance.
    let other = lb.vip_names()[1].clone();
    lb.ok(&[
        "lb",
        "backend",
        "add",
        &other,
        "b0",
        "--address",
        "10.7.0.1",
    ]);
    // Deleting a VIP while backends are added at once: either the VIP
    // goes (and every add fails) or it stays with the backends added.
    let target = lb.vip_names()[2].clone();
    let racing: Vec<Write> = (0..EXTRA_WRITES)
        .map(|i| Write::Backend {
            vip: target.clone(),
            name: format!("r{i}"),
            address: format!("10.8.0.{}", i + 1),
        })
        .collect();
    let remove = std::thread::scope(|scope| {
        let remove = scope.spawn(|| lb.run_as(&lb.dev.admin_config, &["lb", "vip", "rm", &target]));
        let _ = write_at_once(&lb, &racing);
        remove.join().unwrap()
    });
    let names = lb.vip_names();
    if remove.ok {
        assert!(!names.contains(&target));
    } else {
        assert!(
            remove.stderr.contains("remove them first"),
            "{}",
            remove.stderr
        );
        assert!(names.contains(&target));
    }
    // No backend record outlived its VIP.
    let kv = lb.ok(&["kv", "get", "lb/backend/", "--prefix", "--keys-only"]);
    for key in kv.lines() {
        let vip = key.split('/').nth(4).unwrap_or_default();
        assert!(names.iter().any(|n| n == vip), "backend {key} has no VIP");
    }
}

#[test]
fn tenants_projects_and_roles() {
    let lb = Lb::start("tenants");
    lb.ok(&[
        "lb",
        "vip",
        "create",
        "web",
        "--address",
        "203.0.113.10",
        "--port",
        "443",
    ]);
    lb.ok(&["lb", "backend", "add", "web", "b1", "--address", "10.0.0.5"]);
    let ours = lb.json(&["lb", "vip", "info", "web"]);

    // Another tenant.
    let hank = lb.dev.dir.join("config-globex-hank");
    let password = "Globex-hank-pw-7Qz";
    let out = ctl_stdin_as(
        &lb.dev.admin_config,
        lb.dev.control,
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
    login_as(&hank, lb.dev.control, "globex", "hank", password);
    assert!(lb.vip_names_as(&hank).is_empty(), "globex sees our VIPs");
    for args in [
        &["lb", "vip", "info", "web"][..],
        &["lb", "vip", "set-health", "web", "--fall", "5"],
        &["lb", "vip", "rm", "web"],
        &["lb", "backend", "ls", "web"],
        &[
            "lb",
            "backend",
            "add",
            "web",
            "evil",
            "--address",
            "10.6.6.6",
        ],
        &["lb", "backend", "set-weight", "web", "b1", "0"],
        &["lb", "backend", "rm", "web", "b1"],
    ] {
        let e = lb.refused_as(&hank, args, &["not found"]);
        assert!(
            !e.contains("10.0.0.5"),
            "{args:?} told globex about our backend: {e}"
        );
    }
    // Our address is taken for them too, and they are not told by whom.
    let e = lb.refused_as(
        &hank,
        &[
            "lb",
            "vip",
            "create",
            "mine",
            "--address",
            "203.0.113.10",
            "--port",
            "443",
        ],
        &["already exists: tcp 203.0.113.10:443 is taken by a VIP of another project"],
    );
    assert!(!e.contains("web") && !e.contains("system"), "{e}");
    // Names are per project: globex's `web` is another VIP.
    let theirs = lb.json_as(
        &hank,
        &[
            "lb",
            "vip",
            "create",
            "web",
            "--address",
            "203.0.113.99",
            "--port",
            "443",
        ],
    );
    assert_eq!(theirs["tenant"], "globex");
    lb.ok_as(
        &hank,
        &["lb", "backend", "add", "web", "b1", "--address", "10.9.9.9"],
    );
    assert_eq!(lb.vip_names_as(&hank), ["web"]);
    let stats = lb.ok_as(&hank, &["lb", "stats"]);
    assert!(!stats.contains("203.0.113.10"), "{stats}");
    // Ours did not change.
    assert_eq!(lb.json(&["lb", "vip", "info", "web"]), ours);
    assert_eq!(lb.vip_names(), ["web"]);
    // Their VIP needs its backends gone first, like ours.
    lb.refused_as(&hank, &["lb", "vip", "rm", "web"], &["has 1 backend"]);
    lb.ok_as(&hank, &["lb", "backend", "rm", "web", "b1"]);
    lb.ok_as(&hank, &["lb", "vip", "rm", "web"]);
    assert_eq!(lb.json(&["lb", "vip", "info", "web"]), ours);

    // Another project of our tenant sees nothing of the default project.
    lb.ok(&["iam", "project", "create", "other"]);
    let other = lb.dev.dir.join("admin-config-other");
    let out = photon()
        .env("PHOTON_CONFIG_DIR", &other)
        .args(["ctl", "login", "--project", "other", "--data-dir"])
        .arg(lb.data())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "login --project other: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lb.vip_names_as(&other).is_empty());
    lb.refused_as(
        &other,
        &["lb", "vip", "info", "web"],
        &["not found: no vip web"],
    );

    // A viewer of the default project reads and changes nothing.
    let viewer = lb.user(&lb.dev.admin_config, "system", "vi", "viewer", "default");
    assert_eq!(lb.vip_names_as(&viewer), ["web"]);
    assert_eq!(lb.json_as(&viewer, &["lb", "vip", "info", "web"]), ours);
    assert_eq!(
        lb.json_as(&viewer, &["lb", "backend", "ls", "web"]),
        ours["backends"]
    );
    lb.ok_as(&viewer, &["lb", "stats"]);
    for (args, action) in [
        (
            &[
                "lb",
                "vip",
                "create",
                "v2",
                "--address",
                "203.0.113.12",
                "--port",
                "80",
            ][..],
            "lb:CreateVip",
        ),
        (
            &["lb", "vip", "set-health", "web", "--fall", "5"],
            "lb:SetHealth",
        ),
        (&["lb", "vip", "rm", "web"], "lb:DeleteVip"),
        (
            &["lb", "backend", "add", "web", "b2", "--address", "10.0.0.6"],
            "lb:AddBackend",
        ),
        (
            &["lb", "backend", "set-weight", "web", "b1", "0"],
            "lb:SetWeight",
        ),
        (&["lb", "backend", "rm", "web", "b1"], "lb:RemoveBackend"),
    ] {
        lb.refused_as(&viewer, args, &["permission denied", action]);
    }
    assert_eq!(lb.json(&["lb", "vip", "info", "web"]), ours);
}

#[test]
fn stats_without_data_plane() {
    // `photon dev` runs the edge agent, but with no `lb.interface` it loads
    // no XDP program: stats list the VIP with zero counters and say why.
    let lb = Lb::start("stats");
    lb.ok(&[
        "lb",
        "vip",
        "create",
        "web",
        "--address",
        "203.0.113.10",
        "--port",
        "80",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let json = loop {
        let json = lb.json(&["lb", "stats"]);
        let has_vip = json["snapshot"]["vips"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["name"] == "web"));
        if has_vip || std::time::Instant::now() > deadline {
            break json;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(json["running"], true, "{json}");
    assert_eq!(json["node"], 1, "{json}");
    let snapshot = &json["snapshot"];
    assert!(
        snapshot["attached"]
            .as_str()
            .unwrap_or("")
            .starts_with("not attached: no lb.interface configured"),
        "{json}"
    );
    let vip = snapshot["vips"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "web"))
        .unwrap_or_else(|| panic!("the agent's snapshot lists the VIP: {json}"));
    assert_eq!(vip["packets"], 0, "{json}");
    let text = lb.ok(&["lb", "stats"]);
    assert!(text.contains("not attached"), "lb stats: {text}");
    assert!(text.contains("web"), "lb stats: {text}");
}
