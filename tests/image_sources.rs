//! `photon ctl image import` (and `volume import --from-url`) from the
//! three kinds of source, against a `photon dev` of each test's own:
//!
//! * `imports_from_s3_http_and_files`: a 1 MiB patterned raw disk and its
//!   qcow2 are put into LightningStor with the real aws CLI (the dev's
//!   s3.env credentials); `image import --from s3://...` and `--from
//!   http://.../disk.qcow2 --format qcow2` (a tiny HTTP server in the
//!   test), a kernel from S3 and an initrd from HTTP, and `volume import
//!   --from-url s3://...`; every image's snapshot is read back with
//!   qemu-img through `volume attach` and compared byte for byte.
//! * `bad_sources_leave_nothing_behind`: a missing object and a missing
//!   bucket (S3's code, the bucket and key named), an HTTP 404, an unknown
//!   scheme, no S3 credentials (the error says where `photon dev` keeps
//!   them), a downloaded qcow2 naming a backing file: each fails with a
//!   clear message, no image is left in `image ls`, and no downloaded file
//!   is left in the temporary directory.
//!
//! No VM boots: only qemu-img, curl and the aws CLI are needed.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{
    dev_command, endpoints, login_dev_admin, need, photon, serve_files, temp_dir, wait_for, Proc,
};

const MIB: usize = 1 << 20;

/// A `photon dev` with its administrator logged in and its S3 credentials.
struct Dev {
    dir: PathBuf,
    control: SocketAddr,
    config: PathBuf,
    /// The variables of DATA/s3.env.
    s3_env: BTreeMap<String, String>,
    /// The TMPDIR of every `photon ctl`, to see that downloads go away.
    tmp: PathBuf,
    _proc: Proc,
}

impl Dev {
    fn start(name: &str) -> Self {
        for (program, package) in [
            ("qemu-img", "qemu-utils"),
            ("curl", "curl"),
            ("aws", "awscli"),
        ] {
            need(program, package);
        }
        let dir = temp_dir(&format!("image-sources-{name}"));
        let data = dir.join("data");
        let log = std::fs::File::create(dir.join("photon.log")).unwrap();
        let mut child = dev_command(&data)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let control = endpoints(&data, &mut child)["control"];
        let proc_ = Proc(child);
        wait_for(&data.join("control").join("admin.credentials"));
        let config = dir.join("admin-config");
        login_dev_admin(&config, &data);
        // Written (atomically, by rename) once the administrator's key is made.
        let env_file = data.join("s3.env");
        wait_for(&env_file);
        let s3_env = std::fs::read_to_string(&env_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        Self {
            dir,
            control,
            config,
            s3_env,
            tmp,
            _proc: proc_,
        }
    }

    /// `photon ctl ARGS` with the dev's S3 variables (`with_s3`) or none.
    fn ctl_env(&self, args: &[&str], with_s3: bool) -> Output {
        let mut command = photon();
        command
            .env("PHOTON_CONFIG_DIR", &self.config)
            .env("TMPDIR", &self.tmp)
            .env_remove("PHOTON_TOKEN")
            .args(["ctl", "--endpoints", &self.control.to_string()])
            .args(args)
            .stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                command.env_remove(key);
            }
        }
        if with_s3 {
            command.envs(&self.s3_env);
        }
        command.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl_env(args, true);
        assert!(
            out.status.success(),
            "photon ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.assert_no_downloads_left();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Fails (exit code not 0) saying each of `words`; no image `name`
    /// appears and no download stays behind.
    fn refused(&self, name: &str, args: &[&str], with_s3: bool, words: &[&str]) -> i32 {
        let out = self.ctl_env(args, with_s3);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
        for word in words {
            assert!(stderr.contains(word), "{args:?}: no {word:?} in: {stderr}");
        }
        let images = self.ok(&["image", "ls"]);
        assert!(
            !images
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{args:?} left image {name} behind:\n{images}"
        );
        let volumes = self.ok(&["volume", "ls"]);
        let prefix = format!("{name}.");
        assert!(
            !volumes.lines().any(|l| {
                let first = l.split_whitespace().next().unwrap_or_default();
                first == name || first.starts_with(&prefix)
            }),
            "{args:?} left volumes of {name} behind:\n{volumes}"
        );
        out.status.code().unwrap_or(-1)
    }

    fn assert_no_downloads_left(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "files left in TMPDIR: {left:?}");
    }

