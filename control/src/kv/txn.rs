//! Transactions: validation, the duplicate-key rule, compares, and the
//! check-then-write execution that makes a failed txn change nothing.

use std::collections::BTreeSet;

use super::error::KvError;
use super::limits::{TXN_DEPTH_MAX, TXN_OPS_MAX, TXN_OPS_TOTAL_MAX};
use super::store::{
    key_value, validate_key_range, validate_put, validate_range, validate_value, version_at,
    KvStore, Writer,
};
use super::types::{
    Compare, CompareResult, CompareTarget, Event, KeyRange, KeyValue, RequestOp, ResponseOp,
    Revision, TxnRequest, TxnResponse,
};

impl KvStore {
    /// Runs a txn atomically: all of its writes share one new revision, and
    /// an error leaves the store untouched.
    ///
    /// Checks run in this order: the request on its own (limits, keys, the
    /// duplicate-key rule), then, along the branches the compares select,
    /// each op in order against the current state.
    pub fn txn(&mut self, request: TxnRequest) -> Result<(TxnResponse, Vec<Event>), KvError> {
        let mut ops_total = 0;
        validate_txn(&request, 1, &mut ops_total)?;
        write_set(&request.success)?;
        write_set(&request.failure)?;
        self.check_txn(&request)?;
        let mut writer = Writer::new(self);
        let mut response = writer.execute_txn(request);
        let (revision, events) = writer.finish();
        response.revision = revision;
        Ok((response, events))
    }

    /// Checks the ops of the branches that will run.
    fn check_txn(&self, request: &TxnRequest) -> Result<(), KvError> {
        let succeeded = self.compares_hold(&request.compare);
        let ops = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        for op in ops {
            match op {
                RequestOp::Range(range) => self.check_read_revision(range.revision)?,
                RequestOp::Put(put) => self.check_put(put)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(nested) => self.check_txn(nested)?,
            }
        }
        Ok(())
    }

    /// Whether every compare holds at the store's revision, which during a
    /// txn is the state before it: etcd evaluates all compares of a txn,
    /// nested ones included, before its writes.
    fn compares_hold(&self, compares: &[Compare]) -> bool {
        compares.iter().all(|compare| self.compare_holds(compare))
    }

    fn compare_holds(&self, compare: &Compare) -> bool {
        let at = self.state.revision;
        let range = KeyRange::new(&compare.key, &compare.range_end);
        let mut found = false;
        for (key, history) in range.entries(&self.state.keys) {
            let Some(kv) = version_at(history, at).and_then(|v| key_value(key, v, false)) else {
                continue;
            };
            found = true;
            if !compare_key_value(compare, &kv) {
                return false;
            }
        }
        if found {
            return true;
        }
        // No key: nil and the empty value cannot be told apart, so a value
        // compare fails; the other fields compare as 0.
        !matches!(compare.target, CompareTarget::Value(_))
            && compare_key_value(compare, &KeyValue::default())
    }
}

fn compare_key_value(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Value(value) => kv.value.as_slice().cmp(value.as_slice()),
        CompareTarget::Version(version) => kv.version.cmp(version),
        CompareTarget::CreateRevision(revision) => kv.create_revision.cmp(revision),
        CompareTarget::ModRevision(revision) => kv.mod_revision.cmp(revision),
        CompareTarget::Lease(lease) => kv.lease.cmp(lease),
    };
    match compare.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

impl Writer<'_> {
    /// Runs the selected branch. The compares read the store's revision,
    /// which the writer leaves unchanged until it finishes, so they see the
    /// state before the txn exactly as `check_txn` did.
    pub(crate) fn execute_txn(&mut self, request: TxnRequest) -> TxnResponse {
        let succeeded = self.store.compares_hold(&request.compare);
        let ops = if succeeded {
            request.success
        } else {
            request.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(range) => ResponseOp::Range(self.range(&range)),
                RequestOp::Put(put) => ResponseOp::Put(self.put(put)),
                RequestOp::DeleteRange(delete) => {
                    ResponseOp::DeleteRange(self.delete_range(&delete))
                }
                RequestOp::Txn(nested) => ResponseOp::Txn(self.execute_txn(nested)),
            });
        }
        TxnResponse {
            succeeded,
            responses,
            revision: self.visible_revision(),
        }
    }
}

