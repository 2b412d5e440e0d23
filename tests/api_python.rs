//! The control plane's API from another language: `photon api schemas`
//! writes the schemas, and the Python example client of docs/api.md
//! (docs/examples/photon_client.py, pycapnp only) logs in, authenticates,
//! puts and gets a key, asks whoami and renews its token against a fresh
//! `photon dev`. pycapnp missing is a failure, not a skip
//! (scripts/test.sh installs it).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{photon, Dev};

/// `photon api schemas --out out`.
fn write_schemas(out: &Path) -> std::process::Output {
    photon()
        .args(["api", "schemas", "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn schemas_command_writes_the_compiled_schemas_and_refuses_a_file() {
    let dir = common::temp_dir("api-schemas");
    let out_dir = dir.join("a").join("schemas");
    let out = write_schemas(&out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("control/schema");
    let names: Vec<&str> = photon_schema::SCHEMA_SOURCES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    for name in &names {
        let path = out_dir.join(name);
        assert!(printed.contains(&path.display().to_string()), "{printed}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(source.join(name)).unwrap(),
            "{name}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{name}");
    }
    // Every schema of control/schema is shipped.
    let shipped = std::fs::read_dir(&source)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("capnp".as_ref()))
        .count();
    assert_eq!(shipped, names.len());

    let file = dir.join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let out = write_schemas(&file);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a directory"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn python_example_client_runs_against_photon_dev() {
    let check = Command::new("python3.11")
        .args(["-c", "import capnp"])
        .output()
        .expect("python3.11 runs (scripts/test.sh installs it)");
    assert!(
        check.status.success(),
        "pycapnp is missing (python3.11 -m pip install pycapnp): {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let dev = Dev::start("api-python");
    let schemas = dev.dir.join("schemas");
    let out = write_schemas(&schemas);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let value = format!("from python {}", std::process::id());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/photon_client.py");
    let out = Command::new("python3.11")
        .arg(&script)
        .arg("--schemas")
        .arg(&schemas)
        .arg("--data-dir")
        .arg(dev.dir.join("data"))
        .args(["--key", "python/test", "--value", &value])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "photon_client.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("get python/test = {value} ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("whoami: tenant system, principal admin"),
        "{stdout}"
    );
    assert!(stdout.contains("refreshed: token"), "{stdout}");

    // What it put is there for every other client too.
    let got = dev.admin_json(&["kv", "get", "python/test"]);
    assert!(got.to_string().contains(&value), "{got}");
    let dir = dev.dir.clone();
    drop(dev);
    std::fs::remove_dir_all(&dir).ok();
}
