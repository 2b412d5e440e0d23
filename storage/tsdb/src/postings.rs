//! Postings: for every label name and value, the sorted refs of the series
//! that carry it; and the selection of series for a list of matchers, with
//! Prometheus' semantics, over any source of postings (the head's in-memory
//! index or a block's on-disk one).

use std::collections::BTreeMap;

use crate::labels::{Labels, MatchOp, Matcher};
use crate::SeriesRef;

/// Every matcher matched the empty string; Prometheus refuses such
/// selectors because they would select every series in the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vector selector must contain at least one non-empty matcher")]
pub struct EmptyMatchersError;

/// Refuses a non-empty matcher list in which every matcher matches `""`.
/// An empty list is allowed: it stands for "every series" (label and series
/// listings without `match[]`, compaction).
pub fn check_matchers(matchers: &[Matcher]) -> Result<(), EmptyMatchersError> {
    if !matchers.is_empty() && matchers.iter().all(Matcher::matches_empty) {
        return Err(EmptyMatchersError);
    }
    Ok(())
}

/// Where postings come from.
pub trait PostingsSource {
    type Error;
    /// Every series, sorted.
    fn all_postings(&self) -> Result<Vec<SeriesRef>, Self::Error>;
    /// The series with `name = value`, sorted (empty if none).
    fn postings(&self, name: &str, value: &str) -> Result<Vec<SeriesRef>, Self::Error>;
    /// The postings of each value of `name` that `keep` accepts.
    fn postings_where(
        &self,
        name: &str,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Vec<SeriesRef>>, Self::Error>;
}

/// The sorted refs of the series the matchers select. Call
/// `check_matchers` first; an empty list selects every series.
pub fn select<S: PostingsSource>(
    src: &S,
    matchers: &[Matcher],
) -> Result<Vec<SeriesRef>, S::Error> {
    if matchers.is_empty() {
        return src.all_postings();
    }
    let mut positive: Vec<Vec<SeriesRef>> = Vec::new();
    let mut negative: Vec<Vec<SeriesRef>> = Vec::new();
    for m in matchers {
        if m.matches_empty() {
            // Selects series without the label too: subtract the series
            // whose value for it does not match instead.
            negative.extend(src.postings_where(&m.name, &|v| !m.matches(v))?);
        } else if m.op == MatchOp::Equal {
            positive.push(src.postings(&m.name, &m.value)?);
        } else if let Some(values) = literal_alternatives(m) {
            // `job=~"api|web"`: direct lookups instead of testing every
            // value of a possibly high-cardinality label.
            let lists = values.into_iter().map(|v| src.postings(&m.name, v));
            positive.push(union(lists.collect::<Result<_, _>>()?));
        } else {
            positive.push(union(src.postings_where(&m.name, &|v| m.matches(v))?));
        }
    }
    let mut result = if positive.is_empty() {
        // Only reachable when the caller skipped `check_matchers`.
        src.all_postings()?
    } else {
        positive.sort_by_key(Vec::len);
        let mut lists = positive.into_iter();
        let first = lists.next().expect("non-empty");
        lists.fold(first, |acc, l| intersect(&acc, &l))
    };
    if !negative.is_empty() && !result.is_empty() {
        result = subtract(&result, &union(negative));
    }
    Ok(result)
}

/// The values of a `=~` matcher whose pattern is plain literals joined by
/// `|` (RE2 anchors the whole pattern, so each must match exactly).
fn literal_alternatives(m: &Matcher) -> Option<Vec<&str>> {
    const META: &[char] = &[
        '\\', '.', '+', '*', '?', '(', ')', '[', ']', '{', '}', '^', '$',
    ];
    (m.op == MatchOp::Regex && !m.value.contains(META)).then(|| m.value.split('|').collect())
}

/// Intersection of two sorted lists.
pub fn intersect(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Union of sorted lists, sorted and without duplicates.
pub fn union(lists: Vec<Vec<SeriesRef>>) -> Vec<SeriesRef> {
    if lists.len() == 1 {
        return lists.into_iter().next().expect("one list");
    }
    let mut out: Vec<SeriesRef> = lists.into_iter().flatten().collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `a` without the elements of `b`; both sorted.
pub fn subtract(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

/// The head's inverted index.
#[derive(Debug, Default)]
pub struct MemPostings {
    by_name: BTreeMap<String, BTreeMap<String, Vec<SeriesRef>>>,
    all: Vec<SeriesRef>,
}

/// Inserts into a sorted list; refs usually arrive in increasing order,
/// so this is a push.
fn insert_sorted(list: &mut Vec<SeriesRef>, r: SeriesRef) {
    match list.last() {
        Some(&last) if last >= r => {
            if let Err(i) = list.binary_search(&r) {
                list.insert(i, r);
            }
        }
        _ => list.push(r),
    }
}

impl MemPostings {
    pub fn add(&mut self, r: SeriesRef, labels: &Labels) {
        insert_sorted(&mut self.all, r);
        for (name, value) in labels.iter() {
            let values = self.by_name.entry(name.to_string()).or_default();
            insert_sorted(values.entry(value.to_string()).or_default(), r);
        }
    }

    /// Removes many series at once (a cut can drop most of the head, and
    /// one pass per touched list keeps that linear).
    pub fn remove(&mut self, removed: &[(SeriesRef, &Labels)]) {
        if removed.is_empty() {
            return;
        }
        let mut refs: Vec<SeriesRef> = removed.iter().map(|(r, _)| *r).collect();
        refs.sort_unstable();
        self.all = subtract(&self.all, &refs);
        let mut touched: BTreeMap<(&str, &str), Vec<SeriesRef>> = BTreeMap::new();
        for (r, labels) in removed {
            for pair in labels.iter() {
                touched.entry(pair).or_default().push(*r);
            }
        }
        for ((name, value), mut gone) in touched {
            gone.sort_unstable();
            let Some(values) = self.by_name.get_mut(name) else {
                continue;
            };
            if let Some(list) = values.get_mut(value) {
                *list = subtract(list, &gone);
                if list.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Each value of `name` with its series.
    pub fn values(&self, name: &str) -> impl Iterator<Item = (&str, &[SeriesRef])> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|(v, refs)| (v.as_str(), refs.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Approximate heap bytes: strings, lists and tree nodes.
    pub fn memory_bytes(&self) -> usize {
        const NODE_BYTES: usize = 64;
        let mut bytes = self.all.capacity() * 8;
        for (name, values) in &self.by_name {
            bytes += name.len() + NODE_BYTES;
            for (value, refs) in values {
                bytes += value.len() + refs.capacity() * 8 + NODE_BYTES;
            }
        }
        bytes
    }
}

impl PostingsSource for MemPostings {
    type Error = std::convert::Infallible;

    fn all_postings(&self) -> Result<Vec<SeriesRef>, Self::Error> {
        Ok(self.all.clone())
    }

    fn postings(&self, name: &str, value: &str) -> Result<Vec<SeriesRef>, Self::Error> {
        Ok(self
            .by_name
            .get(name)
            .and_then(|values| values.get(value))
            .cloned()
            .unwrap_or_default())
    }

    fn postings_where(
        &self,
        name: &str,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Vec<SeriesRef>>, Self::Error> {
        Ok(self
            .values(name)
            .filter(|(v, _)| keep(v))
            .map(|(_, refs)| refs.to_vec())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(name, op, value).unwrap()
    }

    fn index() -> (MemPostings, Vec<Labels>) {
        let series = vec![
            l(&[("__name__", "up"), ("job", "api"), ("zone", "a")]),
            l(&[("__name__", "up"), ("job", "web")]),
            l(&[("__name__", "up"), ("job", "db"), ("zone", "b")]),
            l(&[("__name__", "errors"), ("job", "api")]),
        ];
        let mut p = MemPostings::default();
        for (i, s) in series.iter().enumerate() {
            p.add(i as SeriesRef, s);
        }
        (p, series)
    }

    fn sel(p: &MemPostings, ms: &[Matcher]) -> Vec<SeriesRef> {
        check_matchers(ms).unwrap();
        select(p, ms).unwrap()
    }

    #[test]
    fn matchers_select_like_prometheus() {
        let (p, _) = index();
        let up = m("__name__", MatchOp::Equal, "up");
        assert_eq!(sel(&p, std::slice::from_ref(&up)), vec![0, 1, 2]);
        assert_eq!(
            sel(&p, &[up.clone(), m("zone", MatchOp::Equal, "")]),
            vec![1]
        );
        assert_eq!(
            sel(&p, &[up.clone(), m("zone", MatchOp::NotEqual, "a")]),
            vec![1, 2]
        );
        assert_eq!(
            sel(&p, &[up.clone(), m("zone", MatchOp::NotEqual, "")]),
            vec![0, 2]
        );
        assert_eq!(
            sel(&p, &[m("job", MatchOp::Regex, "api|db")]),
            vec![0, 2, 3]
        );
        assert_eq!(
            sel(&p, &[up.clone(), m("job", MatchOp::NotRegex, "a.*")]),
            vec![1, 2]
        );
        assert_eq!(sel(&p, &[up, m("zone", MatchOp::Regex, "a|")]), vec![0, 1]);
        assert_eq!(
            sel(&p, &[m("job", MatchOp::Equal, "nope")]),
            Vec::<SeriesRef>::new()
        );
        assert_eq!(sel(&p, &[]), vec![0, 1, 2, 3]);
    }

    #[test]
    fn selectors_matching_only_empty_are_refused() {
        assert_eq!(
            check_matchers(&[
                m("zone", MatchOp::Equal, ""),
                m("job", MatchOp::Regex, ".*")
            ]),
            Err(EmptyMatchersError)
        );
        assert!(check_matchers(&[m("job", MatchOp::Regex, ".+")]).is_ok());
    }

    #[test]
    fn removal_drops_empty_lists() {
        let (mut p, series) = index();
        let removed: Vec<(SeriesRef, &Labels)> = vec![(0, &series[0]), (2, &series[2])];
        p.remove(&removed);
        assert_eq!(p.label_names().collect::<Vec<_>>(), vec!["__name__", "job"]);
        assert_eq!(sel(&p, &[m("__name__", MatchOp::Regex, ".+")]), vec![1, 3]);
    }

    fn arb_matcher() -> impl Strategy<Value = Matcher> {
        let op = prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::Regex),
            Just(MatchOp::NotRegex)
        ];
        (
            "[abc]",
            op,
            prop_oneof![
                "[xyz]?",
                Just("x|y".to_string()),
                Just(".*".to_string()),
                Just(".+".to_string())
            ],
        )
            .prop_map(|(n, op, v)| m(&n, op, &v))
    }

    proptest! {
        #[test]
        fn selection_equals_filtering(
            series in prop::collection::vec(prop::collection::vec(("[abc]", "[xyz]"), 0..3), 0..20),
            matchers in prop::collection::vec(arb_matcher(), 0..4),
        ) {
            let series: Vec<Labels> = series.into_iter().map(Labels::new).collect();
            let mut p = MemPostings::default();
            for (i, s) in series.iter().enumerate() {
                p.add(i as SeriesRef, s);
            }
            if check_matchers(&matchers).is_ok() {
                let expected: Vec<SeriesRef> = (0..series.len() as SeriesRef)
                    .filter(|&i| matchers.iter().all(|m| m.matches_labels(&series[i as usize])))
                    .collect();
                prop_assert_eq!(select(&p, &matchers).unwrap(), expected);
            }
        }
    }
}
