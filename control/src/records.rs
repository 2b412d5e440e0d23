//! Guarded writes of one resource record (buckets, volumes) through Raft: a
//! single-compare txn that creates a key only if absent, or changes or
//! deletes it only if unchanged since it was read.

use crate::kv::{
    Command, CommandResponse, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue,
    PutRequest, RequestOp, TxnRequest,
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
    let command = Command::Txn(TxnRequest {
        compare: vec![compare],
        success: vec![op],
        failure: Vec::new(),
    });
    match proposer.propose(command).await {
        Ok(CommandResponse::Txn(r)) => Ok(r.succeeded),
        Ok(_) => Err("unexpected response".into()),
        Err(e) => Err(e.to_string()),
    }
}
