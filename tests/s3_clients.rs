//! LightningStor (S3) driven by the real clients of the ecosystem, each
//! against a `photon dev` of its own:
//!
//! * `boto3`: the pytest suites in `tests/s3/`: `test_boto3.py` (every API
//!   with its error codes, presigned URLs, authentication, tenant isolation,
//!   the viewer role), `test_s3_behaviour.py` (where S3's behaviour is subtle:
//!   retried completes, conditional deletes, checksums, ...) and
//!   `test_headers.py` (every `x-amz-*` request header of botocore's S3 model
//!   is honoured or refused), with the dev administrator's key, an editor key
//!   of another tenant (`globex`) and a viewer key in the administrator key's
//!   project.
//! * `aws_cli`: `tests/s3/aws_cli.sh` (s3 cp/sync/ls/rm/mb/rb, s3api
//!   conditional put, ranges and multipart).
//! * `crash`: `tests/s3/crash_writer.py` writes and acknowledges objects,
//!   the server is killed with SIGKILL mid-write, restarted on the same data
//!   directory, and `tests/s3/crash_verify.py` checks every acknowledged
//!   object and that nothing is partial.
//!
//! Needs python3.11 with boto3 and pytest, and the aws CLI
//! (`PHOTON_TEST_PYTHON` names another interpreter). Each script's header
//! says how to run it by hand against a running `photon dev`. On failure the
//! data directory and photon's log are kept and their path printed.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{ctl_as, ctl_json_as, ctl_stdin_as, login_as, photon, temp_dir, Proc};
use serde_json::Value;

/// Passed to `photon dev` so that parallel tests get ports of their own.
const S3_LISTEN_ARGS: [&str; 6] = [
    "--s3",
    "127.0.0.1:0",
    "--nbd",
    "127.0.0.1:0",
    "--nightlight",
    "127.0.0.1:0",
];
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(60);
const PYTEST_TIMEOUT: Duration = Duration::from_secs(600);
const CLI_TIMEOUT: Duration = Duration::from_secs(300);
const VERIFY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the crash writer runs before the server is killed.
const CRASH_AFTER: Duration = Duration::from_secs(4);
/// Acknowledged objects wanted before the kill, so the test proves something.
const CRASH_MIN_ACKS: usize = 5;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("PHOTON_TEST_PYTHON").unwrap_or_else(|_| "python3.11".to_owned())
}

/// A `photon dev` with S3, which can be killed and restarted on its data
/// directory.
struct S3Dev {
    dir: PathBuf,
    data: PathBuf,
    cores: usize,
    proc_: Option<Proc>,
    starts: usize,
    control: SocketAddr,
    /// `http://127.0.0.1:PORT`
    endpoint: String,
    /// DATA/s3.env: the dev administrator's S3 credentials.
    env: BTreeMap<String, String>,
    admin_config: PathBuf,
}

