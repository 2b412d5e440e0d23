//! Remote write 1.0: `prometheus.WriteRequest` (prompb remote.proto and
//! types.proto). Label strings are read as bytes so that a value that is
//! not UTF-8 is refused with the series and label named, not with prost's
//! generic message.

use photon_tsdb::{Labels, Sample};
use prost::Message;

use super::{compress, kind_name, scan};
use crate::batch::BatchBuilder;
use crate::error::{LabelProblem, Place, WireError};
use crate::labels::{describe, quoted, series_labels};
use crate::{Limits, Metadata, SeriesSamples, WriteBatch};

#[derive(Clone, PartialEq, Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
    // Tag 2 is reserved in the spec.
    #[prost(message, repeated, tag = "3")]
    metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<ProtoSample>,
    #[prost(message, repeated, tag = "3")]
    exemplars: Vec<Unread>,
    #[prost(message, repeated, tag = "4")]
    histograms: Vec<Unread>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Label {
    #[prost(bytes = "vec", tag = "1")]
    pub(super) name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoSample {
    /// Optional only so that prost writes -0.0 (proto3 omits a value equal
    /// to 0.0, which would turn -0.0 into 0.0); absent still reads as 0.0.
    #[prost(double, optional, tag = "1")]
    value: Option<f64>,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
struct MetricMetadata {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(bytes = "vec", tag = "2")]
    metric_family_name: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    help: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    unit: Vec<u8>,
}

/// A message we refuse on sight (histograms, exemplars): its presence is
/// all we need, so its fields are skipped unread.
#[derive(Clone, PartialEq, Message)]
pub(super) struct Unread {}

const MESSAGE: &str = "prometheus.WriteRequest";

pub(super) fn decode(body: &[u8], limits: &Limits) -> Result<WriteBatch, WireError> {
    scan::check_v1(body, limits)?;
    let request = WriteRequest::decode(body).map_err(|source| WireError::Protobuf {
        message: MESSAGE,
        source,
    })?;
    let mut builder = BatchBuilder::new(limits);
    for (index, series) in request.timeseries.into_iter().enumerate() {
        let at = || Place::Series {
            index,
            labels: describe(series.labels.iter().map(|l| (&l.name[..], &l.value[..]))),
        };
        if !series.histograms.is_empty() {
            return Err(WireError::NativeHistograms { at: at() });
        }
        if !series.exemplars.is_empty() {
            return Err(WireError::Exemplars { at: at() });
        }
        let labels = labels_of(&series.labels, limits)
            .map_err(|problem| WireError::Label { at: at(), problem })?;
        let samples = series
            .samples
            .iter()
            .map(|s| Sample {
                t: s.timestamp,
                v: s.value.unwrap_or_default(),
            })
            .collect();
        builder.push_series(labels, samples)?;
    }
    for (index, metadata) in request.metadata.into_iter().enumerate() {
        builder.push_metadata(metadata_of(index, metadata)?)?;
    }
    Ok(builder.finish())
}

pub(super) fn labels_of(labels: &[Label], limits: &Limits) -> Result<Labels, LabelProblem> {
    let mut pairs = Vec::with_capacity(labels.len());
    for label in labels {
        match (
            std::str::from_utf8(&label.name),
            std::str::from_utf8(&label.value),
        ) {
            (Ok(name), Ok(value)) => pairs.push((name.to_string(), value.to_string())),
            _ => {
                return Err(LabelProblem::NotUtf8 {
                    name: quoted(&String::from_utf8_lossy(&label.name)),
                })
            }
        }
    }
    series_labels(pairs, limits)
}

fn metadata_of(index: usize, metadata: MetricMetadata) -> Result<Metadata, WireError> {
    let text = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| WireError::Syntax {
            at: Place::Metadata(index),
            reason: "metadata is not valid UTF-8".to_string(),
        })
    };
    Ok(Metadata {
        metric_family: text(metadata.metric_family_name)?,
        kind: kind_name(metadata.kind).to_string(),
        help: text(metadata.help)?,
        unit: text(metadata.unit)?,
    })
}

