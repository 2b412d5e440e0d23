//! Per-shard metrics: counters, gauges and hdrhistogram latency histograms that
//! one shard owns and updates without atomics or locks. A scrape takes a
//! [`MetricsSnapshot`] of every shard (over the channel mesh), merges them and
//! renders the Prometheus text exposition format.
//!
//! Why not the `prometheus-client` crate: its registry is shared and atomic, and
//! it has no hdrhistogram-backed summaries. Our model is one owner per shard and
//! merge-on-scrape, and the encoder is the small part (see `render`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest latency a histogram records, in microseconds (one hour); larger
/// values are clamped so recording never fails.
pub const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by every latency histogram.
pub const HISTOGRAM_SIGFIG: u8 = 3;
/// Quantiles exported for every latency summary.
pub const SUMMARY_QUANTILES: &[f64] = &[0.5, 0.9, 0.99, 0.999];

/// Label set of one series, sorted by name.
pub type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        }
    }
}

/// A monotonically increasing count owned by one shard.
#[derive(Debug, Clone, Default)]
pub struct Counter(Rc<Cell<u64>>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
    /// Sets the count from a monotonic counter kept elsewhere (the executor's).
    pub fn mirror(&self, total: u64) {
        self.0.set(total);
    }
}

/// A value that goes up and down, owned by one shard; shards' values are summed.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Rc<Cell<i64>>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.set(v);
    }
    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }
    pub fn dec(&self) {
        self.0.set(self.0.get() - 1);
    }
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// A latency histogram in microseconds, owned by one shard.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Rc<RefCell<Histogram<u64>>>);

impl LatencyHistogram {
    fn new() -> Self {
        Self(Rc::new(RefCell::new(new_histogram())))
    }
    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.record_us(us);
    }
    pub fn record_us(&self, us: u64) {
        self.0
            .borrow_mut()
            .saturating_record(us.clamp(1, HISTOGRAM_MAX_US));
    }
    pub fn count(&self) -> u64 {
        self.0.borrow().len()
    }
}

/// A new histogram with the crate-wide bounds (1 us to one hour, 3 digits).
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy hdrhistogram's preconditions
    // (low >= 1, high >= 2 * low, sigfig <= 5), so creation cannot fail.
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG)
        .expect("constant histogram bounds are valid")
}

#[derive(Debug, Clone)]
enum Slot {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(LatencyHistogram),
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    series: BTreeMap<Labels, Slot>,
}

/// The registry of one shard. Cheap to clone (an `Rc`); never crosses threads.
#[derive(Debug, Clone, Default)]
pub struct ShardMetrics {
    families: Rc<RefCell<BTreeMap<&'static str, Family>>>,
}

impl ShardMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or finds) a counter. Registering one name with two kinds is a
    /// programming error and panics at start-up, not per request.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Counter {
        match self.slot(name, help, Kind::Counter, labels, || {
            Slot::Counter(Counter::default())
        }) {
            Slot::Counter(c) => c,
            _ => unreachable!("kind checked in slot()"),
        }
    }

    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        match self.slot(name, help, Kind::Gauge, labels, || {
            Slot::Gauge(Gauge::default())
        }) {
            Slot::Gauge(g) => g,
            _ => unreachable!("kind checked in slot()"),
        }
    }

    /// Registers (or finds) a latency histogram, exported as a summary in seconds.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> LatencyHistogram {
        match self.slot(name, help, Kind::Summary, labels, || {
            Slot::Histogram(LatencyHistogram::new())
        }) {
            Slot::Histogram(h) => h,
            _ => unreachable!("kind checked in slot()"),
        }
    }

    fn slot(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Slot,
    ) -> Slot {
        assert!(valid_name(name), "invalid metric name {name:?}");
        let mut families = self.families.borrow_mut();
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        assert_eq!(family.kind, kind, "metric {name} registered with two kinds");
        let mut labels: Labels = labels
            .iter()
            .map(|(k, v)| {
                assert!(valid_name(k), "invalid label name {k:?} on {name}");
                ((*k).to_string(), (*v).to_string())
            })
            .collect();
        labels.sort();
        family.series.entry(labels).or_insert_with(make).clone()
    }

    /// Copies every value into a `Send` snapshot.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let families = self.families.borrow();
        let mut out = MetricsSnapshot::default();
        for (name, family) in families.iter() {
            let series = family
                .series
                .iter()
                .map(|(labels, slot)| {
                    let value = match slot {
                        Slot::Counter(c) => Value::Counter(c.get()),
                        Slot::Gauge(g) => Value::Gauge(g.get()),
                        Slot::Histogram(h) => Value::Histogram(h.0.borrow().clone()),
                    };
                    (labels.clone(), value)
                })
                .collect();
            out.families.insert(
                (*name).to_string(),
                FamilySnapshot {
                    help: family.help.to_string(),
                    kind: family.kind,
                    series,
                },
            );
        }
        out
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[derive(Debug, Clone)]
pub enum Value {
    Counter(u64),
    Gauge(i64),
    Histogram(Histogram<u64>),
}

#[derive(Debug, Clone)]
pub struct FamilySnapshot {
    pub help: String,
    pub kind: Kind,
    pub series: BTreeMap<Labels, Value>,
}

