//! Unit tests of every operation, including etcd's edge cases.

use super::limits::{
    KEY_BYTES_MAX, LEASE_TTL_MS_MAX, TXN_DEPTH_MAX, TXN_OPS_MAX, TXN_OPS_TOTAL_MAX, VALUE_BYTES_MAX,
};
use super::*;

fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    }
}

fn put(store: &mut KvStore, key: &str, value: &str) -> PutResponse {
    store.put(put_request(key, value)).expect("put").0
}

fn put_with_lease(store: &mut KvStore, key: &str, lease: LeaseId) -> Vec<Event> {
    let request = PutRequest {
        lease,
        ..put_request(key, "v")
    };
    store.put(request).expect("put with lease").1
}

fn delete_request(key: &str, range_end: &[u8]) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.to_vec(),
        prev_kv: true,
    }
}

fn range_request(key: &str, range_end: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: range_end.to_vec(),
        ..RangeRequest::default()
    }
}

fn get(store: &KvStore, key: &str) -> Option<KeyValue> {
    store
        .range(&range_request(key, b""))
        .expect("get")
        .kvs
        .into_iter()
        .next()
}

fn get_at(store: &KvStore, key: &str, revision: Revision) -> Result<Option<KeyValue>, KvError> {
    let request = RangeRequest {
        revision,
        ..range_request(key, b"")
    };
    Ok(store.range(&request)?.kvs.into_iter().next())
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn all_keys(store: &KvStore) -> Vec<String> {
    keys(&store.range(&range_request("\0", &[0])).expect("range all"))
}

fn compare(key: &str, target: CompareTarget, result: CompareResult) -> Compare {
    Compare {
        key: key.into(),
        range_end: Vec::new(),
        target,
        result,
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(put_request(key, value))
}

fn delete_op(key: &str, range_end: &[u8]) -> RequestOp {
    RequestOp::DeleteRange(delete_request(key, range_end))
}

fn range_op(key: &str, range_end: &[u8]) -> RequestOp {
    RequestOp::Range(range_request(key, range_end))
}

// ---- revisions and versions ----

#[test]
fn empty_store_is_at_revision_one_and_first_put_makes_two() {
    let mut store = KvStore::new();
    assert_eq!(store.revision(), 1);
    let empty = store.range(&range_request("a", b"")).expect("range");
    assert_eq!(empty.revision, 1);
    assert_eq!(empty.count, 0);
    assert_eq!(put(&mut store, "a", "1").revision, 2);
    assert_eq!(store.revision(), 2);
    assert_eq!(
        store
            .range(&range_request("a", b""))
            .expect("range")
            .revision,
        2
    );
}

#[test]
fn versions_and_revisions_across_put_delete_put() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    let kv = get(&store, "a").expect("a exists");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    let (deleted, _) = store
        .delete_range(&delete_request("a", b""))
        .expect("delete");
    assert_eq!((deleted.revision, deleted.deleted), (4, 1));
    assert_eq!(get(&store, "a"), None);
    put(&mut store, "a", "3");
    let kv = get(&store, "a").expect("a recreated");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    assert_eq!(kv.value, b"3");
}

#[test]
fn put_returns_prev_kv_only_when_asked() {
    let mut store = KvStore::new();
    let first = store
        .put(PutRequest {
            prev_kv: true,
            ..put_request("a", "1")
        })
        .expect("put")
        .0;
    assert_eq!(first.prev_kv, None);
    let second = store
        .put(PutRequest {
            prev_kv: true,
            ..put_request("a", "2")
        })
        .expect("put")
        .0;
    assert_eq!(second.prev_kv.map(|kv| kv.value), Some(b"1".to_vec()));
    assert_eq!(put(&mut store, "a", "3").prev_kv, None);
}

#[test]
fn deleting_nothing_keeps_the_revision() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let (response, events) = store
        .delete_range(&delete_request("b", b""))
        .expect("delete");
    assert_eq!((response.revision, response.deleted), (2, 0));
    assert!(events.is_empty());
    assert_eq!(store.revision(), 2);
}

#[test]
fn delete_range_deletes_every_key_at_one_revision() {
    let mut store = KvStore::new();
    for key in ["a", "b", "c", "d"] {
        put(&mut store, key, key);
    }
    let (response, events) = store
        .delete_range(&delete_request("b", b"d"))
        .expect("delete");
    assert_eq!((response.revision, response.deleted), (6, 2));
    let deleted: Vec<_> = response.prev_kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(deleted, vec![b"b".to_vec(), b"c".to_vec()]);
    assert!(events.iter().all(|event| event.revision() == 6));
    assert_eq!(all_keys(&store), ["a", "d"]);
}

