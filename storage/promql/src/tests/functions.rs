use super::harness::*;

fn resets_changes_data() -> crate::MemStorage {
    load(
        5 * MINUTE,
        r#"
        http_requests{path="/foo"} 1 2 3 0 1 0 0 1 2 0
        http_requests{path="/bar"} 1 2 3 4 5 1 2 3 4 5
        http_requests{path="/biz"} 0 0 0 0 0 1 1 1 1 1
        "#,
    )
}

#[test]
fn resets_and_changes() {
    let s = resets_changes_data();
    let at = 50 * MINUTE;
    let cases: &[(&str, [f64; 3])] = &[
        ("resets(http_requests[5m])", [0.0, 0.0, 0.0]),
        ("resets(http_requests[20m])", [1.0, 0.0, 0.0]),
        ("resets(http_requests[30m])", [2.0, 1.0, 0.0]),
        ("resets(http_requests[50m])", [3.0, 1.0, 0.0]),
        ("changes(http_requests[5m])", [0.0, 0.0, 0.0]),
        ("changes(http_requests[20m])", [3.0, 3.0, 0.0]),
        ("changes(http_requests[30m])", [4.0, 5.0, 1.0]),
        ("changes(http_requests[50m])", [8.0, 9.0, 1.0]),
    ];
    for (q, [foo, bar, biz]) in cases {
        assert_vector(
            instant(&s, q, at),
            &[
                ("{path=\"/foo\"}", *foo),
                ("{path=\"/bar\"}", *bar),
                ("{path=\"/biz\"}", *biz),
            ],
        );
    }
    assert_vector(instant(&s, "resets(nonexistent_metric[50m])", at), &[]);
}

fn counters() -> crate::MemStorage {
    load(
        5 * MINUTE,
        r#"
        http_requests{path="/foo"} 0+10x10
        http_requests{path="/bar"} 0+10x5 0+10x5
        "#,
    )
}

#[test]
fn increase_rate_and_irate_extrapolate_like_prometheus() {
    let s = counters();
    assert_vector(
        instant(&s, "increase(http_requests[50m])", 50 * MINUTE),
        &[("{path=\"/foo\"}", 100.0), ("{path=\"/bar\"}", 90.0)],
    );
    // At 51m the window [1m, 51m] holds 5m..50m: 90 (foo) and 80 (bar,
    // with its reset) over 45m, extrapolated 4m back and 1m forward.
    assert_vector(
        instant(&s, "increase(http_requests[50m])", 51 * MINUTE),
        &[
            ("{path=\"/foo\"}", 100.0),
            ("{path=\"/bar\"}", 80.0 * 50.0 / 45.0),
        ],
    );
    assert_vector(
        instant(&s, "rate(http_requests[50m])", 50 * MINUTE),
        &[
            ("{path=\"/foo\"}", 100.0 / 3000.0),
            ("{path=\"/bar\"}", 90.0 / 3000.0),
        ],
    );
    assert_vector(
        instant(&s, "irate(http_requests[50m])", 50 * MINUTE),
        &[
            ("{path=\"/foo\"}", 1.0 / 30.0),
            ("{path=\"/bar\"}", 1.0 / 30.0),
        ],
    );
    // A counter reset: irate takes the new value as the increase.
    assert_vector(
        instant(&s, "irate(http_requests[50m])", 30 * MINUTE),
        &[("{path=\"/foo\"}", 1.0 / 30.0), ("{path=\"/bar\"}", 0.0)],
    );
    assert_vector(
        instant(&s, "idelta(http_requests[50m])", 30 * MINUTE),
        &[("{path=\"/foo\"}", 10.0), ("{path=\"/bar\"}", -50.0)],
    );
    // One sample is not enough.
    assert_vector(instant(&s, "rate(http_requests[1m])", 50 * MINUTE), &[]);
}

#[test]
fn extrapolation_stops_half_an_interval_out_and_at_zero() {
    // Samples at 5m..25m with 10..50: a window [0, 30m] would extrapolate
    // 5m (one interval) on each side; more than 1.1 intervals away it only
    // goes half an interval.
    let s = load(5 * MINUTE, "c _ 10+10x4\ng _ 10+10x4");
    // The counter would reach zero 5m before its first sample, exactly the
    // distance to the window start: 40 over 20m extrapolated to 25m + 2.5m.
    // durationToStart = 5m (< 5.5m threshold), durationToEnd = 5m.
    assert_vector(
        instant(&s, "increase(c[30m])", 30 * MINUTE),
        &[("{}", 40.0 * 30.0 / 20.0)],
    );
    // delta does not clamp at zero; same intervals here.
    assert_vector(
        instant(&s, "delta(g[30m])", 30 * MINUTE),
        &[("{}", 40.0 * 30.0 / 20.0)],
    );
    // Window [-10m, 40m]: 15m before the first sample is beyond the
    // threshold, but the zero point (5m before) is closer: start at 5m;
    // the end is 15m out: half an interval (2.5m).
    assert_vector(
        instant(&s, "increase(c[50m])", 40 * MINUTE),
        &[("{}", 40.0 * 27.5 / 20.0)],
    );
    assert_vector(
        instant(&s, "delta(g[50m])", 40 * MINUTE),
        &[("{}", 40.0 * 25.0 / 20.0)],
    );
}

