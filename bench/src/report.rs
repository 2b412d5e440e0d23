//! Percentiles and tables for every benchmark.

use std::fmt;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::json;

/// Histograms in microseconds, 1 us to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant bounds are valid")
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({"count": self.count, "mean": self.mean_us, "p50": self.p50_us, "p99": self.p99_us,
               "p999": self.p999_us, "max": self.max_us})
    }

    pub fn from_json(v: &serde_json::Value) -> anyhow::Result<Self> {
        let get = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_f64())
                .with_context(|| format!("missing latency {k}"))
        };
        Ok(Self {
            count: get("count")? as u64,
            mean_us: get("mean")?,
            p50_us: get("p50")? as u64,
            p99_us: get("p99")? as u64,
            p999_us: get("p999")? as u64,
            max_us: get("max")? as u64,
        })
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {} us, p99 {} us, p999 {} us, max {} us",
            self.p50_us, self.p99_us, self.p999_us, self.max_us
        )
    }
}

/// A plain-text table with aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|s| (*s).to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(String::len)
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
                .collect();
            writeln!(f, "{}", line.join("  ").trim_end())?;
        }
        Ok(())
    }
}
