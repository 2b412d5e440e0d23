//! `photon-vmm`: PlasmaVMC's per-node agent, which runs each VM as a QEMU
//! process and drives it over QMP (docs/design, issue 17). So far: the QMP
//! client ([`qmp`]) and the cloud-init NoCloud seed disk ([`seed`]).

pub mod agent;
pub mod config;
pub mod console;
pub mod network;
pub mod qemu;
pub mod qmp;
pub mod seed;