// ---- ranges ----

#[test]
fn range_limit_count_more_keys_only_and_count_only() {
    let mut store = KvStore::new();
    for key in ["a", "b", "c"] {
        put(&mut store, key, "value");
    }
    let limited = store
        .range(&RangeRequest {
            limit: 2,
            ..range_request("a", b"z")
        })
        .expect("range");
    assert_eq!(keys(&limited), ["a", "b"]);
    assert_eq!((limited.count, limited.more), (3, true));
    let exact = store
        .range(&RangeRequest {
            limit: 3,
            ..range_request("a", b"z")
        })
        .expect("range");
    assert_eq!((exact.kvs.len(), exact.more), (3, false));
    let keys_only = store
        .range(&RangeRequest {
            keys_only: true,
            ..range_request("a", b"z")
        })
        .expect("range");
    assert!(keys_only
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty() && kv.version == 1));
    let count_only = store
        .range(&RangeRequest {
            count_only: true,
            limit: 1,
            ..range_request("a", b"z")
        })
        .expect("range");
    assert_eq!(
        (count_only.kvs.len(), count_only.count, count_only.more),
        (0, 3, false)
    );
}

#[test]
fn range_end_zero_byte_and_prefix_end() {
    let mut store = KvStore::new();
    for key in ["a", "ab", "abc", "b", "\u{7f}"] {
        put(&mut store, key, "v");
    }
    let from_b = store.range(&range_request("ab", &[0])).expect("range");
    assert_eq!(keys(&from_b), ["ab", "abc", "b", "\u{7f}"]);
    let prefix = store
        .range(&range_request("ab", &prefix_end(b"ab")))
        .expect("range");
    assert_eq!(keys(&prefix), ["ab", "abc"]);
    assert_eq!(prefix_end(b"ab"), b"ac");
    assert_eq!(prefix_end(b"a\xff"), b"b");
    assert_eq!(prefix_end(b"a\xfe\xff\xff"), b"a\xff");
    assert_eq!(prefix_end(b"\xff\xff"), [0]);
    assert_eq!(prefix_end(b""), [0]);
}

#[test]
fn inverted_and_empty_ranges_return_nothing() {
    let mut store = KvStore::new();
    put(&mut store, "b", "v");
    for (key, end) in [("c", &b"a"[..]), ("b", b"b")] {
        let response = store.range(&range_request(key, end)).expect("range");
        assert_eq!(response.count, 0);
        let (deleted, _) = store
            .delete_range(&delete_request(key, end))
            .expect("delete");
        assert_eq!(deleted.deleted, 0);
    }
}

#[test]
fn reads_at_past_revisions_see_the_state_then() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "1");
    put(&mut store, "a", "2");
    store
        .delete_range(&delete_request("b", b""))
        .expect("delete");
    assert_eq!(get_at(&store, "a", 1), Ok(None));
    assert_eq!(
        get_at(&store, "a", 2).expect("read").map(|kv| kv.value),
        Some(b"1".to_vec())
    );
    assert_eq!(
        get_at(&store, "b", 4)
            .expect("read")
            .map(|kv| kv.mod_revision),
        Some(3)
    );
    assert_eq!(get_at(&store, "b", 5), Ok(None));
    let past = store
        .range(&RangeRequest {
            revision: 3,
            ..range_request("a", &[0])
        })
        .expect("range");
    assert_eq!(keys(&past), ["a", "b"]);
    assert_eq!(past.revision, 5, "the header carries the current revision");
}

#[test]
fn reads_at_bad_revisions_fail() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    assert_eq!(
        get_at(&store, "a", 3),
        Err(KvError::FutureRevision {
            requested: 3,
            current: 2
        })
    );
    assert_eq!(
        get_at(&store, "a", -1),
        Err(KvError::NegativeRevision { requested: -1 })
    );
}

// ---- compaction ----

#[test]
fn compaction_keeps_the_compacted_revision_readable() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "a", "2"); // 3
    put(&mut store, "b", "1"); // 4
    store
        .delete_range(&delete_request("b", b""))
        .expect("delete"); // 5
    put(&mut store, "a", "3"); // 6
    store.compact(5).expect("compact");
    assert_eq!(store.compacted_revision(), 5);
    assert_eq!(
        get_at(&store, "a", 4),
        Err(KvError::Compacted {
            requested: 4,
            compacted: 5
        })
    );
    assert_eq!(
        get_at(&store, "a", 5).expect("read").map(|kv| kv.value),
        Some(b"2".to_vec())
    );
    assert_eq!(get_at(&store, "b", 5), Ok(None));
    assert_eq!(get(&store, "a").map(|kv| kv.version), Some(3));
    // b's tombstone at exactly 5 stays so that watchers from 5 see it.
    let events = store.events_since(5, b"\0", &[0]).expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].kind, events[0].prev_kv.clone()),
        (EventKind::Delete, None)
    );
    store.compact(6).expect("compact again");
    assert_eq!(all_keys(&store), ["a"]);
    assert_eq!(store.state.keys.len(), 1, "b's history is gone entirely");
    assert_eq!(store.state.keys[b"a".as_slice()].len(), 1);
}

