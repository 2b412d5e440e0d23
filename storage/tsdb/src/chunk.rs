//! XOR chunks: Gorilla compression (Pelkonen et al., VLDB 2015) of up to a
//! few hundred samples of one series, as Prometheus stores them.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream, most
//! significant bit first:
//! - sample 0: the timestamp as a zigzag varint (whole bytes), the value as
//!   its 64 raw bits;
//! - sample 1: the timestamp delta as a varint, the value XOR-encoded;
//! - sample n >= 2: the delta of deltas in one of five buckets (`0`,
//!   `10`+14 bits, `110`+17, `1110`+20, `1111`+64), the value XOR-encoded.
//!
//! A value is XORed with the previous one: `0` when equal; `10` + the
//! meaningful bits when they fit in the previous leading/trailing zero window;
//! `11` + 5 bits of leading zeros + 6 bits of meaningful-bit count (64 as 0)
//! and then the bits otherwise. Values round-trip bit for bit, so NaN payloads (the
//! staleness marker) survive. Timestamp arithmetic wraps modulo 2^64, which
//! round-trips exactly for any strictly increasing i64 sequence.

use crate::labels::Sample;

/// Samples per chunk before the head cuts a new one, as Prometheus.
pub const SAMPLES_PER_CHUNK_MAX: usize = 120;

/// The count field is 16 bits wide.
pub const CHUNK_SAMPLES_LIMIT: usize = u16::MAX as usize;

/// Bytes before the bit stream.
const HEADER_BYTES: usize = 2;

/// "No leading/trailing window yet" (the first XOR must open one).
const NO_WINDOW: u8 = 0xff;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk shorter than its {HEADER_BYTES}-byte header")]
    NoHeader,
    #[error("chunk data ends inside sample {index}")]
    Truncated { index: usize },
    #[error("sample {index} does not come after the previous one")]
    TimestampNotIncreasing { index: usize },
    #[error("sample {index} uses an invalid XOR window")]
    BadWindow { index: usize },
    #[error("{bytes} bytes follow the last sample")]
    TrailingBytes { bytes: usize },
    #[error("the padding bits after the last sample are not zero")]
    NonZeroPadding,
}

/// Writes bits most significant first into a byte vector.
#[derive(Debug, Clone)]
struct BitWriter {
    buf: Vec<u8>,
    /// Unused low bits of the last byte.
    bits_free: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes the low `nbits` of `value`.
    fn write_bits(&mut self, value: u64, mut nbits: u8) {
        debug_assert!(nbits <= 64);
        while nbits > 0 {
            if self.bits_free == 0 {
                self.buf.push(0);
                self.bits_free = 8;
            }
            let n = self.bits_free.min(nbits);
            let chunk = (value >> (nbits - n)) & ((1u64 << n) - 1);
            let last = self.buf.last_mut().expect("a byte was pushed");
            *last |= (chunk as u8) << (self.bits_free - n);
            self.bits_free -= n;
            nbits -= n;
        }
    }
}

