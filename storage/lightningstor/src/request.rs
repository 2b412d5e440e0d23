//! From an HTTP request to an S3 operation: addressing (path-style and
//! virtual-host-style), the decoded query, and which API it calls.

use std::borrow::Cow;

use photon_s3::error::{S3Error, S3ErrorCode};

/// Query parameters that name a bucket or object sub-resource this server
/// does not implement; a request carrying one answers `NotImplemented`
/// instead of being mistaken for a plain GET/PUT/DELETE.
const UNSUPPORTED_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metadata-table",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "website",
];

/// An S3 API call, named as in the API reference (the IAM action is
/// `s3:<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    GetBucketVersioning,
    ListObjects,
    ListObjectsV2,
    ListObjectVersions,
    ListMultipartUploads,
    DeleteObjects,
    PutObject,
    CopyObject,
    GetObject,
    HeadObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 22] = [
        Operation::ListBuckets,
        Operation::CreateBucket,
        Operation::HeadBucket,
        Operation::DeleteBucket,
        Operation::GetBucketLocation,
        Operation::GetBucketVersioning,
        Operation::ListObjects,
        Operation::ListObjectsV2,
        Operation::ListObjectVersions,
        Operation::ListMultipartUploads,
        Operation::DeleteObjects,
        Operation::PutObject,
        Operation::CopyObject,
        Operation::GetObject,
        Operation::HeadObject,
        Operation::DeleteObject,
        Operation::CreateMultipartUpload,
        Operation::UploadPart,
        Operation::UploadPartCopy,
        Operation::CompleteMultipartUpload,
        Operation::AbortMultipartUpload,
        Operation::ListParts,
    ];

    pub fn name(self) -> &'static str {
        use Operation::*;
        match self {
            ListBuckets => "ListBuckets",
            CreateBucket => "CreateBucket",
            HeadBucket => "HeadBucket",
            DeleteBucket => "DeleteBucket",
            GetBucketLocation => "GetBucketLocation",
            GetBucketVersioning => "GetBucketVersioning",
            ListObjects => "ListObjects",
            ListObjectsV2 => "ListObjectsV2",
            ListObjectVersions => "ListObjectVersions",
            ListMultipartUploads => "ListMultipartUploads",
            DeleteObjects => "DeleteObjects",
            PutObject => "PutObject",
            CopyObject => "CopyObject",
            GetObject => "GetObject",
            HeadObject => "HeadObject",
            DeleteObject => "DeleteObject",
            CreateMultipartUpload => "CreateMultipartUpload",
            UploadPart => "UploadPart",
            UploadPartCopy => "UploadPartCopy",
            CompleteMultipartUpload => "CompleteMultipartUpload",
            AbortMultipartUpload => "AbortMultipartUpload",
            ListParts => "ListParts",
        }
    }
}

/// Where a request points: bucket and key, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    pub bucket: Option<String>,
    pub key: Option<String>,
}

/// The decoded query string.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: &str) -> Self {
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(name), form_decode(value))
            })
            .collect();
        Self { pairs }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// Query values are form-encoded by some clients (`+` for space).
fn form_decode(text: &str) -> String {
    let spaced: Cow<'_, str> = if text.contains('+') {
        Cow::Owned(text.replace('+', " "))
    } else {
        Cow::Borrowed(text)
    };
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Splits the request into bucket and key. `Host: <bucket>.<domain>` selects
/// virtual-host style for any configured domain; otherwise the first path
/// segment is the bucket.
pub fn target(host: Option<&str>, raw_path: &str, domains: &[String]) -> Result<Target, S3Error> {
    let decode = |s: &str| -> Result<String, S3Error> {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| S3Error::with_message(S3ErrorCode::InvalidURI, "the path is not UTF-8"))
    };
    let path = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let host_name = host.map(|h| match h.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => h,
    });
    if let Some(host_name) = host_name {
        for domain in domains {
            if let Some(bucket) = host_name
                .strip_suffix(domain.as_str())
                .and_then(|b| b.strip_suffix('.'))
            {
                if !bucket.is_empty() {
                    let key = (!path.is_empty()).then(|| decode(path)).transpose()?;
                    return Ok(Target {
                        bucket: Some(bucket.to_owned()),
                        key,
                    });
                }
            }
        }
    }
    if path.is_empty() {
        return Ok(Target::default());
    }
    let (bucket, key) = match path.split_once('/') {
        Some((bucket, key)) => (bucket, (!key.is_empty()).then_some(key)),
        None => (path, None),
    };
    Ok(Target {
        bucket: Some(decode(bucket)?),
        key: key.map(decode).transpose()?,
    })
}

