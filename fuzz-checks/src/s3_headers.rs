//! Feeds arbitrary request headers (one `name: value` per line) to
//! LightningStor's header policy for every S3 operation, and their values
//! to the parsers behind the honoured ones: checksum algorithms, types and
//! values, copy-source ranges, conditional-delete sizes and dates. Nothing
//! may panic; a header the policy lets through for an operation must be one
//! of S3's or a user-metadata header; a copy range must lie in its source.

use http::{HeaderMap, HeaderName, HeaderValue};
use lightningstor::checksum::{self, Algorithm, Kind};
use lightningstor::headers;
use lightningstor::request::Operation;

/// Headers that ask for what LightningStor does not do: a name, or a
/// prefix when it ends in `-`.
const NEVER: &[&str] = &[
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-",
    "x-amz-copy-source-server-side-encryption-",
    "x-amz-tagging",
    "x-amz-grant-",
    "x-amz-object-lock-",
    "x-amz-website-redirect-location",
    "x-amz-security-token",
];

fn never(name: &str) -> bool {
    NEVER
        .iter()
        .any(|e| name == *e || (e.ends_with('-') && name.starts_with(e)))
}

fn header_map(data: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in data.split(|&b| b == b'\n').take(64) {
        let Some(at) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..at]),
            HeaderValue::from_bytes(line[at + 1..].trim_ascii()),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    map
}

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let map = header_map(data);
    for op in Operation::ALL {
        if headers::check(op, &map).is_ok() {
            // What asks for protection we do not give is never let through.
            for name in map.keys() {
                let name = name.as_str();
                assert!(!never(name), "{name} passed for {op:?}");
            }
        }
    }
    let _ = headers::algorithm(&map, "x-amz-checksum-algorithm");
    if let Ok(Some((algorithm, text))) = headers::checksum_value(&map) {
        if let Ok(raw) = headers::decode_value(algorithm, &text) {
            assert_eq!(raw.len(), algorithm.digest_bytes());
            assert_eq!(checksum::encode(&raw), text.trim());
        }
    }
    for value in map.values() {
        let Ok(text) = value.to_str() else { continue };
        let _ = Algorithm::parse(text);
        let _ = Kind::parse(text);
        for size in [0u64, 1, 4096, u64::MAX] {
            if let Ok((start, end)) = lightningstor::multipart::copy_source_range(text, size) {
                assert!(start < end && end <= size, "{text} in {size}");
            }
        }
        let _ = lightningstor::object_ops::parse_http_seconds(text, "x");
    }
    // The CRC combination is checked against a direct CRC of the bytes.
    let (a, b) = data.split_at(data.len() / 2);
    for algorithm in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
        let parts = [
            (checksum::digest(algorithm, a), a.len() as u64),
            (checksum::digest(algorithm, b), b.len() as u64),
        ];
        assert_eq!(
            checksum::combine_full(algorithm, &parts),
            Some(checksum::digest(algorithm, data))
        );
    }
}
