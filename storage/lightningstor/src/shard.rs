//! What one shard does for the others: every store operation on the
//! objects it owns and the chunks it holds. Requests travel over the
//! engine's mesh ([`photon_core::ShardContext::call`]); data moves as
//! `Bytes` (a pointer, not a copy).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use photon_object::Store;

use crate::meta::ObjectMeta;

/// A write precondition, checked on the owner shard under the key's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    None,
    /// `If-None-Match: *`: only if no object exists.
    Absent,
    /// `If-Match: <etag>`: only if the current object has this ETag.
    EtagIs(String),
    /// `If-Match: *`: only if an object exists.
    Exists,
}

/// A delete precondition (S3's conditional deletes), checked on the owner
/// shard under the key's lock. Every field given must hold; with any field
/// given, a missing object is `WriteFailure::Missing`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteCondition {
    /// `If-Match`: an ETag (unquoted), or `*` for "exists".
    pub etag: Option<String>,
    /// `x-amz-if-match-last-modified-time`, in whole seconds since the epoch.
    pub last_modified_s: Option<u64>,
    /// `x-amz-if-match-size`.
    pub size: Option<u64>,
}

impl DeleteCondition {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified_s.is_none() && self.size.is_none()
    }

    fn check(&self, current: Option<&photon_object::ObjectInfo>) -> Result<(), WriteFailure> {
        if self.is_empty() {
            return Ok(());
        }
        let Some(current) = current else {
            return Err(WriteFailure::Missing);
        };
        let meta = ObjectMeta::decode(&current.meta)
            .ok_or_else(|| WriteFailure::Storage("damaged object metadata".into()))?;
        let etag_holds = self
            .etag
            .as_ref()
            .is_none_or(|e| e == "*" || *e == meta.etag);
        let time_holds = self
            .last_modified_s
            .is_none_or(|s| s == meta.last_modified_ms / 1000);
        let size_holds = self.size.is_none_or(|s| s == meta.size);
        if etag_holds && time_holds && size_holds {
            Ok(())
        } else {
            Err(WriteFailure::Precondition)
        }
    }
}

/// A request to the shard that owns a key or holds a chunk.
#[derive(Debug)]
pub enum Request {
    PutObject {
        ns: u64,
        key: String,
        meta: Vec<u8>,
        inline: Bytes,
        condition: Condition,
        /// Free the chunks of the object this one replaces.
        free_previous: bool,
    },
    /// Metadata, plus `[offset, offset + len)` of the inline data when asked.
    GetObject {
        ns: u64,
        key: String,
        inline_range: Option<(u64, u64)>,
    },
    DeleteObject {
        ns: u64,
        key: String,
        free_chunks: bool,
        condition: DeleteCondition,
    },
    List {
        ns: u64,
        prefix: String,
        after: Option<String>,
        limit: usize,
    },
    PutChunk {
        blob: u64,
        index: u32,
        data: Bytes,
    },
    ReadChunk {
        blob: u64,
        index: u32,
        offset: u64,
        len: u64,
    },
    DeleteChunks {
        chunks: Vec<(u64, u32)>,
    },
    IsEmpty {
        namespaces: Vec<u64>,
    },
    /// Every chunk the metadata on this shard points at.
    ReferencedChunks,
    /// Delete the chunks found at start-up that nothing references.
    SweepOrphans {
        referenced: Arc<HashSet<(u64, u32)>>,
    },
}

/// A found object: its metadata and, when asked, a range of its inline data.
#[derive(Debug)]
pub struct Found {
    pub meta: Vec<u8>,
    pub data: Option<Result<Bytes, String>>,
}

#[derive(Debug)]
pub enum Reply {
    /// A write finished (durable); `previous` is the metadata it replaced.
    Written(Result<Option<Vec<u8>>, WriteFailure>),
    Object(Option<Found>),
    Listed(Vec<(String, Vec<u8>)>),
    Data(Result<Bytes, String>),
    Done(Result<(), String>),
    Empty(bool),
    Chunks(Vec<(u64, u32)>),
}

/// Why a write on the owner shard failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    /// The precondition did not hold (412).
    Precondition,
    /// `If-Match` named an object that does not exist (404).
    Missing,
    /// The disk is full (507 InsufficientStorage).
    NoSpace,
    /// A storage error (500), with its description for the log.
    Storage(String),
}

impl WriteFailure {
    /// A store error as a failure: ENOSPC anywhere in its causes is
    /// `NoSpace`, the rest `Storage`.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Self {
        if photon_core::health::is_no_space(e) {
            WriteFailure::NoSpace
        } else {
            WriteFailure::Storage(chain(e))
        }
    }
}

