//! PlasmaVMC's records: virtual machines (`vm/<tenant>/<project>/<name>`)
//! and the images they start from (`image/<tenant>/<project>/<name>`). The
//! control plane writes them; the agent of the VM's node (`photon-vmm`)
//! reads the VM records of its node and makes QEMU match them.

use serde::{Deserialize, Serialize};

/// Prefix of every VM record in the KV.
pub const VM_PREFIX: &str = "vm/";
/// Prefix of every image record in the KV.
pub const IMAGE_PREFIX: &str = "image/";

/// Longest VM or image name (a DNS label: VMs get names under the cluster
/// domain later).
pub const VM_NAME_BYTES_MAX: usize = 63;
/// Virtual CPUs a VM may have.
pub const VM_CPUS_MAX: u32 = 64;
/// Smallest and largest guest memory, MiB.
pub const VM_MEMORY_MIB_MIN: u32 = 64;
pub const VM_MEMORY_MIB_MAX: u32 = 1 << 20;
/// Disks a VM may have (boot disk included).
pub const VM_DISKS_MAX: usize = 16;
/// User data a VM may carry (cloud-init's own limit on most clouds is
/// 16-64 KiB; it lives in the VM's record in the KV).
pub const USER_DATA_BYTES_MAX: usize = 64 * 1024;
/// SSH keys a VM may carry, and the longest one.
pub const SSH_KEYS_MAX: usize = 32;
pub const SSH_KEY_BYTES_MAX: usize = 8 * 1024;
/// Longest kernel command line of an image.
pub const CMDLINE_BYTES_MAX: usize = 2048;
/// VMs a project may have.
pub const VMS_PER_PROJECT_MAX: usize = 1000;

/// The KV key of VM `name` of a project.
pub fn vm_key(tenant: &str, project: &str, name: &str) -> String {
    format!("{VM_PREFIX}{tenant}/{project}/{name}")
}

/// The KV key of image `name` of a project.
pub fn image_key(tenant: &str, project: &str, name: &str) -> String {
    format!("{IMAGE_PREFIX}{tenant}/{project}/{name}")
}

/// The power state the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Power {
    Running,
    Stopped,
}

/// What the agent does when a VM that should run is found not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Start it again, whatever ended it (a guest power-off included).
    Always,
    /// Start it again unless the guest powered itself off.
    OnFailure,
    /// Leave it stopped.
    Never,
}

impl RestartPolicy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "always" => Some(Self::Always),
            "on-failure" => Some(Self::OnFailure),
            "never" => Some(Self::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::Never => "never",
        }
    }
}

/// One disk of a VM: a CoronaFS volume of the VM's project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDisk {
    pub volume: String,
    /// The volume's id (what attach tokens open).
    pub id: u64,
    pub read_only: bool,
    /// Made for this VM (the clone of its image): deleted with it unless
    /// `vm rm --keep-volumes`.
    pub owned: bool,
    /// The hot-plug port (1..[`VM_DISKS_MAX`]) a disk after the boot disk
    /// sits on, fixed while it is attached, so a restarted or migrated
    /// QEMU has the same device layout; 0 for the boot disk.
    #[serde(default)]
    pub slot: u32,
}

impl VmRecord {
    /// The lowest hot-plug port no disk of this VM uses, if one is free.
    pub fn free_slot(&self) -> Option<u32> {
        (1..VM_DISKS_MAX as u32).find(|s| !self.disks.iter().any(|d| d.slot == *s))
    }
}

/// A kernel and initrd booted directly (from an image), instead of the
/// boot disk's own boot loader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectBoot {
    /// Snapshot volume holding the kernel, and the kernel's length.
    pub kernel_id: u64,
    pub kernel_bytes: u64,
    /// Snapshot volume holding the initrd, and its length (none: 0, 0).
    pub initrd_id: u64,
    pub initrd_bytes: u64,
    pub cmdline: String,
}

/// A live migration of a running VM from its node to another (`vm
/// migrate`). The destination's agent starts QEMU waiting for the state
/// and writes where it listens (`incoming`); the source's agent sends the
/// state there and, once QEMU says it completed, moves the record (`node`
/// becomes `to`, the migration goes). A failure leaves the VM running on
/// `from` and says why in `failed`, until the next migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// A new id per `vm migrate`: reports of an older one are ignored.
    pub id: u64,
    pub from: u64,
    pub to: u64,
    /// `host:port` the destination's QEMU listens at, once it does.
    #[serde(default)]
    pub incoming: Option<String>,
    /// Why it failed (the VM stayed on `from`); `None` while it runs.
    #[serde(default)]
    pub failed: Option<String>,
    pub started_ms: u64,
}

