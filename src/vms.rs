//! PlasmaVMC on a node with the `compute` role: the VM agent
//! (`photon_vmm::agent`) fed with the `vm/` records of this node (and of
//! VMs migrating to it) from the applied KV, its volumes opened with attach
//! tokens of each VM's owner on the NBD endpoint of the node that holds
//! them (from the node registry), its reports (a migration's progress)
//! written through the leader, and the [`VmHost`] the VM API reads it
//! through.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use photon_control::raft::KvStateMachine;
use photon_control::resource::vm::{ConsoleChunk, ConsoleStream, VmHost, VmStatus};
use photon_control::rpc::Proposer;
use photon_iam::Directory;
use photon_records::{VmRecord, VM_PREFIX};
use photon_vmm::agent::{Agent, AgentConfig, Board, LocalFuture, Reports, Volumes};
use photon_vmm::console::Output;

use crate::config::Config;

/// How long the agent's attach tokens live: a VM's NBD connection is
/// opened once per QEMU start, so this bounds only how long a stopped
/// VM's last command line stays usable.
const ATTACH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The agent's settings from the node's config.
pub fn agent_config(config: &Config) -> AgentConfig {
    let c = &config.compute;
    AgentConfig {
        dir: config.node.data_dir.join("vms"),
        qemu: c.qemu.clone().into(),
        qemu_img: c.qemu_img.clone().into(),
        stop_timeout: Duration::from_millis(c.stop_timeout_ms),
        log_bytes_max: c.console_log_kib << 10,
        accel: c.forced_accel(),
        network: (!c.bridge.is_empty()).then(|| (c.bridge.clone(), c.network.clone())),
        node: config.control.node_id,
        migration_host: config
            .control
            .advertise
            .unwrap_or(config.control.listen)
            .ip()
            .to_string(),
    }
}

/// Opens VM volumes as the VM's owner on the NBD endpoint of the node
/// that holds each: this node's, or another's from the node registry.
struct NodeVolumes {
    node: u64,
    directory: Arc<Directory>,
    nbd_address: Arc<Mutex<Option<std::net::SocketAddr>>>,
    state_machine: KvStateMachine,
}

impl NodeVolumes {
    /// The NBD endpoint serving volume `volume_id` of `vm`'s project.
    fn endpoint(&self, vm: &VmRecord, volume_id: u64) -> Result<String, String> {
        let volumes =
            photon_control::resource::volume::list(&self.state_machine, &vm.tenant, &vm.project);
        let volume = volumes
            .iter()
            .find(|v| v.id == volume_id)
            .ok_or_else(|| format!("volume {volume_id} of vm {} does not exist", vm.name))?;
        if volume.node == self.node {
            return self
                .nbd_address
                .lock()
                .ok()
                .and_then(|a| *a)
                .map(|a| a.to_string())
                .ok_or_else(|| {
                    "this node serves no NBD endpoint (it needs the storage role)".into()
                });
        }
        photon_control::resource::node::get(&self.state_machine, volume.node)
            .and_then(|n| n.endpoint("nbd").map(str::to_owned))
            .ok_or_else(|| {
                format!(
                    "volume {} is on node {}, which has no NBD endpoint in the node registry",
                    volume.name, volume.node
                )
            })
    }
}

impl Volumes for NodeVolumes {
    fn uri(&self, vm: &VmRecord, volume_id: u64) -> Result<String, String> {
        let address = self.endpoint(vm, volume_id)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let (token, _) = self
            .directory
            .issue_attach_token_for(
                &vm.tenant,
                &vm.owner,
                &vm.project,
                &format!("volume-id/{volume_id}"),
                now,
                ATTACH_TTL.as_millis() as u64,
            )
            .map_err(|e| format!("attach token: {e}"))?;
        Ok(format!("nbd://{address}/{token}"))
    }
}

/// Writes the agent's reports to VM records, through the leader when
/// this node follows.
struct RecordReports(Proposer);

