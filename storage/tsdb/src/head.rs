//! The head: the in-memory part of one shard's store, from the last cut to
//! now. The service validates a request with `check`, logs it in the WAL,
//! then applies it with `get_or_create` and `append`; every couple of hours
//! it `cut`s the old part into a block and writes a `checkpoint`.
//!
//! Memory per active series (measured in `tests::memory_per_series`, 6
//! labels of typical length): about 1 KiB of fixed cost (series struct,
//! map entries, postings entries, label strings), plus the open chunk
//! (at most `chunk_samples_max` samples) and every closed chunk since the
//! last cut, kept compressed with ~70 bytes of bookkeeping each. A series
//! scraped every 15 s over a 2 h head (480 samples) measured 2.3 KiB as a
//! counter (2.1 bytes a sample); a random-float gauge (7.4 bytes a sample)
//! comes to about 4.8 KiB. Out-of-order data is boxed and absent for most
//! series; when present it adds up to `chunk_samples_max` raw samples
//! (16 bytes each) plus compressed chunks.

mod series;

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::chunk::{XorChunk, SAMPLES_PER_CHUNK_MAX};
use crate::labels::{Labels, Matcher, Sample};
use crate::postings::{self, EmptyMatchersError, MemPostings};
use crate::wal::WalRecord;
use series::{place, MemSeries, Placement, Refusal};

/// A series' id in the head and in the WAL, stable across restarts.
pub type SeriesRef = u64;

/// Refs stay below this; a larger ref in the WAL is corruption (a head
/// creating a million series a second takes 146,000 years to get here).
pub const SERIES_REF_MAX: SeriesRef = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Series the head holds at most; more are refused.
    pub series_max: usize,
    /// 0: samples older than a series' newest are refused (Prometheus'
    /// default). Above 0: samples down to newest - window are accepted into
    /// a per-series out-of-order buffer and merged on read.
    pub ooo_window_ms: i64,
    /// Samples per chunk before a new one is cut.
    pub chunk_samples_max: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            series_max: 1_000_000,
            ooo_window_ms: 0,
            chunk_samples_max: SAMPLES_PER_CHUNK_MAX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("series limit of {limit} reached")]
    SeriesLimit { limit: usize },
    #[error("out of order sample for {labels} at {t} (newest {max_t})")]
    OutOfOrder { labels: String, t: i64, max_t: i64 },
    #[error("out of bounds: sample for {labels} at {t} is older than the head's start {min_t}")]
    OutOfBounds { labels: String, t: i64, min_t: i64 },
    #[error("duplicate sample for timestamp {t} of {labels} with a different value")]
    DuplicateTimestamp { labels: String, t: i64 },
    #[error("no series with ref {r}")]
    UnknownSeries { r: SeriesRef },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadStats {
    pub series: usize,
    pub samples: usize,
    /// Encoded chunk bytes (open chunks included).
    pub chunk_bytes: usize,
    /// Approximate memory the head holds, indexes included.
    pub memory_bytes: usize,
    /// Oldest and newest sample; None when the head is empty.
    pub min_t: Option<i64>,
    pub max_t: Option<i64>,
}

