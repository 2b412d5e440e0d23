//! Moving object bytes: [`BlobWriter`] cuts incoming data into chunks and
//! writes them on the shards that hold them, several in flight; [`stream`]
//! reads a byte range back as a body, a few chunks ahead of the client.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hyper::body::Frame;
use photon_s3::error::S3Error;

use crate::api::{internal, Api};
use crate::meta::{chunk_shard, random_u64, BlobRef, Layout, ObjectMeta};
use crate::response::{full, Body, BodyError};
use crate::shard::{Reply, Request};

/// Where a write's bytes went.
#[derive(Debug)]
pub struct Written {
    pub layout: Layout,
    /// The bytes themselves when the layout is inline.
    pub inline: Bytes,
    pub size: u64,
}

/// Writes one blob from data pushed in pieces of any size.
pub struct BlobWriter<'a> {
    api: &'a Api,
    chunk_bytes: u64,
    inline_bytes_max: u64,
    buffer: BytesMut,
    blob: Option<u64>,
    next_index: u32,
    in_flight: VecDeque<glommio::Task<Result<(), S3Error>>>,
    size: u64,
}

impl<'a> BlobWriter<'a> {
    /// `inline` allows small data to stay inline (not for multipart parts).
    pub fn new(api: &'a Api, inline: bool) -> Self {
        let limits = api.limits();
        Self {
            api,
            chunk_bytes: limits.chunk_bytes,
            inline_bytes_max: if inline { limits.inline_bytes_max } else { 0 },
            buffer: BytesMut::new(),
            blob: None,
            next_index: 0,
            in_flight: VecDeque::new(),
            size: 0,
        }
    }

    pub async fn push(&mut self, data: &[u8]) -> Result<(), S3Error> {
        self.size += data.len() as u64;
        let mut data = data;
        while !data.is_empty() {
            let room = self.chunk_bytes as usize - self.buffer.len();
            if self.buffer.capacity() == 0 {
                self.buffer.reserve(self.chunk_bytes.min(1 << 20) as usize);
            }
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() as u64 == self.chunk_bytes {
                self.flush_chunk().await?;
            }
        }
        Ok(())
    }

    async fn flush_chunk(&mut self) -> Result<(), S3Error> {
        let data = self.buffer.split().freeze();
        self.buffer = BytesMut::with_capacity(self.chunk_bytes.min(1 << 20) as usize);
        let blob = *self.blob.get_or_insert_with(random_u64);
        let index = self.next_index;
        self.next_index += 1;
        while self.in_flight.len() >= self.api.limits().chunk_writes_in_flight.max(1) {
            if let Some(task) = self.in_flight.pop_front() {
                task.await?;
            }
        }
        let ctx = self.api.ctx.clone();
        let shard = chunk_shard(blob, index, ctx.shards());
        let task = self.api.ctx.spawn(async move {
            match ctx
                .call(shard, Request::PutChunk { blob, index, data })
                .await
            {
                Ok(Reply::Written(Ok(_))) => Ok(()),
                Ok(Reply::Written(Err(crate::shard::WriteFailure::NoSpace))) => {
                    Err(crate::api::insufficient_storage())
                }
                Ok(other) => Err(internal(format!("chunk write failed: {other:?}"))),
                Err(e) => Err(internal(format!("chunk write failed: {e}"))),
            }
        });
        self.in_flight.push_back(task);
        Ok(())
    }

    /// Writes what is left and waits until every chunk is durable.
    pub async fn finish(mut self) -> Result<Written, S3Error> {
        if self.blob.is_none() && self.size <= self.inline_bytes_max {
            return Ok(Written {
                layout: Layout::Inline,
                inline: std::mem::take(&mut self.buffer).freeze(),
                size: self.size,
            });
        }
        if !self.buffer.is_empty() {
            self.flush_chunk().await?;
        }
        while let Some(task) = self.in_flight.pop_front() {
            task.await?;
        }
        let blob = self.blob.unwrap_or_else(random_u64);
        Ok(Written {
            layout: Layout::Blobs(vec![BlobRef {
                blob,
                size: self.size,
                chunk_bytes: self.chunk_bytes,
            }]),
            inline: Bytes::new(),
            size: self.size,
        })
    }

    /// Gives up: waits for writes in flight, then frees every chunk written.
    pub async fn abandon(mut self) {
        while let Some(task) = self.in_flight.pop_front() {
            let _ = task.await;
        }
        if let Some(blob) = self.blob {
            let chunks = (0..self.next_index).map(|i| (blob, i)).collect();
            crate::service::free_chunks(&self.api.ctx, chunks).await;
        }
    }
}

/// Stores a request's body: every piece goes to a [`BlobWriter`] as it
/// arrives; the digests are checked at the end, and on any failure the
/// chunks written so far are freed. `inline` as for [`BlobWriter::new`].
pub async fn receive(
    api: &Api,
    mut reader: crate::body::BodyReader,
    inline: bool,
) -> Result<(Written, crate::body::Received), S3Error> {
    let mut writer = BlobWriter::new(api, inline);
    let received = loop {
        let step = match reader.next().await {
            Ok(Some(piece)) => writer.push(&piece).await.map(|_| true),
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        };
        match step {
            Ok(true) => {}
            Ok(false) => break reader.finish(),
            Err(e) => break Err(e),
        }
    };
    match received {
        Ok(received) => Ok((writer.finish().await?, received)),
        Err(e) => {
            writer.abandon().await;
            Err(e)
        }
    }
}

