//! The in-memory index: objects sorted by (bucket, key), chunks by
//! (blob, index), and the live bytes of every segment. Also the replay rule
//! used by recovery: per key, the record with the highest seq wins, and
//! tombstone seqs are remembered during replay so that a lower-seq put
//! scanned after a higher-seq delete does not resurrect the key.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::rc::Rc;

use crate::record::Payload;
use crate::segment::{ScannedRecord, Segment};

/// Where a record lives. Holds the segment, so a compacted segment stays
/// open while an index entry or a reader still points into it.
#[derive(Clone)]
pub(crate) struct Location {
    pub(crate) segment: Rc<Segment>,
    pub(crate) offset: u64,
    pub(crate) record_bytes: u64,
}

impl Location {
    pub(crate) fn same_as(&self, other: &Location) -> bool {
        Rc::ptr_eq(&self.segment, &other.segment) && self.offset == other.offset
    }
}

/// What the store knows about an object without reading the disk.
/// Cheap to clone (the meta is shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Sequence number of the record that wrote this version.
    pub seq: u64,
    /// The opaque meta given to `put_object`.
    pub meta: Rc<[u8]>,
    /// Bytes of inline data.
    pub inline_len: u64,
}

#[derive(Clone)]
pub(crate) struct ObjectEntry {
    pub(crate) seq: u64,
    pub(crate) location: Location,
    pub(crate) meta: Rc<[u8]>,
    pub(crate) inline_len: u32,
}

impl ObjectEntry {
    pub(crate) fn info(&self) -> ObjectInfo {
        ObjectInfo {
            seq: self.seq,
            meta: self.meta.clone(),
            inline_len: u64::from(self.inline_len),
        }
    }
}

#[derive(Clone)]
pub(crate) struct ChunkEntry {
    pub(crate) seq: u64,
    pub(crate) location: Location,
    pub(crate) len: u32,
}

/// The key of a live record (for compaction).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LiveKey {
    Object(u64, Rc<str>),
    Chunk(u64, u32),
}

/// A record that is current in the index.
pub(crate) struct LiveRecord {
    pub(crate) key: LiveKey,
    pub(crate) seq: u64,
    pub(crate) location: Location,
}

#[derive(Default)]
pub(crate) struct Index {
    objects: BTreeMap<u64, BTreeMap<Rc<str>, ObjectEntry>>,
    chunks: BTreeMap<(u64, u32), ChunkEntry>,
    live_bytes: HashMap<u64, u64>,
    object_count: usize,
}

impl Index {
    fn add_live(&mut self, location: &Location) {
        *self.live_bytes.entry(location.segment.id).or_default() += location.record_bytes;
    }

    fn sub_live(&mut self, location: &Location) {
        let live = self.live_bytes.entry(location.segment.id).or_default();
        debug_assert!(*live >= location.record_bytes, "live bytes underflow");
        *live = live.saturating_sub(location.record_bytes);
    }

    pub(crate) fn object(&self, bucket: u64, key: &str) -> Option<(&Rc<str>, &ObjectEntry)> {
        self.objects.get(&bucket)?.get_key_value(key)
    }

    /// Inserts or replaces an object; returns the replaced entry.
    pub(crate) fn put_object(
        &mut self,
        bucket: u64,
        key: Rc<str>,
        entry: ObjectEntry,
    ) -> Option<ObjectEntry> {
        self.add_live(&entry.location);
        let old = self.objects.entry(bucket).or_default().insert(key, entry);
        match &old {
            Some(old) => self.sub_live(&old.location),
            None => self.object_count += 1,
        }
        old
    }

    pub(crate) fn remove_object(&mut self, bucket: u64, key: &str) -> Option<ObjectEntry> {
        let keys = self.objects.get_mut(&bucket)?;
        let old = keys.remove(key)?;
        if keys.is_empty() {
            self.objects.remove(&bucket);
        }
        self.object_count -= 1;
        self.sub_live(&old.location);
        Some(old)
    }

    pub(crate) fn chunk(&self, blob: u64, index: u32) -> Option<&ChunkEntry> {
        self.chunks.get(&(blob, index))
    }