/// Values of one or more shards, `Send` so it can cross the mesh.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub families: BTreeMap<String, FamilySnapshot>,
}

impl MetricsSnapshot {
    /// Adds another shard's values: counters and gauges are summed, histograms
    /// merged bucket by bucket.
    pub fn merge(&mut self, other: MetricsSnapshot) {
        for (name, family) in other.families {
            match self.families.get_mut(&name) {
                None => {
                    self.families.insert(name, family);
                }
                Some(mine) if mine.kind != family.kind => {
                    tracing::warn!(metric = %name, "metric has different kinds on two shards; keeping the first");
                }
                Some(mine) => {
                    for (labels, value) in family.series {
                        match mine.series.get_mut(&labels) {
                            None => {
                                mine.series.insert(labels, value);
                            }
                            Some(existing) => merge_value(existing, value),
                        }
                    }
                }
            }
        }
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for (name, family) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, value) in &family.series {
                match value {
                    Value::Counter(v) => {
                        let _ = writeln!(out, "{name}{} {v}", render_labels(labels, None));
                    }
                    Value::Gauge(v) => {
                        let _ = writeln!(out, "{name}{} {v}", render_labels(labels, None));
                    }
                    Value::Histogram(h) => render_summary(&mut out, name, labels, h),
                }
            }
        }
        out
    }
}

fn merge_value(existing: &mut Value, value: Value) {
    match (existing, value) {
        (Value::Counter(a), Value::Counter(b)) => *a = a.wrapping_add(b),
        (Value::Gauge(a), Value::Gauge(b)) => *a += b,
        (Value::Histogram(a), Value::Histogram(b)) => {
            // Both histograms come from `new_histogram`, so their bounds match
            // and `add` cannot fail; a failure would mean a bug, which we log.
            if let Err(e) = a.add(&b) {
                tracing::warn!(error = %e, "cannot merge histograms");
            }
        }
        _ => tracing::warn!("metric series has different kinds on two shards"),
    }
}

fn render_summary(out: &mut String, name: &str, labels: &Labels, h: &Histogram<u64>) {
    for q in SUMMARY_QUANTILES {
        let seconds = if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(*q) as f64 / 1e6
        };
        let _ = writeln!(
            out,
            "{name}{} {seconds}",
            render_labels(labels, Some(("quantile", &q.to_string())))
        );
    }
    let sum_seconds = h.mean() * h.len() as f64 / 1e6;
    let _ = writeln!(
        out,
        "{name}_sum{} {sum_seconds}",
        render_labels(labels, None)
    );
    let _ = writeln!(
        out,
        "{name}_count{} {}",
        render_labels(labels, None),
        h.len()
    );
}

fn render_labels(labels: &Labels, extra: Option<(&str, &str)>) -> String {
    if labels.is_empty() && extra.is_none() {
        return String::new();
    }
    let mut s = String::from("{");
    let all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra);
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape_label(v));
    }
    s.push('}');
    s
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_merge_across_shards() {
        let a = ShardMetrics::new();
        let b = ShardMetrics::new();
        a.counter("req_total", "requests", &[("svc", "s3")]).add(3);
        b.counter("req_total", "requests", &[("svc", "s3")]).add(4);
        b.counter("req_total", "requests", &[("svc", "nbd")]).inc();
        a.gauge("open", "open conns", &[]).set(2);
        b.gauge("open", "open conns", &[]).set(5);
        for us in [100, 200, 300] {
            a.histogram("lat_seconds", "latency", &[]).record_us(us);
        }
        b.histogram("lat_seconds", "latency", &[]).record_us(10_000);

        let mut merged = a.snapshot();
        merged.merge(b.snapshot());
        let text = merged.render();
        assert!(text.contains("req_total{svc=\"s3\"} 7\n"), "{text}");
        assert!(text.contains("req_total{svc=\"nbd\"} 1\n"), "{text}");
        assert!(text.contains("open 7\n"), "{text}");
        assert!(text.contains("lat_seconds_count 4\n"), "{text}");
        assert!(text.contains("# TYPE lat_seconds summary\n"), "{text}");
        // p50 of {100,200,300,10000} us is 200 us.
        assert!(
            text.contains("lat_seconds{quantile=\"0.5\"} 0.0002"),
            "{text}"
        );
    }

    #[test]
    fn same_name_and_labels_share_one_series() {
        let m = ShardMetrics::new();
        m.counter("x_total", "x", &[("a", "1"), ("b", "2")]).inc();
        m.counter("x_total", "x", &[("b", "2"), ("a", "1")]).inc();
        assert!(m
            .snapshot()
            .render()
            .contains("x_total{a=\"1\",b=\"2\"} 2\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = ShardMetrics::new();
        m.counter("y_total", "line one\nline two", &[("path", "a\"b\\c\nd")])
            .inc();
        let text = m.snapshot().render();
        assert!(
            text.contains("y_total{path=\"a\\\"b\\\\c\\nd\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# HELP y_total line one\\nline two"),
            "{text}"
        );
    }

    #[test]
    #[should_panic(expected = "two kinds")]
    fn one_name_two_kinds_panics() {
        let m = ShardMetrics::new();
        m.counter("z", "z", &[]);
        m.gauge("z", "z", &[]);
    }
}
