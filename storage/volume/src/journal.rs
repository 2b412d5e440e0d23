//! The metadata journal's bytes, without I/O: records, batches and their
//! checks. The store appends one batch per sync round at a 4 KiB-aligned
//! offset; a checkpoint file is one batch holding the whole state.
//!
//! Batch = 32-byte header, then `len` bytes of records, zero-padded to 4 KiB:
//!
//! ```text
//! magic u32 | version u16 | kind u16 | seq u64 | len u32 | crc32c u32 | gen u64
//! ```
//!
//! The CRC32C covers the header (with the crc field zero) and the records.
//! `seq` counts batches from 1 in each file and `gen` names the file's
//! generation, so neither a torn tail nor a batch of another file is taken
//! for a valid one. Records are little-endian, tag first.

use crate::layout::PAGE_BYTES;

/// "PVJ1": a PhotonCloud volume journal batch.
pub const BATCH_MAGIC: u32 = 0x5056_4a31;
pub const BATCH_VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 32;
/// A batch in a journal file.
pub const KIND_JOURNAL: u16 = 1;
/// The single batch of a checkpoint file.
pub const KIND_CHECKPOINT: u16 = 2;
/// Largest batch payload accepted when decoding (bounds a corrupt length).
pub const BATCH_PAYLOAD_MAX: usize = 1 << 30;
/// Slots a shard's data file may have (64 TiB of 256 KiB slots); a record
/// naming a higher slot is corrupt, not a reason to allocate.
pub const SLOTS_MAX: u32 = 1 << 28;

/// One change of the extent maps. Replaying records in order rebuilds them;
/// `Map` carries an extent's whole entry, so replay is last-writer-wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Extent `ext` of map `map` lives in data slot `slot`; `pages` says which
    /// of its 4 KiB pages hold data (the others read as zeroes).
    Map {
        map: u64,
        ext: u64,
        slot: u32,
        pages: u64,
    },
    /// Extent `ext` of map `map` reads as zeroes.
    Unmap { map: u64, ext: u64 },
    /// Map `to` becomes a copy of map `from` (snapshot, clone).
    Copy { from: u64, to: u64 },
    /// Map `map` is gone.
    Drop { map: u64 },
}

const TAG_MAP: u8 = 1;
const TAG_UNMAP: u8 = 2;
const TAG_COPY: u8 = 3;
const TAG_DROP: u8 = 4;

/// Why bytes are not a valid batch or record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("batch is shorter than its header")]
    Short,
    #[error("not a batch (bad magic)")]
    Magic,
    #[error("unsupported batch version {0}")]
    Version(u16),
    #[error("batch of kind {found}, expected {expected}")]
    Kind { found: u16, expected: u16 },
    #[error("batch length {0} is out of bounds")]
    Length(usize),
    #[error("batch checksum mismatch")]
    Checksum,
    #[error("batch of generation {found}, expected {expected}")]
    Generation { found: u64, expected: u64 },
    #[error("batch sequence {found}, expected {expected}")]
    Sequence { found: u64, expected: u64 },
    #[error("record {0} is truncated or unknown")]
    Record(usize),
}

impl Record {
    /// Appends this record's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Record::Map {
                map,
                ext,
                slot,
                pages,
            } => {
                out.push(TAG_MAP);
                out.extend_from_slice(&map.to_le_bytes());
                out.extend_from_slice(&ext.to_le_bytes());
                out.extend_from_slice(&slot.to_le_bytes());
                out.extend_from_slice(&pages.to_le_bytes());
            }
            Record::Unmap { map, ext } => {
                out.push(TAG_UNMAP);
                out.extend_from_slice(&map.to_le_bytes());
                out.extend_from_slice(&ext.to_le_bytes());
            }
            Record::Copy { from, to } => {
                out.push(TAG_COPY);
                out.extend_from_slice(&from.to_le_bytes());
                out.extend_from_slice(&to.to_le_bytes());
            }
            Record::Drop { map } => {
                out.push(TAG_DROP);
                out.extend_from_slice(&map.to_le_bytes());
            }
        }
    }

    /// Decodes every record of a batch payload.
    pub fn decode_all(mut bytes: &[u8]) -> Result<Vec<Record>, DecodeError> {
        let mut records = Vec::new();
        while !bytes.is_empty() {
            let (record, used) = Record::decode(bytes).ok_or(DecodeError::Record(records.len()))?;
            records.push(record);
            bytes = &bytes[used..];
        }
        Ok(records)
    }

    /// One record from the front of `bytes`, with its length.
    fn decode(bytes: &[u8]) -> Option<(Record, usize)> {
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        match *bytes.first()? {
            TAG_MAP => {
                let slot = u32::from_le_bytes(bytes.get(17..21)?.try_into().ok()?);
                if slot >= SLOTS_MAX {
                    return None;
                }
                let record = Record::Map {
                    map: u64_at(1)?,
                    ext: u64_at(9)?,
                    slot,
                    pages: u64_at(21)?,
                };
                Some((record, 29))
            }
            TAG_UNMAP => Some((
                Record::Unmap {
                    map: u64_at(1)?,
                    ext: u64_at(9)?,
                },
                17,
            )),
            TAG_COPY => Some((
                Record::Copy {
                    from: u64_at(1)?,
                    to: u64_at(9)?,
                },
                17,
            )),
            TAG_DROP => Some((Record::Drop { map: u64_at(1)? }, 9)),
            _ => None,
        }
    }
}

