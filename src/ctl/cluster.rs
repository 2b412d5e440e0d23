//! `photon ctl cluster`: the members of the control plane; `photon ctl
//! node`: the node registry.

use clap::Subcommand;
use photon_control::client::{ApiError, Client, ClientError, ClusterStatus, NodeInfo};
use serde_json::json;

use crate::ctl::output::{Output, Table};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Term, leader, indexes and members.
    Status,
    /// Add a node as a learner, then promote it to voter once it caught up.
    Add {
        node_id: u64,
        address: String,
        /// Leave it a learner.
        #[arg(long)]
        learner: bool,
    },
    /// Promote a learner to voter.
    Promote { node_id: u64 },
    /// Remove a node from the cluster.
    Remove { node_id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Every registered node: roles, state, capacity.
    Ls,
    /// One node: its endpoints, capacity and last heartbeat.
    Info { id: u64 },
}

pub async fn run_node(client: &mut Client, cmd: NodeCommand, out: Output) -> anyhow::Result<()> {
    let nodes = client.nodes().await?;
    match cmd {
        NodeCommand::Ls => out.list(
            &nodes,
            [
                "ID",
                "NAME",
                "STATE",
                "ROLES",
                "DOMAIN",
                "CPUS",
                "MEMORY",
                "DISK FREE",
            ],
            |n| {
                [
                    n.id.to_string(),
                    n.name.clone(),
                    n.state.clone(),
                    n.roles.join(","),
                    n.failure_domain.clone(),
                    n.cpus.to_string(),
                    format!("{} MiB", n.memory_mib),
                    format!("{} MiB", n.disk_free >> 20),
                ]
            },
        ),
        NodeCommand::Info { id } => {
            let Some(node) = nodes.iter().find(|n| n.id == id) else {
                let missing = ApiError::not_found(format!("node {id} is not in the registry"));
                return Err(ClientError::Api(missing).into());
            };
            out.show(node, node_text);
        }
    }
    Ok(())
}

fn node_text(n: &NodeInfo) -> String {
    let endpoints: Vec<String> = n
        .endpoints
        .iter()
        .map(|(name, address)| format!("{name}={address}"))
        .collect();
    format!(
        "id         {}\nname       {}\nstate      {}\nroles      {}\ndomain     {}\nendpoints  {}\nhost       {}\ncpus       {}\nmemory     {} MiB\ndisk       {} of {} MiB free\nversion    {}\nstarted    {}\nheartbeat  {}\n",
        n.id,
        n.name,
        n.state,
        n.roles.join(","),
        if n.failure_domain.is_empty() { "-" } else { &n.failure_domain },
        endpoints.join(" "),
        n.host,
        n.cpus,
        n.memory_mib,
        n.disk_free >> 20,
        n.disk_total >> 20,
        n.version,
        crate::ctl::utc_time(n.started_ms),
        crate::ctl::utc_time(n.heartbeat_ms),
    )
}

pub async fn run(client: &mut Client, cmd: ClusterCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status => {
            let status = client.status().await?;
            out.show(&status, status_text);
        }
        ClusterCommand::Add {
            node_id,
            address,
            learner,
        } => {
            client.add_learner(node_id, &address).await?;
            if !learner {
                client.promote(node_id).await?;
            }
            let role = if learner { "learner" } else { "voter" };
            out.done(
                json!({"node_id": node_id, "address": address, "role": role}),
                format!("node {node_id} at {address} added as {role}"),
            );
        }
        ClusterCommand::Promote { node_id } => {
            client.promote(node_id).await?;
            out.done(
                json!({"node_id": node_id, "role": "voter"}),
                format!("node {node_id} is a voter"),
            );
        }
        ClusterCommand::Remove { node_id } => {
            client.remove(node_id).await?;
            out.done(
                json!({"removed": node_id}),
                format!("node {node_id} removed"),
            );
        }
    }
    Ok(())
}

fn status_text(s: &ClusterStatus) -> String {
    let mut table = Table::new(["ID", "ADDRESS", "ROLE", "MATCHED", "LAG", "LEADER"]);
    for m in &s.members {
        let dash = || "-".to_string();
        table.row([
            m.node_id.to_string(),
            m.address.clone(),
            if m.voter { "voter" } else { "learner" }.to_string(),
            m.matched_index.map_or_else(dash, |i| i.to_string()),
            m.matched_index
                .map_or_else(dash, |i| s.last_log_index.saturating_sub(i).to_string()),
            if m.node_id == s.leader_id { "*" } else { "" }.to_string(),
        ]);
    }
    format!(
        "node {} ({}), term {}, leader {}, last log {}, applied {}\n{table}",
        s.node_id, s.state, s.term, s.leader_id, s.last_log_index, s.applied_index
    )
}