/// Which API a request calls. `copy_source` is whether it carries
/// `x-amz-copy-source`.
pub fn operation(
    method: &http::Method,
    target: &Target,
    query: &Query,
    copy_source: bool,
) -> Result<Operation, S3Error> {
    use Operation::*;
    if let Some(name) = UNSUPPORTED_SUBRESOURCES.iter().find(|n| query.has(n)) {
        return Err(not_implemented(&format!("the ?{name} sub-resource")));
    }
    let m = method.as_str();
    let op = match (&target.bucket, &target.key) {
        (None, _) => match m {
            "GET" => ListBuckets,
            _ => return Err(method_not_allowed(m)),
        },
        (Some(_), None) => match m {
            "PUT" if query.has("versioning") => return Err(not_implemented("PutBucketVersioning")),
            "PUT" => CreateBucket,
            "HEAD" => HeadBucket,
            "DELETE" => DeleteBucket,
            "GET" if query.has("location") => GetBucketLocation,
            "GET" if query.has("versioning") => GetBucketVersioning,
            "GET" if query.has("uploads") => ListMultipartUploads,
            "GET" if query.has("versions") => ListObjectVersions,
            "GET" if query.get("list-type") == Some("2") => ListObjectsV2,
            "GET" => ListObjects,
            "POST" if query.has("delete") => DeleteObjects,
            "POST" => return Err(not_implemented("this POST on a bucket")),
            _ => return Err(method_not_allowed(m)),
        },
        (Some(_), Some(_)) => match m {
            "PUT" if query.has("uploadId") && copy_source => UploadPartCopy,
            "PUT" if query.has("uploadId") => UploadPart,
            "PUT" if copy_source => CopyObject,
            "PUT" => PutObject,
            "GET" if query.has("uploadId") => ListParts,
            "GET" => GetObject,
            "HEAD" => HeadObject,
            "DELETE" if query.has("uploadId") => AbortMultipartUpload,
            "DELETE" => DeleteObject,
            "POST" if query.has("uploads") => CreateMultipartUpload,
            "POST" if query.has("uploadId") => CompleteMultipartUpload,
            "POST" => return Err(not_implemented("this POST on an object")),
            _ => return Err(method_not_allowed(m)),
        },
    };
    Ok(op)
}

pub fn not_implemented(what: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NotImplemented,
        format!("{what} is not implemented by LightningStor"),
    )
}

fn method_not_allowed(method: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::MethodNotAllowed,
        format!("the method {method} is not allowed against this resource"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_virtual_host_addressing() {
        let domains = vec!["s3.example.test".to_string()];
        let t = target(Some("127.0.0.1:9000"), "/b/a%20key/x+y", &domains).unwrap();
        assert_eq!(t.bucket.as_deref(), Some("b"));
        assert_eq!(t.key.as_deref(), Some("a key/x+y"));
        let t = target(Some("b.s3.example.test:9000"), "/k//z", &domains).unwrap();
        assert_eq!(t.bucket.as_deref(), Some("b"));
        assert_eq!(t.key.as_deref(), Some("k//z"));
        assert_eq!(target(None, "/", &domains).unwrap(), Target::default());
        let t = target(None, "/b/", &domains).unwrap();
        assert_eq!((t.bucket.as_deref(), t.key), (Some("b"), None));
        assert!(target(None, "/b/%ff", &domains).is_err());
    }

    #[test]
    fn operations_by_method_and_query() {
        let obj = Target {
            bucket: Some("b".into()),
            key: Some("k".into()),
        };
        let bucket = Target {
            bucket: Some("b".into()),
            key: None,
        };
        let q = |s: &str| Query::parse(s);
        let get = http::Method::GET;
        assert_eq!(
            operation(&get, &bucket, &q("list-type=2&prefix=a"), false).unwrap(),
            Operation::ListObjectsV2
        );
        assert_eq!(
            operation(
                &http::Method::PUT,
                &obj,
                &q("partNumber=1&uploadId=x"),
                true
            )
            .unwrap(),
            Operation::UploadPartCopy
        );
        assert_eq!(
            operation(&http::Method::POST, &obj, &q("uploads"), false).unwrap(),
            Operation::CreateMultipartUpload
        );
        let e = operation(&get, &obj, &q("acl"), false).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::NotImplemented);
        let e = operation(&http::Method::PATCH, &obj, &q(""), false).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::MethodNotAllowed);
        assert_eq!(q("a=1+2&b=%2F").get("a"), Some("1 2"));
        assert_eq!(q("a=1+2&b=%2F").get("b"), Some("/"));
    }
}