#[test]
fn compaction_rejects_old_and_future_revisions() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    assert_eq!(
        store.compact(4),
        Err(KvError::FutureRevision {
            requested: 4,
            current: 3
        })
    );
    store.compact(2).expect("compact");
    for revision in [0, 1, 2] {
        assert_eq!(
            store.compact(revision),
            Err(KvError::Compacted {
                requested: revision,
                compacted: 2
            })
        );
    }
    assert_eq!(store.compact(3).map(|response| response.revision), Ok(3));
}

// ---- put options ----

#[test]
fn ignore_value_and_ignore_lease_reuse_the_current_ones() {
    let mut store = KvStore::new();
    let lease = store.lease_grant(0, 1000, 0).expect("grant").id;
    store
        .put(PutRequest {
            lease,
            ..put_request("a", "1")
        })
        .expect("put");
    store
        .put(PutRequest {
            ignore_value: true,
            ignore_lease: true,
            ..put_request("a", "")
        })
        .expect("put ignoring value and lease");
    let kv = get(&store, "a").expect("a exists");
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"1"[..], lease, 2)
    );
    store
        .put(PutRequest {
            ignore_value: true,
            ..put_request("a", "")
        })
        .expect("put ignoring value");
    assert_eq!(get(&store, "a").map(|kv| kv.lease), Some(NO_LEASE));
    let missing = PutRequest {
        ignore_value: true,
        ..put_request("b", "")
    };
    assert_eq!(
        store.put(missing),
        Err(KvError::KeyNotFound { key: b"b".to_vec() })
    );
    let value_given = PutRequest {
        ignore_value: true,
        ..put_request("a", "x")
    };
    assert_eq!(store.put(value_given), Err(KvError::ValueProvided));
    let lease_given = PutRequest {
        ignore_lease: true,
        lease,
        ..put_request("a", "x")
    };
    assert_eq!(store.put(lease_given), Err(KvError::LeaseProvided));
}

#[test]
fn put_with_a_missing_lease_fails_and_changes_nothing() {
    let mut store = KvStore::new();
    let before = store.clone();
    let request = PutRequest {
        lease: 7,
        ..put_request("a", "1")
    };
    assert_eq!(store.put(request), Err(KvError::LeaseNotFound { id: 7 }));
    assert_eq!(store, before);
}

#[test]
fn limits_are_enforced_with_named_errors() {
    let mut store = KvStore::new();
    assert_eq!(store.put(put_request("", "v")), Err(KvError::EmptyKey));
    assert_eq!(store.range(&range_request("", b"")), Err(KvError::EmptyKey));
    let long_key = "k".repeat(KEY_BYTES_MAX + 1);
    assert_eq!(
        store.put(put_request(&long_key, "v")),
        Err(KvError::KeyTooLarge {
            bytes: KEY_BYTES_MAX + 1,
            max: KEY_BYTES_MAX
        })
    );
    let long_value = "v".repeat(VALUE_BYTES_MAX + 1);
    assert_eq!(
        store.put(put_request("a", &long_value)),
        Err(KvError::ValueTooLarge {
            bytes: VALUE_BYTES_MAX + 1,
            max: VALUE_BYTES_MAX
        })
    );
    let long_end = vec![b'z'; KEY_BYTES_MAX + 1];
    assert_eq!(
        store.delete_range(&delete_request("a", &long_end)),
        Err(KvError::RangeEndTooLarge {
            bytes: KEY_BYTES_MAX + 1,
            max: KEY_BYTES_MAX
        })
    );
    assert!(store
        .put(put_request(&"k".repeat(KEY_BYTES_MAX), "v"))
        .is_ok());
    let error = KvError::KeyTooLarge { bytes: 9, max: 8 }.to_string();
    assert!(error.contains("KEY_BYTES_MAX"), "{error}");
}

