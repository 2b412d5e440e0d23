//! Cases of Prometheus' promql/testdata/histograms.test (classic buckets).

use super::harness::*;

fn data() -> crate::MemStorage {
    load(
        5 * MINUTE,
        r#"
        testhistogram_bucket{le="0.1", start="positive"} 0+5x10
        testhistogram_bucket{le=".2", start="positive"} 0+7x10
        testhistogram_bucket{le="1e0", start="positive"} 0+11x10
        testhistogram_bucket{le="+Inf", start="positive"} 0+12x10
        testhistogram_bucket{le="-.2", start="negative"} 0+1x10
        testhistogram_bucket{le="-0.1", start="negative"} 0+2x10
        testhistogram_bucket{le="0.3", start="negative"} 0+2x10
        testhistogram_bucket{le="+Inf", start="negative"} 0+3x10
        request_duration_seconds_bucket{job="job1", instance="ins1", le="0.1"} 0+1x10
        request_duration_seconds_bucket{job="job1", instance="ins1", le="0.2"} 0+3x10
        request_duration_seconds_bucket{job="job1", instance="ins1", le="+Inf"} 0+4x10
        request_duration_seconds_bucket{job="job1", instance="ins2", le="0.1"} 0+2x10
        request_duration_seconds_bucket{job="job1", instance="ins2", le="0.2"} 0+5x10
        request_duration_seconds_bucket{job="job1", instance="ins2", le="+Inf"} 0+6x10
        request_duration_seconds_bucket{job="job2", instance="ins1", le="0.1"} 0+3x10
        request_duration_seconds_bucket{job="job2", instance="ins1", le="0.2"} 0+4x10
        request_duration_seconds_bucket{job="job2", instance="ins1", le="+Inf"} 0+6x10
        request_duration_seconds_bucket{job="job2", instance="ins2", le="0.1"} 0+4x10
        request_duration_seconds_bucket{job="job2", instance="ins2", le="0.2"} 0+7x10
        request_duration_seconds_bucket{job="job2", instance="ins2", le="+Inf"} 0+9x10
        "#,
    )
}

const AT: i64 = 50 * MINUTE;
const POS: &str = "{start=\"positive\"}";
const NEG: &str = "{start=\"negative\"}";

#[test]
fn quantiles_of_one_histogram() {
    let s = data();
    let two = |q: &str, p: f64, n: f64| assert_vector(instant(&s, q, AT), &[(POS, p), (NEG, n)]);
    two(
        "histogram_quantile(-0.1, testhistogram_bucket)",
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    two(
        "histogram_quantile(1.01, testhistogram_bucket)",
        f64::INFINITY,
        f64::INFINITY,
    );
    assert_vector(
        instant(
            &s,
            "histogram_quantile(0, testhistogram_bucket{start=\"positive\"})",
            AT,
        ),
        &[(POS, 0.0)],
    );
    assert_vector(
        instant(
            &s,
            "histogram_quantile(0, testhistogram_bucket{start=\"negative\"})",
            AT,
        ),
        &[(NEG, -0.2)],
    );
    two("histogram_quantile(1, testhistogram_bucket)", 1.0, 0.3);
    for inner in ["testhistogram_bucket", "rate(testhistogram_bucket[5m])"] {
        two(&format!("histogram_quantile(0.2, {inner})"), 0.048, -0.2);
        two(&format!("histogram_quantile(0.5, {inner})"), 0.15, -0.15);
        two(&format!("histogram_quantile(0.8, {inner})"), 0.72, 0.3);
    }
}

#[test]
fn quantiles_of_aggregated_histograms() {
    let s = data();
    let q = |q: &str| instant(&s, q, AT);
    let rate = "rate(request_duration_seconds_bucket[5m])";
    assert_vector(
        q(&format!("histogram_quantile(0.3, sum({rate}) by (le))")),
        &[("{}", 0.075)],
    );
    assert_vector(
        q(&format!("histogram_quantile(0.5, sum({rate}) by (le))")),
        &[("{}", 0.1277777777777778)],
    );
    assert_vector(
        q(&format!("histogram_quantile(0.3, avg({rate}) by (le))")),
        &[("{}", 0.075)],
    );
    assert_vector(
        q(&format!("histogram_quantile(0.5, avg({rate}) by (le))")),
        &[("{}", 0.12777777777777778)],
    );
    assert_vector(
        q(&format!(
            "histogram_quantile(0.3, sum({rate}) by (le, instance))"
        )),
        &[
            ("{instance=\"ins1\"}", 0.075),
            ("{instance=\"ins2\"}", 0.075),
        ],
    );
    assert_vector(
        q(&format!(
            "histogram_quantile(0.5, sum({rate}) by (le, instance))"
        )),
        &[
            ("{instance=\"ins1\"}", 0.13333333333333333),
            ("{instance=\"ins2\"}", 0.125),
        ],
    );
    assert_vector(
        q(&format!(
            "histogram_quantile(0.3, sum({rate}) by (le, job))"
        )),
        &[
            ("{job=\"job1\"}", 0.1),
            ("{job=\"job2\"}", 0.0642857142857143),
        ],
    );
    assert_vector(
        q(&format!(
            "histogram_quantile(0.5, sum({rate}) by (le, job))"
        )),
        &[("{job=\"job1\"}", 0.14), ("{job=\"job2\"}", 0.1125)],
    );
    for inner in [
        format!("sum({rate}) by (le, job, instance)"),
        rate.to_string(),
    ] {
        assert_vector(
            q(&format!("histogram_quantile(0.3, {inner})")),
            &[
                ("{instance=\"ins1\", job=\"job1\"}", 0.11),
                ("{instance=\"ins2\", job=\"job1\"}", 0.09),
                ("{instance=\"ins1\", job=\"job2\"}", 0.06),
                ("{instance=\"ins2\", job=\"job2\"}", 0.0675),
            ],
        );
        assert_vector(
            q(&format!("histogram_quantile(0.5, {inner})")),
            &[
                ("{instance=\"ins1\", job=\"job1\"}", 0.15),
                ("{instance=\"ins2\", job=\"job1\"}", 0.13333333333333333),
                ("{instance=\"ins1\", job=\"job2\"}", 0.1),
                ("{instance=\"ins2\", job=\"job2\"}", 0.11666666666666667),
            ],
        );
    }
}
