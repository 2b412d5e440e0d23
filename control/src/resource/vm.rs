//! The VM and image resources (PlasmaVMC): records under `vm/` and `image/`
//! in the KV (laid out in [`photon_records::vm`]), written through Raft.
//! Each write is one txn whose compares keep these invariants under
//! concurrent writers:
//!
//! * a VM name and an image name are unique per project;
//! * a volume is a writable disk of at most one VM, and never a disk of a
//!   VM while another VM has it writable (every VM record of the project is
//!   compared, so an attach elsewhere in between makes the txn run again);
//! * a project has at most [`VMS_PER_PROJECT_MAX`] VMs.
//!
//! What the VMs really do is not here: the agent of the VM's node
//! ([`VmHost`]) reports it, and the API shows both.

use std::sync::Arc;

use photon_records::{
    image_key, vm_key, ImageRecord, VmRecord, IMAGE_PREFIX, VMS_PER_PROJECT_MAX, VM_PREFIX,
};

use super::txn::{self, CommitError, Plan};
use crate::kv::{Compare, KeyValue};
use crate::proposer::Proposer;
use crate::raft::KvStateMachine;

/// What the agent of this node saw of one VM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmStatus {
    /// running | paused | stopped | starting | stopping | failed
    pub state: String,
    pub detail: String,
    /// kvm | tcg while QEMU runs.
    pub accel: String,
    pub pid: u32,
    pub restarts: u32,
    /// Its address on the node's VM network, "" without one.
    pub address: String,
}

/// A console attachment: the console's output, and where keystrokes go.
pub struct ConsoleStream {
    /// First the tail of the log, then live output; closed (with the
    /// reason last) when the console goes.
    pub output: tokio::sync::mpsc::Receiver<ConsoleChunk>,
    pub input: tokio::sync::mpsc::Sender<Vec<u8>>,
}

/// One piece of console output.
#[derive(Debug)]
pub enum ConsoleChunk {
    Data(Vec<u8>),
    Closed(String),
}

/// The VM agent of this node, as the API sees it.
pub trait VmHost: Send + Sync {
    /// What the agent sees of VM `id`; `None` if it has not seen it yet.
    fn status(&self, id: u64) -> Option<VmStatus>;
    /// The last `tail` bytes of VM `id`'s serial log.
    fn logs(&self, id: u64, tail: usize) -> Result<Vec<u8>, String>;
    /// Attaches to VM `id`'s serial console.
    fn console(&self, id: u64) -> Result<ConsoleStream, String>;
    /// Why VMs cannot run here (QEMU missing, ...), if they cannot.
    fn unusable(&self) -> Option<String>;
    /// The node's memory, MiB: no VM may have more.
    fn memory_mib(&self) -> u64;
}

/// What the VM API needs besides the KV.
#[derive(Clone, Default)]
pub struct VmSettings {
    /// This node's id: new VMs run here.
    pub node: u64,
    /// The node's agent; `None` when it has no compute role.
    pub host: Option<Arc<dyn VmHost>>,
    /// When a migration's destination counts as up.
    pub liveness: photon_records::Liveness,
}

impl std::fmt::Debug for VmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmSettings")
            .field("node", &self.node)
            .field("host", &self.host.is_some())
            .finish()
    }
}

