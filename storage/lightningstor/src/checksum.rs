//! S3's additional checksums (`x-amz-checksum-*`): the algorithms we
//! support, hashing a body with one, what is stored with an object, and the
//! multipart forms: COMPOSITE (a checksum of the parts' checksums, `-N`
//! appended) and FULL_OBJECT (the CRC of the whole object, combined from the
//! parts' CRCs without reading them again).
//!
//! Algorithms S3 defines that are not here (MD5, SHA512, XXHASH*) are
//! refused by the request-header policy (`headers.rs`), never ignored.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

/// A checksum algorithm S3 defines and LightningStor implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// As S3 spells it in `x-amz-checksum-algorithm` and XML element names.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    /// The request and response header that carries a value.
    pub fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// Parses a name as clients send it (any case).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The algorithm whose value header is `header` (lowercase).
    pub fn from_header(header: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.header() == header)
    }

    pub fn digest_bytes(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    /// CRCs can be combined over concatenation (FULL_OBJECT multipart).
    pub fn is_crc(self) -> bool {
        matches!(
            self,
            Algorithm::Crc32 | Algorithm::Crc32c | Algorithm::Crc64Nvme
        )
    }
}

/// A running checksum of one algorithm.
pub enum Hasher {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc64fast_nvme::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
            Algorithm::Crc32c => Hasher::Crc32c(0),
            Algorithm::Crc64Nvme => Hasher::Crc64Nvme(crc64fast_nvme::Digest::new()),
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(data),
            Hasher::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Hasher::Crc64Nvme(d) => d.write(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    /// The raw digest (CRCs big-endian, as S3 encodes them).
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            Hasher::Crc32c(c) => c.to_be_bytes().to_vec(),
            Hasher::Crc64Nvme(d) => d.sum64().to_be_bytes().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// The raw digest of `data`.
pub fn digest(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    let mut hasher = Hasher::new(algorithm);
    hasher.update(data);
    hasher.finish()
}

pub fn encode(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Decodes a header value into a raw digest of the algorithm's length.
pub fn decode(algorithm: Algorithm, text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .filter(|raw| raw.len() == algorithm.digest_bytes())
}

/// `x-amz-checksum-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    FullObject,
    Composite,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::FullObject => "FULL_OBJECT",
            Kind::Composite => "COMPOSITE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "FULL_OBJECT" => Some(Kind::FullObject),
            "COMPOSITE" => Some(Kind::Composite),
            _ => None,
        }
    }
}

/// The checksum kept with an object or a part and returned with
/// `x-amz-checksum-mode: ENABLED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub algorithm: Algorithm,
    /// Base64 of the digest; a COMPOSITE value ends in `-<parts>`.
    pub value: String,
    pub kind: Kind,
}

impl Stored {
    pub fn full(algorithm: Algorithm, raw: &[u8]) -> Self {
        Self {
            algorithm,
            value: encode(raw),
            kind: Kind::FullObject,
        }
    }

    /// The raw digest of a FULL_OBJECT value.
    pub fn raw(&self) -> Option<Vec<u8>> {
        match self.kind {
            Kind::FullObject => decode(self.algorithm, &self.value),
            Kind::Composite => None,
        }
    }
}

/// COMPOSITE: the algorithm over the concatenated raw part digests, then
/// `-<number of parts>`.
pub fn composite(algorithm: Algorithm, part_digests: &[Vec<u8>]) -> String {
    let mut hasher = Hasher::new(algorithm);
    for raw in part_digests {
        hasher.update(raw);
    }
    format!("{}-{}", encode(&hasher.finish()), part_digests.len())
}

