//! Cases of Prometheus' promql/testdata/operators.test whose semantics
//! are the same in 2.x (the stored copy predates some 2.x changes, e.g.
//! `1000 < x` keeping the vector's value, so those are left out).

use super::harness::*;

fn data() -> crate::MemStorage {
    load(
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
        vector_matching_a{l="x"} 0+1x100
        vector_matching_a{l="y"} 0+2x50
        vector_matching_b{l="x"} 0+4x25
        "#,
    )
}

const AT: i64 = 50 * MINUTE;
const API: &str = "{job=\"api-server\"}";
const APP: &str = "{job=\"app-server\"}";

#[test]
fn arithmetic_between_aggregations() {
    let s = data();
    let two =
        |q: &str, api: f64, app: f64| assert_vector(instant(&s, q, AT), &[(API, api), (APP, app)]);
    two(
        "SUM(http_requests) BY (job) - COUNT(http_requests) BY (job)",
        996.0,
        2596.0,
    );
    two("2 - SUM(http_requests) BY (job)", -998.0, -2598.0);
    two("- - - SUM(http_requests) BY (job)", -1000.0, -2600.0);
    two(
        "1000 / SUM(http_requests) BY (job)",
        1.0,
        0.38461538461538464,
    );
    two("SUM(http_requests) BY (job) % 3", 1.0, 2.0);
    two("SUM(http_requests) BY (job) % 0.3", 0.1, 0.2);
    two("SUM(http_requests) BY (job) ^ 2", 1_000_000.0, 6_760_000.0);
    two("SUM(http_requests) BY (job) % 3 ^ 2", 1.0, 8.0);
    two("SUM(http_requests) BY (job) % 2 ^ (3 ^ 2)", 488.0, 40.0);
    two("SUM(http_requests) BY (job) % 2 ^ 3 ^ 2", 488.0, 40.0);
    two(
        "SUM(http_requests) BY (job) % 2 ^ 3 ^ 2 ^ 2",
        1000.0,
        2600.0,
    );
    two(
        "COUNT(http_requests) BY (job) ^ COUNT(http_requests) BY (job)",
        256.0,
        256.0,
    );
    two(
        "SUM(http_requests) BY (job) / 0",
        f64::INFINITY,
        f64::INFINITY,
    );
    two(
        "SUM(http_requests) BY (job) + SUM(http_requests) BY (job)",
        2000.0,
        5200.0,
    );
    two("SUM(http_requests) BY (job) == bool 1000", 1.0, 0.0);
    two(
        "SUM(http_requests) BY (job) == bool SUM(http_requests) BY (job)",
        1.0,
        1.0,
    );
    two(
        "SUM(http_requests) BY (job) != bool SUM(http_requests) BY (job)",
        0.0,
        0.0,
    );
    assert_scalar(instant(&s, "- - - 1", AT), -1.0);
    assert_scalar(instant(&s, "0 == bool 1", AT), 0.0);
    assert_vector(
        instant(&s, "SUM(http_requests) BY (job) > 1000", AT),
        &[(APP, 2600.0)],
    );
    assert_vector(
        instant(&s, "1000 < SUM(http_requests) BY (job)", AT),
        &[(APP, 2600.0)],
    );
    assert_vector(
        instant(&s, "SUM(http_requests) BY (job) <= 1000", AT),
        &[(API, 1000.0)],
    );
    assert_vector(
        instant(
            &s,
            "+http_requests{job=\"api-server\",instance=\"0\",group=\"production\"}",
            AT,
        ),
        &[(
            "http_requests{job=\"api-server\",instance=\"0\",group=\"production\"}",
            100.0,
        )],
    );
    assert_vector(
        instant(
            &s,
            "http_requests{job=\"api-server\", group=\"canary\"} + rate(http_requests{job=\"api-server\"}[5m]) * 5 * 60",
            AT,
        ),
        &[
            ("{group=\"canary\", instance=\"0\", job=\"api-server\"}", 330.0),
            ("{group=\"canary\", instance=\"1\", job=\"api-server\"}", 440.0),
        ],
    );
}

