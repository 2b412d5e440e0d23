//! Tenant-owned resources that data-plane shards check requests against:
//! S3 buckets. The record lives in the replicated KV under
//! `s3/bucket/<name>` (bucket names are global, as in S3); the control plane
//! writes it, every node's shards read a local view of it.

use serde::{Deserialize, Serialize};

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
    #[error("bucket names must not start with xn-- or sthree- or end with -s3alias or --ol-s3")]
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
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(BucketNameError::IpAddress);
    }
    if name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
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