#[test]
fn txn_limits_are_enforced() {
    let mut store = KvStore::new();
    let many: Vec<_> = (0..=TXN_OPS_MAX)
        .map(|i| range_op(&format!("k{i}"), b""))
        .collect();
    assert_eq!(
        store.txn(txn(vec![], many, vec![])),
        Err(KvError::TooManyTxnOps {
            ops: TXN_OPS_MAX + 1,
            max: TXN_OPS_MAX
        })
    );
    let mut deep = txn(vec![], vec![], vec![]);
    for _ in 0..TXN_DEPTH_MAX {
        deep = txn(vec![], vec![RequestOp::Txn(deep)], vec![]);
    }
    assert_eq!(
        store.txn(deep),
        Err(KvError::TxnTooDeep {
            depth: TXN_DEPTH_MAX + 1,
            max: TXN_DEPTH_MAX
        })
    );
    let full: Vec<_> = (0..TXN_OPS_MAX)
        .map(|i| range_op(&format!("k{i}"), b""))
        .collect();
    let nested = txn(vec![], full.clone(), full.clone());
    let wide: Vec<_> = (0..TXN_OPS_TOTAL_MAX / (2 * TXN_OPS_MAX) + 1)
        .map(|_| RequestOp::Txn(nested.clone()))
        .collect();
    assert_eq!(
        store.txn(txn(vec![], wide, vec![])),
        Err(KvError::TxnTooLarge {
            max: TXN_OPS_TOTAL_MAX
        })
    );
}

// ---- txn ----

#[test]
fn compares_on_missing_keys_follow_etcd() {
    let store = KvStore::new();
    let cases = [
        (CompareTarget::Version(0), CompareResult::Equal, true),
        (CompareTarget::CreateRevision(0), CompareResult::Equal, true),
        (CompareTarget::ModRevision(1), CompareResult::Less, true),
        (CompareTarget::Lease(0), CompareResult::Equal, true),
        (CompareTarget::Version(0), CompareResult::Greater, false),
        (
            CompareTarget::Value(Vec::new()),
            CompareResult::Equal,
            false,
        ),
        (
            CompareTarget::Value(Vec::new()),
            CompareResult::NotEqual,
            false,
        ),
        (
            CompareTarget::Value(b"x".to_vec()),
            CompareResult::Less,
            false,
        ),
    ];
    for (target, result, expected) in cases {
        let request = txn(
            vec![compare("missing", target.clone(), result)],
            vec![],
            vec![],
        );
        let succeeded = store.clone().txn(request).expect("txn").0.succeeded;
        assert_eq!(succeeded, expected, "{target:?} {result:?}");
    }
}

#[test]
fn compares_over_a_range_need_every_key() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    let over = |result, value: &str, range_end: &[u8]| Compare {
        range_end: range_end.to_vec(),
        ..compare("a", CompareTarget::Value(value.into()), result)
    };
    let cases = [
        (over(CompareResult::Greater, "0", b"c"), true),
        (over(CompareResult::Greater, "1", b"c"), false),
        (over(CompareResult::Less, "3", &[0]), true),
        (over(CompareResult::Equal, "1", b"b"), true),
        // An empty range behaves like a missing key.
        (over(CompareResult::NotEqual, "1", b"a"), false),
    ];
    for (guard, expected) in cases {
        let request = txn(vec![guard.clone()], vec![], vec![]);
        let succeeded = store.clone().txn(request).expect("txn").0.succeeded;
        assert_eq!(succeeded, expected, "{guard:?}");
    }
    let empty_range_version = Compare {
        range_end: b"a".to_vec(),
        ..compare("a", CompareTarget::Version(0), CompareResult::Equal)
    };
    let request = txn(vec![empty_range_version], vec![], vec![]);
    assert!(store.txn(request).expect("txn").0.succeeded);
}

#[test]
fn txn_reads_its_own_writes_at_one_revision() {
    let mut store = KvStore::new();
    put(&mut store, "a", "old");
    put(&mut store, "c", "doomed");
    let request = txn(
        vec![compare(
            "a",
            CompareTarget::Value(b"old".to_vec()),
            CompareResult::Equal,
        )],
        vec![
            range_op("a", b""),
            put_op("a", "new"),
            range_op("a", b""),
            put_op("b", "1"),
            delete_op("c", b""),
            range_op("a", b"d"),
        ],
        vec![],
    );
    let (response, events) = store.txn(request).expect("txn");
    assert!(response.succeeded);
    assert_eq!(response.revision, 4);
    let ranges: Vec<(Vec<String>, Revision)> = response
        .responses
        .iter()
        .filter_map(|op| match op {
            ResponseOp::Range(range) => Some((keys(range), range.revision)),
            _ => None,
        })
        .collect();
    let strings = |keys: &[&str]| keys.iter().map(|key| key.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ranges,
        vec![
            (strings(&["a"]), 3),
            (strings(&["a"]), 4),
            (strings(&["a", "b"]), 4),
        ]
    );
    let ResponseOp::Range(after_put) = &response.responses[2] else {
        panic!("third response is a range");
    };
    assert_eq!(after_put.kvs[0].value, b"new");
    let ResponseOp::Put(put_response) = &response.responses[1] else {
        panic!("second response is a put");
    };
    assert_eq!(put_response.revision, 4);
    let kinds: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.kv.key.clone(), e.revision()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Put, b"a".to_vec(), 4),
            (EventKind::Put, b"b".to_vec(), 4),
            (EventKind::Delete, b"c".to_vec(), 4)
        ]
    );
    assert_eq!(store.revision(), 4);
    assert_eq!(all_keys(&store), ["a", "b"]);
}

