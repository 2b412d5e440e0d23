//! Object APIs: PutObject, GetObject, HeadObject, DeleteObject,
//! DeleteObjects, CopyObject.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use photon_s3::error::{S3Error, S3ErrorCode};
use photon_s3::xml::{self, DeleteObjectError, DeleteResult, DeletedObject};

use crate::api::{internal, Api, S3Request, S3Result};
use crate::body::{read_small, BodyReader};
use crate::checksum;
use crate::conditions::{self, Verdict};
use crate::data::{self, BlobWriter, Written};
use crate::meta::{objects_ns, Layout, ObjectMeta};
use crate::response::{self, empty, with_status};
use crate::shard::{Condition, DeleteCondition, Reply, Request, WriteFailure};

/// Headers stored with an object and returned on GET/HEAD.
pub const STORED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
];

const USER_META_PREFIX: &str = "x-amz-meta-";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Name-value pairs: stored headers, or user metadata.
pub type Pairs = Vec<(String, String)>;

/// Stored headers and user metadata of a request.
pub fn object_headers(r: &S3Request, user_bytes_max: usize) -> Result<(Pairs, Pairs), S3Error> {
    let mut headers = Vec::new();
    for name in STORED_HEADERS {
        let Some(value) = r.header(name) else {
            continue;
        };
        let value = if *name == "content-encoding" {
            // `aws-chunked` describes this request's framing, not the
            // object: S3 stores the other codings only.
            match without_aws_chunked(value) {
                Some(rest) => rest,
                None => continue,
            }
        } else {
            value.to_owned()
        };
        headers.push(((*name).to_owned(), value));
    }
    let mut user = Vec::new();
    let mut bytes = 0usize;
    for (name, value) in r.headers() {
        if let Some(short) = name.as_str().strip_prefix(USER_META_PREFIX) {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            bytes += short.len() + value.len();
            user.push((short.to_owned(), value));
        }
    }
    if bytes > user_bytes_max {
        return Err(S3Error::with_message(
            S3ErrorCode::MetadataTooLarge,
            format!("your metadata headers exceed the maximum allowed metadata size of {user_bytes_max} bytes"),
        ));
    }
    Ok((headers, user))
}

/// A Content-Encoding without its `aws-chunked` coding; `None` when
/// nothing is left.
fn without_aws_chunked(value: &str) -> Option<String> {
    let rest: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!rest.is_empty()).then(|| rest.join(", "))
}

/// The write precondition of `If-None-Match` / `If-Match` on a write.
pub fn write_condition(r: &S3Request) -> Result<Condition, S3Error> {
    if let Some(value) = r.header("if-none-match") {
        if value.trim() != "*" {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "If-None-Match on writes supports only *",
            )
            .with_extra("Header", "If-None-Match"));
        }
        return Ok(Condition::Absent);
    }
    if let Some(value) = r.header("if-match") {
        let value = value.trim();
        if value == "*" {
            return Ok(Condition::Exists);
        }
        return Ok(Condition::EtagIs(value.trim_matches('"').to_owned()));
    }
    Ok(Condition::None)
}

pub fn precondition_failed(condition: &str) -> S3Error {
    S3Error::new(S3ErrorCode::PreconditionFailed).with_extra("Condition", condition)
}

/// An object's metadata, and its inline data when `with_inline`.
pub async fn fetch(
    api: &Api,
    ns: u64,
    key: &str,
    with_inline: bool,
) -> Result<Option<(ObjectMeta, Option<Bytes>)>, S3Error> {
    let request = Request::GetObject {
        ns,
        key: key.to_owned(),
        inline_range: with_inline.then_some((0, u64::MAX)),
    };
    match api.call_owner(ns, key, request).await? {
        Reply::Object(None) => Ok(None),
        Reply::Object(Some(found)) => {
            let meta = ObjectMeta::decode(&found.meta)
                .ok_or_else(|| internal("damaged object metadata"))?;
            let inline = match (&meta.layout, found.data) {
                (Layout::Inline, Some(Ok(data))) => Some(data),
                (Layout::Inline, Some(Err(e))) => return Err(internal(e)),
                _ => None,
            };
            Ok(Some((meta, inline)))
        }
        other => Err(internal(format!("unexpected reply {other:?}"))),
    }
}

