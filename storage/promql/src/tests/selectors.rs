use std::time::{Duration, Instant};

use super::harness::*;
use crate::{eval_range, parse, selections, QueryError, QueryParams, Value};

const SECOND: i64 = 1000;

#[test]
fn instant_selection_looks_back_five_minutes_including_the_edge() {
    let s = load(10 * SECOND, "metric{a=\"1\"} 1 2 3");
    assert_vector(
        instant(&s, "metric", 20 * SECOND),
        &[("metric{a=\"1\"}", 3.0)],
    );
    assert_vector(
        instant(&s, "metric", 25 * SECOND),
        &[("metric{a=\"1\"}", 3.0)],
    );
    // Prometheus 2.x includes a sample exactly `lookback` old.
    assert_vector(
        instant(&s, "metric", 20 * SECOND + 5 * MINUTE),
        &[("metric{a=\"1\"}", 3.0)],
    );
    assert_vector(instant(&s, "metric", 20 * SECOND + 5 * MINUTE + 1), &[]);
    assert_vector(instant(&s, "metric", -1), &[]);
}

#[test]
fn a_staleness_marker_ends_the_series() {
    let s = load(10 * SECOND, "metric 1 stale _ 4");
    assert_vector(instant(&s, "metric", 5 * SECOND), &[("metric", 1.0)]);
    assert_vector(instant(&s, "metric", 10 * SECOND), &[]);
    assert_vector(instant(&s, "metric", 25 * SECOND), &[]);
    assert_vector(instant(&s, "metric", 30 * SECOND), &[("metric", 4.0)]);
    // Range selections skip markers.
    assert_vector(
        instant(&s, "count_over_time(metric[1m])", 30 * SECOND),
        &[("{}", 2.0)],
    );
}

#[test]
fn offset_and_at_move_the_evaluation_time() {
    let s = load(10 * SECOND, "metric 1 2 3");
    assert_vector(
        instant(&s, "metric offset 10s", 20 * SECOND),
        &[("metric", 2.0)],
    );
    assert_vector(instant(&s, "metric offset -10s", 0), &[("metric", 2.0)]);
    assert_vector(
        instant(&s, "metric @ 10", 1000 * SECOND),
        &[("metric", 2.0)],
    );
    assert_vector(
        instant(&s, "metric @ 20 offset 20s", 1000 * SECOND),
        &[("metric", 1.0)],
    );
    assert_vector(
        instant(&s, "sum_over_time(metric[10s] @ 20)", 0),
        &[("{}", 5.0)],
    );
    // @ start() and end() refer to the query's range in every step.
    assert_matrix(
        range(
            &s,
            "metric @ start()",
            10 * SECOND,
            20 * SECOND,
            10 * SECOND,
        ),
        &[("metric", &[(10_000, 2.0), (20_000, 2.0)])],
    );
    assert_matrix(
        range(&s, "metric @ end()", 0, 10 * SECOND, 10 * SECOND),
        &[("metric", &[(0, 2.0), (10_000, 2.0)])],
    );
}

#[test]
fn range_selection_is_closed_in_prometheus_2_and_left_open_on_request() {
    let s = load(10 * SECOND, "metric 1 2 3");
    assert_vector(
        instant(&s, "count_over_time(metric[20s])", 20 * SECOND),
        &[("{}", 3.0)],
    );
    let mut p = QueryParams::instant(20 * SECOND);
    p.left_open = true;
    let e = parse("count_over_time(metric[20s])").unwrap();
    assert_vector(crate::eval_instant(&e, &s, &p), &[("{}", 2.0)]);
    // An instant query of a range vector returns the raw samples.
    assert_matrix(
        instant(&s, "metric[10s]", 20 * SECOND),
        &[("metric", &[(10_000, 2.0), (20_000, 3.0)])],
    );
}

