//! What a decoded request is, and the builder every decoder fills while it
//! enforces the per-request limits.

use std::collections::HashMap;

use photon_tsdb::{Labels, Sample};

use crate::error::WireError;
use crate::Limits;

/// A decoded write: what the storage appends. Every series has valid labels
/// (checked here), a metric name, samples in request order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub series: Vec<SeriesSamples>,
    pub metadata: Vec<Metadata>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// A metric family's description, as Prometheus keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub metric_family: String,
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`,
    /// `stateset` or `unknown` (Prometheus' names; text `untyped` is
    /// `unknown`).
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// For v2 responses: counts to put in
/// X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WrittenCounts {
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
}

impl WriteBatch {
    /// The counts once the whole batch is stored. Histograms and exemplars
    /// are refused at decoding, so theirs are always 0.
    pub fn written_counts(&self) -> WrittenCounts {
        WrittenCounts {
            samples: self.series.iter().map(|s| s.samples.len() as u64).sum(),
            histograms: 0,
            exemplars: 0,
        }
    }
}

/// Collects series, samples and metadata, refusing the request as soon as
/// it passes a limit.
pub(crate) struct BatchBuilder<'a> {
    limits: &'a Limits,
    batch: WriteBatch,
    samples: usize,
    /// Series by labels, for the text formats, whose lines repeat a series.
    index: HashMap<Labels, usize>,
    metadata_index: HashMap<String, usize>,
}

impl<'a> BatchBuilder<'a> {
    pub(crate) fn new(limits: &'a Limits) -> Self {
        BatchBuilder {
            limits,
            batch: WriteBatch::default(),
            samples: 0,
            index: HashMap::new(),
            metadata_index: HashMap::new(),
        }
    }

    fn count_samples(&mut self, count: usize) -> Result<(), WireError> {
        self.samples = self.samples.saturating_add(count);
        if self.samples > self.limits.samples_per_request_max {
            return Err(WireError::TooManySamples {
                max: self.limits.samples_per_request_max,
            });
        }
        Ok(())
    }

    fn new_series(&mut self, labels: Labels, samples: Vec<Sample>) -> Result<usize, WireError> {
        if self.batch.series.len() >= self.limits.series_per_request_max {
            return Err(WireError::TooManySeries {
                max: self.limits.series_per_request_max,
            });
        }
        self.batch.series.push(SeriesSamples { labels, samples });
        Ok(self.batch.series.len() - 1)
    }

    /// Appends a series as its own entry (remote write keeps the request's
    /// series as sent, even when two carry the same labels).
    pub(crate) fn push_series(
        &mut self,
        labels: Labels,
        samples: Vec<Sample>,
    ) -> Result<(), WireError> {
        self.count_samples(samples.len())?;
        self.new_series(labels, samples).map(drop)
    }

    /// Appends one sample to the series with these labels, creating it on
    /// first sight.
    pub(crate) fn push_sample(&mut self, labels: Labels, sample: Sample) -> Result<(), WireError> {
        self.count_samples(1)?;
        let at = match self.index.get(&labels) {
            Some(&at) => at,
            None => {
                let at = self.new_series(labels.clone(), Vec::new())?;
                self.index.insert(labels, at);
                at
            }
        };
        self.batch.series[at].samples.push(sample);
        Ok(())
    }

    /// The metadata entry of a family, created on first sight.
    pub(crate) fn metadata(&mut self, family: &str) -> Result<&mut Metadata, WireError> {
        let at = match self.metadata_index.get(family) {
            Some(&at) => at,
            None => {
                self.push_metadata(Metadata {
                    metric_family: family.to_string(),
                    kind: "unknown".to_string(),
                    ..Metadata::default()
                })?;
                let at = self.batch.metadata.len() - 1;
                self.metadata_index.insert(family.to_string(), at);
                at
            }
        };
        Ok(&mut self.batch.metadata[at])
    }

    /// Appends a metadata entry unless the same one is already there (v2
    /// repeats a family's metadata on each of its series).
    pub(crate) fn push_metadata(&mut self, metadata: Metadata) -> Result<(), WireError> {
        if let Some(&at) = self.metadata_index.get(&metadata.metric_family) {
            if self.batch.metadata[at] == metadata {
                return Ok(());
            }
        }
        if self.batch.metadata.len() >= self.limits.metadata_per_request_max {
            return Err(WireError::TooManyMetadata {
                max: self.limits.metadata_per_request_max,
            });
        }
        self.metadata_index
            .insert(metadata.metric_family.clone(), self.batch.metadata.len());
        self.batch.metadata.push(metadata);
        Ok(())
    }

    pub(crate) fn finish(self) -> WriteBatch {
        self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Labels {
        Labels::new(vec![("__name__".into(), name.into())])
    }

    #[test]
    fn samples_group_by_series_in_request_order() {
        let limits = Limits::default();
        let mut b = BatchBuilder::new(&limits);
        b.push_sample(labels("b"), Sample { t: 1, v: 1.0 }).unwrap();
        b.push_sample(labels("a"), Sample { t: 1, v: 2.0 }).unwrap();
        b.push_sample(labels("b"), Sample { t: 2, v: 3.0 }).unwrap();
        let batch = b.finish();
        assert_eq!(batch.series.len(), 2);
        assert_eq!(batch.series[0].labels, labels("b"));
        assert_eq!(batch.series[0].samples.len(), 2);
        assert_eq!(batch.written_counts().samples, 3);
    }

    #[test]
    fn limits_refuse() {
        let limits = Limits {
            series_per_request_max: 1,
            samples_per_request_max: 2,
            metadata_per_request_max: 1,
            ..Limits::default()
        };
        let mut b = BatchBuilder::new(&limits);
        b.push_sample(labels("a"), Sample { t: 1, v: 1.0 }).unwrap();
        let e = b.push_sample(labels("b"), Sample { t: 1, v: 1.0 });
        assert!(matches!(e, Err(WireError::TooManySeries { max: 1 })));
        let e = b.push_series(labels("a"), vec![Sample { t: 1, v: 1.0 }; 2]);
        assert_eq!(e.unwrap_err().status(), 413);
        b.metadata("a").unwrap().help = "h".into();
        assert!(b.metadata("a").is_ok());
        assert!(matches!(
            b.metadata("b"),
            Err(WireError::TooManyMetadata { max: 1 })
        ));
    }
}
