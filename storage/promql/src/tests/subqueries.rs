//! Cases of Prometheus 2.x's promql/testdata/subquery.test.

use super::harness::*;
use crate::MemStorage;

const S: i64 = 1000;

#[test]
fn subqueries_of_a_short_series() {
    let s = load(10 * S, "metric 1 2");
    let one = |q: &str, t: i64, v: f64| assert_vector(instant(&s, q, t), &[("{}", v)]);
    // Evaluation before 0s gets no sample.
    one("sum_over_time(metric[50s:10s])", 10 * S, 3.0);
    one("sum_over_time(metric[50s:5s])", 10 * S, 4.0);
    // Every evaluation yields the last value, 2.
    one("sum_over_time(metric[50s:10s])", 5 * MINUTE, 12.0);
    // The series is gone 5m after its last sample (at 5m10s).
    one("sum_over_time(metric[50s:10s])", 6 * MINUTE, 2.0);
    one("rate(metric[20s:10s])", 10 * S, 0.1);
    one("rate(metric[20s:5s])", 20 * S, 0.05);
}

#[test]
fn subqueries_with_rates_and_offsets() {
    let s = load(
        10 * S,
        r#"
        http_requests{job="api-server", instance="1", group="production"} 0+20x1000 200+30x1000
        http_requests{job="api-server", instance="0", group="production"} 0+10x1000 100+30x1000
        http_requests{job="api-server", instance="0", group="canary"} 0+30x1000 300+80x1000
        http_requests{job="api-server", instance="1", group="canary"} 0+40x2000
        "#,
    );
    assert_vector(
        instant(
            &s,
            "rate(http_requests{group=~\"pro.*\"}[1m:10s])",
            8000 * S,
        ),
        &[
            (
                "{job=\"api-server\", instance=\"0\", group=\"production\"}",
                1.0,
            ),
            (
                "{job=\"api-server\", instance=\"1\", group=\"production\"}",
                2.0,
            ),
        ],
    );
    assert_vector(
        instant(
            &s,
            "avg_over_time(rate(http_requests[1m])[1m:1s])",
            20000 * S,
        ),
        &[
            (
                "{job=\"api-server\", instance=\"0\", group=\"canary\"}",
                8.0,
            ),
            (
                "{job=\"api-server\", instance=\"1\", group=\"canary\"}",
                4.0,
            ),
            (
                "{job=\"api-server\", instance=\"1\", group=\"production\"}",
                3.0,
            ),
            (
                "{job=\"api-server\", instance=\"0\", group=\"production\"}",
                3.0,
            ),
        ],
    );

    let s = load(
        10 * S,
        "metric1 0+1x1000\nmetric2 0+2x1000\nmetric3 0+3x1000",
    );
    let one = |q: &str, t: i64, v: f64| assert_vector(instant(&s, q, t), &[("{}", v)]);
    one("sum_over_time(metric1[30s:10s])", 1000 * S, 394.0);
    // Everything but the last 100 is repeated with a 5s step.
    one("sum_over_time(metric1[30s:5s])", 1000 * S, 688.0);
    // Offsets are aligned with the step.
    one(
        "sum_over_time(metric1[30s:10s] offset 10s)",
        1010 * S,
        394.0,
    );
    for offset in ["9s", "7s", "5s", "3s"] {
        one(
            &format!("sum_over_time(metric1[30s:10s] offset {offset})"),
            1010 * S,
            297.0,
        );
    }
    one(
        "sum_over_time(metric1[30s:10s] offset -1s)",
        1000 * S,
        297.0,
    );
    // Nested subqueries.
    one(
        "rate(sum_over_time(metric1[30s:10s])[50s:10s])",
        1000 * S,
        0.4,
    );
    one(
        "rate(sum_over_time(metric2[30s:10s])[50s:10s])",
        1000 * S,
        0.8,
    );
    one(
        "rate(sum_over_time(metric3[30s:10s])[50s:10s])",
        1000 * S,
        1.2,
    );
    one(
        "rate(sum_over_time((metric1+metric2+metric3)[30s:10s])[30s:10s])",
        1000 * S,
        2.4,
    );
}

#[test]
fn subqueries_of_a_non_constant_rate() {
    // The Fibonacci sequence every 7s, values rounded like a parsed float.
    let mut s = MemStorage::new();
    let (mut a, mut b) = (1u128, 1u128);
    let mut samples = Vec::new();
    for i in 0..180 {
        samples.push((i * 7 * S, a as f64));
        (a, b) = (b, a + b);
    }
    s.add_series(&[("__name__", "metric")], &samples);
    let one = |q: &str, t: i64, v: f64| {
        let got = instant(&s, q, t);
        let crate::Value::Vector(ref vec) = got.clone().unwrap() else {
            panic!()
        };
        assert!(
            (vec[0].v - v).abs() < 1e-8 * v.abs(),
            "{q}: {got:?} want {v}"
        );
    };
    // Extrapolated from [3@21, 144@77].
    one("rate(metric[1m])", 80 * S, 2.517857143);
    // No extrapolation: [2@20, 144@80].
    one("rate(metric[1m:10s])", 80 * S, 2.366666667);
    one("min_over_time(metric[10s])", 20 * S, 2.0);
    one("min_over_time(metric[10s:10s])", 20 * S, 1.0);
    one(
        "min_over_time(rate(metric[5m])[20m:1m])",
        20 * MINUTE,
        0.12119047619047618,
    );
}