#[test]
fn txn_runs_the_failure_branch_and_read_only_txns_keep_the_revision() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let request = txn(
        vec![compare(
            "a",
            CompareTarget::Version(5),
            CompareResult::Equal,
        )],
        vec![put_op("b", "success")],
        vec![range_op("a", b"")],
    );
    let (response, events) = store.txn(request).expect("txn");
    assert!(!response.succeeded);
    assert_eq!(response.revision, 2);
    assert!(events.is_empty());
    assert_eq!(store.revision(), 2);
    assert_eq!(get(&store, "b"), None);
}

#[test]
fn txn_rejects_duplicate_keys() {
    let cases = [
        vec![put_op("a", "1"), put_op("a", "2")],
        vec![delete_op("a", b"c"), put_op("b", "1")],
        vec![put_op("b", "1"), delete_op("a", b"c")],
        vec![
            RequestOp::Txn(txn(vec![], vec![put_op("a", "1")], vec![])),
            put_op("a", "2"),
        ],
        vec![
            RequestOp::Txn(txn(vec![], vec![put_op("a", "1")], vec![])),
            RequestOp::Txn(txn(vec![], vec![], vec![delete_op("a", b"")])),
        ],
    ];
    for success in cases {
        let mut store = KvStore::new();
        let request = txn(vec![], success.clone(), vec![]);
        let error = store.txn(request).expect_err("duplicate");
        assert!(matches!(error, KvError::DuplicateKey { .. }), "{success:?}");
        assert!(error
            .to_string()
            .contains("duplicate key given in txn request"));
        // The duplicate is found even in the branch that would not run.
        let request = txn(vec![], vec![], success);
        assert!(store.txn(request).is_err());
        assert_eq!(store.revision(), 1);
    }
}

#[test]
fn txn_allows_exclusive_branches_and_repeated_deletes() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let nested = txn(
        vec![compare(
            "a",
            CompareTarget::Version(1),
            CompareResult::Equal,
        )],
        vec![put_op("b", "then")],
        vec![put_op("b", "else")],
    );
    let request = txn(
        vec![],
        vec![
            RequestOp::Txn(nested),
            delete_op("a", b""),
            delete_op("a", b"b"),
        ],
        vec![],
    );
    let (response, events) = store.txn(request).expect("txn");
    assert_eq!(events.len(), 2);
    let ResponseOp::DeleteRange(second) = &response.responses[2] else {
        panic!("third response is a delete");
    };
    assert_eq!(second.deleted, 0);
    assert_eq!(get(&store, "b").map(|kv| kv.value), Some(b"then".to_vec()));
}

#[test]
fn nested_compares_see_the_state_before_the_txn() {
    let mut store = KvStore::new();
    let nested = txn(
        vec![compare(
            "a",
            CompareTarget::Version(0),
            CompareResult::Equal,
        )],
        vec![put_op("b", "a was missing")],
        vec![put_op("b", "a existed")],
    );
    let request = txn(
        vec![],
        vec![put_op("a", "1"), RequestOp::Txn(nested)],
        vec![],
    );
    let (response, _) = store.txn(request).expect("txn");
    let ResponseOp::Txn(inner) = &response.responses[1] else {
        panic!("second response is a txn");
    };
    assert!(inner.succeeded);
    assert_eq!(inner.revision, 2);
    assert_eq!(
        get(&store, "b").map(|kv| kv.value),
        Some(b"a was missing".to_vec())
    );
}

#[test]
fn failing_txn_changes_nothing() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    let before = store.clone();
    let bad_lease = RequestOp::Put(PutRequest {
        lease: 99,
        ..put_request("c", "1")
    });
    let future_read = RequestOp::Range(RangeRequest {
        revision: 9,
        ..range_request("a", b"")
    });
    for late_failure in [bad_lease, future_read] {
        let request = txn(
            vec![],
            vec![put_op("b", "1"), delete_op("a", b""), late_failure],
            vec![],
        );
        assert!(store.txn(request).is_err());
        assert_eq!(store, before);
    }
}

