//! Cluster administration over Cap'n Proto: status of every member, add a
//! learner, promote it to voter, remove a node.

use crate::api_error::{ApiError, Code, Reply};
use std::collections::BTreeSet;

use capnp::capability::Rc;
use openraft::{BasicNode, ChangeMembers};
use photon_schema::raft_capnp::cluster;

use super::raft_transport::write_log_id;
use crate::raft::Raft;

pub struct ClusterService {
    node_id: u64,
    raft: Raft,
    state_machine: crate::raft::KvStateMachine,
    liveness: photon_records::Liveness,
    /// Checked on every call: a revoked or expired token loses the capability.
    session: std::rc::Rc<super::Session>,
}

impl ClusterService {
    pub fn new(
        node_id: u64,
        proposer: crate::proposer::Proposer,
        liveness: photon_records::Liveness,
        session: std::rc::Rc<super::Session>,
    ) -> Self {
        Self {
            node_id,
            raft: proposer.raft.clone(),
            state_machine: proposer.state_machine.clone(),
            liveness,
            session,
        }
    }

    pub(crate) fn check(&self) -> Reply<()> {
        if self.session.identity()?.cluster_admin {
            Ok(())
        } else {
            Err(ApiError::permission_denied(
                "cluster membership is the cluster administrator's",
            ))
        }
    }
}

fn failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(e)
}

/// A membership change refused because this node no longer leads is a
/// redirect (the client retries at the leader), not a failure.
fn membership_error(
    e: openraft::error::RaftError<u64, openraft::error::ClientWriteError<u64, BasicNode>>,
) -> ApiError {
    match e {
        openraft::error::RaftError::APIError(
            openraft::error::ClientWriteError::ForwardToLeader(f),
        ) => crate::proposer::not_leader(&f).into(),
        other => ApiError::with_words(Code::FailedPrecondition, other),
    }
}

impl cluster::Server for ClusterService {
    async fn nodes(
        self: Rc<Self>,
        _params: cluster::NodesParams,
        mut results: cluster::NodesResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            self.check()?;
            let nodes = crate::resource::node::list(&self.state_machine);
            let now = crate::now_ms();
            let mut list = results.get().init_nodes(nodes.len() as u32);
            for (i, n) in nodes.iter().enumerate() {
                let mut b = list.reborrow().get(i as u32);
                b.set_id(n.id);
                b.set_name(n.name.as_str());
                let mut roles = b.reborrow().init_roles(n.roles.len() as u32);
                for (j, r) in n.roles.iter().enumerate() {
                    roles.set(j as u32, r.as_str());
                }
                b.set_failure_domain(n.failure_domain.as_str());
                let mut endpoints = b.reborrow().init_endpoints(n.endpoints.len() as u32);
                for (j, (name, address)) in n.endpoints.iter().enumerate() {
                    let mut e = endpoints.reborrow().get(j as u32);
                    e.set_name(name.as_str());
                    e.set_address(address.as_str());
                }
                b.set_host(n.host.as_str());
                b.set_cpus(n.cpus);
                b.set_memory_mib(n.memory_mib);
                b.set_disk_free(n.disk_free);
                b.set_disk_total(n.disk_total);
                b.set_version(n.version.as_str());
                b.set_started_ms(n.started_ms);
                b.set_heartbeat_ms(n.heartbeat_ms);
                b.set_state(n.state(now, self.liveness).as_str());
            }
            Ok(())
        })
    }

    async fn status(
        self: Rc<Self>,
        _params: cluster::StatusParams,
        mut results: cluster::StatusResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            self.check()?;
            let metrics = self.raft.metrics().borrow().clone();
            let mut s = results.get().init_status();
            s.set_node_id(self.node_id);
            s.set_term(metrics.current_term);
            s.set_leader_id(metrics.current_leader.unwrap_or(0));
            s.set_state(format!("{:?}", metrics.state));
            s.set_last_log_index(metrics.last_log_index.unwrap_or(0));
            s.set_applied_index(metrics.last_applied.map_or(0, |l| l.index));
            s.set_committed_index(metrics.last_applied.map_or(0, |l| l.index));
            let membership = metrics.membership_config.membership();
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let nodes: Vec<(u64, BasicNode)> =
                membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
            let replication = metrics.replication.clone();
            let mut list = s.init_members(nodes.len() as u32);
            for (i, (id, node)) in nodes.iter().enumerate() {
                let mut m = list.reborrow().get(i as u32);
                m.set_node_id(*id);
                m.set_address(node.addr.as_str());
                m.set_voter(voters.contains(id));
                let matched = replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned())
                    .flatten();
                write_log_id(m.init_matched(), &matched);
            }
            Ok(())
        })
    }

    async fn add_learner(
        self: Rc<Self>,
        params: cluster::AddLearnerParams,
        mut results: cluster::AddLearnerResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            self.check()?;
            let p = params.get()?;
            let address = p.get_address()?.to_str().map_err(failed)?.to_string();
            address.parse::<std::net::SocketAddr>().map_err(|e| {
                ApiError::invalid(format!("address `{address}` is not host:port: {e}"))
            })?;
            self.raft
                .add_learner(p.get_node_id(), BasicNode::new(address), true)
                .await
                .map_err(membership_error)?;
            Ok(())
        })
    }

    async fn promote(
        self: Rc<Self>,
        params: cluster::PromoteParams,
        mut results: cluster::PromoteResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            self.check()?;
            let id = params.get()?.get_node_id();
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
            Ok(())
        })
    }

    async fn remove(
        self: Rc<Self>,
        params: cluster::RemoveParams,
        mut results: cluster::RemoveResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            self.check()?;
            let id = params.get()?.get_node_id();
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
            Ok(())
        })
    }
}
