//! This node's record in the node registry (`photon_records::node`):
//! written when the control plane is up and again every
//! `control.node_heartbeat_ms`, through the leader when this node follows.
//! Its endpoints are those the engine opened (ports may be 0 in the
//! config), with an unspecified bind address replaced by the host other
//! nodes reach the control endpoint at.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use photon_control::rpc::Proposer;
use photon_records::NodeRecord;

use crate::config::Config;

/// What this node says of itself, and how often.
pub struct Registration {
    /// Filled once the engine has opened its listeners.
    pub endpoints: Arc<Mutex<BTreeMap<String, SocketAddr>>>,
    name: String,
    roles: Vec<String>,
    failure_domain: String,
    data_dir: PathBuf,
    /// How other nodes reach the control endpoint, when it is not the
    /// address it listens on (`control.advertise`).
    advertise: Option<SocketAddr>,
    /// The host other nodes reach this one at.
    host: std::net::IpAddr,
    every: Duration,
}

impl Registration {
    pub fn new(config: &Config) -> Self {
        Self {
            endpoints: Arc::default(),
            name: config.node.name.clone(),
            roles: config.node.roles.clone(),
            failure_domain: config.node.failure_domain.clone(),
            data_dir: config.node.data_dir.clone(),
            advertise: config.control.advertise,
            host: config
                .control
                .advertise
                .unwrap_or(config.control.listen)
                .ip(),
            every: Duration::from_millis(config.control.node_heartbeat_ms),
        }
    }

    /// The record to write now; `None` until the endpoints are known.
    fn describe(&self, id: u64, started_ms: u64) -> Option<NodeRecord> {
        let opened = self.endpoints.lock().ok()?.clone();
        if opened.is_empty() {
            return None;
        }
        let host = self.host;
        let mut endpoints: BTreeMap<String, String> = opened
            .into_iter()
            .map(|(name, mut address)| {
                if address.ip().is_unspecified() {
                    address.set_ip(host);
                }
                (name, address.to_string())
            })
            .collect();
        if let Some(advertise) = self.advertise {
            endpoints.insert(
                crate::control_plane::CONTROL_ENDPOINT.into(),
                advertise.to_string(),
            );
        }
        let (disk_free, disk_total) = disk_space(&self.data_dir);
        Some(NodeRecord {
            id,
            name: self.name.clone(),
            roles: self.roles.clone(),
            failure_domain: self.failure_domain.clone(),
            endpoints,
            host: host.to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_mib: photon_vmm::qemu::host_memory_mib(),
            disk_free,
            disk_total,
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms,
            heartbeat_ms: photon_control::now_ms(),
        })
    }
}

/// Bytes free (for unprivileged writers) and in total on `dir`'s file system.
fn disk_space(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (0, 0);
    };
    // SAFETY: statvfs is plain data, for which all zero bytes are valid.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return (0, 0);
    }
    let block = stat.f_frsize as u64;
    (stat.f_bavail as u64 * block, stat.f_blocks as u64 * block)
}

/// Writes this node's record every heartbeat until the node stops.
pub async fn run(registration: Registration, id: u64, proposer: Proposer) {
    let started_ms = photon_control::now_ms();
    let mut registered = false;
    let mut failures = 0u32;
    loop {
        if let Some(record) = registration.describe(id, started_ms) {
            match photon_control::resource::node::heartbeat(&proposer, &record).await {
                Ok(()) => {
                    if !registered {
                        tracing::info!(node = id, "registered in the node registry");
                        registered = true;
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    // Expected while no leader is known; say so once in a while.
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(node = id, failures, error = %e, "the node registry heartbeat failed");
                    }
                }
            }
        }
        let wait = if registered {
            registration.every
        } else {
            Duration::from_millis(200).min(registration.every)
        };
        tokio::time::sleep(wait).await;
    }
}
