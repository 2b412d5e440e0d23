//! Records that data-plane shards read and check requests against, in a
//! leaf crate (no Raft, no RPC, no IAM crypto): S3 buckets and CoronaFS
//! volumes. The control plane's resource layer (`photon_control::resource`)
//! writes them; the followers decode them for every shard.
//!
//! Buckets: The record lives in the replicated KV under
//! `s3/bucket/<name>` (bucket names are global, as in S3); the control plane
//! writes it, every node's shards read a local view of it.

use serde::{Deserialize, Serialize};

pub mod node;
pub mod vm;
pub use node::*;
pub use vm::*;

/// Prefix of every bucket record in the KV.
pub const BUCKET_PREFIX: &str = "s3/bucket/";

/// Shortest and longest bucket names S3 allows.
pub const BUCKET_NAME_BYTES_MIN: usize = 3;
pub const BUCKET_NAME_BYTES_MAX: usize = 63;

/// The KV key of bucket `name`.
pub fn bucket_key(name: &str) -> String {
    format!("{BUCKET_PREFIX}{name}")
}

/// One bucket: who owns it and the id its objects are stored under (a new
/// id for every creation, so a bucket re-created under an old name never
/// sees objects left from before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub id: u64,
    pub tenant: String,
    pub project: String,
    pub region: String,
    pub created_ms: u64,
}

impl BucketRecord {
    /// The record's KV key and JSON value.
    pub fn to_kv(&self) -> (String, Vec<u8>) {
        (
            bucket_key(&self.name),
            serde_json::to_vec(self).unwrap_or_default(),
        )
    }

    /// Parses a record read from the KV; `None` when damaged.
    pub fn from_json(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// Whether `tenant`/`project` owns this bucket.
    pub fn owned_by(&self, tenant: &str, project: &str) -> bool {
        self.tenant == tenant && self.project == project
    }
}

/// A random 62-bit bucket id (never 0); the store uses the two top bits
/// for a bucket's hidden namespaces (multipart uploads and parts).
pub fn new_bucket_id() -> u64 {
    loop {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            // No entropy source: fall back to the clock, still unique enough
            // for ids that only need to differ between creations.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            return (now >> 2) | 1;
        }
        let id = u64::from_le_bytes(bytes) >> 2;
        if id != 0 {
            return id;
        }
    }
}

/// Why a bucket name is refused, in S3's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketNameError {
    #[error("bucket names must be between 3 and 63 characters long")]
    Length,
    #[error(
        "bucket names can consist only of lowercase letters, numbers, dots (.), and hyphens (-)"
    )]
    Characters,
    #[error("bucket names must begin and end with a letter or number")]
    Ends,
    #[error("bucket names must not contain two adjacent periods")]
    AdjacentPeriods,
    #[error("bucket names must not be formatted as an IP address")]
    IpAddress,
    #[error("bucket names must not have a hyphen next to a period")]
    DashNextToPeriod,
    #[error("bucket names must not start with xn--, sthree- or amzn-s3-demo-, nor end with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3")]
    ReservedAffix,
}

