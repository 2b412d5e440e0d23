//! Prometheus' rules for a series' labels, applied the same way to every
//! format: label names `[a-zA-Z_][a-zA-Z0-9_]*` (names starting with `__`
//! are accepted, as Prometheus' remote-write receiver does: it validates
//! with `labels.IsValid`, which reserves nothing), a metric name
//! `[a-zA-Z_:][a-zA-Z0-9_:]*` that must be present, no name twice, and empty
//! values dropped (Prometheus treats them as absent).

use photon_tsdb::{Labels, METRIC_NAME};

use crate::error::LabelProblem;
use crate::Limits;

/// How much of an offending name or text an error message quotes, so that
/// a hostile request cannot make the error (and the log) huge. Quoted with
/// `{:?}`, a character takes at most 10 (`\u{10ffff}`).
pub(crate) const QUOTED_CHARS_MAX: usize = 100;

/// How much of each name and value a label set in an error message quotes.
const DESCRIBED_CHARS_MAX: usize = 40;

pub(crate) fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(crate) fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// At most `QUOTED_CHARS_MAX` characters of `text`.
pub(crate) fn quoted(text: &str) -> String {
    shortened(text, QUOTED_CHARS_MAX)
}

fn shortened(text: &str, chars_max: usize) -> String {
    text.chars().take(chars_max).collect()
}

/// Refuses a series with more labels than the limit; parsers call it as
/// they go, before a hostile line can grow the pair list without bound.
pub(crate) fn check_count(count: usize, limits: &Limits) -> Result<(), LabelProblem> {
    if count > limits.labels_per_series_max {
        return Err(LabelProblem::TooMany {
            count,
            max: limits.labels_per_series_max,
        });
    }
    Ok(())
}

/// Checks one series' label pairs (as sent, in any order) and builds its
/// label set.
pub(crate) fn series_labels(
    mut pairs: Vec<(String, String)>,
    limits: &Limits,
) -> Result<Labels, LabelProblem> {
    check_count(pairs.len(), limits)?;
    for (name, value) in &pairs {
        if name.len() > limits.label_name_bytes_max {
            return Err(LabelProblem::NameTooLong {
                name: quoted(name),
                bytes: name.len(),
                max: limits.label_name_bytes_max,
            });
        }
        if !is_label_name(name) {
            return Err(LabelProblem::InvalidName { name: quoted(name) });
        }
        if value.len() > limits.label_value_bytes_max {
            return Err(LabelProblem::ValueTooLong {
                name: name.clone(),
                bytes: value.len(),
                max: limits.label_value_bytes_max,
            });
        }
    }
    // Duplicates are refused, so an unstable sort loses nothing.
    pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(LabelProblem::Duplicate {
            name: pair[0].0.clone(),
        });
    }
    pairs.retain(|(_, value)| !value.is_empty());
    match pairs.binary_search_by(|(name, _)| name.as_str().cmp(METRIC_NAME)) {
        Ok(at) if is_metric_name(&pairs[at].1) => Ok(Labels::from_sorted(pairs)),
        Ok(at) => Err(LabelProblem::InvalidMetricName {
            name: quoted(&pairs[at].1),
        }),
        Err(_) => Err(LabelProblem::MissingMetricName),
    }
}

/// A label set as sent, for error messages: `{a="1", b="2"}`, shortened.
pub(crate) fn describe<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> String {
    let mut out = String::from("{");
    for (n, (name, value)) in pairs.enumerate() {
        if out.len() > QUOTED_CHARS_MAX {
            out.push_str(", ...");
            break;
        }
        if n > 0 {
            out.push_str(", ");
        }
        let name = String::from_utf8_lossy(name);
        let value = String::from_utf8_lossy(value);
        out.push_str(&shortened(&name, DESCRIBED_CHARS_MAX));
        out.push('=');
        out.push_str(&format!("{:?}", shortened(&value, DESCRIBED_CHARS_MAX)));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_follow_prometheus() {
        assert!(is_label_name("_a1") && is_label_name("__reserved_is_fine"));
        assert!(!is_label_name("1a") && !is_label_name("") && !is_label_name("a:b"));
        assert!(!is_label_name("a-b") && !is_label_name("é"));
        assert!(is_metric_name("a:b_1") && is_metric_name(":x"));
        assert!(!is_metric_name("1x") && !is_metric_name("") && !is_metric_name("a.b"));
    }

    #[test]
    fn a_good_series_is_sorted_and_loses_empty_values() {
        let l = Limits::default();
        let labels =
            series_labels(pairs(&[("job", "a"), ("__name__", "up"), ("z", "")]), &l).unwrap();
        assert_eq!(labels.to_string(), "up{job=\"a\"}");
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn every_problem_is_found() {
        let l = Limits {
            labels_per_series_max: 3,
            label_name_bytes_max: 8,
            label_value_bytes_max: 4,
            ..Limits::default()
        };
        let check = |p: &[(&str, &str)]| series_labels(pairs(p), &l).unwrap_err();
        assert!(matches!(
            check(&[("a", "1"), ("b", "1"), ("c", "1"), ("__name__", "x")]),
            LabelProblem::TooMany { count: 4, max: 3 }
        ));
        assert!(matches!(
            check(&[("abcdefghi", "1")]),
            LabelProblem::NameTooLong { bytes: 9, .. }
        ));
        assert!(matches!(
            check(&[("a", "12345")]),
            LabelProblem::ValueTooLong { bytes: 5, .. }
        ));
        assert!(matches!(
            check(&[("a-b", "1")]),
            LabelProblem::InvalidName { .. }
        ));
        assert!(matches!(
            check(&[("__name__", "a.b")]),
            LabelProblem::InvalidMetricName { .. }
        ));
        assert_eq!(check(&[("a", "1")]), LabelProblem::MissingMetricName);
        // An empty metric name is an absent one.
        assert_eq!(check(&[("__name__", "")]), LabelProblem::MissingMetricName);
        assert_eq!(
            check(&[("__name__", "x"), ("a", "1"), ("a", "")]),
            LabelProblem::Duplicate { name: "a".into() }
        );
    }

    #[test]
    fn descriptions_are_bounded() {
        let long = vec![(&b"a"[..], &[b'x'; 1000][..]); 100];
        assert!(describe(long.into_iter()).len() < 3 * QUOTED_CHARS_MAX);
        let hostile = vec![(&[0x1b; 100][..], &[0x1b; 100][..]); 100];
        assert!(describe(hostile.into_iter()).chars().count() < 1000);
        assert_eq!(describe([(&b"a"[..], &b"1"[..])].into_iter()), "{a=\"1\"}");
    }
}
