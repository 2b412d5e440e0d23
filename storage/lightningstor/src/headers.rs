//! Which request headers each operation honours. LightningStor never
//! accepts a request and ignores part of it: every `x-amz-*` header (and
//! every conditional or range header) is either honoured by the operation
//! called, or the request is refused with `501 NotImplemented` naming the
//! header, before anything is read or stored. A header S3 defines for
//! another operation is refused the same way, and so is an `x-amz-*` header
//! S3 does not define.
//!
//! Headers whose every value but one changes nothing here (`x-amz-acl:
//! private`, `x-amz-storage-class: STANDARD`) are honoured with that value
//! and refused with any other. The handlers enforce what the headers mean;
//! this table only says which ones reach them. docs/s3.md lists the refused
//! ones.

use http::HeaderMap;
use photon_s3::error::{S3Error, S3ErrorCode};

use crate::checksum::{self, Algorithm};
use crate::request::Operation::{self, *};

/// Which values a honoured header may take.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// Any value; the handler checks it.
    Any,
    /// Exactly one of these (compared ignoring ASCII case).
    OneOf(&'static [&'static str]),
}

/// The operations a header is honoured by.
#[derive(Debug, Clone, Copy)]
enum Ops {
    All,
    Only(&'static [Operation]),
}

impl Ops {
    fn contains(self, op: Operation) -> bool {
        match self {
            Ops::All => true,
            Ops::Only(ops) => ops.contains(&op),
        }
    }
}

struct Rule {
    name: &'static str,
    ops: Ops,
    values: Values,
}

const fn rule(name: &'static str, ops: Ops, values: Values) -> Rule {
    Rule { name, ops, values }
}

/// Operations that read a request body.
const WITH_BODY: &[Operation] = &[
    PutObject,
    UploadPart,
    DeleteObjects,
    CompleteMultipartUpload,
    CreateBucket,
];
const WRITES_OBJECT: &[Operation] = &[PutObject, CopyObject, CreateMultipartUpload];
const COPIES: &[Operation] = &[CopyObject, UploadPartCopy];
const READS_OBJECT: &[Operation] = &[GetObject, HeadObject];
const LISTS: &[Operation] = &[ListObjects, ListObjectsV2, ListObjectVersions];
/// Operations whose body's own checksum may come in `x-amz-checksum-*`.
const BODY_CHECKSUMS: &[Operation] = &[PutObject, UploadPart, DeleteObjects];
/// ... plus Complete, where the header is the whole object's checksum.
const CHECKSUM_VALUES: &[Operation] = &[
    PutObject,
    UploadPart,
    DeleteObjects,
    CompleteMultipartUpload,
];

/// Every honoured header. Names are lowercase.
const RULES: &[Rule] = &[
    // Signing and transport; checked by SigV4 and the body reader.
    rule("x-amz-date", Ops::All, Values::Any),
    rule("x-amz-content-sha256", Ops::All, Values::Any),
    rule(
        "x-amz-decoded-content-length",
        Ops::Only(WITH_BODY),
        Values::Any,
    ),
    // Informational, asks for nothing (JavaScript SDKs send it).
    rule("x-amz-user-agent", Ops::All, Values::Any),
    // Checked against the bucket owner (`Api::check_expected_owner`).
    rule("x-amz-expected-bucket-owner", Ops::All, Values::Any),
    rule(
        "x-amz-source-expected-bucket-owner",
        Ops::Only(COPIES),
        Values::Any,
    ),
    // The requester agrees to pay; no bucket here is requester-pays.
    rule(
        "x-amz-request-payer",
        Ops::All,
        Values::OneOf(&["requester"]),
    ),
    // Objects.
    rule(
        "x-amz-acl",
        Ops::Only(&[PutObject, CopyObject, CreateMultipartUpload, CreateBucket]),
        Values::OneOf(&["private"]),
    ),
    rule(
        "x-amz-storage-class",
        Ops::Only(WRITES_OBJECT),
        Values::OneOf(&["STANDARD"]),
    ),
    rule("x-amz-copy-source", Ops::Only(COPIES), Values::Any),
    rule("x-amz-copy-source-if-match", Ops::Only(COPIES), Values::Any),
    rule(
        "x-amz-copy-source-if-none-match",
        Ops::Only(COPIES),
        Values::Any,
    ),
    rule(
        "x-amz-copy-source-if-modified-since",
        Ops::Only(COPIES),
        Values::Any,
    ),
    rule(
        "x-amz-copy-source-if-unmodified-since",
        Ops::Only(COPIES),
        Values::Any,
    ),
    rule(
        "x-amz-copy-source-range",
        Ops::Only(&[UploadPartCopy]),
        Values::Any,
    ),
    rule(
        "x-amz-metadata-directive",
        Ops::Only(&[CopyObject]),
        Values::OneOf(&["COPY", "REPLACE"]),
    ),
    // No object has tags (x-amz-tagging is refused), so copying the
    // source's tags and replacing them with none are the same.
    rule(
        "x-amz-tagging-directive",
        Ops::Only(&[CopyObject]),
        Values::OneOf(&["COPY", "REPLACE"]),
    ),
    // Checksums.
    rule(
        "x-amz-checksum-algorithm",
        Ops::Only(&[CopyObject, CreateMultipartUpload]),
        Values::Any,
    ),
    rule(
        "x-amz-checksum-type",
        Ops::Only(&[CreateMultipartUpload, CompleteMultipartUpload]),
        Values::OneOf(&["COMPOSITE", "FULL_OBJECT"]),
    ),
    rule(
        "x-amz-checksum-mode",
        Ops::Only(READS_OBJECT),
        Values::OneOf(&["ENABLED"]),
    ),
    rule(
        "x-amz-sdk-checksum-algorithm",
        Ops::Only(BODY_CHECKSUMS),
        Values::Any,
    ),
    // Conditional deletes and aborts, the size of a completed upload.
    rule(
        "x-amz-if-match-last-modified-time",
        Ops::Only(&[DeleteObject]),
        Values::Any,
    ),
    rule(
        "x-amz-if-match-size",
        Ops::Only(&[DeleteObject]),
        Values::Any,
    ),
    rule(
        "x-amz-if-match-initiated-time",
        Ops::Only(&[AbortMultipartUpload]),
        Values::Any,
    ),
    rule(
        "x-amz-mp-object-size",
        Ops::Only(&[CompleteMultipartUpload]),
        Values::Any,
    ),
    // Nothing is ever archived, so there is never a restore status to add.
    rule(
        "x-amz-optional-object-attributes",
        Ops::Only(LISTS),
        Values::OneOf(&["RestoreStatus"]),
    ),
    // Buckets: no object lock, ACLs disabled (the owner owns every object).
    rule(
        "x-amz-bucket-object-lock-enabled",
        Ops::Only(&[CreateBucket]),
        Values::OneOf(&["false"]),
    ),
    rule(
        "x-amz-object-ownership",
        Ops::Only(&[CreateBucket]),
        Values::OneOf(&["BucketOwnerEnforced"]),
    ),
    // Only chunked framing: a coding like `gzip, chunked` would store the
    // compressed bytes as if they were the object (RFC 9112 asks for 501).
    rule("transfer-encoding", Ops::All, Values::OneOf(&["chunked"])),
    // HTTP preconditions and ranges.
    rule(
        "if-match",
        Ops::Only(&[
            PutObject,
            CopyObject,
            GetObject,
            HeadObject,
            DeleteObject,
            CompleteMultipartUpload,
        ]),
        Values::Any,
    ),
    rule(
        "if-none-match",
        Ops::Only(&[
            PutObject,
            CopyObject,
            GetObject,
            HeadObject,
            CompleteMultipartUpload,
        ]),
        Values::Any,
    ),
    rule("if-modified-since", Ops::Only(READS_OBJECT), Values::Any),
    rule("if-unmodified-since", Ops::Only(READS_OBJECT), Values::Any),
    rule("range", Ops::Only(READS_OBJECT), Values::Any),
];

/// User metadata, stored by the operations that write an object.
const USER_META_PREFIX: &str = "x-amz-meta-";

/// Headers outside `x-amz-*` that the table governs.
fn governed(name: &str) -> bool {
    name.starts_with("x-amz-")
        || matches!(
            name,
            "if-match"
                | "if-none-match"
                | "if-modified-since"
                | "if-unmodified-since"
                | "range"
                | "transfer-encoding"
        )
}

/// Refuses the request unless `op` honours every governed header in it.
pub fn check(op: Operation, headers: &HeaderMap) -> Result<(), S3Error> {
    let mut checksum_values = 0;
    for (name, value) in headers {
        let name = name.as_str();
        if !governed(name) {
            continue;
        }
        if name.starts_with(USER_META_PREFIX) {
            if !WRITES_OBJECT.contains(&op) {
                return Err(refused(name, op, None));
            }
            continue;
        }
        // The value headers of the algorithms in `checksum::Algorithm`;
        // those of the others (MD5, SHA512, XXHASH*) are in no rule.
        if Algorithm::from_header(name).is_some() {
            if !CHECKSUM_VALUES.contains(&op) {
                return Err(refused(name, op, None));
            }
            checksum_values += 1;
            continue;
        }
        let Some(rule) = RULES.iter().find(|r| r.name == name) else {
            return Err(refused(name, op, None));
        };
        if !rule.ops.contains(op) {
            return Err(refused(name, op, None));
        }
        if let Values::OneOf(allowed) = rule.values {
            let text = value.to_str().unwrap_or("").trim();
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(text)) {
                return Err(refused(name, op, Some((text, allowed))));
            }
        }
    }
    if checksum_values > 1 {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "expecting a single x-amz-checksum- header; multiple checksum types are not allowed",
        ));
    }
    check_sdk_algorithm(headers)
}

