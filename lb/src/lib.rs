//! FiberLB's userspace: the Maglev lookup tables new flows pick their
//! backend from, the XDP data plane's loader and map programming
//! ([`dataplane`]), and the backends' decapsulation program ([`decap`]).
//! The kernel side lives in ebpf/ (docs/design/0008-fiberlb.md).

pub mod dataplane;
pub mod decap;
pub mod maglev;
pub mod spec;
