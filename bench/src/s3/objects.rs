//! The objects `bench s3` writes and reads back, and how a GET body is checked.
//!
//! Every object of one size shares a prefix of pseudo-random bytes (so that
//! no server can compress it away) and ends with a 64-byte stamp that names
//! its key and size: a server that returns another object, a short body or
//! bytes of the wrong place cannot look fast. A PUT body is the shared
//! prefix plus the stamp, sent as two frames without copying; its SHA-256
//! continues from the prefix's precomputed hash state, so signing the real
//! payload hash costs one block per request instead of the whole body.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};

use crate::disk::SplitMix64;

/// Bytes of the per-object stamp at the end of every object.
pub const STAMP_BYTES: usize = 64;
/// Smallest object: the stamp alone.
pub const OBJECT_BYTES_MIN: u64 = STAMP_BYTES as u64;
/// Largest object the benchmark writes (it holds one prefix per size in memory).
pub const OBJECT_BYTES_MAX: u64 = 1 << 30;
/// Bytes compared at the start of every received frame when not checking
/// every byte (`--verify-full`).
pub const SPOT_CHECK_BYTES: usize = 64;

/// The objects of one size: `keys` keys sharing one prefix.
#[derive(Debug)]
pub struct ObjectSet {
    pub size: usize,
    pub keys: u64,
    prefix: Bytes,
    /// SHA-256 state after the prefix, when payloads of this size are signed.
    prefix_hash: Option<Sha256>,
}

impl ObjectSet {
    /// Builds the prefix (and its hash state when `sign_payload`).
    pub fn new(size: usize, keys: u64, sign_payload: bool) -> Self {
        assert!((OBJECT_BYTES_MIN..=OBJECT_BYTES_MAX).contains(&(size as u64)));
        assert!(keys > 0);
        let prefix = random_bytes(size - STAMP_BYTES, size as u64);
        let prefix_hash = sign_payload.then(|| {
            let mut hasher = Sha256::new();
            hasher.update(&prefix);
            hasher
        });
        Self {
            size,
            keys,
            prefix: Bytes::from(prefix),
            prefix_hash,
        }
    }

    /// The object key of number `n` (no character that needs escaping).
    pub fn key(&self, n: u64) -> String {
        format!("bench/{}/{n:010}", self.size)
    }

    /// The last 64 bytes of object `n`: its key number and size in ASCII.
    pub fn stamp(&self, n: u64) -> [u8; STAMP_BYTES] {
        let mut stamp = [b'.'; STAMP_BYTES];
        // 17 + 20 + 6 + 20 = 63 bytes, then the newline.
        let text = format!("photon-bench key {n:020} size {:020}", self.size);
        debug_assert!(text.len() < STAMP_BYTES);
        stamp[..text.len()].copy_from_slice(text.as_bytes());
        stamp[STAMP_BYTES - 1] = b'\n';
        stamp
    }

    /// The body of a PUT of object `n`.
    pub fn body(&self, n: u64) -> ObjectBody {
        ObjectBody {
            parts: [
                Some(self.prefix.clone()),
                Some(Bytes::copy_from_slice(&self.stamp(n))),
            ],
        }
    }

    /// Hex SHA-256 of object `n`, when payloads of this size are signed.
    pub fn sha256_hex(&self, n: u64) -> Option<String> {
        let mut hasher = self.prefix_hash.clone()?;
        hasher.update(self.stamp(n));
        Some(hex::encode(hasher.finalize()))
    }

    /// A checker of a GET body of object `n`.
    pub fn checker(&self, n: u64, full: bool) -> BodyCheck<'_> {
        BodyCheck {
            set: self,
            stamp: self.stamp(n),
            received: 0,
            full,
        }
    }
}

/// `len` pseudo-random bytes, the same for the same seed.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut random = SplitMix64(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&random.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Checks a GET body frame by frame: its length, the whole stamp, and the
/// prefix (every byte, or the first bytes of every frame).
#[derive(Debug)]
pub struct BodyCheck<'a> {
    set: &'a ObjectSet,
    stamp: [u8; STAMP_BYTES],
    received: usize,
    full: bool,
}

