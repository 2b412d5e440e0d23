//! The write-ahead log's record codec. The service owns the files; this
//! module turns records into framed bytes and back.
//!
//! Frame (all little-endian): payload length u32 | crc32c u32 of the type
//! byte and the payload | type u8 | payload.
//!
//! - Series (type 1): ref u64 | label count uvarint | per label: name
//!   length uvarint, name, value length uvarint, value.
//! - Samples (type 2): count uvarint | base ref u64 | base t i64 | per
//!   sample: zigzag varint of ref - base ref, zigzag varint of t - base t,
//!   value bits u64 (exact, so NaN payloads and the staleness marker
//!   survive). Arithmetic wraps, which round-trips any i64/u64.
//!
//! Read policy: the reader yields records up to the first bad frame and
//! then classifies what it found (`WalEnd`):
//! - a bad frame with no valid frame anywhere after it is a torn tail (a
//!   crash during a write): `valid_len()` is where to truncate the file;
//! - a bad frame followed by at least one valid frame, or a frame whose
//!   checksum is right but whose payload does not decode, is corruption:
//!   good data follows or a writer bug shows, so the service must refuse to
//!   truncate silently (`corrupt_in_middle()`).
//!
//! The scan for later frames tries every byte offset, so a recycled file
//! holding old frames past its tail would read as corruption: the service
//! must create segment files fresh (it does: `create_new`).

use crate::encoding::{put_uvarint, put_varint, Decoder};
use crate::labels::{Labels, Sample};
use crate::SeriesRef;

/// Frame header: length, checksum, type.
pub const FRAME_HEADER_BYTES: usize = 9;
/// The largest payload a frame may carry; longer lengths are corruption.
pub const RECORD_BYTES_MAX: usize = 16 << 20;
/// `encode` splits Samples records into frames of at most this many.
pub const SAMPLES_PER_RECORD_MAX: usize = 64 * 1024;

const TYPE_SERIES: u8 = 1;
const TYPE_SAMPLES: u8 = 2;
/// Worst-case encoded sample: two 10-byte varints and the value.
const SAMPLE_BYTES_MAX: usize = 28;

const _: () = assert!(SAMPLES_PER_RECORD_MAX * SAMPLE_BYTES_MAX + 64 <= RECORD_BYTES_MAX);

#[derive(Debug, Clone, PartialEq)]
pub enum WalRecord {
    /// A series was created with this ref; comes before its samples.
    Series {
        r: SeriesRef,
        labels: Labels,
    },
    Samples(Vec<(SeriesRef, Sample)>),
}

/// Appends the framed record to `out`. A Samples record longer than
/// `SAMPLES_PER_RECORD_MAX` becomes several frames (replay is the same).
/// Panics if a Series record exceeds `RECORD_BYTES_MAX`: the service's
/// label limits at ingestion must keep label sets far below it.
pub fn encode(record: &WalRecord, out: &mut Vec<u8>) {
    match record {
        WalRecord::Series { r, labels } => {
            frame(out, TYPE_SERIES, |p| {
                p.extend_from_slice(&r.to_le_bytes());
                put_uvarint(p, labels.len() as u64);
                for (name, value) in labels.iter() {
                    put_uvarint(p, name.len() as u64);
                    p.extend_from_slice(name.as_bytes());
                    put_uvarint(p, value.len() as u64);
                    p.extend_from_slice(value.as_bytes());
                }
            });
        }
        WalRecord::Samples(samples) if samples.is_empty() => {
            // Written anyway so that records round-trip one to one.
            frame(out, TYPE_SAMPLES, |p| encode_samples(&[], p));
        }
        WalRecord::Samples(samples) => {
            for part in samples.chunks(SAMPLES_PER_RECORD_MAX) {
                frame(out, TYPE_SAMPLES, |p| encode_samples(part, p));
            }
        }
    }
}

fn encode_samples(samples: &[(SeriesRef, Sample)], p: &mut Vec<u8>) {
    put_uvarint(p, samples.len() as u64);
    let (base_ref, base_t) = samples.first().map_or((0, 0), |(r, s)| (*r, s.t));
    p.extend_from_slice(&base_ref.to_le_bytes());
    p.extend_from_slice(&base_t.to_le_bytes());
    for (r, s) in samples {
        put_varint(p, r.wrapping_sub(base_ref) as i64);
        put_varint(p, s.t.wrapping_sub(base_t));
        p.extend_from_slice(&s.v.to_bits().to_le_bytes());
    }
}

