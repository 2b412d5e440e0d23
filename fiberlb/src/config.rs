//! The `[lb]` section of the node's config file: which interface FiberLB's
//! XDP program sits on and how it reaches the backends, with its defaults
//! and checks. This crate does not depend on `photon-core`: a refused value
//! is an [`InvalidKey`], which the binary's config maps to its own error.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// FiberLB, the XDP load balancer of a node with the `edge` role: which
/// interface its program sits on and how it reaches the backends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LbConfig {
    /// Interface the XDP program attaches to ("" = no data plane: the API
    /// keeps the records, nothing is steered or probed).
    pub interface: String,
    /// `native` (driver mode), `generic` (SKB mode) or `auto` (kernel's choice).
    pub xdp_mode: String,
    /// Outer source address of IPv4 tunnels (default: the interface's first IPv4).
    pub src_v4: Option<Ipv4Addr>,
    /// Outer source address of IPv6 tunnels (default: the interface's first global IPv6).
    pub src_v6: Option<Ipv6Addr>,
    /// Path MTU toward the backends (0 = the interface's MTU).
    pub mtu: u32,
    /// Find next hops with the kernel's FIB (`bpf_fib_lookup`).
    pub fib: bool,
    /// Static next-hop MAC ("aa:bb:cc:dd:ee:ff"; used when the FIB has no answer).
    pub neighbour_mac: Option<String>,
}

impl Default for LbConfig {
    fn default() -> Self {
        Self {
            interface: String::new(),
            xdp_mode: "native".into(),
            src_v4: None,
            src_v6: None,
            mtu: 0,
            fib: true,
            neighbour_mac: None,
        }
    }
}

/// A key of the section holds a value it refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {reason}")]
pub struct InvalidKey {
    /// `lb.<key>`.
    pub key: &'static str,
    pub reason: String,
}

impl LbConfig {
    /// The section's name in the file and in `PHOTON_LB_<KEY>`.
    pub const NAME: &'static str = "lb";

    /// Checks every value against its limit; the first violation is reported.
    pub fn validate(&self) -> Result<(), InvalidKey> {
        if !["native", "generic", "auto"].contains(&self.xdp_mode.as_str()) {
            return Err(InvalidKey {
                key: "lb.xdp_mode",
                reason: format!("`{}` (expected native, generic or auto)", self.xdp_mode),
            });
        }
        if self.mtu != 0 && !(1280..=65535).contains(&self.mtu) {
            return Err(InvalidKey {
                key: "lb.mtu",
                reason: "must be 0 (the interface's) or 1280 to 65535".into(),
            });
        }
        Ok(())
    }
}
