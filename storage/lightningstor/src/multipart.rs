//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts,
//! ListMultipartUploads.
//!
//! An upload is a record in the bucket's uploads namespace; each part is a
//! record in the parts namespace pointing at its own blob. Completing
//! writes one object record that concatenates the parts' blobs (no copy)
//! and forgets the part records without freeing their chunks.

use std::time::{Duration, UNIX_EPOCH};

use http::StatusCode;
use md5::Digest;
use photon_s3::error::{S3Error, S3ErrorCode};
use photon_s3::xml::{self, Owner, PartEntry, UploadEntry};

use crate::api::{internal, Api, S3Request, S3Result};
use crate::body::{read_small, BodyDigests, BodyReader};
use crate::checksum::{self, Algorithm, Kind};
use crate::conditions::last_modified;
use crate::data::{self, Written};
use crate::meta::{
    objects_ns, part_key, parts_ns, random_u64, upload_key, uploads_ns, Layout, ObjectMeta,
    UploadMeta,
};
use crate::object_ops::{self, commit, now_ms, Copied};
use crate::response::{self, empty, with_status};
use crate::shard::{Condition, DeleteCondition, Reply, Request};

fn no_such_upload(id: &str) -> S3Error {
    S3Error::new(S3ErrorCode::NoSuchUpload).with_extra("UploadId", id)
}

fn upload_id(r: &S3Request) -> Result<String, S3Error> {
    r.query
        .get("uploadId")
        .filter(|id| !id.is_empty() && id.len() <= 64 && !id.contains('\0'))
        .map(str::to_owned)
        .ok_or_else(|| no_such_upload(""))
}

/// The upload record of `id` for this request's key.
async fn upload(api: &Api, bucket: u64, key: &str, id: &str) -> Result<UploadMeta, S3Error> {
    let ns = uploads_ns(bucket);
    let record_key = upload_key(key, id);
    let request = Request::GetObject {
        ns,
        key: record_key.clone(),
        inline_range: None,
    };
    match api.call_owner(ns, &record_key, request).await? {
        Reply::Object(Some(found)) => {
            UploadMeta::decode(&found.meta).ok_or_else(|| internal("damaged upload record"))
        }
        Reply::Object(None) => Err(no_such_upload(id)),
        other => Err(internal(format!("unexpected reply {other:?}"))),
    }
}

/// `x-amz-checksum-algorithm` and `x-amz-checksum-type` of a new upload.
fn upload_checksum(r: &S3Request) -> Result<Option<(Algorithm, Kind)>, S3Error> {
    let algorithm = crate::headers::algorithm(r.headers(), "x-amz-checksum-algorithm")?;
    let kind = r.header("x-amz-checksum-type").and_then(Kind::parse);
    match (algorithm, kind) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "x-amz-checksum-type needs x-amz-checksum-algorithm",
        )),
        (Some(algorithm), Some(Kind::FullObject)) if !algorithm.is_crc() => {
            Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!(
                    "the FULL_OBJECT checksum type needs a CRC algorithm, not {}",
                    algorithm.name()
                ),
            ))
        }
        // As S3: a CRC-64/NVME checksum is always of the whole object.
        (Some(Algorithm::Crc64Nvme), Some(Kind::Composite)) => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "the CRC64NVME checksum algorithm supports only the FULL_OBJECT checksum type",
        )),
        (Some(algorithm), Some(kind)) => Ok(Some((algorithm, kind))),
        // S3's defaults: CRC64NVME checksums the whole object, the others
        // combine the parts' checksums.
        (Some(Algorithm::Crc64Nvme), None) => Ok(Some((Algorithm::Crc64Nvme, Kind::FullObject))),
        (Some(algorithm), None) => Ok(Some((algorithm, Kind::Composite))),
    }
}

