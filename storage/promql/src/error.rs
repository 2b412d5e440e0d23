//! The one error type of query parsing and evaluation, and its mapping to
//! Prometheus' HTTP API `errorType`.

/// Why a query failed. Messages follow Prometheus' wording where a client
/// (Grafana, promtool) might show or match them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query or its parameters are invalid (parse errors, bad steps).
    #[error("{0}")]
    BadData(String),
    /// The query is valid but cannot be evaluated on this data
    /// (many-to-many matching, duplicate label sets, bad function arguments).
    #[error("{0}")]
    Execution(String),
    /// The deadline passed during evaluation.
    #[error("{0}")]
    Timeout(String),
    /// Evaluation would hold more samples than `Limits::samples_max`.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The storage failed to answer a selection.
    #[error("{0}")]
    Storage(String),
}

impl QueryError {
    /// Prometheus' API `errorType` for this error (the API maps
    /// ErrTooManySamples to "execution" and storage errors to "internal").
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Storage(_) => "internal",
        }
    }

    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        QueryError::Execution(msg.into())
    }

    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        QueryError::BadData(msg.into())
    }
}

/// Prometheus' message when a step produces two series with one label set.
pub(crate) const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_follow_the_prometheus_api() {
        assert_eq!(QueryError::bad("x").error_type(), "bad_data");
        assert_eq!(QueryError::TooManySamples.error_type(), "execution");
        assert_eq!(QueryError::Timeout("t".into()).error_type(), "timeout");
        assert_eq!(
            QueryError::TooManySamples.to_string(),
            "query processing would load too many samples into memory in query execution"
        );
    }
}
