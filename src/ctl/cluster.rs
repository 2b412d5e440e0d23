//! `photon ctl cluster`: the members of the control plane.

use clap::Subcommand;
use photon_control::client::{Client, ClusterStatus};
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