/// Labels hashed for the lookup map; xxh3 over names and values with a
/// separator byte that UTF-8 never contains.
fn hash_labels(labels: &Labels) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (name, value) in labels.iter() {
        h.update(name.as_bytes());
        h.update(&[0xff]);
        h.update(value.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

#[derive(Debug)]
pub struct Head {
    limits: HeadLimits,
    series: HashMap<SeriesRef, MemSeries>,
    /// Labels hash to ref. Hashing saves a second copy of every label set;
    /// the rare colliding sets go to `collisions`.
    by_hash: HashMap<u64, SeriesRef>,
    collisions: HashMap<Labels, SeriesRef>,
    /// Refs the WAL used for a label set that already had another ref.
    aliases: HashMap<SeriesRef, SeriesRef>,
    postings: MemPostings,
    next_ref: SeriesRef,
    /// Samples older than this were cut into a block.
    min_valid_t: i64,
    samples: usize,
}

/// What `check` has seen of one series in the batch so far.
struct Pending<'a> {
    series: Option<&'a MemSeries>,
    newest: Option<(i64, u64)>,
    batch: HashMap<i64, u64>,
}

impl Head {
    pub fn new(limits: HeadLimits) -> Self {
        assert!(
            limits.chunk_samples_max > 0
                && limits.chunk_samples_max <= crate::chunk::CHUNK_SAMPLES_LIMIT
        );
        assert!(limits.ooo_window_ms >= 0);
        Head {
            limits,
            series: HashMap::new(),
            by_hash: HashMap::new(),
            collisions: HashMap::new(),
            aliases: HashMap::new(),
            postings: MemPostings::default(),
            next_ref: 1,
            min_valid_t: i64::MIN,
            samples: 0,
        }
    }

    pub fn limits(&self) -> HeadLimits {
        self.limits
    }

    /// The oldest time the head accepts (the last cut).
    pub fn min_valid_t(&self) -> i64 {
        self.min_valid_t
    }

    /// At start-up, the end of the newest block: older samples in the WAL
    /// are already in blocks and are refused as out of bounds.
    pub fn set_min_valid_t(&mut self, t: i64) {
        self.min_valid_t = self.min_valid_t.max(t);
    }

    /// The ref of the series with exactly these labels, if the head has it.
    pub fn lookup(&self, labels: &Labels) -> Option<SeriesRef> {
        if let Some(&r) = self.collisions.get(labels) {
            return Some(r);
        }
        let r = *self.by_hash.get(&hash_labels(labels))?;
        (self.series.get(&r)?.labels == *labels).then_some(r)
    }

    fn resolve(&self, r: SeriesRef) -> SeriesRef {
        self.aliases.get(&r).copied().unwrap_or(r)
    }

    /// Validates a whole batch before anything is applied and returns the
    /// first error; when it passes, applying the batch cannot fail. Series
    /// not yet present count against `series_max`.
    pub fn check(&self, batch: &[(Labels, Vec<Sample>)]) -> Result<(), AppendError> {
        let mut pending: HashMap<&Labels, Pending<'_>> = HashMap::new();
        let mut new_series: HashSet<&Labels> = HashSet::new();
        for (labels, samples) in batch {
            let existing = self.lookup(labels).and_then(|r| self.series.get(&r));
            if existing.is_none()
                && new_series.insert(labels)
                && self.series.len() + new_series.len() > self.limits.series_max
            {
                return Err(AppendError::SeriesLimit {
                    limit: self.limits.series_max,
                });
            }
            let p = pending.entry(labels).or_insert_with(|| Pending {
                series: existing,
                newest: existing.and_then(MemSeries::newest),
                batch: HashMap::new(),
            });
            for &s in samples {
                let stored = |t| {
                    p.batch
                        .get(&t)
                        .copied()
                        .or_else(|| p.series.and_then(|x| x.value_at(t)))
                };
                match place(
                    p.newest,
                    self.min_valid_t,
                    self.limits.ooo_window_ms,
                    s,
                    stored,
                ) {
                    Ok(Placement::Duplicate) => {}
                    Ok(placement) => {
                        if placement == Placement::InOrder {
                            p.newest = Some((s.t, s.v.to_bits()));
                        }
                        p.batch.insert(s.t, s.v.to_bits());
                    }
                    Err(refusal) => return Err(refusal_error(labels, s.t, refusal)),
                }
            }
        }
        Ok(())
    }

    /// Looks up or creates a series; `true` when created (the service logs
    /// a created series in the WAL before its samples).
    pub fn get_or_create(&mut self, labels: &Labels) -> Result<(SeriesRef, bool), AppendError> {
        if let Some(r) = self.lookup(labels) {
            return Ok((r, false));
        }
        if self.series.len() >= self.limits.series_max {
            return Err(AppendError::SeriesLimit {
                limit: self.limits.series_max,
            });
        }
        let r = self.next_ref;
        self.insert_series(r, labels.clone());
        Ok((r, true))
    }

    fn insert_series(&mut self, r: SeriesRef, labels: Labels) {
        assert!(!self.series.contains_key(&r), "series ref {r} in use");
        assert!(r < SERIES_REF_MAX, "series refs exhausted");
        self.aliases.remove(&r);
        self.next_ref = self.next_ref.max(r + 1);
        let hash = hash_labels(&labels);
        match self.by_hash.get(&hash) {
            Some(_) => {
                self.collisions.insert(labels.clone(), r);
            }
            None => {
                self.by_hash.insert(hash, r);
            }
        }
        self.postings.add(r, &labels);
        self.series.insert(r, MemSeries::new(labels));
    }

    fn remove_series(&mut self, refs: &[SeriesRef]) {
        let removed: Vec<(SeriesRef, MemSeries)> = refs
            .iter()
            .filter_map(|r| self.series.remove(r).map(|s| (*r, s)))
            .collect();
        let pairs: Vec<(SeriesRef, &Labels)> =
            removed.iter().map(|(r, s)| (*r, &s.labels)).collect();
        self.postings.remove(&pairs);
        for (r, s) in &removed {
            if self.collisions.get(&s.labels) == Some(r) {
                self.collisions.remove(&s.labels);
                continue;
            }
            let hash = hash_labels(&s.labels);
            if self.by_hash.get(&hash) == Some(r) {
                self.by_hash.remove(&hash);
                // A colliding set may now take the hash slot.
                if let Some((labels, other)) =
                    self.collisions.iter().find(|(l, _)| hash_labels(l) == hash)
                {
                    let (labels, other) = (labels.clone(), *other);
                    self.collisions.remove(&labels);
                    self.by_hash.insert(hash, other);
                }
            }
        }
        let gone: HashSet<SeriesRef> = refs.iter().copied().collect();
        self.aliases.retain(|_, target| !gone.contains(target));
    }

    /// Appends one sample. Same timestamp and same value bits as a stored
    /// sample is a no-op, as in Prometheus.
    pub fn append(&mut self, r: SeriesRef, s: Sample) -> Result<(), AppendError> {
        let r = self.resolve(r);
        let limits = self.limits;
        let min_valid_t = self.min_valid_t;
        let series = self
            .series
            .get_mut(&r)
            .ok_or(AppendError::UnknownSeries { r })?;
        match place(series.newest(), min_valid_t, limits.ooo_window_ms, s, |t| {
            series.value_at(t)
        }) {
            Ok(placement) => {
                if placement != Placement::Duplicate {
                    self.samples += 1;
                }
                series.store(s, placement, limits.chunk_samples_max);
                Ok(())
            }
            Err(refusal) => Err(refusal_error(&series.labels, s.t, refusal)),
        }
    }

    /// WAL replay: re-creates a series under the ref the WAL gave it, so
    /// later Samples records find it. The series limit does not apply (the
    /// data was accepted once). A label set already present under another
    /// ref keeps its series; the new ref becomes an alias of it. Refs from
    /// `SERIES_REF_MAX` on are ignored (their samples then meet
    /// `UnknownSeries`).
    pub fn restore_series(&mut self, r: SeriesRef, labels: Labels) {
        if r >= SERIES_REF_MAX {
            return;
        }
        match self.lookup(&labels) {
            Some(existing) if existing == r => {}
            // A ref reused for other labels: only a corrupt WAL does that
            // (its checksums held, so not a torn write); keep the first.
            _ if self.series.contains_key(&r) => {}
            Some(existing) => {
                self.aliases.insert(r, existing);
                self.next_ref = self.next_ref.max(r + 1);
            }
            None => self.insert_series(r, labels),
        }
    }

    /// Refs the matchers select, sorted.
    fn select_refs(&self, matchers: &[Matcher]) -> Result<Vec<SeriesRef>, EmptyMatchersError> {
        postings::check_matchers(matchers)?;
        let Ok(refs) = postings::select(&self.postings, matchers);
        Ok(refs)
    }

    /// Selected series with their samples in `mint..=maxt`, sorted by
    /// labels; series without samples in the range are left out.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, EmptyMatchersError> {
        let mut out: Vec<(Labels, Vec<Sample>)> = self
            .select_refs(matchers)?
            .into_iter()
            .filter_map(|r| self.series.get(&r))
            .map(|s| (s.labels.clone(), s.samples(mint, maxt)))
            .filter(|(_, samples)| !samples.is_empty())
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn selected_in_range(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<impl Iterator<Item = &MemSeries>, EmptyMatchersError> {
        Ok(self
            .select_refs(matchers)?
            .into_iter()
            .filter_map(|r| self.series.get(&r))
            .filter(move |s| s.has_samples_in(mint, maxt)))
    }

    /// Labels of the selected series with samples in `mint..=maxt`, sorted.
    pub fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, EmptyMatchersError> {
        let mut out: Vec<Labels> = self
            .selected_in_range(matchers, mint, maxt)?
            .map(|s| s.labels.clone())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Label names of the selected series (all with no matchers), sorted.
    pub fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, EmptyMatchersError> {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for s in self.selected_in_range(matchers, mint, maxt)? {
            names.extend(s.labels.iter().map(|(n, _)| n));
        }
        Ok(names.into_iter().map(str::to_string).collect())
    }

    /// Values of label `name` among the selected series, sorted.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, EmptyMatchersError> {
        postings::check_matchers(matchers)?;
        let mut values: BTreeSet<&str> = BTreeSet::new();
        if matchers.is_empty() {
            // Straight from the index: one value is in if any series has it.
            for (value, refs) in self.postings.values(name) {
                let live = refs.iter().filter_map(|r| self.series.get(r));
                if live.into_iter().any(|s| s.has_samples_in(mint, maxt)) {
                    values.insert(value);
                }
            }
        } else {
            for s in self.selected_in_range(matchers, mint, maxt)? {
                values.extend(s.labels.get(name));
            }
        }
        Ok(values.into_iter().map(str::to_string).collect())
    }

    pub fn stats(&self) -> HeadStats {
        let mut stats = HeadStats {
            series: self.series.len(),
            samples: self.samples,
            ..HeadStats::default()
        };
        // Map entries: key, value and a control byte, at ~87% load.
        let entry_overhead = |size: usize| (size + 1) * 8 / 7;
        stats.memory_bytes = self.series.capacity()
            * entry_overhead(8 + std::mem::size_of::<MemSeries>())
            + self.by_hash.capacity() * entry_overhead(16)
            + self.postings.memory_bytes();
        for s in self.series.values() {
            stats.chunk_bytes += s.chunk_bytes();
            stats.memory_bytes += s.memory_bytes() - std::mem::size_of::<MemSeries>();
            if let Some((t, _)) = s.newest() {
                stats.max_t = Some(stats.max_t.map_or(t, |m| m.max(t)));
            }
            if let Some(t) = s.min_t() {
                stats.min_t = Some(stats.min_t.map_or(t, |m| m.min(t)));
            }
        }
        debug_assert_eq!(
            self.samples,
            self.series
                .values()
                .map(MemSeries::sample_count)
                .sum::<usize>()
        );
        stats
    }

    /// Cuts everything older than `before` out of the head and returns it
    /// for a block: series sorted by labels, each with its chunks in time
    /// order. Series left without samples are dropped (their refs are not
    /// reused). Samples older than `before` are refused from then on.
    pub fn cut(&mut self, before: i64) -> Vec<(Labels, Vec<XorChunk>)> {
        let per_chunk = self.limits.chunk_samples_max;
        let mut out = Vec::new();
        let mut empty = Vec::new();
        for (r, s) in self.series.iter_mut() {
            let chunks = s.cut(before, per_chunk);
            if !chunks.is_empty() {
                self.samples -= chunks.iter().map(XorChunk::len).sum::<usize>();
                out.push((s.labels.clone(), chunks));
            }
            if s.is_empty() {
                empty.push(*r);
            }
        }
        self.remove_series(&empty);
        self.set_min_valid_t(before);
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Records that recreate the head's series and samples: a Series record
    /// for every series, then their samples (time order per series; replay
    /// stores them all in order). The service also restores the min valid
    /// time from its newest block (`set_min_valid_t`).
    pub fn checkpoint(&self) -> Vec<WalRecord> {
        let mut refs: Vec<SeriesRef> = self.series.keys().copied().collect();
        refs.sort_unstable();
        let mut out: Vec<WalRecord> = refs
            .iter()
            .map(|r| WalRecord::Series {
                r: *r,
                labels: self.series[r].labels.clone(),
            })
            .collect();
        let mut batch = Vec::new();
        for r in &refs {
            for s in self.series[r].samples(i64::MIN, i64::MAX) {
                batch.push((*r, s));
                if batch.len() >= crate::wal::SAMPLES_PER_RECORD_MAX {
                    out.push(WalRecord::Samples(std::mem::take(&mut batch)));
                }
            }
        }
        if !batch.is_empty() {
            out.push(WalRecord::Samples(batch));
        }
        out
    }
}

fn refusal_error(labels: &Labels, t: i64, refusal: Refusal) -> AppendError {
    let labels = labels.to_string();
    match refusal {
        Refusal::OutOfBounds { min_t } => AppendError::OutOfBounds { labels, t, min_t },
        Refusal::OutOfOrder { max_t } => AppendError::OutOfOrder { labels, t, max_t },
        Refusal::DuplicateTimestamp => AppendError::DuplicateTimestamp { labels, t },
    }
}

#[cfg(test)]
mod tests;