    /// The aws CLI as the dev's administrator, reading no config file.
    fn aws(&self, args: &[&str]) {
        let out = Command::new("aws")
            .args(args)
            .envs(&self.s3_env)
            .env("AWS_CONFIG_FILE", self.dir.join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.join("aws-credentials"),
            )
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "aws {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// All bytes of volume or snapshot `name`, read with qemu-img over NBD.
    fn read_volume(&self, name: &str) -> Vec<u8> {
        let uri = self.ok(&["volume", "attach", name]).trim().to_owned();
        let out = self.dir.join("read-back.raw");
        tool(
            Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "raw", &uri])
                .arg(&out),
        );
        let bytes = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        bytes
    }

    /// `name` holds `want`, then zeroes up to its (block-rounded) size.
    fn assert_volume_holds(&self, name: &str, want: &[u8]) {
        let got = self.read_volume(name);
        assert!(got.len() >= want.len(), "{name}: {} bytes", got.len());
        if let Some(at) = (0..want.len()).find(|&i| got[i] != want[i]) {
            panic!("{name}: byte {at} is {:#x}, not {:#x}", got[at], want[at]);
        }
        assert!(
            got[want.len()..].iter().all(|b| *b == 0),
            "{name}: bytes past the source are not zero"
        );
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("data and logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn tool(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `len` bytes no two 4 KiB blocks of which are alike.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7) ^ ((i >> 12) as u8) ^ seed)
        .collect()
}

/// `name.raw` holding `bytes` and `name.qcow2`, its qcow2, in `dir`.
fn make_images(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, PathBuf) {
    let raw = dir.join(format!("{name}.raw"));
    let qcow2 = dir.join(format!("{name}.qcow2"));
    std::fs::write(&raw, bytes).unwrap();
    tool(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow2),
    );
    (raw, qcow2)
}

#[test]
fn imports_from_s3_http_and_files() {
    let dev = Dev::start("ok");
    let disk = pattern(MIB, 0x11);
    let (raw, qcow2) = make_images(&dev.dir, "disk", &disk);
    let kernel = pattern(300_000, 0x22);
    let initrd = pattern(123_457, 0x33);
    std::fs::write(dev.dir.join("kernel.bin"), &kernel).unwrap();
    let kernel_path = dev.dir.join("kernel.bin");

    dev.aws(&["s3", "mb", "s3://images"]);
    for (file, key) in [
        (&raw, "disk.raw"),
        (&qcow2, "nested/disk.qcow2"),
        (&kernel_path, "boot/vmlinuz"),
    ] {
        dev.aws(&[
            "s3",
            "cp",
            file.to_str().unwrap(),
            &format!("s3://images/{key}"),
        ]);
    }
    let http = serve_files(BTreeMap::from([
        ("/disk.qcow2".to_owned(), std::fs::read(&qcow2).unwrap()),
        ("/initrd.gz".to_owned(), initrd.clone()),
    ]));

    // A raw disk from S3: detected as raw.
    dev.ok(&["image", "import", "img1", "--from", "s3://images/disk.raw"]);
    dev.assert_volume_holds("img1.disk@image", &disk);
    let info: serde_json::Value =
        serde_json::from_str(&dev.ok(&["--json", "image", "info", "img1"])).unwrap();
    assert_eq!(info["state"], "ready", "{info}");
    assert_eq!(info["source_format"], "raw", "{info}");

    // A qcow2 over HTTP with --format, and one from S3 detected.
    let url = format!("http://{http}/disk.qcow2");
    dev.ok(&[
        "image", "import", "img2", "--from", &url, "--format", "qcow2",
    ]);
    dev.assert_volume_holds("img2.disk@image", &disk);
    dev.ok(&[
        "image",
        "import",
        "img3",
        "--from",
        "s3://images/nested/disk.qcow2",
    ]);
    dev.assert_volume_holds("img3.disk@image", &disk);
    let info: serde_json::Value =
        serde_json::from_str(&dev.ok(&["--json", "image", "info", "img3"])).unwrap();
    assert_eq!(info["source_format"], "qcow2", "{info}");

    // A local disk, its kernel from S3 and its initrd over HTTP.
    let initrd_url = format!("http://{http}/initrd.gz");
    dev.ok(&[
        "image",
        "import",
        "img4",
        "--from",
        raw.to_str().unwrap(),
        "--kernel",
        "s3://images/boot/vmlinuz",
        "--initrd",
        &initrd_url,
    ]);
    dev.assert_volume_holds("img4.disk@image", &disk);
    dev.assert_volume_holds("img4.kernel@image", &kernel);
    dev.assert_volume_holds("img4.initrd@image", &initrd);
    let info: serde_json::Value =
        serde_json::from_str(&dev.ok(&["--json", "image", "info", "img4"])).unwrap();
    assert_eq!(info["kernel"]["bytes"], kernel.len(), "{info}");
    assert_eq!(info["initrd"]["bytes"], initrd.len(), "{info}");

    // volume import shares the download: an S3 object as --from-url.
    dev.ok(&[
        "volume",
        "import",
        "vol1",
        "--from-url",
        "s3://images/nested/disk.qcow2",
    ]);
    dev.assert_volume_holds("vol1", &disk);

    let images = dev.ok(&["image", "ls"]);
    for name in ["img1", "img2", "img3", "img4"] {
        assert!(images.contains(name), "{images}");
    }
}