impl Migration {
    /// Whether it is still under way.
    pub fn active(&self) -> bool {
        self.failed.is_none()
    }
}

/// One virtual machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    pub name: String,
    /// A new id per creation (names the VM's directory on its node).
    pub id: u64,
    pub tenant: String,
    pub project: String,
    /// The principal that created it: the agent opens the VM's volumes
    /// with attach tokens of this principal, so they stop working when it
    /// is deleted.
    pub owner: String,
    /// The node whose agent runs it.
    pub node: u64,
    pub cpus: u32,
    pub memory_mib: u32,
    /// The image it was created from.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub boot: Option<DirectBoot>,
    /// The first one is the boot disk.
    pub disks: Vec<VmDisk>,
    /// The NIC's MAC address (`52:54:00:..`, QEMU's locally administered range).
    pub mac: String,
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    pub power: Power,
    /// With `power: stopped`: pull the plug instead of asking the guest.
    #[serde(default)]
    pub force_stop: bool,
    pub restart: RestartPolicy,
    /// Bumped by every `vm reboot`; the agent resets the VM when the
    /// number it last acted on is lower.
    #[serde(default)]
    pub reboots: u64,
    /// Bumped by every start (and by a create that starts): the agent
    /// starts QEMU for a number it has not started for, whatever the
    /// restart policy says of the last exit.
    #[serde(default)]
    pub starts: u64,
    pub created_ms: u64,
    /// The live migration under way, or the last one if it failed.
    #[serde(default)]
    pub migration: Option<Migration>,
}

impl VmRecord {
    pub fn key(&self) -> String {
        vm_key(&self.tenant, &self.project, &self.name)
    }

    pub fn to_kv(&self) -> (String, Vec<u8>) {
        (self.key(), serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_json(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// The resource name IAM checks (`vm/<name>`).
    pub fn resource(&self) -> String {
        format!("vm/{}", self.name)
    }

    /// The migration under way, if one is.
    pub fn migrating(&self) -> Option<&Migration> {
        self.migration.as_ref().filter(|m| m.active())
    }

    /// Whether the agent of `node` has work for this VM: it runs there, or
    /// is being migrated there.
    pub fn concerns(&self, node: u64) -> bool {
        self.node == node || self.migrating().is_some_and(|m| m.to == node)
    }

    /// Whether the agent must attach a cloud-init NoCloud seed.
    pub fn needs_seed(&self) -> bool {
        self.user_data.is_some() || !self.ssh_keys.is_empty()
    }
}

/// Where an image is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    /// Created; its volumes are being written by the importer.
    Importing,
    /// Sealed: its snapshots exist and VMs may start from it.
    Ready,
}

/// One part of an image: a volume while importing, then its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePart {
    /// The volume the importer writes (`<image>.disk`, `.kernel`, `.initrd`).
    pub volume: String,
    pub volume_id: u64,
    /// The snapshot taken when sealed (`<volume>@image`), 0 before.
    pub snapshot_id: u64,
    /// Bytes of content (a kernel's exact length; a disk's virtual size).
    pub bytes: u64,
}

/// One image: a boot disk and, for direct boot, a kernel and initrd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    pub id: u64,
    pub tenant: String,
    pub project: String,
    pub state: ImageState,
    /// The format the importer was given (`raw` or `qcow2`); stored raw.
    pub source_format: String,
    pub disk: ImagePart,
    #[serde(default)]
    pub kernel: Option<ImagePart>,
    #[serde(default)]
    pub initrd: Option<ImagePart>,
    #[serde(default)]
    pub cmdline: String,
    pub created_ms: u64,
}

impl ImageRecord {
    pub fn key(&self) -> String {
        image_key(&self.tenant, &self.project, &self.name)
    }

