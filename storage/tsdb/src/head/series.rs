//! One series in the head: closed chunks kept compressed, one open chunk,
//! and an out-of-order buffer.

use crate::chunk::XorChunk;
use crate::labels::{Labels, Sample};

/// What appending a sample does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// After the newest sample.
    InOrder,
    /// Older than the newest but inside the out-of-order window.
    OutOfOrder,
    /// Same timestamp and value bits as a stored sample: nothing to do.
    Duplicate,
}

/// Why a sample cannot be placed (the head adds the labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    OutOfBounds { min_t: i64 },
    OutOfOrder { max_t: i64 },
    DuplicateTimestamp,
}

/// The rules every append follows, shared by `Head::check` (which sees a
/// batch's earlier samples through `stored`) and `Head::append`.
///
/// `newest` is the series' newest sample (t, value bits); `stored(t)` finds
/// the bits of a stored sample at `t`.
pub(crate) fn place(
    newest: Option<(i64, u64)>,
    min_valid_t: i64,
    ooo_window_ms: i64,
    s: Sample,
    stored: impl Fn(i64) -> Option<u64>,
) -> Result<Placement, Refusal> {
    if s.t < min_valid_t {
        return Err(Refusal::OutOfBounds { min_t: min_valid_t });
    }
    let Some((max_t, max_bits)) = newest.filter(|(max_t, _)| s.t <= *max_t) else {
        return Ok(Placement::InOrder);
    };
    if s.t == max_t {
        // The common retry case, answered without decoding a chunk.
        return match max_bits == s.v.to_bits() {
            true => Ok(Placement::Duplicate),
            false => Err(Refusal::DuplicateTimestamp),
        };
    }
    let in_window = ooo_window_ms > 0 && s.t >= max_t.saturating_sub(ooo_window_ms);
    if !in_window {
        return Err(Refusal::OutOfOrder { max_t });
    }
    match stored(s.t) {
        Some(bits) if bits == s.v.to_bits() => Ok(Placement::Duplicate),
        Some(_) => Err(Refusal::DuplicateTimestamp),
        None => Ok(Placement::OutOfOrder),
    }
}

#[derive(Debug, Default)]
struct OutOfOrder {
    /// Samples not yet compressed, sorted by time.
    samples: Vec<Sample>,
    /// Compressed samples; each chunk sorted, together unordered.
    chunks: Vec<XorChunk>,
}

#[derive(Debug)]
pub(crate) struct MemSeries {
    pub(crate) labels: Labels,
    /// Closed in-order chunks, sorted and not overlapping.
    chunks: Vec<XorChunk>,
    /// The in-order chunk being appended to; after every closed chunk.
    open: XorChunk,
    /// Out-of-order data, boxed: most series never have any, and this
    /// keeps them 40 bytes smaller.
    ooo: Option<Box<OutOfOrder>>,
    /// Newest in-order sample: time and value bits.
    newest: Option<(i64, u64)>,
}

/// True when `c` has a sample in `mint..=maxt`, decoding only chunks that
/// straddle a bound.
fn chunk_has_samples_in(c: &XorChunk, mint: i64, maxt: i64) -> bool {
    if c.is_empty() || c.max_t() < mint || c.min_t() > maxt {
        return false;
    }
    // Overlapping, so an end inside the range is a sample inside it.
    c.min_t() >= mint || c.max_t() <= maxt || c.iter().any(|s| s.t >= mint && s.t <= maxt)
}

fn chunk_value_at(c: &XorChunk, t: i64) -> Option<u64> {
    if c.is_empty() || t < c.min_t() || t > c.max_t() {
        return None;
    }
    c.iter().find(|s| s.t == t).map(|s| s.v.to_bits())
}

impl MemSeries {
    pub(crate) fn new(labels: Labels) -> Self {
        MemSeries {
            labels,
            chunks: Vec::new(),
            open: XorChunk::new(),
            ooo: None,
            newest: None,
        }
    }

    fn ooo_samples(&self) -> &[Sample] {
        self.ooo.as_ref().map_or(&[], |o| &o.samples)
    }

