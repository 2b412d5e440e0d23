//! The extent maps of one shard, in memory: which slot holds each extent of
//! each map (volume, snapshot or clone), which of its pages hold data, how
//! many maps share each slot, and which slots are free. No I/O: the store
//! decides when changes become journal records.

use std::collections::HashMap;

use crate::journal::Record;

/// One extent of one map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub slot: u32,
    /// Pages of the extent that hold data; the others read as zeroes.
    pub pages: u64,
    /// Writes in flight to this entry's slot (the entry must outlive them).
    pub writers: u32,
}

/// Extent index -> entry, for one map.
pub type ExtentMap = HashMap<u64, Entry>;

/// A journal record names a slot past the end of the data file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "map {map:#x} extent {ext} names slot {slot}, but the data file spans {slots_in_file} slots"
)]
pub struct SlotBeyondFile {
    pub map: u64,
    pub ext: u64,
    pub slot: u32,
    pub slots_in_file: u32,
}

/// The maps, the slot reference counts and the free slots.
#[derive(Debug, Default, Clone)]
pub struct State {
    maps: HashMap<u64, ExtentMap>,
    /// Maps referring to each slot (index = slot).
    refs: Vec<u32>,
    /// Slots with no reference that may be handed out.
    free: Vec<u32>,
}

impl State {
    /// Applies a replayed record (recovery). Reference counts are rebuilt
    /// afterwards with [`State::rebuild_slots`].
    pub fn replay(&mut self, record: &Record) {
        match *record {
            Record::Map {
                map,
                ext,
                slot,
                pages,
            } => {
                let extents = self.maps.entry(map).or_default();
                if pages == 0 {
                    extents.remove(&ext);
                } else {
                    extents.insert(
                        ext,
                        Entry {
                            slot,
                            pages,
                            writers: 0,
                        },
                    );
                }
            }
            Record::Unmap { map, ext } => {
                if let Some(extents) = self.maps.get_mut(&map) {
                    extents.remove(&ext);
                }
            }
            Record::Copy { from, to } => {
                let copy = self.maps.get(&from).cloned().unwrap_or_default();
                self.maps.insert(to, copy);
            }
            Record::Drop { map } => {
                self.maps.remove(&map);
            }
        }
        self.maps.retain(|_, extents| !extents.is_empty());
    }

    /// Recomputes reference counts and the free list from the maps. The
    /// data file spans `slots_in_file` slots: every durable record names a
    /// slot whose data was written before it, so a record naming a slot at
    /// or past the end is damage, refused here (it would otherwise size the
    /// counts and the free list by whatever number the damage holds). Slots
    /// that nothing references are free.
    pub fn rebuild_slots(&mut self, slots_in_file: u32) -> Result<(), SlotBeyondFile> {
        let high = slots_in_file as usize;
        for (&map, extents) in &self.maps {
            for (&ext, e) in extents {
                if e.slot >= slots_in_file {
                    return Err(SlotBeyondFile {
                        map,
                        ext,
                        slot: e.slot,
                        slots_in_file,
                    });
                }
            }
        }
        self.refs = vec![0; high];
        for extents in self.maps.values() {
            for e in extents.values() {
                self.refs[e.slot as usize] += 1;
            }
        }
        self.free = (0..high as u32)
            .rev()
            .filter(|&s| self.refs[s as usize] == 0)
            .collect();
        Ok(())
    }

    /// Every record needed to rebuild the maps from nothing (a checkpoint).
    pub fn encode_all(&self, out: &mut Vec<u8>) {
        for (&map, extents) in &self.maps {
            for (&ext, e) in extents {
                if e.pages != 0 {
                    Record::Map {
                        map,
                        ext,
                        slot: e.slot,
                        pages: e.pages,
                    }
                    .encode(out);
                }
            }
        }
    }

    pub fn get(&self, map: u64, ext: u64) -> Option<&Entry> {
        self.maps.get(&map)?.get(&ext)
    }

    pub fn get_mut(&mut self, map: u64, ext: u64) -> Option<&mut Entry> {
        self.maps.get_mut(&map)?.get_mut(&ext)
    }

    /// Whether the slot is referenced by more than one map.
    pub fn shared(&self, slot: u32) -> bool {
        self.refs.get(slot as usize).is_some_and(|&r| r > 1)
    }

