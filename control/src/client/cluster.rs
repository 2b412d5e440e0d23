//! Cluster membership: status, learners, promotion, removal.

use photon_schema::raft_capnp::cluster;

use super::{reply, text, unit_call, Attempt, Caps, Client, ClientError};
use crate::rpc;

/// The membership and progress of the cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub term: u64,
    pub leader_id: u64,
    pub state: String,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    #[serde(rename = "id")]
    pub node_id: u64,
    pub address: String,
    pub voter: bool,
    /// The last log index the leader knows this member holds (leader only).
    pub matched_index: Option<u64>,
}

/// One node of the registry and its state (see `photon_records::node`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    pub id: u64,
    pub name: String,
    pub roles: Vec<String>,
    pub failure_domain: String,
    pub endpoints: std::collections::BTreeMap<String, String>,
    pub host: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_free: u64,
    pub disk_total: u64,
    pub version: String,
    pub started_ms: u64,
    pub heartbeat_ms: u64,
    /// up, suspect or down, from the age of its last heartbeat.
    pub state: String,
}

/// The cluster API of this connection's session (pipelined: no round trip).
fn api(caps: &Caps) -> cluster::Client {
    caps.session()
        .cluster_request()
        .send()
        .pipeline
        .get_cluster()
}

impl Client {
    /// The membership and progress as the node this client reaches sees
    /// them (any node answers; a follower's view may lag).
    pub async fn status(&mut self) -> Result<ClusterStatus, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps).status_request().send().promise.await?;
            let s = reply!(reply.get()?).get_status()?;
            let members = s
                .get_members()?
                .iter()
                .map(|m| {
                    Ok(Member {
                        node_id: m.get_node_id(),
                        address: text(m.get_address())?,
                        voter: m.get_voter(),
                        matched_index: rpc::read_optional_log_id(m.get_matched()?)?
                            .map(|l| l.index),
                    })
                })
                .collect::<Attempt<Vec<_>>>()?;
            Ok(ClusterStatus {
                node_id: s.get_node_id(),
                term: s.get_term(),
                leader_id: s.get_leader_id(),
                state: text(s.get_state())?,
                last_log_index: s.get_last_log_index(),
                applied_index: s.get_applied_index(),
                members,
            })
        })
        .await
    }

    /// The node registry: every node that registered, by id, as the node
    /// this client reaches sees it.
    pub async fn nodes(&mut self) -> Result<Vec<NodeInfo>, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps).nodes_request().send().promise.await?;
            reply!(reply.get()?)
                .get_nodes()?
                .iter()
                .map(|n| {
                    Ok(NodeInfo {
                        id: n.get_id(),
                        name: text(n.get_name())?,
                        roles: n
                            .get_roles()?
                            .iter()
                            .map(text)
                            .collect::<Attempt<Vec<_>>>()?,
                        failure_domain: text(n.get_failure_domain())?,
                        endpoints: n
                            .get_endpoints()?
                            .iter()
                            .map(|e| Ok((text(e.get_name())?, text(e.get_address())?)))
                            .collect::<Attempt<_>>()?,
                        host: text(n.get_host())?,
                        cpus: n.get_cpus(),
                        memory_mib: n.get_memory_mib(),
                        disk_free: n.get_disk_free(),
                        disk_total: n.get_disk_total(),
                        version: text(n.get_version())?,
                        started_ms: n.get_started_ms(),
                        heartbeat_ms: n.get_heartbeat_ms(),
                        state: text(n.get_state())?,
                    })
                })
                .collect::<Attempt<Vec<_>>>()
        })
        .await
    }

    /// Adds a node that receives the log but does not vote (yet). Like
    /// every membership change it runs on the leader: followers answer
    /// "not the leader" with its address, which the retry loop follows.
    pub async fn add_learner(&mut self, node_id: u64, address: &str) -> Result<(), ClientError> {
        unit_call!(self, api, add_learner_request, |p| {
            p.set_node_id(node_id);
            p.set_address(address);
        })
    }

    /// Makes a learner a voter.
    pub async fn promote(&mut self, node_id: u64) -> Result<(), ClientError> {
        unit_call!(self, api, promote_request, |p| {
            p.set_node_id(node_id);
        })
    }

    /// Removes a node from the membership.
    pub async fn remove(&mut self, node_id: u64) -> Result<(), ClientError> {
        unit_call!(self, api, remove_request, |p| {
            p.set_node_id(node_id);
        })
    }
}
