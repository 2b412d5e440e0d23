//! Writing a block from series and their chunks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;
use crate::chunk::{XorChunk, SAMPLES_PER_CHUNK_MAX};
use crate::encoding::{put_uvarint, put_varint};
use crate::labels::{Labels, Sample};

/// Encodes a block. Series may come in any order and repeat (repeats are
/// merged, later samples winning on equal timestamps); series without
/// samples are left out. Panics if a chunk lies outside `mint..=maxt` (the
/// caller's contract: queries rely on it) or past the format's limits.
pub fn write(mint: i64, maxt: i64, series: Vec<(Labels, Vec<XorChunk>)>) -> Vec<u8> {
    let series = normalize(series);
    assert!(
        series.len() <= SERIES_PER_BLOCK_MAX,
        "too many series for one block"
    );
    for (labels, chunks) in &series {
        for c in chunks {
            assert!(
                c.min_t() >= mint && c.max_t() <= maxt,
                "chunk of {labels} outside the block's time range"
            );
        }
    }
    let symbols: Vec<&str> = series
        .iter()
        .flat_map(|(l, _)| l.iter().flat_map(|(n, v)| [n, v]))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    let sym: HashMap<&str, u32> = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect();

    let mut sections: Vec<Vec<u8>> = vec![Vec::new(); SECTION_COUNT];
    sections[Section::Symbols as usize] = encode_symbols(&symbols);
    let mut postings: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    let (series_section, chunks_section) = encode_series(&series, &sym, &mut postings);
    sections[Section::Series as usize] = series_section;
    sections[Section::Chunks as usize] = chunks_section;
    let (lists, table, labels) = encode_postings(&postings);
    sections[Section::Postings as usize] = lists;
    sections[Section::PostingsTable as usize] = table;
    sections[Section::LabelTable as usize] = labels;
    assemble(mint, maxt, &sections)
}

/// Sorts by labels, merges repeated label sets and drops empty series.
fn normalize(mut series: Vec<(Labels, Vec<XorChunk>)>) -> Vec<(Labels, Vec<XorChunk>)> {
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(Labels, Vec<XorChunk>)> = Vec::with_capacity(series.len());
    for (labels, mut chunks) in series {
        chunks.retain(|c| !c.is_empty());
        match out.last_mut() {
            Some((last, last_chunks)) if *last == labels => last_chunks.append(&mut chunks),
            _ => out.push((labels, chunks)),
        }
    }
    out.retain(|(_, chunks)| !chunks.is_empty());
    for (_, chunks) in &mut out {
        let ordered = chunks.windows(2).all(|w| w[0].max_t() < w[1].min_t());
        if !ordered {
            let samples: Vec<Sample> =
                merge_samples(chunks.iter().map(XorChunk::samples).collect());
            *chunks = XorChunk::encode_all(&samples, SAMPLES_PER_CHUNK_MAX);
        }
    }
    out
}

/// Merges sorted sample lists; on equal timestamps the later list wins.
pub(crate) fn merge_samples(lists: Vec<Vec<Sample>>) -> Vec<Sample> {
    let mut all: Vec<(i64, usize, f64)> = lists
        .into_iter()
        .enumerate()
        .flat_map(|(i, list)| list.into_iter().map(move |s| (s.t, i, s.v)))
        .collect();
    all.sort_by_key(|&(t, i, _)| (t, std::cmp::Reverse(i)));
    all.dedup_by_key(|&mut (t, _, _)| t);
    all.into_iter().map(|(t, _, v)| Sample { t, v }).collect()
}

