//! Listings: ListObjectsV2, ListObjects (v1) and ListObjectVersions, as a
//! k-way merge of every shard's sorted index, with delimiters rolled up
//! into common prefixes.

use base64::Engine as _;
use photon_s3::error::{S3Error, S3ErrorCode};
use photon_s3::xml::{self, KeyEncoding, ObjectEntry, Owner};

use crate::api::{Api, S3Request, S3Result};
use crate::conditions::last_modified;
use crate::meta::{objects_ns, ObjectMeta};
use crate::request::Operation;
use crate::response;

/// Appended to a common prefix to step past every key under it: no valid
/// UTF-8 key continues a prefix with a byte above U+10FFFF's.
const PAST_PREFIX: &str = "\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}";

/// One page of a listing: raw entries (key, stored bytes) and rolled-up
/// common prefixes.
#[derive(Debug, Default)]
pub struct Page {
    pub entries: Vec<(String, Vec<u8>)>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// Where the next page starts (exclusive), when truncated.
    pub next_after: Option<String>,
    /// The last key or prefix returned (for v1's NextMarker).
    pub last: Option<String>,
}

/// The part of a stored key a delimiter applies to: the whole key, or for
/// upload records (`<key>\0<upload id>`) the object key.
fn delimited_part(key: &str) -> &str {
    key.split('\0').next().unwrap_or(key)
}

/// The common prefix `key` rolls up into under `prefix` and `delimiter`.
fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let delimiter = delimiter.filter(|d| !d.is_empty())?;
    let part = delimited_part(key);
    let rest = part.get(prefix.len()..)?;
    rest.find(delimiter)
        .map(|at| part[..prefix.len() + at + delimiter.len()].to_owned())
}

/// Lists up to `max` keys and prefixes of `ns` after `after`. A marker
/// inside a common prefix skips the whole prefix (S3 never repeats one).
pub async fn page(
    api: &Api,
    ns: u64,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<String>,
    max: usize,
) -> Result<Page, S3Error> {
    let mut page = Page::default();
    let mut cursor = match after {
        Some(marker) if marker.starts_with(prefix) => {
            match common_prefix(&marker, prefix, delimiter) {
                Some(common) => Some(format!("{common}{PAST_PREFIX}")),
                None => Some(marker),
            }
        }
        other => other,
    };
    if max == 0 {
        return Ok(page);
    }
    loop {
        let want = max - (page.entries.len() + page.prefixes.len()) + 1;
        let batch = api.list_merged(ns, prefix, cursor.as_deref(), want).await?;
        let exhausted = batch.len() < want;
        let mut restart = false;
        for (key, value) in batch {
            if page.entries.len() + page.prefixes.len() == max {
                page.truncated = true;
                page.next_after = cursor.clone();
                return Ok(page);
            }
            match common_prefix(&key, prefix, delimiter) {
                Some(common) => {
                    cursor = Some(format!("{common}{PAST_PREFIX}"));
                    page.last = Some(common.clone());
                    page.prefixes.push(common);
                    restart = true;
                    break;
                }
                None => {
                    cursor = Some(key.clone());
                    page.last = Some(key.clone());
                    page.entries.push((key, value));
                }
            }
        }
        if !restart && exhausted {
            return Ok(page);
        }
    }
}

/// The objects of a page, decoded.
fn objects(page: &Page) -> Result<Vec<(&str, ObjectMeta)>, S3Error> {
    page.entries
        .iter()
        .map(|(key, value)| {
            ObjectMeta::decode(value)
                .map(|meta| (key.as_str(), meta))
                .ok_or_else(|| crate::api::internal("damaged object metadata"))
        })
        .collect()
}

fn max_keys(r: &S3Request, name: &str, limit: usize) -> Result<usize, S3Error> {
    match r.query.get(name) {
        None => Ok(limit),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| (n as usize).min(limit))
            .ok_or_else(|| {
                S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    format!("{name} must be a non-negative integer"),
                )
                .with_extra("ArgumentName", name)
            }),
    }
}

fn encode_token(cursor: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cursor.as_bytes())
}

fn decode_token(token: &str) -> Result<String, S3Error> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "the continuation token provided is incorrect",
            )
            .with_extra("ArgumentName", "continuation-token")
        })
}

