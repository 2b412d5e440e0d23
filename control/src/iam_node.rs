//! IAM on a control-plane node: the local [`Directory`] fed from the state
//! machine's applied events (the in-process form of a KV watch on `iam/`),
//! and the first-start bootstrap that creates the signing key, the `system`
//! tenant and the cluster administrator.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use photon_iam::model::{self, keys, Principal, PrincipalKind};
use photon_iam::seal::ClusterKey;
use photon_iam::{password, records, Directory, Snapshot};

use crate::kv::{prefix_end, Command, CommandResponse, Compare, CompareResult, CompareTarget};
use crate::kv::{EventKind, PutRequest, RangeRequest, RequestOp, TxnRequest};
use crate::now_ms;
use crate::proposer::Proposer;
use crate::raft::KvStateMachine;

/// How often a node that leads checks whether the cluster still needs its
/// first administrator.
const BOOTSTRAP_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// The file the bootstrapping node writes the administrator's credentials to.
pub const ADMIN_CREDENTIALS_FILE: &str = "admin.credentials";

/// Every IAM record in the applied state, as a snapshot.
pub fn load(state_machine: &KvStateMachine) -> Snapshot {
    let kvs = state_machine.scan_prefix_local(model::PREFIX.as_bytes());
    let mut snapshot = Snapshot::default();
    for kv in &kvs {
        snapshot.apply(&kv.key, Some(&kv.value));
    }
    snapshot
}

/// Whether the applied state was sealed with another cluster key.
pub fn key_mismatch(snapshot: &Snapshot, key: &ClusterKey) -> bool {
    snapshot
        .cluster_key_check
        .as_deref()
        .is_some_and(|check| !photon_iam::seal::key_matches_check(key, check))
}

/// Keeps `directory` equal to the applied `iam/` records: reloads on start,
/// after a snapshot was installed (an empty event batch) or when it fell
/// behind, and applies event batches otherwise.
pub async fn follow(state_machine: KvStateMachine, directory: Arc<Directory>) {
    let reload = directory.clone();
    crate::raft::follow_prefix(
        state_machine,
        model::PREFIX.as_bytes(),
        move |state_machine| {
            let snapshot = load(state_machine);
            if key_mismatch(&snapshot, reload.cluster_key()) {
                tracing::error!(
                    "the IAM records were sealed with another cluster key: this node cannot open access keys or sign tokens (check iam.cluster_key_file)"
                );
            }
            reload.replace(snapshot);
        },
        move |changes| directory.apply(changes),
    )
    .await
}

/// Where the administrator's credentials go, and how to write them.
#[derive(Debug, Clone)]
pub struct BootstrapSettings {
    pub credentials_path: PathBuf,
    /// Also tell a person on stderr (off when stderr carries JSON logs).
    pub tell_stderr: bool,
}

/// On the leader, until the cluster has its administrator: creates the
/// cluster-key check, the first signing key, the `system` tenant and the
/// administrator with a random password. The password is written (0600) to a
/// pending file before it is proposed, so a crash cannot commit a password
/// nobody knows, and renamed to `credentials_path` once committed, so a
/// reader never finds a password that does not work yet.
pub async fn bootstrap(proposer: Proposer, directory: Arc<Directory>, settings: BootstrapSettings) {
    let mut tick = tokio::time::interval(BOOTSTRAP_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        if bootstrapped(&proposer.state_machine) {
            recover_pending(&proposer.state_machine, &settings.credentials_path).await;
            return;
        }
        if !proposer.is_leader() {
            continue;
        }
        match bootstrap_once(&proposer, &directory, &settings).await {
            Ok(true) => {
                if let Err(e) = publish(&settings.credentials_path) {
                    tracing::error!(error = %e, "cannot move the administrator's credentials into place");
                }
                tracing::info!(path = %settings.credentials_path.display(), "created the cluster administrator");
                if settings.tell_stderr {
                    eprintln!(
                        "photon: created the cluster administrator; its credentials are in {} (mode 0600)",
                        settings.credentials_path.display()
                    );
                }
                return;
            }
            Ok(false) => {
                // Another node bootstrapped first.
                let _ = std::fs::remove_file(pending_path(&settings.credentials_path));
                return;
            }
            Err(e) => tracing::warn!(error = %e, "IAM bootstrap failed; retrying"),
        }
    }
}

fn bootstrapped(state_machine: &KvStateMachine) -> bool {
    state_machine
        .get_local(keys::tenant(model::SYSTEM_TENANT).as_bytes())
        .is_some()
}