pub async fn create(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let (headers, user) = object_ops::object_headers(r, api.limits().user_meta_bytes_max)?;
    let checksum = upload_checksum(r)?;
    let id = format!("{:016x}{:016x}", random_u64(), random_u64());
    let key = r.key().to_owned();
    let record = UploadMeta {
        key: key.clone(),
        upload_id: id.clone(),
        initiated_ms: now_ms(),
        principal: r.caller.principal().to_owned(),
        headers,
        user,
        checksum,
    };
    let ns = uploads_ns(bucket.id);
    let record_key = upload_key(&key, &id);
    let request = Request::PutObject {
        ns,
        key: record_key.clone(),
        meta: record.encode(),
        inline: bytes::Bytes::new(),
        condition: Condition::Absent,
        free_previous: false,
    };
    match api.call_owner(ns, &record_key, request).await? {
        Reply::Written(Ok(_)) => {
            let mut response = response::xml(xml::initiate_multipart_upload_result(
                &bucket.name,
                &key,
                &id,
            ));
            if let Some((algorithm, kind)) = checksum {
                response::set_header(&mut response, "x-amz-checksum-algorithm", algorithm.name());
                response::set_header(&mut response, "x-amz-checksum-type", kind.name());
            }
            Ok(response)
        }
        other => Err(internal(format!("cannot record the upload: {other:?}"))),
    }
}

fn part_number(r: &S3Request, max: u32) -> Result<u32, S3Error> {
    r.query
        .get("partNumber")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("part number must be an integer between 1 and {max}, inclusive"),
            )
            .with_extra("ArgumentName", "partNumber")
        })
}

pub async fn upload_part(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let number = part_number(r, api.limits().parts_max)?;
    let id = upload_id(r)?;
    let key = r.key().to_owned();
    let record = upload(api, bucket.id, &key, &id).await?;
    let algorithm = record.checksum.map(|(algorithm, _)| algorithm);
    let copy = r.op == crate::request::Operation::UploadPartCopy;
    let part = if copy {
        copy_part(api, r, algorithm).await?
    } else {
        receive_part(api, r, algorithm).await?
    };
    let written = part.written;
    let meta = ObjectMeta {
        size: written.size,
        etag: hex::encode(part.md5),
        last_modified_ms: now_ms(),
        headers: Vec::new(),
        user: Vec::new(),
        layout: written.layout.clone(),
        part_sizes: Vec::new(),
        checksum: part
            .checksum
            .as_ref()
            .map(|(algorithm, raw)| checksum::Stored::full(*algorithm, raw)),
        upload_id: None,
    };
    if let Err(e) = commit(
        api,
        parts_ns(bucket.id),
        &part_key(&id, number),
        &meta,
        &written,
        Condition::None,
    )
    .await
    {
        data::discard(api, &written.layout).await;
        return Err(e);
    }
    // An upload aborted meanwhile leaves this part behind: free it.
    if upload(api, bucket.id, &key, &id).await.is_err() {
        forget_parts(api, bucket.id, &id, true).await?;
        return Err(no_such_upload(&id));
    }
    if copy {
        let checksum = object_ops::checksum_element(meta.checksum.as_ref());
        return Ok(response::xml(xml::copy_part_result(
            last_modified(meta.last_modified_ms),
            &meta.etag,
            checksum,
        )));
    }
    let mut response = with_status(StatusCode::OK, empty());
    response::set_header(&mut response, "etag", &meta.quoted_etag());
    if let Some(c) = &meta.checksum {
        response::set_header(&mut response, c.algorithm.header(), &c.value);
    }
    Ok(response)
}

async fn receive_part(
    api: &Api,
    r: &mut S3Request,
    algorithm: Option<Algorithm>,
) -> Result<Copied, S3Error> {
    data::require_length(r)?;
    let mut reader = BodyReader::new(r, api.limits().part_bytes_max)?;
    if let Some(algorithm) = algorithm {
        reader.compute(algorithm)?;
    }
    let (written, received) = data::receive(api, reader, false).await?;
    Ok(Copied {
        written,
        md5: received.md5,
        checksum: received.checksum,
    })
}

async fn copy_part(
    api: &Api,
    r: &mut S3Request,
    algorithm: Option<Algorithm>,
) -> Result<Copied, S3Error> {
    let (source, inline, _, _) = object_ops::copy_source_object(api, r).await?;
    let (start, end) = match r.header("x-amz-copy-source-range") {
        None => (0, source.size),
        Some(value) => copy_source_range(value, source.size)?,
    };
    if end - start > api.limits().part_bytes_max {
        return Err(S3Error::new(S3ErrorCode::EntityTooLarge));
    }
    object_ops::copy_data(api, &source, inline, (start, end), false, algorithm).await
}

