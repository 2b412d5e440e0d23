use photon_tsdb::{Labels, Sample, STALE_NAN};
use promql_parser::parser::Expr;

use crate::{eval_instant, eval_range, parse, MemStorage, QueryError, QueryParams, Value};

pub const MINUTE: i64 = 60_000;

/// Labels from a selector-like string: `up{job="a"}`, `{a="b"}` or `{}`.
pub fn labels(s: &str) -> Labels {
    if s.trim() == "{}" {
        return Labels::default();
    }
    let Expr::VectorSelector(vs) = parse(s).unwrap() else {
        panic!("not a selector: {s}")
    };
    let mut pairs: Vec<(String, String)> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    if let Some(n) = vs.name {
        pairs.push(("__name__".into(), n));
    }
    Labels::new(pairs)
}

/// Expands Prometheus' series notation into values (None = no sample).
fn expand(values: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for token in values.split_whitespace() {
        if token == "_" {
            out.push(None);
        } else if token == "stale" {
            out.push(Some(f64::from_bits(STALE_NAN)));
        } else if let Some((head, times)) = token.split_once('x') {
            let n: usize = times.parse().unwrap();
            if head == "_" {
                out.extend(std::iter::repeat_n(None, n));
                continue;
            }
            // `a+b` or `a-b`, the sign splitting after the first character.
            let split = head[1..].find(['+', '-']).map(|i| i + 1).unwrap();
            let start: f64 = head[..split].parse().unwrap();
            let delta: f64 = head[split..].trim_start_matches('+').parse().unwrap();
            out.extend((0..=n).map(|i| Some(start + delta * i as f64)));
        } else {
            out.push(Some(token.parse().unwrap()));
        }
    }
    out
}

/// `load <interval>` of Prometheus' test files: one series per line,
/// samples from time 0 every `interval_ms`.
pub fn load(interval_ms: i64, text: &str) -> MemStorage {
    let mut storage = MemStorage::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let split = match line.find('}') {
            Some(i) => i + 1,
            None => line.find(char::is_whitespace).unwrap(),
        };
        let (series, values) = line.split_at(split);
        let samples: Vec<Sample> = expand(values)
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|v| Sample {
                    t: i as i64 * interval_ms,
                    v,
                })
            })
            .collect();
        storage.add(labels(series), &samples);
    }
    storage
}

pub fn instant(storage: &MemStorage, query: &str, t_ms: i64) -> Result<Value, QueryError> {
    eval_instant(&parse(query)?, storage, &QueryParams::instant(t_ms))
}

pub fn range(
    storage: &MemStorage,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Result<Value, QueryError> {
    eval_range(
        &parse(query)?,
        storage,
        &QueryParams::range(start_ms, end_ms, step_ms),
    )
}

pub fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Asserts an instant vector result as a set: `(labels, value)` pairs.
#[track_caller]
pub fn assert_vector(got: Result<Value, QueryError>, want: &[(&str, f64)]) {
    let got = match got {
        Ok(Value::Vector(v)) => v,
        other => panic!("expected a vector, got {other:?}"),
    };
    let mut got: Vec<(Labels, f64)> = got.into_iter().map(|s| (s.labels, s.v)).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(Labels, f64)> = want.iter().map(|(l, v)| (labels(l), *v)).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got.iter().map(|g| &g.0).collect::<Vec<_>>(),
        want.iter().map(|w| &w.0).collect::<Vec<_>>(),
        "label sets differ; got {got:?}"
    );
    for (g, w) in got.iter().zip(&want) {
        assert!(close(g.1, w.1), "{}: got {}, want {}", g.0, g.1, w.1);
    }
}

/// Asserts the order of an instant vector's label sets.
#[track_caller]
pub fn assert_order(got: Result<Value, QueryError>, want: &[&str]) {
    let Ok(Value::Vector(v)) = got else {
        panic!("expected a vector, got {got:?}")
    };
    let got: Vec<Labels> = v.into_iter().map(|s| s.labels).collect();
    let want: Vec<Labels> = want.iter().map(|l| labels(l)).collect();
    assert_eq!(got, want);
}

#[track_caller]
pub fn assert_scalar(got: Result<Value, QueryError>, want: f64) {
    match got {
        Ok(Value::Scalar(_, v)) => assert!(close(v, want), "got {v}, want {want}"),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// Asserts a matrix: per series, `(t_ms, value)` points.
#[track_caller]
pub fn assert_matrix(got: Result<Value, QueryError>, want: &[(&str, &[(i64, f64)])]) {
    let Ok(Value::Matrix(m)) = got else {
        panic!("expected a matrix, got {got:?}")
    };
    let mut want: Vec<(Labels, &[(i64, f64)])> =
        want.iter().map(|(l, p)| (labels(l), *p)).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        m.iter().map(|s| &s.labels).collect::<Vec<_>>(),
        want.iter().map(|w| &w.0).collect::<Vec<_>>(),
        "series differ; got {m:?}"
    );
    for (s, (l, points)) in m.iter().zip(&want) {
        let got: Vec<(i64, f64)> = s.samples.iter().map(|p| (p.t, p.v)).collect();
        assert_eq!(got.len(), points.len(), "{l}: got {got:?}");
        for (g, w) in got.iter().zip(points.iter()) {
            assert!(
                g.0 == w.0 && close(g.1, w.1),
                "{l}: got {got:?}, want {points:?}"
            );
        }
    }
}

#[track_caller]
pub fn assert_error(got: Result<Value, QueryError>, contains: &str) {
    match got {
        Err(e) => assert!(
            e.to_string().contains(contains),
            "error {e:?} lacks {contains:?}"
        ),
        Ok(v) => panic!("expected an error containing {contains:?}, got {v:?}"),
    }
}

#[test]
fn the_loader_expands_prometheus_notation() {
    assert_eq!(
        expand("0+10x2 _ 5 -1-1x1"),
        vec![
            Some(0.0),
            Some(10.0),
            Some(20.0),
            None,
            Some(5.0),
            Some(-1.0),
            Some(-2.0)
        ]
    );
    assert_eq!(expand("_x2 1").len(), 3);
}
