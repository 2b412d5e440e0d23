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
use storage_s3::error::{S3Error, S3ErrorCode};
use storage_s3::xml::{self, Owner, PartEntry, UploadEntry};

use crate::api::{internal, Api, S3Request, S3Result};
use crate::body::{read_small, BodyReader};
use crate::conditions::last_modified;
use crate::data::{self, Written};
use crate::meta::{
    objects_ns, part_key, parts_ns, random_u64, upload_key, uploads_ns, Layout, ObjectMeta,
    UploadMeta,
};
use crate::object_ops::{self, commit, now_ms};
use crate::response::{self, empty, with_status};
use crate::shard::{Condition, Reply, Request};

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

pub async fn create(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let (headers, user) = object_ops::object_headers(r, api.limits().user_meta_bytes_max)?;
    let id = format!("{:016x}{:016x}", random_u64(), random_u64());
    let key = r.key().to_owned();
    let record = UploadMeta {
        key: key.clone(),
        upload_id: id.clone(),
        initiated_ms: now_ms(),
        principal: r.caller.principal().to_owned(),
        headers,
        user,
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
        Reply::Written(Ok(_)) => Ok(response::xml(xml::initiate_multipart_upload_result(
            &bucket.name,
            &key,
            &id,
        ))),
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
    upload(api, bucket.id, &key, &id).await?;
    let copy = r.op == crate::request::Operation::UploadPartCopy;
    let (written, md5) = if copy {
        copy_part(api, r).await?
    } else {
        receive_part(api, r).await?
    };
    let meta = ObjectMeta {
        size: written.size,
        etag: hex::encode(md5),
        last_modified_ms: now_ms(),
        headers: Vec::new(),
        user: Vec::new(),
        layout: written.layout.clone(),
        part_sizes: Vec::new(),
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
        return Ok(response::xml(xml::copy_part_result(
            last_modified(meta.last_modified_ms),
            &meta.etag,
        )));
    }
    let mut response = with_status(StatusCode::OK, empty());
    response::set_header(&mut response, "etag", &meta.quoted_etag());
    object_ops::echo_checksums(r, &mut response);
    Ok(response)
}

async fn receive_part(api: &Api, r: &mut S3Request) -> Result<(Written, [u8; 16]), S3Error> {
    data::require_length(r)?;
    let reader = BodyReader::new(r, api.limits().part_bytes_max)?;
    let (written, received) = data::receive(api, reader, false).await?;
    Ok((written, received.md5))
}

async fn copy_part(api: &Api, r: &mut S3Request) -> Result<(Written, [u8; 16]), S3Error> {
    let (source, inline, _, _) = object_ops::copy_source_object(api, r).await?;
    let (start, end) = match r.header("x-amz-copy-source-range") {
        None => (0, source.size),
        Some(value) => {
            let range = crate::conditions::parse_range(Some(value), source.size)
                .ok()
                .flatten()
                .ok_or_else(|| S3Error::with_message(S3ErrorCode::InvalidArgument, "the x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy").with_extra("ArgumentName", "x-amz-copy-source-range"))?;
            (range.start, range.end)
        }
    };
    if end - start > api.limits().part_bytes_max {
        return Err(S3Error::new(S3ErrorCode::EntityTooLarge));
    }
    object_ops::copy_data(api, &source, inline, start, end, false).await
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
    };
    api.call_owner(ns, &record_key, request).await.map(|_| ())
}

pub async fn complete(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let id = upload_id(r)?;
    let key = r.key().to_owned();
    let record = upload(api, bucket.id, &key, &id).await?;
    let condition = object_ops::write_condition(r)?;
    let reader = BodyReader::new(r, api.limits().xml_body_bytes_max)?;
    let requested = xml::parse_complete_multipart_upload(&read_small(reader).await?)
        .map_err(|e| e.to_s3_error())?;
    if requested
        .windows(2)
        .any(|w| w[0].part_number >= w[1].part_number)
    {
        return Err(S3Error::new(S3ErrorCode::InvalidPartOrder).with_extra("UploadId", id));
    }
    let stored = parts(api, bucket.id, &id, 0, api.limits().parts_max as usize).await?;
    let mut chosen = Vec::with_capacity(requested.len());
    for (i, want) in requested.iter().enumerate() {
        let found = stored
            .iter()
            .find(|(n, _)| *n == u32::from(want.part_number));
        let Some((_, meta)) = found.filter(|(_, m)| m.etag == want.etag) else {
            return Err(S3Error::with_message(S3ErrorCode::InvalidPart, "one or more of the specified parts could not be found or the specified entity tag did not match the part's")
                .with_extra("UploadId", id.clone())
                .with_extra("PartNumber", want.part_number.to_string())
                .with_extra("ETag", want.etag.clone()));
        };
        if i + 1 < requested.len() && meta.size < api.limits().part_bytes_min {
            return Err(S3Error::new(S3ErrorCode::EntityTooSmall)
                .with_extra("ProposedSize", meta.size.to_string())
                .with_extra("MinSizeAllowed", api.limits().part_bytes_min.to_string())
                .with_extra("PartNumber", want.part_number.to_string()));
        }
        chosen.push(meta.clone());
    }
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
    let meta = ObjectMeta {
        size,
        etag: format!("{}-{}", hex::encode(md5s.finalize()), chosen.len()),
        last_modified_ms: now_ms(),
        headers: record.headers.clone(),
        user: record.user.clone(),
        layout: Layout::Blobs(blobs),
        part_sizes: chosen.iter().map(|m| m.size).collect(),
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
    for (number, part) in &stored {
        let part_record = part_key(&id, *number);
        let free = !used.contains(number);
        let ns = parts_ns(bucket.id);
        api.call_owner(
            ns,
            &part_record,
            Request::DeleteObject {
                ns,
                key: part_record.clone(),
                free_chunks: free,
            },
        )
        .await?;
        let _ = part;
    }
    forget_upload(api, bucket.id, &key, &id).await?;
    let location = format!("/{}/{}", bucket.name, key);
    Ok(response::xml(xml::complete_multipart_upload_result(
        &location,
        &bucket.name,
        &key,
        &meta.etag,
    )))
}

pub async fn abort(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let id = upload_id(r)?;
    let key = r.key().to_owned();
    upload(api, bucket.id, &key, &id).await?;
    forget_upload(api, bucket.id, &key, &id).await?;
    forget_parts(api, bucket.id, &id, true).await?;
    Ok(with_status(StatusCode::NO_CONTENT, empty()))
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
