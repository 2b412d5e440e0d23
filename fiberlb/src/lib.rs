//! FiberLB's userspace: the VIP/backend records and their checks
//! ([`spec`]), the Maglev lookup tables new flows pick their backend from,
//! the node's `[lb]` settings ([`config`]), and with feature `dataplane` the XDP loader and map programming
//! (`dataplane`), the backends' decapsulation program (`decap`), health
//! checks (`health`) and the edge agent (`agent`). The control plane uses
//! the records only. The kernel side lives in fiberlb/ebpf/
//! (docs/design/0008-fiberlb.md).

#[cfg(feature = "dataplane")]
pub mod agent;
pub mod config;
#[cfg(feature = "dataplane")]
pub mod dataplane;
#[cfg(feature = "dataplane")]
pub mod decap;
#[cfg(feature = "dataplane")]
pub mod health;
pub mod maglev;
pub mod spec;
