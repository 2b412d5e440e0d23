//! A linearizability checker for histories of a key-value store, in the
//! style of Wing & Gong with Lowe's just-in-time linearization and a cache of
//! visited (linearized set, state) pairs, as Porcupine and Knossos do.
//!
//! A KV history is checked key by key (linearizability is compositional):
//! each key is a register whose operations are writes and reads.
//! Operations whose outcome is unknown (the client gave up: the write may or
//! may not have happened) have no return event; the checker may linearize
//! them anywhere after their call, or not at all. Reads with unknown outcome
//! carry no information and should be left out of the history.

use std::collections::{BTreeMap, HashSet};

/// One operation on one key, as a client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub kind: OpKind,
    /// When the client called (any monotonic clock, same for all clients).
    pub call: u64,
    /// When it returned; `None` if the outcome is unknown.
    pub ret: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Wrote this value (values are unique per history).
    Write(String),
    /// Read this value (`None`: the key did not exist).
    Read(Option<String>),
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub operations: usize,
}

/// Checks every key's history; returns the first key that has no
/// linearization.
pub fn check(history: &[Operation]) -> Result<(), Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        let ops = settle_unknown_writes(&ops);
        let ops: Vec<&Operation> = ops.iter().collect();
        if !check_register(&ops) {
            return Err(Violation {
                key: key.to_string(),
                operations: ops.len(),
            });
        }
    }
    Ok(())
}

/// Removes the uncertainty the reads already resolved, which keeps the
/// search polynomial: with k writes of unknown outcome open to the end of
/// the history every later operation overlaps them and the search meets up
/// to 2^k subsets of them.
///
/// Both rewrites keep the set of linearizable histories the same, because
/// written values are unique:
/// - an unknown write whose value no read returned is left out: a
///   linearization that places it has no read between it and the next
///   write (such a read would have returned its value), so taking it out
///   leaves a valid linearization, and an unknown write may not happen;
/// - an unknown write whose value a read returned did happen, before that
///   read's linearization point and so before the read returned: it
///   becomes a known write returning when the earliest such read returned.
fn settle_unknown_writes(ops: &[&Operation]) -> Vec<Operation> {
    let mut first_seen: BTreeMap<&str, u64> = BTreeMap::new();
    for op in ops {
        if let (OpKind::Read(Some(v)), Some(ret)) = (&op.kind, op.ret) {
            let at = first_seen.entry(v.as_str()).or_insert(ret);
            *at = (*at).min(ret);
        }
    }
    ops.iter()
        .filter_map(|op| match (&op.kind, op.ret) {
            (OpKind::Write(v), None) => first_seen.get(v.as_str()).map(|&seen| Operation {
                // A read that returned before the write was called saw a
                // value nobody had written yet: keep it unlinearizable.
                ret: Some(seen.max(op.call)),
                ..(*op).clone()
            }),
            _ => Some((*op).clone()),
        })
        .collect()
}

/// An entry of the event list: the call or the return of operation `op`.
#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    time: u64,
}

/// The register model: a write always succeeds; a read must see the value.
fn step(state: &Option<String>, op: &OpKind) -> Option<Option<String>> {
    match op {
        OpKind::Write(v) => Some(Some(v.clone())),
        OpKind::Read(seen) => (seen == state).then(|| state.clone()),
    }
}