/// Reads bits written by `BitWriter`; `None` past the end.
#[derive(Debug, Clone)]
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl BitReader<'_> {
    fn bits_left(&self) -> usize {
        self.bytes.len() * 8 - self.pos
    }

    fn read_bit(&mut self) -> Option<bool> {
        self.read_bits(1).map(|b| b == 1)
    }

    fn read_bits(&mut self, mut nbits: u8) -> Option<u64> {
        debug_assert!(nbits <= 64);
        if self.bits_left() < usize::from(nbits) {
            return None;
        }
        let mut out: u64 = 0;
        while nbits > 0 {
            let byte = self.bytes[self.pos / 8];
            let offset = (self.pos % 8) as u8;
            let avail = 8 - offset;
            let n = avail.min(nbits);
            let chunk = (byte >> (avail - n)) & (((1u16 << n) - 1) as u8);
            // A 64-bit read shifts a zero accumulator left by 8 at most
            // once past full width; use checked_shl to keep it defined.
            out = out.checked_shl(u32::from(n)).unwrap_or(0) | u64::from(chunk);
            self.pos += usize::from(n);
            nbits -= n;
        }
        Some(out)
    }

    /// LEB128 from the bit stream (byte groups need not be aligned).
    fn read_uvarint(&mut self) -> Option<u64> {
        let mut x: u64 = 0;
        for i in 0..10u32 {
            let b = self.read_bits(8)? as u8;
            if i == 9 && b > 1 {
                return None;
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }
}

fn write_uvarint(w: &mut BitWriter, mut x: u64) {
    while x >= 0x80 {
        w.write_bits(u64::from((x as u8) | 0x80), 8);
        x >>= 7;
    }
    w.write_bits(x, 8);
}

/// Delta-of-delta buckets: (prefix bits, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

/// Whether `x` fits the bucket's two's complement range as Prometheus
/// defines it: `-(2^(n-1) - 1) ..= 2^(n-1)`.
fn fits_bits(x: i64, nbits: u8) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// An append-only Gorilla-encoded chunk.
///
/// Memory: the encoded bytes (about 1.4 to 10 bytes a sample, see the
/// crate docs) plus this struct's ~64 bytes.
#[derive(Debug, Clone)]
pub struct XorChunk {
    w: BitWriter,
    count: u16,
    min_t: i64,
    max_t: i64,
    /// The previous timestamp delta (modulo 2^64).
    delta: u64,
    value_bits: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for XorChunk {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl XorChunk {
    pub fn new() -> Self {
        XorChunk {
            w: BitWriter {
                buf: vec![0; HEADER_BYTES],
                bits_free: 0,
            },
            count: 0,
            min_t: 0,
            max_t: 0,
            delta: 0,
            value_bits: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Appends a sample; the caller guarantees `t` is greater than every
    /// earlier timestamp and that the chunk holds fewer than
    /// `CHUNK_SAMPLES_LIMIT` samples.
    pub fn append(&mut self, t: i64, v: f64) {
        assert!(usize::from(self.count) < CHUNK_SAMPLES_LIMIT, "chunk full");
        assert!(
            self.count == 0 || t > self.max_t,
            "timestamps must increase"
        );
        let bits = v.to_bits();
        match self.count {
            0 => {
                write_uvarint(&mut self.w, crate::encoding::zigzag(t));
                self.w.write_bits(bits, 64);
                self.min_t = t;
            }
            1 => {
                self.delta = (t as u64).wrapping_sub(self.max_t as u64);
                write_uvarint(&mut self.w, self.delta);
                self.write_value(bits);
            }
            _ => {
                let delta = (t as u64).wrapping_sub(self.max_t as u64);
                self.write_dod(delta.wrapping_sub(self.delta) as i64);
                self.delta = delta;
                self.write_value(bits);
            }
        }
        self.max_t = t;
        self.value_bits = bits;
        self.count += 1;
        self.w.buf[..HEADER_BYTES].copy_from_slice(&self.count.to_be_bytes());
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.w.write_bit(false);
            return;
        }
        for (prefix, prefix_len, nbits) in DOD_BUCKETS {
            if fits_bits(dod, nbits) {
                self.w.write_bits(prefix, prefix_len);
                // Two's complement, truncated to the bucket width.
                self.w.write_bits(dod as u64 & ((1u64 << nbits) - 1), nbits);
                return;
            }
        }
        self.w.write_bits(0b1111, 4);
        self.w.write_bits(dod as u64, 64);
    }

    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.value_bits;
        if xor == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        // Five bits hold at most 31 leading zeros.
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            self.w.write_bit(false);
            let sigbits = 64 - self.leading - self.trailing;
            self.w.write_bits(xor >> self.trailing, sigbits);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        let sigbits = 64 - leading - trailing;
        self.w.write_bit(true);
        self.w.write_bits(u64::from(leading), 5);
        // 64 meaningful bits are written as 0 (6 bits hold 0..=63).
        self.w.write_bits(u64::from(sigbits & 0x3f), 6);
        self.w.write_bits(xor >> trailing, sigbits);
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first timestamp (0 when empty).
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    /// The last timestamp (0 when empty).
    pub fn max_t(&self) -> i64 {
        self.max_t
    }

    /// The encoded chunk, count included; `decode` reads it back.
    pub fn bytes(&self) -> &[u8] {
        &self.w.buf
    }

    /// Heap and inline bytes this chunk holds, for memory accounting.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.w.buf.capacity()
    }

    /// Releases spare capacity once the chunk is closed.
    pub fn shrink_to_fit(&mut self) {
        self.w.buf.shrink_to_fit();
    }

    /// An iterator over encoded chunk bytes that checks them as it goes.
    pub fn decode(bytes: &[u8]) -> Result<ChunkIter<'_>, ChunkError> {
        let header: [u8; HEADER_BYTES] = bytes
            .get(..HEADER_BYTES)
            .and_then(|h| h.try_into().ok())
            .ok_or(ChunkError::NoHeader)?;
        let count = usize::from(u16::from_be_bytes(header));
        if count == 0 && bytes.len() > HEADER_BYTES {
            return Err(ChunkError::TrailingBytes {
                bytes: bytes.len() - HEADER_BYTES,
            });
        }
        Ok(ChunkIter {
            r: BitReader {
                bytes: &bytes[HEADER_BYTES..],
                pos: 0,
            },
            count,
            index: 0,
            t: 0,
            delta: 0,
            value_bits: 0,
            leading: NO_WINDOW,
            trailing: 0,
            failed: false,
            end_bits: 0,
        })
    }

    /// Decodes and checks a whole chunk.
    pub fn decode_all(bytes: &[u8]) -> Result<Vec<Sample>, ChunkError> {
        Self::decode(bytes)?.collect()
    }

    /// Rebuilds an appendable chunk from encoded bytes (from a block),
    /// checking every sample.
    pub fn from_bytes(bytes: &[u8]) -> Result<XorChunk, ChunkError> {
        let mut it = Self::decode(bytes)?;
        for s in it.by_ref() {
            s?;
        }
        let mut chunk = XorChunk::new();
        chunk.w.buf = bytes.to_vec();
        chunk.w.bits_free = ((8 - it.end_bits % 8) % 8) as u8;
        chunk.count = it.count as u16;
        chunk.delta = it.delta;
        chunk.value_bits = it.value_bits;
        chunk.leading = it.leading;
        chunk.trailing = it.trailing;
        chunk.max_t = it.t;
        if it.count > 0 {
            // The first timestamp is the leading varint.
            let mut r = BitReader {
                bytes: &bytes[HEADER_BYTES..],
                pos: 0,
            };
            chunk.min_t = r.read_uvarint().map(crate::encoding::unzigzag).unwrap_or(0);
        }
        Ok(chunk)
    }

    /// This chunk's samples. Our own encoding always decodes.
    pub fn iter(&self) -> impl Iterator<Item = Sample> + '_ {
        Self::decode(self.bytes())
            .expect("own chunk has a header")
            .map(|s| s.expect("own chunk decodes"))
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.iter().collect()
    }

    /// Encodes sorted samples into chunks of at most `per_chunk` samples.
    pub fn encode_all(samples: &[Sample], per_chunk: usize) -> Vec<XorChunk> {
        assert!(per_chunk > 0 && per_chunk <= CHUNK_SAMPLES_LIMIT);
        samples
            .chunks(per_chunk)
            .map(|part| {
                let mut c = XorChunk::new();
                for s in part {
                    c.append(s.t, s.v);
                }
                c.shrink_to_fit();
                c
            })
            .collect()
    }
}

/// Decodes a chunk, yielding an error (once, then nothing) on bad data.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    count: usize,
    index: usize,
    t: i64,
    delta: u64,
    value_bits: u64,
    leading: u8,
    trailing: u8,
    failed: bool,
    /// Bits of the stream the samples used (set after the last one).
    end_bits: usize,
}