    fn ooo_chunks(&self) -> &[XorChunk] {
        self.ooo.as_ref().map_or(&[], |o| &o.chunks)
    }

    pub(crate) fn newest(&self) -> Option<(i64, u64)> {
        self.newest
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.newest.is_none()
    }

    /// The stored value bits at `t`, if any.
    pub(crate) fn value_at(&self, t: i64) -> Option<u64> {
        let ooo = self.ooo_samples();
        if let Ok(i) = ooo.binary_search_by_key(&t, |s| s.t) {
            return Some(ooo[i].v.to_bits());
        }
        std::iter::once(&self.open)
            .chain(&self.chunks)
            .chain(self.ooo_chunks())
            .find_map(|c| chunk_value_at(c, t))
    }

    /// Stores a sample `place` accepted.
    pub(crate) fn store(&mut self, s: Sample, placement: Placement, chunk_samples_max: usize) {
        match placement {
            Placement::Duplicate => {}
            Placement::InOrder => {
                if self.open.len() >= chunk_samples_max {
                    let mut closed = std::mem::take(&mut self.open);
                    closed.shrink_to_fit();
                    self.chunks.push(closed);
                }
                self.open.append(s.t, s.v);
                self.newest = Some((s.t, s.v.to_bits()));
            }
            Placement::OutOfOrder => {
                let ooo = self.ooo.get_or_insert_with(Box::default);
                let i = ooo.samples.partition_point(|x| x.t < s.t);
                debug_assert!(ooo.samples.get(i).is_none_or(|x| x.t != s.t));
                ooo.samples.insert(i, s);
                if ooo.samples.len() >= chunk_samples_max {
                    // Sorted, so it encodes as one chunk.
                    let samples = std::mem::take(&mut ooo.samples);
                    ooo.chunks
                        .extend(XorChunk::encode_all(&samples, chunk_samples_max));
                }
            }
        }
    }

    /// Every sample in `mint..=maxt`, sorted. Timestamps are unique across
    /// in-order and out-of-order data because `place` refuses duplicates.
    pub(crate) fn samples(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let in_range = |s: &Sample| s.t >= mint && s.t <= maxt;
        let overlaps = |c: &&XorChunk| !c.is_empty() && c.max_t() >= mint && c.min_t() <= maxt;
        let mut out: Vec<Sample> = self
            .chunks
            .iter()
            .chain(std::iter::once(&self.open))
            .filter(overlaps)
            .flat_map(|c| c.iter())
            .filter(in_range)
            .collect();
        let in_order = out.len();
        out.extend(self.ooo_samples().iter().copied().filter(in_range));
        out.extend(
            self.ooo_chunks()
                .iter()
                .filter(overlaps)
                .flat_map(|c| c.iter())
                .filter(in_range),
        );
        if out.len() > in_order {
            out.sort_unstable_by_key(|s| s.t);
        }
        debug_assert!(out.windows(2).all(|w| w[0].t < w[1].t));
        out
    }

    pub(crate) fn has_samples_in(&self, mint: i64, maxt: i64) -> bool {
        self.ooo_samples()
            .iter()
            .any(|s| s.t >= mint && s.t <= maxt)
            || std::iter::once(&self.open)
                .chain(&self.chunks)
                .chain(self.ooo_chunks())
                .any(|c| chunk_has_samples_in(c, mint, maxt))
    }

    pub(crate) fn sample_count(&self) -> usize {
        self.ooo_samples().len()
            + std::iter::once(&self.open)
                .chain(&self.chunks)
                .chain(self.ooo_chunks())
                .map(XorChunk::len)
                .sum::<usize>()
    }

    pub(crate) fn chunk_bytes(&self) -> usize {
        std::iter::once(&self.open)
            .chain(&self.chunks)
            .chain(self.ooo_chunks())
            .map(|c| c.bytes().len())
            .sum()
    }