impl S3Dev {
    fn start(name: &str, cores: usize) -> Self {
        let dir = temp_dir(&format!("s3-{name}"));
        let mut dev = Self {
            data: dir.join("data"),
            admin_config: dir.join("admin-config"),
            dir,
            cores,
            proc_: None,
            starts: 0,
            control: SocketAddr::from(([127, 0, 0, 1], 0)),
            endpoint: String::new(),
            env: BTreeMap::new(),
        };
        dev.spawn();
        common::login_dev_admin(&dev.admin_config, &dev.data);
        dev
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("photon-{}.log", self.starts))
    }

    /// Starts photon on the data directory and waits for its S3 endpoint
    /// and s3.env.
    fn spawn(&mut self) {
        // A killed node leaves its endpoints behind; wait for this start's.
        // (s3.env stays: photon dev reuses the key in it if it still works.)
        let _ = std::fs::remove_file(self.data.join("endpoints.json"));
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = photon()
            .args(["dev", "--cores", &self.cores.to_string()])
            .args(["--admin", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(S3_LISTEN_ARGS)
            // Small segments: less disk per test, and rollover happens.
            .args(["--set", "s3.segment_mib=16"])
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
        let s3 = endpoints.get("s3").unwrap_or_else(|| {
            panic!(
                "photon dev has no `s3` endpoint in endpoints.json: {endpoints:?}\n{}",
                self.log_tail()
            )
        });
        self.endpoint = if s3.starts_with("http://") {
            s3.trim_end_matches('/').to_owned()
        } else {
            format!("http://{s3}")
        };
        let env_file = self.data.join("s3.env");
        let text = self.wait_env_file(&env_file);
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} must be 0600", env_file.display());
        self.env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        for key in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
        ] {
            assert!(self.env.contains_key(key), "s3.env lacks {key}: {text}");
        }
        assert_eq!(self.env["AWS_DEFAULT_REGION"], "us-east-1");
        assert_eq!(
            self.env["AWS_ENDPOINT_URL"].trim_end_matches('/'),
            self.endpoint,
            "s3.env and endpoints.json disagree"
        );
    }

    /// Waits for `s3.env` naming this start's endpoint, and returns it.
    fn wait_env_file(&self, path: &Path) -> String {
        let want = format!("AWS_ENDPOINT_URL={}", self.endpoint);
        let deadline = Instant::now() + BOOTSTRAP_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().any(|l| l.trim().trim_end_matches('/') == want) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {} with {want} (exists: {})\n{}",
                path.display(),
                path.exists(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// Environment for the Python scripts and the aws CLI: the dev
    /// administrator's key.
    fn client_env(&self) -> Vec<(String, String)> {
        let id = &self.env["AWS_ACCESS_KEY_ID"];
        let secret = &self.env["AWS_SECRET_ACCESS_KEY"];
        [
            ("S3_ENDPOINT", self.endpoint.as_str()),
            ("S3_ACCESS_KEY", id),
            ("S3_SECRET_KEY", secret),
            ("AWS_ACCESS_KEY_ID", id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("PYTHONDONTWRITEBYTECODE", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn admin(&self, args: &[&str]) -> Value {
        ctl_json_as(&self.admin_config, self.control, args)
    }
}

impl Drop for S3Dev {
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
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

fn assert_ran(dev: &S3Dev, what: &str, status: Option<ExitStatus>, output: &str) {
    eprintln!("{output}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "{what} failed ({s}); its output is above\n{}",
            dev.log_tail()
        ),
        None => panic!("{what} timed out; its output is above\n{}", dev.log_tail()),
    }
}

/// An access key made with `photon ctl --json iam access-key create`.
fn key_pair(created: &Value) -> (String, String) {
    (
        created["access_key_id"].as_str().unwrap().to_owned(),
        created["secret_access_key"].as_str().unwrap().to_owned(),
    )
}

fn must(what: &str, out: std::process::Output) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn boto3() {
    let dev = S3Dev::start("boto3", 2);
    let admin_key = dev.env["AWS_ACCESS_KEY_ID"].clone();

    // The project the dev administrator's S3 key acts in.
    let keys = dev.admin(&["iam", "access-key", "ls", "--all"]);
    let project = keys
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["id"].as_str() == Some(admin_key.as_str()))
        .and_then(|k| k["project"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            eprintln!(
                "note: the s3.env key {admin_key} is not in `iam access-key ls --all` \
                 ({keys}); binding the viewer in project default"
            );
            "default".to_owned()
        });

    // An editor of another tenant.
    let hank = dev.dir.join("config-globex-hank");
    let hank_password = "Globex-hank-pw-7Qz";
    must(
        "tenant create globex",
        ctl_stdin_as(
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
            hank_password,
        ),
    );
    login_as(&hank, dev.control, "globex", "hank", hank_password);

    // `photon ctl bucket info`: the owner sees its bucket, another tenant's
    // administrator gets "not found" (exit status 5), as for S3's HEAD.
    must(
        "bucket create ctl-info-probe",
        ctl_as(
            &dev.admin_config,
            dev.control,
            &["bucket", "create", "ctl-info-probe"],
        ),
    );
    let info = ctl_json_as(
        &dev.admin_config,
        dev.control,
        &["bucket", "info", "ctl-info-probe"],
    );
    assert_eq!(info["name"], "ctl-info-probe", "{info}");
    let hidden = ctl_as(&hank, dev.control, &["bucket", "info", "ctl-info-probe"]);
    assert_eq!(hidden.status.code(), Some(5), "{hidden:?}");
    assert!(
        String::from_utf8_lossy(&hidden.stderr).contains("not found: no such bucket"),
        "{hidden:?}"
    );
    must(
        "bucket rm ctl-info-probe",
        ctl_as(
            &dev.admin_config,
            dev.control,
            &["bucket", "rm", "ctl-info-probe"],
        ),
    );
    must(
        "globex: user create ed",
        ctl_stdin_as(
            &hank,
            dev.control,
            &["iam", "user", "create", "ed", "--password-stdin"],
            "Globex-ed-pw-3Rt",
        ),
    );
    must(
        "globex: bind ed editor",
        ctl_as(
            &hank,
            dev.control,
            &["iam", "bind", "ed", "editor", "--project", "default"],
        ),
    );
    let (other_id, other_secret) = key_pair(&ctl_json_as(
        &hank,
        dev.control,
        &["iam", "access-key", "create", "--principal", "ed"],
    ));

    // A viewer in the administrator key's project. A key acts in the
    // project of the token that created it, so the administrator logs in
    // to that project first.
    must(
        "user create s3viewer",
        ctl_stdin_as(
            &dev.admin_config,
            dev.control,
            &["iam", "user", "create", "s3viewer", "--password-stdin"],
            "System-viewer-pw-9Kd",
        ),
    );
    must(
        "bind s3viewer viewer",
        ctl_as(
            &dev.admin_config,
            dev.control,
            &["iam", "bind", "s3viewer", "viewer", "--project", &project],
        ),
    );
    let admin_in_project = dev.dir.join("admin-config-project");
    must(
        "admin login --project",
        photon()
            .env("PHOTON_CONFIG_DIR", &admin_in_project)
            .args(["ctl", "login", "--project", &project, "--data-dir"])
            .arg(&dev.data)
            .output()
            .unwrap(),
    );
    let (viewer_id, viewer_secret) = key_pair(&ctl_json_as(
        &admin_in_project,
        dev.control,
        &["iam", "access-key", "create", "--principal", "s3viewer"],
    ));
    let keys = dev.admin(&["iam", "access-key", "ls", "--all"]);
    let viewer_project = keys
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["id"].as_str() == Some(viewer_id.as_str()))
        .map(|k| k["project"].clone());
    assert_eq!(
        viewer_project,
        Some(Value::String(project.clone())),
        "the viewer's key is not in project {project}: {keys}"
    );

    let mut command = Command::new(python());
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs"])
        .arg(repo().join("tests/s3"))
        .current_dir(repo())
        .envs(dev.client_env())
        .env("S3_OTHER_ACCESS_KEY", &other_id)
        .env("S3_OTHER_SECRET_KEY", &other_secret)
        .env("S3_VIEWER_ACCESS_KEY", &viewer_id)
        .env("S3_VIEWER_SECRET_KEY", &viewer_secret);
    let (status, output) = run(&mut command, &dev.dir.join("pytest.log"), PYTEST_TIMEOUT);
    assert_ran(&dev, "pytest tests/s3/", status, &output);
    assert!(
        !output.contains(" skipped"),
        "tests were skipped (every key was given):\n{output}"
    );
}

#[test]
fn aws_cli() {
    let dev = S3Dev::start("aws-cli", 1);
    let mut command = Command::new("bash");
    command
        .arg(repo().join("tests/s3/aws_cli.sh"))
        .current_dir(repo())
        .envs(dev.client_env())
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    let (status, output) = run(&mut command, &dev.dir.join("aws-cli.log"), CLI_TIMEOUT);
    assert_ran(&dev, "tests/s3/aws_cli.sh", status, &output);
}

#[test]
fn crash() {
    let mut dev = S3Dev::start("crash", 2);
    let acks = dev.dir.join("acks");
    let writer_log = std::fs::File::create(dev.dir.join("writer.log")).unwrap();
    let mut writer = Proc(
        Command::new(python())
            .arg(repo().join("tests/s3/crash_writer.py"))
            .args(["--bucket", "crash", "--ack"])
            .arg(&acks)
            .envs(dev.client_env())
            .stdin(Stdio::null())
            .stdout(writer_log.try_clone().unwrap())
            .stderr(writer_log)
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let acked = std::fs::read_to_string(&acks)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if started.elapsed() >= CRASH_AFTER && acked >= CRASH_MIN_ACKS {
            eprintln!(
                "{acked} objects acknowledged after {:.1} s: killing photon",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        if let Some(status) = writer.0.try_wait().unwrap() {
            panic!(
                "crash_writer.py exited ({status}):\n{}\n{}",
                std::fs::read_to_string(dev.dir.join("writer.log")).unwrap_or_default(),
                dev.log_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "only {acked} objects acknowledged in a minute\n{}\n{}",
            std::fs::read_to_string(dev.dir.join("writer.log")).unwrap_or_default(),
            dev.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The server first, mid-write; then the writer, so that nothing it
    // acknowledged is missing from the ack file.
    dev.kill9();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(writer.0.id() as i32, libc::SIGKILL) };
    let _ = writer.0.wait();

    dev.spawn();
    let mut command = Command::new(python());
    command
        .arg(repo().join("tests/s3/crash_verify.py"))
        .arg(&acks)
        .args(["--bucket", "crash"])
        .envs(dev.client_env());
    let (status, output) = run(&mut command, &dev.dir.join("verify.log"), VERIFY_TIMEOUT);
    assert_ran(&dev, "crash_verify.py", status, &output);
}