pub fn no_such_key(key: &str) -> S3Error {
    S3Error::new(S3ErrorCode::NoSuchKey).with_extra("Key", key)
}

/// Commits an object's metadata on its owner shard.
pub async fn commit(
    api: &Api,
    ns: u64,
    key: &str,
    meta: &ObjectMeta,
    written: &Written,
    condition: Condition,
) -> Result<(), S3Error> {
    let request = Request::PutObject {
        ns,
        key: key.to_owned(),
        meta: meta.encode(),
        inline: written.inline.clone(),
        condition,
        free_previous: true,
    };
    match api.call_owner(ns, key, request).await? {
        Reply::Written(Ok(_)) => Ok(()),
        Reply::Written(Err(WriteFailure::Precondition)) => {
            Err(precondition_failed("If-Match or If-None-Match"))
        }
        Reply::Written(Err(WriteFailure::Missing)) => Err(no_such_key(key)),
        Reply::Written(Err(WriteFailure::NoSpace)) => Err(crate::api::insufficient_storage()),
        Reply::Written(Err(WriteFailure::Storage(e))) => Err(internal(e)),
        other => Err(internal(format!("unexpected reply {other:?}"))),
    }
}

pub async fn put_object(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let (headers, user) = object_headers(r, api.limits().user_meta_bytes_max)?;
    let condition = write_condition(r)?;
    let key = r.key().to_owned();
    data::require_length(r)?;
    let ns = objects_ns(bucket.id);
    // Fail fast before taking the body; the owner checks again under its lock.
    if condition != Condition::None {
        let current = fetch(api, ns, &key, false).await?;
        if matches!(condition, Condition::EtagIs(_) | Condition::Exists) && current.is_none() {
            return Err(no_such_key(&key));
        }
        if !holds(&condition, current.as_ref().map(|c| &c.0)) {
            return Err(precondition_failed("If-Match or If-None-Match"));
        }
    }
    let reader = BodyReader::new(r, api.limits().put_bytes_max)?;
    let (written, received) = data::receive(api, reader, true).await?;
    let meta = ObjectMeta {
        size: received.size,
        etag: hex::encode(received.md5),
        last_modified_ms: now_ms(),
        headers,
        user,
        layout: written.layout.clone(),
        part_sizes: Vec::new(),
        checksum: received
            .checksum
            .as_ref()
            .map(|(algorithm, raw)| checksum::Stored::full(*algorithm, raw)),
        upload_id: None,
    };
    if let Err(e) = commit(api, ns, &key, &meta, &written, condition).await {
        data::discard(api, &written.layout).await;
        return Err(e);
    }
    let mut response = with_status(StatusCode::OK, empty());
    response::set_header(&mut response, "etag", &meta.quoted_etag());
    set_checksum_headers(&mut response, meta.checksum.as_ref());
    Ok(response)
}

/// `x-amz-checksum-<algorithm>` and `x-amz-checksum-type` of a stored
/// checksum, on a reply.
pub fn set_checksum_headers(
    response: &mut http::Response<crate::response::Body>,
    checksum: Option<&checksum::Stored>,
) {
    if let Some(c) = checksum {
        response::set_header(response, c.algorithm.header(), &c.value);
        response::set_header(response, "x-amz-checksum-type", c.kind.name());
    }
}

fn holds(condition: &Condition, current: Option<&ObjectMeta>) -> bool {
    match condition {
        Condition::None => true,
        Condition::Absent => current.is_none(),
        Condition::Exists => current.is_some(),
        Condition::EtagIs(etag) => current.is_some_and(|c| &c.etag == etag),
    }
}

