//! Compaction: several blocks into one.

use super::read::ChunkMeta;
use super::write::merge_samples;
use super::*;
use crate::chunk::{XorChunk, SAMPLES_PER_CHUNK_MAX};
use crate::labels::{Labels, Sample};

/// Where a block's series cursor stands.
struct Cursor<'a, B: AsRef<[u8]>> {
    block: &'a Block<B>,
    index: u32,
    current: Option<(Labels, Vec<ChunkMeta>)>,
}

impl<B: AsRef<[u8]>> Cursor<'_, B> {
    fn advance(&mut self) -> Result<(), BlockError> {
        self.current = if (self.index as usize) < self.block.series_count() {
            let entry = self.block.series_entry(self.index)?;
            self.index += 1;
            Some(entry)
        } else {
            None
        };
        Ok(())
    }
}

/// Merges blocks into a new block's bytes, dropping samples older than
/// `keep_from` (retention). Series are matched by labels; when blocks
/// overlap and hold the same timestamp, the block later in `blocks` wins.
/// Chunks that need no change are copied without re-encoding.
pub fn merge<B: AsRef<[u8]>>(blocks: &[&Block<B>], keep_from: i64) -> Result<Vec<u8>, BlockError> {
    let mut cursors: Vec<Cursor<'_, B>> = blocks
        .iter()
        .map(|&block| Cursor {
            block,
            index: 0,
            current: None,
        })
        .collect();
    for c in &mut cursors {
        c.advance()?;
    }
    let mut out: Vec<(Labels, Vec<XorChunk>)> = Vec::new();
    // Blocks list series sorted by labels: take the smallest each round.
    while let Some(labels) = cursors
        .iter()
        .filter_map(|c| c.current.as_ref().map(|(l, _)| l))
        .min()
        .cloned()
    {
        let mut parts: Vec<(usize, Vec<ChunkMeta>)> = Vec::new();
        for (i, c) in cursors.iter_mut().enumerate() {
            if c.current.as_ref().is_some_and(|(l, _)| *l == labels) {
                let (_, metas) = c.current.take().expect("checked");
                parts.push((i, metas));
                c.advance()?;
            }
        }
        let chunks = merge_series(&cursors, &parts, keep_from)?;
        if !chunks.is_empty() {
            out.push((labels, chunks));
        }
    }
    let mint = blocks
        .iter()
        .map(|b| b.mint())
        .min()
        .unwrap_or(keep_from)
        .max(keep_from);
    let maxt = blocks
        .iter()
        .map(|b| b.maxt())
        .max()
        .unwrap_or(mint)
        .max(mint);
    Ok(write(mint, maxt, out))
}

/// One series' chunks from the blocks that hold it.
fn merge_series<B: AsRef<[u8]>>(
    cursors: &[Cursor<'_, B>],
    parts: &[(usize, Vec<ChunkMeta>)],
    keep_from: i64,
) -> Result<Vec<XorChunk>, BlockError> {
    let index_of = |i: usize| cursors[i].index - 1;
    if let [(i, metas)] = parts {
        if metas.iter().all(|m| m.min_t >= keep_from) {
            // One block and nothing expired: copy, checking each chunk.
            let block = cursors[*i].block;
            return metas
                .iter()
                .map(|m| {
                    XorChunk::from_bytes(block.chunk_bytes(m)).map_err(|source| BlockError::Chunk {
                        index: index_of(*i),
                        source,
                    })
                })
                .collect();
        }
    }
    let mut lists: Vec<Vec<Sample>> = Vec::with_capacity(parts.len());
    for (i, metas) in parts {
        let block = cursors[*i].block;
        let mut samples = Vec::new();
        for m in metas.iter().filter(|m| m.max_t >= keep_from) {
            samples.extend(
                block
                    .chunk_samples(index_of(*i), m)?
                    .into_iter()
                    .filter(|s| s.t >= keep_from),
            );
        }
        lists.push(samples);
    }
    Ok(XorChunk::encode_all(
        &merge_samples(lists),
        SAMPLES_PER_CHUNK_MAX,
    ))
}
