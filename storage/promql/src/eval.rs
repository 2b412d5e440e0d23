//! The evaluator: an expression's value at one evaluation time. Range
//! queries evaluate every step this way, like Prometheus' semantics define
//! them; selectors read from data fetched once before the first step.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use photon_tsdb::{is_stale, Labels, Sample};
use promql_parser::parser::{Expr, MatrixSelector, SubqueryExpr, VectorSelector};

use crate::plan::{at_ms, duration_ms, offset_ms};
use crate::value::{check_unique, drop_name, Elem, StepValue};
use crate::{aggregate, binary, functions, QueryError, QueryParams, Queryable, SeriesData};

/// How often (in selector evaluations) to look at the clock; reading it
/// on every one would cost more than small selections themselves.
const DEADLINE_CHECK_INTERVAL: usize = 1024;

/// Prometheus' message when the deadline passes.
const TIMEOUT_MESSAGE: &str = "query timed out in expression evaluation";

pub(crate) struct Evaluator<'a> {
    pub params: &'a QueryParams,
    /// Series of each selector node, keyed by the node's address.
    data: HashMap<usize, Selected>,
    /// Inner results of each subquery node, keyed by the node's address.
    subquery_cache: HashMap<usize, SubqueryCache>,
    /// Samples loaded during the current top-level step.
    step_samples: usize,
    /// Samples held in results (output points, cached subquery points).
    held_samples: usize,
    since_deadline_check: usize,
}

impl<'a> Evaluator<'a> {
    /// Fetches what `expr` reads from `storage`.
    pub fn new(
        expr: &Expr,
        storage: &dyn Queryable,
        params: &'a QueryParams,
    ) -> Result<Self, QueryError> {
        crate::plan::check_params(params)?;
        let mut data = HashMap::new();
        for (key, sel) in crate::plan::plan(expr, params)? {
            let mut series = storage.select(&sel)?;
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            let cursors = vec![(0, 0); series.len()];
            data.insert(key, Selected { series, cursors });
        }
        Ok(Evaluator {
            params,
            data,
            subquery_cache: HashMap::new(),
            step_samples: 0,
            held_samples: 0,
            since_deadline_check: 0,
        })
    }

    /// Starts a new top-level step: samples loaded by the previous one are
    /// released.
    pub fn begin_step(&mut self) -> Result<(), QueryError> {
        self.step_samples = 0;
        self.check_deadline()
    }

    /// Accounts for result points kept until the end of the query.
    pub fn hold(&mut self, n: usize) -> Result<(), QueryError> {
        self.held_samples += n;
        self.check_samples()
    }

    fn load(&mut self, n: usize) -> Result<(), QueryError> {
        self.step_samples += n;
        self.since_deadline_check += 1;
        if self.since_deadline_check >= DEADLINE_CHECK_INTERVAL {
            self.since_deadline_check = 0;
            self.check_deadline()?;
        }
        self.check_samples()
    }

