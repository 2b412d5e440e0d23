//! The QMP client against a real QEMU (`qemu-system-x86_64`, installed by
//! scripts/test.sh): a paused empty machine is resumed, stopped and shut
//! down over QMP, its events arrive, and a refused command is an error.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use photon_vmm::qmp::{Qmp, QmpError};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// Kills QEMU if the test fails before it quits.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_qemu(dir: &std::path::Path) -> (Qemu, PathBuf) {
    let socket = dir.join("qmp.sock");
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-S",
            "-qmp",
        ])
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-x86_64 runs (scripts/test.sh installs qemu-system-x86)");
    let deadline = Instant::now() + WAIT;
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "QEMU made no QMP socket in {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Qemu(child), socket)
}

async fn status(qmp: &mut Qmp) -> String {
    let answer = qmp.execute("query-status", None).await.unwrap();
    answer["status"].as_str().unwrap().to_owned()
}

async fn event(qmp: &mut Qmp, name: &str) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(e) = qmp.next_event(Duration::from_millis(200)).await.unwrap() {
            if e.name == name {
                return;
            }
        }
    }
    panic!("no {name} event within {WAIT:?}");
}

#[tokio::test]
async fn a_paused_machine_is_resumed_stopped_and_shut_down_over_qmp() {
    let dir = std::env::temp_dir().join(format!("photon-qmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut qemu, socket) = start_qemu(&dir);

    let (mut qmp, version) = Qmp::connect(&socket, WAIT).await.unwrap();
    assert!(version["qemu"]["major"].as_u64().unwrap() >= 7, "{version}");
    assert_eq!(status(&mut qmp).await, "prelaunch");

    qmp.execute("cont", None).await.unwrap();
    event(&mut qmp, "RESUME").await;
    assert_eq!(status(&mut qmp).await, "running");

    qmp.execute("stop", None).await.unwrap();
    event(&mut qmp, "STOP").await;
    assert_eq!(status(&mut qmp).await, "paused");

    match qmp.execute("no-such-command", Some(json!({}))).await {
        Err(QmpError::Refused { class, .. }) => assert_eq!(class, "CommandNotFound"),
        other => panic!("an unknown command must be refused: {other:?}"),
    }
    // The connection still works after a refusal.
    assert_eq!(status(&mut qmp).await, "paused");

    qmp.execute("quit", None).await.unwrap();
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(status) = qemu.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "QEMU did not quit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
