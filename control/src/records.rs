//! Guarded writes of resource records (buckets, volumes, load balancers)
//! through Raft: txns that create keys only if absent, change or delete them
//! only if unchanged since they were read, and may also require that a
//! prefix holds no keys, or no keys created after a count was taken (so a
//! limit on the number of records holds under concurrent writers).

use crate::kv::{
    prefix_end, Command, CommandResponse, Compare, CompareResult, CompareTarget,
    DeleteRangeRequest, KeyValue, PutRequest, RequestOp, TxnRequest,
};
use crate::rpc::Proposer;

/// Compare: `key` does not exist.
pub fn absent(key: &[u8]) -> Compare {
    Compare {
        key: key.to_vec(),
        range_end: Vec::new(),
        target: CompareTarget::Version(0),
        result: CompareResult::Equal,
    }
}

/// Compare: the record read as `kv` was not changed since.
pub fn unchanged(kv: &KeyValue) -> Compare {
    Compare {
        key: kv.key.clone(),
        range_end: Vec::new(),
        target: CompareTarget::ModRevision(kv.mod_revision),
        result: CompareResult::Equal,
    }
}

/// Compare: the key read as `kv` still exists and was not deleted and
/// created again since (it may have been changed).
pub fn still_exists(kv: &KeyValue) -> Compare {
    Compare {
        key: kv.key.clone(),
        range_end: Vec::new(),
        target: CompareTarget::CreateRevision(kv.create_revision),
        result: CompareResult::Equal,
    }
}

/// Compare: `key` holds exactly `value`.
pub fn holds(key: &[u8], value: &[u8]) -> Compare {
    Compare {
        key: key.to_vec(),
        range_end: Vec::new(),
        target: CompareTarget::Value(value.to_vec()),
        result: CompareResult::Equal,
    }
}

/// Compare: no key starts with `prefix`.
pub fn none_under(prefix: &[u8]) -> Compare {
    Compare {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        // Every live key has version >= 1; an empty range compares as 0.
        target: CompareTarget::Version(0),
        result: CompareResult::Equal,
    }
}

/// Compare: every key under `prefix` was created at or before `revision`.
/// With `revision` the newest creation among keys counted under `prefix`
/// (0 for none), it holds only while no key was added since the count.
pub fn none_created_after(prefix: &[u8], revision: i64) -> Compare {
    Compare {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        target: CompareTarget::CreateRevision(revision.saturating_add(1)),
        result: CompareResult::Less,
    }
}

/// The newest creation revision among `kvs` (0 when empty), for
/// [`none_created_after`].
pub fn newest_creation(kvs: &[KeyValue]) -> i64 {
    kvs.iter().map(|kv| kv.create_revision).max().unwrap_or(0)
}

/// Op: put `value` at `key`.
pub fn put(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp::Put(PutRequest {
        key,
        value,
        ..Default::default()
    })
}

/// Op: delete `key`.
pub fn delete(key: Vec<u8>) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest {
        key,
        range_end: Vec::new(),
        prev_kv: false,
    })
}

/// Runs `op` if `compare` holds: `Ok(false)` when it did not, `Err` when
/// the txn could not be committed.
pub async fn guarded(proposer: &Proposer, compare: Compare, op: RequestOp) -> Result<bool, String> {
    guarded_all(proposer, vec![compare], vec![op]).await
}

/// Runs every op of `ops` if every compare of `compares` holds, all in one
/// txn: `Ok(false)` when one did not hold (nothing was written), `Err` when
/// the txn could not be committed.
pub async fn guarded_all(
    proposer: &Proposer,
    compares: Vec<Compare>,
    ops: Vec<RequestOp>,
) -> Result<bool, String> {
    let command = Command::Txn(TxnRequest {
        compare: compares,
        success: ops,
        failure: Vec::new(),
    });
    match proposer.propose(command).await {
        Ok(CommandResponse::Txn(r)) => Ok(r.succeeded),
        Ok(_) => Err("unexpected response".into()),
        Err(e) => Err(e.to_string()),
    }
}