    pub(crate) fn put_chunk(
        &mut self,
        blob: u64,
        index: u32,
        entry: ChunkEntry,
    ) -> Option<ChunkEntry> {
        self.add_live(&entry.location);
        let old = self.chunks.insert((blob, index), entry);
        if let Some(old) = &old {
            self.sub_live(&old.location);
        }
        old
    }

    pub(crate) fn remove_chunk(&mut self, blob: u64, index: u32) -> Option<ChunkEntry> {
        let old = self.chunks.remove(&(blob, index))?;
        self.sub_live(&old.location);
        Some(old)
    }

    pub(crate) fn object_count(&self) -> usize {
        self.object_count
    }

    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Objects of `bucket` whose key starts with `prefix` and sorts after
    /// `after`, in byte order, at most `limit`.
    pub(crate) fn list(
        &self,
        bucket: u64,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, ObjectInfo)> {
        let Some(keys) = self.objects.get(&bucket) else {
            return Vec::new();
        };
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        keys.range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, entry)| (key.to_string(), entry.info()))
            .collect()
    }

    pub(crate) fn bucket_is_empty(&self, bucket: u64) -> bool {
        !self.objects.contains_key(&bucket)
    }

    pub(crate) fn buckets(&self) -> Vec<u64> {
        self.objects.keys().copied().collect()
    }

    pub(crate) fn chunk_ids(&self) -> Vec<(u64, u32)> {
        self.chunks.keys().copied().collect()
    }

    pub(crate) fn objects(&self) -> impl Iterator<Item = (u64, &Rc<str>, &ObjectEntry)> {
        self.objects
            .iter()
            .flat_map(|(bucket, keys)| keys.iter().map(move |(key, e)| (*bucket, key, e)))
    }

    pub(crate) fn chunks(&self) -> impl Iterator<Item = (&(u64, u32), &ChunkEntry)> {
        self.chunks.iter()
    }

    pub(crate) fn live_bytes(&self, segment: u64) -> u64 {
        self.live_bytes.get(&segment).copied().unwrap_or(0)
    }

    pub(crate) fn live_bytes_total(&self) -> u64 {
        self.live_bytes.values().sum()
    }

    pub(crate) fn forget_segment(&mut self, segment: u64) {
        self.live_bytes.remove(&segment);
    }

    /// Every current record stored in segment `segment` (an O(index) walk;
    /// compaction is rare).
    pub(crate) fn records_in(&self, segment: u64) -> Vec<LiveRecord> {
        let objects = self
            .objects()
            .filter(|(_, _, e)| e.location.segment.id == segment)
            .map(|(bucket, key, e)| LiveRecord {
                key: LiveKey::Object(bucket, key.clone()),
                seq: e.seq,
                location: e.location.clone(),
            });
        let chunks = self
            .chunks
            .iter()
            .filter(|(_, e)| e.location.segment.id == segment)
            .map(|(id, e)| LiveRecord {
                key: LiveKey::Chunk(id.0, id.1),
                seq: e.seq,
                location: e.location.clone(),
            });
        objects.chain(chunks).collect()
    }

    /// Points `key` at `new` if it still points at `old` (a concurrent
    /// overwrite or delete wins over a compaction copy). Returns whether it moved.
    pub(crate) fn relocate(&mut self, key: &LiveKey, old: &Location, new: Location) -> bool {
        let slot = match key {
            LiveKey::Object(bucket, key) => self
                .objects
                .get_mut(bucket)
                .and_then(|keys| keys.get_mut(&**key))
                .map(|e| &mut e.location),
            LiveKey::Chunk(blob, index) => self
                .chunks
                .get_mut(&(*blob, *index))
                .map(|e| &mut e.location),
        };
        match slot {
            Some(location) if location.same_as(old) => {
                let replaced = std::mem::replace(location, new.clone());
                self.sub_live(&replaced);
                self.add_live(&new);
                true
            }
            _ => false,
        }
    }

    /// Recomputes live bytes from the entries (tests check the incremental
    /// accounting against it).
    #[cfg(test)]
    pub(crate) fn recount_live_bytes(&self) -> HashMap<u64, u64> {
        let mut live: HashMap<u64, u64> = HashMap::new();
        for (_, _, e) in self.objects() {
            *live.entry(e.location.segment.id).or_default() += e.location.record_bytes;
        }
        for (_, e) in self.chunks.iter() {
            *live.entry(e.location.segment.id).or_default() += e.location.record_bytes;
        }
        live
    }

    /// Live bytes per segment, dropping zero entries (for comparisons).
    #[cfg(test)]
    pub(crate) fn live_bytes_map(&self) -> HashMap<u64, u64> {
        self.live_bytes
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}

