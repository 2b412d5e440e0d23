//! Puts the replicated control plane (Raft KV) into the engine's
//! control-plane thread when the node has the `control` role.

use std::collections::BTreeMap;

use photon_control::node::{ControlNode, ControlNodeConfig};
use photon_core::config::ConfigError;
use photon_core::control::{serve_shard_messages, ControlPlaneContext, ControlPlaneMain};
use photon_core::listen::Endpoint;
use photon_core::shutdown::Phase;

use photon_iam::seal::ClusterKey;

use crate::config::Config;

/// The cluster key's file in the control directory when `iam.cluster_key_file`
/// is unset.
pub const CLUSTER_KEY_FILE: &str = "cluster.key";

/// Name of the control plane's endpoint in the endpoint table.
pub const CONTROL_ENDPOINT: &str = "control";

/// The control plane's settings for this node. `single` makes a one-node
/// cluster of this node when no initial members are configured (`photon dev`).
pub fn node_config(config: &Config, single: bool) -> Result<ControlNodeConfig, ConfigError> {
    let c = &config.control;
    let advertise = c.advertise.unwrap_or(c.listen);
    let mut initial_members: BTreeMap<u64, std::net::SocketAddr> =
        c.members()?.into_iter().collect();
    if single && initial_members.is_empty() {
        initial_members.insert(c.node_id, advertise);
    }
    let data_dir = config.node.data_dir.join("control");
    let key_file = config
        .iam
        .cluster_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join(CLUSTER_KEY_FILE));
    let cluster_key = if config.iam.cluster_key_file.is_some() {
        ClusterKey::load(&key_file)
    } else {
        std::fs::create_dir_all(&data_dir).map_err(|e| ConfigError::Invalid {
            key: "node.data_dir".into(),
            reason: format!("cannot create {}: {e}", data_dir.display()),
        })?;
        ClusterKey::load_or_create(&key_file)
    }
    .map_err(|e| ConfigError::Invalid {
        key: "iam.cluster_key_file".into(),
        reason: e.to_string(),
    })?;
    Ok(ControlNodeConfig {
        node_id: c.node_id,
        listen: c.listen,
        advertise,
        data_dir,
        initial_members,
        heartbeat_ms: c.heartbeat_ms,
        election_timeout_min_ms: c.election_timeout_min_ms,
        election_timeout_max_ms: c.election_timeout_max_ms,
        snapshot_every_entries: c.snapshot_every_entries,
        snapshot_keep_entries: c.snapshot_keep_entries,
        reserve_bytes: c.reserve_mib << 20,
        limits: photon_control::rpc::ServiceLimits {
            proposals_pending_max: c.proposals_pending_max,
            watches_per_connection_max: c.watches_per_connection_max,
        },
        connections: config.limits.whole(),
        directory: photon_iam::Directory::new(cluster_key),
        auth: photon_control::rpc::AuthSettings {
            token_ttl_default_ms: config.iam.token_ttl_default_s * 1000,
            token_ttl_max_ms: config.iam.token_ttl_max_s * 1000,
            ..Default::default()
        },
        buckets: photon_control::resource::bucket::BucketSettings {
            region: config.s3.region.clone(),
            empty_probe: None,
        },
        volumes: photon_control::resource::volume::VolumeSettings::default(),
        lb: photon_control::resource::lb::LbSettings::default(),
        vms: photon_control::resource::vm::VmSettings {
            liveness: c.liveness(),
            ..Default::default()
        },
        liveness: c.liveness(),
        tell_stderr: config.log.format != photon_core::config::LogFormat::Json,
    })
}

/// What the control plane does for the node's S3 service, when it has one.
pub struct StorageLink {
    /// The S3 service's link: bucket requests from the shards, bucket
    /// changes and emptiness queries to them.
    pub s3: lightningstor::S3ControlEnd,
    /// `photon dev`: where the administrator's S3 env file goes, and where
    /// to send its credentials.
    pub dev_credentials: Option<(
        std::path::PathBuf,
        std::sync::mpsc::Sender<(String, String)>,
    )>,
    /// The node's volumes (CoronaFS).
    pub volumes: crate::volumes::VolumeLink,
}

