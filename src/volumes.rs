//! Puts CoronaFS (the NBD volume service) on the shards of a node with the
//! `storage` role and links it to the control plane on the same node: the
//! volume catalog fed from applied KV records, and the store operations
//! (snapshot, clone, delete, usage) the volume API sends to owner shards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coronafs::{NbdParams, VolumeCatalog, VolumeCommand, VolumeOp};
use photon_control::raft::KvStateMachine;
use photon_control::resource::volume::{ShardOps, StoreOp};
use photon_core::config::Config;
use photon_core::control::ControlMessage;
use photon_core::mailbox::MailboxSender;
use photon_iam::resources::{VolumeRecord, VOLUME_PREFIX};
use photon_iam::Directory;

/// How long the volume API waits for an owner shard.
const SHARD_OP_TIMEOUT: Duration = Duration::from_secs(30);

/// The NBD service's settings from the node's config.
pub fn nbd_params(
    config: &Config,
    directory: Arc<Directory>,
    catalog: Arc<VolumeCatalog>,
) -> NbdParams {
    NbdParams {
        listen: config.nbd.listen,
        dir: config.node.data_dir.join("volumes"),
        node: config.control.node_id,
        directory,
        catalog,
        journal_bytes_max: config.nbd.journal_mib << 20,
    }
}

/// What the control plane needs to serve the volume API for this node.
pub struct VolumeLink {
    pub catalog: Arc<VolumeCatalog>,
    /// Filled with the NBD endpoint once the shards listen.
    pub nbd_address: Arc<Mutex<Option<std::net::SocketAddr>>>,
}

/// Keeps `catalog` equal to the applied `volume/` records.
pub async fn follow_volumes(state_machine: KvStateMachine, catalog: Arc<VolumeCatalog>) {
    let reload = catalog.clone();
    photon_control::raft::follow_prefix(
        state_machine,
        VOLUME_PREFIX.as_bytes(),
        move |state_machine| {
            let all = state_machine.scan_prefix_local(VOLUME_PREFIX.as_bytes());
            reload.replace(
                all.iter()
                    .filter_map(|kv| VolumeRecord::from_json(&kv.value)),
            );
        },
        move |changes| catalog.apply(changes),
    )
    .await
}

/// Sends store operations to the shards' NBD services.
pub fn shard_ops(to_shards: Vec<MailboxSender<ControlMessage>>) -> ShardOps {
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
            let command: ControlMessage = Box::new(VolumeCommand { op, reply });
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
