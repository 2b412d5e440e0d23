//! Fuzz checks for the parsers that read disk data. Each takes any bytes
//! and must not panic; the fuzz targets and the proptests call them.
//!
//! Random bytes rarely get past a checksum, so each check also builds a
//! well-sealed frame or block around the input, which sends the fuzzer's
//! bytes into the section and payload parsers.

use crate::block::{self, Block, HEADER_BYTES, SECTION_COUNT, TOC_BYTES};
use crate::labels::{MatchOp, Matcher};
use crate::wal::WalReader;

/// Label names whose queries a check runs at most.
const NAMES_QUERIED_MAX: usize = 4;

/// Opens `data` as a block and, if it opens, queries it; then does the same
/// with `data` carved into sections under valid checksums.
pub fn block_bytes(data: &[u8]) {
    query_block(data);
    query_block(&seal_sections(data));
}

/// Reads every WAL record in `data`; then does the same with `data` cut
/// into payloads under valid frames.
pub fn wal_bytes(data: &[u8]) {
    read_wal(data);
    read_wal(&seal_frames(data));
}

fn read_wal(data: &[u8]) {
    let mut reader = WalReader::new(data);
    for _ in reader.by_ref() {}
    assert!(reader.valid_len() <= data.len());
}

pub(crate) fn query_block(data: &[u8]) {
    let Ok(block) = Block::open(data) else {
        return;
    };
    let (lo, hi) = (i64::MIN, i64::MAX);
    let mid = block.mint() / 2 + block.maxt() / 2;
    let names = block.label_names(&[], lo, hi).unwrap_or_default();
    let _ = block.label_names(&[], mid, hi);
    for name in names.iter().take(NAMES_QUERIED_MAX) {
        let _ = block.label_values(name, &[], lo, hi);
        let _ = block.label_values(name, &[], lo, mid);
        let values = block.label_values(name, &[], lo, hi).unwrap_or_default();
        let mut matchers = vec![Matcher::new(name, MatchOp::Regex, ".+").expect("valid regex")];
        let _ = block.select(&matchers, lo, hi);
        if let Some(value) = values.first() {
            matchers.push(Matcher::new(name, MatchOp::NotEqual, value).expect("no regex"));
            matchers.push(Matcher::new("other", MatchOp::Equal, "").expect("no regex"));
        }
        let _ = block.select(&matchers, mid, hi);
        let _ = block.series(&matchers, lo, mid);
    }
    let _ = block.select(&[], lo, hi);
    if let Ok(merged) = block::merge(&[&block], mid) {
        // What we write must open.
        assert!(Block::open(merged).is_ok(), "a merged block does not open");
    }
}

/// `data` as the six sections of a block with correct checksums: the first
/// 12 bytes give each section's length (u16, cut to what is left).
fn seal_sections(data: &[u8]) -> Vec<u8> {
    let (lens, mut rest) = data.split_at(data.len().min(2 * SECTION_COUNT));
    let mut sections = Vec::with_capacity(SECTION_COUNT);
    for i in 0..SECTION_COUNT {
        let len = match lens.get(2 * i..2 * i + 2) {
            Some(b) if i + 1 < SECTION_COUNT => {
                usize::from(u16::from_le_bytes([b[0], b[1]])).min(rest.len())
            }
            _ => rest.len(),
        };
        let (section, tail) = rest.split_at(len);
        sections.push(section.to_vec());
        rest = tail;
    }
    let out = block::assemble(0, 1000, &sections);
    debug_assert!(out.len() >= HEADER_BYTES + TOC_BYTES);
    out
}

/// `data` as WAL payloads under valid frames: a length byte, a type byte,
/// then that many payload bytes, repeated.
fn seal_frames(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [len, kind, rest @ ..] = data {
        let len = usize::from(*len).min(rest.len());
        let (payload, tail) = rest.split_at(len);
        let start = out.len();
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(kind % 3);
        out.extend_from_slice(payload);
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        data = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn wal_garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..400)) {
            wal_bytes(&data);
        }
    }

    #[test]
    fn sealed_frames_reach_the_payload_parsers() {
        // A Series frame (type 1) with a ref and no labels.
        let mut data = vec![9u8, 1];
        data.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 0]);
        let sealed = seal_frames(&data);
        let records: Vec<_> = WalReader::new(&sealed).collect();
        assert_eq!(records.len(), 1);
    }
}