fn encode_symbols(symbols: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(symbols.len() as u32).to_le_bytes());
    let mut start = 0usize;
    for s in symbols {
        assert!(
            start <= SYMBOL_BYTES_MAX,
            "label strings exceed {SYMBOL_BYTES_MAX} bytes"
        );
        out.extend_from_slice(&(start as u32).to_le_bytes());
        start += s.len();
    }
    assert!(
        start <= SYMBOL_BYTES_MAX,
        "label strings exceed {SYMBOL_BYTES_MAX} bytes"
    );
    for s in symbols {
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// The series and chunks sections; fills `postings` as it goes.
fn encode_series(
    series: &[(Labels, Vec<XorChunk>)],
    sym: &HashMap<&str, u32>,
    postings: &mut BTreeMap<(u32, u32), Vec<u32>>,
) -> (Vec<u8>, Vec<u8>) {
    let mut entries = Vec::new();
    let mut offsets = Vec::with_capacity(series.len());
    let mut chunks_section = Vec::new();
    for (index, (labels, chunks)) in series.iter().enumerate() {
        offsets.push(entries.len());
        put_uvarint(&mut entries, labels.len() as u64);
        for (name, value) in labels.iter() {
            let pair = (sym[name], sym[value]);
            put_uvarint(&mut entries, u64::from(pair.0));
            put_uvarint(&mut entries, u64::from(pair.1));
            postings.entry(pair).or_default().push(index as u32);
        }
        put_uvarint(&mut entries, chunks.len() as u64);
        let mut prev_max_t = 0i64;
        for (i, c) in chunks.iter().enumerate() {
            let min_t = if i == 0 {
                c.min_t()
            } else {
                c.min_t().wrapping_sub(prev_max_t)
            };
            put_varint(&mut entries, min_t);
            put_uvarint(
                &mut entries,
                (c.max_t() as u64).wrapping_sub(c.min_t() as u64),
            );
            put_uvarint(&mut entries, chunks_section.len() as u64);
            put_uvarint(&mut entries, c.bytes().len() as u64);
            chunks_section.extend_from_slice(c.bytes());
            prev_max_t = c.max_t();
        }
    }
    let head_bytes = 4 + 8 * offsets.len();
    let mut out = Vec::with_capacity(head_bytes + entries.len());
    out.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    for o in offsets {
        out.extend_from_slice(&((head_bytes + o) as u64).to_le_bytes());
    }
    out.extend_from_slice(&entries);
    (out, chunks_section)
}

/// The postings lists, the postings table and the label table.
fn encode_postings(postings: &BTreeMap<(u32, u32), Vec<u32>>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut lists = Vec::new();
    let mut table = Vec::new();
    table.extend_from_slice(&(postings.len() as u32).to_le_bytes());
    let mut names: Vec<(u32, u32, u32)> = Vec::new();
    for (row, (&(name, value), refs)) in postings.iter().enumerate() {
        table.extend_from_slice(&name.to_le_bytes());
        table.extend_from_slice(&value.to_le_bytes());
        table.extend_from_slice(&(lists.len() as u64).to_le_bytes());
        lists.extend_from_slice(&(refs.len() as u32).to_le_bytes());
        for r in refs {
            lists.extend_from_slice(&r.to_le_bytes());
        }
        match names.last_mut() {
            Some(last) if last.0 == name => last.2 += 1,
            _ => names.push((name, row as u32, 1)),
        }
    }
    let mut labels = Vec::new();
    labels.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for (name, first, count) in names {
        labels.extend_from_slice(&name.to_le_bytes());
        labels.extend_from_slice(&first.to_le_bytes());
        labels.extend_from_slice(&count.to_le_bytes());
    }
    (lists, table, labels)
}

pub(crate) fn assemble(mint: i64, maxt: i64, sections: &[Vec<u8>]) -> Vec<u8> {
    let body: usize = sections.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(HEADER_BYTES + body + TOC_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&mint.to_le_bytes());
    out.extend_from_slice(&maxt.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_BYTES);
    let mut toc = Vec::with_capacity(TOC_BYTES);
    for s in sections {
        toc.extend_from_slice(&(out.len() as u64).to_le_bytes());
        toc.extend_from_slice(&(s.len() as u64).to_le_bytes());
        toc.extend_from_slice(&crc32c::crc32c(s).to_le_bytes());
        toc.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(s);
    }
    let crc = crc32c::crc32c(&toc);
    toc.extend_from_slice(&crc.to_le_bytes());
    toc.extend_from_slice(TOC_MAGIC);
    debug_assert_eq!(toc.len(), TOC_BYTES);
    out.extend_from_slice(&toc);
    out
}
