//! Label sets, label matchers and samples: the vocabulary shared by
//! ingestion, storage and PromQL.

use std::fmt;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// Prometheus' staleness marker: a NaN with this exact bit pattern marks the
/// end of a series (a target disappeared); queries treat it as "no sample".
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is the staleness marker (not any NaN: only this bit pattern).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN
}

/// One sample: a timestamp in milliseconds since the Unix epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

/// A series' identity: labels sorted by name, names unique, no empty values
/// (an empty value means "label absent" in Prometheus' model). It includes
/// `__name__` when the series has a metric name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Sorts by name and drops empty values. When a name repeats, the last
    /// pair wins (callers that must refuse duplicates check before).
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        // Stable sort keeps input order among equal names; keep the last.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        Labels(out)
    }

    /// Builds from pairs the caller guarantees sorted, unique and non-empty.
    pub fn from_sorted(pairs: Vec<(String, String)>) -> Self {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(pairs.iter().all(|(_, v)| !v.is_empty()));
        Labels(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The metric name, if any.
    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }

    /// Sets (or, with an empty value, removes) one label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
    }

    /// A copy without the metric name.
    pub fn without_name(&self) -> Labels {
        self.retain(|n| n != METRIC_NAME)
    }

    /// A copy keeping the labels whose names `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Labels {
        Labels(self.0.iter().filter(|(n, _)| keep(n)).cloned().collect())
    }

    /// Bytes of names and values (for limits and memory accounting).
    pub fn byte_len(&self) -> usize {
        self.0.iter().map(|(n, v)| n.len() + v.len()).sum()
    }
}

impl fmt::Display for Labels {
    /// Prometheus' notation: `name{a="1", b="2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (n, v) in self.iter().filter(|(n, _)| *n != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored RE2 syntax)
    Regex,
    /// `!~`
    NotRegex,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} for label {name}: {reason}")]
pub struct MatcherError {
    pub name: String,
    pub pattern: String,
    pub reason: String,
}

/// A label matcher as in `{job=~"api|web"}` (regexes anchored and, as in
/// Prometheus 2.x, `.` does not match a newline). A label a series does not have
/// matches as the empty string, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, MatcherError> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| MatcherError {
                    name: name.to_string(),
                    pattern: value.to_string(),
                    reason: e.to_string(),
                })?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// `name = value`.
    pub fn equal(name: &str, value: &str) -> Self {
        Matcher {
            name: name.to_string(),
            op: MatchOp::Equal,
            value: value.to_string(),
            re: None,
        }
    }

    /// Whether a label value (`""` when the series lacks the label) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// Whether the matcher selects series that lack the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Whether a series with these labels matches.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn labels_sort_drop_empty_and_keep_the_last_duplicate() {
        let x = l(&[("b", "2"), ("a", "1"), ("c", ""), ("a", "3")]);
        assert_eq!(
            x.pairs(),
            &[("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        assert_eq!(x.get("b"), Some("2"));
        assert_eq!(x.get("c"), None);
    }

    #[test]
    fn matchers_follow_prometheus() {
        let x = l(&[("__name__", "up"), ("job", "api")]);
        assert!(Matcher::new("job", MatchOp::Regex, "a.i")
            .unwrap()
            .matches_labels(&x));
        // Anchored: a partial match is no match.
        assert!(!Matcher::new("job", MatchOp::Regex, "ap")
            .unwrap()
            .matches_labels(&x));
        assert!(Matcher::new("zone", MatchOp::Equal, "")
            .unwrap()
            .matches_labels(&x));
        assert!(Matcher::new("zone", MatchOp::NotRegex, ".+")
            .unwrap()
            .matches_labels(&x));
        assert!(Matcher::new("job", MatchOp::Regex, "(").is_err());
        assert_eq!(x.to_string(), "up{job=\"api\"}");
    }

    #[test]
    fn only_the_exact_stale_nan_is_stale() {
        assert!(is_stale(f64::from_bits(STALE_NAN)));
        assert!(!is_stale(f64::NAN));
    }
}
