//! The `[compute]` section of the node's config file: how the VM agent of
//! a node with the `compute` role runs QEMU, with its defaults and checks.
//! Like every service section it maps a refused value to [`InvalidKey`],
//! which the binary's config turns into its own error.

use serde::{Deserialize, Serialize};

/// PlasmaVMC's agent on this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// The QEMU system emulator (a name looked up in PATH, or a path).
    pub qemu: String,
    /// qemu-img (copies image kernels into the node's cache).
    pub qemu_img: String,
    /// `auto` (KVM when QEMU can use it, else TCG), `kvm` or `tcg`.
    pub accel: String,
    /// How long a guest has to power off after `vm stop` before the agent
    /// pulls the plug.
    pub stop_timeout_ms: u64,
    /// Serial console log kept per VM, KiB.
    pub console_log_kib: u64,
    /// A Linux bridge for the VMs' tap NICs (made if missing; needs
    /// CAP_NET_ADMIN). "" = QEMU's user-mode network (no inbound traffic).
    pub bridge: String,
    /// The VMs' addresses on the bridge: the first is the bridge's (their
    /// gateway), the others go to VMs (static, through cloud-init).
    pub network: String,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        Self {
            qemu: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
            accel: "auto".into(),
            stop_timeout_ms: 30_000,
            console_log_kib: 1024,
            bridge: String::new(),
            network: "10.213.0.0/24".into(),
        }
    }
}

/// A key of the section holds a value it refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {reason}")]
pub struct InvalidKey {
    pub key: &'static str,
    pub reason: String,
}

impl ComputeConfig {
    /// The section's name in the file and in `PHOTON_COMPUTE_<KEY>`.
    pub const NAME: &'static str = "compute";

    /// Checks every value; the first violation is reported.
    pub fn validate(&self) -> Result<(), InvalidKey> {
        let refuse = |key, reason: &str| {
            Err(InvalidKey {
                key,
                reason: reason.into(),
            })
        };
        if !["auto", "kvm", "tcg"].contains(&self.accel.as_str()) {
            return refuse("compute.accel", "must be auto, kvm or tcg");
        }
        if !(100..=3_600_000).contains(&self.stop_timeout_ms) {
            return refuse("compute.stop_timeout_ms", "must be 100 to 3600000");
        }
        if !(4..=1 << 20).contains(&self.console_log_kib) {
            return refuse("compute.console_log_kib", "must be 4 to 1048576");
        }
        if let Err(reason) = crate::network::parse_cidr(&self.network) {
            return Err(InvalidKey {
                key: "compute.network",
                reason,
            });
        }
        if self.qemu.is_empty() || self.qemu_img.is_empty() {
            return refuse("compute.qemu", "names a program");
        }
        Ok(())
    }

    /// The forced accelerator, if not `auto`.
    pub fn forced_accel(&self) -> Option<crate::qemu::Accel> {
        match self.accel.as_str() {
            "kvm" => Some(crate::qemu::Accel::Kvm),
            "tcg" => Some(crate::qemu::Accel::Tcg),
            _ => None,
        }
    }
}
