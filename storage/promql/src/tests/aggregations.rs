use proptest::prelude::*;

use super::harness::*;
use crate::{MemStorage, Value};

fn data() -> MemStorage {
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
        "#,
    )
}

const AT: i64 = 50 * MINUTE;

#[test]
fn sum_count_avg_by_and_without() {
    let s = data();
    assert_vector(
        instant(&s, "sum by (job) (http_requests)", AT),
        &[
            ("{job=\"api-server\"}", 1000.0),
            ("{job=\"app-server\"}", 2600.0),
        ],
    );
    assert_vector(
        instant(&s, "sum(http_requests) by (job, group)", AT),
        &[
            ("{group=\"canary\", job=\"api-server\"}", 700.0),
            ("{group=\"canary\", job=\"app-server\"}", 1500.0),
            ("{group=\"production\", job=\"api-server\"}", 300.0),
            ("{group=\"production\", job=\"app-server\"}", 1100.0),
        ],
    );
    assert_vector(
        instant(&s, "sum without (instance, group) (http_requests)", AT),
        &[
            ("{job=\"api-server\"}", 1000.0),
            ("{job=\"app-server\"}", 2600.0),
        ],
    );
    assert_vector(instant(&s, "sum(http_requests)", AT), &[("{}", 3600.0)]);
    assert_vector(
        instant(&s, "count by (group) (http_requests)", AT),
        &[("{group=\"canary\"}", 4.0), ("{group=\"production\"}", 4.0)],
    );
    assert_vector(
        instant(&s, "avg by (group) (http_requests)", AT),
        &[
            ("{group=\"canary\"}", 550.0),
            ("{group=\"production\"}", 350.0),
        ],
    );
    assert_vector(
        instant(&s, "group by (job) (http_requests)", AT),
        &[("{job=\"api-server\"}", 1.0), ("{job=\"app-server\"}", 1.0)],
    );
    // `by (__name__)` keeps the name.
    assert_vector(
        instant(&s, "max by (__name__) (http_requests)", AT),
        &[("http_requests", 800.0)],
    );
    assert_vector(instant(&s, "sum(nonexistent)", AT), &[]);
}

#[test]
fn min_max_stddev_stdvar_quantile() {
    let s = data();
    let q = |q: &str| instant(&s, q, AT);
    assert_vector(
        q("min by (job) (http_requests)"),
        &[
            ("{job=\"api-server\"}", 100.0),
            ("{job=\"app-server\"}", 500.0),
        ],
    );
    assert_vector(q("max(http_requests)"), &[("{}", 800.0)]);
    // 100, 200, 300, 400: mean 250, variance 12500.
    assert_vector(
        q("stdvar by (job) (http_requests)"),
        &[
            ("{job=\"api-server\"}", 12500.0),
            ("{job=\"app-server\"}", 12500.0),
        ],
    );
    assert_vector(
        q("stddev by (job) (http_requests)"),
        &[
            ("{job=\"api-server\"}", 12500f64.sqrt()),
            ("{job=\"app-server\"}", 12500f64.sqrt()),
        ],
    );
    assert_vector(
        q("quantile by (job) (0.5, http_requests)"),
        &[
            ("{job=\"api-server\"}", 250.0),
            ("{job=\"app-server\"}", 650.0),
        ],
    );
    assert_vector(q("quantile(1.5, http_requests)"), &[("{}", f64::INFINITY)]);
}

