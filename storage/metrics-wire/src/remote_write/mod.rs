//! Prometheus remote write 1.0 (`prometheus.WriteRequest`) and 2.0
//! (`io.prometheus.write.v2.Request`): content negotiation, snappy, the
//! protobuf messages (written as prost structs with the specs' field tags)
//! and their checks.

mod scan;
mod v1;
mod v2;

use crate::error::WireError;
use crate::labels::quoted;
use crate::{Limits, WriteBatch};

pub use v1::encode as encode_remote_write_v1;
pub use v2::encode as encode_remote_write_v2;

/// Which protobuf message a remote-write body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteWriteVersion {
    V1,
    V2,
}

/// The media type both versions share; the version is its `proto` parameter.
const PROTOBUF_MEDIA_TYPE: &str = "application/x-protobuf";
const PROTO_V1: &str = "prometheus.WriteRequest";
const PROTO_V2: &str = "io.prometheus.write.v2.Request";

/// From the Content-Type header (absent or application/x-protobuf = v1;
/// ...;proto=prometheus.WriteRequest = v1;
/// ...;proto=io.prometheus.write.v2.Request = v2; anything else 415) and
/// Content-Encoding (snappy; anything else 415).
///
/// An absent Content-Encoding is taken as snappy, as Prometheus' own
/// receiver does so that early 1.0 senders keep working; the body is then
/// decoded as snappy and refused if it is not.
pub fn remote_write_version(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<RemoteWriteVersion, WireError> {
    let version = match content_type.map(str::trim) {
        None | Some("") => RemoteWriteVersion::V1,
        Some(content_type) => version_of(content_type)?,
    };
    match content_encoding.map(str::trim) {
        None | Some("") => {}
        Some(encoding) if encoding.eq_ignore_ascii_case("snappy") => {}
        Some(encoding) => {
            return Err(WireError::UnsupportedContentEncoding(quoted(encoding)));
        }
    }
    Ok(version)
}

fn version_of(content_type: &str) -> Result<RemoteWriteVersion, WireError> {
    let unsupported = || WireError::UnsupportedContentType(quoted(content_type));
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(PROTOBUF_MEDIA_TYPE) {
        return Err(unsupported());
    }
    for parameter in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = parameter.split_once('=').ok_or_else(unsupported)?;
        if name.trim().eq_ignore_ascii_case("proto") {
            return match value.trim().trim_matches('"') {
                PROTO_V1 => Ok(RemoteWriteVersion::V1),
                PROTO_V2 => Ok(RemoteWriteVersion::V2),
                _ => Err(unsupported()),
            };
        }
    }
    // No proto parameter: 1.0, as the 2.0 spec requires for compatibility.
    Ok(RemoteWriteVersion::V1)
}

/// Decodes a snappy-compressed remote-write body. Every series is checked;
/// the first problem refuses the whole request.
pub fn decode_remote_write(
    version: RemoteWriteVersion,
    body: &[u8],
    limits: &Limits,
) -> Result<WriteBatch, WireError> {
    let decoded = decompress(body, limits)?;
    match version {
        RemoteWriteVersion::V1 => v1::decode(&decoded, limits),
        RemoteWriteVersion::V2 => v2::decode(&decoded, limits),
    }
}

fn decompress(body: &[u8], limits: &Limits) -> Result<Vec<u8>, WireError> {
    if body.len() > limits.body_bytes_max {
        return Err(WireError::BodyTooLarge {
            bytes: body.len(),
            max: limits.body_bytes_max,
        });
    }
    // The length in the snappy header, read before allocating for it.
    let bytes = snap::raw::decompress_len(body).map_err(WireError::Snappy)?;
    if bytes > limits.decoded_bytes_max {
        return Err(WireError::DecodedTooLarge {
            bytes,
            max: limits.decoded_bytes_max,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(WireError::Snappy)
}

/// Prometheus' metric type names, by their number in both versions' enums
/// (the same numbering in 1.0's `MetricType` and 2.0's `Metadata.MetricType`).
fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "counter",
        2 => "gauge",
        3 => "histogram",
        4 => "gaugehistogram",
        5 => "summary",
        6 => "info",
        7 => "stateset",
        _ => "unknown",
    }
}

/// snappy refuses only inputs over about 4 GiB; an encoder's input is the
/// caller's own series (tests, the load generator), never the network's.
fn compress(message: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(message)
        .expect("a remote-write request under 4 GiB compresses")
}

#[cfg(test)]
mod tests {
    use super::*;
    use RemoteWriteVersion::{V1, V2};

    #[test]
    fn content_negotiation_follows_the_specs() {
        let v = |t, e| remote_write_version(t, e).map_err(|e| e.status());
        assert_eq!(v(None, Some("snappy")), Ok(V1));
        assert_eq!(v(Some("application/x-protobuf"), None), Ok(V1));
        assert_eq!(
            v(
                Some("application/x-protobuf;proto=prometheus.WriteRequest"),
                Some("snappy")
            ),
            Ok(V1)
        );
        assert_eq!(
            v(
                Some("application/x-protobuf; proto=io.prometheus.write.v2.Request"),
                Some("Snappy")
            ),
            Ok(V2)
        );
        assert_eq!(v(Some("application/x-protobuf;charset=x"), None), Ok(V1));
        assert_eq!(v(Some("application/json"), None), Err(415));
        assert_eq!(v(Some("application/x-protobuf;proto=foo"), None), Err(415));
        assert_eq!(v(Some("application/x-protobuf;junk"), None), Err(415));
        assert_eq!(v(None, Some("gzip")), Err(415));
    }

    #[test]
    fn bodies_over_the_limits_are_refused_before_decompression() {
        let limits = Limits {
            body_bytes_max: 64,
            decoded_bytes_max: 100,
            ..Limits::default()
        };
        let e = decode_remote_write(V1, &[0; 65], &limits).unwrap_err();
        assert!(matches!(e, WireError::BodyTooLarge { bytes: 65, max: 64 }));
        // A header claiming 1 MiB, with no data behind it.
        let e = decode_remote_write(V1, &[0x80, 0x80, 0x40], &limits).unwrap_err();
        assert!(matches!(
            e,
            WireError::DecodedTooLarge {
                bytes: 1_048_576,
                ..
            }
        ));
        assert_eq!(e.status(), 413);
        let e = decode_remote_write(V1, &[0x05, 0x00], &limits).unwrap_err();
        assert!(matches!(e, WireError::Snappy(_)));
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn an_empty_request_is_an_empty_batch() {
        let l = Limits::default();
        let empty = compress(&[]);
        assert_eq!(
            decode_remote_write(V1, &empty, &l).unwrap(),
            WriteBatch::default()
        );
        assert_eq!(
            decode_remote_write(V2, &empty, &l).unwrap(),
            WriteBatch::default()
        );
    }
}
