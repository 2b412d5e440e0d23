//! Aggregation operators (`sum`, `topk`, `count_values`, ...) with
//! `by`/`without`, following Prometheus' `aggregation()`.

use std::collections::HashMap;

use photon_tsdb::{Labels, METRIC_NAME};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::eval::Evaluator;
use crate::value::{format_float, Elem, StepValue};
use crate::QueryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
    TopK,
    BottomK,
    CountValues,
    Quantile,
}

impl Agg {
    fn from_token(token: &str) -> Result<Agg, QueryError> {
        Ok(match token {
            "sum" => Agg::Sum,
            "avg" => Agg::Avg,
            "count" => Agg::Count,
            "group" => Agg::Group,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "stddev" => Agg::Stddev,
            "stdvar" => Agg::Stdvar,
            "topk" => Agg::TopK,
            "bottomk" => Agg::BottomK,
            "count_values" => Agg::CountValues,
            "quantile" => Agg::Quantile,
            other => {
                return Err(QueryError::bad(format!(
                    "unsupported aggregation {other:?}"
                )))
            }
        })
    }
}

/// One output group's running state.
struct Group {
    labels: Labels,
    count: usize,
    value: f64,
    mean: f64,
    values: Vec<f64>,
    heap: Vec<Elem>,
}

pub(crate) fn eval(
    ev: &mut Evaluator,
    a: &AggregateExpr,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let op = Agg::from_token(&a.op.to_string())?;
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, ts)?),
        None => None,
    };
    let input = ev.eval(&a.expr, ts)?.into_vector()?;
    let (without, mut grouping): (bool, Vec<String>) = match &a.modifier {
        Some(LabelModifier::Include(ls)) => (false, ls.labels.clone()),
        Some(LabelModifier::Exclude(ls)) => (true, ls.labels.clone()),
        None => (false, Vec::new()),
    };
    let mut k = 0usize;
    let mut q = 0.0;
    let mut value_label = String::new();
    match op {
        Agg::TopK | Agg::BottomK => {
            let f = param.as_ref().map_or(Ok(0.0), StepValue::as_scalar)?;
            if !(-9.223_372_036_854_776e18..=9.223_372_036_854_776e18).contains(&f) {
                return Err(QueryError::exec(format!(
                    "Scalar value {f} overflows int64"
                )));
            }
            if f < 1.0 {
                return Ok(StepValue::Vector(Vec::new()));
            }
            k = (f as usize).min(input.len());
        }
        Agg::Quantile => q = param.as_ref().map_or(Ok(f64::NAN), StepValue::as_scalar)?,
        Agg::CountValues => {
            value_label = param.map_or(Ok(String::new()), StepValue::into_string)?;
            if !is_label_name(&value_label) {
                return Err(QueryError::exec(format!(
                    "invalid label name {value_label:?}"
                )));
            }
            if !without {
                grouping.push(value_label.clone());
            }
        }
        _ => {}
    }
    let key_of = |labels: &Labels| -> Labels {
        if without {
            labels.retain(|n| n != METRIC_NAME && !grouping.iter().any(|g| g == n))
        } else {
            labels.retain(|n| grouping.iter().any(|g| g == n))
        }
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for mut e in input {
        if op == Agg::CountValues {
            e.labels.set(&value_label, &format_float(e.v));
        }
        let key = key_of(&e.labels);
        match index.get(&key) {
            Some(&i) => accumulate(op, &mut groups[i], e, k),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(start_group(op, key, e));
            }
        }
    }
    Ok(StepValue::Vector(finish(op, groups, q, ts)))
}

fn start_group(op: Agg, labels: Labels, e: Elem) -> Group {
    let v = e.v;
    Group {
        labels,
        count: 1,
        value: match op {
            Agg::Stddev | Agg::Stdvar => 0.0,
            _ => v,
        },
        mean: v,
        values: if op == Agg::Quantile {
            vec![v]
        } else {
            Vec::new()
        },
        heap: if matches!(op, Agg::TopK | Agg::BottomK) {
            vec![e]
        } else {
            Vec::new()
        },
    }
}