/// A snappy-compressed 1.0 request carrying these series (no metadata).
pub fn encode(series: &[SeriesSamples]) -> Vec<u8> {
    let request = WriteRequest {
        timeseries: series
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.as_bytes().to_vec(),
                        value: value.as_bytes().to_vec(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|s| ProtoSample {
                        value: Some(s.v),
                        timestamp: s.t,
                    })
                    .collect(),
                exemplars: Vec::new(),
                histograms: Vec::new(),
            })
            .collect(),
        metadata: Vec::new(),
    };
    compress(&request.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use photon_tsdb::STALE_NAN;

    fn label(name: &str, value: &[u8]) -> Label {
        Label {
            name: name.as_bytes().to_vec(),
            value: value.to_vec(),
        }
    }

    fn request(labels: Vec<Label>) -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels,
                samples: vec![ProtoSample {
                    value: Some(f64::from_bits(STALE_NAN)),
                    timestamp: 7,
                }],
                exemplars: vec![],
                histograms: vec![],
            }],
            metadata: vec![],
        }
    }

    fn run(request: &WriteRequest) -> Result<WriteBatch, WireError> {
        decode(&request.encode_to_vec(), &Limits::default())
    }

    #[test]
    fn a_series_decodes_with_its_staleness_marker_intact() {
        let mut r = request(vec![label("job", b"a"), label("__name__", b"up")]);
        r.metadata.push(MetricMetadata {
            kind: 1,
            metric_family_name: b"up".to_vec(),
            help: b"h".to_vec(),
            unit: b"".to_vec(),
        });
        let batch = run(&r).unwrap();
        assert_eq!(batch.series[0].labels.to_string(), "up{job=\"a\"}");
        assert_eq!(batch.series[0].samples[0].t, 7);
        assert_eq!(batch.series[0].samples[0].v.to_bits(), STALE_NAN);
        assert_eq!(batch.metadata[0].kind, "counter");
        assert_eq!(batch.metadata[0].help, "h");
    }

    #[test]
    fn bad_series_refuse_the_request_and_are_named() {
        let e = run(&request(vec![label("job", b"a")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "series 0 {job=\"a\"}: no metric name (label __name__)"
        );
        let e = run(&request(vec![
            label("__name__", b"up"),
            label("a", b"\xff"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
        let e = run(&request(vec![
            label("__name__", b"up"),
            label("a", b"1"),
            label("a", b"2"),
        ]))
        .unwrap_err();
        assert!(e.to_string().ends_with("duplicate label name a"), "{e}");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn histograms_and_exemplars_are_refused_not_dropped() {
        let mut r = request(vec![label("__name__", b"up")]);
        r.timeseries[0].histograms.push(Unread {});
        let e = run(&r).unwrap_err();
        assert!(e
            .to_string()
            .ends_with("native histograms are not supported"));
        let mut r = request(vec![label("__name__", b"up")]);
        r.timeseries[0].exemplars.push(Unread {});
        let e = run(&r).unwrap_err();
        assert!(e.to_string().ends_with("exemplars are not supported"));
    }

    #[test]
    fn bad_metadata_and_bad_protobuf_are_refused() {
        let mut r = request(vec![label("__name__", b"up")]);
        r.metadata.push(MetricMetadata {
            kind: 99,
            metric_family_name: b"\xff".to_vec(),
            help: vec![],
            unit: vec![],
        });
        assert!(matches!(run(&r), Err(WireError::Syntax { .. })));
        // A label field holding a varint: well-formed wire data, wrong type.
        let e = decode(&[0x0a, 0x02, 0x08, 0x01], &Limits::default()).unwrap_err();
        assert!(matches!(e, WireError::Protobuf { .. }), "{e}");
    }
}