#[test]
fn subqueries_align_steps_to_absolute_multiples() {
    let s = load(MINUTE, "metric 0+1x10");
    // Steps at 5m..10m: six points, both ends included in Prometheus 2.x.
    assert_vector(
        instant(&s, "count_over_time(metric[5m:1m])", 10 * MINUTE),
        &[("{}", 6.0)],
    );
    assert_vector(
        instant(&s, "sum_over_time(metric[5m:1m])", 10 * MINUTE),
        &[("{}", 45.0)],
    );
    assert_vector(
        instant(&s, "count_over_time(metric[5m:])", 10 * MINUTE),
        &[("{}", 6.0)],
    );
    assert_vector(
        instant(&s, "max_over_time(metric[5m:1m] offset 2m)", 10 * MINUTE),
        &[("{}", 8.0)],
    );
    // At 10m30s the only multiple of 1m in [9m30s, 10m30s] is 10m.
    assert_vector(
        instant(
            &s,
            "last_over_time(metric[1m:1m])",
            10 * MINUTE + 30 * SECOND,
        ),
        &[("metric", 10.0)],
    );
    // Nested subqueries and rate of a subquery.
    assert_vector(
        instant(
            &s,
            "max_over_time(rate(metric[2m:30s])[4m:1m])",
            10 * MINUTE,
        ),
        &[("{}", 1.0 / 60.0)],
    );
    assert_matrix(
        instant(&s, "metric[2m:1m]", 10 * MINUTE),
        &[(
            "metric",
            &[(8 * MINUTE, 8.0), (9 * MINUTE, 9.0), (10 * MINUTE, 10.0)],
        )],
    );
    assert_error(
        range(&s, "metric[2m:1m]", 0, 60_000, 1000),
        "invalid expression type",
    );
}

#[test]
fn range_queries_evaluate_every_step_and_sort_series() {
    let s = load(
        10 * SECOND,
        "metric{a=\"2\"} 1 2 3\nmetric{a=\"1\"} _ _ _ _ 9\nother 1",
    );
    assert_matrix(
        range(&s, "metric", 0, 40 * SECOND, 10 * SECOND),
        &[
            ("metric{a=\"1\"}", &[(40_000, 9.0)]),
            (
                "metric{a=\"2\"}",
                &[
                    (0, 1.0),
                    (10_000, 2.0),
                    (20_000, 3.0),
                    (30_000, 3.0),
                    (40_000, 3.0),
                ],
            ),
        ],
    );
    assert_matrix(
        range(&s, "time()", 0, 2000, 1000),
        &[("{}", &[(0, 0.0), (1000, 1.0), (2000, 2.0)])],
    );
    // No empty series.
    assert_matrix(range(&s, "metric > 100", 0, 40 * SECOND, 10 * SECOND), &[]);
    assert_error(
        range(&s, "\"x\"", 0, 1, 1),
        "invalid expression type \"string\"",
    );
}

#[test]
fn range_query_parameters_are_checked_like_prometheus_api() {
    let s = load(SECOND, "m 1");
    let e = range(&s, "m", 0, 11_001 * 1000, 1000).unwrap_err();
    assert_eq!(
        e.to_string(),
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
    );
    assert_eq!(e.error_type(), "bad_data");
    assert!(range(&s, "m", 0, 11_000 * 1000, 1000).is_ok());
    assert_error(
        range(&s, "m", 0, 10, 0),
        "zero or negative query resolution step",
    );
    assert_error(
        range(&s, "m", 10, 0, 1),
        "end timestamp must not be before start time",
    );
}

#[test]
fn sample_limit_and_deadline() {
    let s = load(SECOND, "m{a=\"1\"} 1\nm{a=\"2\"} 1\nm{a=\"3\"} 1");
    let e = parse("m").unwrap();
    let mut p = QueryParams::instant(0);
    p.limits.samples_max = 2;
    assert_eq!(
        crate::eval_instant(&e, &s, &p),
        Err(QueryError::TooManySamples)
    );
    p.limits.samples_max = 3;
    assert!(crate::eval_instant(&e, &s, &p).is_ok());
    // A range query holds its output: 3 series x 2 steps.
    let mut p = QueryParams::range(0, 1000, 1000);
    p.limits.samples_max = 5;
    assert_eq!(eval_range(&e, &s, &p), Err(QueryError::TooManySamples));
    let mut p = QueryParams::instant(0);
    p.limits.deadline = Instant::now().checked_sub(Duration::from_millis(1));
    let err = crate::eval_instant(&e, &s, &p).unwrap_err();
    assert_eq!(err.error_type(), "timeout");
}