/// Bytes of a batch holding `payload` bytes of records, padded to a page.
pub fn batch_bytes(payload: usize) -> usize {
    (HEADER_BYTES + payload).div_ceil(PAGE_BYTES as usize) * PAGE_BYTES as usize
}

/// Writes a batch (header + `payload`) into `out`, which must be
/// `batch_bytes(payload.len())` long; the padding is zeroed.
pub fn encode_batch(out: &mut [u8], kind: u16, gen: u64, seq: u64, payload: &[u8]) {
    assert_eq!(out.len(), batch_bytes(payload.len()), "batch buffer size");
    out[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
    out[4..6].copy_from_slice(&BATCH_VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&kind.to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[20..24].copy_from_slice(&0u32.to_le_bytes());
    out[24..32].copy_from_slice(&gen.to_le_bytes());
    out[HEADER_BYTES..HEADER_BYTES + payload.len()].copy_from_slice(payload);
    out[HEADER_BYTES + payload.len()..].fill(0);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[..HEADER_BYTES]),
        &out[HEADER_BYTES..HEADER_BYTES + payload.len()],
    );
    out[20..24].copy_from_slice(&crc.to_le_bytes());
}

/// A checked batch: its records and the bytes it takes (padded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub records: Vec<Record>,
    pub bytes: usize,
}

/// Checks and decodes the batch at the front of `bytes`, which must be of
/// `kind`, generation `gen` and sequence `seq`.
pub fn decode_batch(bytes: &[u8], kind: u16, gen: u64, seq: u64) -> Result<Batch, DecodeError> {
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeError::Short);
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if u32_at(0) != BATCH_MAGIC {
        return Err(DecodeError::Magic);
    }
    if u16_at(4) != BATCH_VERSION {
        return Err(DecodeError::Version(u16_at(4)));
    }
    if u16_at(6) != kind {
        return Err(DecodeError::Kind {
            found: u16_at(6),
            expected: kind,
        });
    }
    let len = u32_at(16) as usize;
    if len > BATCH_PAYLOAD_MAX || HEADER_BYTES + len > bytes.len() {
        return Err(DecodeError::Length(len));
    }
    let mut header = [0u8; HEADER_BYTES];
    header.copy_from_slice(&bytes[..HEADER_BYTES]);
    header[20..24].fill(0);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&header),
        &bytes[HEADER_BYTES..HEADER_BYTES + len],
    );
    if crc != u32_at(20) {
        return Err(DecodeError::Checksum);
    }
    if u64_at(24) != gen {
        return Err(DecodeError::Generation {
            found: u64_at(24),
            expected: gen,
        });
    }
    if u64_at(8) != seq {
        return Err(DecodeError::Sequence {
            found: u64_at(8),
            expected: seq,
        });
    }
    let records = Record::decode_all(&bytes[HEADER_BYTES..HEADER_BYTES + len])?;
    Ok(Batch {
        records,
        bytes: batch_bytes(len),
    })
}

/// What [`scan`] found in a journal file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The records of the valid batches, in order.
    pub records: Vec<Record>,
    /// Where the next batch goes.
    pub end: u64,
    /// The sequence number of the next batch.
    pub next_seq: u64,
    /// Why the batch at `end` was refused, unless the file ends there (or
    /// only zeroes follow).
    pub error: Option<DecodeError>,
}