/// Checks `name` against S3's general-purpose bucket naming rules.
pub fn check_bucket_name(name: &str) -> Result<(), BucketNameError> {
    let bytes = name.as_bytes();
    if !(BUCKET_NAME_BYTES_MIN..=BUCKET_NAME_BYTES_MAX).contains(&bytes.len()) {
        return Err(BucketNameError::Length);
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
    {
        return Err(BucketNameError::Characters);
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge(bytes[0]) || !edge(bytes[bytes.len() - 1]) {
        return Err(BucketNameError::Ends);
    }
    if name.contains("..") {
        return Err(BucketNameError::AdjacentPeriods);
    }
    if name.contains("-.") || name.contains(".-") {
        return Err(BucketNameError::DashNextToPeriod);
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(BucketNameError::IpAddress);
    }
    if name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.starts_with("amzn-s3-demo-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
        || name.ends_with(".mrap")
        || name.ends_with("--x-s3")
        || name.ends_with("--table-s3")
    {
        return Err(BucketNameError::ReservedAffix);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["abc", "my-bucket", "a.b.c", "0bucket9", &"a".repeat(63)] {
            assert_eq!(check_bucket_name(good), Ok(()), "{good}");
        }
        let bad: &[(&str, BucketNameError)] = &[
            ("ab", BucketNameError::Length),
            (&"a".repeat(64), BucketNameError::Length),
            ("My-Bucket", BucketNameError::Characters),
            ("my_bucket", BucketNameError::Characters),
            ("-abc", BucketNameError::Ends),
            ("abc.", BucketNameError::Ends),
            ("a..b", BucketNameError::AdjacentPeriods),
            ("192.168.1.1", BucketNameError::IpAddress),
            ("xn--abc", BucketNameError::ReservedAffix),
            ("a-.b", BucketNameError::DashNextToPeriod),
            ("a.-b", BucketNameError::DashNextToPeriod),
            ("amzn-s3-demo-x", BucketNameError::ReservedAffix),
            ("abc.mrap", BucketNameError::ReservedAffix),
            ("abc--x-s3", BucketNameError::ReservedAffix),
            ("abc-s3alias", BucketNameError::ReservedAffix),
        ];
        for (name, error) in bad {
            assert_eq!(check_bucket_name(name).as_ref(), Err(error), "{name}");
        }
    }

    #[test]
    fn records_round_trip_and_ids_differ() {
        let record = BucketRecord {
            name: "photos".into(),
            id: new_bucket_id(),
            tenant: "acme".into(),
            project: "web".into(),
            region: "us-east-1".into(),
            created_ms: 7,
        };
        let (key, value) = record.to_kv();
        assert_eq!(key, "s3/bucket/photos");
        assert_eq!(BucketRecord::from_json(&value), Some(record.clone()));
        assert!(record.owned_by("acme", "web"));
        assert!(!record.owned_by("acme", "other"));
        assert_ne!(new_bucket_id(), new_bucket_id());
    }
}

/// Prefix of every volume record in the KV (CoronaFS).
pub const VOLUME_PREFIX: &str = "volume/";

/// Longest volume or snapshot name part.
pub const VOLUME_NAME_BYTES_MAX: usize = 63;

/// The KV key of volume (or snapshot `vol@snap`) `name` of a project.
pub fn volume_key(tenant: &str, project: &str, name: &str) -> String {
    format!("{VOLUME_PREFIX}{tenant}/{project}/{name}")
}

/// What a volume record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKind {
    /// A writable volume (possibly a clone of a snapshot).
    Volume,
    /// A read-only, frozen copy of a volume (`vol@snap`).
    Snapshot,
}

/// One CoronaFS volume or snapshot. `id` names its extent map in the owner
/// shard's store (a new id per creation); `shard` is that shard, on node
/// `node` (clones live with the snapshot they share extents with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub id: u64,
    pub tenant: String,
    pub project: String,
    pub kind: VolumeKind,
    pub size: u64,
    pub block_size: u32,
    /// The snapshot a clone was made from, or the volume a snapshot froze.
    #[serde(default)]
    pub parent: Option<String>,
    pub node: u64,
    pub shard: u32,
    pub created_ms: u64,
}

impl VolumeRecord {
    pub fn key(&self) -> String {
        volume_key(&self.tenant, &self.project, &self.name)
    }

    pub fn to_kv(&self) -> (String, Vec<u8>) {
        (self.key(), serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_json(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// The resource name IAM checks (`volume/<name>`).
    pub fn resource(&self) -> String {
        format!("volume/{}", self.name)
    }

    /// What an attach token for this volume opens.
    pub fn attach_resource(&self) -> String {
        format!("volume-id/{}", self.id)
    }
}

/// Parses what [`VolumeRecord::attach_resource`] wrote.
pub fn attach_resource_id(resource: &str) -> Option<u64> {
    resource.strip_prefix("volume-id/")?.parse().ok()
}

/// Checks a volume name, or a snapshot name `vol@snap`: each part 1-63 of
/// `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_volume_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('@').collect();
    if parts.len() > 2 {
        return Err(format!("volume name {name:?} has more than one '@'"));
    }
    for part in parts {
        if part.is_empty() || part.len() > VOLUME_NAME_BYTES_MAX {
            return Err(format!(
                "volume name part {part:?} must be 1-{VOLUME_NAME_BYTES_MAX} bytes"
            ));
        }
        let ok_first =
            part.as_bytes()[0].is_ascii_lowercase() || part.as_bytes()[0].is_ascii_digit();
        let ok_rest = part.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if !ok_first || !ok_rest {
            return Err(format!(
                "volume name {name:?} may hold a-z, 0-9, '.', '_', '-' (starting with a letter or digit)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod volume_tests {
    use super::*;

    #[test]
    fn volume_names_and_records() {
        assert!(check_volume_name("db-1").is_ok());
        assert!(check_volume_name("db-1@before.upgrade").is_ok());
        assert!(check_volume_name("a@b@c").is_err());
        assert!(check_volume_name("Upper").is_err());
        assert!(check_volume_name("").is_err());
        assert!(check_volume_name("-x").is_err());
        let r = VolumeRecord {
            name: "db".into(),
            id: 42,
            tenant: "acme".into(),
            project: "web".into(),
            kind: VolumeKind::Volume,
            size: 1 << 30,
            block_size: 4096,
            parent: None,
            node: 1,
            shard: 0,
            created_ms: 5,
        };
        let (key, value) = r.to_kv();
        assert_eq!(key, "volume/acme/web/db");
        assert_eq!(VolumeRecord::from_json(&value), Some(r.clone()));
        assert_eq!(attach_resource_id(&r.attach_resource()), Some(42));
    }
}
