//! Cases of Prometheus 2.x's promql/testdata/aggregators.test.

use super::harness::*;

const AT: i64 = 50 * MINUTE;

#[test]
fn sums_with_by_and_without() {
    let s = load(
        5 * MINUTE,
        r#"
        http_requests{job="api-server", instance="0", group="production"} 0+10x10
        http_requests{job="api-server", instance="1", group="production"} 0+20x10
        http_requests{job="api-server", instance="0", group="canary"} 0+30x10
        http_requests{job="api-server", instance="1", group="canary"} 0+40x10
        http_requests{job="app-server", instance="0", group="production"} 0+50x10
        http_requests{job="app-server", instance="1", group="production"} 0+60x10
        http_requests{job="app-server", instance="0", group="canary"} 0+70x10
        http_requests{job="app-server", instance="1", group="canary"} 0+80x10
        foo{job="api-server", instance="0", region="europe"} 0+90x10
        foo{job="api-server"} 0+100x10
        "#,
    );
    let q = |q: &str| instant(&s, q, AT);
    let by_group = [
        ("{group=\"canary\"}", 700.0),
        ("{group=\"production\"}", 300.0),
    ];
    assert_vector(
        q("SUM BY (group) (http_requests{job=\"api-server\"})"),
        &by_group,
    );
    assert_vector(
        q("SUM BY (group) (((http_requests{job=\"api-server\"})))"),
        &by_group,
    );
    assert_vector(
        q("sum(http_requests{job=\"api-server\"}) by (group)"),
        &by_group,
    );
    assert_vector(
        q("avg by (group) (http_requests{job=\"api-server\"})"),
        &[
            ("{group=\"canary\"}", 350.0),
            ("{group=\"production\"}", 150.0),
        ],
    );
    assert_vector(
        q("sum without (instance) (http_requests{job=\"api-server\"})"),
        &[
            ("{group=\"canary\",job=\"api-server\"}", 700.0),
            ("{group=\"production\",job=\"api-server\"}", 300.0),
        ],
    );
    assert_vector(
        q("sum by () (http_requests{job=\"api-server\"})"),
        &[("{}", 1000.0)],
    );
    assert_vector(
        q("sum without () (http_requests{job=\"api-server\",group=\"production\"})"),
        &[
            (
                "{group=\"production\",job=\"api-server\",instance=\"0\"}",
                100.0,
            ),
            (
                "{group=\"production\",job=\"api-server\",instance=\"1\"}",
                200.0,
            ),
        ],
    );
    assert_vector(
        q("sum without (instance) (http_requests{job=\"api-server\"} or foo)"),
        &[
            ("{group=\"canary\",job=\"api-server\"}", 700.0),
            ("{group=\"production\",job=\"api-server\"}", 300.0),
            ("{region=\"europe\",job=\"api-server\"}", 900.0),
            ("{job=\"api-server\"}", 1000.0),
        ],
    );
    assert_vector(
        q("sum(http_requests) by (job) + min(http_requests) by (job) + max(http_requests) by (job) + avg(http_requests) by (job)"),
        &[("{job=\"app-server\"}", 4550.0), ("{job=\"api-server\"}", 1750.0)],
    );
    assert_vector(
        q("sum(sum by (group) (http_requests{job=\"api-server\"})) by (job)"),
        &[("{}", 1000.0)],
    );
    assert_vector(q("stddev(http_requests)"), &[("{}", 229.12878474779)]);
    assert_vector(
        q("stddev by (instance)(http_requests)"),
        &[
            ("{instance=\"0\"}", 223.60679774998),
            ("{instance=\"1\"}", 223.60679774998),
        ],
    );
    assert_vector(q("stdvar(http_requests)"), &[("{}", 52500.0)]);
}

#[test]
fn precision_and_grouping_keys() {
    let s = load(
        5 * MINUTE,
        r#"
        http_requests{job="api-server", instance="0", group="production"} 0+1.33x10
        http_requests{job="api-server", instance="1", group="production"} 0+1.33x10
        http_requests{job="api-server", instance="0", group="canary"} 0+1.33x10
        label_grouping_test{a="aa", b="bb"} 0+10x10
        label_grouping_test{a="a", b="abb"} 0+20x10
        "#,
    );
    assert_vector(instant(&s, "stddev(http_requests)", AT), &[("{}", 0.0)]);
    assert_vector(instant(&s, "stdvar(http_requests)", AT), &[("{}", 0.0)]);
    assert_vector(
        instant(&s, "sum(label_grouping_test) by (a, b)", AT),
        &[
            ("{a=\"a\", b=\"abb\"}", 200.0),
            ("{a=\"aa\", b=\"bb\"}", 100.0),
        ],
    );
}