// ---- leases ----

#[test]
fn lease_grant_picks_ids_and_validates() {
    let mut store = KvStore::new();
    assert_eq!(store.lease_grant(0, 100, 0).map(|r| r.id), Ok(1));
    assert_eq!(store.lease_grant(2, 100, 0).map(|r| r.id), Ok(2));
    assert_eq!(store.lease_grant(0, 100, 0).map(|r| r.id), Ok(3));
    assert_eq!(
        store.lease_grant(2, 100, 0),
        Err(KvError::LeaseExists { id: 2 })
    );
    assert_eq!(
        store.lease_grant(-1, 100, 0),
        Err(KvError::NegativeLeaseId { id: -1 })
    );
    for ttl_ms in [0, LEASE_TTL_MS_MAX + 1] {
        assert_eq!(
            store.lease_grant(0, ttl_ms, 0),
            Err(KvError::InvalidLeaseTtl {
                ttl_ms,
                max: LEASE_TTL_MS_MAX
            })
        );
    }
    store.lease_revoke(1).expect("revoke");
    // Automatic ids move forward rather than reusing a revoked one.
    assert_eq!(store.lease_grant(0, 100, 0).map(|r| r.id), Ok(4));
    assert_eq!(store.lease_ids(), [2, 3, 4]);
}

#[test]
fn lease_attach_detach_and_revoke() {
    let mut store = KvStore::new();
    let first = store.lease_grant(0, 1000, 0).expect("grant").id;
    let second = store.lease_grant(0, 1000, 0).expect("grant").id;
    put_with_lease(&mut store, "a", first);
    put_with_lease(&mut store, "b", first);
    put_with_lease(&mut store, "c", first);
    put_with_lease(&mut store, "b", second); // moves b
    put_with_lease(&mut store, "c", NO_LEASE); // detaches c
    put_with_lease(&mut store, "d", first);
    store
        .delete_range(&delete_request("d", b""))
        .expect("delete"); // detaches d
    let attached = |store: &KvStore, id| {
        store
            .lease_time_to_live(id, 0, true)
            .expect("time to live")
            .keys
    };
    assert_eq!(attached(&store, first), [b"a".to_vec()]);
    assert_eq!(attached(&store, second), [b"b".to_vec()]);
    let revision = store.revision();
    let (response, events) = store.lease_revoke(first).expect("revoke");
    assert_eq!(response.revision, revision + 1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Delete);
    assert_eq!(all_keys(&store), ["b", "c"]);
    assert_eq!(
        store.lease_time_to_live(first, 0, false),
        Err(KvError::LeaseNotFound { id: first })
    );
    assert_eq!(
        store.lease_revoke(first),
        Err(KvError::LeaseNotFound { id: first })
    );
    let empty = store.lease_grant(0, 1000, 0).expect("grant").id;
    let unchanged = store.revision();
    assert_eq!(
        store.lease_revoke(empty).map(|(r, _)| r.revision),
        Ok(unchanged)
    );
}

#[test]
fn lease_revoke_deletes_every_key_at_one_revision() {
    let mut store = KvStore::new();
    let lease = store.lease_grant(0, 1000, 0).expect("grant").id;
    for key in ["x", "y", "z"] {
        put_with_lease(&mut store, key, lease);
    }
    let (response, events) = store.lease_revoke(lease).expect("revoke");
    assert_eq!(response.revision, 5);
    assert_eq!(store.revision(), 5);
    let deleted: Vec<_> = events
        .iter()
        .map(|e| (e.kv.key.clone(), e.revision()))
        .collect();
    assert_eq!(
        deleted,
        [(b"x".to_vec(), 5), (b"y".to_vec(), 5), (b"z".to_vec(), 5)]
    );
    assert!(all_keys(&store).is_empty());
}

