//! NightLight's PromQL evaluator: it parses a query (with `promql-parser`),
//! tells the caller which series and time ranges the query reads, evaluates
//! it against any `Queryable` with Prometheus 2.x semantics, and encodes
//! results as Prometheus' HTTP API does.
//!
//! This crate owns query semantics only: it does no I/O and must never
//! import the service, the network or the storage engine (storage comes in
//! through the `Queryable` trait; `photon-tsdb` is used for its vocabulary:
//! labels, matchers, samples).
//!
//! Semantics are Prometheus 2.42's, including where 3.x changed them:
//! - range selections are `[t - range, t]` and the lookback window
//!   `[t - lookback, t]`, both ends included (`QueryParams::left_open`
//!   switches to 3.x's left-open windows);
//! - subqueries without a step (`x[5m:]`) use the global evaluation
//!   interval (`QueryParams::default_subquery_step_ms`), in range queries too;
//! - `holt_winters` exists; functions, aggregations and modifiers added in
//!   3.x (`limitk`, `mad_over_time`, `fill`, ...) are refused as bad data.
//!
//! Evaluation runs step by step: a range query is the instant query at every
//! step, with selector data fetched once up front and subquery results
//! shared between steps. `Limits::samples_max` counts the samples loaded in
//! the current step plus those held in results and subquery caches, which
//! approximates Prometheus' peak-sample count.
//!
//! Ordering: matrix results are sorted by labels. Vector results are sorted
//! by labels too, except when the outermost operation is `sort`,
//! `sort_desc`, `topk` or `bottomk`, whose order is kept.

mod aggregate;
mod binary;
mod dates;
mod error;
mod eval;
mod functions;
mod histogram;
mod json;
mod params;
mod plan;
mod range_functions;
mod storage;
mod value;

use std::collections::BTreeMap;
use std::sync::Once;

use photon_tsdb::{Labels, Matcher, Sample};
pub use promql_parser::parser::Expr;
use promql_parser::parser::{value::ValueType, Function};

pub use error::QueryError;
pub use json::result_json;
pub use params::{
    Limits, QueryParams, LOOKBACK_MS_DEFAULT, POINTS_PER_SERIES_MAX_DEFAULT, SAMPLES_MAX_DEFAULT,
    SUBQUERY_STEP_MS_DEFAULT,
};
pub use storage::{MemStorage, Queryable, Selection, SeriesData};
pub use value::{format_float, Value, VectorSample};

use eval::Evaluator;
use value::StepValue;

static REGISTER_FUNCTIONS: Once = Once::new();

/// Parses a query and refuses what Prometheus 2.42 would not run
/// (functions, aggregations and modifiers added in 3.x).
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    REGISTER_FUNCTIONS.call_once(|| {
        // Prometheus 3 renamed holt_winters; the parser only knows the new name.
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Only fails on a clash with a built-in name, which this is not.
        let _ = promql_parser::parser::register_extra_functions(vec![holt_winters]);
    });
    let expr = promql_parser::parser::parse(query).map_err(QueryError::BadData)?;
    functions::check_supported(&expr)?;
    // Also refuses matchers whose regex does not compile.
    plan::plan(&expr, &QueryParams::default())?;
    Ok(expr)
}

/// Parses a series selector (`match[]` of the series and label APIs:
/// `up{job="api"}`, `{__name__=~"x.*"}`) into storage matchers, including
/// the name. Like Prometheus' `ParseMetricSelector`, anything else (ranges,
/// offsets, `@`, functions) is refused.
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, QueryError> {
    match parse(text)? {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => plan::matchers(&vs),
        _ => Err(QueryError::bad(format!(
            "invalid parameter \"match[]\": {text:?} is not a series selector"
        ))),
    }
}