#[test]
fn min_max_skip_nan() {
    let s = load(
        5 * MINUTE,
        r#"
        http_requests{job="api-server", instance="0", group="production"} 1
        http_requests{job="api-server", instance="1", group="production"} 2
        http_requests{job="api-server", instance="0", group="canary"} NaN
        http_requests{job="api-server", instance="1", group="canary"} 3
        http_requests{job="api-server", instance="2", group="canary"} 4
        "#,
    );
    assert_vector(instant(&s, "max(http_requests)", 0), &[("{}", 4.0)]);
    assert_vector(instant(&s, "min(http_requests)", 0), &[("{}", 1.0)]);
    assert_vector(
        instant(&s, "max by (group) (http_requests)", 0),
        &[("{group=\"production\"}", 2.0), ("{group=\"canary\"}", 4.0)],
    );
    assert_vector(
        instant(&s, "min by (group) (http_requests)", 0),
        &[("{group=\"production\"}", 1.0), ("{group=\"canary\"}", 3.0)],
    );
}

#[test]
fn topk_and_bottomk_order_and_nan() {
    let s = load(
        5 * MINUTE,
        r#"
        http_requests{job="api-server", instance="0", group="production"} 0+10x10
        http_requests{job="api-server", instance="1", group="production"} 0+20x10
        http_requests{job="api-server", instance="2", group="production"} NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN
        http_requests{job="api-server", instance="0", group="canary"} 0+30x10
        http_requests{job="api-server", instance="1", group="canary"} 0+40x10
        http_requests{job="app-server", instance="0", group="production"} 0+50x10
        http_requests{job="app-server", instance="1", group="production"} 0+60x10
        http_requests{job="app-server", instance="0", group="canary"} 0+70x10
        http_requests{job="app-server", instance="1", group="canary"} 0+80x10
        foo 3+0x10
        "#,
    );
    let top3 = [
        "http_requests{group=\"canary\", instance=\"1\", job=\"app-server\"}",
        "http_requests{group=\"canary\", instance=\"0\", job=\"app-server\"}",
        "http_requests{group=\"production\", instance=\"1\", job=\"app-server\"}",
    ];
    for q in [
        "topk(3, http_requests)",
        "topk((3), (http_requests))",
        "topk(scalar(foo), http_requests)",
    ] {
        assert_order(instant(&s, q, AT), &top3);
    }
    assert_order(
        instant(&s, "bottomk(3, http_requests)", AT),
        &[
            "http_requests{group=\"production\", instance=\"0\", job=\"api-server\"}",
            "http_requests{group=\"production\", instance=\"1\", job=\"api-server\"}",
            "http_requests{group=\"canary\", instance=\"0\", job=\"api-server\"}",
        ],
    );
    let with_nan = "{job=\"api-server\",group=\"production\"}";
    assert_order(
        instant(&s, &format!("topk(3, http_requests{with_nan})"), AT),
        &[
            "http_requests{job=\"api-server\", instance=\"1\", group=\"production\"}",
            "http_requests{job=\"api-server\", instance=\"0\", group=\"production\"}",
            "http_requests{job=\"api-server\", instance=\"2\", group=\"production\"}",
        ],
    );
    assert_order(
        instant(&s, &format!("bottomk(3, http_requests{with_nan})"), AT),
        &[
            "http_requests{job=\"api-server\", instance=\"0\", group=\"production\"}",
            "http_requests{job=\"api-server\", instance=\"1\", group=\"production\"}",
            "http_requests{job=\"api-server\", instance=\"2\", group=\"production\"}",
        ],
    );
    assert_order(
        instant(
            &s,
            "bottomk(9999999999, http_requests{job=\"app-server\",group=\"canary\"})",
            AT,
        ),
        &[
            "http_requests{group=\"canary\", instance=\"0\", job=\"app-server\"}",
            "http_requests{group=\"canary\", instance=\"1\", job=\"app-server\"}",
        ],
    );
    assert_vector(
        instant(&s, "bottomk by (group) (2, http_requests)", AT),
        &[
            (
                "http_requests{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                300.0,
            ),
            (
                "http_requests{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                400.0,
            ),
            (
                "http_requests{group=\"production\", instance=\"0\", job=\"api-server\"}",
                100.0,
            ),
            (
                "http_requests{group=\"production\", instance=\"1\", job=\"api-server\"}",
                200.0,
            ),
        ],
    );
}

