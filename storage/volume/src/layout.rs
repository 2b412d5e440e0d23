//! Sizes and address arithmetic: a volume is cut into extents of 64 pages of
//! 4 KiB; each extent that holds data lives in one slot of the shard's data
//! file, and a 64-bit mask says which of its pages hold data.

/// The unit of allocation tracking and of O_DIRECT I/O.
pub const PAGE_BYTES: u64 = 4096;
/// Pages per extent (one bit each in a `u64`).
pub const PAGES_PER_EXTENT: u64 = 64;
/// Bytes of one extent, and of one data-file slot.
pub const EXTENT_BYTES: u64 = PAGE_BYTES * PAGES_PER_EXTENT;
/// The data file starts with one slot-sized header area; slot `i` is at
/// `(i + 1) * EXTENT_BYTES`.
pub const DATA_HEADER_BYTES: u64 = EXTENT_BYTES;
/// "PVD1" and a version: the data file's first bytes.
pub const DATA_MAGIC: &[u8; 8] = b"PVD1\0\0\0\x01";

/// Offset of `slot` in the data file.
pub fn slot_offset(slot: u32) -> u64 {
    DATA_HEADER_BYTES + u64::from(slot) * EXTENT_BYTES
}

/// Mask of `count` pages starting at page `first` of an extent.
pub fn page_mask(first: u64, count: u64) -> u64 {
    debug_assert!(count >= 1 && first + count <= PAGES_PER_EXTENT);
    if count == PAGES_PER_EXTENT {
        u64::MAX
    } else {
        ((1u64 << count) - 1) << first
    }
}

/// The part of a page-aligned request that falls in one extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub ext: u64,
    /// First page inside the extent.
    pub first_page: u64,
    pub pages: u64,
    /// Where this piece starts in the request's buffer.
    pub buf_offset: u64,
}

impl Piece {
    pub fn mask(&self) -> u64 {
        page_mask(self.first_page, self.pages)
    }

    pub fn bytes(&self) -> u64 {
        self.pages * PAGE_BYTES
    }

    /// Offset of this piece in the data file when its extent is in `slot`.
    pub fn file_offset(&self, slot: u32) -> u64 {
        slot_offset(slot) + self.first_page * PAGE_BYTES
    }

    pub fn covers_extent(&self) -> bool {
        self.pages == PAGES_PER_EXTENT
    }
}

/// Splits the page-aligned range `offset..offset + len` into per-extent pieces.
pub fn pieces(offset: u64, len: u64) -> impl Iterator<Item = Piece> {
    debug_assert!(offset.is_multiple_of(PAGE_BYTES) && len.is_multiple_of(PAGE_BYTES));
    let first = offset / PAGE_BYTES;
    let end = (offset + len) / PAGE_BYTES;
    let mut page = first;
    std::iter::from_fn(move || {
        if page >= end {
            return None;
        }
        let ext = page / PAGES_PER_EXTENT;
        let first_page = page % PAGES_PER_EXTENT;
        let pages = (PAGES_PER_EXTENT - first_page).min(end - page);
        let piece = Piece {
            ext,
            first_page,
            pages,
            buf_offset: (page - first) * PAGE_BYTES,
        };
        page += pages;
        Some(piece)
    })
}

/// Runs of equal bits in `mask` restricted to the piece's pages:
/// `(first page, pages, set)`.
pub fn runs(mask: u64, first_page: u64, pages: u64) -> impl Iterator<Item = (u64, u64, bool)> {
    let end = first_page + pages;
    let mut page = first_page;
    std::iter::from_fn(move || {
        if page >= end {
            return None;
        }
        let set = mask >> page & 1 == 1;
        let start = page;
        while page < end && (mask >> page & 1 == 1) == set {
            page += 1;
        }
        Some((start, page - start, set))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_at_extent_boundaries() {
        let all: Vec<Piece> =
            pieces(EXTENT_BYTES - PAGE_BYTES, EXTENT_BYTES + 2 * PAGE_BYTES).collect();
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].ext, all[0].first_page, all[0].pages), (0, 63, 1));
        assert_eq!((all[1].ext, all[1].first_page, all[1].pages), (1, 0, 64));
        assert_eq!((all[2].ext, all[2].first_page, all[2].pages), (2, 0, 1));
        assert_eq!(all[2].buf_offset, EXTENT_BYTES + PAGE_BYTES);
        assert!(all[1].covers_extent());
        assert_eq!(all[1].mask(), u64::MAX);
        assert_eq!(all[0].mask(), 1 << 63);
    }

    #[test]
    fn runs_group_equal_bits() {
        let r: Vec<_> = runs(0b0110, 0, 5).collect();
        assert_eq!(r, vec![(0, 1, false), (1, 2, true), (3, 2, false)]);
        let r: Vec<_> = runs(u64::MAX, 60, 4).collect();
        assert_eq!(r, vec![(60, 4, true)]);
    }
}