    pub fn to_kv(&self) -> (String, Vec<u8>) {
        (self.key(), serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_json(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// The parts that exist, in order: disk, kernel, initrd.
    pub fn parts(&self) -> impl Iterator<Item = &ImagePart> {
        std::iter::once(&self.disk)
            .chain(self.kernel.as_ref())
            .chain(self.initrd.as_ref())
    }
}

/// Checks a VM or image name: a DNS label (1-63 of `a-z 0-9 -`, starting
/// with a letter, not ending with '-').
pub fn check_vm_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= VM_NAME_BYTES_MAX
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1-{VM_NAME_BYTES_MAX} of a-z, 0-9 and '-', starting with a letter and not ending with '-'"
        ))
    }
}

/// Checks the size of a VM.
pub fn check_vm_size(cpus: u32, memory_mib: u32) -> Result<(), String> {
    if cpus == 0 || cpus > VM_CPUS_MAX {
        return Err(format!("cpus must be 1-{VM_CPUS_MAX}, got {cpus}"));
    }
    if !(VM_MEMORY_MIB_MIN..=VM_MEMORY_MIB_MAX).contains(&memory_mib) {
        return Err(format!(
            "memory must be {VM_MEMORY_MIB_MIN} MiB to {VM_MEMORY_MIB_MAX} MiB, got {memory_mib} MiB"
        ));
    }
    Ok(())
}

/// Checks user data and SSH keys against the limits.
pub fn check_guest_data(user_data: Option<&str>, ssh_keys: &[String]) -> Result<(), String> {
    if let Some(data) = user_data {
        if data.len() > USER_DATA_BYTES_MAX {
            return Err(format!(
                "user data is {} bytes, more than the {USER_DATA_BYTES_MAX} allowed",
                data.len()
            ));
        }
    }
    if ssh_keys.len() > SSH_KEYS_MAX {
        return Err(format!("at most {SSH_KEYS_MAX} SSH keys"));
    }
    for key in ssh_keys {
        if key.is_empty()
            || key.len() > SSH_KEY_BYTES_MAX
            || key.chars().any(|c| c.is_control())
            || !key.starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(format!(
                "an SSH key must be one line of 1-{SSH_KEY_BYTES_MAX} printable bytes (like `ssh-ed25519 AAAA... user`)"
            ));
        }
    }
    Ok(())
}

/// A random MAC address in QEMU's locally administered range.
pub fn new_mac() -> String {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).unwrap_or_default();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sizes_and_guest_data_are_checked() {
        assert!(check_vm_name("web-1").is_ok());
        for bad in ["", "1web", "web-", "Web", "a_b", &"a".repeat(64)] {
            assert!(check_vm_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_vm_size(1, 512).is_ok());
        assert!(check_vm_size(0, 512).unwrap_err().contains("cpus"));
        assert!(check_vm_size(1, 1).unwrap_err().contains("memory"));
        assert!(check_guest_data(Some("#!/bin/sh\n"), &["ssh-ed25519 AAAA x".into()]).is_ok());
        let big = "x".repeat(USER_DATA_BYTES_MAX + 1);
        assert!(check_guest_data(Some(&big), &[])
            .unwrap_err()
            .contains("user data"));
        assert!(check_guest_data(None, &["ssh-rsa A\nroot".into()]).is_err());
        let mac = new_mac();
        assert!(mac.starts_with("52:54:00:") && mac.len() == 17);
    }

    #[test]
    fn records_round_trip() {
        let vm = VmRecord {
            name: "web".into(),
            id: 7,
            tenant: "acme".into(),
            project: "p".into(),
            owner: "alice".into(),
            node: 1,
            cpus: 1,
            memory_mib: 256,
            image: Some("deb".into()),
            boot: None,
            disks: vec![VmDisk {
                volume: "web.boot".into(),
                id: 9,
                read_only: false,
                owned: true,
                slot: 0,
            }],
            mac: new_mac(),
            user_data: None,
            ssh_keys: vec![],
            power: Power::Running,
            force_stop: false,
            restart: RestartPolicy::OnFailure,
            reboots: 0,
            starts: 1,
            created_ms: 1,
            migration: None,
        };
        let (key, value) = vm.to_kv();
        assert_eq!(key, "vm/acme/p/web");
        assert_eq!(VmRecord::from_json(&value), Some(vm.clone()));
        assert!(!vm.needs_seed());
        assert_eq!(
            RestartPolicy::parse("on-failure"),
            Some(RestartPolicy::OnFailure)
        );
    }
}
