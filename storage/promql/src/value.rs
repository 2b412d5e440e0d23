//! Query results, and the values evaluation passes between nodes.

use photon_tsdb::{Labels, METRIC_NAME};

use crate::error::DUPLICATE_LABELSET;
use crate::{QueryError, SeriesData};

/// One element of an instant vector result.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    /// Evaluation time in milliseconds (Prometheus reports the query time).
    pub t: i64,
    pub v: f64,
}

/// A query result, as Prometheus' API types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `(time_ms, value)`.
    Scalar(i64, f64),
    /// `(time_ms, value)`.
    String(i64, String),
    /// Sorted by labels, except when the query's outermost operation is
    /// `sort`, `sort_desc`, `topk` or `bottomk`: then in their order.
    Vector(Vec<VectorSample>),
    /// Sorted by labels; every series has at least one sample.
    Matrix(Vec<SeriesData>),
}

/// An instant vector element during evaluation. `t` is the timestamp of the
/// sample a selector picked, which only `timestamp()` reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Elem {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// The value of an expression at one evaluation time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StepValue {
    Scalar(f64),
    String(String),
    Vector(Vec<Elem>),
    Matrix(Vec<SeriesData>),
}

impl StepValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            StepValue::Scalar(_) => "scalar",
            StepValue::String(_) => "string",
            StepValue::Vector(_) => "instant vector",
            StepValue::Matrix(_) => "range vector",
        }
    }

    pub fn into_vector(self) -> Result<Vec<Elem>, QueryError> {
        match self {
            StepValue::Vector(v) => Ok(v),
            other => Err(QueryError::exec(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn into_matrix(self) -> Result<Vec<SeriesData>, QueryError> {
        match self {
            StepValue::Matrix(m) => Ok(m),
            other => Err(QueryError::exec(format!(
                "expected range vector, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn as_scalar(&self) -> Result<f64, QueryError> {
        match self {
            StepValue::Scalar(v) => Ok(*v),
            other => Err(QueryError::exec(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn into_string(self) -> Result<String, QueryError> {
        match self {
            StepValue::String(s) => Ok(s),
            other => Err(QueryError::exec(format!(
                "expected string, got {}",
                other.type_name()
            ))),
        }
    }
}

pub(crate) fn drop_name(labels: &Labels) -> Labels {
    if labels.get(METRIC_NAME).is_some() {
        labels.without_name()
    } else {
        labels.clone()
    }
}

/// Prometheus refuses a step whose vector has one label set twice (e.g.
/// `rate({__name__=~"a|b"}[1m])` when a and b share their other labels).
pub(crate) fn check_unique(v: &[Elem]) -> Result<(), QueryError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen: Vec<&Labels> = v.iter().map(|e| &e.labels).collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(QueryError::exec(DUPLICATE_LABELSET));
    }
    Ok(())
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`, as Prometheus writes sample
/// values in JSON and in `count_values` labels.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's Display is the shortest round-trip form without exponent,
        // which is what Go's 'f' with precision -1 prints.
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1e-7), "0.0000001");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(-0.0), "-0");
    }
}
