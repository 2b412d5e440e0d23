//! Functions over instant vectors and scalars, and the dispatch of every
//! function call (range-vector functions live in `range_functions`).

use photon_tsdb::{Labels, MatchOp, METRIC_NAME};
use promql_parser::parser::{Call, Expr};

use crate::aggregate::is_label_name;
use crate::dates::DateTime;
use crate::eval::Evaluator;
use crate::value::{check_unique, drop_name, Elem, StepValue};
use crate::{histogram, plan, range_functions, QueryError};

/// The functions of Prometheus 2.42. `histogram_count`, `histogram_sum`
/// and `histogram_fraction` only read native histograms, which this
/// evaluator does not store, so they return nothing, as Prometheus does
/// for float series.
const SUPPORTED_FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Refuses what the parser accepts but Prometheus 2.42 does not know.
pub(crate) fn check_supported(expr: &Expr) -> Result<(), QueryError> {
    match expr {
        Expr::Call(c) => {
            if !SUPPORTED_FUNCTIONS.contains(&c.func.name) {
                return Err(QueryError::bad(format!(
                    "unknown function with name {:?}",
                    c.func.name
                )));
            }
            c.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if op == "limitk" || op == "limit_ratio" {
                return Err(QueryError::bad(format!("unknown aggregation {op:?}")));
            }
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            check_supported(&a.expr)
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return Err(QueryError::bad("fill modifiers are not supported"));
                }
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::Extension(_) => Err(QueryError::bad("extension expressions are not supported")),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_) => Ok(()),
    }
}

pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

pub(crate) fn arg(c: &Call, i: usize) -> Result<&Expr, QueryError> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| QueryError::bad(format!("missing argument {} of {}()", i + 1, c.func.name)))
}

pub(crate) fn scalar_arg(
    ev: &mut Evaluator,
    c: &Call,
    i: usize,
    ts: i64,
) -> Result<f64, QueryError> {
    ev.eval(arg(c, i)?, ts)?.as_scalar()
}

fn string_arg(ev: &mut Evaluator, c: &Call, i: usize, ts: i64) -> Result<String, QueryError> {
    ev.eval(arg(c, i)?, ts)?.into_string()
}

fn vector_arg(ev: &mut Evaluator, c: &Call, i: usize, ts: i64) -> Result<Vec<Elem>, QueryError> {
    ev.eval(arg(c, i)?, ts)?.into_vector()
}

pub(crate) fn call(ev: &mut Evaluator, c: &Call, ts: i64) -> Result<StepValue, QueryError> {
    let name = c.func.name;
    if range_functions::is_range_function(name) {
        return range_functions::call(ev, c, ts);
    }
    let out = match name {
        "time" => return Ok(StepValue::Scalar(ts as f64 / 1000.0)),
        "pi" => return Ok(StepValue::Scalar(std::f64::consts::PI)),
        "scalar" => {
            let v = vector_arg(ev, c, 0, ts)?;
            return Ok(StepValue::Scalar(if v.len() == 1 {
                v[0].v
            } else {
                f64::NAN
            }));
        }
        "vector" => vec![Elem {
            labels: Labels::default(),
            t: ts,
            v: scalar_arg(ev, c, 0, ts)?,
        }],
        "sort" | "sort_desc" => {
            let mut v = vector_arg(ev, c, 0, ts)?;
            sort_by_value(&mut v, name == "sort_desc");
            return Ok(StepValue::Vector(v));
        }
        "absent" => {
            let v = vector_arg(ev, c, 0, ts)?;
            absent(v.is_empty(), arg(c, 0)?, ts)
        }
        "timestamp" => timestamp(ev, c, ts)?,
        "label_replace" => label_replace(ev, c, ts)?,
        "label_join" => label_join(ev, c, ts)?,
        "histogram_quantile" => {
            let q = scalar_arg(ev, c, 0, ts)?;
            histogram::quantile_over_buckets(q, vector_arg(ev, c, 1, ts)?, ts)
        }
        "histogram_count" | "histogram_sum" | "histogram_fraction" => {
            for i in 0..c.args.len() {
                ev.eval(arg(c, i)?, ts)?;
            }
            Vec::new()
        }
        "round" => {
            let v = vector_arg(ev, c, 0, ts)?;
            let to_nearest = if c.args.len() > 1 {
                scalar_arg(ev, c, 1, ts)?
            } else {
                1.0
            };
            let inverse = 1.0 / to_nearest;
            map_values(v, |x| (x * inverse + 0.5).floor() / inverse)
        }
        "clamp" | "clamp_min" | "clamp_max" => clamp(ev, c, ts)?,
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "hour" | "minute" => date_function(ev, c, ts)?,
        _ => {
            let f = math_function(name)
                .ok_or_else(|| QueryError::bad(format!("unknown function with name {name:?}")))?;
            map_values(vector_arg(ev, c, 0, ts)?, f)
        }
    };
    check_unique(&out)?;
    Ok(StepValue::Vector(out))
}

/// Applies `f` to every value and drops the metric name.
fn map_values(v: Vec<Elem>, f: impl Fn(f64) -> f64) -> Vec<Elem> {
    v.into_iter()
        .map(|e| Elem {
            labels: drop_name(&e.labels),
            t: e.t,
            v: f(e.v),
        })
        .collect()
}

fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

/// Go's `math.Max`: NaN wins over numbers, +Inf over NaN.
pub(crate) fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: NaN wins over numbers, -Inf over NaN.
pub(crate) fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else if x < y {
        x
    } else {
        y
    }
}