/// `x-amz-copy-source-range: bytes=first-last` (both given, inclusive)
/// against a source of `size` bytes, as `[start, end)`. Bad syntax is
/// InvalidArgument; a range that does not lie inside the source is
/// InvalidRange (never a shorter copy).
pub fn copy_source_range(value: &str, size: u64) -> Result<(u64, u64), S3Error> {
    let syntax = || {
        S3Error::with_message(S3ErrorCode::InvalidArgument, "the x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
            .with_extra("ArgumentName", "x-amz-copy-source-range")
            .with_extra("ArgumentValue", value.to_owned())
    };
    let (first, last) = value
        .trim()
        .strip_prefix("bytes=")
        .and_then(|spec| spec.split_once('-'))
        .ok_or_else(syntax)?;
    let first: u64 = first.trim().parse().map_err(|_| syntax())?;
    let last: u64 = last.trim().parse().map_err(|_| syntax())?;
    if first > last {
        return Err(syntax());
    }
    if last >= size {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRange,
            format!("the range {first}-{last} is not inside the copy source of {size} bytes"),
        )
        .with_extra("RangeRequested", value.to_owned())
        .with_extra("ActualObjectSize", size.to_string())
        .with_status(400));
    }
    Ok((first, last + 1))
}

/// Every part record of upload `id`, in part order.
async fn parts(
    api: &Api,
    bucket: u64,
    id: &str,
    after: u32,
    limit: usize,
) -> Result<Vec<(u32, ObjectMeta)>, S3Error> {
    let prefix = format!("{id}\0");
    let after_key = (after > 0).then(|| part_key(id, after));
    let listed = api
        .list_merged(parts_ns(bucket), &prefix, after_key.as_deref(), limit)
        .await?;
    listed
        .into_iter()
        .map(|(key, meta)| {
            let number = key[prefix.len()..]
                .parse::<u32>()
                .map_err(|_| internal("damaged part key"))?;
            let meta = ObjectMeta::decode(&meta).ok_or_else(|| internal("damaged part record"))?;
            Ok((number, meta))
        })
        .collect()
}

/// Deletes the part records of upload `id`, freeing their chunks or not.
async fn forget_parts(api: &Api, bucket: u64, id: &str, free_chunks: bool) -> Result<(), S3Error> {
    let ns = parts_ns(bucket);
    loop {
        let batch = parts(api, bucket, id, 0, 1000).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for (number, _) in batch {
            let key = part_key(id, number);
            api.call_owner(
                ns,
                &key,
                Request::DeleteObject {
                    ns,
                    key: key.clone(),
                    free_chunks,
                    condition: DeleteCondition::default(),
                },
            )
            .await?;
        }
    }
}

async fn forget_upload(api: &Api, bucket: u64, key: &str, id: &str) -> Result<(), S3Error> {
    let ns = uploads_ns(bucket);
    let record_key = upload_key(key, id);
    let request = Request::DeleteObject {
        ns,
        key: record_key.clone(),
        free_chunks: false,
        condition: DeleteCondition::default(),
    };
    api.call_owner(ns, &record_key, request).await.map(|_| ())
}