/// Writes the headers of an object reply.
fn object_reply_headers(
    response: &mut http::Response<crate::response::Body>,
    meta: &ObjectMeta,
    r: &S3Request,
) {
    response::set_header(response, "etag", &meta.quoted_etag());
    response::set_header(
        response,
        "last-modified",
        &httpdate::fmt_http_date(conditions::last_modified(meta.last_modified_ms)),
    );
    response::set_header(response, "accept-ranges", "bytes");
    if meta.header("content-type").is_none() {
        response::set_header(response, "content-type", "binary/octet-stream");
    }
    for (name, value) in &meta.headers {
        response::set_header(response, name, value);
    }
    for (name, value) in &meta.user {
        response::set_header(response, &format!("{USER_META_PREFIX}{name}"), value);
    }
    if !meta.part_sizes.is_empty() {
        response::set_header(
            response,
            "x-amz-mp-parts-count",
            &meta.part_sizes.len().to_string(),
        );
    }
    for (param, header) in [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(value) = r.query.get(param) {
            response::set_header(response, header, value);
        }
    }
}

pub async fn get_object(api: &Api, r: &mut S3Request) -> S3Result {
    let head = r.op == crate::request::Operation::HeadObject;
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    check_version_id(r.query.get("versionId"))?;
    let key = r.key().to_owned();
    let (meta, inline) = fetch(api, objects_ns(bucket.id), &key, !head)
        .await?
        .ok_or_else(|| no_such_key(&key))?;
    match conditions::evaluate(r.headers(), "", &meta.etag, meta.last_modified_ms) {
        Verdict::Proceed => {}
        Verdict::NotModified => {
            let mut response = with_status(StatusCode::NOT_MODIFIED, empty());
            response::set_header(&mut response, "etag", &meta.quoted_etag());
            return Ok(response);
        }
        Verdict::Failed => return Err(precondition_failed("If-Match or If-Unmodified-Since")),
    }
    let range = match r.query.get("partNumber") {
        Some(part) => Some(part_range(&meta, part)?),
        None => conditions::parse_range(r.header("range"), meta.size)?,
    };
    let (start, end, status) = match range {
        Some(range) => (range.start, range.end, StatusCode::PARTIAL_CONTENT),
        None => (0, meta.size, StatusCode::OK),
    };
    let body = if head {
        empty()
    } else {
        data::stream(api, &meta, inline, start, end)
    };
    let mut response = with_status(status, body);
    object_reply_headers(&mut response, &meta, r);
    // A stored checksum covers the whole object only: S3 returns it for
    // whole-object reads, never for a range or a part.
    if r.header("x-amz-checksum-mode").is_some() && range.is_none() {
        set_checksum_headers(&mut response, meta.checksum.as_ref());
    }
    response::set_header(&mut response, "content-length", &(end - start).to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{}", end.saturating_sub(1), meta.size);
        response::set_header(&mut response, "content-range", &value);
    }
    Ok(response)
}

/// The byte range of part `part` (1-based) of an object.
fn part_range(meta: &ObjectMeta, part: &str) -> Result<conditions::ByteRange, S3Error> {
    let invalid = || {
        S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "part number must be an integer between 1 and 10000",
        )
        .with_extra("ArgumentName", "partNumber")
    };
    let n: usize = part.parse().map_err(|_| invalid())?;
    if n == 0 || n > 10_000 {
        return Err(invalid());
    }
    let sizes: Vec<u64> = if meta.part_sizes.is_empty() {
        vec![meta.size]
    } else {
        meta.part_sizes.clone()
    };
    if n > sizes.len() {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidPart,
            "the object has no such part",
        ));
    }
    let start: u64 = sizes[..n - 1].iter().sum();
    Ok(conditions::ByteRange {
        start,
        end: start + sizes[n - 1],
    })
}

/// Objects are not versioned: the only version of every object is `null`.
/// Any other version id names nothing (rather than being ignored).
pub fn check_version_id(version: Option<&str>) -> Result<(), S3Error> {
    match version {
        None | Some("null") => Ok(()),
        Some(_) => Err(S3Error::with_message(
            S3ErrorCode::NoSuchVersion,
            "the bucket is not versioned: the only version of an object is null",
        )),
    }
}