/// Runs one request against this shard's store. `free` is called with the
/// chunks a write made garbage, so the caller can delete them where they live.
pub async fn serve(store: &Store, request: Request) -> (Reply, Vec<(u64, u32)>) {
    match request {
        Request::PutObject {
            ns,
            key,
            meta,
            inline,
            condition,
            free_previous,
        } => {
            // Chunks the new version still uses are never garbage (a
            // retried CompleteMultipartUpload writes the same layout).
            let kept: HashSet<(u64, u32)> = garbage_of(&meta).into_iter().collect();
            let outcome = store
                .put_object(ns, &key, meta, &inline, |current| {
                    check(&condition, current)
                })
                .await;
            match outcome {
                Ok(outcome) => {
                    let previous = outcome.previous.map(|p| p.meta.to_vec());
                    let garbage = if free_previous {
                        let old = previous.as_deref().map(garbage_of).unwrap_or_default();
                        old.into_iter().filter(|c| !kept.contains(c)).collect()
                    } else {
                        Vec::new()
                    };
                    (Reply::Written(Ok(previous)), garbage)
                }
                Err(photon_object::PutObjectError::Precondition(refusal)) => {
                    (Reply::Written(Err(refusal)), Vec::new())
                }
                Err(e) => (Reply::Written(Err(WriteFailure::of(&e))), Vec::new()),
            }
        }
        Request::GetObject {
            ns,
            key,
            inline_range,
        } => (get_object(store, ns, &key, inline_range).await, Vec::new()),
        Request::DeleteObject {
            ns,
            key,
            free_chunks,
            condition,
        } => match store
            .delete_object_if(ns, &key, |current| condition.check(current))
            .await
        {
            Ok(previous) => {
                let previous = previous.map(|p| p.meta.to_vec());
                let garbage = match (&previous, free_chunks) {
                    (Some(meta), true) => garbage_of(meta),
                    _ => Vec::new(),
                };
                (Reply::Written(Ok(previous)), garbage)
            }
            Err(photon_object::PutObjectError::Precondition(refusal)) => {
                (Reply::Written(Err(refusal)), Vec::new())
            }
            Err(e) => (Reply::Written(Err(WriteFailure::of(&e))), Vec::new()),
        },
        Request::List {
            ns,
            prefix,
            after,
            limit,
        } => {
            let listed = store
                .list_objects(ns, &prefix, after.as_deref(), limit)
                .into_iter()
                .map(|(key, info)| (key, info.meta.to_vec()))
                .collect();
            (Reply::Listed(listed), Vec::new())
        }
        Request::PutChunk { blob, index, data } => {
            let result = store
                .put_chunk(blob, index, &data)
                .await
                .map(|_| None)
                .map_err(|e| WriteFailure::of(&e));
            (Reply::Written(result), Vec::new())
        }
        Request::ReadChunk {
            blob,
            index,
            offset,
            len,
        } => {
            let result = store
                .read_chunk(blob, index, offset, len)
                .await
                .map(Bytes::from)
                .map_err(|e| chain(&e));
            (Reply::Data(result), Vec::new())
        }
        Request::DeleteChunks { chunks } => {
            let result = store
                .delete_chunks(&chunks)
                .await
                .map(|_| ())
                .map_err(|e| chain(&e));
            (Reply::Done(result), Vec::new())
        }
        Request::IsEmpty { namespaces } => (
            Reply::Empty(namespaces.iter().all(|ns| store.bucket_is_empty(*ns))),
            Vec::new(),
        ),
        Request::ReferencedChunks => (Reply::Chunks(referenced_chunks(store)), Vec::new()),
        Request::SweepOrphans { .. } => (
            Reply::Done(Err("sweeps are run by the service".into())),
            Vec::new(),
        ),
    }
}

fn check(
    condition: &Condition,
    current: Option<&photon_object::ObjectInfo>,
) -> Result<(), WriteFailure> {
    match condition {
        Condition::None => Ok(()),
        Condition::Absent if current.is_none() => Ok(()),
        Condition::Absent => Err(WriteFailure::Precondition),
        Condition::EtagIs(_) | Condition::Exists if current.is_none() => Err(WriteFailure::Missing),
        Condition::Exists => Ok(()),
        Condition::EtagIs(etag) => {
            let current = current
                .and_then(|c| ObjectMeta::decode(&c.meta))
                .map(|m| m.etag);
            if current.as_deref() == Some(etag.as_str()) {
                Ok(())
            } else {
                Err(WriteFailure::Precondition)
            }
        }
    }
}

async fn get_object(store: &Store, ns: u64, key: &str, inline_range: Option<(u64, u64)>) -> Reply {
    let Some(handle) = store.get_object(ns, key) else {
        return Reply::Object(None);
    };
    let meta = handle.info().meta.to_vec();
    let data = match inline_range {
        None => None,
        Some((offset, len)) => {
            let len = len.min(handle.inline_len().saturating_sub(offset));
            if len == 0 {
                Some(Ok(Bytes::new()))
            } else {
                Some(
                    store
                        .read_inline(&handle, offset, len)
                        .await
                        .map(Bytes::from)
                        .map_err(|e| chain(&e)),
                )
            }
        }
    };
    Reply::Object(Some(Found { meta, data }))
}

/// The chunks of an object's metadata.
pub fn garbage_of(meta: &[u8]) -> Vec<(u64, u32)> {
    ObjectMeta::decode(meta)
        .map(|m| m.chunks())
        .unwrap_or_default()
}

fn referenced_chunks(store: &Store) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    for ns in store.buckets() {
        let mut after: Option<String> = None;
        loop {
            let page = store.list_objects(ns, "", after.as_deref(), 1024);
            let Some((last, _)) = page.last() else { break };
            let last = last.clone();
            for (_, info) in &page {
                out.extend(garbage_of(&info.meta));
            }
            after = Some(last);
        }
    }
    out
}

/// An error with its causes, for logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
