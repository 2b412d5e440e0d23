//! Functions over range vectors (`rate`, `*_over_time`, ...): each reads
//! the samples one series has in the window and returns at most one value.

use photon_tsdb::Sample;
use promql_parser::parser::{Call, Expr};

use crate::aggregate::quantile;
use crate::eval::Evaluator;
use crate::functions::{absent, arg, scalar_arg, unwrap_parens};
use crate::plan::{at_ms, duration_ms, offset_ms};
use crate::value::{check_unique, drop_name, Elem, StepValue};
use crate::QueryError;

pub(crate) fn is_range_function(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "holt_winters"
            | "changes"
            | "resets"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "last_over_time"
            | "present_over_time"
            | "quantile_over_time"
            | "absent_over_time"
    )
}

/// The window a range argument covers at `ts`: `(start_ms, end_ms, range_ms)`.
fn window(ev: &Evaluator, e: &Expr, ts: i64) -> Result<(i64, i64, i64), QueryError> {
    let (at, offset, range) = match unwrap_parens(e) {
        Expr::MatrixSelector(ms) => (&ms.vs.at, &ms.vs.offset, &ms.range),
        Expr::Subquery(sq) => (&sq.at, &sq.offset, &sq.range),
        _ => return Err(QueryError::exec("expected a range vector argument")),
    };
    let end = at_ms(at, ev.params).unwrap_or(ts) - offset_ms(offset);
    let range = duration_ms(range);
    Ok((end - range, end, range))
}

pub(crate) fn call(ev: &mut Evaluator, c: &Call, ts: i64) -> Result<StepValue, QueryError> {
    let name = c.func.name;
    let matrix_index = usize::from(name == "quantile_over_time");
    let matrix_arg = arg(c, matrix_index)?;
    let (start, end, range) = window(ev, matrix_arg, ts)?;
    let q = if name == "quantile_over_time" {
        scalar_arg(ev, c, 0, ts)?
    } else {
        0.0
    };
    let (p1, p2) = match name {
        "predict_linear" => (scalar_arg(ev, c, 1, ts)?, 0.0),
        "holt_winters" => (scalar_arg(ev, c, 1, ts)?, scalar_arg(ev, c, 2, ts)?),
        _ => (0.0, 0.0),
    };
    let matrix = ev.eval(matrix_arg, ts)?.into_matrix()?;
    if name == "absent_over_time" {
        return Ok(StepValue::Vector(absent(matrix.is_empty(), matrix_arg, ts)));
    }
    let mut out = Vec::with_capacity(matrix.len());
    for s in matrix {
        let points = &s.samples;
        let v = match name {
            "rate" => extrapolated_rate(points, start, end, range, true, true),
            "increase" => extrapolated_rate(points, start, end, range, true, false),
            "delta" => extrapolated_rate(points, start, end, range, false, false),
            "irate" => instant_value(points, true),
            "idelta" => instant_value(points, false),
            "deriv" => deriv(points),
            "predict_linear" => predict_linear(points, ts, p1),
            "holt_winters" => {
                // Prometheus checks the factors only when a series has samples.
                check_factors(p1, p2)?;
                holt_winters(points, p1, p2)
            }
            "quantile_over_time" => over_time(points, |p| {
                let mut values: Vec<f64> = p.iter().map(|x| x.v).collect();
                quantile(q, &mut values)
            }),
            _ => over_time(points, simple_over_time(name)?),
        };
        let Some(v) = v else { continue };
        // last_over_time acts like an offset and keeps the name.
        let labels = if name == "last_over_time" {
            s.labels
        } else {
            drop_name(&s.labels)
        };
        out.push(Elem { labels, t: ts, v });
    }
    check_unique(&out)?;
    Ok(StepValue::Vector(out))
}