#[test]
fn set_operators() {
    let s = data();
    let canary_plus_one = [
        (
            "{group=\"canary\", instance=\"0\", job=\"api-server\"}",
            301.0,
        ),
        (
            "{group=\"canary\", instance=\"0\", job=\"app-server\"}",
            701.0,
        ),
    ];
    for q in [
        "(http_requests{group=\"canary\"} + 1) and http_requests{instance=\"0\"}",
        "(http_requests{group=\"canary\"} + 1) and on(instance, job) http_requests{instance=\"0\", group=\"production\"}",
        "(http_requests{group=\"canary\"} + 1) and on(instance) http_requests{instance=\"0\", group=\"production\"}",
        "(http_requests{group=\"canary\"} + 1) and ignoring(group) http_requests{instance=\"0\", group=\"production\"}",
        "(http_requests{group=\"canary\"} + 1) and ignoring(group, job) http_requests{instance=\"0\", group=\"production\"}",
    ] {
        assert_vector(instant(&s, q, AT), &canary_plus_one);
    }
    // On overlap the right side's samples are dropped.
    assert_vector(
        instant(
            &s,
            "(http_requests{group=\"canary\"} + 1) or http_requests{instance=\"1\"}",
            AT,
        ),
        &[
            (
                "{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                301.0,
            ),
            (
                "{group=\"canary\", instance=\"0\", job=\"app-server\"}",
                701.0,
            ),
            (
                "{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                401.0,
            ),
            (
                "{group=\"canary\", instance=\"1\", job=\"app-server\"}",
                801.0,
            ),
            (
                "http_requests{group=\"production\", instance=\"1\", job=\"api-server\"}",
                200.0,
            ),
            (
                "http_requests{group=\"production\", instance=\"1\", job=\"app-server\"}",
                600.0,
            ),
        ],
    );
    for q in [
        "(http_requests{group=\"canary\"} + 1) or on(instance) (http_requests or cpu_count or vector_matching_a)",
        "(http_requests{group=\"canary\"} + 1) or ignoring(l, group, job) (http_requests or cpu_count or vector_matching_a)",
    ] {
        assert_vector(
            instant(&s, q, AT),
            &[
                ("{group=\"canary\", instance=\"0\", job=\"api-server\"}", 301.0),
                ("{group=\"canary\", instance=\"0\", job=\"app-server\"}", 701.0),
                ("{group=\"canary\", instance=\"1\", job=\"api-server\"}", 401.0),
                ("{group=\"canary\", instance=\"1\", job=\"app-server\"}", 801.0),
                ("vector_matching_a{l=\"x\"}", 10.0),
                ("vector_matching_a{l=\"y\"}", 20.0),
            ],
        );
    }
    let canary_one = [
        (
            "http_requests{group=\"canary\", instance=\"1\", job=\"api-server\"}",
            400.0,
        ),
        (
            "http_requests{group=\"canary\", instance=\"1\", job=\"app-server\"}",
            800.0,
        ),
    ];
    assert_vector(
        instant(
            &s,
            "http_requests{group=\"canary\"} unless http_requests{instance=\"0\"}",
            AT,
        ),
        &canary_one,
    );
    assert_vector(
        instant(
            &s,
            "http_requests{group=\"canary\"} unless on(job) http_requests{instance=\"0\"}",
            AT,
        ),
        &[],
    );
    assert_vector(
        instant(&s, "http_requests{group=\"canary\"} unless on(job, instance) http_requests{instance=\"0\"}", AT),
        &canary_one,
    );
    assert_vector(
        instant(&s, "http_requests{group=\"canary\"} unless ignoring(group, instance) http_requests{instance=\"0\"}", AT),
        &[],
    );
    assert_vector(
        instant(
            &s,
            "http_requests{group=\"canary\"} unless ignoring(group) http_requests{instance=\"0\"}",
            AT,
        ),
        &canary_one,
    );
    let Ok(crate::Value::Vector(all)) = instant(&s, "http_requests AND ON (dummy) vector(1)", AT)
    else {
        panic!()
    };
    assert_eq!(all.len(), 8);
    let Ok(crate::Value::Vector(all)) = instant(
        &s,
        "http_requests AND IGNORING (group, instance, job) vector(1)",
        AT,
    ) else {
        panic!()
    };
    assert_eq!(all.len(), 8);
}

#[test]
fn one_to_one_division() {
    let s = data();
    for q in [
        "http_requests{group=\"canary\"} / on(instance,job) http_requests{group=\"production\"}",
        "http_requests{group=\"canary\"} / ignoring(group) http_requests{group=\"production\"}",
    ] {
        assert_vector(
            instant(&s, q, AT),
            &[
                ("{instance=\"0\", job=\"api-server\"}", 3.0),
                ("{instance=\"0\", job=\"app-server\"}", 1.4),
                ("{instance=\"1\", job=\"api-server\"}", 2.0),
                ("{instance=\"1\", job=\"app-server\"}", 1.3333333333333333),
            ],
        );
    }
}

fn nodes() -> crate::MemStorage {
    load(
        5 * MINUTE,
        r#"
        node_var{instance="abc",job="node"} 2
        node_role{instance="abc",job="node",role="prometheus"} 1
        node_cpu{instance="abc",job="node",mode="idle"} 3
        node_cpu{instance="abc",job="node",mode="user"} 1
        node_cpu{instance="def",job="node",mode="idle"} 8
        node_cpu{instance="def",job="node",mode="user"} 2
        random{foo="bar"} 1
        threshold{instance="abc",job="node",target="a@b.com"} 0
        "#,
    )
}

