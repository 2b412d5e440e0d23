//! Opening a block and querying it in place.

use std::collections::BTreeSet;
use std::ops::Range;

use super::*;
use crate::chunk::XorChunk;
use crate::encoding::Decoder;
use crate::labels::{Labels, Matcher, Sample};
use crate::postings::{self, EmptyMatchersError, PostingsSource};
use crate::SeriesRef;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockQueryError {
    #[error(transparent)]
    Matchers(#[from] EmptyMatchersError),
    #[error(transparent)]
    Corrupt(#[from] BlockError),
}

/// Where one chunk lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub(crate) min_t: i64,
    pub(crate) max_t: i64,
    offset: usize,
    len: usize,
}

/// An opened block over any bytes (a `Vec<u8>`, a memory map).
#[derive(Debug)]
pub struct Block<B: AsRef<[u8]>> {
    bytes: B,
    mint: i64,
    maxt: i64,
    sections: [Range<usize>; SECTION_COUNT],
    symbol_count: u32,
    series_count: u32,
    pairs_count: u32,
    names_count: u32,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl<B: AsRef<[u8]>> Block<B> {
    /// Checks the header, the table of contents, every section's bounds
    /// and checksum, and the lookup tables' shape.
    pub fn open(bytes: B) -> Result<Self, BlockError> {
        let b = bytes.as_ref();
        if b.len() < HEADER_BYTES + TOC_BYTES {
            return Err(BlockError::TooShort { len: b.len() });
        }
        if &b[..8] != MAGIC {
            return Err(BlockError::BadMagic);
        }
        if crc32c::crc32c(&b[..32]) != le_u32(b, 32) {
            return Err(BlockError::HeaderChecksum);
        }
        let version = le_u32(b, 8);
        if version != VERSION {
            return Err(BlockError::UnsupportedVersion { version });
        }
        let toc_start = b.len() - TOC_BYTES;
        let toc = &b[toc_start..];
        if &toc[TOC_BYTES - 4..] != TOC_MAGIC {
            return Err(BlockError::BadMagic);
        }
        if crc32c::crc32c(&toc[..TOC_BYTES - 8]) != le_u32(toc, TOC_BYTES - 8) {
            return Err(BlockError::TocChecksum);
        }
        let sections = Self::sections(b, toc_start)?;
        let mut block = Block {
            mint: le_u64(b, 16) as i64,
            maxt: le_u64(b, 24) as i64,
            sections,
            symbol_count: 0,
            series_count: 0,
            pairs_count: 0,
            names_count: 0,
            bytes,
        };
        block.check_tables()?;
        Ok(block)
    }

    /// Sections must follow each other from the header to the TOC.
    fn sections(b: &[u8], toc_start: usize) -> Result<[Range<usize>; SECTION_COUNT], BlockError> {
        let toc = &b[toc_start..];
        let mut out: [Range<usize>; SECTION_COUNT] = Default::default();
        let mut expected = HEADER_BYTES;
        for (i, range) in out.iter_mut().enumerate() {
            let section = SECTION_NAMES[i];
            let at = i * TOC_ENTRY_BYTES;
            let offset = le_u64(toc, at);
            let len = le_u64(toc, at + 8);
            let end = offset
                .checked_add(len)
                .ok_or(BlockError::SectionBounds { section })?;
            if offset != expected as u64 || end > toc_start as u64 {
                return Err(BlockError::SectionBounds { section });
            }
            *range = offset as usize..end as usize;
            if crc32c::crc32c(&b[range.clone()]) != le_u32(toc, at + 16) {
                return Err(BlockError::SectionChecksum { section });
            }
            expected = range.end;
        }
        if expected != toc_start {
            return Err(BlockError::SectionBounds {
                section: "table of contents",
            });
        }
        Ok(out)
    }

    fn section(&self, s: Section) -> &[u8] {
        &self.bytes.as_ref()[self.sections[s as usize].clone()]
    }

    /// Reads a table's row count and checks its length is exactly that
    /// many rows.
    fn table_rows(&self, s: Section, row_bytes: usize) -> Result<u32, BlockError> {
        let b = self.section(s);
        let count = Decoder::new(b).u32().ok_or(malformed(s, "no row count"))?;
        let expected = (count as usize)
            .checked_mul(row_bytes)
            .and_then(|n| n.checked_add(4));
        if expected != Some(b.len()) {
            return Err(malformed(s, "length does not match the row count"));
        }
        Ok(count)
    }

    fn check_tables(&mut self) -> Result<(), BlockError> {
        self.symbol_count = self.check_symbols()?;
        let series = self.section(Section::Series);
        let series_count = Decoder::new(series)
            .u32()
            .ok_or(malformed(Section::Series, "no count"))?;
        if (series_count as usize)
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .is_none_or(|n| n > series.len())
        {
            return Err(malformed(Section::Series, "offset table out of bounds"));
        }
        self.series_count = series_count;
        self.pairs_count = self.table_rows(Section::PostingsTable, POSTINGS_ROW_BYTES)?;
        self.names_count = self.table_rows(Section::LabelTable, LABEL_ROW_BYTES)?;
        let mut prev: Option<(u32, u32)> = None;
        for row in 0..self.pairs_count {
            let (name, value, _) = self.pair_row(row);
            if name >= self.symbol_count
                || value >= self.symbol_count
                || prev.is_some_and(|p| p >= (name, value))
            {
                return Err(malformed(
                    Section::PostingsTable,
                    "rows out of order or bad symbol",
                ));
            }
            prev = Some((name, value));
        }
        // The label table must partition the postings table by name.
        let mut next_row = 0u32;
        for i in 0..self.names_count {
            let (name, first, count) = self.name_row(i);
            let end = first
                .checked_add(count)
                .filter(|&e| count > 0 && first == next_row && e <= self.pairs_count);
            let Some(end) = end else {
                return Err(malformed(
                    Section::LabelTable,
                    "rows do not cover the postings table",
                ));
            };
            if (first..end).any(|row| self.pair_row(row).0 != name) {
                return Err(malformed(
                    Section::LabelTable,
                    "row names differ from the postings table",
                ));
            }
            next_row = end;
        }
        if next_row != self.pairs_count {
            return Err(malformed(
                Section::LabelTable,
                "rows do not cover the postings table",
            ));
        }
        Ok(())
    }

    /// Checks offsets, UTF-8 and order once, so lookups can trust them.
    fn check_symbols(&self) -> Result<u32, BlockError> {
        let s = Section::Symbols;
        let b = self.section(s);
        let count = Decoder::new(b).u32().ok_or(malformed(s, "no count"))?;
        let strings_start = (count as usize)
            .checked_mul(4)
            .and_then(|n| n.checked_add(4))
            .filter(|&n| n <= b.len())
            .ok_or(malformed(s, "offset table out of bounds"))?;
        let strings = &b[strings_start..];
        let mut prev: Option<&str> = None;
        for i in 0..count as usize {
            let start = le_u32(b, 4 + 4 * i) as usize;
            let end = if i + 1 < count as usize {
                le_u32(b, 8 + 4 * i) as usize
            } else {
                strings.len()
            };
            let bytes = strings
                .get(start..end)
                .ok_or(malformed(s, "string out of bounds"))?;
            if (i == 0 && start != 0) || (i + 1 == count as usize && end != strings.len()) {
                return Err(malformed(s, "strings do not fill the section"));
            }
            let text =
                std::str::from_utf8(bytes).map_err(|_| malformed(s, "string is not UTF-8"))?;
            if prev.is_some_and(|p| p >= text) {
                return Err(malformed(s, "strings not sorted"));
            }
            prev = Some(text);
        }
        if count == 0 && !strings.is_empty() {
            return Err(malformed(s, "strings do not fill the section"));
        }
        Ok(count)
    }

    /// A symbol; `open` checked every string, so only the index can be bad.
    fn symbol(&self, i: u32) -> Result<&str, BlockError> {
        if i >= self.symbol_count {
            return Err(malformed(Section::Symbols, "symbol index out of range"));
        }
        let b = self.section(Section::Symbols);
        let strings_start = 4 + 4 * self.symbol_count as usize;
        let start = strings_start + le_u32(b, 4 + 4 * i as usize) as usize;
        let end = if i + 1 < self.symbol_count {
            strings_start + le_u32(b, 8 + 4 * i as usize) as usize
        } else {
            b.len()
        };
        std::str::from_utf8(&b[start..end])
            .map_err(|_| malformed(Section::Symbols, "string is not UTF-8"))
    }

    fn find_symbol(&self, text: &str) -> Result<Option<u32>, BlockError> {
        let (mut lo, mut hi) = (0u32, self.symbol_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.symbol(mid)?.cmp(text) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid)),
            }
        }
        Ok(None)
    }

    /// Postings table row: name, value and list offset. Rows were bounds
    /// checked at open.
    fn pair_row(&self, row: u32) -> (u32, u32, u64) {
        let b = self.section(Section::PostingsTable);
        let at = 4 + row as usize * POSTINGS_ROW_BYTES;
        (le_u32(b, at), le_u32(b, at + 4), le_u64(b, at + 8))
    }

    fn name_row(&self, i: u32) -> (u32, u32, u32) {
        let b = self.section(Section::LabelTable);
        let at = 4 + i as usize * LABEL_ROW_BYTES;
        (le_u32(b, at), le_u32(b, at + 4), le_u32(b, at + 8))
    }

    /// The postings table rows of label `name`.
    fn name_rows(&self, name: &str) -> Result<Range<u32>, BlockError> {
        let Some(sym) = self.find_symbol(name)? else {
            return Ok(0..0);
        };
        let (mut lo, mut hi) = (0u32, self.names_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (n, first, count) = self.name_row(mid);
            match n.cmp(&sym) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(first..first + count),
            }
        }
        Ok(0..0)
    }

    fn postings_list(&self, offset: u64) -> Result<Vec<SeriesRef>, BlockError> {
        let s = Section::Postings;
        let mut d = Decoder::new(self.section(s));
        let offset = usize::try_from(offset).map_err(|_| malformed(s, "offset out of range"))?;
        d.take(offset).ok_or(malformed(s, "offset out of range"))?;
        let count = d.u32().ok_or(malformed(s, "list out of bounds"))? as usize;
        let list = d
            .take(count.saturating_mul(4))
            .ok_or(malformed(s, "list out of bounds"))?;
        let refs: Vec<SeriesRef> = list
            .chunks_exact(4)
            .map(|c| u64::from(le_u32(c, 0)))
            .collect();
        let sorted = refs.windows(2).all(|w| w[0] < w[1]);
        if !sorted
            || refs
                .last()
                .is_some_and(|&r| r >= u64::from(self.series_count))
        {
            return Err(malformed(s, "list not sorted or out of range"));
        }
        Ok(refs)
    }

    pub fn mint(&self) -> i64 {
        self.mint
    }

    pub fn maxt(&self) -> i64 {
        self.maxt
    }

    pub fn series_count(&self) -> usize {
        self.series_count as usize
    }

    /// Series `index`'s labels and chunk metas.
    pub(crate) fn series_entry(&self, index: u32) -> Result<(Labels, Vec<ChunkMeta>), BlockError> {
        let s = Section::Series;
        let b = self.section(s);
        if index >= self.series_count {
            return Err(malformed(s, "series index out of range"));
        }
        let offset = usize::try_from(le_u64(b, 4 + 8 * index as usize))
            .map_err(|_| malformed(s, "offset out of range"))?;
        let mut d = Decoder::new(b.get(offset..).ok_or(malformed(s, "offset out of range"))?);
        let bad = || malformed(s, "entry truncated or invalid");
        // A label takes at least 2 bytes, which bounds the allocation.
        let nlabels = d.uvarint_max(d.remaining() / 2).ok_or_else(bad)?;
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(nlabels);
        for _ in 0..nlabels {
            let name =
                self.symbol(u32::try_from(d.uvarint().ok_or_else(bad)?).map_err(|_| bad())?)?;
            let value =
                self.symbol(u32::try_from(d.uvarint().ok_or_else(bad)?).map_err(|_| bad())?)?;
            if value.is_empty() || pairs.last().is_some_and(|(last, _)| last.as_str() >= name) {
                return Err(malformed(s, "labels unsorted or empty"));
            }
            pairs.push((name.to_string(), value.to_string()));
        }
        // A chunk meta takes at least 4 bytes, which bounds the allocation.
        let nchunks = d.uvarint_max(d.remaining() / 4).ok_or_else(bad)?;
        let chunks_len = self.sections[Section::Chunks as usize].len();
        let mut metas: Vec<ChunkMeta> = Vec::with_capacity(nchunks);
        for i in 0..nchunks {
            let raw_min = d.varint().ok_or_else(bad)?;
            let min_t = match metas.last() {
                None => raw_min,
                Some(prev) => prev
                    .max_t
                    .checked_add(raw_min)
                    .filter(|&t| t > prev.max_t)
                    .ok_or_else(bad)?,
            };
            let span = d.uvarint().ok_or_else(bad)?;
            let max_t = i64::try_from(i128::from(min_t) + i128::from(span)).map_err(|_| bad())?;
            let offset = d.uvarint_max(chunks_len).ok_or_else(bad)?;
            let len = d.uvarint_max(chunks_len - offset).ok_or_else(bad)?;
            debug_assert!(i == metas.len());
            metas.push(ChunkMeta {
                min_t,
                max_t,
                offset,
                len,
            });
        }
        Ok((Labels::from_sorted(pairs), metas))
    }

    /// Decodes one chunk, checking its samples against its meta.
    pub(crate) fn chunk_samples(
        &self,
        index: u32,
        meta: &ChunkMeta,
    ) -> Result<Vec<Sample>, BlockError> {
        let bytes = &self.section(Section::Chunks)[meta.offset..meta.offset + meta.len];
        let samples =
            XorChunk::decode_all(bytes).map_err(|source| BlockError::Chunk { index, source })?;
        let inside = samples.first().is_some_and(|s| s.t == meta.min_t)
            && samples.last().is_some_and(|s| s.t == meta.max_t);
        if !inside {
            return Err(malformed(
                Section::Chunks,
                "chunk times differ from its meta",
            ));
        }
        Ok(samples)
    }

    pub(crate) fn chunk_bytes(&self, meta: &ChunkMeta) -> &[u8] {
        &self.section(Section::Chunks)[meta.offset..meta.offset + meta.len]
    }

    /// Series `index`'s samples in `mint..=maxt`.
    fn samples_in(
        &self,
        index: u32,
        metas: &[ChunkMeta],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Sample>, BlockError> {
        let mut out = Vec::new();
        for meta in metas.iter().filter(|m| m.max_t >= mint && m.min_t <= maxt) {
            out.extend(
                self.chunk_samples(index, meta)?
                    .into_iter()
                    .filter(|s| s.t >= mint && s.t <= maxt),
            );
        }
        Ok(out)
    }

    fn has_samples_in(
        &self,
        index: u32,
        metas: &[ChunkMeta],
        mint: i64,
        maxt: i64,
    ) -> Result<bool, BlockError> {
        for meta in metas.iter().filter(|m| m.max_t >= mint && m.min_t <= maxt) {
            // The chunk overlaps the range, so an end inside it is a
            // sample inside it; only a chunk straddling both ends is read.
            if meta.min_t >= mint || meta.max_t <= maxt {
                return Ok(true);
            }
            if self
                .chunk_samples(index, meta)?
                .iter()
                .any(|s| s.t >= mint && s.t <= maxt)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The selected series, none when the block lies outside the range.
    fn select_indexes(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<u32>, BlockQueryError> {
        postings::check_matchers(matchers)?;
        if maxt < self.mint || mint > self.maxt {
            return Ok(Vec::new());
        }
        let refs = postings::select(self, matchers)?;
        // Postings lists were checked to hold indexes below series_count.
        Ok(refs.into_iter().map(|r| r as u32).collect())
    }

    /// Selected series with their samples in `mint..=maxt`, sorted by
    /// labels; series without samples in the range are left out.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, BlockQueryError> {
        let mut out = Vec::new();
        for index in self.select_indexes(matchers, mint, maxt)? {
            let (labels, metas) = self.series_entry(index)?;
            let samples = self.samples_in(index, &metas, mint, maxt)?;
            if !samples.is_empty() {
                out.push((labels, samples));
            }
        }
        Ok(out)
    }

    fn selected_in_range(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, BlockQueryError> {
        let mut out = Vec::new();
        for index in self.select_indexes(matchers, mint, maxt)? {
            let (labels, metas) = self.series_entry(index)?;
            if self.has_samples_in(index, &metas, mint, maxt)? {
                out.push(labels);
            }
        }
        Ok(out)
    }

    /// Whether the query range covers the whole block, so every series
    /// qualifies without looking at its chunks.
    fn covers(&self, mint: i64, maxt: i64) -> bool {
        mint <= self.mint && maxt >= self.maxt
    }

    pub fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, BlockQueryError> {
        self.selected_in_range(matchers, mint, maxt)
    }

    pub fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, BlockQueryError> {
        if matchers.is_empty() && self.covers(mint, maxt) {
            // Every series has samples, so every name in the table counts.
            return (0..self.names_count)
                .map(|i| Ok(self.symbol(self.name_row(i).0)?.to_string()))
                .collect();
        }
        let mut names = BTreeSet::new();
        for labels in self.selected_in_range(matchers, mint, maxt)? {
            names.extend(labels.into_pairs().into_iter().map(|(n, _)| n));
        }
        Ok(names.into_iter().collect())
    }

    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, BlockQueryError> {
        if matchers.is_empty() && self.covers(mint, maxt) {
            return self
                .name_rows(name)?
                .map(|row| Ok(self.symbol(self.pair_row(row).1)?.to_string()))
                .collect();
        }
        let mut values = BTreeSet::new();
        for labels in self.selected_in_range(matchers, mint, maxt)? {
            values.extend(labels.get(name).map(str::to_string));
        }
        Ok(values.into_iter().collect())
    }
}

impl<B: AsRef<[u8]>> PostingsSource for Block<B> {
    type Error = BlockError;

    fn all_postings(&self) -> Result<Vec<SeriesRef>, BlockError> {
        Ok((0..SeriesRef::from(self.series_count)).collect())
    }

    fn postings(&self, name: &str, value: &str) -> Result<Vec<SeriesRef>, BlockError> {
        let Some(value_sym) = self.find_symbol(value)? else {
            return Ok(Vec::new());
        };
        let rows = self.name_rows(name)?;
        let (mut lo, mut hi) = (rows.start, rows.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (_, v, offset) = self.pair_row(mid);
            match v.cmp(&value_sym) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.postings_list(offset),
            }
        }
        Ok(Vec::new())
    }

    fn postings_where(
        &self,
        name: &str,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Vec<SeriesRef>>, BlockError> {
        let mut out = Vec::new();
        for row in self.name_rows(name)? {
            let (_, value, offset) = self.pair_row(row);
            if keep(self.symbol(value)?) {
                out.push(self.postings_list(offset)?);
            }
        }
        Ok(out)
    }
}