impl Reports for RecordReports {
    fn report(
        &self,
        vm: &VmRecord,
        change: Box<dyn Fn(&mut VmRecord) -> bool>,
    ) -> LocalFuture<Result<bool, String>> {
        let (proposer, key, id) = (self.0.clone(), vm.key(), vm.id);
        Box::pin(async move {
            photon_control::resource::vm::report(&proposer, &key, id, change)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The agent's board as the VM API sees it.
pub struct Host(pub Board);

impl VmHost for Host {
    fn status(&self, id: u64) -> Option<VmStatus> {
        self.0.status(id).map(|s| VmStatus {
            state: s.state,
            detail: s.detail,
            accel: s.accel,
            pid: s.pid,
            restarts: s.restarts,
            address: s.address,
        })
    }

    fn logs(&self, id: u64, tail: usize) -> Result<Vec<u8>, String> {
        self.0.logs(id, tail)
    }

    fn console(&self, id: u64) -> Result<ConsoleStream, String> {
        let mut viewer = self.0.console(id)?;
        let (tx, output) = tokio::sync::mpsc::channel(64);
        // Called on the control-plane thread, inside its LocalSet.
        tokio::task::spawn_local(async move {
            while let Some(out) = viewer.output.recv().await {
                let chunk = match out {
                    Output::Data(d) => ConsoleChunk::Data(d),
                    Output::Closed(r) => ConsoleChunk::Closed(r),
                };
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        Ok(ConsoleStream {
            output,
            input: viewer.input,
        })
    }

    fn unusable(&self) -> Option<String> {
        self.0.unusable()
    }

    fn memory_mib(&self) -> u64 {
        photon_vmm::qemu::host_memory_mib()
    }
}

/// What the control plane needs to run this node's VMs.
pub struct VmLink {
    pub config: AgentConfig,
    pub board: Board,
    pub nbd_address: Arc<Mutex<Option<std::net::SocketAddr>>>,
}

/// Runs the agent (on the control-plane thread) with this node's VM
/// records, until the node stops; QEMU processes outlive it.
pub async fn run_agent(
    link: VmLink,
    node: u64,
    directory: Arc<Directory>,
    proposer: Proposer,
    caught_up: impl Fn() -> bool + 'static,
) {
    let state_machine = proposer.state_machine.clone();
    let volumes = NodeVolumes {
        node,
        directory,
        nbd_address: link.nbd_address,
        state_machine: state_machine.clone(),
    };
    let agent = std::rc::Rc::new(Agent::new(
        link.config,
        Box::new(volumes),
        Box::new(RecordReports(proposer)),
        link.board,
    ));
    let ours = move |value: &[u8]| VmRecord::from_json(value).filter(|vm| vm.concerns(node));
    let ours = std::rc::Rc::new(ours);
    let keys: std::rc::Rc<std::cell::RefCell<std::collections::HashMap<Vec<u8>, u64>>> =
        std::rc::Rc::default();
    let (reload_agent, change_agent) = (agent.clone(), agent.clone());
    let (reload_keys, change_keys) = (keys.clone(), keys.clone());
    let (reload_ours, change_ours) = (ours.clone(), ours.clone());
    // VMs whose record is gone are destroyed only once this node's state
    // holds everything it held before it restarted: a record not replayed
    // yet is not a deleted one.
    let (sweeper, sweep_state) = (agent.clone(), state_machine.clone());
    tokio::task::spawn_local(async move {
        while !caught_up() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let records = sweep_state.scan_prefix_local(VM_PREFIX.as_bytes());
        let ids: std::collections::HashSet<u64> = records
            .iter()
            .filter_map(|kv| ours(&kv.value))
            .map(|vm| vm.id)
            .collect();
        sweeper.sweep_orphans(|id| ids.contains(&id));
    });
    photon_control::raft::follow_prefix(
        state_machine,
        VM_PREFIX.as_bytes(),
        move |state_machine| {
            let mut keys = reload_keys.borrow_mut();
            keys.clear();
            let mut records = Vec::new();
            for kv in state_machine.scan_prefix_local(VM_PREFIX.as_bytes()) {
                if let Some(vm) = reload_ours(&kv.value) {
                    keys.insert(kv.key.clone(), vm.id);
                    records.push(vm);
                }
            }
            reload_agent.replace_all(records);
        },
        move |events| {
            let mut keys = change_keys.borrow_mut();
            for (key, value) in events {
                match value.and_then(|v| change_ours(v)) {
                    Some(vm) => {
                        keys.insert(key.to_vec(), vm.id);
                        change_agent.upsert(vm);
                    }
                    None => {
                        if let Some(id) = keys.remove(key) {
                            change_agent.remove(id);
                        }
                    }
                }
            }
        },
    )
    .await;
}
