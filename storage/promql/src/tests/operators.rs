use super::harness::*;
use crate::MemStorage;

fn data() -> MemStorage {
    load(
        5 * MINUTE,
        r#"
        http_requests{job="api-server", instance="0", group="production"} 0+10x10
        http_requests{job="api-server", instance="1", group="production"} 0+20x10
        http_requests{job="api-server", instance="0", group="canary"} 0+30x10
        http_requests{job="api-server", instance="1", group="canary"} 0+40x10
        vector_matching_a{l="x"} 0+1x100
        vector_matching_a{l="y"} 0+2x50
        vector_matching_b{l="x"} 0+4x25
        "#,
    )
}

const AT: i64 = 50 * MINUTE;

#[test]
fn scalar_arithmetic_and_precedence() {
    let s = MemStorage::new();
    assert_scalar(instant(&s, "1 + 2 * 3", 0), 7.0);
    assert_scalar(instant(&s, "2 ^ 3 ^ 2", 0), 512.0);
    assert_scalar(instant(&s, "-2 ^ 2", 0), -4.0);
    assert_scalar(instant(&s, "7 % 4", 0), 3.0);
    assert_scalar(instant(&s, "-7 % 4", 0), -3.0);
    assert_scalar(instant(&s, "1 / 0", 0), f64::INFINITY);
    assert_scalar(instant(&s, "0 / 0", 0), f64::NAN);
    assert_scalar(instant(&s, "1 atan2 1", 0), std::f64::consts::FRAC_PI_4);
    assert_scalar(instant(&s, "1 == bool 1", 0), 1.0);
    assert_scalar(instant(&s, "1 > bool 2", 0), 0.0);
}

#[test]
fn vector_scalar_arithmetic_drops_the_name() {
    let s = data();
    assert_vector(
        instant(&s, "http_requests{group=\"canary\"} * 2", AT),
        &[
            (
                "{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                600.0,
            ),
            (
                "{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                800.0,
            ),
        ],
    );
    assert_vector(
        instant(&s, "1 - http_requests{group=\"canary\"}", AT),
        &[
            (
                "{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                -299.0,
            ),
            (
                "{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                -399.0,
            ),
        ],
    );
}

#[test]
fn comparisons_filter_and_keep_the_name_unless_bool() {
    let s = data();
    assert_vector(
        instant(&s, "http_requests > 250", AT),
        &[
            (
                "http_requests{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                300.0,
            ),
            (
                "http_requests{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                400.0,
            ),
        ],
    );
    // The vector's value is kept when the scalar is on the left.
    assert_vector(
        instant(&s, "250 < http_requests", AT),
        &[
            (
                "http_requests{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                300.0,
            ),
            (
                "http_requests{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                400.0,
            ),
        ],
    );
    assert_vector(
        instant(&s, "http_requests{group=\"production\"} > bool 150", AT),
        &[
            (
                "{group=\"production\", instance=\"0\", job=\"api-server\"}",
                0.0,
            ),
            (
                "{group=\"production\", instance=\"1\", job=\"api-server\"}",
                1.0,
            ),
        ],
    );
    assert_vector(
        instant(
            &s,
            "http_requests{instance=\"0\"} == bool http_requests{instance=\"0\"}",
            AT,
        ),
        &[
            (
                "{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                1.0,
            ),
            (
                "{group=\"production\", instance=\"0\", job=\"api-server\"}",
                1.0,
            ),
        ],
    );
    // Vector-vector comparisons without bool keep the left side's name and value.
    assert_vector(
        instant(
            &s,
            "vector_matching_a > vector_matching_b",
            100 * 5 * MINUTE,
        ),
        &[],
    );
    assert_vector(
        instant(&s, "vector_matching_a < vector_matching_b", 25 * 5 * MINUTE),
        &[("vector_matching_a{l=\"x\"}", 25.0)],
    );
}

#[test]
fn one_to_one_matching_with_on_and_ignoring() {
    let s = data();
    assert_vector(
        instant(
            &s,
            "http_requests{group=\"canary\"} + ignoring(group) http_requests{group=\"production\"}",
            AT,
        ),
        &[
            ("{instance=\"0\", job=\"api-server\"}", 400.0),
            ("{instance=\"1\", job=\"api-server\"}", 600.0),
        ],
    );
    assert_vector(
        instant(
            &s,
            "http_requests{group=\"canary\"} - on(instance) http_requests{group=\"production\"}",
            AT,
        ),
        &[("{instance=\"0\"}", 200.0), ("{instance=\"1\"}", 200.0)],
    );
    // Unmatched series disappear.
    assert_vector(instant(&s, "http_requests + vector_matching_a", AT), &[]);
    assert_error(
        instant(&s, "http_requests + on(job) http_requests", AT),
        "many-to-many matching not allowed: matching labels must be unique on one side",
    );
    assert_error(
        instant(
            &s,
            "http_requests + on(job) group_left vector_matching_a",
            AT,
        ),
        "",
    );
}

