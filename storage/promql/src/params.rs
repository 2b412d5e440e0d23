//! Query parameters and the limits every evaluation runs under.

use std::time::Instant;

/// Prometheus' default `--query.lookback-delta`.
pub const LOOKBACK_MS_DEFAULT: i64 = 300_000;
/// Prometheus' default global evaluation interval, the step of subqueries
/// without one (`x[5m:]`) in instant queries.
pub const SUBQUERY_STEP_MS_DEFAULT: i64 = 60_000;
/// Prometheus' default `--query.max-samples`.
pub const SAMPLES_MAX_DEFAULT: usize = 50_000_000;
/// Prometheus' API limit on points per series of a range query.
pub const POINTS_PER_SERIES_MAX_DEFAULT: usize = 11_000;

/// Resource limits of one evaluation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Like Prometheus' `--query.max-samples`: samples held at once.
    pub samples_max: usize,
    /// Range queries fail when `(end - start) / step` exceeds this, like
    /// Prometheus' API (so up to this plus one points).
    pub points_per_series_max: usize,
    /// Evaluation fails with `QueryError::Timeout` once this passes.
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            samples_max: SAMPLES_MAX_DEFAULT,
            points_per_series_max: POINTS_PER_SERIES_MAX_DEFAULT,
            deadline: None,
        }
    }
}

/// When and how to evaluate. An instant query has `start_ms == end_ms`.
#[derive(Debug, Clone)]
pub struct QueryParams {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Range queries only; must be positive.
    pub step_ms: i64,
    /// How far back an instant selector looks for a sample.
    pub lookback_ms: i64,
    /// Step of subqueries without one in instant queries (Prometheus'
    /// global evaluation interval). Range queries use `step_ms`.
    pub default_subquery_step_ms: i64,
    /// Prometheus 2.x selects ranges `[t - range, t]` and looks back over
    /// `[t - lookback, t]`, both ends included; 3.x excludes the lower end.
    /// `false` (the default) follows 2.x.
    pub left_open: bool,
    pub limits: Limits,
}

impl QueryParams {
    /// An instant query at `time_ms` with default settings.
    pub fn instant(time_ms: i64) -> Self {
        QueryParams::range(time_ms, time_ms, 1)
    }

    /// A range query with default settings.
    pub fn range(start_ms: i64, end_ms: i64, step_ms: i64) -> Self {
        QueryParams {
            start_ms,
            end_ms,
            step_ms,
            lookback_ms: LOOKBACK_MS_DEFAULT,
            default_subquery_step_ms: SUBQUERY_STEP_MS_DEFAULT,
            left_open: false,
            limits: Limits::default(),
        }
    }
}

impl Default for QueryParams {
    fn default() -> Self {
        QueryParams::instant(0)
    }
}
