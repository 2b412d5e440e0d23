//! Remote write 2.0: `io.prometheus.write.v2.Request`. Every string is a
//! reference into the request's symbol table, whose first entry is "".
//!
//! Created timestamps (rc.3's `TimeSeries.created_timestamp`, rc.4's
//! `Sample.start_timestamp`) are read and ignored: Prometheus' receiver
//! ingests them as a zero sample only behind the
//! `created-timestamp-zero-ingestion` feature flag, off by default, and
//! NightLight has no such sample yet.

use std::collections::HashMap;

use photon_tsdb::{Labels, Sample};
use prost::Message;

use super::v1::Unread;
use super::{compress, kind_name, scan};
use crate::batch::BatchBuilder;
use crate::error::{LabelProblem, Place, WireError};
use crate::labels::{describe, quoted, series_labels};
use crate::{Limits, Metadata, SeriesSamples, WriteBatch};

#[derive(Clone, PartialEq, Message)]
struct Request {
    // Tags 1 to 3 are reserved so that a 1.0 body never parses as 2.0.
    #[prost(bytes = "vec", repeated, tag = "4")]
    symbols: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "5")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
struct TimeSeries {
    #[prost(uint32, repeated, tag = "1")]
    labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<ProtoSample>,
    #[prost(message, repeated, tag = "3")]
    histograms: Vec<Unread>,
    #[prost(message, repeated, tag = "4")]
    exemplars: Vec<Unread>,
    #[prost(message, optional, tag = "5")]
    metadata: Option<ProtoMetadata>,
    #[prost(int64, tag = "6")]
    created_timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoSample {
    /// Optional only so that prost writes -0.0 (proto3 omits a value equal
    /// to 0.0, which would turn -0.0 into 0.0); absent still reads as 0.0.
    #[prost(double, optional, tag = "1")]
    value: Option<f64>,
    #[prost(int64, tag = "2")]
    timestamp: i64,
    #[prost(int64, tag = "3")]
    start_timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoMetadata {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(uint32, tag = "3")]
    help_ref: u32,
    #[prost(uint32, tag = "4")]
    unit_ref: u32,
}

const MESSAGE: &str = "io.prometheus.write.v2.Request";

pub(super) fn decode(body: &[u8], limits: &Limits) -> Result<WriteBatch, WireError> {
    scan::check_v2(body, limits)?;
    let request = Request::decode(body).map_err(|source| WireError::Protobuf {
        message: MESSAGE,
        source,
    })?;
    let symbols = &request.symbols;
    if symbols.first().is_some_and(|first| !first.is_empty()) {
        return Err(WireError::FirstSymbolNotEmpty);
    }
    let mut builder = BatchBuilder::new(limits);
    for (index, series) in request.timeseries.iter().enumerate() {
        let at = || Place::Series {
            index,
            labels: describe(series.labels_refs.chunks(2).map(|pair| {
                let text = |r: Option<&u32>| {
                    r.and_then(|&r| symbols.get(r as usize))
                        .map_or(&b"?"[..], Vec::as_slice)
                };
                (text(pair.first()), text(pair.get(1)))
            })),
        };
        if !series.histograms.is_empty() {
            return Err(WireError::NativeHistograms { at: at() });
        }
        if !series.exemplars.is_empty() {
            return Err(WireError::Exemplars { at: at() });
        }
        let labels = labels_of(symbols, &series.labels_refs, limits, at)?;
        if let Some(metadata) = &series.metadata {
            if let Some(metadata) = metadata_of(symbols, metadata, &labels, at)? {
                builder.push_metadata(metadata)?;
            }
        }
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
    Ok(builder.finish())
}

/// The symbol `reference` names, as text.
fn symbol(symbols: &[Vec<u8>], reference: u32, at: impl Fn() -> Place) -> Result<&str, WireError> {
    let bytes = symbols
        .get(reference as usize)
        .ok_or_else(|| WireError::SymbolOutOfRange {
            at: at(),
            reference,
            symbols: symbols.len(),
        })?;
    std::str::from_utf8(bytes).map_err(|_| WireError::Label {
        at: at(),
        problem: LabelProblem::NotUtf8 {
            name: quoted(&String::from_utf8_lossy(bytes)),
        },
    })
}

fn labels_of(
    symbols: &[Vec<u8>],
    refs: &[u32],
    limits: &Limits,
    at: impl Fn() -> Place,
) -> Result<Labels, WireError> {
    if !refs.len().is_multiple_of(2) {
        return Err(WireError::OddLabelRefs {
            at: at(),
            count: refs.len(),
        });
    }
    let mut pairs = Vec::with_capacity(refs.len() / 2);
    for pair in refs.chunks_exact(2) {
        let name = symbol(symbols, pair[0], &at)?;
        let value = symbol(symbols, pair[1], &at)?;
        pairs.push((name.to_string(), value.to_string()));
    }
    series_labels(pairs, limits).map_err(|problem| WireError::Label { at: at(), problem })
}

/// The series' metadata, unless it says nothing (no type, help or unit).
fn metadata_of(
    symbols: &[Vec<u8>],
    metadata: &ProtoMetadata,
    labels: &Labels,
    at: impl Fn() -> Place,
) -> Result<Option<Metadata>, WireError> {
    let help = symbol(symbols, metadata.help_ref, &at)?;
    let unit = symbol(symbols, metadata.unit_ref, &at)?;
    if metadata.kind == 0 && help.is_empty() && unit.is_empty() {
        return Ok(None);
    }
    Ok(Some(Metadata {
        metric_family: labels.name().unwrap_or_default().to_string(),
        kind: kind_name(metadata.kind).to_string(),
        help: help.to_string(),
        unit: unit.to_string(),
    }))
}

/// The symbol table an encoder builds: each string once, "" first.
struct SymbolTable<'a> {
    symbols: Vec<Vec<u8>>,
    index: HashMap<&'a str, u32>,
}

impl<'a> SymbolTable<'a> {
    fn new() -> Self {
        SymbolTable {
            symbols: vec![Vec::new()],
            index: HashMap::from([("", 0)]),
        }
    }