    /// Bytes this series holds, struct, labels, chunks and buffers.
    pub(crate) fn memory_bytes(&self) -> usize {
        let label_bytes =
            self.labels.len() * 2 * std::mem::size_of::<String>() + self.labels.byte_len();
        std::mem::size_of::<Self>()
            + label_bytes
            + self.open.memory_bytes()
            + self
                .chunks
                .iter()
                .map(XorChunk::memory_bytes)
                .sum::<usize>()
            + self.ooo.as_ref().map_or(0, |o| {
                std::mem::size_of::<OutOfOrder>()
                    + o.samples.capacity() * std::mem::size_of::<Sample>()
            })
            + self
                .ooo_chunks()
                .iter()
                .map(XorChunk::memory_bytes)
                .sum::<usize>()
    }

    /// The oldest sample time, if any.
    pub(crate) fn min_t(&self) -> Option<i64> {
        let first_in_order = self.chunks.first().unwrap_or(&self.open);
        let ooo_min = self
            .ooo_samples()
            .first()
            .map(|s| s.t)
            .into_iter()
            .chain(self.ooo_chunks().iter().map(XorChunk::min_t));
        (!first_in_order.is_empty())
            .then(|| first_in_order.min_t())
            .into_iter()
            .chain(ooo_min)
            .min()
    }

    /// Removes the samples older than `before` and returns them as chunks.
    pub(crate) fn cut(&mut self, before: i64, chunk_samples_max: usize) -> Vec<XorChunk> {
        let whole = self
            .chunks
            .iter()
            .take_while(|c| c.max_t() < before)
            .count();
        let mut out: Vec<XorChunk> = self.chunks.drain(..whole).collect();
        if let Some(first) = self.chunks.first_mut() {
            if first.min_t() < before {
                let (old, new) = split_chunk(first, before, chunk_samples_max);
                out.extend(old);
                match new {
                    Some(rest) => *first = rest,
                    None => {
                        self.chunks.remove(0);
                    }
                }
            }
        } else if !self.open.is_empty() && self.open.min_t() < before {
            let (old, new) = split_chunk(&self.open, before, chunk_samples_max);
            out.extend(old);
            self.open = new.unwrap_or_default();
        }
        if self.open.is_empty() && self.chunks.is_empty() {
            self.newest = None;
        }
        let ooo_old = self.cut_ooo(before, chunk_samples_max);
        if ooo_old.is_empty() {
            return out;
        }
        // Rare: out-of-order data joins the cut; merge and re-encode.
        let mut all: Vec<Sample> = out.iter().flat_map(|c| c.iter()).chain(ooo_old).collect();
        all.sort_unstable_by_key(|s| s.t);
        XorChunk::encode_all(&all, chunk_samples_max)
    }

    /// Removes and returns out-of-order samples older than `before`.
    fn cut_ooo(&mut self, before: i64, chunk_samples_max: usize) -> Vec<Sample> {
        let Some(ooo) = self.ooo.as_mut() else {
            return Vec::new();
        };
        let keep_from = ooo.samples.partition_point(|s| s.t < before);
        let mut old: Vec<Sample> = ooo.samples.drain(..keep_from).collect();
        let mut kept_chunks = Vec::new();
        for c in std::mem::take(&mut ooo.chunks) {
            if c.min_t() >= before {
                kept_chunks.push(c);
                continue;
            }
            let (below, above): (Vec<Sample>, Vec<Sample>) = c.iter().partition(|s| s.t < before);
            old.extend(below);
            kept_chunks.extend(XorChunk::encode_all(&above, chunk_samples_max));
        }
        ooo.chunks = kept_chunks;
        if ooo.samples.is_empty() && ooo.chunks.is_empty() {
            self.ooo = None;
        }
        old
    }
}

/// Splits a chunk at `before`: the older samples as chunks, and the rest as
/// one chunk (None when nothing is left).
fn split_chunk(
    c: &XorChunk,
    before: i64,
    chunk_samples_max: usize,
) -> (Vec<XorChunk>, Option<XorChunk>) {
    let samples = c.samples();
    let at = samples.partition_point(|s| s.t < before);
    let old = XorChunk::encode_all(&samples[..at], chunk_samples_max);
    let mut rest = XorChunk::encode_all(&samples[at..], chunk_samples_max);
    debug_assert!(rest.len() <= 1);
    (old, rest.pop())
}