#[test]
fn group_left_and_group_right() {
    let s = data();
    let q = "http_requests{group=\"canary\"} / on(job) group_left sum by (job) (http_requests{group=\"canary\"})";
    assert_vector(
        instant(&s, q, AT),
        &[
            (
                "{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                300.0 / 700.0,
            ),
            (
                "{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                400.0 / 700.0,
            ),
        ],
    );
    let q = "sum by (job) (http_requests{group=\"canary\"}) / on(job) group_right http_requests{group=\"canary\"}";
    assert_vector(
        instant(&s, q, AT),
        &[
            (
                "{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                700.0 / 300.0,
            ),
            (
                "{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                700.0 / 400.0,
            ),
        ],
    );
    // group_left(label) copies the label from the "one" side.
    let s2 = load(
        MINUTE,
        "a{k=\"1\",i=\"x\"} 2\na{k=\"1\",i=\"y\"} 3\ninfo{k=\"1\",owner=\"me\"} 1",
    );
    assert_vector(
        instant(&s2, "a * on(k) group_left(owner) info", 0),
        &[
            ("{i=\"x\",k=\"1\",owner=\"me\"}", 2.0),
            ("{i=\"y\",k=\"1\",owner=\"me\"}", 3.0),
        ],
    );
    // Without group_left this is many-to-one.
    assert_error(
        instant(&s2, "a * on(k) info", 0),
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
    );
    // Grouping labels that do not tell results apart.
    let s3 = load(
        MINUTE,
        "a{k=\"1\",i=\"x\"} 2\na{k=\"1\",i=\"y\"} 3\nb{k=\"1\"} 1",
    );
    assert_error(
        instant(&s3, "a * on(k) group_left b", 0).and_then(|_| {
            instant(
                &s3,
                "label_replace(a, \"i\", \"\", \"i\", \".*\") * on(k) group_left b",
                0,
            )
        }),
        "",
    );
}

#[test]
fn set_operators_keep_left_labels() {
    let s = data();
    let canary = "http_requests{group=\"canary\"}";
    assert_vector(
        instant(&s, &format!("http_requests and {canary}"), AT),
        &[
            (
                "http_requests{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                300.0,
            ),
            (
                "http_requests{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                400.0,
            ),
        ],
    );
    assert_vector(
        instant(
            &s,
            &format!("http_requests{{instance=\"0\"}} and on(instance) {canary}"),
            AT,
        ),
        &[
            (
                "http_requests{group=\"canary\", instance=\"0\", job=\"api-server\"}",
                300.0,
            ),
            (
                "http_requests{group=\"production\", instance=\"0\", job=\"api-server\"}",
                100.0,
            ),
        ],
    );
    assert_vector(
        instant(&s, &format!("http_requests unless {canary}"), AT),
        &[
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
    assert_vector(
        instant(
            &s,
            "vector_matching_a or vector_matching_b",
            10 * 5 * MINUTE,
        ),
        &[
            ("vector_matching_a{l=\"x\"}", 10.0),
            ("vector_matching_a{l=\"y\"}", 20.0),
        ],
    );
    assert_vector(
        instant(
            &s,
            "vector_matching_b or on() vector_matching_a",
            10 * 5 * MINUTE,
        ),
        &[("vector_matching_b{l=\"x\"}", 40.0)],
    );
    assert_vector(instant(&s, "vector_matching_a and nothing", 0), &[]);
}

#[test]
fn atan2_keeps_the_name_like_prometheus() {
    let s = load(MINUTE, "m{a=\"1\"} 1");
    assert_vector(
        instant(&s, "m atan2 1", 0),
        &[("m{a=\"1\"}", std::f64::consts::FRAC_PI_4)],
    );
    assert_vector(
        instant(&s, "m atan2 m", 0),
        &[("m{a=\"1\"}", std::f64::consts::FRAC_PI_4)],
    );
}

#[test]
fn unary_minus_drops_the_name() {
    let s = data();
    assert_vector(
        instant(&s, "-vector_matching_a", 10 * 5 * MINUTE),
        &[("{l=\"x\"}", -10.0), ("{l=\"y\"}", -20.0)],
    );
    assert_scalar(instant(&s, "-(1 + 2)", 0), -3.0);
}