/// `x-amz-sdk-checksum-algorithm` names the algorithm of the checksum sent
/// with the body; without that header it would mean a trailing checksum,
/// which LightningStor does not implement.
fn check_sdk_algorithm(headers: &HeaderMap) -> Result<(), S3Error> {
    let Some(value) = headers.get("x-amz-sdk-checksum-algorithm") else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let Some(algorithm) = Algorithm::parse(text) else {
        return Err(unsupported_algorithm("x-amz-sdk-checksum-algorithm", text));
    };
    if headers.contains_key(algorithm.header()) {
        return Ok(());
    }
    Err(S3Error::with_message(
        S3ErrorCode::InvalidRequest,
        format!(
            "x-amz-sdk-checksum-algorithm {} needs the {} header (trailing checksums are not implemented)",
            algorithm.name(),
            algorithm.header()
        ),
    ))
}

/// The error for an algorithm S3 knows and LightningStor does not.
pub fn unsupported_algorithm(header: &str, text: &str) -> S3Error {
    let known: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
    S3Error::with_message(
        S3ErrorCode::NotImplemented,
        format!(
            "checksum algorithm {text:?} is not implemented by LightningStor (implemented: {})",
            known.join(", ")
        ),
    )
    .with_extra("Header", header)
}

fn refused(name: &str, op: Operation, value: Option<(&str, &[&str])>) -> S3Error {
    let message = match value {
        Some((text, allowed)) => format!(
            "{name}: {text} is not implemented by LightningStor; {} accepts only {}",
            op.name(),
            allowed.join(" or ")
        ),
        None => format!(
            "a header you provided implies functionality that is not implemented: {name} on {}",
            op.name()
        ),
    };
    S3Error::with_message(S3ErrorCode::NotImplemented, message).with_extra("Header", name)
}

