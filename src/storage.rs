//! Puts LightningStor (the S3 service) on the shards of a node with the
//! `storage` role and links it to the control plane on the same node: the
//! bucket catalog fed from applied KV records, bucket changes the shards ask
//! for, the emptiness check `photon ctl bucket rm` needs, and the dev
//! administrator's S3 credentials.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use lightningstor::{
    BucketEmptyQuery, BucketOp, BucketOpError, BucketRequest, S3Event, S3Limits, S3Link, S3Params,
};
use photon_control::proposer::Proposer;
use photon_control::resource::bucket::{self, BucketWriteError, EmptyProbe};
use photon_core::mailbox::{MailboxReceiver, MailboxSender};
use photon_iam::{model, password, records, Directory};

use crate::config::Config;

/// The file, in the data directory, with the dev administrator's S3
/// credentials as environment variables.
pub const S3_ENV_FILE: &str = "s3.env";

/// How long the emptiness check waits for the shards.
const EMPTY_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The S3 service's settings from the node's config.
pub fn s3_params(config: &Config, directory: Arc<Directory>, control: S3Link) -> S3Params {
    let mut store = photon_object::StoreConfig::new(config.node.data_dir.join("s3"));
    store.segment_bytes = config.s3.segment_mib << 20;
    // A full disk still takes deletes, compaction (into one new segment)
    // and checkpoints: photon_object::StoreConfig::reserve_bytes.
    store.reserve_bytes = store.segment_bytes + (8 << 20);
    let limits = S3Limits {
        garbage_grace: Duration::from_secs(config.s3.garbage_grace_s),
        body_idle_timeout: config.limits.body_idle_timeout(),
        body_rate_min_bytes_per_s: config.limits.body_rate_min_bytes_per_s,
        ..S3Limits::default()
    };
    store.chunk_bytes_max = limits.chunk_bytes as usize;
    store.inline_bytes_max = limits.inline_bytes_max as usize;
    S3Params {
        listen: config.s3.listen,
        region: config.s3.region.clone(),
        domains: config.s3.domains.clone(),
        store,
        directory,
        control,
        limits,
        http: photon_core::http::HttpLimits::default(),
    }
}

/// Runs the shards' bucket requests through Raft until the link closes.
pub async fn serve_bucket_requests(
    proposer: Proposer,
    from_shards: MailboxReceiver<BucketRequest>,
) {
    while let Some(request) = from_shards.recv().await {
        serve_bucket_request(&proposer, request);
    }
}

fn serve_bucket_request(proposer: &Proposer, request: BucketRequest) {
    let proposer = proposer.clone();
    tokio::task::spawn_local(async move {
        let result =
            match request.op {
                BucketOp::Create {
                    name,
                    tenant,
                    project,
                    region,
                } => {
                    bucket::create(
                        &proposer,
                        &name,
                        &tenant,
                        &project,
                        &region,
                        photon_control::rpc::now_ms(),
                    )
                    .await
                }
                BucketOp::Delete { name, id } => bucket::delete(&proposer, &name, Some(id))
                    .await
                    .map(|mut deleted| {
                        deleted.id = 0;
                        deleted
                    }),
            };
        let _ = request.reply.send(result.map_err(|e| match e {
            BucketWriteError::Exists { tenant, project } => BucketOpError::Exists {
                owner_tenant: tenant,
                owner_project: project,
            },
            BucketWriteError::NoSuchBucket => BucketOpError::NoSuchBucket,
            other => BucketOpError::Unavailable(other.to_string()),
        }));
    });
}

/// Asks shard 0's S3 service whether a bucket is empty.
pub fn empty_probe(to_shard0: MailboxSender<S3Event>) -> EmptyProbe {
    Arc::new(move |id| {
        let to_shard0 = to_shard0.clone();
        Box::pin(async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let query = S3Event::EmptyQuery(BucketEmptyQuery { id, reply });
            to_shard0.try_send(query).ok()?;
            tokio::time::timeout(EMPTY_PROBE_TIMEOUT, answer)
                .await
                .ok()?
                .ok()
        })
    })
}

/// Reads `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` from an env file.
fn read_env_credentials(path: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim().to_owned())
    };
    Some((value("AWS_ACCESS_KEY_ID")?, value("AWS_SECRET_ACCESS_KEY")?))
}

/// `photon dev`: makes sure the cluster administrator has an S3 access key
/// (the one in `env_path` if it still works, else a new one) and sends it
/// to the main thread, which writes the env file with the endpoint.
pub async fn dev_credentials(
    proposer: Proposer,
    directory: Arc<Directory>,
    env_path: PathBuf,
    to_main: mpsc::Sender<(String, String)>,
) {
    loop {
        let snapshot = directory.snapshot();
        let ready = snapshot
            .principal(model::SYSTEM_TENANT, model::CLUSTER_ADMIN)
            .is_some();
        if ready && proposer.is_leader() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some((id, secret)) = read_env_credentials(&env_path) {
        if directory
            .access_key_secret(&id)
            .is_some_and(|(_, s)| s == secret.as_bytes())
        {
            let _ = to_main.send((id, secret));
            return;
        }
    }
    for _ in 0..20 {
        let id = password::generate_id("PK", 9);
        let secret = password::generate_secret();
        let (key, value) = records::access_key(
            directory.cluster_key(),
            &id,
            &secret,
            model::SYSTEM_TENANT,
            model::CLUSTER_ADMIN,
            model::DEFAULT_PROJECT,
            photon_control::rpc::now_ms(),
        );
        let command = photon_control::kv::Command::Put(photon_control::kv::PutRequest {
            key: key.into_bytes(),
            value,
            ..Default::default()
        });
        match proposer.propose(command).await {
            Ok(_) => {
                // Wait until the shards' IAM view has the key.
                while directory.access_key_secret(&id).is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let _ = to_main.send((id, secret));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the dev S3 access key; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Writes the env file (mode 0600) that `aws` and boto3 pick up.
pub fn write_env_file(
    path: &Path,
    endpoint: &str,
    region: &str,
    id: &str,
    secret: &str,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("env.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(file, "AWS_ACCESS_KEY_ID={id}")?;
    writeln!(file, "AWS_SECRET_ACCESS_KEY={secret}")?;
    writeln!(file, "AWS_DEFAULT_REGION={region}")?;
    writeln!(file, "AWS_ENDPOINT_URL={endpoint}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