#[test]
fn lease_keep_alive_time_to_live_and_expiry() {
    let mut store = KvStore::new();
    let short = store.lease_grant(10, 100, 1000).expect("grant").id;
    let long = store.lease_grant(5, 500, 1000).expect("grant").id;
    let same_deadline = store.lease_grant(3, 100, 1000).expect("grant").id;
    let ttl = store.lease_time_to_live(short, 1040, false).expect("ttl");
    assert_eq!((ttl.granted_ttl_ms, ttl.remaining_ms), (100, 60));
    assert_eq!(store.expired_leases(1099), Vec::<LeaseId>::new());
    assert_eq!(store.expired_leases(1100), [same_deadline, short]);
    assert_eq!(store.expired_leases(2000), [same_deadline, short, long]);
    let renewed = store.lease_keep_alive(short, 1050).expect("keep alive");
    assert_eq!(renewed.ttl_ms, 100);
    assert_eq!(store.expired_leases(1100), [same_deadline]);
    assert_eq!(store.expired_leases(1500), [same_deadline, short, long]);
    assert_eq!(
        store.lease_keep_alive(same_deadline, 1100),
        Err(KvError::LeaseExpired { id: same_deadline })
    );
    let expired = store
        .lease_time_to_live(same_deadline, 5000, false)
        .expect("ttl");
    assert_eq!(expired.remaining_ms, 0);
    assert_eq!(
        store.lease_keep_alive(77, 0),
        Err(KvError::LeaseNotFound { id: 77 })
    );
}

// ---- events ----

#[test]
fn every_change_produces_events_with_its_revision() {
    let mut store = KvStore::new();
    let (_, created) = store.put(put_request("a", "1")).expect("put");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].kind, EventKind::Put);
    assert_eq!(created[0].kv.mod_revision, 2);
    assert_eq!(created[0].prev_kv, None);
    let (_, updated) = store.put(put_request("a", "2")).expect("put");
    assert_eq!(
        updated[0].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"1".to_vec())
    );
    let (_, deleted) = store
        .delete_range(&delete_request("a", b""))
        .expect("delete");
    let delete = &deleted[0];
    assert_eq!(delete.kind, EventKind::Delete);
    assert_eq!(
        delete.kv,
        KeyValue {
            key: b"a".to_vec(),
            mod_revision: 4,
            ..KeyValue::default()
        }
    );
    assert_eq!(delete.prev_kv.as_ref().map(|kv| kv.version), Some(2));
    let history = store.events_since(0, b"a", b"").expect("events");
    assert_eq!(history.last(), Some(delete));
}

#[test]
fn events_since_returns_history_in_order_for_the_range() {
    let mut store = KvStore::new();
    let mut all = Vec::new();
    all.extend(store.put(put_request("a", "1")).expect("put").1);
    all.extend(store.put(put_request("b", "1")).expect("put").1);
    let request = txn(vec![], vec![put_op("c", "1"), put_op("a", "2")], vec![]);
    all.extend(store.txn(request).expect("txn").1);
    all.extend(
        store
            .delete_range(&delete_request("a", b"c"))
            .expect("delete")
            .1,
    );
    assert_eq!(store.events_since(0, b"a", &[0]).expect("events"), all);
    let since_four: Vec<_> = all.iter().filter(|e| e.revision() >= 4).cloned().collect();
    assert_eq!(
        store.events_since(4, b"a", &[0]).expect("events"),
        since_four
    );
    let only_a: Vec<_> = all.iter().filter(|e| e.kv.key == b"a").cloned().collect();
    assert_eq!(store.events_since(1, b"a", b"").expect("events"), only_a);
    // Write order within a txn: c before a.
    let txn_keys: Vec<_> = all[2..4].iter().map(|e| e.kv.key.clone()).collect();
    assert_eq!(txn_keys, [b"c".to_vec(), b"a".to_vec()]);
    assert_eq!(store.events_since(99, b"a", &[0]).expect("events"), []);
}

#[test]
fn events_since_a_compacted_revision_fails() {
    let mut store = KvStore::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    put(&mut store, "a", "3");
    store.compact(3).expect("compact");
    assert_eq!(
        store.events_since(2, b"a", b""),
        Err(KvError::Compacted {
            requested: 2,
            compacted: 3
        })
    );
    let events = store.events_since(3, b"a", b"").expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].prev_kv, None, "the version before 3 is compacted");
    assert_eq!(
        events[1].prev_kv.as_ref().map(|kv| kv.mod_revision),
        Some(3)
    );
    let message = KvError::Compacted {
        requested: 2,
        compacted: 3,
    }
    .to_string();
    assert!(message.contains("compacted"), "{message}");
}

// ---- apply ----

