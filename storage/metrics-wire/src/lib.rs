//! NightLight's ingestion formats: Prometheus remote write 1.0 and 2.0
//! (snappy-compressed protobuf), Influx line protocol and Prometheus' text
//! exposition format, decoded into a [`WriteBatch`] the storage appends.
//!
//! This crate owns the wire formats, Prometheus' label rules and the
//! per-request limits. It does no I/O and keeps no state: it must never
//! import an HTTP stack, an async runtime or the storage engine (only its
//! shared vocabulary, `photon_tsdb::{Labels, Sample}`).
//!
//! Every decoder either accepts the whole request, with every series
//! checked, or refuses it with one [`WireError`] naming the series, label or
//! line; it never panics, whatever the input (the `metrics_wire` fuzz
//! target holds it to that). Native histograms and exemplars are refused,
//! not dropped, until the storage keeps them.

mod batch;
mod error;
mod influx;
mod labels;
mod limits;
mod prometheus_text;
mod remote_write;

pub use batch::{Metadata, SeriesSamples, WriteBatch, WrittenCounts};
pub use error::{LabelProblem, Place, WireError};
pub use influx::{parse_influx, Precision};
pub use limits::Limits;
pub use prometheus_text::parse_prometheus_text;
pub use remote_write::{
    decode_remote_write, encode_remote_write_v1, encode_remote_write_v2, remote_write_version,
    RemoteWriteVersion,
};

/// The text formats arrive already decoded (the service undoes any gzip),
/// so their size is held to the decoded limit.
fn check_text_body(body: &[u8], limits: &Limits) -> Result<(), WireError> {
    if body.len() > limits.decoded_bytes_max {
        return Err(WireError::DecodedTooLarge {
            bytes: body.len(),
            max: limits.decoded_bytes_max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use photon_tsdb::{Labels, Sample, STALE_NAN};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn label_set() -> impl Strategy<Value = Labels> {
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
            proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{1,12}", 0..6),
        )
            .prop_map(|(name, rest): (String, BTreeMap<String, String>)| {
                let mut pairs: Vec<(String, String)> =
                    rest.into_iter().filter(|(n, _)| n != "__name__").collect();
                pairs.push(("__name__".to_string(), name));
                Labels::new(pairs)
            })
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::from_bits(STALE_NAN)),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            any::<u64>().prop_map(f64::from_bits),
            any::<f64>(),
        ]
    }

    fn series() -> impl Strategy<Value = Vec<SeriesSamples>> {
        let samples = proptest::collection::vec(
            (any::<i64>(), value()).prop_map(|(t, v)| Sample { t, v }),
            0..8,
        );
        proptest::collection::vec(
            (label_set(), samples).prop_map(|(labels, samples)| SeriesSamples { labels, samples }),
            0..6,
        )
    }

    /// Equal, comparing values bit for bit (NaN != NaN otherwise).
    fn same(a: &[SeriesSamples], b: &[SeriesSamples]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.labels == y.labels
                    && x.samples.len() == y.samples.len()
                    && x.samples
                        .iter()
                        .zip(&y.samples)
                        .all(|(p, q)| p.t == q.t && p.v.to_bits() == q.v.to_bits())
            })
    }

    proptest! {
        #[test]
        fn remote_write_round_trips(series in series()) {
            let limits = Limits::default();
            for (version, body) in [
                (RemoteWriteVersion::V1, encode_remote_write_v1(&series)),
                (RemoteWriteVersion::V2, encode_remote_write_v2(&series)),
            ] {
                let batch = decode_remote_write(version, &body, &limits).unwrap();
                prop_assert!(same(&batch.series, &series), "{version:?}: {batch:?}");
                prop_assert!(batch.metadata.is_empty());
                let samples: usize = series.iter().map(|s| s.samples.len()).sum();
                prop_assert_eq!(batch.written_counts().samples, samples as u64);
            }
        }

        #[test]
        fn a_v1_body_is_not_a_v2_request(series in series()) {
            // The reserved tags keep one version from passing as the other.
            prop_assume!(series.iter().any(|s| !s.samples.is_empty()));
            let body = encode_remote_write_v1(&series);
            let v2 = decode_remote_write(RemoteWriteVersion::V2, &body, &Limits::default());
            prop_assert!(v2.map_or(true, |batch| batch.series.is_empty()));
        }
    }

    #[test]
    fn errors_map_to_statuses() {
        let l = Limits::default();
        assert_eq!(
            remote_write_version(Some("text/plain"), None)
                .unwrap_err()
                .status(),
            415
        );
        let huge = vec![b'#'; 10];
        let small = Limits {
            decoded_bytes_max: 5,
            ..l.clone()
        };
        assert_eq!(
            parse_prometheus_text(&huge, 0, &small)
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(
            parse_influx(&huge, Precision::Ns, 0, &small)
                .unwrap_err()
                .status(),
            413
        );
    }
}
