//! Feeds arbitrary bytes to NightLight's ingestion decoders
//! (`photon-metrics-wire`). The first byte picks what the rest is:
//!
//! - `% 7` = 0 / 1: a remote-write 1.0 / 2.0 protobuf message, snappy-
//!   compressed here so that the fuzzer reaches the protobuf and label
//!   checks instead of spending itself on snappy;
//! - 2: an Influx line-protocol body; 3: a Prometheus text body;
//! - 4 / 5: a remote-write 1.0 / 2.0 body as received (snappy and all);
//! - 6: a Content-Type and Content-Encoding pair, split at the first `\n`.
//!
//! Its top bit picks small limits, so that every limit is reached too.
//!
//! What must hold: no decoder panics; a refusal is a 400 or a 413 (a 415
//! only from content negotiation) with a message of bounded length; an
//! accepted batch keeps Prometheus' label rules and every limit; and an
//! accepted remote-write batch, encoded again, decodes to itself bit for
//! bit (staleness markers included).

use photon_metrics_wire::{
    decode_remote_write, encode_remote_write_v1, encode_remote_write_v2, parse_influx,
    parse_prometheus_text, remote_write_version, Limits, Precision, RemoteWriteVersion,
    SeriesSamples, WireError, WriteBatch,
};
use photon_tsdb::METRIC_NAME;

/// What a refusal's message may cost: every quoted name or label set in it
/// is shortened, whatever the input.
const MESSAGE_CHARS_MAX: usize = 4096;

/// The timestamp text bodies without one get.
const NOW_MS: i64 = 1_700_000_000_000;

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let limits = if selector & 0x80 != 0 {
        small_limits()
    } else {
        Limits::default()
    };
    match selector % 7 {
        0 => remote_write(RemoteWriteVersion::V1, &compress(rest), &limits),
        1 => remote_write(RemoteWriteVersion::V2, &compress(rest), &limits),
        2 => {
            let precision = [Precision::Ns, Precision::S][usize::from(selector & 0x40 != 0)];
            let result = parse_influx(rest, precision, NOW_MS, &limits);
            if let Some(batch) = accepted(result, &limits, "influx") {
                for series in &batch.series {
                    let name = series.labels.name().unwrap_or_default();
                    assert!(name.contains('_'), "influx names are measurement_field");
                }
            }
        }
        3 => {
            let result = parse_prometheus_text(rest, NOW_MS, &limits);
            accepted(result, &limits, "prometheus text");
        }
        4 => remote_write(RemoteWriteVersion::V1, rest, &limits),
        5 => remote_write(RemoteWriteVersion::V2, rest, &limits),
        _ => negotiate(rest),
    }
}

fn small_limits() -> Limits {
    Limits {
        body_bytes_max: 4096,
        decoded_bytes_max: 8192,
        series_per_request_max: 4,
        labels_per_series_max: 4,
        label_name_bytes_max: 16,
        label_value_bytes_max: 16,
        samples_per_request_max: 16,
        metadata_per_request_max: 2,
        symbols_per_request_max: 16,
    }
}

fn compress(message: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(message)
        .expect("fuzz inputs are far under snappy's 4 GiB")
}

/// The batch if the decoder accepted the input, after checking it (or the
/// refusal) against what must hold.
fn accepted(
    result: Result<WriteBatch, WireError>,
    limits: &Limits,
    format: &str,
) -> Option<WriteBatch> {
    match result {
        Ok(batch) => {
            check_batch(&batch, limits, format);
            Some(batch)
        }
        Err(error) => {
            let status = error.status();
            assert!(
                status == 400 || status == 413,
                "{format}: a body refused with {status}: {error}"
            );
            let message = error.to_string();
            assert!(!message.is_empty() && message.chars().count() <= MESSAGE_CHARS_MAX);
            None
        }
    }
}

fn check_batch(batch: &WriteBatch, limits: &Limits, format: &str) {
    assert!(batch.series.len() <= limits.series_per_request_max);
    assert!(batch.metadata.len() <= limits.metadata_per_request_max);
    let samples: usize = batch.series.iter().map(|s| s.samples.len()).sum();
    assert!(samples <= limits.samples_per_request_max);
    assert_eq!(batch.written_counts().samples, samples as u64);
    for series in &batch.series {
        let pairs = series.labels.pairs();
        assert!(!pairs.is_empty() && pairs.len() <= limits.labels_per_series_max);
        assert!(
            pairs.windows(2).all(|w| w[0].0 < w[1].0),
            "{format}: labels unsorted or repeated: {pairs:?}"
        );
        for (name, value) in pairs {
            assert!(label_name_ok(name), "{format}: label name {name:?}");
            assert!(!value.is_empty(), "{format}: an empty value kept");
            assert!(name.len() <= limits.label_name_bytes_max);
            assert!(value.len() <= limits.label_value_bytes_max);
        }
        let name = series
            .labels
            .get(METRIC_NAME)
            .expect("a series without a name");
        assert!(metric_name_ok(name), "{format}: metric name {name:?}");
    }
}

fn label_name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn metric_name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn remote_write(version: RemoteWriteVersion, body: &[u8], limits: &Limits) {
    let format = format!("remote write {version:?}");
    let Some(batch) = accepted(decode_remote_write(version, body, limits), limits, &format) else {
        return;
    };
    let again = match version {
        RemoteWriteVersion::V1 => encode_remote_write_v1(&batch.series),
        RemoteWriteVersion::V2 => encode_remote_write_v2(&batch.series),
    };
    // The encoders' bodies may be larger than what was sent (v2 interns
    // differently), so they are decoded under the default limits; the
    // series already passed the small ones.
    let decoded = decode_remote_write(version, &again, &Limits::default())
        .unwrap_or_else(|e| panic!("{format}: an accepted batch re-encoded is refused: {e}"));
    assert!(
        same(&decoded.series, &batch.series),
        "{format}: round trip changed {:?} into {:?}",
        batch.series,
        decoded.series
    );
}

/// Equal, comparing sample values bit for bit.
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

fn negotiate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (content_type, encoding) = text.split_once('\n').unwrap_or((&text, ""));
    let header = |value: &str| (!value.is_empty()).then(|| value.to_string());
    let (content_type, encoding) = (header(content_type), header(encoding));
    match remote_write_version(content_type.as_deref(), encoding.as_deref()) {
        Ok(RemoteWriteVersion::V2) => {
            let content_type = content_type.unwrap_or_default();
            assert!(content_type.contains("io.prometheus.write.v2.Request"));
        }
        Ok(RemoteWriteVersion::V1) => {}
        Err(error) => assert_eq!(error.status(), 415, "negotiation refused: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use photon_tsdb::{Labels, Sample, STALE_NAN};

    #[test]
    fn every_format_accepts_a_good_input() {
        let series = vec![SeriesSamples {
            labels: Labels::new(vec![(METRIC_NAME.into(), "up".into())]),
            samples: vec![Sample {
                t: 1,
                v: f64::from_bits(STALE_NAN),
            }],
        }];
        for (selector, body) in [
            (4u8, encode_remote_write_v1(&series)),
            (5, encode_remote_write_v2(&series)),
            (2, b"cpu,host=a idle=1.5 1\n".to_vec()),
            (3, b"# TYPE up gauge\nup{job=\"a\"} 1\n".to_vec()),
            (
                6,
                b"application/x-protobuf;proto=io.prometheus.write.v2.Request\nsnappy".to_vec(),
            ),
        ] {
            let mut input = vec![selector];
            input.extend_from_slice(&body);
            check(&input);
            input[0] |= 0x80;
            check(&input);
        }
    }
}