#[test]
fn apply_dispatches_every_command() {
    let mut store = KvStore::new();
    let grant = store.apply(Command::LeaseGrant { id: 0, ttl_ms: 50 }, 10);
    assert_eq!(
        grant,
        Ok((
            CommandResponse::LeaseGrant(LeaseGrantResponse { id: 1, ttl_ms: 50 }),
            vec![]
        ))
    );
    let put_command = Command::Put(PutRequest {
        lease: 1,
        ..put_request("a", "1")
    });
    let (response, events) = store.apply(put_command, 20).expect("put");
    assert!(matches!(
        response,
        CommandResponse::Put(PutResponse { revision: 2, .. })
    ));
    assert_eq!(events.len(), 1);
    let keep_alive = store.apply(Command::LeaseKeepAlive { id: 1 }, 30);
    assert!(matches!(
        keep_alive,
        Ok((CommandResponse::LeaseKeepAlive(_), _))
    ));
    assert_eq!(store.expired_leases(79), Vec::<LeaseId>::new());
    assert_eq!(store.expired_leases(80), [1]);
    let txn_command = Command::Txn(txn(vec![], vec![put_op("b", "1")], vec![]));
    assert!(matches!(
        store.apply(txn_command, 40),
        Ok((CommandResponse::Txn(_), _))
    ));
    let delete_command = Command::DeleteRange(delete_request("b", b""));
    assert!(matches!(
        store.apply(delete_command, 50),
        Ok((
            CommandResponse::DeleteRange(DeleteRangeResponse { revision: 4, .. }),
            _
        ))
    ));
    assert_eq!(
        store.apply(Command::Compact(3), 60),
        Ok((
            CommandResponse::Compact(CompactResponse { revision: 4 }),
            vec![]
        ))
    );
    let (response, events) = store
        .apply(Command::LeaseRevoke { id: 1 }, 90)
        .expect("revoke");
    assert_eq!(
        response,
        CommandResponse::LeaseRevoke(LeaseRevokeResponse { revision: 5 })
    );
    assert_eq!(events.len(), 1);
    let before = store.clone();
    assert!(store.apply(Command::LeaseKeepAlive { id: 1 }, 100).is_err());
    assert!(store.apply(Command::Compact(3), 100).is_err());
    assert_eq!(store, before);
}

// ---- snapshots ----

fn sample_store() -> KvStore {
    let mut store = KvStore::new();
    let lease = store.lease_grant(0, 1000, 5).expect("grant").id;
    put_with_lease(&mut store, "a", lease);
    put(&mut store, "b", "1");
    put(&mut store, "b", "2");
    store
        .delete_range(&delete_request("a", b""))
        .expect("delete");
    put(&mut store, "c", "1");
    store.compact(4).expect("compact");
    put_with_lease(&mut store, "d", lease);
    store
}

#[test]
fn snapshot_round_trip_is_exact() {
    let store = sample_store();
    let bytes = store.to_snapshot().expect("encode");
    let restored = KvStore::from_snapshot(&bytes).expect("decode");
    assert_eq!(restored, store);
    assert_eq!(
        restored.events_since(4, b"\0", &[0]),
        store.events_since(4, b"\0", &[0])
    );
    let empty = KvStore::new();
    let restored = KvStore::from_snapshot(&empty.to_snapshot().expect("encode")).expect("decode");
    assert_eq!(restored, empty);
}

#[test]
fn damaged_snapshots_are_rejected() {
    let bytes = sample_store().to_snapshot().expect("encode");
    assert!(matches!(
        KvStore::from_snapshot(&bytes[..10]),
        Err(SnapshotError::Truncated { .. })
    ));
    assert!(matches!(
        KvStore::from_snapshot(&bytes[..bytes.len() - 1]),
        Err(SnapshotError::LengthMismatch { .. })
    ));
    let mut bad_magic = bytes.clone();
    bad_magic[0] ^= 1;
    assert!(matches!(
        KvStore::from_snapshot(&bad_magic),
        Err(SnapshotError::BadMagic)
    ));
    let mut bad_format = bytes.clone();
    bad_format[8] = 9;
    assert!(matches!(
        KvStore::from_snapshot(&bad_format),
        Err(SnapshotError::UnsupportedFormat { format: 9, .. })
    ));
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    assert!(matches!(
        KvStore::from_snapshot(&flipped),
        Err(SnapshotError::ChecksumMismatch { .. })
    ));
}

#[test]
fn inconsistent_states_are_rejected() {
    let store = sample_store();
    let mut missing_lease = store.clone();
    missing_lease.state.leases.clear();
    let mut out_of_order = store.clone();
    if let Some(history) = out_of_order.state.keys.get_mut(b"a".as_slice()) {
        history.reverse();
    }
    let mut future = store.clone();
    future.state.revision = 3;
    let mut bad_compaction = store.clone();
    bad_compaction.state.compacted_revision = 2;
    for broken in [missing_lease, out_of_order, future, bad_compaction] {
        let bytes = broken.to_snapshot().expect("encode");
        let result = KvStore::from_snapshot(&bytes);
        assert!(
            matches!(result, Err(SnapshotError::Inconsistent { .. })),
            "{broken:?} gave {result:?}"
        );
    }
}