fn check_register(ops: &[&Operation]) -> bool {
    // Events in time order; a return sorts after a call at the same time so
    // that touching operations count as concurrent.
    let mut events: Vec<Event> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push(Event {
            op: i,
            is_call: true,
            time: op.call,
        });
        if let Some(ret) = op.ret {
            events.push(Event {
                op: i,
                is_call: false,
                time: ret,
            });
        }
    }
    events.sort_by_key(|e| (e.time, !e.is_call));

    // A doubly linked list over `events` (index n is the head sentinel).
    let n = events.len();
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { n } else { i - 1 }).collect();
    next.push(if n == 0 { usize::MAX } else { 0 });
    prev.push(usize::MAX);
    if n > 0 {
        next[n - 1] = usize::MAX;
    }
    let mut return_of = vec![usize::MAX; ops.len()];
    for (i, e) in events.iter().enumerate() {
        if !e.is_call {
            return_of[e.op] = i;
        }
    }

    let unlink = |i: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        if nx != usize::MAX {
            prev[nx] = p;
        }
    };
    let relink = |i: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        if nx != usize::MAX {
            prev[nx] = i;
        }
    };

    let mut linearized = vec![false; ops.len()];
    let mut state: Option<String> = None;
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut cache: HashSet<(Vec<bool>, Option<String>)> = HashSet::new();
    let mut entry = next[n];
    loop {
        if entry == usize::MAX {
            // Only calls of unknown-outcome operations can remain: a known
            // operation's return would have been met first.
            return true;
        }
        let e = events[entry];
        if e.is_call {
            if let Some(new_state) = step(&state, &ops[e.op].kind) {
                linearized[e.op] = true;
                if cache.insert((linearized.clone(), new_state.clone())) {
                    stack.push((entry, state.clone()));
                    state = new_state;
                    unlink(entry, &mut next, &mut prev);
                    if return_of[e.op] != usize::MAX {
                        unlink(return_of[e.op], &mut next, &mut prev);
                    }
                    entry = next[n];
                    continue;
                }
                linearized[e.op] = false;
            }
            entry = next[entry];
        } else {
            // A return before its call was linearized: undo the last choice.
            let Some((call_entry, old_state)) = stack.pop() else {
                return false;
            };
            let op = events[call_entry].op;
            linearized[op] = false;
            state = old_state;
            if return_of[op] != usize::MAX {
                relink(return_of[op], &mut next, &mut prev);
            }
            relink(call_entry, &mut next, &mut prev);
            entry = next[call_entry];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: usize, v: &str, call: u64, ret: Option<u64>) -> Operation {
        Operation {
            client,
            key: "k".into(),
            kind: OpKind::Write(v.into()),
            call,
            ret,
        }
    }

    fn r(client: usize, v: Option<&str>, call: u64, ret: u64) -> Operation {
        Operation {
            client,
            key: "k".into(),
            kind: OpKind::Read(v.map(Into::into)),
            call,
            ret: Some(ret),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            r(0, None, 0, 1),
            w(0, "a", 2, Some(3)),
            r(1, Some("a"), 4, 5),
            w(1, "b", 6, Some(7)),
            r(0, Some("b"), 8, 9),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn concurrent_write_may_be_seen_or_not() {
        // The write overlaps both reads: old then new is fine.
        let h = vec![
            w(0, "a", 0, Some(1)),
            w(1, "b", 2, Some(10)),
            r(2, Some("a"), 3, 4),
            r(2, Some("b"), 5, 6),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn stale_read_after_completed_write_is_caught() {
        let h = vec![
            w(0, "a", 0, Some(1)),
            w(0, "b", 2, Some(3)),
            r(1, Some("a"), 4, 5),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn going_back_in_time_is_caught() {
        // new then old, both after the second write began: not linearizable.
        let h = vec![
            w(0, "a", 0, Some(1)),
            w(1, "b", 2, Some(10)),
            r(2, Some("b"), 3, 4),
            r(2, Some("a"), 5, 6),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn unknown_writes_may_take_effect_or_not() {
        let applied = vec![
            w(0, "a", 0, Some(1)),
            w(1, "b", 2, None),
            r(2, Some("b"), 5, 6),
        ];
        assert_eq!(check(&applied), Ok(()));
        let lost = vec![
            w(0, "a", 0, Some(1)),
            w(1, "b", 2, None),
            r(2, Some("a"), 5, 6),
        ];
        assert_eq!(check(&lost), Ok(()));
        // But a value nobody wrote is never fine.
        let invented = vec![w(0, "a", 0, Some(1)), r(2, Some("z"), 5, 6)];
        assert!(check(&invented).is_err());
    }

    #[test]
    fn an_observed_unknown_write_happened_before_the_read_returned() {
        // "b" was seen, so it took effect; reading "a" after that read
        // returned goes back in time.
        let h = vec![
            w(0, "a", 0, Some(1)),
            w(1, "b", 2, None),
            r(2, Some("b"), 3, 4),
            r(2, Some("a"), 5, 6),
        ];
        assert!(check(&h).is_err());
        // A value read before its write was called is still invented.
        let early = vec![r(2, Some("b"), 0, 1), w(1, "b", 2, None)];
        assert!(check(&early).is_err());
    }

    #[test]
    fn many_unknown_writes_check_quickly() {
        // 60 writes that never returned, interleaved with completed ones and
        // reads of the completed values: 2^60 subsets without settling.
        let mut h = Vec::new();
        for i in 0..60u64 {
            let t = i * 10;
            h.push(w(1, &format!("lost{i}"), t, None));
            h.push(w(0, &format!("v{i}"), t + 1, Some(t + 2)));
            h.push(r(2, Some(&format!("v{i}")), t + 3, t + 4));
        }
        assert_eq!(check(&h), Ok(()));
        h.push(r(2, Some("v3"), 10_000, 10_001));
        assert!(check(&h).is_err());
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut h = vec![w(0, "a", 0, Some(1)), r(1, Some("a"), 2, 3)];
        h.push(Operation {
            client: 2,
            key: "other".into(),
            kind: OpKind::Read(Some("x".into())),
            call: 0,
            ret: Some(1),
        });
        assert_eq!(check(&h).unwrap_err().key, "other");
    }
}