    fn check_samples(&self) -> Result<(), QueryError> {
        if self.step_samples + self.held_samples > self.params.limits.samples_max {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    pub fn check_deadline(&self) -> Result<(), QueryError> {
        match self.params.limits.deadline {
            Some(d) if Instant::now() >= d => Err(QueryError::Timeout(TIMEOUT_MESSAGE.into())),
            _ => Ok(()),
        }
    }

    /// The value of `expr` at `ts` (milliseconds).
    pub fn eval(&mut self, expr: &Expr, ts: i64) -> Result<StepValue, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(StepValue::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(StepValue::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                StepValue::Scalar(v) => Ok(StepValue::Scalar(-v)),
                StepValue::Vector(v) => {
                    let out: Vec<Elem> = v
                        .into_iter()
                        .map(|e| Elem {
                            labels: drop_name(&e.labels),
                            t: e.t,
                            v: -e.v,
                        })
                        .collect();
                    check_unique(&out)?;
                    Ok(StepValue::Vector(out))
                }
                other => Err(QueryError::exec(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(StepValue::Vector(self.vector_selector(vs, ts)?)),
            Expr::MatrixSelector(ms) => Ok(StepValue::Matrix(self.matrix_selector(ms, ts)?)),
            Expr::Subquery(sq) => Ok(StepValue::Matrix(self.subquery(sq, ts)?)),
            Expr::Call(c) => functions::call(self, c, ts),
            Expr::Aggregate(a) => aggregate::eval(self, a, ts),
            Expr::Binary(b) => binary::eval(self, b, ts),
            Expr::Extension(_) => Err(QueryError::bad("extension expressions are not supported")),
        }
    }

    /// The time a selector reads at: its `@` (or `ts`) minus its offset.
    fn reference_time(&self, vs: &VectorSelector, ts: i64) -> i64 {
        at_ms(&vs.at, self.params).unwrap_or(ts) - offset_ms(&vs.offset)
    }

    /// The newest sample of each series in the lookback window before the
    /// reference time, unless that sample is a staleness marker.
    fn vector_selector(&mut self, vs: &VectorSelector, ts: i64) -> Result<Vec<Elem>, QueryError> {
        let reference = self.reference_time(vs, ts);
        let oldest = reference - self.params.lookback_ms;
        let left_open = self.params.left_open;
        let key = vs as *const VectorSelector as usize;
        let mut out = Vec::new();
        if let Some(selected) = self.data.get_mut(&key) {
            for (s, cursor) in selected.series.iter().zip(selected.cursors.iter_mut()) {
                let idx = seek(&s.samples, cursor.1, |x| x.t <= reference);
                cursor.1 = idx;
                let Some(last) = idx.checked_sub(1).map(|i| s.samples[i]) else {
                    continue;
                };
                let too_old = last.t < oldest || (left_open && last.t == oldest);
                if too_old || is_stale(last.v) {
                    continue;
                }
                out.push(Elem {
                    labels: s.labels.clone(),
                    t: last.t,
                    v: last.v,
                });
            }
        }
        self.load(out.len())?;
        Ok(out)
    }

    /// The samples of each series in the range before the reference time,
    /// without staleness markers; series with none are left out.
    fn matrix_selector(
        &mut self,
        ms: &MatrixSelector,
        ts: i64,
    ) -> Result<Vec<SeriesData>, QueryError> {
        let reference = self.reference_time(&ms.vs, ts);
        let oldest = reference - duration_ms(&ms.range);
        let left_open = self.params.left_open;
        let key = &ms.vs as *const VectorSelector as usize;
        let mut out = Vec::new();
        let mut loaded = 0;
        if let Some(selected) = self.data.get_mut(&key) {
            for (s, cursor) in selected.series.iter().zip(selected.cursors.iter_mut()) {
                let lo = if left_open {
                    seek(&s.samples, cursor.0, |x| x.t <= oldest)
                } else {
                    seek(&s.samples, cursor.0, |x| x.t < oldest)
                };
                let hi = seek(&s.samples, cursor.1, |x| x.t <= reference);
                *cursor = (lo, hi);
                let samples: Vec<Sample> = s.samples[lo..hi.max(lo)]
                    .iter()
                    .filter(|x| !is_stale(x.v))
                    .copied()
                    .collect();
                if samples.is_empty() {
                    continue;
                }
                loaded += samples.len();
                out.push(SeriesData {
                    labels: s.labels.clone(),
                    samples,
                });
            }
        }
        self.load(loaded)?;
        Ok(out)
    }

    /// The inner expression evaluated at every multiple of the subquery's
    /// step within the range before the reference time.
    fn subquery(&mut self, sq: &SubqueryExpr, ts: i64) -> Result<Vec<SeriesData>, QueryError> {
        let reference = at_ms(&sq.at, self.params).unwrap_or(ts) - offset_ms(&sq.offset);
        let step = match &sq.step {
            Some(d) if duration_ms(d) > 0 => duration_ms(d),
            _ => self.params.default_subquery_step_ms.max(1),
        };
        let oldest = reference - duration_ms(&sq.range);
        // Steps are aligned to absolute multiples of the step.
        let mut t = oldest.div_euclid(step) * step;
        if t < oldest || (self.params.left_open && t == oldest) {
            t += step;
        }
        let key = sq as *const SubqueryExpr as usize;
        // A subquery node cannot contain itself, so its cache can leave the
        // map while the inner expression is evaluated.
        let mut cache = self.subquery_cache.remove(&key).unwrap_or_default();
        let first = t;
        while t <= reference {
            if cache.evaluated.insert(t) {
                self.check_deadline()?;
                let value = self.eval(&sq.expr, t)?;
                self.held_samples += cache.add(t, value)?;
            }
            t += step;
        }
        let mut out = Vec::new();
        let mut points = 0;
        for (labels, samples) in &cache.series {
            let lo = samples.partition_point(|x| x.t < first);
            let hi = samples.partition_point(|x| x.t <= reference);
            if lo < hi {
                points += hi - lo;
                out.push(SeriesData {
                    labels: labels.clone(),
                    samples: samples[lo..hi].to_vec(),
                });
            }
        }
        self.subquery_cache.insert(key, cache);
        self.load(points)?;
        Ok(out)
    }
}

/// Samples a selector node read from storage, and per series where the
/// previous step's window started and ended: steps move forward, so the next
/// window is usually a few samples further.
struct Selected {
    series: Vec<SeriesData>,
    cursors: Vec<(usize, usize)>,
}

/// How many samples `seek` steps over one by one before it falls back to a
/// binary search.
const SEEK_SCAN_MAX: usize = 8;

/// `samples.partition_point(pred)` starting from the previous answer
/// `hint`: a short forward scan when the answer moved little, a binary
/// search otherwise. Binary searches over long series miss the cache at
/// every level, which dominated range queries.
fn seek(samples: &[Sample], hint: usize, pred: impl Fn(&Sample) -> bool) -> usize {
    let hint = hint.min(samples.len());
    if hint > 0 && !pred(&samples[hint - 1]) {
        return samples[..hint].partition_point(pred);
    }
    let end = (hint + SEEK_SCAN_MAX).min(samples.len());
    match samples[hint..end].iter().position(|x| !pred(x)) {
        Some(i) => hint + i,
        None => end + samples[end..].partition_point(pred),
    }
}

/// A subquery's inner results so far: an outer range query asks for the
/// same inner steps again and again, and slicing series kept by labels is
/// much cheaper than regrouping step vectors.
#[derive(Default)]
struct SubqueryCache {
    evaluated: HashSet<i64>,
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl SubqueryCache {
    /// Adds the inner value at `t`; returns the number of points added.
    fn add(&mut self, t: i64, value: StepValue) -> Result<usize, QueryError> {
        let elems = match value {
            StepValue::Scalar(v) => vec![Elem {
                labels: Labels::default(),
                t,
                v,
            }],
            StepValue::Vector(v) => v,
            other => {
                return Err(QueryError::exec(format!(
                    "subquery is only allowed on instant vector or scalar, got {}",
                    other.type_name()
                )))
            }
        };
        let n = elems.len();
        for e in elems {
            let samples = self.series.entry(e.labels).or_default();
            let sample = Sample { t, v: e.v };
            // Steps are usually evaluated in time order; `@` can reorder them.
            match samples.last() {
                Some(last) if last.t >= t => {
                    let i = samples.partition_point(|x| x.t < t);
                    samples.insert(i, sample);
                }
                _ => samples.push(sample),
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seek_equals_partition_point(
            times in proptest::collection::btree_set(-1000i64..1000, 0..60),
            hint in 0usize..80,
            t in -1100i64..1100,
        ) {
            let samples: Vec<Sample> = times.into_iter().map(|t| Sample { t, v: 0.0 }).collect();
            prop_assert_eq!(
                seek(&samples, hint, |x| x.t <= t),
                samples.partition_point(|x| x.t <= t)
            );
            prop_assert_eq!(
                seek(&samples, hint, |x| x.t < t),
                samples.partition_point(|x| x.t < t)
            );
        }
    }
}