#[test]
fn deriv_and_predict_linear() {
    let s = load(
        5 * MINUTE,
        r#"
        testcounter_reset_middle 0+10x4 0+10x5
        http_requests{job="app-server", instance="1", group="canary"} 0+80x10
        "#,
    );
    let at = 50 * MINUTE;
    let l = "{group=\"canary\", instance=\"1\", job=\"app-server\"}";
    assert_vector(
        instant(&s, "rate(http_requests[50m])", at),
        &[(l, 0.26666666666666666)],
    );
    assert_vector(
        instant(&s, "deriv(http_requests[50m])", at),
        &[(l, 0.26666666666666666)],
    );
    assert_vector(
        instant(&s, "deriv(testcounter_reset_middle[100m])", at),
        &[("{}", 0.010606060606060607)],
    );
    assert_vector(
        instant(
            &s,
            "predict_linear(testcounter_reset_middle[100m], 3600)",
            at,
        ),
        // Intercept at the evaluation time, as Prometheus 2.x computes it.
        &[("{}", 76.81818181818181)],
    );
    assert_vector(
        instant(&s, "predict_linear(http_requests[50m], 3600) - (http_requests + deriv(http_requests[50m]) * 3600)", at),
        &[(l, 0.0)],
    );
}

#[test]
fn label_replace_follows_prometheus() {
    let s = load(
        5 * MINUTE,
        r#"
        testmetric{src="source-value-10",dst="original-destination-value"} 0
        testmetric{src="source-value-20",dst="original-destination-value"} 1
        "#,
    );
    let q = |q: &str| instant(&s, q, 0);
    assert_vector(
        q(
            r#"label_replace(testmetric, "dst", "destination-value-$1", "src", "source-value-(.*)")"#,
        ),
        &[
            (
                r#"testmetric{src="source-value-10",dst="destination-value-10"}"#,
                0.0,
            ),
            (
                r#"testmetric{src="source-value-20",dst="destination-value-20"}"#,
                1.0,
            ),
        ],
    );
    // Full-string match only.
    assert_vector(
        q(r#"label_replace(testmetric, "dst", "destination-value-$1", "src", "value-(.*)")"#),
        &[
            (
                r#"testmetric{src="source-value-10",dst="original-destination-value"}"#,
                0.0,
            ),
            (
                r#"testmetric{src="source-value-20",dst="original-destination-value"}"#,
                1.0,
            ),
        ],
    );
    assert_vector(
        q(r#"label_replace(testmetric, "dst", "$1-value-$2", "src", "(.*)-value-(.*)")"#),
        &[
            (
                r#"testmetric{src="source-value-10",dst="source-value-10"}"#,
                0.0,
            ),
            (
                r#"testmetric{src="source-value-20",dst="source-value-20"}"#,
                1.0,
            ),
        ],
    );
    // A missing source label matches as "".
    assert_vector(
        q(r#"label_replace(testmetric, "dst", "value-$1", "nonexistent-src", "(.*)")"#),
        &[
            (r#"testmetric{src="source-value-10",dst="value-"}"#, 0.0),
            (r#"testmetric{src="source-value-20",dst="value-"}"#, 1.0),
        ],
    );
    assert_vector(
        q(r#"label_replace(testmetric, "dst", "", "dst", ".*")"#),
        &[
            (r#"testmetric{src="source-value-10"}"#, 0.0),
            (r#"testmetric{src="source-value-20"}"#, 1.0),
        ],
    );
    assert_error(
        q(r#"label_replace(testmetric, "dst", "value-$1", "src", "(.*")"#),
        "invalid regular expression",
    );
    assert_error(
        q(r#"label_replace(testmetric, "invalid-label-name", "", "src", "(.*)")"#),
        "invalid destination label name",
    );
    assert_error(
        q(r#"label_replace(testmetric, "src", "", "", "")"#),
        "same labelset",
    );
}

#[test]
fn label_join_vector_time_scalar() {
    let s = load(
        MINUTE,
        r#"m{a="x",b="y"} 1
        n 1 2"#,
    );
    assert_vector(
        instant(&s, r#"label_join(m, "c", "-", "a", "b", "missing")"#, 0),
        &[(r#"m{a="x",b="y",c="x-y-"}"#, 1.0)],
    );
    assert_vector(instant(&s, "vector(1)", 0), &[("{}", 1.0)]);
    assert_vector(
        instant(&s, "vector(time())", 60 * MINUTE),
        &[("{}", 3600.0)],
    );
    assert_scalar(instant(&s, "scalar(n)", MINUTE), 2.0);
    assert_scalar(instant(&s, "scalar(m or n)", MINUTE), f64::NAN);
    assert_scalar(instant(&s, "time()", 1500), 1.5);
    assert_scalar(instant(&s, "pi()", 0), std::f64::consts::PI);
}

#[test]
fn over_time_functions() {
    let s = load(MINUTE, "m{a=\"1\"} 1 2 3 4 100\nn NaN 1");
    let at = 4 * MINUTE;
    let one = |q: &str, v: f64, labels: &str| assert_vector(instant(&s, q, at), &[(labels, v)]);
    one("avg_over_time(m[4m])", 22.0, "{a=\"1\"}");
    one("sum_over_time(m[4m])", 110.0, "{a=\"1\"}");
    one("count_over_time(m[4m])", 5.0, "{a=\"1\"}");
    one("min_over_time(m[4m])", 1.0, "{a=\"1\"}");
    one("max_over_time(m[4m])", 100.0, "{a=\"1\"}");
    one("last_over_time(m[4m])", 100.0, "m{a=\"1\"}");
    one("present_over_time(m[4m])", 1.0, "{a=\"1\"}");
    // Population variance of 1,2,3,4,100: mean 22, squares sum 7610.
    one("stdvar_over_time(m[4m])", 7610.0 / 5.0, "{a=\"1\"}");
    one(
        "stddev_over_time(m[4m])",
        (7610.0_f64 / 5.0).sqrt(),
        "{a=\"1\"}",
    );
    one("quantile_over_time(0.5, m[4m])", 3.0, "{a=\"1\"}");
    one(
        "quantile_over_time(0.9, m[4m])",
        4.0 + 0.6 * 96.0,
        "{a=\"1\"}",
    );
    one("quantile_over_time(2, m[4m])", f64::INFINITY, "{a=\"1\"}");
    // NaN in max/min is replaced by any number.
    assert_vector(instant(&s, "max_over_time(n[4m])", at), &[("{}", 1.0)]);
    assert_vector(instant(&s, "absent_over_time(m[4m])", at), &[]);
    assert_vector(
        instant(&s, "absent_over_time(nope{job=\"a\",x=~\"y\"}[4m])", at),
        &[("{job=\"a\"}", 1.0)],
    );
}

#[test]
fn holt_winters_smooths() {
    let s = load(MINUTE, "m 1 2 4");
    // s1=1, b=1; i=1: s1 = .5*2 + .5*(1+1) = 2; i=2: b = .5*(2-1)+.5*1 = 1,
    // s1 = .5*4 + .5*(2+1) = 3.5.
    assert_vector(
        instant(&s, "holt_winters(m[2m], 0.5, 0.5)", 2 * MINUTE),
        &[("{}", 3.5)],
    );
    assert_error(
        instant(&s, "holt_winters(m[2m], 1, 0.5)", 0),
        "invalid smoothing factor",
    );
}

#[test]
fn math_functions_drop_the_name() {
    let s = load(MINUTE, "m{a=\"1\"} -1.5\nm{a=\"2\"} 2.5");
    let v = |q: &str, a: f64, b: f64| {
        assert_vector(instant(&s, q, 0), &[("{a=\"1\"}", a), ("{a=\"2\"}", b)])
    };
    v("abs(m)", 1.5, 2.5);
    v("ceil(m)", -1.0, 3.0);
    v("floor(m)", -2.0, 2.0);
    v("round(m)", -1.0, 3.0);
    v("round(m, 2)", -2.0, 2.0);
    v("sgn(m)", -1.0, 1.0);
    v("clamp(m, -1, 2)", -1.0, 2.0);
    v("clamp_min(m, 0)", 0.0, 2.5);
    v("clamp_max(m, 0)", -1.5, 0.0);
    v("exp(m)", (-1.5f64).exp(), 2.5f64.exp());
    v("sqrt(m)", f64::NAN, 2.5f64.sqrt());
    v("ln(m)", f64::NAN, 2.5f64.ln());
    v("log2(m)", f64::NAN, 2.5f64.log2());
    v("log10(m)", f64::NAN, 2.5f64.log10());
    v(
        "deg(m)",
        -270.0 / std::f64::consts::PI,
        450.0 / std::f64::consts::PI,
    );
    v(
        "rad(m)",
        -1.5 * std::f64::consts::PI / 180.0,
        2.5 * std::f64::consts::PI / 180.0,
    );
    v("sin(m)", (-1.5f64).sin(), 2.5f64.sin());
    v("tanh(m)", (-1.5f64).tanh(), 2.5f64.tanh());
    v("acosh(m)", f64::NAN, 2.5f64.acosh());
    assert_vector(instant(&s, "clamp(m, 2, 1)", 0), &[]);
    assert_vector(
        instant(&s, "timestamp(m)", 2 * MINUTE),
        &[("{a=\"1\"}", 0.0), ("{a=\"2\"}", 0.0)],
    );
    assert_vector(
        instant(&s, "timestamp(-m)", 2 * MINUTE),
        &[("{a=\"1\"}", 120.0), ("{a=\"2\"}", 120.0)],
    );
}

#[test]
fn date_functions() {
    // 2024-02-29 13:45:00 UTC, a Thursday.
    let s = load(MINUTE, "t 1709214300");
    let q = |f: &str| instant(&s, &format!("{f}(t)"), 0);
    assert_vector(q("year"), &[("{}", 2024.0)]);
    assert_vector(q("month"), &[("{}", 2.0)]);
    assert_vector(q("day_of_month"), &[("{}", 29.0)]);
    assert_vector(q("day_of_week"), &[("{}", 4.0)]);
    assert_vector(q("day_of_year"), &[("{}", 60.0)]);
    assert_vector(q("days_in_month"), &[("{}", 29.0)]);
    assert_vector(q("hour"), &[("{}", 13.0)]);
    assert_vector(q("minute"), &[("{}", 45.0)]);
    // Without an argument: the evaluation time.
    assert_vector(instant(&s, "year()", 0), &[("{}", 1970.0)]);
    assert_vector(instant(&s, "hour()", 3 * 3600 * 1000 + 999), &[("{}", 3.0)]);
}

#[test]
fn absent_takes_labels_from_equality_matchers() {
    let s = load(MINUTE, "m{job=\"a\"} 1");
    assert_vector(instant(&s, "absent(m)", 0), &[]);
    assert_vector(instant(&s, "absent(nope)", 0), &[("{}", 1.0)]);
    assert_vector(
        instant(
            &s,
            "absent(nope{job=\"x\",instance=~\"y\",a=\"1\",a=\"2\"})",
            0,
        ),
        &[("{job=\"x\"}", 1.0)],
    );
    assert_vector(instant(&s, "absent(sum(nope))", 0), &[("{}", 1.0)]);
}

#[test]
fn histogram_quantile_over_classic_buckets() {
    let s = load(
        MINUTE,
        r#"
        req_bucket{job="a",le="0.1"} 0+1x10
        req_bucket{job="a",le="0.2"} 0+2x10
        req_bucket{job="a",le="+Inf"} 0+2x10
        req_bucket{job="b",le="1"} 5
        req_bucket{job="b",le="+Inf"} 10
        "#,
    );
    // job a at 10m: 10 below 0.1, 20 below 0.2: the median is 0.1.
    assert_vector(
        instant(&s, "histogram_quantile(0.5, req_bucket)", 0),
        &[("{job=\"a\"}", f64::NAN), ("{job=\"b\"}", 1.0)],
    );
    assert_vector(
        instant(
            &s,
            "histogram_quantile(0.75, rate(req_bucket{job=\"a\"}[5m]))",
            10 * MINUTE,
        ),
        &[("{job=\"a\"}", 0.15)],
    );
    assert_vector(
        instant(
            &s,
            "histogram_quantile(0.9, sum by (le) (req_bucket{job=\"b\"}))",
            0,
        ),
        &[("{}", 1.0)],
    );
}

#[test]
fn name_collisions_are_errors() {
    let s = load(MINUTE, "a{x=\"1\"} 1\nb{x=\"1\"} 2");
    assert_error(
        instant(&s, "abs({x=\"1\"})", 0),
        "vector cannot contain metrics with the same labelset",
    );
    assert_error(instant(&s, "-{x=\"1\"}", 0), "same labelset");
    assert_error(instant(&s, "{x=\"1\"} * 2", 0), "same labelset");
    // last_over_time keeps names, so no collision.
    assert_vector(
        instant(&s, "last_over_time({x=\"1\"}[1m])", 0),
        &[("a{x=\"1\"}", 1.0), ("b{x=\"1\"}", 2.0)],
    );
}