pub async fn delete_object(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    check_version_id(r.query.get("versionId"))?;
    let condition = DeleteCondition {
        etag: r
            .header("if-match")
            .map(|v| v.trim().trim_matches('"').to_owned()),
        last_modified_s: r
            .header("x-amz-if-match-last-modified-time")
            .map(|v| parse_http_seconds(v, "x-amz-if-match-last-modified-time"))
            .transpose()?,
        size: r
            .header("x-amz-if-match-size")
            .map(|v| parse_size(v, "x-amz-if-match-size"))
            .transpose()?,
    };
    delete_one(api, objects_ns(bucket.id), r.key(), condition).await?;
    Ok(with_status(StatusCode::NO_CONTENT, empty()))
}

fn invalid_argument(name: &str, what: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidArgument,
        format!("{name} must be {what}"),
    )
    .with_extra("ArgumentName", name)
}

/// An HTTP date in a header, as whole seconds since the epoch.
pub fn parse_http_seconds(value: &str, name: &str) -> Result<u64, S3Error> {
    httpdate::parse_http_date(value.trim())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| invalid_argument(name, "an HTTP date"))
}

fn parse_size(value: &str, name: &str) -> Result<u64, S3Error> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid_argument(name, "a non-negative integer"))
}

async fn delete_one(
    api: &Api,
    ns: u64,
    key: &str,
    condition: DeleteCondition,
) -> Result<(), S3Error> {
    let request = Request::DeleteObject {
        ns,
        key: key.to_owned(),
        free_chunks: true,
        condition,
    };
    match api.call_owner(ns, key, request).await? {
        Reply::Written(Ok(_)) => Ok(()),
        Reply::Written(Err(WriteFailure::Precondition)) => Err(precondition_failed("If-Match")),
        Reply::Written(Err(WriteFailure::Missing)) => Err(no_such_key(key)),
        Reply::Written(Err(WriteFailure::NoSpace)) => Err(crate::api::insufficient_storage()),
        Reply::Written(Err(WriteFailure::Storage(e))) => Err(internal(e)),
        other => Err(internal(format!("unexpected reply {other:?}"))),
    }
}

pub async fn delete_objects(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    // S3 requires a digest of this body (a retried or damaged request must
    // not delete the wrong keys).
    if r.header("content-md5").is_none() && crate::headers::checksum_value(r.headers())?.is_none() {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "missing required header for this request: Content-MD5 or x-amz-checksum-*",
        ));
    }
    let reader = BodyReader::new(r, api.limits().xml_body_bytes_max)?;
    let document = read_small(reader).await?;
    let request = xml::parse_delete(&document).map_err(|e| e.to_s3_error())?;
    if request.objects.len() > api.limits().delete_objects_max {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            format!(
                "a DeleteObjects request names at most {} keys",
                api.limits().delete_objects_max
            ),
        ));
    }
    let ns = objects_ns(bucket.id);
    let key_max = api.limits().key_bytes_max;
    let (bucket, caller) = (&bucket, &r.caller);
    let outcomes = futures_util::future::join_all(request.objects.iter().map(|o| async move {
        if o.key.is_empty() || o.key.len() > key_max || o.key.contains('\0') {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "invalid key",
            ));
        }
        let resource = crate::auth::resource(&bucket.name, Some(&o.key));
        api.service
            .auth
            .authorize(caller, "DeleteObject", &resource)?;
        check_version_id(o.version_id.as_deref())?;
        let condition = delete_condition(o)?;
        delete_one(api, ns, &o.key, condition).await
    }))
    .await;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for (object, outcome) in request.objects.iter().zip(&outcomes) {
        match outcome {
            Ok(()) => deleted.push(DeletedObject {
                key: &object.key,
                version_id: object.version_id.as_deref(),
            }),
            Err(e) => errors.push(DeleteObjectError {
                key: &object.key,
                version_id: object.version_id.as_deref(),
                code: e.code,
                message: Some(&e.message),
            }),
        }
    }
    let result = DeleteResult {
        quiet: request.quiet,
        deleted: &deleted,
        errors: &errors,
    };
    Ok(response::xml(result.to_xml()))
}