impl ChunkIter<'_> {
    /// Samples the header announces.
    pub fn count(&self) -> usize {
        self.count
    }

    fn read_sample(&mut self) -> Result<Sample, ChunkError> {
        let index = self.index;
        let truncated = ChunkError::Truncated { index };
        match index {
            0 => {
                let t = self.r.read_uvarint().ok_or(truncated.clone())?;
                self.t = crate::encoding::unzigzag(t);
                self.value_bits = self.r.read_bits(64).ok_or(truncated)?;
            }
            1 => {
                self.delta = self.r.read_uvarint().ok_or(truncated)?;
                self.advance_t()?;
                self.read_value()?;
            }
            _ => {
                let dod = self.read_dod().ok_or(truncated)?;
                self.delta = self.delta.wrapping_add(dod as u64);
                self.advance_t()?;
                self.read_value()?;
            }
        }
        Ok(Sample {
            t: self.t,
            v: f64::from_bits(self.value_bits),
        })
    }

    fn advance_t(&mut self) -> Result<(), ChunkError> {
        let t = (self.t as u64).wrapping_add(self.delta) as i64;
        if t <= self.t {
            return Err(ChunkError::TimestampNotIncreasing { index: self.index });
        }
        self.t = t;
        Ok(())
    }

    fn read_dod(&mut self) -> Option<i64> {
        let mut prefix_len = 0;
        while prefix_len < 4 && self.r.read_bit()? {
            prefix_len += 1;
        }
        let nbits = match prefix_len {
            0 => return Some(0),
            1..=3 => DOD_BUCKETS[prefix_len - 1].2,
            _ => return self.r.read_bits(64).map(|x| x as i64),
        };
        let raw = self.r.read_bits(nbits)?;
        // Sign-extend from the bucket width, matching `fits_bits`.
        let half = 1u64 << (nbits - 1);
        Some(if raw > half {
            raw as i64 - (1i64 << nbits)
        } else {
            raw as i64
        })
    }

    fn read_value(&mut self) -> Result<(), ChunkError> {
        let index = self.index;
        let truncated = ChunkError::Truncated { index };
        if !self.r.read_bit().ok_or(truncated.clone())? {
            return Ok(());
        }
        if self.r.read_bit().ok_or(truncated.clone())? {
            let leading = self.r.read_bits(5).ok_or(truncated.clone())? as u8;
            let mut sigbits = self.r.read_bits(6).ok_or(truncated.clone())? as u8;
            if sigbits == 0 {
                sigbits = 64;
            }
            if leading + sigbits > 64 {
                return Err(ChunkError::BadWindow { index });
            }
            self.leading = leading;
            self.trailing = 64 - leading - sigbits;
        } else if self.leading == NO_WINDOW {
            return Err(ChunkError::BadWindow { index });
        }
        let sigbits = 64 - self.leading - self.trailing;
        let bits = self.r.read_bits(sigbits).ok_or(truncated)?;
        // `sigbits` is at least 1 here, so the shift is below 64.
        self.value_bits ^= bits << self.trailing;
        Ok(())
    }
}

impl ChunkIter<'_> {
    /// After the last sample only zero padding of the last byte may follow
    /// (`XorChunk::from_bytes` appends into it).
    fn check_end(&mut self) -> Result<(), ChunkError> {
        self.end_bits = self.r.pos;
        let left = self.r.bits_left();
        if left >= 8 {
            return Err(ChunkError::TrailingBytes { bytes: left / 8 });
        }
        if left > 0 && self.r.read_bits(left as u8) != Some(0) {
            return Err(ChunkError::NonZeroPadding);
        }
        Ok(())
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<Sample, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.index >= self.count {
            return None;
        }
        let mut result = self.read_sample();
        self.index += 1;
        if result.is_ok() && self.index == self.count {
            result = self.check_end().and(result);
        }
        self.failed = result.is_err();
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.count - self.index.min(self.count)))
    }
}

#[cfg(test)]
pub(crate) mod tests;