#[test]
fn selections_cover_what_evaluation_reads() {
    let e = parse("rate(a[5m]) + on() group_left b offset 1h").unwrap();
    let p = QueryParams::range(10 * MINUTE, 20 * MINUTE, MINUTE);
    let sels = selections(&e, &p);
    assert_eq!(sels.len(), 2);
    assert_eq!(
        (sels[0].mint_ms, sels[0].maxt_ms),
        (5 * MINUTE, 20 * MINUTE)
    );
    assert_eq!(
        (sels[1].mint_ms, sels[1].maxt_ms),
        (5 * MINUTE - 60 * MINUTE, 20 * MINUTE - 60 * MINUTE)
    );
    assert_eq!(sels[0].matchers[0].to_string(), "__name__=\"a\"");
}

#[test]
fn instant_results_are_sorted_by_labels() {
    let s = load(SECOND, "m{a=\"2\"} 1\nm{a=\"1\"} 2\nm{a=\"3\"} 0");
    assert_order(
        instant(&s, "m", 0),
        &["m{a=\"1\"}", "m{a=\"2\"}", "m{a=\"3\"}"],
    );
    assert_order(
        instant(&s, "sort(m)", 0),
        &["m{a=\"3\"}", "m{a=\"2\"}", "m{a=\"1\"}"],
    );
    assert_order(
        instant(&s, "(topk(2, m))", 0),
        &["m{a=\"1\"}", "m{a=\"2\"}"],
    );
    let Ok(Value::Scalar(t, v)) = instant(&s, "1 + 1", 5000) else {
        panic!()
    };
    assert_eq!((t, v), (5000, 2.0));
}

#[test]
fn unsupported_prometheus_3_features_are_refused() {
    for q in [
        "mad_over_time(m[1m])",
        "limitk(1, m)",
        "double_exponential_smoothing(m[1m], 0.5, 0.5)",
    ] {
        let e = parse(q).unwrap_err();
        assert_eq!(e.error_type(), "bad_data", "{q}");
    }
    assert!(parse("holt_winters(m[1m], 0.5, 0.5)").is_ok());
    assert_eq!(parse("sum(").unwrap_err().error_type(), "bad_data");
}

/// A range query is the instant query at every step.
#[test]
fn range_queries_agree_with_instant_queries_at_every_step() {
    let s = load(
        15 * SECOND,
        r#"
        c{a="1"} 0+3x20 0+5x20 stale
        c{a="2"} 10+1x10 _x5 20+2x20
        g{a="1"} 5 3 _ 9 -2 stale 4 4 4 1 0 7
        "#,
    );
    let queries = [
        "c",
        "rate(c[1m])",
        "sum by (a) (rate(c[2m] offset 30s))",
        "max_over_time(g[3m:20s])",
        "c / on(a) group_left g",
        "topk(1, c)",
        "absent(g{a=\"1\"})",
        "timestamp(g)",
        "c @ 60 + g",
        "deriv(c[5m]) > bool 0",
        "avg_over_time(rate(c[1m])[2m:])",
    ];
    for q in queries {
        let Ok(Value::Matrix(m)) = range(&s, q, 0, 10 * MINUTE, 25 * SECOND) else {
            panic!("{q}")
        };
        let mut t = 0;
        while t <= 10 * MINUTE {
            let Ok(Value::Vector(v)) = instant(&s, q, t) else {
                panic!("{q}")
            };
            let from_range: Vec<_> = m
                .iter()
                .filter_map(|s| {
                    s.samples
                        .iter()
                        .find(|p| p.t == t)
                        .map(|p| (s.labels.clone(), p.v))
                })
                .collect();
            let mut from_instant: Vec<_> = v.into_iter().map(|s| (s.labels, s.v)).collect();
            from_instant.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(from_range.len(), from_instant.len(), "{q} at {t}");
            for (r, i) in from_range.iter().zip(&from_instant) {
                assert!(r.0 == i.0 && close(r.1, i.1), "{q} at {t}: {r:?} vs {i:?}");
            }
            t += 25 * SECOND;
        }
    }
}