fn accumulate(op: Agg, g: &mut Group, e: Elem, k: usize) {
    let v = e.v;
    g.count += 1;
    let n = g.count as f64;
    match op {
        Agg::Sum => g.value += v,
        Agg::Avg => {
            // Prometheus keeps an incremental mean to avoid overflow, and
            // leaves an infinite mean alone unless the new value is NaN or
            // the opposite infinity.
            if g.mean.is_infinite() {
                if v.is_infinite() && (g.mean > 0.0) == (v > 0.0) {
                    return;
                }
                if !v.is_infinite() && !v.is_nan() {
                    return;
                }
            }
            g.mean += v / n - g.mean / n;
        }
        Agg::Max => {
            if g.value < v || g.value.is_nan() {
                g.value = v;
            }
        }
        Agg::Min => {
            if g.value > v || g.value.is_nan() {
                g.value = v;
            }
        }
        Agg::Stddev | Agg::Stdvar => {
            let delta = v - g.mean;
            g.mean += delta / n;
            g.value += delta * (v - g.mean);
        }
        Agg::Quantile => g.values.push(v),
        Agg::TopK => offer(&mut g.heap, e, k, true),
        Agg::BottomK => offer(&mut g.heap, e, k, false),
        Agg::Count | Agg::Group | Agg::CountValues => {}
    }
}

fn finish(op: Agg, groups: Vec<Group>, q: f64, ts: i64) -> Vec<Elem> {
    let mut out = Vec::with_capacity(groups.len());
    for mut g in groups {
        let v = match op {
            Agg::Sum | Agg::Min | Agg::Max => g.value,
            Agg::Avg => g.mean,
            Agg::Count | Agg::CountValues => g.count as f64,
            Agg::Group => 1.0,
            Agg::Stdvar => g.value / g.count as f64,
            Agg::Stddev => (g.value / g.count as f64).sqrt(),
            Agg::Quantile => quantile(q, &mut g.values),
            Agg::TopK | Agg::BottomK => {
                // Largest (smallest) first, NaN last, like Prometheus'
                // reverse sort of its heap.
                let desc = op == Agg::TopK;
                g.heap.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if desc => b.v.total_cmp(&a.v),
                    _ => a.v.total_cmp(&b.v),
                });
                out.extend(g.heap.into_iter().map(|e| Elem { t: ts, ..e }));
                continue;
            }
        };
        out.push(Elem {
            labels: g.labels,
            t: ts,
            v,
        });
    }
    out
}

/// Prometheus' `vectorByValueHeap.Less`: a min-heap with NaN at the root,
/// so NaN is replaced first.
fn topk_less(a: &Elem, b: &Elem) -> bool {
    a.v.is_nan() || a.v < b.v
}

fn bottomk_less(a: &Elem, b: &Elem) -> bool {
    a.v.is_nan() || a.v > b.v
}

/// Keeps the `k` best elements the way Prometheus 2.42 does with Go's
/// `container/heap` (pop the root, push the newcomer), so ties resolve to
/// the same series. A NaN root is replaced by anything, even NaN.
fn offer(heap: &mut Vec<Elem>, e: Elem, k: usize, top: bool) {
    let less = if top { topk_less } else { bottomk_less };
    let root = heap[0].v;
    let beats_root = if top { root < e.v } else { root > e.v };
    if heap.len() >= k && !beats_root && !root.is_nan() {
        return;
    }
    if heap.len() >= k {
        if k == 1 {
            heap[0] = e;
            return;
        }
        let n = heap.len() - 1;
        heap.swap(0, n);
        heap_down(&mut heap[..n], 0, less);
        heap.truncate(n);
    }
    heap.push(e);
    let last = heap.len() - 1;
    heap_up(heap, last, less);
}

fn heap_up(h: &mut [Elem], mut j: usize, less: fn(&Elem, &Elem) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [Elem], i0: usize, less: fn(&Elem, &Elem) -> bool) -> bool {
    let n = h.len();
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(&h[j1 + 1], &h[j1]) {
            j = j1 + 1;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    i > i0
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks;
/// `q < 0` gives -Inf, `q > 1` +Inf, no values NaN.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go's sort.Float64s: NaN first.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Prometheus 2.x label names: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
