//! The backends' side: loads `fiberlb-decap.o` and attaches it to the
//! interface the load balancer's IP-in-IP packets arrive on (this kernel
//! has no ipip module). The VIP goes on the backend's loopback; replies go
//! straight to the client.

use aya::maps::PerCpuArray;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use fiberlb_common::Reason;

use crate::dataplane::{decap_object, DataplaneError};

/// The loaded decapsulation program; detached when dropped.
pub struct Decap {
    ebpf: Ebpf,
    program: &'static str,
}

impl std::fmt::Debug for Decap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decap").finish_non_exhaustive()
    }
}

impl Decap {
    /// Loads the program (not attached).
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_program("fiberlb_decap")
    }

    /// Loads the object's XDP_PASS program instead: attached to the veth
    /// peer of an interface whose native XDP program answers with XDP_TX.
    pub fn load_pass() -> Result<Self, DataplaneError> {
        Self::load_program("fiberlb_pass")
    }

    fn load_program(program: &'static str) -> Result<Self, DataplaneError> {
        let mut ebpf =
            Ebpf::load(decap_object()?).map_err(|e| DataplaneError::Load(e.to_string()))?;
        let prog: &mut Xdp = ebpf
            .program_mut(program)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| DataplaneError::Load(format!("no program {program}")))?;
        prog.load()
            .map_err(|e| DataplaneError::Load(format!("{program}: {e}")))?;
        Ok(Self { ebpf, program })
    }

    /// The program, for `BPF_PROG_TEST_RUN`.
    pub fn xdp(&self) -> &Xdp {
        self.ebpf
            .program(self.program)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in load()")
    }

    /// Attaches to `iface` until dropped.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<(), DataplaneError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(self.program)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in load()");
        prog.attach(iface, mode)
            .map(|_| ())
            .map_err(|e| DataplaneError::Attach {
                iface: iface.to_owned(),
                reason: e.to_string(),
            })
    }

    /// (decapsulated, malformed) packets so far.
    pub fn counts(&self) -> Result<(u64, u64), DataplaneError> {
        let err = |e: aya::maps::MapError| DataplaneError::Map {
            map: "REASONS",
            reason: e.to_string(),
        };
        let map = self.ebpf.map("REASONS").ok_or(DataplaneError::Map {
            map: "REASONS",
            reason: "missing".into(),
        })?;
        let reasons: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(err)?;
        let get = |r: Reason| -> Result<u64, DataplaneError> {
            Ok(reasons.get(&(r as u32), 0).map_err(err)?.iter().sum())
        };
        Ok((get(Reason::Decapsulated)?, get(Reason::DecapMalformed)?))
    }
}