/// Applies scanned records to an index with the highest-seq-wins rule.
#[derive(Default)]
pub(crate) struct Replay {
    /// Records with seq at or below this are already in the checkpoint
    /// (compaction copies of them are skipped).
    pub(crate) checkpoint_seq: u64,
    /// Highest seq of any valid record seen.
    pub(crate) max_seq: u64,
    /// Records applied (not skipped).
    pub(crate) records_applied: u64,
    /// Records skipped as covered by the checkpoint.
    pub(crate) records_skipped: u64,
    object_tombstones: HashMap<u64, HashMap<Box<str>, u64>>,
    chunk_tombstones: HashMap<(u64, u32), u64>,
}

impl Replay {
    pub(crate) fn new(checkpoint_seq: u64) -> Self {
        Self {
            checkpoint_seq,
            max_seq: checkpoint_seq,
            ..Self::default()
        }
    }

    pub(crate) fn apply(
        &mut self,
        index: &mut Index,
        segment: &Rc<Segment>,
        record: ScannedRecord<'_>,
    ) {
        let seq = record.header.seq;
        self.max_seq = self.max_seq.max(seq);
        if seq <= self.checkpoint_seq {
            self.records_skipped += 1;
            return;
        }
        self.records_applied += 1;
        let location = Location {
            segment: segment.clone(),
            offset: record.offset,
            record_bytes: record.header.record_bytes(),
        };
        match record.payload {
            Payload::ObjectPut {
                bucket,
                key,
                meta,
                data,
            } => {
                let entry = ObjectEntry {
                    seq,
                    location,
                    meta: Rc::from(meta),
                    inline_len: data.len() as u32,
                };
                self.put_object(index, bucket, key, entry);
            }
            Payload::ObjectDelete { bucket, key } => self.delete_object(index, bucket, key, seq),
            Payload::ChunkPut {
                blob,
                index: number,
                data,
            } => {
                let entry = ChunkEntry {
                    seq,
                    location,
                    len: data.len() as u32,
                };
                self.put_chunk(index, (blob, number), entry);
            }
            Payload::ChunkDelete(ids) => {
                for id in ids.iter() {
                    self.delete_chunk(index, id, seq);
                }
            }
        }
    }

    fn object_tombstone(&self, bucket: u64, key: &str) -> u64 {
        let keys = self.object_tombstones.get(&bucket);
        keys.and_then(|keys| keys.get(key)).copied().unwrap_or(0)
    }

    fn put_object(&mut self, index: &mut Index, bucket: u64, key: &str, entry: ObjectEntry) {
        let current = index.object(bucket, key).map_or(0, |(_, e)| e.seq);
        if entry.seq > self.object_tombstone(bucket, key) && entry.seq > current {
            index.put_object(bucket, Rc::from(key), entry);
        }
    }

    fn delete_object(&mut self, index: &mut Index, bucket: u64, key: &str, seq: u64) {
        if seq > self.object_tombstone(bucket, key) {
            self.object_tombstones
                .entry(bucket)
                .or_default()
                .insert(Box::from(key), seq);
        }
        if index.object(bucket, key).is_some_and(|(_, e)| e.seq < seq) {
            index.remove_object(bucket, key);
        }
    }

    fn put_chunk(&mut self, index: &mut Index, id: (u64, u32), entry: ChunkEntry) {
        let tombstone = self.chunk_tombstones.get(&id).copied().unwrap_or(0);
        let current = index.chunk(id.0, id.1).map_or(0, |e| e.seq);
        if entry.seq > tombstone && entry.seq > current {
            index.put_chunk(id.0, id.1, entry);
        }
    }

    fn delete_chunk(&mut self, index: &mut Index, id: (u64, u32), seq: u64) {
        let tombstone = self.chunk_tombstones.entry(id).or_default();
        *tombstone = (*tombstone).max(seq);
        if index.chunk(id.0, id.1).is_some_and(|e| e.seq < seq) {
            index.remove_chunk(id.0, id.1);
        }
    }
}