fn clamp(ev: &mut Evaluator, c: &Call, ts: i64) -> Result<Vec<Elem>, QueryError> {
    let v = vector_arg(ev, c, 0, ts)?;
    Ok(match c.func.name {
        "clamp_min" => {
            let min = scalar_arg(ev, c, 1, ts)?;
            map_values(v, |x| go_max(min, x))
        }
        "clamp_max" => {
            let max = scalar_arg(ev, c, 1, ts)?;
            map_values(v, |x| go_min(max, x))
        }
        _ => {
            let min = scalar_arg(ev, c, 1, ts)?;
            let max = scalar_arg(ev, c, 2, ts)?;
            if max < min {
                return Ok(Vec::new());
            }
            map_values(v, |x| go_max(min, go_min(max, x)))
        }
    })
}

fn date_function(ev: &mut Evaluator, c: &Call, ts: i64) -> Result<Vec<Elem>, QueryError> {
    let f: fn(&DateTime) -> f64 = match c.func.name {
        "year" => |d| d.year as f64,
        "month" => |d| f64::from(d.month),
        "day_of_month" => |d| f64::from(d.day),
        "day_of_week" => |d| f64::from(d.weekday),
        "day_of_year" => |d| f64::from(d.day_of_year()),
        "days_in_month" => |d| f64::from(d.days_in_month()),
        "hour" => |d| f64::from(d.hour),
        _ => |d| f64::from(d.minute),
    };
    if c.args.is_empty() {
        // Without an argument: `vector(time())`, truncated toward zero to
        // the second as Go's `enh.Ts/1000` does.
        let d = DateTime::from_unix_seconds(ts / 1000);
        return Ok(vec![Elem {
            labels: Labels::default(),
            t: ts,
            v: f(&d),
        }]);
    }
    let v = vector_arg(ev, c, 0, ts)?;
    // Go converts the value with int64(v): truncation toward zero, and the
    // minimum int64 for NaN, infinities and values out of range.
    Ok(map_values(v, |x| {
        f(&DateTime::from_unix_seconds(crate::dates::go_int64(x)))
    }))
}

/// NaN sorts last both ways, as in Prometheus.
fn sort_by_value(v: &mut [Elem], desc: bool) {
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if desc => b.v.total_cmp(&a.v),
        _ => a.v.total_cmp(&b.v),
    });
}

/// The single element `absent()` returns: labels from the selector's
/// equality matchers (Prometheus' `createLabelsForAbsentFunction`).
pub(crate) fn absent(is_empty: bool, arg: &Expr, ts: i64) -> Vec<Elem> {
    if !is_empty {
        return Vec::new();
    }
    let vs = match unwrap_parens(arg) {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let mut labels = Labels::default();
    if let Some(vs) = vs {
        let matchers = plan::matchers(vs).unwrap_or_default();
        let mut dropped = Vec::new();
        for m in matchers.iter().filter(|m| m.name != METRIC_NAME) {
            if m.op == MatchOp::Equal && labels.get(&m.name).is_none() {
                labels.set(&m.name, &m.value);
            } else {
                dropped.push(m.name.clone());
            }
        }
        for name in dropped {
            labels.set(&name, "");
        }
    }
    vec![Elem {
        labels,
        t: ts,
        v: 1.0,
    }]
}

/// Sample timestamps in seconds when the argument is a selector (the time
/// of the sample it picked), else the evaluation time.
fn timestamp(ev: &mut Evaluator, c: &Call, ts: i64) -> Result<Vec<Elem>, QueryError> {
    let a = arg(c, 0)?;
    let from_selector = matches!(unwrap_parens(a), Expr::VectorSelector(_));
    let v = ev.eval(a, ts)?.into_vector()?;
    Ok(v.into_iter()
        .map(|e| Elem {
            labels: drop_name(&e.labels),
            t: ts,
            v: if from_selector { e.t } else { ts } as f64 / 1000.0,
        })
        .collect())
}

fn label_replace(ev: &mut Evaluator, c: &Call, ts: i64) -> Result<Vec<Elem>, QueryError> {
    let v = vector_arg(ev, c, 0, ts)?;
    let dst = string_arg(ev, c, 1, ts)?;
    let replacement = string_arg(ev, c, 2, ts)?;
    let src = string_arg(ev, c, 3, ts)?;
    let pattern = string_arg(ev, c, 4, ts)?;
    // Prometheus 2.x anchors without the `s` flag: `.` stops at newlines.
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|_| {
        QueryError::exec(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !is_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let value = e.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&value) {
            let mut res = String::new();
            // Rust's `$name`/`${name}` expansion follows Go's Expand.
            caps.expand(&replacement, &mut res);
            e.labels.set(&dst, &res);
        }
        out.push(e);
    }
    Ok(out)
}

fn label_join(ev: &mut Evaluator, c: &Call, ts: i64) -> Result<Vec<Elem>, QueryError> {
    let v = vector_arg(ev, c, 0, ts)?;
    let dst = string_arg(ev, c, 1, ts)?;
    let sep = string_arg(ev, c, 2, ts)?;
    let mut sources = Vec::new();
    for i in 3..c.args.len() {
        let src = string_arg(ev, c, i, ts)?;
        if !is_label_name(&src) {
            return Err(QueryError::exec(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
        sources.push(src);
    }
    if !is_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(v.into_iter()
        .map(|mut e| {
            let joined: Vec<&str> = sources
                .iter()
                .map(|s| e.labels.get(s).unwrap_or(""))
                .collect();
            let joined = joined.join(&sep);
            e.labels.set(&dst, &joined);
            e
        })
        .collect())
}
