//! Puts CoronaFS (the NBD volume service) on the shards of a node with the
//! `storage` role and links it to the control plane on the same node: the
//! shards' volume catalogs fed from applied KV records (by
//! `control_plane::feed_prefix`), and the store operations (snapshot, clone,
//! delete, usage) the volume API sends to owner shards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coronafs::{NbdParams, VolumeCommand, VolumeControlEnd, VolumeEvent, VolumeOp};
use photon_control::resource::volume::{ShardOps, StoreOp};
use photon_core::mailbox::MailboxSender;
use photon_iam::Directory;

use crate::config::Config;

/// How long the volume API waits for an owner shard.
const SHARD_OP_TIMEOUT: Duration = Duration::from_secs(30);

/// The NBD service's settings from the node's config.
pub fn nbd_params(
    config: &Config,
    directory: Arc<Directory>,
    control: coronafs::VolumeLink,
) -> NbdParams {
    NbdParams {
        listen: config.nbd.listen,
        dir: config.node.data_dir.join("volumes"),
        node: config.control.node_id,
        directory,
        control,
        journal_bytes_max: config.nbd.journal_mib << 20,
    }
}

/// What the control plane needs to serve the volume API for this node.
pub struct VolumeLink {
    /// The NBD service's link: volume records and commands to the shards.
    pub control: VolumeControlEnd,
    /// Filled with the NBD endpoint once the shards listen.
    pub nbd_address: Arc<Mutex<Option<std::net::SocketAddr>>>,
}

/// Sends store operations to the shards' NBD services.
pub fn shard_ops(to_shards: Vec<MailboxSender<VolumeEvent>>) -> ShardOps {
    Arc::new(move |shard, op| {
        let to_shard = to_shards.get(shard as usize).cloned();
        Box::pin(async move {
            let to_shard = to_shard.ok_or_else(|| format!("this node has no shard {shard}"))?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            let op = match op {
                StoreOp::Copy { from, to } => VolumeOp::Copy { from, to },
                StoreOp::Drop { id } => VolumeOp::Drop { id },
                StoreOp::Usage { id } => VolumeOp::Usage { id },
            };
            let command = VolumeEvent::Command(VolumeCommand { op, reply });
            to_shard
                .try_send(command)
                .map_err(|(e, _)| format!("shard {shard} is not taking commands: {e}"))?;
            tokio::time::timeout(SHARD_OP_TIMEOUT, answer)
                .await
                .map_err(|_| format!("shard {shard} did not answer in {SHARD_OP_TIMEOUT:?}"))?
                .map_err(|_| format!("shard {shard} dropped the command"))?
        })
    })
}