/// Checks a txn on its own: limits, keys and values, recursively.
fn validate_txn(request: &TxnRequest, depth: usize, ops_total: &mut usize) -> Result<(), KvError> {
    if depth > TXN_DEPTH_MAX {
        return Err(KvError::TxnTooDeep {
            depth,
            max: TXN_DEPTH_MAX,
        });
    }
    for ops in [
        request.compare.len(),
        request.success.len(),
        request.failure.len(),
    ] {
        if ops > TXN_OPS_MAX {
            return Err(KvError::TooManyTxnOps {
                ops,
                max: TXN_OPS_MAX,
            });
        }
        *ops_total += ops;
        if *ops_total > TXN_OPS_TOTAL_MAX {
            return Err(KvError::TxnTooLarge {
                max: TXN_OPS_TOTAL_MAX,
            });
        }
    }
    for compare in &request.compare {
        validate_compare(compare)?;
    }
    for op in request.success.iter().chain(&request.failure) {
        match op {
            RequestOp::Range(range) => {
                validate_range(range)?;
                check_revision_sign(range.revision)?;
            }
            RequestOp::Put(put) => validate_put(put)?,
            RequestOp::DeleteRange(delete) => validate_key_range(&delete.key, &delete.range_end)?,
            RequestOp::Txn(nested) => validate_txn(nested, depth + 1, ops_total)?,
        }
    }
    Ok(())
}

fn validate_compare(compare: &Compare) -> Result<(), KvError> {
    validate_key_range(&compare.key, &compare.range_end)?;
    if let CompareTarget::Value(value) = &compare.target {
        validate_value(value)?;
    }
    Ok(())
}

fn check_revision_sign(revision: Revision) -> Result<(), KvError> {
    if revision < 0 {
        return Err(KvError::NegativeRevision {
            requested: revision,
        });
    }
    Ok(())
}

/// The keys a list of ops may put and the ranges it may delete.
#[derive(Default)]
struct WriteSet<'r> {
    puts: BTreeSet<&'r [u8]>,
    deletes: Vec<KeyRange<'r>>,
}

impl<'r> WriteSet<'r> {
    fn deletes_key(&self, key: &[u8]) -> bool {
        self.deletes.iter().any(|range| range.contains(key))
    }

    /// Adds the writes of a later op, failing if a key would be written
    /// twice. Deleting a range twice is fine: the second delete finds
    /// nothing the first left.
    fn merge(&mut self, later: WriteSet<'r>) -> Result<(), KvError> {
        for &key in &later.puts {
            if self.puts.contains(key) || self.deletes_key(key) {
                return Err(duplicate(key));
            }
        }
        for &key in &self.puts {
            if later.deletes_key(key) {
                return Err(duplicate(key));
            }
        }
        self.puts.extend(later.puts);
        self.deletes.extend(later.deletes);
        Ok(())
    }
}

fn duplicate(key: &[u8]) -> KvError {
    KvError::DuplicateKey { key: key.to_vec() }
}

/// The writes of `ops`, failing if one execution could write a key twice.
///
/// This is etcd's rule (a key put twice, or put inside a deleted range),
/// applied statically to both branches of every nested txn. The branches of
/// one txn exclude each other, so they may overlap; everything else in the
/// list runs together. Unlike etcd it also compares the writes of sibling
/// nested txns in both directions: the store keeps one version per key and
/// revision.
fn write_set(ops: &[RequestOp]) -> Result<WriteSet<'_>, KvError> {
    let mut set = WriteSet::default();
    for op in ops {
        let op_writes = match op {
            RequestOp::Range(_) => continue,
            RequestOp::Put(put) => WriteSet {
                puts: BTreeSet::from([put.key.as_slice()]),
                deletes: Vec::new(),
            },
            RequestOp::DeleteRange(delete) => WriteSet {
                puts: BTreeSet::new(),
                deletes: vec![KeyRange::new(&delete.key, &delete.range_end)],
            },
            RequestOp::Txn(nested) => {
                let mut either = write_set(&nested.success)?;
                let failure = write_set(&nested.failure)?;
                either.puts.extend(failure.puts);
                either.deletes.extend(failure.deletes);
                either
            }
        };
        set.merge(op_writes)?;
    }
    Ok(set)
}