/// The conditions of one `<Object>` of DeleteObjects (`ETag`,
/// `LastModifiedTime` in ISO 8601, `Size`).
fn delete_condition(o: &photon_s3::xml::ObjectToDelete) -> Result<DeleteCondition, S3Error> {
    let last_modified_s = match &o.last_modified_time {
        Some(text) => Some(
            photon_s3::sigv4::parse_iso8601_seconds(text)
                .ok_or_else(|| invalid_argument("LastModifiedTime", "an ISO 8601 timestamp"))?,
        ),
        None => None,
    };
    Ok(DeleteCondition {
        etag: o.etag.clone(),
        last_modified_s,
        size: o
            .size
            .as_deref()
            .map(|v| parse_size(v, "Size"))
            .transpose()?,
    })
}

/// `x-amz-copy-source`: `[/]bucket/key[?versionId=...]`, URL-encoded.
pub fn copy_source(r: &S3Request) -> Result<(String, String), S3Error> {
    let invalid = || {
        S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "copy source must be bucket/key",
        )
        .with_extra("ArgumentName", "x-amz-copy-source")
    };
    let raw = r.header("x-amz-copy-source").ok_or_else(invalid)?;
    let (path, version) = raw.split_once('?').unwrap_or((raw, ""));
    if let Some(v) = version.strip_prefix("versionId=") {
        if v != "null" {
            return Err(S3Error::new(S3ErrorCode::NoSuchVersion));
        }
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| invalid())?;
    let decoded = decoded.trim_start_matches('/');
    let (bucket, key) = decoded.split_once('/').ok_or_else(invalid)?;
    if bucket.is_empty() || key.is_empty() {
        return Err(invalid());
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// Resolves, authorizes and reads the metadata of a copy source, applying
/// the `x-amz-copy-source-if-*` conditions.
pub async fn copy_source_object(
    api: &Api,
    r: &S3Request,
) -> Result<(ObjectMeta, Option<Bytes>, String, String), S3Error> {
    let (source_bucket, source_key) = copy_source(r)?;
    let resource = crate::auth::resource(&source_bucket, Some(&source_key));
    api.service
        .auth
        .authorize(&r.caller, "GetObject", &resource)?;
    let bucket = api.bucket(&r.caller, &source_bucket)?;
    api.check_expected_owner(
        r.headers(),
        "x-amz-source-expected-bucket-owner",
        &source_bucket,
    )?;
    let (meta, inline) = fetch(api, objects_ns(bucket.id), &source_key, true)
        .await?
        .ok_or_else(|| no_such_key(&source_key))?;
    if conditions::evaluate(
        r.headers(),
        "x-amz-copy-source-",
        &meta.etag,
        meta.last_modified_ms,
    ) != Verdict::Proceed
    {
        return Err(precondition_failed("x-amz-copy-source-If"));
    }
    Ok((meta, inline, source_bucket, source_key))
}

/// Copies `[start, end)` of an object into a new blob (or inline data).
pub async fn copy_data(
    api: &Api,
    meta: &ObjectMeta,
    inline: Option<Bytes>,
    (start, end): (u64, u64),
    allow_inline: bool,
    algorithm: Option<checksum::Algorithm>,
) -> Result<Copied, S3Error> {
    use md5::Digest;
    let mut md5 = md5::Md5::new();
    let mut hasher = algorithm.map(checksum::Hasher::new);
    let mut writer = BlobWriter::new(api, allow_inline);
    let step = api.limits().chunk_bytes.max(1);
    let mut at = start;
    while at < end {
        let to = (at + step).min(end);
        let pieces = match data::read_all(api, meta, inline.clone(), at, to).await {
            Ok(p) => p,
            Err(e) => {
                writer.abandon().await;
                return Err(e);
            }
        };
        for piece in pieces {
            md5.update(&piece);
            if let Some(h) = &mut hasher {
                h.update(&piece);
            }
            if let Err(e) = writer.push(&piece).await {
                writer.abandon().await;
                return Err(e);
            }
        }
        at = to;
    }
    Ok(Copied {
        written: writer.finish().await?,
        md5: md5.finalize().into(),
        checksum: algorithm.zip(hasher.map(checksum::Hasher::finish)),
    })
}

/// What [`copy_data`] wrote.
pub struct Copied {
    pub written: Written,
    pub md5: [u8; 16],
    /// The checksum asked for, of the copied bytes.
    pub checksum: Option<(checksum::Algorithm, Vec<u8>)>,
}

pub async fn copy_object(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let (source, inline, source_bucket, source_key) = copy_source_object(api, r).await?;
    if source.size > api.limits().copy_bytes_max {
        return Err(S3Error::with_message(S3ErrorCode::InvalidRequest, format!("the specified copy source is larger than the maximum allowable size for a copy source: {}", api.limits().copy_bytes_max)));
    }
    let replace = match r
        .header("x-amz-metadata-directive")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(_) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "unknown metadata directive",
            )
            .with_extra("ArgumentName", "x-amz-metadata-directive"))
        }
    };
    let key = r.key().to_owned();
    let algorithm = crate::headers::algorithm(r.headers(), "x-amz-checksum-algorithm")?;
    // A new checksum changes the object's attributes, as a new storage
    // class or encryption would.
    let changes = replace || algorithm.is_some();
    if !changes && source_bucket == bucket.name && source_key == key {
        return Err(S3Error::with_message(S3ErrorCode::InvalidRequest, "this copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes"));
    }
    let (headers, user) = if replace {
        object_headers(r, api.limits().user_meta_bytes_max)?
    } else {
        refuse_metadata_without_replace(r)?;
        (source.headers.clone(), source.user.clone())
    };
    let condition = write_condition(r)?;
    let copied = copy_data(api, &source, inline, (0, source.size), true, algorithm).await?;
    let written = copied.written;
    let checksum = match copied.checksum {
        Some((algorithm, raw)) => Some(checksum::Stored::full(algorithm, &raw)),
        // The same bytes keep their whole-object checksum; a composite one
        // described the source's parts, which the copy does not have.
        None => source
            .checksum
            .clone()
            .filter(|c| c.kind == checksum::Kind::FullObject),
    };
    let meta = ObjectMeta {
        size: source.size,
        // A copy is one new object: its ETag is the MD5 of its bytes.
        etag: hex::encode(copied.md5),
        last_modified_ms: now_ms(),
        headers,
        user,
        layout: written.layout.clone(),
        part_sizes: Vec::new(),
        checksum,
        upload_id: None,
    };
    if let Err(e) = commit(api, objects_ns(bucket.id), &key, &meta, &written, condition).await {
        data::discard(api, &written.layout).await;
        return Err(e);
    }
    let modified = conditions::last_modified(meta.last_modified_ms);
    Ok(response::xml(xml::copy_object_result(
        modified,
        &meta.etag,
        checksum_element(meta.checksum.as_ref()),
    )))
}

/// A stored checksum as a result document shows it.
pub fn checksum_element(c: Option<&checksum::Stored>) -> Option<xml::ChecksumElement<'_>> {
    c.map(|c| xml::ChecksumElement {
        algorithm: c.algorithm.name(),
        value: &c.value,
        kind: c.kind.name(),
    })
}

/// With the COPY directive S3 would ignore new metadata; we refuse it.
fn refuse_metadata_without_replace(r: &S3Request) -> Result<(), S3Error> {
    let given = r.headers().keys().find(|name| {
        name.as_str().starts_with(USER_META_PREFIX) || STORED_HEADERS.contains(&name.as_str())
    });
    match given {
        None => Ok(()),
        Some(name) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("{name} is only used with x-amz-metadata-directive: REPLACE; with COPY the source's metadata is kept"),
        )
        .with_extra("ArgumentName", name.as_str())),
    }
}