#[test]
fn bad_sources_leave_nothing_behind() {
    let dev = Dev::start("bad");
    let disk = pattern(MIB, 0x44);
    let (raw, _) = make_images(&dev.dir, "disk", &disk);
    dev.aws(&["s3", "mb", "s3://images"]);
    dev.aws(&["s3", "cp", raw.to_str().unwrap(), "s3://images/disk.raw"]);
    // A qcow2 that reads a file of the importing machine as its backing file.
    let backed = dev.dir.join("backed.qcow2");
    tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&raw)
            .arg(&backed),
    );
    let http = serve_files(BTreeMap::from([(
        "/backed.qcow2".to_owned(),
        std::fs::read(&backed).unwrap(),
    )]));

    dev.refused(
        "bad1",
        &[
            "image",
            "import",
            "bad1",
            "--from",
            "s3://images/missing.raw",
        ],
        true,
        &["s3://images/missing.raw", "NoSuchKey", "HTTP 404"],
    );
    dev.refused(
        "bad2",
        &[
            "image",
            "import",
            "bad2",
            "--from",
            "s3://no-bucket/disk.raw",
        ],
        true,
        &["s3://no-bucket/disk.raw", "NoSuchBucket"],
    );
    let missing = format!("http://{http}/missing.qcow2");
    dev.refused(
        "bad3",
        &["image", "import", "bad3", "--from", &missing],
        true,
        &[&missing, "HTTP 404"],
    );
    let code = dev.refused(
        "bad4",
        &[
            "image",
            "import",
            "bad4",
            "--from",
            "ftp://example.com/disk.raw",
        ],
        true,
        &["unknown scheme ftp://"],
    );
    assert_eq!(code, 2, "a bad argument is a usage error");
    dev.refused(
        "bad5",
        &[
            "image",
            "import",
            "bad5",
            "--from",
            raw.to_str().unwrap(),
            "--kernel",
            "gopher://h/k",
        ],
        true,
        &["unknown scheme gopher://"],
    );
    dev.refused(
        "bad6",
        &["image", "import", "bad6", "--from", "s3://images/disk.raw"],
        false,
        &["AWS_ACCESS_KEY_ID", "s3.env"],
    );
    let backed_url = format!("http://{http}/backed.qcow2");
    dev.refused(
        "bad7",
        &["image", "import", "bad7", "--from", &backed_url],
        true,
        &["backing or data file"],
    );
    // A missing kernel after a good disk: still nothing made.
    dev.refused(
        "bad8",
        &[
            "image",
            "import",
            "bad8",
            "--from",
            "s3://images/disk.raw",
            "--kernel",
            "s3://images/missing-kernel",
        ],
        true,
        &["s3://images/missing-kernel", "NoSuchKey"],
    );
    dev.refused(
        "vol1",
        &[
            "volume",
            "import",
            "vol1",
            "--from-url",
            "s3://images/missing.raw",
        ],
        true,
        &["s3://images/missing.raw", "NoSuchKey"],
    );

    // And the same source, once right, imports.
    dev.ok(&["image", "import", "good", "--from", "s3://images/disk.raw"]);
    dev.assert_volume_holds("good.disk@image", &disk);
}
