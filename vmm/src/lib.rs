//! `photon-vmm`: PlasmaVMC's per-node agent, which runs each VM as a QEMU
//! process and drives it over QMP (docs/design, issue 17). So far: the QMP
//! client ([`qmp`]).

pub mod qmp;
