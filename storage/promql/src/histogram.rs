//! `histogram_quantile` over classic histograms (series with an `le`
//! label), following Prometheus' `bucketQuantile`.

use std::collections::HashMap;

use photon_tsdb::{Labels, METRIC_NAME};

use crate::value::Elem;

const BUCKET_LABEL: &str = "le";

#[derive(Debug, Clone, Copy)]
struct Bucket {
    upper_bound: f64,
    count: f64,
}

/// One output element per histogram: the input grouped by all labels but
/// `le` (including the name, which is then dropped).
pub(crate) fn quantile_over_buckets(q: f64, input: Vec<Elem>, ts: i64) -> Vec<Elem> {
    let mut order: Vec<Labels> = Vec::new();
    let mut histograms: HashMap<Labels, (Labels, Vec<Bucket>)> = HashMap::new();
    for e in input {
        // Go's ParseFloat and Rust's parse agree on "+Inf", "1e3" and "NaN".
        let Some(upper_bound) = e
            .labels
            .get(BUCKET_LABEL)
            .and_then(|s| s.parse::<f64>().ok())
        else {
            continue;
        };
        let key = e.labels.retain(|n| n != BUCKET_LABEL);
        let entry = histograms.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            (
                e.labels.retain(|n| n != BUCKET_LABEL && n != METRIC_NAME),
                Vec::new(),
            )
        });
        entry.1.push(Bucket {
            upper_bound,
            count: e.v,
        });
    }
    let mut out = Vec::with_capacity(order.len());
    for key in order {
        if let Some((labels, mut buckets)) = histograms.remove(&key) {
            out.push(Elem {
                labels,
                t: ts,
                v: bucket_quantile(q, &mut buckets),
            });
        }
    }
    out
}

fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
    match buckets.last() {
        Some(b) if b.upper_bound == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    coalesce(buckets);
    ensure_monotonic(buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // The first bucket (ignoring +Inf) whose cumulative count reaches rank.
    let n = buckets.len() - 1;
    let b = buckets[..n].partition_point(|x| x.count < rank);
    if b == n {
        return buckets[n - 1].upper_bound;
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return buckets[0].upper_bound;
    }
    let mut start = 0.0;
    let end = buckets[b].upper_bound;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// Merges buckets with the same bound (e.g. `le="1"` and `le="1.0"`).
fn coalesce(buckets: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.upper_bound == b.upper_bound => last.count += b.count,
            _ => out.push(*b),
        }
    }
    *buckets = out;
}

/// Counts must not decrease with the bound; scrapes racing with updates
/// can make them, so later buckets are raised to the running maximum.
fn ensure_monotonic(buckets: &mut [Bucket]) {
    let mut max = f64::NEG_INFINITY;
    for b in buckets {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(upper_bound, count)| Bucket { upper_bound, count })
            .collect()
    }

    #[test]
    fn interpolates_within_the_bucket() {
        let mut b = buckets(&[(0.1, 10.0), (0.2, 20.0), (f64::INFINITY, 20.0)]);
        // rank 10 of 20 is the end of the first bucket.
        assert!((bucket_quantile(0.5, &mut b) - 0.1).abs() < 1e-12);
        let mut b = buckets(&[(0.1, 10.0), (0.2, 20.0), (f64::INFINITY, 20.0)]);
        assert!((bucket_quantile(0.75, &mut b) - 0.15).abs() < 1e-12);
        // Everything in +Inf: the highest finite bound.
        let mut b = buckets(&[(0.1, 0.0), (f64::INFINITY, 5.0)]);
        assert_eq!(bucket_quantile(0.5, &mut b), 0.1);
        let mut b = buckets(&[(0.1, 1.0)]);
        assert!(bucket_quantile(0.5, &mut b).is_nan());
        let mut b = buckets(&[(0.1, 1.0), (f64::INFINITY, 1.0)]);
        assert_eq!(bucket_quantile(-1.0, &mut b), f64::NEG_INFINITY);
    }
}