/// Written like Go's `sf <= 0 || sf >= 1`, which lets NaN through.
fn check_factors(sf: f64, tf: f64) -> Result<(), QueryError> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(QueryError::exec(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(QueryError::exec(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    Ok(())
}

fn over_time(points: &[Sample], f: impl Fn(&[Sample]) -> f64) -> Option<f64> {
    if points.is_empty() {
        None
    } else {
        Some(f(points))
    }
}

fn simple_over_time(name: &str) -> Result<fn(&[Sample]) -> f64, QueryError> {
    Ok(match name {
        "avg_over_time" => avg,
        "sum_over_time" => |p| {
            let (mut sum, mut c) = (0.0, 0.0);
            for x in p {
                (sum, c) = kahan_add(x.v, sum, c);
            }
            if sum.is_infinite() {
                sum
            } else {
                sum + c
            }
        },
        "count_over_time" => |p| p.len() as f64,
        "max_over_time" => |p| {
            p.iter()
                .skip(1)
                .fold(p[0].v, |m, x| if x.v > m || m.is_nan() { x.v } else { m })
        },
        "min_over_time" => |p| {
            p.iter()
                .skip(1)
                .fold(p[0].v, |m, x| if x.v < m || m.is_nan() { x.v } else { m })
        },
        "stdvar_over_time" => variance,
        "stddev_over_time" => |p| variance(p).sqrt(),
        "last_over_time" => |p| p[p.len() - 1].v,
        "present_over_time" => |_| 1.0,
        "changes" => |p| {
            let changed = |w: &[Sample]| w[1].v != w[0].v && !(w[1].v.is_nan() && w[0].v.is_nan());
            p.windows(2).filter(|w| changed(w)).count() as f64
        },
        "resets" => |p| p.windows(2).filter(|w| w[1].v < w[0].v).count() as f64,
        other => {
            return Err(QueryError::bad(format!(
                "unknown function with name {other:?}"
            )))
        }
    })
}

/// Kahan-Babuska-Neumaier summation step, as Prometheus 2.42 sums
/// `*_over_time` and regressions: returns the new sum and compensation.
fn kahan_add(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Incremental mean, as Prometheus computes it to avoid overflow.
fn avg(p: &[Sample]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0_f64, 0.0_f64, 0.0_f64);
    for x in p {
        count += 1.0;
        if mean.is_infinite() {
            if x.v.is_infinite() && (mean > 0.0) == (x.v > 0.0) {
                continue;
            }
            if !x.v.is_infinite() && !x.v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_add(x.v / count - mean / count, mean, c);
    }
    if mean.is_infinite() {
        mean
    } else {
        mean + c
    }
}

/// Welford's population variance with compensated sums.
fn variance(p: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for x in p {
        count += 1.0;
        let delta = x.v - (mean + c_mean);
        (mean, c_mean) = kahan_add(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_add(delta * (x.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Prometheus' `extrapolatedRate`: the change over the samples, corrected
/// for counter resets, extrapolated towards the window's edges (but not
/// beyond half an average interval, nor below zero for counters).
fn extrapolated_rate(
    p: &[Sample],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.v - first.v;
    if is_counter {
        let mut previous = 0.0;
        for x in p {
            if x.v < previous {
                result += previous;
            }
            previous = x.v;
        }
    }
    let mut duration_to_start = (first.t - range_start) as f64 / 1000.0;
    let duration_to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled_interval = (last.t - first.t) as f64 / 1000.0;
    let average_interval = sampled_interval / (p.len() - 1) as f64;
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let duration_to_zero = sampled_interval * (first.v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_interval * 1.1;
    let mut interval = sampled_interval;
    interval += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_interval / 2.0
    };
    interval += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_interval / 2.0
    };
    // Prometheus divides the factor, not the result, by the range: the
    // same operations in the same order give the same last bit (which
    // `count_values` makes visible).
    let mut factor = interval / sampled_interval;
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    result *= factor;
    Some(result)
}

/// `irate`/`idelta`: from the last two samples only.
fn instant_value(p: &[Sample], is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (previous, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut result = if is_rate && last.v < previous.v {
        // A counter reset: the counter restarted from zero.
        last.v
    } else {
        last.v - previous.v
    };
    if is_rate {
        let interval_ms = last.t - previous.t;
        if interval_ms == 0 {
            return None;
        }
        result /= interval_ms as f64 / 1000.0;
    }
    Some(result)
}

/// Least squares slope and intercept (at `intercept_ms`) of value over
/// seconds; a constant series has slope 0 (or NaN when infinite).
fn linear_regression(p: &[Sample], intercept_ms: i64) -> (f64, f64) {
    let init = p[0].v;
    if p.iter().all(|x| x.v == init) {
        return if init.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, init)
        };
    }
    let n = p.len() as f64;
    let (mut sum_x, mut sum_y, mut sum_xy, mut sum_x2) =
        ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0));
    for s in p {
        let x = (s.t - intercept_ms) as f64 / 1000.0;
        sum_x = kahan_add(x, sum_x.0, sum_x.1);
        sum_y = kahan_add(s.v, sum_y.0, sum_y.1);
        sum_xy = kahan_add(x * s.v, sum_xy.0, sum_xy.1);
        sum_x2 = kahan_add(x * x, sum_x2.0, sum_x2.1);
    }
    let (sum_x, sum_y) = (sum_x.0 + sum_x.1, sum_y.0 + sum_y.1);
    let (sum_xy, sum_x2) = (sum_xy.0 + sum_xy.1, sum_x2.0 + sum_x2.1);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn deriv(p: &[Sample]) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    // Intercepting at the first sample keeps the sums small.
    Some(linear_regression(p, p[0].t).0)
}

fn predict_linear(p: &[Sample], ts: i64, duration_s: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(p, ts);
    Some(slope * duration_s + intercept)
}

/// Double exponential smoothing with smoothing factor `sf` and trend
/// factor `tf`; the smoothed value at the last sample.
fn holt_winters(p: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, p[0].v);
    let mut b = p[1].v - p[0].v;
    for (i, x) in p.iter().enumerate().skip(1) {
        let smoothed = sf * x.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let trend = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = smoothed + trend;
    }
    Some(s1)
}