/// The valid batches at the start of a journal file of generation `gen`.
/// Stops at the first invalid batch: batches are written one at a time,
/// each after the previous one is durable, so only the last can be torn.
pub fn scan(file: &[u8], gen: u64) -> Scan {
    let mut records = Vec::new();
    let mut at = 0usize;
    let mut seq = 1;
    loop {
        let error = if at >= file.len() {
            None
        } else {
            match decode_batch(&file[at..], KIND_JOURNAL, gen, seq) {
                Ok(batch) => {
                    records.extend(batch.records);
                    at += batch.bytes;
                    seq += 1;
                    continue;
                }
                Err(e) => (!file[at..].iter().all(|&b| b == 0)).then_some(e),
            }
        };
        return Scan {
            records,
            end: at as u64,
            next_seq: seq,
            error,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), 0..SLOTS_MAX, any::<u64>()).prop_map(
                |(map, ext, slot, pages)| Record::Map {
                    map,
                    ext,
                    slot,
                    pages
                }
            ),
            (any::<u64>(), any::<u64>()).prop_map(|(map, ext)| Record::Unmap { map, ext }),
            (any::<u64>(), any::<u64>()).prop_map(|(from, to)| Record::Copy { from, to }),
            any::<u64>().prop_map(|map| Record::Drop { map }),
        ]
    }

    fn batch(gen: u64, seq: u64, records: &[Record]) -> Vec<u8> {
        let mut payload = Vec::new();
        records.iter().for_each(|r| r.encode(&mut payload));
        let mut out = vec![0u8; batch_bytes(payload.len())];
        encode_batch(&mut out, KIND_JOURNAL, gen, seq, &payload);
        out
    }

    proptest! {
        #[test]
        fn batches_round_trip(records in proptest::collection::vec(record(), 0..200)) {
            let bytes = batch(7, 1, &records);
            let decoded = decode_batch(&bytes, KIND_JOURNAL, 7, 1).unwrap();
            prop_assert_eq!(decoded.records, records);
            prop_assert_eq!(decoded.bytes, bytes.len());
        }

        #[test]
        fn any_flipped_bit_is_refused(
            records in proptest::collection::vec(record(), 1..50),
            bit in any::<proptest::sample::Index>(),
        ) {
            let mut bytes = batch(3, 1, &records);
            let mut payload = Vec::new();
            records.iter().for_each(|r| r.encode(&mut payload));
            let covered = (HEADER_BYTES + payload.len()) * 8;
            let bit = bit.index(covered);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_batch(&bytes, KIND_JOURNAL, 3, 1).is_err());
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = decode_batch(&bytes, KIND_JOURNAL, 0, 1);
            let _ = scan(&bytes, 0);
            let _ = Record::decode_all(&bytes);
        }
    }

    #[test]
    fn scan_stops_at_a_torn_tail_and_reports_it() {
        let a = [Record::Drop { map: 1 }];
        let b = [Record::Copy { from: 1, to: 2 }];
        let c = [Record::Unmap { map: 2, ext: 9 }];
        let mut file = batch(5, 1, &a);
        file.extend(batch(5, 2, &b));
        let good_end = file.len() as u64;
        let mut torn = batch(5, 3, &c);
        torn[HEADER_BYTES] ^= 0xff;
        file.extend(torn);
        let found = scan(&file, 5);
        assert_eq!(found.records, vec![a[0], b[0]]);
        assert_eq!(found.end, good_end);
        assert_eq!(found.next_seq, 3);
        assert_eq!(found.error, Some(DecodeError::Checksum));
    }

    #[test]
    fn scan_refuses_other_generations_and_gaps() {
        let a = [Record::Drop { map: 1 }];
        let mut file = batch(5, 1, &a);
        file.extend(batch(5, 3, &a));
        let found = scan(&file, 5);
        assert_eq!(found.records.len(), 1);
        assert_eq!(found.end, PAGE_BYTES);
        assert!(matches!(found.error, Some(DecodeError::Sequence { .. })));
        let found = scan(&batch(4, 1, &a), 5);
        assert!(found.records.is_empty());
        assert_eq!(found.end, 0);
        // A zeroed tail is the normal end of a file, not an error.
        let mut file = batch(5, 1, &a);
        file.extend(vec![0u8; 8192]);
        assert_eq!(scan(&file, 5).error, None);
    }
}
