//! Settings and limits of the S3 service: its `[s3]` section of the node's
//! config file ([`S3Config`]), and what every shard's service is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use photon_core::config::{ConfigError, Section};
use photon_core::http::HttpLimits;
use photon_iam::Directory;
use photon_object::StoreConfig;
use serde::{Deserialize, Serialize};

use crate::catalog::S3Link;

/// LightningStor, the S3 service of a node with the `storage` role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Address of the S3 endpoint (every shard serves it).
    pub listen: SocketAddr,
    /// The region clients sign requests for.
    pub region: String,
    /// Domains for virtual-host-style requests (`<bucket>.<domain>`).
    pub domains: Vec<String>,
    /// Size of each segment file of the object store, in MiB.
    pub segment_mib: u64,
    /// Seconds that chunks of a replaced or deleted object stay readable
    /// for GETs already streaming them.
    pub garbage_grace_s: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            region: "us-east-1".into(),
            domains: Vec::new(),
            segment_mib: 256,
            garbage_grace_s: 30,
        }
    }
}

impl Section for S3Config {
    const NAME: &'static str = "s3";

    fn validate(&self) -> Result<(), ConfigError> {
        if !(16..=4096).contains(&self.segment_mib) {
            return Err(ConfigError::invalid(
                "s3.segment_mib",
                "must be between 16 and 4096",
            ));
        }
        if self.region.is_empty() || self.region.len() > 32 {
            return Err(ConfigError::invalid(
                "s3.region",
                "must be 1 to 32 characters",
            ));
        }
        Ok(())
    }
}

/// S3's limits, and ours, in one place.
#[derive(Debug, Clone)]
pub struct S3Limits {
    /// Chunk size of objects too large to keep inline.
    pub chunk_bytes: u64,
    /// Objects up to this size live inline in their index record.
    pub inline_bytes_max: u64,
    /// Largest single PUT (S3: 5 GiB).
    pub put_bytes_max: u64,
    /// Largest object (S3: 5 TiB).
    pub object_bytes_max: u64,
    /// Smallest part but the last (S3: 5 MiB).
    pub part_bytes_min: u64,
    /// Largest part (S3: 5 GiB).
    pub part_bytes_max: u64,
    /// Highest part number (S3: 10,000).
    pub parts_max: u32,
    /// Longest key (S3: 1024 bytes).
    pub key_bytes_max: usize,
    /// User metadata, names and values (S3: 2 KiB).
    pub user_meta_bytes_max: usize,
    /// Largest copy source (S3: 5 GiB).
    pub copy_bytes_max: u64,
    /// Keys one DeleteObjects may name (S3: 1000).
    pub delete_objects_max: usize,
    /// Keys one listing returns at most (S3: 1000).
    pub list_keys_max: usize,
    /// Largest XML request body.
    pub xml_body_bytes_max: u64,
    /// Chunk writes one PUT keeps in flight.
    pub chunk_writes_in_flight: usize,
    /// Chunk reads one GET keeps ahead of the client.
    pub chunk_reads_ahead: usize,
    /// How long chunks of an overwritten or deleted object stay readable
    /// (for GETs that started before), before they are freed.
    pub garbage_grace: Duration,
    /// A request body that sends nothing for this long is cut
    /// (RequestTimeout), and one slower than `body_rate_min_bytes_per_s`
    /// on average after this long too.
    pub body_idle_timeout: Duration,
    pub body_rate_min_bytes_per_s: u64,
}

impl Default for S3Limits {
    fn default() -> Self {
        Self {
            chunk_bytes: 8 << 20,
            inline_bytes_max: 1 << 20,
            put_bytes_max: 5 << 30,
            object_bytes_max: 5 << 40,
            part_bytes_min: 5 << 20,
            part_bytes_max: 5 << 30,
            parts_max: 10_000,
            key_bytes_max: 1024,
            user_meta_bytes_max: 2048,
            copy_bytes_max: 5 << 30,
            delete_objects_max: 1000,
            list_keys_max: 1000,
            xml_body_bytes_max: 2 << 20,
            chunk_writes_in_flight: 4,
            chunk_reads_ahead: 3,
            garbage_grace: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            body_rate_min_bytes_per_s: 1024,
        }
    }
}

/// Everything every shard's S3 service is given.
#[derive(Debug, Clone)]
pub struct S3Params {
    pub listen: SocketAddr,
    /// The region clients sign for.
    pub region: String,
    /// Domains for virtual-host-style addressing (`<bucket>.<domain>`).
    pub domains: Vec<String>,
    /// The store's settings; shard `i` keeps its files in `dir/shard-<i>`.
    pub store: StoreConfig,
    pub directory: Arc<Directory>,
    /// The typed link to the control plane (bucket requests up, bucket
    /// changes and emptiness queries down).
    pub control: S3Link,
    pub limits: S3Limits,
    pub http: HttpLimits,
}