/// Writes a frame around the payload `fill` appends.
fn frame(out: &mut Vec<u8>, kind: u8, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.push(kind);
    fill(out);
    let payload_len = out.len() - start - FRAME_HEADER_BYTES;
    assert!(
        payload_len <= RECORD_BYTES_MAX,
        "WAL record of {payload_len} bytes"
    );
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// How reading ended (see the module docs for the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalEnd {
    /// Still reading, or every byte was a valid frame.
    Clean,
    /// From `offset` on the bytes are a partial or garbled last write.
    TornTail { offset: usize },
    /// The frame at `offset` is bad, and a valid frame starts at
    /// `next_valid` (None: the bad frame's checksum held but its payload
    /// did not decode).
    Corrupt {
        offset: usize,
        next_valid: Option<usize>,
    },
}

/// Yields the records of one segment's bytes.
#[derive(Debug)]
pub struct WalReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: WalEnd,
}

impl<'a> WalReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        WalReader {
            bytes,
            pos: 0,
            end: WalEnd::Clean,
        }
    }

    /// Bytes of valid frames read so far; once the iterator has ended,
    /// the length to truncate a torn segment to.
    pub fn valid_len(&self) -> usize {
        self.pos
    }

    pub fn end(&self) -> WalEnd {
        self.end
    }

    /// Whether reading stopped at corruption rather than a torn tail.
    pub fn corrupt_in_middle(&self) -> bool {
        matches!(self.end, WalEnd::Corrupt { .. })
    }

    /// Checks the frame at `at`: its type and payload when whole and sound.
    fn frame_at(&self, at: usize) -> Option<(u8, &'a [u8])> {
        let mut d = Decoder::new(self.bytes.get(at..)?);
        let len = d.u32()? as usize;
        let crc = d.u32()?;
        if len > RECORD_BYTES_MAX {
            return None;
        }
        let body = d.take(1 + len)?;
        if !matches!(body[0], TYPE_SERIES | TYPE_SAMPLES) || crc32c::crc32c(body) != crc {
            return None;
        }
        Some((body[0], &body[1..]))
    }

    fn stop(&mut self, next_valid: Option<usize>, torn: bool) {
        self.end = if torn {
            WalEnd::TornTail { offset: self.pos }
        } else {
            WalEnd::Corrupt {
                offset: self.pos,
                next_valid,
            }
        };
    }
}

impl Iterator for WalReader<'_> {
    type Item = WalRecord;

    fn next(&mut self) -> Option<WalRecord> {
        if self.end != WalEnd::Clean || self.pos >= self.bytes.len() {
            return None;
        }
        let Some((kind, payload)) = self.frame_at(self.pos) else {
            let next_valid =
                (self.pos + 1..self.bytes.len()).find(|&at| self.frame_at(at).is_some());
            self.stop(next_valid, next_valid.is_none());
            return None;
        };
        let record = match kind {
            TYPE_SERIES => decode_series(payload),
            _ => decode_samples(payload),
        };
        match record {
            Some(record) => {
                self.pos += FRAME_HEADER_BYTES + payload.len();
                Some(record)
            }
            None => {
                self.stop(None, false);
                None
            }
        }
    }
}

fn decode_series(payload: &[u8]) -> Option<WalRecord> {
    let mut d = Decoder::new(payload);
    let r = d.u64()?;
    // A label takes at least 3 bytes (two lengths, a non-empty value),
    // which bounds the allocation.
    let count = d.uvarint_max(d.remaining() / 3)?;
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(count);
    for _ in 0..count {
        let name = read_str(&mut d)?;
        let value = read_str(&mut d)?;
        // Labels' invariants: sorted unique names, no empty values.
        if value.is_empty() || pairs.last().is_some_and(|(last, _)| *last >= name) {
            return None;
        }
        pairs.push((name, value));
    }
    d.is_empty().then(|| WalRecord::Series {
        r,
        labels: Labels::from_sorted(pairs),
    })
}

fn read_str(d: &mut Decoder<'_>) -> Option<String> {
    let len = d.uvarint_max(RECORD_BYTES_MAX)?;
    let bytes = d.take(len)?;
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

fn decode_samples(payload: &[u8]) -> Option<WalRecord> {
    let mut d = Decoder::new(payload);
    // Each sample takes at least 10 bytes, which bounds the allocation.
    let count = d.uvarint_max(payload.len() / 10)?;
    let base_ref = d.u64()?;
    let base_t = d.i64()?;
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let r = base_ref.wrapping_add(d.varint()? as u64);
        let t = base_t.wrapping_add(d.varint()?);
        let v = f64::from_bits(d.u64()?);
        samples.push((r, Sample { t, v }));
    }
    d.is_empty().then_some(WalRecord::Samples(samples))
}

#[cfg(test)]
mod tests;
