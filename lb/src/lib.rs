//! FiberLB's userspace pieces (issue 7, in progress). So far: the Maglev
//! lookup table a VIP's new flows pick their backend from. The XDP program,
//! the map programming agent and the health checks come next
//! (docs/design/0008-fiberlb.md).

pub mod maglev;