/// The control-plane thread's main function: start the node, report ready,
/// answer the shards, stop when the engine exits.
pub fn main(
    mut node_config: ControlNodeConfig,
    storage: Option<StorageLink>,
    lb: Option<crate::lb::LbLink>,
    vms: Option<crate::vms::VmLink>,
    registration: crate::registry::Registration,
) -> ControlPlaneMain {
    Box::new(move |mut ctx: ControlPlaneContext| {
        Box::pin(async move {
            if let Some(link) = &lb {
                node_config.lb = photon_control::resource::lb::LbSettings {
                    stats: link.stats.clone(),
                };
            }
            if let Some(link) = &storage {
                if let Some(shard0) = link.s3.to_shards.first() {
                    node_config.buckets.empty_probe =
                        Some(crate::storage::empty_probe(shard0.clone()));
                }
                node_config.volumes = photon_control::resource::volume::VolumeSettings {
                    node: node_config.node_id,
                    shards: ctx.shards as u32,
                    ops: Some(crate::volumes::shard_ops(
                        link.volumes.control.to_shards.clone(),
                    )),
                    nbd_address: link.volumes.nbd_address.clone(),
                };
            }
            let node_id = node_config.node_id;
            if let Some(link) = &vms {
                node_config.vms = photon_control::resource::vm::VmSettings {
                    node: node_config.node_id,
                    host: Some(std::sync::Arc::new(crate::vms::Host(link.board.clone()))),
                    liveness: node_config.liveness,
                };
            }
            let node = match ControlNode::start(node_config).await {
                Ok(node) => node,
                Err(e) => {
                    let mut reason = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        reason.push_str(&format!(": {s}"));
                        source = s.source();
                    }
                    ctx.ready.report(Err(reason));
                    return;
                }
            };
            ctx.ready.report(Ok(vec![Endpoint {
                name: CONTROL_ENDPOINT.to_string(),
                service: "control",
                addr: node.address,
            }]));
            let mut tasks = vec![tokio::task::spawn_local(crate::registry::run(
                registration,
                node_id,
                node.proposer.clone(),
            ))];
            if let Some(link) = storage {
                let lightningstor::S3ControlEnd {
                    from_shards,
                    to_shards,
                } = link.s3;
                tasks.push(tokio::task::spawn_local(feed_prefix(
                    node.state_machine.clone(),
                    lightningstor::catalog::BUCKET_PREFIX.as_bytes(),
                    lightningstor::bucket_feed(to_shards),
                    lightningstor::catalog::decode,
                )));
                tasks.push(tokio::task::spawn_local(
                    crate::storage::serve_bucket_requests(node.proposer.clone(), from_shards),
                ));
                tasks.push(tokio::task::spawn_local(feed_prefix(
                    node.state_machine.clone(),
                    photon_records::VOLUME_PREFIX.as_bytes(),
                    coronafs::volume_feed(link.volumes.control.to_shards),
                    coronafs::decode_volume,
                )));
                if let Some((path, to_main)) = link.dev_credentials {
                    tasks.push(tokio::task::spawn_local(crate::storage::dev_credentials(
                        node.proposer.clone(),
                        node.directory.clone(),
                        path,
                        to_main,
                    )));
                }
            }
            if let Some(link) = lb {
                tasks.push(tokio::task::spawn_local(crate::lb::follow_lb(
                    node.state_machine.clone(),
                    link.agent,
                )));
            }
            if let Some(link) = vms {
                let (raft, start) = (node.raft.clone(), node.start_log_index);
                tasks.push(tokio::task::spawn_local(crate::vms::run_agent(
                    link,
                    node_id,
                    node.directory.clone(),
                    node.proposer.clone(),
                    move || photon_control::node::caught_up(&raft, start),
                )));
            }
            let shutdown = ctx.shutdown.clone();
            let pings = serve_shard_messages(&ctx.from_shards, &ctx.shutdown);
            let node_run = node.run_until(async move { shutdown.reached(Phase::Exit).await });
            tokio::join!(pings, node_run);
            for task in tasks {
                task.abort();
            }
        })
    })
}

/// How often a record feed retries the shards that missed changes.
const FEED_RESYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Keeps every shard's copy of the applied records under `prefix` equal to
/// the KV: `decode` turns each applied change into a feed change (or skips
/// it), and shards whose mailbox was full get everything again.
pub async fn feed_prefix<R: Clone + 'static, Down: 'static>(
    state_machine: photon_control::raft::KvStateMachine,
    prefix: &'static [u8],
    feed: photon_core::link::Feed<R, Down>,
    decode: photon_core::link::Decode<R>,
) {
    let feed = std::rc::Rc::new(std::cell::RefCell::new(feed));
    let (reload, changes) = (feed.clone(), feed.clone());
    let follow = photon_control::raft::follow_prefix(
        state_machine,
        prefix,
        move |state_machine| {
            let all = state_machine.scan_prefix_local(prefix);
            reload.borrow_mut().replace(
                all.iter()
                    .filter_map(|kv| decode(&kv.key, Some(&kv.value)))
                    .filter_map(|(key, record)| Some((key, record?))),
            );
        },
        move |events| {
            changes
                .borrow_mut()
                .apply(events.filter_map(|(key, value)| decode(key, value)));
        },
    );
    let resync = async {
        loop {
            tokio::time::sleep(FEED_RESYNC_INTERVAL).await;
            feed.borrow_mut().resync();
        }
    };
    tokio::select! {
        () = follow => {}
        () = resync => {}
    }
}