/// Every selection evaluating `expr` with `params` reads, in the order the
/// evaluator asks for them (one per selector in the query), so a caller
/// can prefetch exactly that into a `MemStorage`.
pub fn selections(expr: &Expr, params: &QueryParams) -> Vec<Selection> {
    // `parse` already checked every matcher, so planning cannot fail here.
    plan::plan(expr, params)
        .map(|v| v.into_iter().map(|(_, s)| s).collect())
        .unwrap_or_default()
}

/// Evaluates at `params.start_ms` (an instant query).
pub fn eval_instant(
    expr: &Expr,
    storage: &dyn Queryable,
    params: &QueryParams,
) -> Result<Value, QueryError> {
    let mut params = params.clone();
    params.end_ms = params.start_ms;
    let t = params.start_ms;
    let mut ev = Evaluator::new(expr, storage, &params)?;
    ev.begin_step()?;
    Ok(match ev.eval(expr, t)? {
        StepValue::Scalar(v) => Value::Scalar(t, v),
        StepValue::String(s) => Value::String(t, s),
        StepValue::Vector(v) => {
            let mut out: Vec<VectorSample> = v
                .into_iter()
                .map(|e| VectorSample {
                    labels: e.labels,
                    t,
                    v: e.v,
                })
                .collect();
            if !keeps_order(expr) {
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
            }
            Value::Vector(out)
        }
        StepValue::Matrix(m) => Value::Matrix(m),
    })
}

/// Whether the outermost operation orders its result.
fn keeps_order(expr: &Expr) -> bool {
    match expr {
        Expr::Paren(p) => keeps_order(&p.expr),
        Expr::Call(c) => matches!(c.func.name, "sort" | "sort_desc"),
        Expr::Aggregate(a) => matches!(a.op.to_string().as_str(), "topk" | "bottomk"),
        _ => false,
    }
}

/// Evaluates every step from `start_ms` to `end_ms`; always a matrix.
pub fn eval_range(
    expr: &Expr,
    storage: &dyn Queryable,
    params: &QueryParams,
) -> Result<Value, QueryError> {
    check_range_params(params)?;
    match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => {}
        other => {
            return Err(QueryError::bad(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                type_name(other)
            )))
        }
    }
    let mut ev = Evaluator::new(expr, storage, params)?;
    let mut series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    let mut t = params.start_ms;
    while t <= params.end_ms {
        ev.begin_step()?;
        match ev.eval(expr, t)? {
            StepValue::Scalar(v) => {
                ev.hold(1)?;
                series
                    .entry(Labels::default())
                    .or_default()
                    .push(Sample { t, v });
            }
            StepValue::Vector(vec) => {
                ev.hold(vec.len())?;
                for e in vec {
                    series
                        .entry(e.labels)
                        .or_default()
                        .push(Sample { t, v: e.v });
                }
            }
            other => {
                return Err(QueryError::exec(format!(
                    "invalid value of type {} in a range query",
                    other.type_name()
                )))
            }
        }
        t += params.step_ms;
    }
    Ok(Value::Matrix(
        series
            .into_iter()
            .map(|(labels, samples)| SeriesData { labels, samples })
            .collect(),
    ))
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

/// The checks of Prometheus' `query_range` endpoint.
fn check_range_params(p: &QueryParams) -> Result<(), QueryError> {
    plan::check_params(p)?;
    if p.end_ms < p.start_ms {
        return Err(QueryError::bad(
            "end timestamp must not be before start time",
        ));
    }
    if p.step_ms <= 0 {
        return Err(QueryError::bad(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Prometheus compares (end - start) / step, so the limit itself is
    // allowed one more point than it says.
    let intervals = (p.end_ms - p.start_ms) / p.step_ms;
    if usize::try_from(intervals).map_or(true, |n| n > p.limits.points_per_series_max) {
        return Err(QueryError::bad(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            thousands(p.limits.points_per_series_max)
        )));
    }
    Ok(())
}

/// `11000` as `11,000`, as Prometheus' message prints it.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
