//! A pass over the protobuf wire format before decoding: it counts series,
//! labels, samples, metadata and symbols and refuses a request over a limit
//! before prost allocates one struct per element. Without it a body of
//! empty elements (two bytes each) would grow about twentyfold in memory.
//! It reads only tags and lengths; prost checks everything else after.

use crate::error::{LabelProblem, Place, WireError};
use crate::Limits;

/// A field's payload; only the length-delimited kind is looked into.
enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where `buf` starts in the body, for error offsets.
    base: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Fields { buf, pos: 0, base }
    }

    fn fail(&self, reason: &'static str) -> WireError {
        WireError::MalformedProtobuf {
            offset: self.base + self.pos,
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        // A varint is at most 10 bytes (64 bits, 7 per byte).
        for shift in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.fail("truncated varint"));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * shift);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.fail("varint longer than 10 bytes"))
    }

    fn skip(&mut self, bytes: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(bytes)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.fail("field runs past the end of its message"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next field: its number, its payload and where the payload starts.
    fn next_field(&mut self) -> Option<Result<(u64, Value<'a>, usize), WireError>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> Result<(u64, Value<'a>, usize), WireError> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(self.fail("field number 0"));
        }
        let start = self.base + self.pos;
        let value = match key & 7 {
            0 => self.varint().map(|_| Value::Varint)?,
            1 => self.skip(8).map(|_| Value::Fixed)?,
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| self.fail("length over the address space"))?;
                // The payload starts after the length.
                return self
                    .skip(len)
                    .map(|bytes| (number, Value::Bytes(bytes), start));
            }
            5 => self.skip(4).map(|_| Value::Fixed)?,
            _ => return Err(self.fail("unsupported wire type (groups are not accepted)")),
        };
        Ok((number, value, start))
    }
}

/// Field numbers of one dialect: where the series, their labels and their
/// sample-like elements live.
struct Dialect {
    series: u64,
    labels: u64,
    /// v2's labels are packed varint references, two per label.
    labels_packed: bool,
    samples: u64,
    histograms: u64,
    exemplars: u64,
    metadata: Option<u64>,
    symbols: Option<u64>,
}

const V1: Dialect = Dialect {
    series: 1,
    labels: 1,
    labels_packed: false,
    samples: 2,
    histograms: 4,
    exemplars: 3,
    metadata: Some(3),
    symbols: None,
};

const V2: Dialect = Dialect {
    series: 5,
    labels: 1,
    labels_packed: true,
    samples: 2,
    histograms: 3,
    exemplars: 4,
    metadata: None,
    symbols: Some(4),
};

pub(crate) fn check_v1(body: &[u8], limits: &Limits) -> Result<(), WireError> {
    check(&V1, body, limits)
}

pub(crate) fn check_v2(body: &[u8], limits: &Limits) -> Result<(), WireError> {
    check(&V2, body, limits)
}

fn check(dialect: &Dialect, body: &[u8], limits: &Limits) -> Result<(), WireError> {
    let (mut series, mut samples, mut metadata, mut symbols) = (0usize, 0usize, 0usize, 0usize);
    let mut fields = Fields::new(body, 0);
    while let Some(field) = fields.next_field() {
        let (number, value, start) = field?;
        if number == dialect.series {
            let Value::Bytes(payload) = value else {
                continue;
            };
            if series >= limits.series_per_request_max {
                return Err(WireError::TooManySeries {
                    max: limits.series_per_request_max,
                });
            }
            samples += check_series(dialect, payload, start, series, limits)?;
            series += 1;
            if samples > limits.samples_per_request_max {
                return Err(WireError::TooManySamples {
                    max: limits.samples_per_request_max,
                });
            }
        } else if Some(number) == dialect.metadata {
            metadata += 1;
            if metadata > limits.metadata_per_request_max {
                return Err(WireError::TooManyMetadata {
                    max: limits.metadata_per_request_max,
                });
            }
        } else if Some(number) == dialect.symbols {
            symbols += 1;
            if symbols > limits.symbols_per_request_max {
                return Err(WireError::TooManySymbols {
                    max: limits.symbols_per_request_max,
                });
            }
        }
    }
    Ok(())
}

/// Checks one series' label count; returns its sample-like elements.
fn check_series(
    dialect: &Dialect,
    payload: &[u8],
    base: usize,
    index: usize,
    limits: &Limits,
) -> Result<usize, WireError> {
    let (mut labels, mut samples) = (0usize, 0usize);
    let mut fields = Fields::new(payload, base);
    while let Some(field) = fields.next_field() {
        let (number, value, _) = field?;
        if number == dialect.labels {
            labels += match (dialect.labels_packed, value) {
                // Every varint ends with exactly one byte under 0x80.
                (true, Value::Bytes(packed)) => packed.iter().filter(|&&b| b < 0x80).count(),
                _ => 1,
            };
        } else if [dialect.samples, dialect.histograms, dialect.exemplars].contains(&number) {
            samples += 1;
        }
    }
    let labels = if dialect.labels_packed {
        labels.div_ceil(2)
    } else {
        labels
    };
    if labels > limits.labels_per_series_max {
        return Err(WireError::Label {
            at: Place::SeriesIndex(index),
            problem: LabelProblem::TooMany {
                count: labels,
                max: limits.labels_per_series_max,
            },
        });
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_wire_data_is_refused_with_its_offset() {
        let l = Limits::default();
        let e = check_v1(&[0x0a, 0x05, 0x00], &l).unwrap_err();
        assert!(matches!(e, WireError::MalformedProtobuf { offset: 2, .. }));
        assert!(check_v1(&[0x80], &l).is_err());
        assert!(check_v1(&[0xff; 11], &l).is_err());
        // Field number 0, and a group.
        assert!(check_v1(&[0x02, 0x00], &l).is_err());
        assert!(check_v1(&[0x0b], &l).is_err());
        assert!(check_v1(&[], &l).is_ok());
    }

    #[test]
    fn counts_are_checked_before_decoding() {
        let l = Limits {
            series_per_request_max: 2,
            labels_per_series_max: 2,
            samples_per_request_max: 3,
            metadata_per_request_max: 1,
            symbols_per_request_max: 1,
            ..Limits::default()
        };
        // Three empty series.
        let e = check_v1(&[0x0a, 0, 0x0a, 0, 0x0a, 0], &l).unwrap_err();
        assert!(matches!(e, WireError::TooManySeries { max: 2 }));
        // One series with three empty labels.
        let e = check_v1(&[0x0a, 6, 0x0a, 0, 0x0a, 0, 0x0a, 0], &l).unwrap_err();
        assert!(matches!(e, WireError::Label { .. }));
        // Samples, histograms and exemplars all count.
        let e = check_v1(&[0x0a, 6, 0x12, 0, 0x22, 0, 0x1a, 0, 0x0a, 2, 0x12, 0], &l);
        assert!(matches!(e, Err(WireError::TooManySamples { max: 3 })));
        let e = check_v1(&[0x1a, 0, 0x1a, 0], &l).unwrap_err();
        assert!(matches!(e, WireError::TooManyMetadata { max: 1 }));
        let e = check_v2(&[0x22, 0, 0x22, 0], &l).unwrap_err();
        assert!(matches!(e, WireError::TooManySymbols { max: 1 }));
        // v2: five packed references are three labels; four are two.
        let e = check_v2(&[0x2a, 7, 0x0a, 5, 1, 2, 3, 4, 5], &l);
        assert!(check_v2(&[0x2a, 7, 0x0a, 5, 1, 2, 3, 0x81, 1], &l).is_ok());
        assert!(matches!(e, Err(WireError::Label { .. })));
    }
}