pub async fn list_objects(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let encoding = KeyEncoding::from_query(r.query.get("encoding-type"))?;
    let prefix = r.query.get("prefix").unwrap_or("").to_owned();
    let delimiter = r
        .query
        .get("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    let max = max_keys(r, "max-keys", api.limits().list_keys_max)?;
    let owner_id = r.caller.owner_id();
    let owner = Owner {
        id: &owner_id,
        display_name: Some(r.caller.principal()),
    };
    let ns = objects_ns(bucket.id);
    match r.op {
        Operation::ListObjectsV2 => {
            let token = r
                .query
                .get("continuation-token")
                .map(decode_token)
                .transpose()?;
            let start_after = r.query.get("start-after").map(str::to_owned);
            let after = match (&token, &start_after) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(s)) => Some(s.clone()),
                _ => None,
            };
            let page = page(api, ns, &prefix, delimiter.as_deref(), after, max).await?;
            let decoded = objects(&page)?;
            let entries = entries(&decoded);
            let prefixes: Vec<&str> = page.prefixes.iter().map(String::as_str).collect();
            let next = page.next_after.as_deref().map(encode_token);
            let fetch_owner = r.query.get("fetch-owner") == Some("true");
            let result = xml::ListObjectsV2Result {
                bucket: &bucket.name,
                prefix: &prefix,
                delimiter: delimiter.as_deref(),
                max_keys: max as u32,
                is_truncated: page.truncated,
                continuation_token: r.query.get("continuation-token"),
                next_continuation_token: next.as_deref(),
                start_after: start_after.as_deref(),
                encoding,
                owner: fetch_owner.then_some(owner),
                objects: &entries,
                common_prefixes: &prefixes,
            };
            Ok(response::xml(result.to_xml()))
        }
        Operation::ListObjectVersions => {
            let key_marker = r.query.get("key-marker").unwrap_or("").to_owned();
            let after = (!key_marker.is_empty()).then(|| key_marker.clone());
            let page = page(api, ns, &prefix, delimiter.as_deref(), after, max).await?;
            let decoded = objects(&page)?;
            let entries = entries(&decoded);
            let prefixes: Vec<&str> = page.prefixes.iter().map(String::as_str).collect();
            let result = xml::ListObjectVersionsResult {
                bucket: &bucket.name,
                prefix: &prefix,
                key_marker: &key_marker,
                version_id_marker: r.query.get("version-id-marker").unwrap_or(""),
                next_key_marker: page.truncated.then_some(page.last.as_deref()).flatten(),
                next_version_id_marker: page.truncated.then_some("null"),
                delimiter: delimiter.as_deref(),
                max_keys: max as u32,
                is_truncated: page.truncated,
                encoding,
                owner: Some(owner),
                objects: &entries,
                common_prefixes: &prefixes,
            };
            Ok(response::xml(result.to_xml()))
        }
        _ => {
            let marker = r.query.get("marker").unwrap_or("").to_owned();
            let after = (!marker.is_empty()).then(|| marker.clone());
            let page = page(api, ns, &prefix, delimiter.as_deref(), after, max).await?;
            let decoded = objects(&page)?;
            let entries = entries(&decoded);
            let prefixes: Vec<&str> = page.prefixes.iter().map(String::as_str).collect();
            let next_marker = (page.truncated && delimiter.is_some())
                .then_some(page.last.as_deref())
                .flatten();
            let result = xml::ListObjectsV1Result {
                bucket: &bucket.name,
                prefix: &prefix,
                marker: &marker,
                next_marker,
                delimiter: delimiter.as_deref(),
                max_keys: max as u32,
                is_truncated: page.truncated,
                encoding,
                owner: Some(owner),
                objects: &entries,
                common_prefixes: &prefixes,
            };
            Ok(response::xml(result.to_xml()))
        }
    }
}

fn entries<'a>(objects: &'a [(&'a str, ObjectMeta)]) -> Vec<ObjectEntry<'a>> {
    objects
        .iter()
        .map(|(key, meta)| ObjectEntry {
            key,
            last_modified: last_modified(meta.last_modified_ms),
            etag: &meta.etag,
            size: meta.size,
        })
        .collect()
}
