//! What a NightLight query request brings from the network: the PromQL text
//! (parsed, planned and evaluated, instant and range, over a small fixed
//! data set with tight limits) and the API's parameters (times, durations,
//! form bodies). The first byte picks which. Nothing may panic: a query
//! that cannot run is a `QueryError`, a bad parameter an error text.

use std::time::{Duration, Instant};

use photon_promql::{eval_instant, eval_range, parse, selections, Limits, MemStorage, QueryParams};

const T0_MS: i64 = 1_700_000_000_000;

fn storage() -> MemStorage {
    let mut s = MemStorage::new();
    let points = |f: fn(i64) -> f64| -> Vec<(i64, f64)> {
        (0..40).map(|i| (T0_MS + i * 15_000, f(i))).collect()
    };
    s.add_series(
        &[("__name__", "c"), ("job", "a"), ("le", "1")],
        &points(|i| (i * 3) as f64),
    );
    s.add_series(
        &[("__name__", "c"), ("job", "b"), ("le", "+Inf")],
        &points(|i| (i % 7) as f64),
    );
    s.add_series(
        &[("__name__", "g"), ("job", "a")],
        &points(|i| (i as f64).sin()),
    );
    s.add_series(
        &[("__name__", "g"), ("job", "b"), ("x", "y")],
        &points(|i| if i == 5 { f64::NAN } else { -(i as f64) }),
    );
    s
}

fn limits() -> Limits {
    Limits {
        samples_max: 20_000,
        points_per_series_max: 200,
        deadline: Some(Instant::now() + Duration::from_millis(500)),
    }
}

fn query(text: &str) {
    let Ok(expr) = parse(text) else {
        return;
    };
    let store = storage();
    let mut instant = QueryParams::instant(T0_MS + 300_000);
    instant.limits = limits();
    let _ = selections(&expr, &instant);
    let _ = eval_instant(&expr, &store, &instant);
    let mut range = QueryParams::range(T0_MS, T0_MS + 600_000, 30_000);
    range.limits = limits();
    let _ = selections(&expr, &range);
    let _ = eval_range(&expr, &store, &range);
    if let Ok(v) = eval_instant(&expr, &store, &instant) {
        let _ = photon_promql::result_json(&v);
    }
}

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 | 1 => query(&text),
        2 => {
            let _ = nightlight::params::parse_time("time", &text);
            let _ = nightlight::params::parse_duration("step", &text);
        }
        _ => {
            let form = nightlight::params::Form::parse(&text);
            for (name, value) in &form.0 {
                let _ = nightlight::params::parse_time(name, value);
            }
            let _ = photon_promql::parse_selector(&text);
        }
    }
}