/// Why a VM or image write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmWriteError {
    #[error("already exists: vm {0}")]
    VmExists(String),
    #[error("not found: no vm {0}")]
    NoSuchVm(String),
    #[error("already exists: image {0}")]
    ImageExists(String),
    #[error("not found: no image {0}")]
    NoSuchImage(String),
    #[error("failed precondition: volume {volume} is attached to vm {vm}{mode}")]
    VolumeInUse {
        volume: String,
        vm: String,
        mode: &'static str,
    },
    #[error("resource exhausted: a project has at most {VMS_PER_PROJECT_MAX} vms")]
    TooMany,
    #[error("failed precondition: {0}")]
    Precondition(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

refusal!(VmWriteError {
    Self::VmExists(_) | Self::ImageExists(_) => AlreadyExists,
    Self::NoSuchVm(_) | Self::NoSuchImage(_) => NotFound,
    Self::VolumeInUse { .. } | Self::Precondition(_) => FailedPrecondition,
    Self::TooMany => ResourceExhausted,
    Self::Invalid(_) => InvalidArgument,
    Self::Commit(_) => Internal,
});

fn project_prefix(root: &str, tenant: &str, project: &str) -> String {
    format!("{root}{tenant}/{project}/")
}

/// VM `name` of a project, from this node's applied state.
pub fn get(
    state: &KvStateMachine,
    tenant: &str,
    project: &str,
    name: &str,
) -> Option<(KeyValue, VmRecord)> {
    let kv = state.get_local(vm_key(tenant, project, name).as_bytes())?;
    let record = VmRecord::from_json(&kv.value)?;
    Some((kv, record))
}

/// Every VM of a project, with the entries they were read from.
pub fn list(state: &KvStateMachine, tenant: &str, project: &str) -> Vec<(KeyValue, VmRecord)> {
    let prefix = project_prefix(VM_PREFIX, tenant, project);
    state
        .scan_prefix_local(prefix.as_bytes())
        .into_iter()
        .filter_map(|kv| {
            let record = VmRecord::from_json(&kv.value)?;
            Some((kv, record))
        })
        .collect()
}

/// Image `name` of a project.
pub fn get_image(
    state: &KvStateMachine,
    tenant: &str,
    project: &str,
    name: &str,
) -> Option<(KeyValue, ImageRecord)> {
    let kv = state.get_local(image_key(tenant, project, name).as_bytes())?;
    let record = ImageRecord::from_json(&kv.value)?;
    Some((kv, record))
}

/// Every image of a project.
pub fn list_images(state: &KvStateMachine, tenant: &str, project: &str) -> Vec<ImageRecord> {
    let prefix = project_prefix(IMAGE_PREFIX, tenant, project);
    state
        .scan_prefix_local(prefix.as_bytes())
        .iter()
        .filter_map(|kv| ImageRecord::from_json(&kv.value))
        .collect()
}

/// Refuses `vm`'s disks that another VM of `others` holds in a way that
/// conflicts (either side writable), and returns the compares that keep
/// that true until the commit.
fn check_disks(vm: &VmRecord, others: &[(KeyValue, VmRecord)]) -> Result<(), VmWriteError> {
    for disk in &vm.disks {
        for (_, other) in others.iter().filter(|(_, o)| o.name != vm.name) {
            if let Some(theirs) = other.disks.iter().find(|d| d.id == disk.id) {
                if !theirs.read_only || !disk.read_only {
                    return Err(VmWriteError::VolumeInUse {
                        volume: disk.volume.clone(),
                        vm: other.name.clone(),
                        mode: if theirs.read_only { "" } else { " read-write" },
                    });
                }
            }
        }
    }
    Ok(())
}

/// Every VM record of the project unchanged, and none created since.
fn project_unchanged(prefix: &str, others: &[(KeyValue, VmRecord)]) -> Vec<Compare> {
    let kvs: Vec<KeyValue> = others.iter().map(|(kv, _)| kv.clone()).collect();
    let mut compares: Vec<Compare> = kvs.iter().map(txn::unchanged).collect();
    compares.push(txn::none_created_after(prefix, txn::newest_creation(&kvs)));
    compares
}

/// Writes a new VM unless its name is taken, a disk is in use elsewhere or
/// the project is full.
pub async fn insert(proposer: &Proposer, vm: &VmRecord) -> Result<(), VmWriteError> {
    let (key, value) = vm.to_kv();
    let prefix = project_prefix(VM_PREFIX, &vm.tenant, &vm.project);
    txn::update(proposer, &format!("vm {}", vm.name), |state| {
        let others = list(state, &vm.tenant, &vm.project);
        if others.iter().any(|(_, o)| o.name == vm.name) {
            return Err(VmWriteError::VmExists(vm.name.clone()));
        }
        if others.len() >= VMS_PER_PROJECT_MAX {
            return Err(VmWriteError::TooMany);
        }
        check_disks(vm, &others)?;
        let mut compares = project_unchanged(&prefix, &others);
        compares.push(txn::absent(key.as_bytes()));
        Ok(Plan::write(
            compares,
            vec![txn::put(key.clone().into_bytes(), value.clone())],
            (),
        ))
    })
    .await
}

/// Changes VM `name` with `change` (which may refuse), keeping the disk
/// invariant; returns the new record.
pub async fn modify(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    name: &str,
    change: impl Fn(&mut VmRecord) -> Result<(), VmWriteError>,
) -> Result<VmRecord, VmWriteError> {
    let prefix = project_prefix(VM_PREFIX, tenant, project);
    txn::update(proposer, &format!("vm {name}"), |state| {
        let others = list(state, tenant, project);
        let (kv, mut record) = others
            .iter()
            .find(|(_, o)| o.name == name)
            .cloned()
            .ok_or_else(|| VmWriteError::NoSuchVm(name.to_owned()))?;
        let before = record.disks.clone();
        change(&mut record)?;
        let mut compares = vec![txn::unchanged(&kv)];
        if record.disks != before {
            check_disks(&record, &others)?;
            compares = project_unchanged(&prefix, &others);
        }
        let (_, value) = record.to_kv();
        Ok(Plan::write(
            compares,
            vec![txn::put(kv.key.clone(), value)],
            record,
        ))
    })
    .await
}

/// Applies `change` to VM `id`'s record at `key` on behalf of an agent
/// (a migration's progress), from any node: through the leader when this
/// node follows. `change` returns false when there is nothing (left) to
/// do, and the answer is whether it wrote; a record that is gone or is
/// another VM now is left alone.
pub async fn report(
    proposer: &Proposer,
    key: &str,
    id: u64,
    change: impl Fn(&mut VmRecord) -> bool,
) -> Result<bool, CommitError> {
    txn::update_anywhere(proposer, &format!("vm {id}"), |state| {
        let Some(kv) = state.get_local(key.as_bytes()) else {
            return Ok::<_, CommitError>(Plan::Done(false));
        };
        let Some(mut record) = VmRecord::from_json(&kv.value).filter(|r| r.id == id) else {
            return Ok(Plan::Done(false));
        };
        if !change(&mut record) {
            return Ok(Plan::Done(false));
        }
        let (_, value) = record.to_kv();
        Ok(Plan::replace(&kv, value, true))
    })
    .await
}

/// Deletes the VM read as `kv` unless it was deleted (or re-created) since.
pub async fn remove(proposer: &Proposer, kv: &KeyValue, name: &str) -> Result<(), VmWriteError> {
    txn::update(proposer, &format!("vm {name}"), |state| {
        let now = state.get_local(&kv.key);
        if now.is_none_or(|now| now.create_revision != kv.create_revision) {
            return Err(VmWriteError::NoSuchVm(name.to_owned()));
        }
        Ok(Plan::write(
            vec![txn::still_exists(kv)],
            vec![txn::delete(kv.key.clone())],
            (),
        ))
    })
    .await
}

/// Writes a new image unless its name is taken.
pub async fn insert_image(proposer: &Proposer, image: &ImageRecord) -> Result<(), VmWriteError> {
    let (key, value) = image.to_kv();
    txn::update(proposer, &format!("image {}", image.name), |state| {
        if state.get_local(key.as_bytes()).is_some() {
            return Err(VmWriteError::ImageExists(image.name.clone()));
        }
        Ok(Plan::write(
            vec![txn::absent(key.as_bytes())],
            vec![txn::put(key.clone().into_bytes(), value.clone())],
            (),
        ))
    })
    .await
}

/// Changes image `name` with `change` (which may refuse); returns the new
/// record.
pub async fn modify_image(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    name: &str,
    change: impl Fn(&mut ImageRecord) -> Result<(), VmWriteError>,
) -> Result<ImageRecord, VmWriteError> {
    txn::update(proposer, &format!("image {name}"), |state| {
        let (kv, mut image) = get_image(state, tenant, project, name)
            .ok_or_else(|| VmWriteError::NoSuchImage(name.to_owned()))?;
        change(&mut image)?;
        let (_, value) = image.to_kv();
        Ok(Plan::replace(&kv, value, image))
    })
    .await
}

/// Deletes the image read as `kv` unless it changed since.
pub async fn remove_image(
    proposer: &Proposer,
    kv: &KeyValue,
    name: &str,
) -> Result<(), VmWriteError> {
    txn::update(proposer, &format!("image {name}"), |state| {
        if state.get_local(&kv.key).is_none() {
            return Err(VmWriteError::NoSuchImage(name.to_owned()));
        }
        Ok(Plan::write(
            vec![txn::unchanged(kv)],
            vec![txn::delete(kv.key.clone())],
            (),
        ))
    })
    .await
}

/// What holds volume `id` of a project: a VM that has it as a disk, or an
/// image it is a part of (`"vm web"`, `"image debian"`).
pub fn volume_user(state: &KvStateMachine, tenant: &str, project: &str, id: u64) -> Option<String> {
    if let Some((_, vm)) = list(state, tenant, project)
        .into_iter()
        .find(|(_, vm)| vm.disks.iter().any(|d| d.id == id))
    {
        return Some(format!("vm {}", vm.name));
    }
    list_images(state, tenant, project)
        .into_iter()
        .find(|image| {
            image
                .parts()
                .any(|p| p.volume_id == id || p.snapshot_id == id)
        })
        .map(|image| format!("image {}", image.name))
}