async fn bootstrap_once(
    proposer: &Proposer,
    directory: &Directory,
    settings: &BootstrapSettings,
) -> Result<bool, String> {
    let admin_password = password::generate_secret();
    let pending = pending_path(&settings.credentials_path);
    write_credentials(&pending, &admin_password)
        .map_err(|e| format!("cannot write {}: {e}", pending.display()))?;
    let hash = {
        let secret = admin_password.clone();
        tokio::task::spawn_blocking(move || password::hash_secret(&secret))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    let now = now_ms();
    let cluster_key = directory.cluster_key();
    let pair = photon_iam::token::KeyPair::generate(password::generate_id("k", 8));
    let admin = Principal {
        tenant: model::SYSTEM_TENANT.into(),
        name: model::CLUSTER_ADMIN.into(),
        kind: PrincipalKind::User,
        secret_hash: hash,
        cluster_admin: true,
        tokens_not_before_ms: 0,
        created_ms: now,
    };
    let records = [
        records::cluster_key_check(cluster_key),
        records::signing_key(cluster_key, &pair, now, None),
        records::tenant(model::SYSTEM_TENANT, now),
        records::project(model::SYSTEM_TENANT, model::DEFAULT_PROJECT, now),
        records::principal(&admin),
        records::binding(
            model::SYSTEM_TENANT,
            model::CLUSTER_ADMIN,
            model::ALL_PROJECTS,
            "admin",
        ),
    ];
    let command = Command::Txn(TxnRequest {
        compare: vec![Compare {
            key: keys::tenant(model::SYSTEM_TENANT).into_bytes(),
            range_end: Vec::new(),
            target: CompareTarget::Version(0),
            result: CompareResult::Equal,
        }],
        success: records
            .into_iter()
            .map(|(key, value)| {
                RequestOp::Put(PutRequest {
                    key: key.into_bytes(),
                    value,
                    ..Default::default()
                })
            })
            .collect(),
        failure: Vec::new(),
    });
    match proposer.propose(command).await {
        Ok(CommandResponse::Txn(response)) => Ok(response.succeeded),
        Ok(_) => Err("the state machine answered another command".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn pending_path(path: &Path) -> PathBuf {
    path.with_extension("pending")
}

/// Moves committed credentials into place.
fn publish(path: &Path) -> std::io::Result<()> {
    std::fs::rename(pending_path(path), path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// After a crash between commit and rename: publishes the pending file if
/// its password is the committed one, else drops it.
async fn recover_pending(state_machine: &KvStateMachine, path: &Path) {
    let pending = pending_path(path);
    let Ok(text) = std::fs::read_to_string(&pending) else {
        return;
    };
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("password = \""))
        .and_then(|l| l.strip_suffix('"'))
        .map(str::to_owned);
    let hash = state_machine
        .get_local(keys::principal(model::SYSTEM_TENANT, model::CLUSTER_ADMIN).as_bytes())
        .and_then(|kv| serde_json::from_slice::<Principal>(&kv.value).ok())
        .map(|p| p.secret_hash);
    let committed = match (password, hash) {
        (Some(password), Some(hash)) => {
            tokio::task::spawn_blocking(move || password::verify_secret(&password, &hash))
                .await
                .unwrap_or(false)
        }
        _ => false,
    };
    if committed {
        if let Err(e) = publish(path) {
            tracing::error!(error = %e, "cannot move the administrator's credentials into place");
        }
    } else {
        let _ = std::fs::remove_file(&pending);
    }
}

/// Writes the administrator's credentials (mode 0600, replacing atomically).
fn write_credentials(path: &Path, password: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(
        file,
        "# PhotonCloud cluster administrator, created on this cluster's first start.\n\
         # Keep this file private. `photon ctl login --data-dir DIR` reads it.\n\
         tenant = \"{}\"\nprincipal = \"{}\"\npassword = \"{password}\"",
        model::SYSTEM_TENANT,
        model::CLUSTER_ADMIN,
    )?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Keeps `directory` equal to the cluster's `iam/` records over the network,
/// for a node that holds no replica (no `control` role): a linearizable read
/// of every record, then a watch from the next revision; on any break
/// (compaction, a lagging watch, a lost connection) it reads everything again.
/// `client` must present the cluster administrator's (or a system service
/// account's) token: only it sees `iam/`.
pub async fn follow_remote(mut client: crate::client::Client, directory: Arc<Directory>) {
    loop {
        let reason = sync_remote(&mut client, &directory).await;
        tracing::warn!(%reason, "IAM feed interrupted; reading every record again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Bounded queue of watch deliveries between the connection and the feed.
const REMOTE_FEED_QUEUE_DEPTH: usize = 64;

async fn sync_remote(client: &mut crate::client::Client, directory: &Directory) -> String {
    use crate::client::WatchMessage;
    let key = model::PREFIX.as_bytes().to_vec();
    let range_end = prefix_end(&key);
    let all = match client
        .range(
            RangeRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                ..Default::default()
            },
            false,
        )
        .await
    {
        Ok(all) => all,
        Err(e) => return e.to_string(),
    };
    let mut snapshot = Snapshot::default();
    for kv in &all.kvs {
        snapshot.apply(&kv.key, Some(&kv.value));
    }
    if key_mismatch(&snapshot, directory.cluster_key()) {
        tracing::error!(
            "the IAM records were sealed with another cluster key (check iam.cluster_key_file)"
        );
    }
    directory.replace(snapshot);
    let (tx, mut rx) = tokio::sync::mpsc::channel(REMOTE_FEED_QUEUE_DEPTH);
    let _handle = match client
        .watch(key, range_end, all.revision + 1, false, tx)
        .await
    {
        Ok((handle, _)) => handle,
        Err(e) => return e.to_string(),
    };
    while let Some(message) = rx.recv().await {
        match message {
            WatchMessage::Events(events) => directory.apply(events.iter().map(|e| {
                let value = match e.kind {
                    EventKind::Put => Some(e.kv.value.as_slice()),
                    EventKind::Delete => None,
                };
                (e.kv.key.as_slice(), value)
            })),
            WatchMessage::Cancelled(reason) => return reason,
        }
    }
    "the watch connection closed".to_owned()
}