#[test]
fn count_values_quantile_group() {
    let s = load(
        5 * MINUTE,
        r#"
        version{job="api-server", instance="0", group="production"} 6
        version{job="api-server", instance="1", group="production"} 6
        version{job="api-server", instance="2", group="production"} 6
        version{job="api-server", instance="0", group="canary"} 8
        version{job="api-server", instance="1", group="canary"} 8
        version{job="app-server", instance="0", group="production"} 6
        version{job="app-server", instance="1", group="production"} 6
        version{job="app-server", instance="0", group="canary"} 7
        version{job="app-server", instance="1", group="canary"} 7
        "#,
    );
    let at = 5 * MINUTE;
    let versions = [
        ("{version=\"6\"}", 5.0),
        ("{version=\"7\"}", 2.0),
        ("{version=\"8\"}", 2.0),
    ];
    assert_vector(
        instant(&s, "count_values(\"version\", version)", at),
        &versions,
    );
    assert_vector(
        instant(&s, "count_values(((\"version\")), version)", at),
        &versions,
    );
    assert_vector(
        instant(
            &s,
            "count_values without (instance)(\"version\", version)",
            at,
        ),
        &[
            (
                "{job=\"api-server\", group=\"production\", version=\"6\"}",
                3.0,
            ),
            ("{job=\"api-server\", group=\"canary\", version=\"8\"}", 2.0),
            (
                "{job=\"app-server\", group=\"production\", version=\"6\"}",
                2.0,
            ),
            ("{job=\"app-server\", group=\"canary\", version=\"7\"}", 2.0),
        ],
    );
    let overwritten = [
        ("{job=\"6\", group=\"production\"}", 5.0),
        ("{job=\"8\", group=\"canary\"}", 2.0),
        ("{job=\"7\", group=\"canary\"}", 2.0),
    ];
    assert_vector(
        instant(&s, "count_values without (instance)(\"job\", version)", at),
        &overwritten,
    );
    assert_vector(
        instant(&s, "count_values by (job, group)(\"job\", version)", at),
        &overwritten,
    );

    let s = load(
        10 * 1000,
        r#"
        data{test="two samples",point="a"} 0
        data{test="two samples",point="b"} 1
        data{test="three samples",point="a"} 0
        data{test="three samples",point="b"} 1
        data{test="three samples",point="c"} 2
        data{test="uneven samples",point="a"} 0
        data{test="uneven samples",point="b"} 1
        data{test="uneven samples",point="c"} 4
        foo .8
        "#,
    );
    let quantiles = [
        ("{test=\"two samples\"}", 0.8),
        ("{test=\"three samples\"}", 1.6),
        ("{test=\"uneven samples\"}", 2.8),
    ];
    for q in [
        "quantile without(point)(0.8, data)",
        "quantile without(point)(scalar(foo), data)",
        "quantile without(point)((scalar(foo)), data)",
    ] {
        assert_vector(instant(&s, q, MINUTE), &quantiles);
    }
    assert_vector(
        instant(&s, "group without(point)(data)", MINUTE),
        &[
            ("{test=\"two samples\"}", 1.0),
            ("{test=\"three samples\"}", 1.0),
            ("{test=\"uneven samples\"}", 1.0),
        ],
    );
    assert_vector(instant(&s, "group(foo)", MINUTE), &[("{}", 1.0)]);
}

#[test]
fn avg_with_infinities_and_huge_values() {
    let s = load(
        10 * 1000,
        r#"
        data{test="ten",point="a"} 8
        data{test="ten",point="b"} 10
        data{test="ten",point="c"} 12
        data{test="inf",point="a"} 0
        data{test="inf",point="b"} Inf
        data{test="inf",point="d"} Inf
        data{test="inf",point="c"} 0
        data{test="-inf",point="a"} -Inf
        data{test="-inf",point="b"} -Inf
        data{test="-inf",point="c"} 0
        data{test="inf2",point="a"} Inf
        data{test="inf2",point="b"} 0
        data{test="inf2",point="c"} Inf
        data{test="-inf2",point="a"} -Inf
        data{test="-inf2",point="b"} 0
        data{test="-inf2",point="c"} -Inf
        data{test="inf3",point="b"} Inf
        data{test="inf3",point="d"} Inf
        data{test="inf3",point="c"} Inf
        data{test="inf3",point="d"} -Inf
        data{test="-inf3",point="b"} -Inf
        data{test="-inf3",point="d"} -Inf
        data{test="-inf3",point="c"} -Inf
        data{test="-inf3",point="c"} Inf
        data{test="nan",point="a"} -Inf
        data{test="nan",point="b"} 0
        data{test="nan",point="c"} Inf
        data{test="big",point="a"} 9.988465674311579e+307
        data{test="big",point="b"} 9.988465674311579e+307
        data{test="big",point="c"} 9.988465674311579e+307
        data{test="big",point="d"} 9.988465674311579e+307
        data{test="-big",point="a"} -9.988465674311579e+307
        data{test="-big",point="b"} -9.988465674311579e+307
        data{test="-big",point="c"} -9.988465674311579e+307
        data{test="-big",point="d"} -9.988465674311579e+307
        data{test="bigzero",point="a"} -9.988465674311579e+307
        data{test="bigzero",point="b"} -9.988465674311579e+307
        data{test="bigzero",point="c"} 9.988465674311579e+307
        data{test="bigzero",point="d"} 9.988465674311579e+307
        "#,
    );
    // The value as written in the test file (more digits than an f64 keeps).
    let big: f64 = "9.988465674311579e+307".parse().unwrap();
    let cases = [
        ("ten", 10.0),
        ("inf", f64::INFINITY),
        ("inf2", f64::INFINITY),
        ("inf3", f64::NAN),
        ("-inf", f64::NEG_INFINITY),
        ("-inf2", f64::NEG_INFINITY),
        ("-inf3", f64::NAN),
        ("nan", f64::NAN),
        ("big", big),
        ("-big", -big),
        ("bigzero", 0.0),
    ];
    for (test, want) in cases {
        assert_vector(
            instant(&s, &format!("avg(data{{test=\"{test}\"}})"), MINUTE),
            &[("{}", want)],
        );
    }
}
