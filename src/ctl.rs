//! `photon ctl`: the control plane's command line, over the Cap'n Proto
//! client library. Output is a table, or JSON with `--json`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use photon_control::client::{Client, ClusterStatus, WatchMessage};
use photon_control::kv::{
    prefix_end, Compare, CompareResult, CompareTarget, DeleteRangeRequest, Event, EventKind,
    KeyValue, PutRequest, RangeRequest, RequestOp, ResponseOp, TxnRequest,
};
use serde_json::{json, Value};

/// Queued watch deliveries the CLI holds before it slows the stream down.
const WATCH_QUEUE_DEPTH: usize = 64;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control-plane endpoints (host:port, comma-separated). Default: the
    /// `control` endpoint in DATA_DIR/endpoints.json, else 127.0.0.1:9500.
    #[arg(long, env = "PHOTON_ENDPOINTS", value_delimiter = ',', global = true)]
    endpoints: Vec<SocketAddr>,
    /// Data directory of a local node whose endpoints.json names the endpoint.
    #[arg(long, global = true, default_value = "./photon-data")]
    data_dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Token to present instead of the one `photon ctl login` stored.
    #[arg(long, env = "PHOTON_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Log in and store a token for the other commands. Without --user: as
    /// the cluster administrator of the `photon dev` in --data-dir.
    Login {
        #[arg(long)]
        tenant: Option<String>,
        /// User or service-account name.
        #[arg(long)]
        user: Option<String>,
        /// Project the token acts in (default: "default").
        #[arg(long, default_value = "")]
        project: String,
        /// Read the password (or service-account secret) from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Token lifetime in seconds (default: the cluster's, 1 hour).
        #[arg(long, default_value_t = 0)]
        ttl: u32,
    },
    /// Revoke the stored token and forget it.
    Logout,
    /// Who the stored token speaks for.
    Whoami,
    /// Identity and access management.
    #[command(subcommand)]
    Iam(crate::ctl_iam::IamCommand),
    /// S3 buckets of the token's project.
    #[command(subcommand)]
    Bucket(crate::ctl_bucket::BucketCommand),
    /// CoronaFS block volumes of the token's project (NBD).
    #[command(subcommand)]
    Volume(crate::ctl_volume::VolumeCommand),
    /// FiberLB load balancers of the token's project: VIPs, backends, counters.
    #[command(subcommand)]
    Lb(crate::ctl_lb::LbCommand),
    /// Keys and values.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Leases: keys that disappear unless kept alive.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Members of the control-plane cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Write KEY=VALUE.
    Put {
        key: String,
        value: String,
        /// Attach the key to this lease.
        #[arg(long, default_value_t = 0)]
        lease: i64,
        /// Also print the previous value.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Read a key, a prefix or a range.
    Get {
        key: String,
        /// Every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
        /// Range end (exclusive), instead of a single key.
        #[arg(long, conflicts_with = "prefix")]
        range_end: Option<String>,
        #[arg(long, default_value_t = 0)]
        limit: u64,
        /// Read at this past revision.
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[arg(long)]
        keys_only: bool,
        #[arg(long)]
        count_only: bool,
        /// Read this node's copy without asking the leader (may be stale).
        #[arg(long)]
        serializable: bool,
    },
    /// Delete a key or a prefix.
    Del {
        key: String,
        #[arg(long)]
        prefix: bool,
        #[arg(long)]
        prev_kv: bool,
    },
    /// Compare-and-swap: if every --if holds, run the --then ops, else the --else ops.
    /// Conditions: KEY==VALUE, KEY!=VALUE, version(KEY)=N, mod(KEY)=N, create(KEY)=N
    /// (also with <, >). Ops: put:KEY=VALUE, del:KEY, get:KEY.
    Txn {
        #[arg(long = "if")]
        conditions: Vec<String>,
        #[arg(long = "then")]
        then_ops: Vec<String>,
        #[arg(long = "else")]
        else_ops: Vec<String>,
    },
    /// Print changes to a key or prefix as they happen.
    Watch {
        key: String,
        #[arg(long)]
        prefix: bool,
        /// Start from this revision (replaying history).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[arg(long)]
        prev_kv: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Discard history before REVISION.
    Compact { revision: i64 },
}

#[derive(Debug, Subcommand)]
enum LeaseCommand {
    /// Grant a lease of TTL seconds; prints its id.
    Grant {
        ttl_seconds: u64,
        #[arg(long, default_value_t = 0)]
        id: i64,
    },
    /// Revoke a lease and delete its keys.
    Revoke { id: i64 },
    /// Renew a lease (once, or every ttl/3 until interrupted).
    KeepAlive {
        id: i64,
        #[arg(long)]
        once: bool,
    },
    /// Remaining time of a lease.
    Ttl {
        id: i64,
        #[arg(long)]
        keys: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
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

pub fn run(args: CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn endpoints(args: &CtlArgs) -> anyhow::Result<Vec<SocketAddr>> {
    if !args.endpoints.is_empty() {
        return Ok(args.endpoints.clone());
    }
    let from_data_dir = args.data_dir.join("endpoints.json").exists();
    if !from_data_dir && !matches!(args.command, CtlCommand::Login { .. }) {
        if let Some(stored) = crate::ctl_auth::stored_endpoints() {
            return Ok(stored);
        }
    }
    let file = args.data_dir.join("endpoints.json");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("cannot parse {}", file.display()))?;
        if let Some(addr) = doc["endpoints"][crate::control_plane::CONTROL_ENDPOINT].as_str() {
            return Ok(vec![addr
                .parse()
                .with_context(|| format!("bad address in {}", file.display()))?]);
        }
    }
    Ok(vec![SocketAddr::from(([127, 0, 0, 1], 9500))])
}

async fn run_async(args: CtlArgs) -> anyhow::Result<()> {
    let endpoints = endpoints(&args)?;
    if let CtlCommand::Login {
        tenant,
        user,
        project,
        password_stdin,
        ttl,
    } = args.command
    {
        let request = crate::ctl_auth::LoginRequest {
            endpoints,
            data_dir: args.data_dir,
            tenant,
            user,
            project,
            password_stdin,
            ttl_seconds: ttl,
        };
        return crate::ctl_auth::login(request, args.json).await;
    }
    let token = crate::ctl_auth::token_for(args.token.clone(), &endpoints).await?;
    let mut client = Client::with_token(endpoints, token)?;
    match args.command {
        CtlCommand::Login { .. } => unreachable!("handled above"),
        CtlCommand::Logout => crate::ctl_auth::logout(&mut client).await,
        CtlCommand::Whoami => crate::ctl_auth::whoami(&mut client, args.json).await,
        CtlCommand::Iam(cmd) => crate::ctl_iam::run(&mut client, cmd, args.json).await,
        CtlCommand::Bucket(cmd) => crate::ctl_bucket::run(&mut client, cmd, args.json).await,
        CtlCommand::Volume(cmd) => crate::ctl_volume::run(&mut client, cmd, args.json).await,
        CtlCommand::Lb(cmd) => crate::ctl_lb::run(&mut client, cmd, args.json).await,
        CtlCommand::Kv(cmd) => kv(&mut client, cmd, args.json).await,
        CtlCommand::Lease(cmd) => lease(&mut client, cmd, args.json).await,
        CtlCommand::Cluster(cmd) => cluster(&mut client, cmd, args.json).await,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A time in milliseconds since the epoch as UTC, `2026-12-07T10:31:05Z`,
/// for tables (`--json` keeps the milliseconds): S3's timestamp format
/// without its milliseconds.
pub fn utc_time(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let stamp = storage_s3::xml::format_timestamp(time);
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`: drop `.mmm`.
    format!("{}Z", &stamp[..19])
}

fn kv_json(kv: &KeyValue) -> Value {
    json!({"key": text(&kv.key), "value": text(&kv.value), "create_revision": kv.create_revision,
           "mod_revision": kv.mod_revision, "version": kv.version, "lease": kv.lease})
}

fn event_json(e: &Event) -> Value {
    json!({"type": match e.kind { EventKind::Put => "PUT", EventKind::Delete => "DELETE" },
           "kv": kv_json(&e.kv), "prev_kv": e.prev_kv.as_ref().map(kv_json)})
}

fn range_of(key: &str, prefix: bool) -> (Vec<u8>, Vec<u8>) {
    let key = key.as_bytes().to_vec();
    let end = if prefix { prefix_end(&key) } else { Vec::new() };
    (key, end)
}

async fn kv(client: &mut Client, cmd: KvCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        KvCommand::Put {
            key,
            value,
            lease,
            prev_kv,
        } => {
            let r = client
                .put(PutRequest {
                    key: key.into_bytes(),
                    value: value.into_bytes(),
                    lease,
                    prev_kv,
                    ignore_value: false,
                    ignore_lease: false,
                })
                .await?;
            if as_json {
                println!(
                    "{}",
                    json!({"revision": r.revision, "prev_kv": r.prev_kv.as_ref().map(kv_json)})
                );
            } else {
                println!("OK (revision {})", r.revision);
                if let Some(prev) = r.prev_kv {
                    println!("previous: {}", text(&prev.value));
                }
            }
        }
        KvCommand::Get {
            key,
            prefix,
            range_end,
            limit,
            rev,
            keys_only,
            count_only,
            serializable,
        } => {
            let (key, mut end) = range_of(&key, prefix);
            if let Some(e) = range_end {
                end = e.into_bytes();
            }
            let request = RangeRequest {
                key,
                range_end: end,
                limit,
                keys_only,
                count_only,
                revision: rev,
            };
            let r = client.range(request, serializable).await?;
            if as_json {
                let kvs: Vec<Value> = r.kvs.iter().map(kv_json).collect();
                println!(
                    "{}",
                    json!({"revision": r.revision, "count": r.count, "more": r.more, "kvs": kvs})
                );
            } else if count_only {
                println!("{}", r.count);
            } else {
                print_kvs(&r.kvs, keys_only);
                if r.more {
                    println!("... {} keys in all (revision {})", r.count, r.revision);
                }
            }
        }
        KvCommand::Del {
            key,
            prefix,
            prev_kv,
        } => {
            let (key, range_end) = range_of(&key, prefix);
            let r = client
                .delete_range(DeleteRangeRequest {
                    key,
                    range_end,
                    prev_kv,
                })
                .await?;
            if as_json {
                let prev: Vec<Value> = r.prev_kvs.iter().map(kv_json).collect();
                println!(
                    "{}",
                    json!({"revision": r.revision, "deleted": r.deleted, "prev_kvs": prev})
                );
            } else {
                println!("{} deleted (revision {})", r.deleted, r.revision);
            }
        }
        KvCommand::Txn {
            conditions,
            then_ops,
            else_ops,
        } => {
            let request = TxnRequest {
                compare: conditions
                    .iter()
                    .map(|c| parse_condition(c))
                    .collect::<anyhow::Result<_>>()?,
                success: then_ops
                    .iter()
                    .map(|o| parse_op(o))
                    .collect::<anyhow::Result<_>>()?,
                failure: else_ops
                    .iter()
                    .map(|o| parse_op(o))
                    .collect::<anyhow::Result<_>>()?,
            };
            let r = client.txn(request).await?;
            if as_json {
                let responses: Vec<Value> = r.responses.iter().map(response_json).collect();
                println!(
                    "{}",
                    json!({"succeeded": r.succeeded, "revision": r.revision, "responses": responses})
                );
            } else {
                println!(
                    "{} (revision {})",
                    if r.succeeded { "SUCCESS" } else { "FAILURE" },
                    r.revision
                );
                for op in &r.responses {
                    if let ResponseOp::Range(range) = op {
                        print_kvs(&range.kvs, false);
                    }
                }
            }
        }
        KvCommand::Watch {
            key,
            prefix,
            rev,
            prev_kv,
            count,
        } => watch(client, key, prefix, rev, prev_kv, count, as_json).await?,
        KvCommand::Compact { revision } => {
            let r = client.compact(revision).await?;
            if as_json {
                println!("{}", json!({"revision": r}));
            } else {
                println!("compacted up to revision {revision} (store at revision {r})");
            }
        }
    }
    Ok(())
}

fn response_json(op: &ResponseOp) -> Value {
    match op {
        ResponseOp::Range(r) => {
            json!({"range": {"kvs": r.kvs.iter().map(kv_json).collect::<Vec<_>>(), "count": r.count}})
        }
        ResponseOp::Put(r) => json!({"put": {"revision": r.revision}}),
        ResponseOp::DeleteRange(r) => json!({"delete": {"deleted": r.deleted}}),
        ResponseOp::Txn(r) => json!({"txn": {"succeeded": r.succeeded}}),
    }
}

fn print_kvs(kvs: &[KeyValue], keys_only: bool) {
    for kv in kvs {
        if keys_only {
            println!("{}", text(&kv.key));
        } else {
            println!("{}\t{}", text(&kv.key), text(&kv.value));
        }
    }
}

/// `KEY==VALUE`, `KEY!=VALUE`, `version(KEY)=N`, `mod(KEY)<N`, `create(KEY)>N`, `lease(KEY)=N`.
fn parse_condition(c: &str) -> anyhow::Result<Compare> {
    let key_of = |k: &str| k.as_bytes().to_vec();
    if let Some((k, v)) = c.split_once("==") {
        return Ok(Compare {
            key: key_of(k),
            range_end: Vec::new(),
            target: CompareTarget::Value(v.as_bytes().to_vec()),
            result: CompareResult::Equal,
        });
    }
    if let Some((k, v)) = c.split_once("!=") {
        return Ok(Compare {
            key: key_of(k),
            range_end: Vec::new(),
            target: CompareTarget::Value(v.as_bytes().to_vec()),
            result: CompareResult::NotEqual,
        });
    }
    let (lhs, op, rhs) = ['=', '<', '>']
        .iter()
        .find_map(|op| c.rsplit_once(*op).map(|(l, r)| (l, *op, r)))
        .with_context(|| format!("condition `{c}`: expected KEY==VALUE or FIELD(KEY)=N"))?;
    let n: i64 = rhs
        .trim()
        .parse()
        .with_context(|| format!("condition `{c}`: `{rhs}` is not a number"))?;
    let (field, key) = lhs
        .strip_suffix(')')
        .and_then(|l| l.split_once('('))
        .with_context(|| format!("condition `{c}`: expected FIELD(KEY)"))?;
    let target = match field {
        "version" => CompareTarget::Version(n),
        "mod" => CompareTarget::ModRevision(n),
        "create" => CompareTarget::CreateRevision(n),
        "lease" => CompareTarget::Lease(n),
        other => bail!("condition `{c}`: unknown field `{other}` (version, mod, create, lease)"),
    };
    let result = match op {
        '=' => CompareResult::Equal,
        '<' => CompareResult::Less,
        _ => CompareResult::Greater,
    };
    Ok(Compare {
        key: key_of(key),
        range_end: Vec::new(),
        target,
        result,
    })
}

/// `put:KEY=VALUE`, `del:KEY`, `get:KEY`.
fn parse_op(o: &str) -> anyhow::Result<RequestOp> {
    if let Some(rest) = o.strip_prefix("put:") {
        let (k, v) = rest
            .split_once('=')
            .with_context(|| format!("op `{o}`: expected put:KEY=VALUE"))?;
        return Ok(RequestOp::Put(PutRequest {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
            lease: 0,
            prev_kv: false,
            ignore_value: false,
            ignore_lease: false,
        }));
    }
    if let Some(k) = o.strip_prefix("del:") {
        return Ok(RequestOp::DeleteRange(DeleteRangeRequest {
            key: k.as_bytes().to_vec(),
            range_end: Vec::new(),
            prev_kv: false,
        }));
    }
    if let Some(k) = o.strip_prefix("get:") {
        return Ok(RequestOp::Range(RangeRequest {
            key: k.as_bytes().to_vec(),
            ..RangeRequest::default()
        }));
    }
    bail!("op `{o}`: expected put:KEY=VALUE, del:KEY or get:KEY")
}

async fn watch(
    client: &mut Client,
    key: String,
    prefix: bool,
    rev: i64,
    prev_kv: bool,
    count: Option<usize>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (key, range_end) = range_of(&key, prefix);
    let (tx, mut rx) = tokio::sync::mpsc::channel(WATCH_QUEUE_DEPTH);
    let (_handle, revision) = client.watch(key, range_end, rev, prev_kv, tx).await?;
    if !as_json {
        eprintln!(
            "watching from revision {} (Ctrl-C to stop)",
            if rev == 0 { revision + 1 } else { rev }
        );
    }
    let mut seen = 0;
    while let Some(message) = rx.recv().await {
        match message {
            WatchMessage::Events(events) => {
                for e in &events {
                    if as_json {
                        println!("{}", event_json(e));
                    } else {
                        let kind = match e.kind {
                            EventKind::Put => "PUT",
                            EventKind::Delete => "DELETE",
                        };
                        println!(
                            "{kind}\t{}\t{}\t(revision {})",
                            text(&e.kv.key),
                            text(&e.kv.value),
                            e.kv.mod_revision
                        );
                    }
                    seen += 1;
                    if count.is_some_and(|c| seen >= c) {
                        return Ok(());
                    }
                }
            }
            WatchMessage::Cancelled(reason) => bail!("watch cancelled: {reason}"),
        }
    }
    bail!("the watch connection closed")
}

async fn lease(client: &mut Client, cmd: LeaseCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        LeaseCommand::Grant { ttl_seconds, id } => {
            let (id, ttl_ms) = client
                .lease_grant(id, ttl_seconds.saturating_mul(1000))
                .await?;
            if as_json {
                println!("{}", json!({"id": id, "ttl_ms": ttl_ms}));
            } else {
                println!("lease {id} granted with TTL {}s", ttl_ms / 1000);
            }
        }
        LeaseCommand::Revoke { id } => {
            let revision = client.lease_revoke(id).await?;
            if as_json {
                println!("{}", json!({"revision": revision}));
            } else {
                println!("lease {id} revoked (revision {revision})");
            }
        }
        LeaseCommand::KeepAlive { id, once } => loop {
            let ttl_ms = client.lease_keep_alive(id).await?;
            if as_json {
                println!("{}", json!({"id": id, "ttl_ms": ttl_ms}));
            } else {
                println!("lease {id} kept alive with TTL {}s", ttl_ms / 1000);
            }
            if once {
                break;
            }
            tokio::time::sleep(Duration::from_millis((ttl_ms / 3).max(100))).await;
        },
        LeaseCommand::Ttl { id, keys } => {
            let (granted, remaining, attached) = client.lease_time_to_live(id, keys).await?;
            if as_json {
                let keys: Vec<String> = attached.iter().map(|k| text(k)).collect();
                println!(
                    "{}",
                    json!({"id": id, "granted_ttl_ms": granted, "remaining_ms": remaining, "keys": keys})
                );
            } else {
                println!(
                    "lease {id}: granted {}s, remaining {}s",
                    granted / 1000,
                    remaining / 1000
                );
                for k in attached {
                    println!("  {}", text(&k));
                }
            }
        }
    }
    Ok(())
}

fn status_json(s: &ClusterStatus) -> Value {
    let members: Vec<Value> = s
        .members
        .iter()
        .map(|m| json!({"id": m.node_id, "address": m.address, "voter": m.voter, "matched_index": m.matched_index}))
        .collect();
    json!({"node_id": s.node_id, "term": s.term, "leader_id": s.leader_id, "state": s.state,
           "last_log_index": s.last_log_index, "applied_index": s.applied_index, "members": members})
}

async fn cluster(client: &mut Client, cmd: ClusterCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status => {
            let s = client.status().await?;
            if as_json {
                println!("{}", status_json(&s));
                return Ok(());
            }
            println!(
                "node {} ({}), term {}, leader {}, last log {}, applied {}",
                s.node_id, s.state, s.term, s.leader_id, s.last_log_index, s.applied_index
            );
            println!(
                "{:<6} {:<22} {:<8} {:>8} {:>6}",
                "ID", "ADDRESS", "ROLE", "MATCHED", "LAG"
            );
            for m in &s.members {
                let role = if m.voter { "voter" } else { "learner" };
                let matched = m.matched_index.map_or("-".to_string(), |i| i.to_string());
                let lag = m.matched_index.map_or("-".to_string(), |i| {
                    s.last_log_index.saturating_sub(i).to_string()
                });
                let leader = if m.node_id == s.leader_id { " *" } else { "" };
                println!(
                    "{:<6} {:<22} {:<8} {:>8} {:>6}{leader}",
                    m.node_id, m.address, role, matched, lag
                );
            }
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
            println!(
                "node {node_id} at {address} added as {}",
                if learner { "learner" } else { "voter" }
            );
        }
        ClusterCommand::Promote { node_id } => {
            client.promote(node_id).await?;
            println!("node {node_id} is a voter");
        }
        ClusterCommand::Remove { node_id } => {
            client.remove(node_id).await?;
            println!("node {node_id} removed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::utc_time;

    #[test]
    fn utc_time_prints_civil_dates() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(utc_time(1_796_645_090_110), "2026-12-07T12:04:50Z");
        assert_eq!(utc_time(4_102_444_800_000), "2100-01-01T00:00:00Z");
    }
}
