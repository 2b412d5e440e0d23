//! What evaluation needs from storage, and a simple in-memory storage.

use std::collections::HashMap;

use photon_tsdb::{Labels, Matcher, Sample};

use crate::QueryError;

/// One selection the query needs: the series matching all matchers, with
/// their samples in `[mint_ms, maxt_ms]` (both included).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub matchers: Vec<Matcher>,
    pub mint_ms: i64,
    pub maxt_ms: i64,
}

/// A series and its samples, sorted by time. Samples may include
/// staleness markers (`photon_tsdb::STALE_NAN`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// A source of series for evaluation.
pub trait Queryable {
    /// The series matching `sel.matchers` with their samples in the range.
    /// Series without samples in the range may be left out.
    fn select(&self, sel: &Selection) -> Result<Vec<SeriesData>, QueryError>;
}

/// Series held in memory: for tests, and for queries whose data was
/// prefetched over the network (see `crate::selections`).
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    series: Vec<SeriesData>,
    index: HashMap<Labels, usize>,
}

impl MemStorage {
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// Adds samples to the series with these labels (created when new).
    /// Samples are kept sorted by time; a sample at an existing timestamp
    /// replaces the old one.
    pub fn add(&mut self, labels: Labels, samples: &[Sample]) {
        let idx = match self.index.get(&labels) {
            Some(&i) => i,
            None => {
                self.index.insert(labels.clone(), self.series.len());
                self.series.push(SeriesData {
                    labels,
                    samples: Vec::new(),
                });
                self.series.len() - 1
            }
        };
        let target = &mut self.series[idx].samples;
        for s in samples {
            // Appending in time order, the common case, costs no search.
            if target.last().is_none_or(|last| last.t < s.t) {
                target.push(*s);
                continue;
            }
            match target.binary_search_by_key(&s.t, |x| x.t) {
                Ok(i) => target[i] = *s,
                Err(i) => target.insert(i, *s),
            }
        }
    }

    /// Adds one series from `(name, value)` pairs, e.g.
    /// `add_series(&[("__name__", "up")], &[(0, 1.0)])`.
    pub fn add_series(&mut self, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
        let labels = Labels::new(
            labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        );
        let samples: Vec<Sample> = samples.iter().map(|&(t, v)| Sample { t, v }).collect();
        self.add(labels, &samples);
    }

    /// Adds a whole series already in `SeriesData` form.
    pub fn add_data(&mut self, data: SeriesData) {
        self.add(data.labels, &data.samples);
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }
}

impl Queryable for MemStorage {
    fn select(&self, sel: &Selection) -> Result<Vec<SeriesData>, QueryError> {
        let mut out = Vec::new();
        for s in &self.series {
            if !sel.matchers.iter().all(|m| m.matches_labels(&s.labels)) {
                continue;
            }
            let lo = s.samples.partition_point(|x| x.t < sel.mint_ms);
            let hi = s.samples.partition_point(|x| x.t <= sel.maxt_ms);
            if lo < hi {
                out.push(SeriesData {
                    labels: s.labels.clone(),
                    samples: s.samples[lo..hi].to_vec(),
                });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_filters_by_matchers_and_time() {
        let mut m = MemStorage::new();
        m.add_series(
            &[("__name__", "a"), ("job", "x")],
            &[(0, 1.0), (10, 2.0), (20, 3.0)],
        );
        m.add_series(&[("__name__", "b")], &[(10, 1.0)]);
        let sel = Selection {
            matchers: vec![Matcher::equal("__name__", "a")],
            mint_ms: 5,
            maxt_ms: 20,
        };
        let got = m.select(&sel).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples.len(), 2);
        // Re-adding a timestamp replaces its value.
        m.add_series(&[("__name__", "b")], &[(10, 5.0)]);
        assert_eq!(m.series_count(), 2);
    }
}