#[test]
fn topk_bottomk_keep_whole_series_in_order() {
    let s = data();
    assert_order(
        instant(&s, "topk(3, http_requests)", AT),
        &[
            "http_requests{group=\"canary\", instance=\"1\", job=\"app-server\"}",
            "http_requests{group=\"canary\", instance=\"0\", job=\"app-server\"}",
            "http_requests{group=\"production\", instance=\"1\", job=\"app-server\"}",
        ],
    );
    assert_order(
        instant(&s, "bottomk(2, http_requests)", AT),
        &[
            "http_requests{group=\"production\", instance=\"0\", job=\"api-server\"}",
            "http_requests{group=\"production\", instance=\"1\", job=\"api-server\"}",
        ],
    );
    assert_vector(
        instant(&s, "topk by (job) (1, http_requests)", AT),
        &[
            (
                "http_requests{group=\"canary\", instance=\"1\", job=\"api-server\"}",
                400.0,
            ),
            (
                "http_requests{group=\"canary\", instance=\"1\", job=\"app-server\"}",
                800.0,
            ),
        ],
    );
    assert_vector(instant(&s, "topk(0, http_requests)", AT), &[]);
    // Over a range, a series appears at the steps where it is in the top.
    let s = load(MINUTE, "m{a=\"1\"} 1 5\nm{a=\"2\"} 2 3");
    match range(&s, "topk(1, m)", 0, MINUTE, MINUTE) {
        Ok(Value::Matrix(m)) => {
            assert_eq!(m.len(), 2);
            assert_eq!(m[0].samples.len(), 1);
            assert_eq!(m[0].samples[0].t, MINUTE);
            assert_eq!(m[1].samples[0].t, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn topk_with_nan_prefers_numbers() {
    let s = load(MINUTE, "m{a=\"1\"} NaN\nm{a=\"2\"} 1\nm{a=\"3\"} 2");
    assert_vector(
        instant(&s, "topk(2, m)", 0),
        &[("m{a=\"2\"}", 1.0), ("m{a=\"3\"}", 2.0)],
    );
    assert_vector(instant(&s, "bottomk(1, m)", 0), &[("m{a=\"2\"}", 1.0)]);
}

#[test]
fn count_values_adds_a_label() {
    let s = load(MINUTE, "m{a=\"1\"} 1\nm{a=\"2\"} 1\nm{a=\"3\"} 2.5");
    assert_vector(
        instant(&s, "count_values(\"value\", m)", 0),
        &[("{value=\"1\"}", 2.0), ("{value=\"2.5\"}", 1.0)],
    );
    assert_vector(
        instant(&s, "count_values without (a) (\"v\", m)", 0),
        &[("{v=\"1\"}", 2.0), ("{v=\"2.5\"}", 1.0)],
    );
    assert_error(
        instant(&s, "count_values(\"a-b\", m)", 0),
        "invalid label name",
    );
}

#[test]
fn avg_handles_infinities_like_prometheus() {
    let s = load(
        MINUTE,
        "m{a=\"1\"} Inf\nm{a=\"2\"} 1\nm{a=\"3\"} -Inf\nn{a=\"1\"} Inf\nn{a=\"2\"} 5",
    );
    assert_vector(instant(&s, "avg(n)", 0), &[("{}", f64::INFINITY)]);
    assert_vector(instant(&s, "avg(m)", 0), &[("{}", f64::NAN)]);
}

proptest! {
    #[test]
    fn sum_by_equals_the_manual_sum(values in proptest::collection::vec((0u8..4, -1e6f64..1e6), 1..30)) {
        let mut s = MemStorage::new();
        let mut expected = [0.0f64; 4];
        let mut present = [false; 4];
        for (i, (group, v)) in values.iter().enumerate() {
            s.add_series(&[("__name__", "m"), ("g", &group.to_string()), ("i", &i.to_string())], &[(0, *v)]);
            expected[*group as usize] += v;
            present[*group as usize] = true;
        }
        let Ok(Value::Vector(got)) = instant(&s, "sum by (g) (m)", 0) else { panic!() };
        prop_assert_eq!(got.len(), present.iter().filter(|p| **p).count());
        for sample in got {
            let g: usize = sample.labels.get("g").unwrap().parse().unwrap();
            prop_assert!(close(sample.v, expected[g]) || (sample.v - expected[g]).abs() < 1e-6);
        }
    }

    #[test]
    fn count_equals_the_number_of_series(n in 1usize..40) {
        let mut s = MemStorage::new();
        for i in 0..n {
            s.add_series(&[("__name__", "m"), ("i", &i.to_string())], &[(0, i as f64)]);
        }
        assert_vector(instant(&s, "count(m)", 0), &[("{}", n as f64)]);
        assert_vector(instant(&s, "count(topk(3, m))", 0), &[("{}", n.min(3) as f64)]);
    }
}