/// The checksum algorithm a request names in `header`, if any.
pub fn algorithm(headers: &HeaderMap, header: &str) -> Result<Option<Algorithm>, S3Error> {
    let Some(value) = headers.get(header) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    Algorithm::parse(text)
        .map(Some)
        .ok_or_else(|| unsupported_algorithm(header, text))
}

/// The one `x-amz-checksum-<algorithm>` value header of a request, decoded.
pub fn checksum_value(headers: &HeaderMap) -> Result<Option<(Algorithm, String)>, S3Error> {
    for algorithm in Algorithm::ALL {
        if let Some(value) = headers.get(algorithm.header()) {
            let text = value.to_str().unwrap_or("").trim().to_owned();
            return Ok(Some((algorithm, text)));
        }
    }
    Ok(None)
}

/// Decodes a checksum value of `algorithm` or answers S3's error for it.
pub fn decode_value(algorithm: Algorithm, text: &str) -> Result<Vec<u8>, S3Error> {
    checksum::decode(algorithm, text).ok_or_else(|| {
        S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!("value for {} header is invalid", algorithm.header()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(*n, HeaderValue::from_static(v));
        }
        map
    }

    fn code(op: Operation, pairs: &[(&'static str, &'static str)]) -> Option<S3ErrorCode> {
        check(op, &headers(pairs)).err().map(|e| e.code)
    }

    #[test]
    fn honoured_headers_pass() {
        assert_eq!(
            code(
                PutObject,
                &[("x-amz-acl", "private"), ("x-amz-meta-a", "1")]
            ),
            None
        );
        assert_eq!(
            code(PutObject, &[("x-amz-storage-class", "standard")]),
            None
        );
        assert_eq!(
            code(
                GetObject,
                &[("x-amz-checksum-mode", "ENABLED"), ("range", "bytes=0-1")]
            ),
            None
        );
        assert_eq!(
            code(
                PutObject,
                &[
                    ("x-amz-sdk-checksum-algorithm", "CRC32"),
                    ("x-amz-checksum-crc32", "AAAAAA==")
                ]
            ),
            None
        );
        assert_eq!(
            code(
                CreateBucket,
                &[("x-amz-bucket-object-lock-enabled", "false")]
            ),
            None
        );
        assert_eq!(code(ListObjectsV2, &[("content-type", "text/plain")]), None);
        assert_eq!(code(PutObject, &[("transfer-encoding", "chunked")]), None);
    }

    #[test]
    fn everything_else_is_refused() {
        for (op, pairs) in [
            (PutObject, vec![("x-amz-server-side-encryption", "AES256")]),
            (
                PutObject,
                vec![("x-amz-server-side-encryption-customer-algorithm", "AES256")],
            ),
            (PutObject, vec![("x-amz-acl", "public-read")]),
            (PutObject, vec![("x-amz-tagging", "a=b")]),
            (PutObject, vec![("x-amz-grant-read", "id=x")]),
            (PutObject, vec![("x-amz-storage-class", "GLACIER")]),
            (PutObject, vec![("x-amz-frobnicate", "1")]),
            (PutObject, vec![("x-amz-checksum-sha512", "AAAA")]),
            (PutObject, vec![("range", "bytes=0-1")]),
            (GetObject, vec![("x-amz-meta-a", "1")]),
            (GetObject, vec![("x-amz-checksum-mode", "DISABLED")]),
            (
                CreateBucket,
                vec![("x-amz-bucket-object-lock-enabled", "true")],
            ),
            (
                CreateBucket,
                vec![("x-amz-object-ownership", "ObjectWriter")],
            ),
            (DeleteObject, vec![("x-amz-mfa", "serial 123456")]),
            (
                DeleteObjects,
                vec![("x-amz-bypass-governance-retention", "true")],
            ),
            (DeleteObjects, vec![("if-match", "\"abc\"")]),
            (ListBuckets, vec![("x-amz-security-token", "token")]),
            (PutObject, vec![("transfer-encoding", "gzip, chunked")]),
        ] {
            assert_eq!(
                code(op, &pairs),
                Some(S3ErrorCode::NotImplemented),
                "{op:?} {pairs:?}"
            );
        }
    }

    #[test]
    fn checksum_headers_are_checked_for_consistency() {
        assert_eq!(
            code(
                PutObject,
                &[
                    ("x-amz-checksum-crc32", "AAAAAA=="),
                    ("x-amz-checksum-crc32c", "AAAAAA==")
                ]
            ),
            Some(S3ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(PutObject, &[("x-amz-sdk-checksum-algorithm", "CRC32")]),
            Some(S3ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(PutObject, &[("x-amz-sdk-checksum-algorithm", "XXHASH64")]),
            Some(S3ErrorCode::NotImplemented)
        );
    }
}
