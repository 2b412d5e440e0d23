//! FiberLB end to end in network namespaces (tests/lb/netns_e2e.sh): a
//! client, the load balancer (`photon dev` with XDP in native mode on a
//! veth), three backends that decapsulate in XDP and answer directly. Spread
//! over the backends, a health-check drop within seconds with no failed
//! request, established flows kept, the backend's return, and the counters
//! in `photon ctl lb stats` and /metrics. Needs root, iproute2, ethtool,
//! curl and python3 (scripts/test.sh installs them); the script's log is
//! printed on failure.

mod common;

use std::process::Command;

#[test]
fn load_balancer_end_to_end_in_namespaces() {
    let work = common::temp_dir("lb-netns");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("tests/lb/netns_e2e.sh"))
        .env("PHOTON", env!("CARGO_BIN_EXE_photon"))
        .env("WORK", &work)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let node_log = common::log_tail(&work.join("lb-node.log"));
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "tests/lb/netns_e2e.sh failed ({}):\n{stdout}\n{stderr}\n--- photon dev log (tail) ---\n{node_log}",
        out.status
    );
    println!("{stdout}");
    let _ = std::fs::remove_dir_all(&work);
}