/// FULL_OBJECT from parts: the CRC of the concatenation, from each part's
/// raw CRC and length. `None` for a non-CRC algorithm or a damaged digest.
pub fn combine_full(algorithm: Algorithm, parts: &[(Vec<u8>, u64)]) -> Option<Vec<u8>> {
    let (poly, width): (u64, u32) = match algorithm {
        Algorithm::Crc32 => (0xEDB8_8320u64, 32),
        Algorithm::Crc32c => (0x82F6_3B78u64, 32),
        Algorithm::Crc64Nvme => (0x9A6C_9329_AC4B_C9B5u64, 64),
        Algorithm::Sha1 | Algorithm::Sha256 => return None,
    };
    let bytes = (width / 8) as usize;
    let mut total: Option<u64> = None;
    for (raw, len) in parts {
        if raw.len() != bytes {
            return None;
        }
        let crc = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        total = Some(match total {
            None => crc,
            Some(before) => crc_combine(poly, width, before, crc, *len),
        });
    }
    // The CRC of nothing is 0 for every algorithm here.
    let value = total.unwrap_or(0);
    Some(value.to_be_bytes()[8 - bytes..].to_vec())
}

/// `a * b mod P` for a reflected CRC of `width` bits with reflected
/// polynomial `poly` (bit `width - 1` is x^0).
fn multiply_mod(poly: u64, width: u32, a: u64, mut b: u64) -> u64 {
    let mut m = 1u64 << (width - 1);
    let mut product = 0u64;
    loop {
        if a & m != 0 {
            product ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        if m == 0 {
            break;
        }
        b = if b & 1 != 0 { (b >> 1) ^ poly } else { b >> 1 };
    }
    product
}

/// `x^(8 * len) mod P`.
fn x_pow_8n(poly: u64, width: u32, mut len: u64) -> u64 {
    // x^1, squared once per bit of the exponent 8 * len.
    let mut square = 1u64 << (width - 2);
    for _ in 0..3 {
        square = multiply_mod(poly, width, square, square);
    }
    let mut result = 1u64 << (width - 1);
    while len != 0 {
        if len & 1 != 0 {
            result = multiply_mod(poly, width, square, result);
        }
        len >>= 1;
        square = multiply_mod(poly, width, square, square);
    }
    result
}

/// The CRC of `A || B` from `crc(A)`, `crc(B)` and `len(B)`, for CRCs whose
/// initial value and final xor are both all ones (zlib's `crc32_combine`).
fn crc_combine(poly: u64, width: u32, crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    multiply_mod(poly, width, x_pow_8n(poly, width, len_b), crc_a) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        // Check values of the CRC catalogue ("123456789") and the SHA-1 of "abc".
        let check = b"123456789";
        assert_eq!(
            digest(Algorithm::Crc32, check),
            0xCBF4_3926u32.to_be_bytes()
        );
        assert_eq!(
            digest(Algorithm::Crc32c, check),
            0xE306_9283u32.to_be_bytes()
        );
        assert_eq!(
            digest(Algorithm::Crc64Nvme, check),
            0xAE8B_1486_0A79_9888u64.to_be_bytes()
        );
        assert_eq!(
            hex::encode(digest(Algorithm::Sha1, b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(digest(Algorithm::Sha256, b"").len(), 32);
    }

    #[test]
    fn names_and_headers_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::parse(&a.name().to_lowercase()), Some(a));
            assert_eq!(Algorithm::from_header(a.header()), Some(a));
            assert_eq!(digest(a, b"x").len(), a.digest_bytes());
        }
        assert_eq!(Algorithm::parse("SHA512"), None);
    }

    #[test]
    fn composite_is_the_digest_of_digests() {
        let parts = vec![
            digest(Algorithm::Sha256, b"a"),
            digest(Algorithm::Sha256, b"b"),
        ];
        let mut joined = parts[0].clone();
        joined.extend_from_slice(&parts[1]);
        assert_eq!(
            composite(Algorithm::Sha256, &parts),
            format!("{}-2", encode(&digest(Algorithm::Sha256, &joined)))
        );
    }

    proptest! {
        #[test]
        fn combined_crcs_equal_the_crc_of_the_whole(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..5)
        ) {
            let whole: Vec<u8> = pieces.concat();
            for a in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
                let parts: Vec<(Vec<u8>, u64)> =
                    pieces.iter().map(|p| (digest(a, p), p.len() as u64)).collect();
                prop_assert_eq!(combine_full(a, &parts), Some(digest(a, &whole)));
            }
        }
    }
}