    /// Takes a free slot (the lowest-numbered one recently freed, or a new
    /// one past the end) and gives it one reference.
    pub fn allocate(&mut self) -> u32 {
        // (At SLOTS_MAX slots the data file would be 64 TiB; the disk is
        // full long before, and the write fails with ENOSPC.)
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.refs.push(0);
                (self.refs.len() - 1) as u32
            }
        };
        self.refs[slot as usize] = 1;
        slot
    }

    /// Installs a new entry (the slot's reference is already counted).
    pub fn insert(&mut self, map: u64, ext: u64, entry: Entry) {
        self.maps.entry(map).or_default().insert(ext, entry);
    }

    /// Removes an entry; returns its slot if that was its last reference
    /// (the caller frees it once the removal is durable).
    pub fn remove(&mut self, map: u64, ext: u64) -> Option<u32> {
        let extents = self.maps.get_mut(&map)?;
        let entry = extents.remove(&ext)?;
        if extents.is_empty() {
            self.maps.remove(&map);
        }
        self.unref(entry.slot)
    }

    /// Drops one reference to `slot`; returns it if it became unreferenced.
    pub fn unref(&mut self, slot: u32) -> Option<u32> {
        let refs = &mut self.refs[slot as usize];
        *refs = refs.saturating_sub(1);
        (*refs == 0).then_some(slot)
    }

    /// Makes a slot available to [`State::allocate`] again.
    pub fn release(&mut self, slot: u32) {
        if self.refs.get(slot as usize) == Some(&0) && !self.free.contains(&slot) {
            self.free.push(slot);
        }
    }

    /// Map `to` becomes a copy of `from`, sharing its slots.
    pub fn copy(&mut self, from: u64, to: u64) -> Vec<u32> {
        let freed = self.drop_map(to);
        if let Some(extents) = self.maps.get(&from) {
            let copy: ExtentMap = extents
                .iter()
                .filter(|(_, e)| e.pages != 0)
                .map(|(&ext, e)| (ext, Entry { writers: 0, ..*e }))
                .collect();
            for e in copy.values() {
                self.refs[e.slot as usize] += 1;
            }
            if !copy.is_empty() {
                self.maps.insert(to, copy);
            }
        }
        freed
    }

    /// Removes a map; returns the slots nothing references any more.
    pub fn drop_map(&mut self, map: u64) -> Vec<u32> {
        let Some(extents) = self.maps.remove(&map) else {
            return Vec::new();
        };
        extents
            .values()
            .filter_map(|e| self.unref(e.slot))
            .collect()
    }

    /// Maps with at least one extent.
    pub fn map_ids(&self) -> Vec<u64> {
        self.maps.keys().copied().collect()
    }

    /// Bytes of data pages a map references (shared ones included).
    pub fn allocated_bytes(&self, map: u64) -> u64 {
        self.maps.get(&map).map_or(0, |extents| {
            extents
                .values()
                .map(|e| u64::from(e.pages.count_ones()) * crate::layout::PAGE_BYTES)
                .sum()
        })
    }

    /// Slots in use, and slots the data file spans.
    pub fn slot_counts(&self) -> (u64, u64) {
        let used = self.refs.iter().filter(|&&r| r > 0).count() as u64;
        (used, self.refs.len() as u64)
    }

    /// Slots that may be handed out.
    pub fn free_slots(&self) -> Vec<u32> {
        self.free.clone()
    }

    /// Entries of a map (for tests and checks).
    pub fn extents(&self, map: u64) -> Option<&ExtentMap> {
        self.maps.get(&map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_slots_until_the_last_reference_goes() {
        let mut s = State::default();
        s.rebuild_slots(0).unwrap();
        let a = s.allocate();
        s.insert(
            1,
            0,
            Entry {
                slot: a,
                pages: 1,
                writers: 0,
            },
        );
        assert!(!s.shared(a));
        assert!(s.copy(1, 2).is_empty());
        assert!(s.shared(a));
        assert_eq!(s.remove(1, 0), None);
        assert!(!s.shared(a));
        assert_eq!(s.drop_map(2), vec![a]);
        s.release(a);
        assert_eq!(s.allocate(), a);
    }

    #[test]
    fn replay_then_rebuild_counts_references() {
        let mut s = State::default();
        for r in [
            Record::Map {
                map: 1,
                ext: 0,
                slot: 3,
                pages: 0b11,
            },
            Record::Copy { from: 1, to: 2 },
            Record::Map {
                map: 1,
                ext: 0,
                slot: 5,
                pages: 0b111,
            },
            Record::Map {
                map: 1,
                ext: 9,
                slot: 0,
                pages: 1,
            },
            Record::Unmap { map: 1, ext: 9 },
        ] {
            s.replay(&r);
        }
        assert_eq!(
            s.clone().rebuild_slots(5),
            Err(SlotBeyondFile {
                map: 1,
                ext: 0,
                slot: 5,
                slots_in_file: 5
            })
        );
        s.rebuild_slots(6).unwrap();
        assert_eq!(s.get(2, 0).unwrap().slot, 3);
        assert_eq!(s.get(1, 0).unwrap().slot, 5);
        assert_eq!(s.get(1, 9), None);
        assert_eq!(s.slot_counts(), (2, 6));
        // Free slots come back lowest first.
        assert_eq!(s.allocate(), 0);
        assert_eq!(s.allocate(), 1);
    }
}
