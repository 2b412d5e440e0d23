//! The node registry (`node/<id>`, records in `photon_records::node`):
//! every node writes its own record when it starts and every heartbeat,
//! through the leader when it follows; anyone reads the applied copy.

use photon_records::{node_key, NodeRecord, NODE_PREFIX};

use super::txn::{self, CommitError, Plan};
use crate::proposer::Proposer;
use crate::raft::KvStateMachine;

/// Every node that ever registered, by id.
pub fn list(state: &KvStateMachine) -> Vec<NodeRecord> {
    let mut nodes: Vec<NodeRecord> = state
        .scan_prefix_local(NODE_PREFIX.as_bytes())
        .iter()
        .filter_map(|kv| NodeRecord::from_json(&kv.value))
        .collect();
    nodes.sort_by_key(|n| n.id);
    nodes
}

/// Node `id`'s record, if it registered.
pub fn get(state: &KvStateMachine, id: u64) -> Option<NodeRecord> {
    state
        .get_local(node_key(id).as_bytes())
        .and_then(|kv| NodeRecord::from_json(&kv.value))
}

/// Writes this node's record (its heartbeat). Only its own node writes a
/// record, so the write needs no guard.
pub async fn heartbeat(proposer: &Proposer, record: &NodeRecord) -> Result<(), CommitError> {
    let (key, value) = record.to_kv();
    txn::update_anywhere(proposer, "the node record", |_| {
        Ok::<_, CommitError>(Plan::write(
            Vec::new(),
            vec![txn::put(key.clone(), value.clone())],
            (),
        ))
    })
    .await
}