impl BodyCheck<'_> {
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        let start = self.received;
        let end = start + chunk.len();
        if end > self.set.size {
            return Err(format!(
                "body longer than the {} bytes written",
                self.set.size
            ));
        }
        let prefix_len = self.set.prefix.len();
        if start < prefix_len {
            let upto = end.min(prefix_len);
            let checked_end = if self.full {
                upto
            } else {
                upto.min(start + SPOT_CHECK_BYTES)
            };
            if chunk[..checked_end - start] != self.set.prefix[start..checked_end] {
                return Err(format!(
                    "body differs from what was written near byte {start}"
                ));
            }
        }
        if end > prefix_len {
            let from = start.max(prefix_len);
            if chunk[from - start..] != self.stamp[from - prefix_len..end - prefix_len] {
                return Err("body ends with another object's stamp (wrong key?)".into());
            }
        }
        self.received = end;
        Ok(())
    }

    pub fn finish(&self) -> Result<(), String> {
        if self.received != self.set.size {
            return Err(format!(
                "body of {} bytes, {} were written",
                self.received, self.set.size
            ));
        }
        Ok(())
    }
}

/// A request body of up to two shared buffers, with its exact length.
#[derive(Debug, Default)]
pub struct ObjectBody {
    parts: [Option<Bytes>; 2],
}

impl ObjectBody {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn len(&self) -> u64 {
        self.parts.iter().flatten().map(|b| b.len() as u64).sum()
    }
}

impl Body for ObjectBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = this.parts.iter_mut().find_map(Option::take);
        Poll::Ready(next.map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.iter().all(Option::is_none)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_bytes(mut body: ObjectBody) -> Vec<u8> {
        let mut out = Vec::new();
        for part in body.parts.iter_mut().flatten() {
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn a_body_is_prefix_then_stamp_and_hashes_as_a_whole() {
        let set = ObjectSet::new(4096, 10, true);
        let body = set.body(7);
        assert_eq!(body.len(), 4096);
        let bytes = body_bytes(body);
        assert!(bytes.ends_with(&set.stamp(7)));
        assert_eq!(
            set.sha256_hex(7).unwrap(),
            hex::encode(Sha256::digest(&bytes))
        );
        assert_ne!(set.sha256_hex(7), set.sha256_hex(8));
        assert!(ObjectSet::new(4096, 1, false).sha256_hex(0).is_none());
    }

    #[test]
    fn stamps_are_unique_per_key_and_size() {
        let small = ObjectSet::new(4096, 10, false);
        let large = ObjectSet::new(8192, 10, false);
        assert_ne!(small.stamp(1), small.stamp(2));
        assert_ne!(small.stamp(1), large.stamp(1));
        assert_eq!(small.key(42), "bench/4096/0000000042");
    }

    #[test]
    fn the_checker_accepts_the_object_in_any_framing() {
        let set = ObjectSet::new(10_000, 4, false);
        let bytes = body_bytes(set.body(3));
        for frame in [1, 63, 64, 100, 4096, 10_000] {
            for full in [false, true] {
                let mut check = set.checker(3, full);
                for chunk in bytes.chunks(frame) {
                    check.feed(chunk).unwrap();
                }
                check.finish().unwrap();
            }
        }
    }

    #[test]
    fn the_checker_rejects_short_long_wrong_key_and_corrupt_bodies() {
        let set = ObjectSet::new(10_000, 4, false);
        let bytes = body_bytes(set.body(3));
        let mut check = set.checker(3, false);
        check.feed(&bytes[..9_999]).unwrap();
        assert!(check.finish().is_err());
        assert!(set
            .checker(3, false)
            .feed(&[bytes.clone(), vec![0]].concat())
            .is_err());
        assert!(set.checker(2, false).feed(&bytes).is_err());
        let mut corrupt = bytes.clone();
        corrupt[5_000] ^= 1;
        assert!(set.checker(3, true).feed(&corrupt).is_err());
        // A spot check only looks at the start of each frame.
        assert!(set.checker(3, false).feed(&corrupt).is_ok());
        corrupt[10] ^= 1;
        assert!(set.checker(3, false).feed(&corrupt).is_err());
    }
}
