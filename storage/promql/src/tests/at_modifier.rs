//! Cases of Prometheus 2.x's promql/testdata/at_modifier.test.

use super::harness::*;
use crate::MemStorage;

const S: i64 = 1000;

fn data() -> MemStorage {
    let mut s = load(
        10 * S,
        "metric{job=\"1\"} 0+1x1000\nmetric{job=\"2\"} 0+2x1000",
    );
    let ms: Vec<(i64, f64)> = (0..=10_000).map(|i| (i, i as f64)).collect();
    s.add_series(&[("__name__", "metric_ms")], &ms);
    s
}

#[test]
fn at_on_instant_selectors() {
    let s = data();
    let both = |q: &str, a: f64, b: f64, name: bool| {
        let (l1, l2) = if name {
            ("metric{job=\"1\"}", "metric{job=\"2\"}")
        } else {
            ("{job=\"1\"}", "{job=\"2\"}")
        };
        assert_vector(instant(&s, q, 10 * S), &[(l1, a), (l2, b)]);
    };
    both("metric @ 100", 10.0, 20.0, true);
    for q in [
        "metric @ 100 offset 50s",
        "metric offset 50s @ 100",
        "metric @ 0 offset -50s",
        "metric offset -50s @ 0",
    ] {
        both(q, 5.0, 10.0, true);
    }
    both("-metric @ 100", -10.0, -20.0, false);
    both("---metric @ 100", -10.0, -20.0, false);
    assert_vector(
        instant(&s, "metric_ms @ 1.234", 100 * S),
        &[("metric_ms", 1234.0)],
    );
}

#[test]
fn at_on_range_selectors() {
    let s = data();
    let one = |q: &str, v: f64| assert_vector(instant(&s, q, 25 * S), &[("{job=\"1\"}", v)]);
    one("sum_over_time(metric{job=\"1\"}[100s] @ 100)", 55.0);
    one(
        "sum_over_time(metric{job=\"1\"}[100s] @ 100 offset 50s)",
        15.0,
    );
    one(
        "sum_over_time(metric{job=\"1\"}[100s] offset 50s @ 100)",
        15.0,
    );
    one("metric{job=\"1\"} @ 50 + metric{job=\"1\"} @ 100", 15.0);
    one(
        "rate(metric{job=\"1\"}[100s] @ 100) + label_replace(rate(metric{job=\"2\"}[123s] @ 200), \"job\", \"1\", \"\", \"\")",
        0.3,
    );
    one(
        "sum_over_time(metric{job=\"1\"}[100s] @ 100) + label_replace(sum_over_time(metric{job=\"2\"}[100s] @ 100), \"job\", \"1\", \"\", \"\")",
        165.0,
    );
    // 10*(1+2+...+9) + 10.
    one("sum_over_time(metric{job=\"1\"}[100s:1s] @ 100)", 460.0);
    // 10*(1+2+...+7) + 8.
    one(
        "sum_over_time(metric{job=\"1\"}[100s:1s] @ 100 offset 20s)",
        288.0,
    );
    one(
        "sum_over_time(metric{job=\"1\"}[100s:1s] offset 20s @ 100)",
        288.0,
    );
}

#[test]
fn at_on_nested_subqueries() {
    let s = data();
    let one = |q: &str, t: i64, v: f64| assert_vector(instant(&s, q, t), &[("{job=\"1\"}", v)]);
    one(
        "sum_over_time(sum_over_time(metric{job=\"1\"}[100s] @ 100)[100s:25s] @ 50)",
        100 * S,
        275.0,
    );
    one(
        "sum_over_time(sum_over_time(sum_over_time(metric{job=\"1\"}[100s] @ 100)[100s:25s] @ 50)[3s:1s] @ 3000)",
        0,
        1100.0,
    );
    one(
        "sum_over_time(sum_over_time(sum_over_time(metric{job=\"1\"}[10s])[100s:25s] @ 50)[3s:1s] @ 200)",
        0,
        44.0,
    );
    one(
        "sum_over_time(sum_over_time(sum_over_time(metric{job=\"1\"}[10s])[100s:25s] @ 200)[3s:1s] @ 50)",
        0,
        464.0,
    );
    one(
        "sum_over_time(sum_over_time(sum_over_time(metric{job=\"1\"}[20s])[20s:10s] offset 10s)[100s:25s] @ 1000)",
        0,
        3588.0,
    );
}

#[test]
fn at_with_time_functions() {
    let s = data();
    assert_vector(
        instant(&s, "minute(metric @ 1500)", 10 * S),
        &[("{job=\"1\"}", 2.0), ("{job=\"2\"}", 5.0)],
    );
    assert_vector(
        instant(&s, "timestamp(metric{job=\"1\"} @ 10)", 10 * MINUTE),
        &[("{job=\"1\"}", 10.0)],
    );
    assert_vector(
        instant(
            &s,
            "timestamp(timestamp(metric{job=\"1\"} @ 10))",
            10 * MINUTE,
        ),
        &[("{job=\"1\"}", 600.0)],
    );
    assert_vector(
        instant(
            &s,
            "timestamp(timestamp(metric{job=\"1\"} @ 10))",
            15 * MINUTE,
        ),
        &[("{job=\"1\"}", 900.0)],
    );
    assert_vector(
        instant(&s, "sum_over_time(minute(metric @ 1500)[100s:10s])", 0),
        &[("{job=\"1\"}", 22.0), ("{job=\"2\"}", 55.0)],
    );
    assert_vector(
        instant(&s, "sum_over_time(minute()[50m:1m] @ 6000)", 0),
        &[("{}", 1365.0)],
    );
    assert_vector(
        instant(&s, "sum_over_time(minute()[50m:1m] @ 6000 offset 5m)", 0),
        &[("{}", 1410.0)],
    );
    assert_vector(
        instant(&s, "sum_over_time(vector(time())[100s:1s] @ 3000)", 0),
        &[("{}", 297950.0)],
    );
    assert_vector(
        instant(
            &s,
            "sum_over_time(vector(time())[100s:1s] @ 3000 offset 600s)",
            0,
        ),
        &[("{}", 237350.0)],
    );
    assert_vector(
        instant(
            &s,
            "sum_over_time(timestamp(metric{job=\"1\"} @ 10)[100s:10s] @ 3000)",
            0,
        ),
        &[("{job=\"1\"}", 110.0)],
    );
    assert_vector(
        instant(
            &s,
            "sum_over_time(timestamp(timestamp(metric{job=\"1\"} @ 999))[10s:1s] @ 10)",
            0,
        ),
        &[("{job=\"1\"}", 55.0)],
    );
}
