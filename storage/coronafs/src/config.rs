//! The `[nbd]` section of the node's config file: where CoronaFS serves and
//! how large a shard's volume journal grows, with its defaults and checks.

use std::net::SocketAddr;

use photon_core::config::{ConfigError, Section};
use serde::{Deserialize, Serialize};

/// CoronaFS, the NBD volume service of a node with the `storage` role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NbdConfig {
    /// Address of the NBD endpoint (every shard serves it).
    pub listen: SocketAddr,
    /// A shard's volume journal is checkpointed and restarted past this
    /// many MiB.
    pub journal_mib: u64,
}

impl Default for NbdConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 10809)),
            journal_mib: 64,
        }
    }
}

impl Section for NbdConfig {
    const NAME: &'static str = "nbd";

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=4096).contains(&self.journal_mib) {
            return Err(ConfigError::invalid(
                "nbd.journal_mib",
                "must be between 1 and 4096",
            ));
        }
        Ok(())
    }
}