pub async fn complete(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let id = upload_id(r)?;
    let key = r.key().to_owned();
    let record = match upload(api, bucket.id, &key, &id).await {
        Ok(record) => record,
        // SDKs retry a Complete whose answer was lost: the object this
        // upload made answers as the first Complete did.
        Err(e) if e.code == S3ErrorCode::NoSuchUpload => {
            return match completed_object(api, bucket.id, &key, &id).await? {
                Some(meta) => Ok(complete_reply(&bucket.name, &key, &meta)),
                None => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let condition = object_ops::write_condition(r)?;
    let reader =
        BodyReader::with_digests(r, api.limits().xml_body_bytes_max, BodyDigests::Md5Only)?;
    let requested = xml::parse_complete_multipart_upload(&read_small(reader).await?)
        .map_err(|e| e.to_s3_error())?;
    if requested
        .windows(2)
        .any(|w| w[0].part_number >= w[1].part_number)
    {
        return Err(S3Error::new(S3ErrorCode::InvalidPartOrder).with_extra("UploadId", id));
    }
    let stored = parts(api, bucket.id, &id, 0, api.limits().parts_max as usize).await?;
    let chosen = choose_parts(api, &id, &requested, &stored)?;
    let mut md5s = md5::Md5::new();
    let mut blobs = Vec::new();
    for meta in &chosen {
        let digest = hex::decode(&meta.etag).map_err(|_| internal("damaged part etag"))?;
        md5s.update(&digest);
        if let Layout::Blobs(b) = &meta.layout {
            blobs.extend(b.iter().cloned());
        }
    }
    let size: u64 = chosen.iter().map(|m| m.size).sum();
    if size > api.limits().object_bytes_max {
        return Err(S3Error::new(S3ErrorCode::EntityTooLarge));
    }
    check_object_size(r, size)?;
    let meta = ObjectMeta {
        size,
        etag: format!("{}-{}", hex::encode(md5s.finalize()), chosen.len()),
        last_modified_ms: now_ms(),
        headers: record.headers.clone(),
        user: record.user.clone(),
        layout: Layout::Blobs(blobs),
        part_sizes: chosen.iter().map(|m| m.size).collect(),
        checksum: object_checksum(r, record.checksum, &chosen)?,
        upload_id: Some(id.clone()),
    };
    let written = Written {
        layout: meta.layout.clone(),
        inline: bytes::Bytes::new(),
        size,
    };
    commit(api, objects_ns(bucket.id), &key, &meta, &written, condition).await?;
    // The chosen parts' chunks now belong to the object; free the rest.
    let used: std::collections::HashSet<u32> =
        requested.iter().map(|p| u32::from(p.part_number)).collect();
    let ns = parts_ns(bucket.id);
    for (number, _) in &stored {
        let part_record = part_key(&id, *number);
        let request = Request::DeleteObject {
            ns,
            key: part_record.clone(),
            free_chunks: !used.contains(number),
            condition: DeleteCondition::default(),
        };
        api.call_owner(ns, &part_record, request).await?;
    }
    forget_upload(api, bucket.id, &key, &id).await?;
    Ok(complete_reply(&bucket.name, &key, &meta))
}

fn complete_reply(bucket: &str, key: &str, meta: &ObjectMeta) -> http::Response<response::Body> {
    let location = format!("/{bucket}/{key}");
    response::xml(xml::complete_multipart_upload_result(
        &location,
        bucket,
        key,
        &meta.etag,
        object_ops::checksum_element(meta.checksum.as_ref()),
    ))
}

/// The object upload `id` made at `key`, if it is still the current one.
async fn completed_object(
    api: &Api,
    bucket: u64,
    key: &str,
    id: &str,
) -> Result<Option<ObjectMeta>, S3Error> {
    let current = object_ops::fetch(api, objects_ns(bucket), key, false).await?;
    Ok(current
        .map(|(meta, _)| meta)
        .filter(|meta| meta.upload_id.as_deref() == Some(id)))
}

/// The stored parts a Complete names, checked: each exists with the ETag
/// and checksums given, and every part but the last is large enough.
fn choose_parts(
    api: &Api,
    id: &str,
    requested: &[xml::CompletedPart],
    stored: &[(u32, ObjectMeta)],
) -> Result<Vec<ObjectMeta>, S3Error> {
    let mut chosen = Vec::with_capacity(requested.len());
    for (i, want) in requested.iter().enumerate() {
        let invalid = || {
            S3Error::with_message(S3ErrorCode::InvalidPart, "one or more of the specified parts could not be found or the specified entity tag or checksum did not match the part's")
                .with_extra("UploadId", id.to_owned())
                .with_extra("PartNumber", want.part_number.to_string())
                .with_extra("ETag", want.etag.clone())
        };
        let found = stored
            .iter()
            .find(|(n, _)| *n == u32::from(want.part_number));
        let Some((_, meta)) = found.filter(|(_, m)| m.etag == want.etag) else {
            return Err(invalid());
        };
        for (name, value) in &want.checksums {
            let algorithm = Algorithm::parse(name).ok_or_else(|| {
                crate::headers::unsupported_algorithm(&format!("Checksum{name}"), name)
            })?;
            let matches = meta
                .checksum
                .as_ref()
                .is_some_and(|c| c.algorithm == algorithm && c.value == *value);
            if !matches {
                return Err(invalid());
            }
        }
        if i + 1 < requested.len() && meta.size < api.limits().part_bytes_min {
            return Err(S3Error::new(S3ErrorCode::EntityTooSmall)
                .with_extra("ProposedSize", meta.size.to_string())
                .with_extra("MinSizeAllowed", api.limits().part_bytes_min.to_string())
                .with_extra("PartNumber", want.part_number.to_string()));
        }
        chosen.push(meta.clone());
    }
    Ok(chosen)
}

/// `x-amz-mp-object-size`: the size the client expects the object to have.
fn check_object_size(r: &S3Request, size: u64) -> Result<(), S3Error> {
    let Some(text) = r.header("x-amz-mp-object-size") else {
        return Ok(());
    };
    match text.trim().parse::<u64>() {
        Ok(expected) if expected == size => Ok(()),
        _ => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!("x-amz-mp-object-size {text} does not match the object's size of {size} bytes"),
        )),
    }
}

/// The completed object's checksum: the upload's algorithm combined over
/// the parts (COMPOSITE or FULL_OBJECT), checked against the
/// `x-amz-checksum-*` and `x-amz-checksum-type` headers of the Complete.
fn object_checksum(
    r: &S3Request,
    upload: Option<(Algorithm, Kind)>,
    parts: &[ObjectMeta],
) -> Result<Option<checksum::Stored>, S3Error> {
    let sent = crate::headers::checksum_value(r.headers())?;
    let sent_kind = r.header("x-amz-checksum-type").and_then(Kind::parse);
    let mismatch = |what: String| S3Error::with_message(S3ErrorCode::InvalidRequest, what);
    let Some((algorithm, kind)) = upload else {
        if sent.is_some() || sent_kind.is_some() {
            return Err(mismatch(
                "the upload was created without x-amz-checksum-algorithm".into(),
            ));
        }
        return Ok(None);
    };
    if sent_kind.is_some_and(|k| k != kind) {
        return Err(mismatch(format!(
            "the upload's checksum type is {}",
            kind.name()
        )));
    }
    let digests: Vec<(Vec<u8>, u64)> = parts
        .iter()
        .map(|p| {
            p.checksum
                .as_ref()
                .filter(|c| c.algorithm == algorithm)
                .and_then(checksum::Stored::raw)
                .map(|raw| (raw, p.size))
                .ok_or_else(|| internal("a part of a checksummed upload has no checksum"))
        })
        .collect::<Result<_, _>>()?;
    let value = match kind {
        Kind::Composite => {
            let raws: Vec<Vec<u8>> = digests.into_iter().map(|(raw, _)| raw).collect();
            checksum::composite(algorithm, &raws)
        }
        Kind::FullObject => checksum::encode(
            &checksum::combine_full(algorithm, &digests)
                .ok_or_else(|| internal("FULL_OBJECT checksum of a non-CRC algorithm"))?,
        ),
    };
    if let Some((sent_algorithm, text)) = sent {
        if sent_algorithm != algorithm {
            return Err(mismatch(format!(
                "the upload's checksum algorithm is {}, not {}",
                algorithm.name(),
                sent_algorithm.name()
            )));
        }
        if text != value {
            return Err(S3Error::with_message(
                S3ErrorCode::BadDigest,
                format!(
                    "the {} you specified did not match the calculated checksum",
                    algorithm.name()
                ),
            ));
        }
    }
    Ok(Some(checksum::Stored {
        algorithm,
        value,
        kind,
    }))
}

pub async fn abort(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let id = upload_id(r)?;
    let key = r.key().to_owned();
    let record = upload(api, bucket.id, &key, &id).await?;
    if let Some(text) = r.header("x-amz-if-match-initiated-time") {
        let expected = object_ops::parse_http_seconds(text, "x-amz-if-match-initiated-time")?;
        if expected != record.initiated_ms / 1000 {
            return Err(object_ops::precondition_failed(
                "x-amz-if-match-initiated-time",
            ));
        }
    }
    forget_upload(api, bucket.id, &key, &id).await?;
    forget_parts(api, bucket.id, &id, true).await?;
    Ok(with_status(StatusCode::NO_CONTENT, empty()))
}

/// Aborts every multipart upload of `bucket` (DeleteBucket of a bucket
/// that holds only uploads).
pub async fn abort_all(api: &Api, bucket: u64) -> Result<(), S3Error> {
    let ns = uploads_ns(bucket);
    loop {
        let batch = api.list_merged(ns, "", None, 1000).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for (_, value) in batch {
            let record =
                UploadMeta::decode(&value).ok_or_else(|| internal("damaged upload record"))?;
            forget_upload(api, bucket, &record.key, &record.upload_id).await?;
            forget_parts(api, bucket, &record.upload_id, true).await?;
        }
    }
}

pub async fn list_parts(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let id = upload_id(r)?;
    let key = r.key().to_owned();
    let record = upload(api, bucket.id, &key, &id).await?;
    let marker: u32 = r
        .query
        .get("part-number-marker")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let max = r
        .query
        .get("max-parts")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(1000);
    let mut listed = parts(api, bucket.id, &id, marker, max + 1).await?;
    let truncated = listed.len() > max;
    listed.truncate(max);
    let entries: Vec<PartEntry<'_>> = listed
        .iter()
        .map(|(n, m)| PartEntry {
            part_number: *n as u16,
            last_modified: last_modified(m.last_modified_ms),
            etag: &m.etag,
            size: m.size,
            checksum: object_ops::checksum_element(m.checksum.as_ref()),
        })
        .collect();
    let next = listed.last().map_or(0, |(n, _)| *n as u16);
    let owner_id = r.caller.owner_id();
    let result = xml::ListPartsResult {
        bucket: &bucket.name,
        key: &key,
        upload_id: &id,
        part_number_marker: marker as u16,
        next_part_number_marker: next,
        max_parts: max as u32,
        is_truncated: truncated,
        owner: Owner {
            id: &owner_id,
            display_name: Some(&record.principal),
        },
        parts: &entries,
        checksum: record.checksum.map(|(a, k)| (a.name(), k.name())),
    };
    Ok(response::xml(result.to_xml()))
}

pub async fn list_uploads(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let encoding = xml::KeyEncoding::from_query(r.query.get("encoding-type"))?;
    let prefix = r.query.get("prefix").unwrap_or("").to_owned();
    let delimiter = r
        .query
        .get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    let key_marker = r.query.get("key-marker").unwrap_or("").to_owned();
    let id_marker = r.query.get("upload-id-marker").unwrap_or("").to_owned();
    let max = r
        .query
        .get("max-uploads")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(1000);
    let after = if key_marker.is_empty() {
        None
    } else if id_marker.is_empty() {
        // Past every upload of the marker key.
        Some(format!("{key_marker}\0\u{10FFFF}"))
    } else {
        Some(upload_key(&key_marker, &id_marker))
    };
    let page = crate::list_ops::page(
        api,
        uploads_ns(bucket.id),
        &prefix,
        delimiter.as_deref(),
        after,
        max,
    )
    .await?;
    let records: Vec<UploadMeta> = page
        .entries
        .iter()
        .filter_map(|(_, m)| UploadMeta::decode(m))
        .collect();
    let owner_id = r.caller.owner_id();
    let entries: Vec<UploadEntry<'_>> = records
        .iter()
        .map(|u| UploadEntry {
            key: &u.key,
            upload_id: &u.upload_id,
            initiated: UNIX_EPOCH + Duration::from_millis(u.initiated_ms),
            owner: Owner {
                id: &owner_id,
                display_name: Some(&u.principal),
            },
        })
        .collect();
    let prefixes: Vec<&str> = page.prefixes.iter().map(String::as_str).collect();
    let last = records.last();
    let result = xml::ListMultipartUploadsResult {
        bucket: &bucket.name,
        prefix: &prefix,
        delimiter: delimiter.as_deref(),
        key_marker: &key_marker,
        upload_id_marker: &id_marker,
        next_key_marker: last.map_or("", |u| u.key.as_str()),
        next_upload_id_marker: last.map_or("", |u| u.upload_id.as_str()),
        max_uploads: max as u32,
        is_truncated: page.truncated,
        encoding,
        uploads: &entries,
        common_prefixes: &prefixes,
    };
    Ok(response::xml(result.to_xml()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_ranges_lie_inside_the_source() {
        assert_eq!(copy_source_range("bytes=0-9", 10).unwrap(), (0, 10));
        assert_eq!(copy_source_range("bytes=3-3", 10).unwrap(), (3, 4));
        for (past, code) in [
            ("bytes=0-10", S3ErrorCode::InvalidRange),
            ("bytes=10-12", S3ErrorCode::InvalidRange),
            ("bytes=5-2", S3ErrorCode::InvalidArgument),
            ("bytes=abc", S3ErrorCode::InvalidArgument),
            ("bytes=-3", S3ErrorCode::InvalidArgument),
            ("bytes=3-", S3ErrorCode::InvalidArgument),
            ("0-3", S3ErrorCode::InvalidArgument),
        ] {
            let error = copy_source_range(past, 10).unwrap_err();
            assert_eq!(error.code, code, "{past}");
            assert_eq!(error.http_status(), 400, "{past}");
        }
    }
}