/// What `selections` names is enough: evaluating on a copy holding only
/// those samples gives the same result.
#[test]
fn prefetching_the_selections_gives_the_same_results() {
    use crate::{MemStorage, Queryable};
    let s = load(
        MINUTE,
        "a{x=\"1\"} 0+1x200\na{x=\"2\"} 5+2x200\nb{x=\"1\"} 1+0x200",
    );
    let queries = [
        "rate(a[5m] offset 10m)",
        "max_over_time(sum(a)[30m:7m] offset 3m) + on() group_left b",
        "a @ end() - a @ start()",
        "count_over_time((a offset -5m)[10m:])",
        "absent_over_time(b[2m] @ 30)",
    ];
    for q in queries {
        let e = parse(q).unwrap();
        let p = QueryParams::range(40 * MINUTE, 90 * MINUTE, 90 * 1000);
        let mut copy = MemStorage::new();
        for sel in selections(&e, &p) {
            for series in s.select(&sel).unwrap() {
                copy.add_data(series);
            }
        }
        assert_eq!(eval_range(&e, &copy, &p), eval_range(&e, &s, &p), "{q}");
    }
}

/// Cases of Prometheus 2.x's promql/testdata/staleness.test.
#[test]
fn staleness_cases_of_prometheus() {
    let s = load(10 * SECOND, "metric 0 1 stale 2");
    let at = |t: i64| instant(&s, "metric", t * SECOND);
    assert_vector(at(10), &[("metric", 1.0)]);
    assert_vector(at(20), &[]);
    assert_vector(at(30), &[("metric", 2.0)]);
    assert_vector(at(40), &[("metric", 2.0)]);
    assert_vector(at(330), &[("metric", 2.0)]);
    assert_vector(at(331), &[]);
    assert_vector(
        instant(&s, "count_over_time(metric[1m])", 30 * SECOND),
        &[("{}", 3.0)],
    );
    assert_vector(
        instant(&s, "count_over_time(metric[1s])", 10 * SECOND),
        &[("{}", 1.0)],
    );
    assert_vector(instant(&s, "count_over_time(metric[1s])", 20 * SECOND), &[]);
    assert_vector(
        instant(&s, "count_over_time(metric[10s])", 20 * SECOND),
        &[("{}", 1.0)],
    );
    let s = load(10 * SECOND, "metric 0");
    for (t, present) in [(0, true), (150, true), (300, true), (301, false)] {
        let want: &[(&str, f64)] = if present { &[("metric", 0.0)] } else { &[] };
        assert_vector(instant(&s, "metric", t * SECOND), want);
    }
}

/// Not a benchmark: a size check to run by hand (`--ignored --nocapture`).
#[test]
#[ignore]
fn a_larger_range_query_runs_in_reasonable_time() {
    let mut s = crate::MemStorage::new();
    for i in 0..500 {
        let samples: Vec<(i64, f64)> = (0..2880)
            .map(|k| (k * 15 * SECOND, (k * i) as f64))
            .collect();
        s.add_series(
            &[
                ("__name__", "c"),
                ("i", &i.to_string()),
                ("job", &(i % 7).to_string()),
            ],
            &samples,
        );
    }
    for q in [
        "sum by (job) (rate(c[5m]))",
        "c",
        "max_over_time(rate(c[5m])[30m:1m])",
    ] {
        let started = std::time::Instant::now();
        let r = range(&s, q, 0, 12 * 60 * MINUTE, MINUTE).unwrap();
        let Value::Matrix(m) = r else { panic!() };
        println!("{q}: {} series in {:?}", m.len(), started.elapsed());
    }
}

#[test]
fn absurd_times_are_refused_not_overflowed() {
    let s = load(SECOND, "m 1");
    assert_error(instant(&s, "m offset 300000000y", 0), "out of range");
    assert_error(range(&s, "m", i64::MIN, i64::MAX, 1), "out of range");
    assert_error(instant(&s, "m", i64::MAX), "out of range");
}

#[test]
fn series_selectors_parse_to_matchers() {
    let m = crate::parse_selector("up{job=~\"a|b\", zone!=\"x\"}").unwrap();
    let shown: Vec<String> = m.iter().map(|m| m.to_string()).collect();
    assert_eq!(shown, ["__name__=\"up\"", "job=~\"a|b\"", "zone!=\"x\""]);
    assert_eq!(crate::parse_selector("{__name__=\"up\"}").unwrap().len(), 1);
    for bad in [
        "rate(up[5m])",
        "up offset 5m",
        "up[5m]",
        "1",
        "{job=~\".*\"}",
    ] {
        assert_eq!(
            crate::parse_selector(bad).unwrap_err().error_type(),
            "bad_data",
            "{bad}"
        );
    }
}
