//! What LightningStor keeps per object in the store's opaque `meta` bytes:
//! size, ETag, headers, user metadata and where the data is.
//!
//! Small objects keep their bytes inline in the index record on the shard
//! that owns the key. Larger ones are split into chunks of `chunk_bytes`; a
//! chunk `i` of blob `b` lives on shard `chunk_shard(b, i)`, so one large PUT
//! or GET spreads over every core. A multipart object is the concatenation of
//! its parts' blobs, without copying.

use serde::{Deserialize, Serialize};

use crate::checksum::{Algorithm, Kind, Stored};

/// One blob: `size` bytes in `ceil(size / chunk_bytes)` chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub blob: u64,
    pub size: u64,
    pub chunk_bytes: u64,
}

impl BlobRef {
    pub fn chunks(&self) -> u32 {
        if self.size == 0 {
            return 0;
        }
        self.size.div_ceil(self.chunk_bytes.max(1)) as u32
    }

    /// (chunk index, offset in chunk, length) of the chunks covering
    /// `[start, end)` of this blob.
    pub fn chunk_ranges(&self, start: u64, end: u64) -> Vec<(u32, u64, u64)> {
        let mut out = Vec::new();
        let step = self.chunk_bytes.max(1);
        let mut at = start;
        while at < end.min(self.size) {
            let index = at / step;
            let offset = at % step;
            let len = (step - offset).min(end.min(self.size) - at);
            out.push((index as u32, offset, len));
            at += len;
        }
        out
    }
}

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// In the index record itself.
    Inline,
    /// The concatenation of these blobs (one for a PUT, one per part for a
    /// multipart upload).
    Blobs(Vec<BlobRef>),
}

/// An object's (or a multipart part's) metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// Without quotes: hex MD5, or `<hex>-<parts>` for multipart objects.
    pub etag: String,
    pub last_modified_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// `x-amz-meta-*` pairs, names lowercased without the prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<(String, String)>,
    pub layout: Layout,
    /// For multipart objects: the size of each part, for `partNumber` reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_sizes: Vec<u64>,
    /// The additional checksum verified or computed when it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Stored>,
    /// The multipart upload that made this object, so a retried
    /// CompleteMultipartUpload can answer as the first one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

impl ObjectMeta {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// The quoted ETag as it goes on the wire.
    pub fn quoted_etag(&self) -> String {
        format!("\"{}\"", self.etag)
    }

    /// Every chunk this object's data occupies: (blob, index).
    pub fn chunks(&self) -> Vec<(u64, u32)> {
        match &self.layout {
            Layout::Inline => Vec::new(),
            Layout::Blobs(blobs) => blobs
                .iter()
                .flat_map(|b| (0..b.chunks()).map(move |i| (b.blob, i)))
                .collect(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A multipart upload in progress (stored under the bucket's uploads
/// namespace, key `<object key>\0<upload id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: u64,
    pub principal: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub user: Vec<(String, String)>,
    /// `x-amz-checksum-algorithm` and `-type` of CreateMultipartUpload:
    /// every part gets this checksum, and the object its combination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<(Algorithm, Kind)>,
}

impl UploadMeta {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The store "bucket" of a bucket's objects, multipart uploads and parts.
/// Bucket ids are 62-bit, so the two top bits name the namespace.
pub fn objects_ns(bucket: u64) -> u64 {
    bucket
}
pub fn uploads_ns(bucket: u64) -> u64 {
    bucket | (1 << 62)
}
pub fn parts_ns(bucket: u64) -> u64 {
    bucket | (1 << 63)
}

/// Key of an upload record: the object key, a NUL, the upload id (object
/// keys never contain NUL, so uploads sort by key, then id).
pub fn upload_key(key: &str, upload_id: &str) -> String {
    format!("{key}\0{upload_id}")
}

/// Key of a part record: the upload id, a NUL, the part number in 5 digits.
pub fn part_key(upload_id: &str, part: u32) -> String {
    format!("{upload_id}\0{part:05}")
}

/// The shard that holds chunk `index` of `blob`.
pub fn chunk_shard(blob: u64, index: u32, shards: usize) -> usize {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&blob.to_le_bytes());
    key[8..].copy_from_slice(&index.to_le_bytes());
    photon_core::routing::owner_of(&key, shards)
}

/// The shard that owns `key` in store bucket `ns`.
pub fn key_shard(ns: u64, key: &str, shards: usize) -> usize {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&ns.to_le_bytes());
    hasher.update(key.as_bytes());
    photon_core::routing::jump_consistent_hash(hasher.digest(), shards)
}

/// A random id for a blob or an upload.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return now ^ 0x9e37_79b9_7f4a_7c15;
    }
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_cover_a_range_exactly() {
        let blob = BlobRef {
            blob: 1,
            size: 25,
            chunk_bytes: 10,
        };
        assert_eq!(blob.chunks(), 3);
        assert_eq!(
            blob.chunk_ranges(0, 25),
            vec![(0, 0, 10), (1, 0, 10), (2, 0, 5)]
        );
        assert_eq!(blob.chunk_ranges(8, 12), vec![(0, 8, 2), (1, 0, 2)]);
        assert_eq!(blob.chunk_ranges(24, 100), vec![(2, 4, 1)]);
        assert!(blob.chunk_ranges(25, 30).is_empty());
        let empty = BlobRef {
            blob: 2,
            size: 0,
            chunk_bytes: 10,
        };
        assert_eq!(empty.chunks(), 0);
    }

    #[test]
    fn meta_round_trips() {
        let meta = ObjectMeta {
            size: 3,
            etag: "abc".into(),
            last_modified_ms: 5,
            headers: vec![("content-type".into(), "text/plain".into())],
            user: vec![("color".into(), "blue".into())],
            layout: Layout::Blobs(vec![BlobRef {
                blob: 9,
                size: 3,
                chunk_bytes: 8,
            }]),
            part_sizes: vec![],
            checksum: None,
            upload_id: Some("u".into()),
        };
        assert_eq!(ObjectMeta::decode(&meta.encode()), Some(meta.clone()));
        assert_eq!(meta.chunks(), vec![(9, 0)]);
        assert_eq!(meta.header("Content-Type"), Some("text/plain"));
        assert_eq!(meta.quoted_etag(), "\"abc\"");
    }
}