/// A body must announce its length (or come chunked), as S3 requires.
pub fn require_length(r: &crate::api::S3Request) -> Result<(), S3Error> {
    if r.header("content-length").is_none()
        && r.header("transfer-encoding").is_none()
        && r.header("x-amz-decoded-content-length").is_none()
    {
        return Err(S3Error::new(
            photon_s3::error::S3ErrorCode::MissingContentLength,
        ));
    }
    Ok(())
}

/// Frees the chunks of a written layout that will not be used.
pub async fn discard(api: &Api, layout: &Layout) {
    if let Layout::Blobs(blobs) = layout {
        let chunks = blobs
            .iter()
            .flat_map(|b| (0..b.chunks()).map(move |i| (b.blob, i)))
            .collect();
        crate::service::free_chunks(&api.ctx, chunks).await;
    }
}

/// One chunk piece to read: (blob, chunk index, offset in chunk, length).
type Piece = (u64, u32, u64, u64);

/// The chunk pieces covering `[start, end)` of an object.
fn pieces(meta: &ObjectMeta, start: u64, end: u64) -> Vec<Piece> {
    let Layout::Blobs(blobs) = &meta.layout else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut base = 0u64;
    for blob in blobs {
        let (lo, hi) = (base, base + blob.size);
        if hi > start && lo < end {
            let from = start.max(lo) - lo;
            let to = end.min(hi) - lo;
            for (index, offset, len) in blob.chunk_ranges(from, to) {
                out.push((blob.blob, index, offset, len));
            }
        }
        base = hi;
    }
    out
}

/// Reads one piece from the shard that holds it.
async fn read_piece(
    ctx: photon_core::ShardContext<crate::service::S3Service>,
    piece: Piece,
) -> Result<Bytes, BodyError> {
    let (blob, index, offset, len) = piece;
    let shard = chunk_shard(blob, index, ctx.shards());
    match ctx
        .call(
            shard,
            Request::ReadChunk {
                blob,
                index,
                offset,
                len,
            },
        )
        .await
    {
        Ok(Reply::Data(Ok(bytes))) if bytes.len() as u64 == len => Ok(bytes),
        Ok(Reply::Data(Ok(bytes))) => Err(format!(
            "chunk {blob:x}/{index} returned {} bytes, expected {len}",
            bytes.len()
        )
        .into()),
        Ok(other) => Err(format!("chunk {blob:x}/{index} unreadable: {other:?}").into()),
        Err(e) => Err(format!("chunk {blob:x}/{index} unreachable: {e}").into()),
    }
}

/// `[start, end)` of an object as a response body. Inline data is given
/// whole by the caller; chunked data is read a few chunks ahead.
pub fn stream(api: &Api, meta: &ObjectMeta, inline: Option<Bytes>, start: u64, end: u64) -> Body {
    if let Some(data) = inline {
        let (s, e) = (start.min(data.len() as u64), end.min(data.len() as u64));
        return full(data.slice(s as usize..e as usize));
    }
    let ctx = api.ctx.clone();
    let ahead = api.limits().chunk_reads_ahead.max(1);
    let frames = futures_util::stream::iter(pieces(meta, start, end))
        .map(move |piece| read_piece(ctx.clone(), piece))
        .buffered(ahead)
        .map(|r| r.map(Frame::data));
    crate::response::boxed(http_body_util::StreamBody::new(frames))
}

/// Reads `[start, end)` of an object whole into memory (copies).
pub async fn read_all(
    api: &Api,
    meta: &ObjectMeta,
    inline: Option<Bytes>,
    start: u64,
    end: u64,
) -> Result<Vec<Bytes>, S3Error> {
    if let Some(data) = inline {
        let (s, e) = (start.min(data.len() as u64), end.min(data.len() as u64));
        return Ok(vec![data.slice(s as usize..e as usize)]);
    }
    let mut out = Vec::new();
    for piece in pieces(meta, start, end) {
        out.push(read_piece(api.ctx.clone(), piece).await.map_err(internal)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_span_blobs() {
        let meta = ObjectMeta {
            size: 30,
            etag: String::new(),
            last_modified_ms: 0,
            headers: vec![],
            user: vec![],
            layout: Layout::Blobs(vec![
                BlobRef {
                    blob: 1,
                    size: 15,
                    chunk_bytes: 10,
                },
                BlobRef {
                    blob: 2,
                    size: 15,
                    chunk_bytes: 10,
                },
            ]),
            part_sizes: vec![15, 15],
            checksum: None,
            upload_id: None,
        };
        assert_eq!(
            pieces(&meta, 5, 25),
            vec![(1, 0, 5, 5), (1, 1, 0, 5), (2, 0, 0, 10)]
        );
        assert_eq!(pieces(&meta, 0, 30).iter().map(|p| p.3).sum::<u64>(), 30);
    }
}