    fn intern(&mut self, text: &'a str) -> u32 {
        if let Some(&at) = self.index.get(text) {
            return at;
        }
        // Requests this large are refused by any receiver long before.
        let at = u32::try_from(self.symbols.len()).expect("fewer than 2^32 symbols");
        self.symbols.push(text.as_bytes().to_vec());
        self.index.insert(text, at);
        at
    }
}

/// A snappy-compressed 2.0 request carrying these series (no metadata).
pub fn encode(series: &[SeriesSamples]) -> Vec<u8> {
    let mut table = SymbolTable::new();
    let mut timeseries = Vec::with_capacity(series.len());
    for s in series {
        let mut labels_refs = Vec::with_capacity(2 * s.labels.len());
        for (name, value) in s.labels.iter() {
            labels_refs.push(table.intern(name));
            labels_refs.push(table.intern(value));
        }
        timeseries.push(TimeSeries {
            labels_refs,
            samples: s
                .samples
                .iter()
                .map(|s| ProtoSample {
                    value: Some(s.v),
                    timestamp: s.t,
                    start_timestamp: 0,
                })
                .collect(),
            histograms: Vec::new(),
            exemplars: Vec::new(),
            metadata: None,
            created_timestamp: 0,
        });
    }
    compress(
        &Request {
            symbols: table.symbols,
            timeseries,
        }
        .encode_to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn series(labels_refs: Vec<u32>) -> TimeSeries {
        TimeSeries {
            labels_refs,
            samples: vec![ProtoSample {
                value: Some(1.5),
                timestamp: 10,
                start_timestamp: 3,
            }],
            histograms: vec![],
            exemplars: vec![],
            metadata: None,
            created_timestamp: 5,
        }
    }

    fn run(request: Request) -> Result<WriteBatch, WireError> {
        decode(&request.encode_to_vec(), &Limits::default())
    }

    #[test]
    fn labels_and_metadata_resolve_through_the_symbols() {
        let mut s = series(vec![1, 2, 3, 4]);
        s.metadata = Some(ProtoMetadata {
            kind: 2,
            help_ref: 5,
            unit_ref: 6,
        });
        let batch = run(Request {
            symbols: symbols(&[
                "",
                "__name__",
                "temp",
                "room",
                "a",
                "Temperature.",
                "celsius",
            ]),
            timeseries: vec![s.clone(), s],
        })
        .unwrap();
        assert_eq!(batch.series.len(), 2);
        assert_eq!(batch.series[0].labels.to_string(), "temp{room=\"a\"}");
        assert_eq!(batch.series[0].samples, vec![Sample { t: 10, v: 1.5 }]);
        // Repeated on both series, kept once.
        assert_eq!(
            batch.metadata,
            vec![Metadata {
                metric_family: "temp".into(),
                kind: "gauge".into(),
                help: "Temperature.".into(),
                unit: "celsius".into(),
            }]
        );
        assert_eq!(batch.written_counts().samples, 2);
    }

    #[test]
    fn the_encoder_interns_each_string_once() {
        let labels = Labels::new(vec![
            ("__name__".into(), "up".into()),
            ("a".into(), "up".into()),
        ]);
        let one = SeriesSamples {
            labels,
            samples: vec![],
        };
        let body = encode(&[one.clone(), one]);
        let decoded = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let request = Request::decode(&decoded[..]).unwrap();
        assert_eq!(request.symbols, symbols(&["", "__name__", "up", "a"]));
    }

    #[test]
    fn symbol_problems_are_refused() {
        let table = symbols(&["", "__name__", "up"]);
        let e = run(Request {
            symbols: table.clone(),
            timeseries: vec![series(vec![1, 9])],
        })
        .unwrap_err();
        assert!(matches!(
            e,
            WireError::SymbolOutOfRange {
                reference: 9,
                symbols: 3,
                ..
            }
        ));
        assert!(
            e.to_string().starts_with("series 0 {__name__=\"?\"}"),
            "{e}"
        );
        let e = run(Request {
            symbols: table.clone(),
            timeseries: vec![series(vec![1, 2, 1])],
        });
        assert!(matches!(e, Err(WireError::OddLabelRefs { count: 3, .. })));
        let e = run(Request {
            symbols: symbols(&["x", "__name__", "up"]),
            timeseries: vec![series(vec![1, 2])],
        });
        assert!(matches!(e, Err(WireError::FirstSymbolNotEmpty)));
        let mut bad = table.clone();
        bad.push(vec![0xff]);
        let e = run(Request {
            symbols: bad,
            timeseries: vec![series(vec![1, 2, 3, 3])],
        });
        assert!(matches!(e, Err(WireError::Label { .. })));
        let mut s = series(vec![1, 2]);
        s.metadata = Some(ProtoMetadata {
            kind: 1,
            help_ref: 40,
            unit_ref: 0,
        });
        let e = run(Request {
            symbols: table,
            timeseries: vec![s],
        });
        assert!(matches!(e, Err(WireError::SymbolOutOfRange { .. })));
    }

    #[test]
    fn histograms_and_exemplars_are_refused() {
        let table = symbols(&["", "__name__", "up"]);
        let mut s = series(vec![1, 2]);
        s.histograms.push(Unread {});
        let e = run(Request {
            symbols: table.clone(),
            timeseries: vec![s],
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "series 0 {__name__=\"up\"}: native histograms are not supported"
        );
        let mut s = series(vec![1, 2]);
        s.exemplars.push(Unread {});
        let e = run(Request {
            symbols: table,
            timeseries: vec![s],
        });
        assert!(matches!(e, Err(WireError::Exemplars { .. })));
    }
}