#[test]
fn group_left_and_right_copy_labels() {
    let s = nodes();
    let at = 5 * MINUTE;
    for q in [
        "node_role * on (instance) group_right (role) node_var",
        "node_var * on (instance) group_left (role) node_role",
        "node_var * ignoring (role) group_left (role) node_role",
        "node_role * ignoring (role) group_right (role) node_var",
    ] {
        assert_vector(
            instant(&s, q, at),
            &[("{instance=\"abc\",job=\"node\",role=\"prometheus\"}", 2.0)],
        );
    }
    for q in [
        "node_cpu * ignoring (role, mode) group_left (role) node_role",
        "node_cpu * on (instance) group_left (role) node_role",
    ] {
        assert_vector(
            instant(&s, q, at),
            &[
                (
                    "{instance=\"abc\",job=\"node\",mode=\"idle\",role=\"prometheus\"}",
                    3.0,
                ),
                (
                    "{instance=\"abc\",job=\"node\",mode=\"user\",role=\"prometheus\"}",
                    1.0,
                ),
            ],
        );
    }
    let ratios = [
        ("{instance=\"abc\",job=\"node\",mode=\"idle\"}", 0.75),
        ("{instance=\"abc\",job=\"node\",mode=\"user\"}", 0.25),
        ("{instance=\"def\",job=\"node\",mode=\"idle\"}", 0.80),
        ("{instance=\"def\",job=\"node\",mode=\"user\"}", 0.20),
    ];
    for q in [
        "node_cpu / on (instance) group_left sum by (instance,job)(node_cpu)",
        "node_cpu / ignoring (mode) group_left sum without (mode)(node_cpu)",
        "node_cpu / ignoring (mode) group_left(dummy) sum without (mode)(node_cpu)",
    ] {
        assert_vector(instant(&s, q, at), &ratios);
    }
    let by_mode = [
        ("{job=\"node\",mode=\"idle\"}", 0.7857142857142857),
        ("{job=\"node\",mode=\"user\"}", 0.21428571428571427),
    ];
    assert_vector(
        instant(
            &s,
            "sum by (mode, job)(node_cpu) / on (job) group_left sum by (job)(node_cpu)",
            at,
        ),
        &by_mode,
    );
    assert_vector(
        instant(&s, "sum without (instance)(node_cpu) / ignoring (mode) group_left sum without (instance, mode)(node_cpu)", at),
        &by_mode,
    );
    assert_vector(
        instant(&s, "node_cpu + on(dummy) group_left(foo) random*0", at),
        &[
            (
                "{instance=\"abc\",job=\"node\",mode=\"idle\",foo=\"bar\"}",
                3.0,
            ),
            (
                "{instance=\"abc\",job=\"node\",mode=\"user\",foo=\"bar\"}",
                1.0,
            ),
            (
                "{instance=\"def\",job=\"node\",mode=\"idle\",foo=\"bar\"}",
                8.0,
            ),
            (
                "{instance=\"def\",job=\"node\",mode=\"user\",foo=\"bar\"}",
                2.0,
            ),
        ],
    );
    assert_vector(
        instant(
            &s,
            "node_cpu > on(job, instance) group_left(target) threshold",
            at,
        ),
        &[
            (
                "node_cpu{instance=\"abc\",job=\"node\",mode=\"idle\",target=\"a@b.com\"}",
                3.0,
            ),
            (
                "node_cpu{instance=\"abc\",job=\"node\",mode=\"user\",target=\"a@b.com\"}",
                1.0,
            ),
        ],
    );
    assert_vector(
        instant(
            &s,
            "node_cpu > on(job, instance) group_left(target) (threshold or on (job, instance) (sum by (job, instance)(node_cpu) * 0 + 1))",
            at,
        ),
        &[
            ("node_cpu{instance=\"abc\",job=\"node\",mode=\"idle\",target=\"a@b.com\"}", 3.0),
            ("node_cpu{instance=\"abc\",job=\"node\",mode=\"user\",target=\"a@b.com\"}", 1.0),
            ("node_cpu{instance=\"def\",job=\"node\",mode=\"idle\"}", 8.0),
            ("node_cpu{instance=\"def\",job=\"node\",mode=\"user\"}", 2.0),
        ],
    );
}

#[test]
fn matching_edge_cases() {
    let s = load(
        5 * MINUTE,
        "random{foo=\"bar\"} 2\nmetricA{baz=\"meh\"} 3\nmetricB{baz=\"meh\"} 4",
    );
    let at = 5 * MINUTE;
    assert_vector(instant(&s, "random + on() metricA", at), &[("{}", 5.0)]);
    assert_vector(
        instant(&s, "metricA + ignoring() metricB", at),
        &[("{baz=\"meh\"}", 7.0)],
    );
    assert_vector(
        instant(&s, "metricA + metricB", at),
        &[("{baz=\"meh\"}", 7.0)],
    );
    let s = load(
        5 * MINUTE,
        "testmetric1{src=\"a\",dst=\"b\"} 0\ntestmetric2{src=\"a\",dst=\"b\"} 1",
    );
    assert_error(
        instant(&s, "-{__name__=~'testmetric1|testmetric2'}", 0),
        "same labelset",
    );
    // Issue 5326: on() keeps only the matching labels.
    let s = load(5 * MINUTE, "metricA{instance=\"abc\",job=\"node\"} 2");
    assert_vector(
        instant(&s, "metricA == on (instance) metricA", at),
        &[("{instance=\"abc\"}", 2.0)],
    );
}
