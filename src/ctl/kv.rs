//! `photon ctl kv` and `photon ctl lease`: keys, values, transactions,
//! watches and leases, rendered from typed views of the client's replies.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use photon_control::client::{Client, Lease, LeaseTimeToLive, WatchMessage};
use photon_control::kv::{
    prefix_end, Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse,
    Event, EventKind, KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};
use serde::Serialize;

use crate::ctl::output::Output;

/// Queued watch deliveries the CLI holds before it slows the stream down.
const WATCH_QUEUE_DEPTH: usize = 64;

#[derive(Debug, Subcommand)]
pub enum KvCommand {
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
    Get(GetArgs),
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

/// `kv get`'s arguments.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
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
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- views: what the CLI prints, as tables or --json ----

/// A key-value with its key and value as text.
#[derive(Serialize)]
struct KvView {
    key: String,
    value: String,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

impl From<&KeyValue> for KvView {
    fn from(kv: &KeyValue) -> Self {
        Self {
            key: text(&kv.key),
            value: text(&kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

fn views(kvs: &[KeyValue]) -> Vec<KvView> {
    kvs.iter().map(KvView::from).collect()
}

#[derive(Serialize)]
struct PutView {
    revision: i64,
    prev_kv: Option<KvView>,
}

impl From<&PutResponse> for PutView {
    fn from(r: &PutResponse) -> Self {
        Self {
            revision: r.revision,
            prev_kv: r.prev_kv.as_ref().map(KvView::from),
        }
    }
}

#[derive(Serialize)]
struct RangeView {
    revision: i64,
    count: u64,
    more: bool,
    kvs: Vec<KvView>,
}

#[derive(Serialize)]
struct DeleteView {
    revision: i64,
    deleted: u64,
    prev_kvs: Vec<KvView>,
}

impl From<&DeleteRangeResponse> for DeleteView {
    fn from(r: &DeleteRangeResponse) -> Self {
        Self {
            revision: r.revision,
            deleted: r.deleted,
            prev_kvs: views(&r.prev_kvs),
        }
    }
}

#[derive(Serialize)]
struct TxnView {
    succeeded: bool,
    revision: i64,
    responses: Vec<ResponseView>,
}

/// One op's answer in a txn: `{"range": {...}}`, `{"put": {...}}`, ...
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum ResponseView {
    Range { kvs: Vec<KvView>, count: u64 },
    Put { revision: i64 },
    Delete { deleted: u64 },
    Txn { succeeded: bool },
}

impl From<&TxnResponse> for TxnView {
    fn from(r: &TxnResponse) -> Self {
        let responses = r
            .responses
            .iter()
            .map(|op| match op {
                ResponseOp::Range(r) => ResponseView::Range {
                    kvs: views(&r.kvs),
                    count: r.count,
                },
                ResponseOp::Put(r) => ResponseView::Put {
                    revision: r.revision,
                },
                ResponseOp::DeleteRange(r) => ResponseView::Delete { deleted: r.deleted },
                ResponseOp::Txn(r) => ResponseView::Txn {
                    succeeded: r.succeeded,
                },
            })
            .collect();
        Self {
            succeeded: r.succeeded,
            revision: r.revision,
            responses,
        }
    }
}

#[derive(Serialize)]
struct EventView {
    #[serde(rename = "type")]
    kind: &'static str,
    kv: KvView,
    prev_kv: Option<KvView>,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        Self {
            kind: match e.kind {
                EventKind::Put => "PUT",
                EventKind::Delete => "DELETE",
            },
            kv: KvView::from(&e.kv),
            prev_kv: e.prev_kv.as_ref().map(KvView::from),
        }
    }
}

#[derive(Serialize)]
struct LeaseTtlView {
    id: i64,
    granted_ttl_ms: u64,
    remaining_ms: u64,
    keys: Vec<String>,
}

impl From<&LeaseTimeToLive> for LeaseTtlView {
    fn from(t: &LeaseTimeToLive) -> Self {
        Self {
            id: t.id,
            granted_ttl_ms: t.granted_ttl_ms,
            remaining_ms: t.remaining_ms,
            keys: t.keys.iter().map(|k| text(k)).collect(),
        }
    }
}

fn kv_lines(kvs: &[KvView], keys_only: bool) -> String {
    kvs.iter()
        .map(|kv| {
            if keys_only {
                format!("{}\n", kv.key)
            } else {
                format!("{}\t{}\n", kv.key, kv.value)
            }
        })
        .collect()
}

// ---- commands ----

fn range_of(key: &str, prefix: bool) -> (Vec<u8>, Vec<u8>) {
    let key = key.as_bytes().to_vec();
    let end = if prefix { prefix_end(&key) } else { Vec::new() };
    (key, end)
}

pub async fn kv(client: &mut Client, cmd: KvCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        KvCommand::Put {
            key,
            value,
            lease,
            prev_kv,
        } => {
            let request = PutRequest {
                key: key.into_bytes(),
                value: value.into_bytes(),
                lease,
                prev_kv,
                ignore_value: false,
                ignore_lease: false,
            };
            let r = client.put(request).await?;
            out.show(&PutView::from(&r), |v| match &v.prev_kv {
                Some(prev) => format!("OK (revision {})\nprevious: {}", v.revision, prev.value),
                None => format!("OK (revision {})", v.revision),
            });
        }
        KvCommand::Get(args) => get(client, args, out).await?,
        KvCommand::Del {
            key,
            prefix,
            prev_kv,
        } => {
            let (key, range_end) = range_of(&key, prefix);
            let request = DeleteRangeRequest {
                key,
                range_end,
                prev_kv,
            };
            let r = client.delete_range(request).await?;
            out.show(&DeleteView::from(&r), |v| {
                format!("{} deleted (revision {})", v.deleted, v.revision)
            });
        }
        KvCommand::Txn {
            conditions,
            then_ops,
            else_ops,
        } => txn(client, &conditions, &then_ops, &else_ops, out).await?,
        KvCommand::Watch {
            key,
            prefix,
            rev,
            prev_kv,
            count,
        } => watch(client, key, prefix, rev, prev_kv, count, out).await?,
        KvCommand::Compact { revision } => {
            let r = client.compact(revision).await?;
            out.done(
                serde_json::json!({"revision": r}),
                format!("compacted up to revision {revision} (store at revision {r})"),
            );
        }
    }
    Ok(())
}

/// `kv get`: a key, a prefix or a range.
async fn get(client: &mut Client, args: GetArgs, out: Output) -> anyhow::Result<()> {
    let GetArgs {
        key,
        prefix,
        range_end,
        limit,
        rev,
        keys_only,
        count_only,
        serializable,
    } = args;
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
    show_range(out, &r, keys_only, count_only);
    Ok(())
}

fn show_range(out: Output, r: &RangeResponse, keys_only: bool, count_only: bool) {
    let view = RangeView {
        revision: r.revision,
        count: r.count,
        more: r.more,
        kvs: views(&r.kvs),
    };
    out.show(&view, |v| {
        if count_only {
            return v.count.to_string();
        }
        let mut lines = kv_lines(&v.kvs, keys_only);
        if v.more {
            lines.push_str(&format!(
                "... {} keys in all (revision {})",
                v.count, v.revision
            ));
        }
        lines
    });
}

async fn txn(
    client: &mut Client,
    conditions: &[String],
    then_ops: &[String],
    else_ops: &[String],
    out: Output,
) -> anyhow::Result<()> {
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
    out.show(&TxnView::from(&r), |v| {
        let verdict = if v.succeeded { "SUCCESS" } else { "FAILURE" };
        let mut lines = format!("{verdict} (revision {})\n", v.revision);
        for op in &v.responses {
            if let ResponseView::Range { kvs, .. } = op {
                lines.push_str(&kv_lines(kvs, false));
            }
        }
        lines
    });
    Ok(())
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
    out: Output,
) -> anyhow::Result<()> {
    let (key, range_end) = range_of(&key, prefix);
    let (tx, mut rx) = tokio::sync::mpsc::channel(WATCH_QUEUE_DEPTH);
    let (_handle, revision) = client.watch(key, range_end, rev, prev_kv, tx).await?;
    if !out.is_json() {
        eprintln!(
            "watching from revision {} (Ctrl-C to stop)",
            if rev == 0 { revision + 1 } else { rev }
        );
    }
    let mut seen = 0;
    while let Some(message) = rx.recv().await {
        let events = match message {
            WatchMessage::Events(events) => events,
            WatchMessage::Cancelled(reason) => bail!("watch cancelled: {reason}"),
        };
        for e in &events {
            out.show(&EventView::from(e), |v| {
                format!(
                    "{}\t{}\t{}\t(revision {})",
                    v.kind, v.kv.key, v.kv.value, v.kv.mod_revision
                )
            });
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                return Ok(());
            }
        }
    }
    bail!("the watch connection closed")
}

pub async fn lease(client: &mut Client, cmd: LeaseCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        LeaseCommand::Grant { ttl_seconds, id } => {
            let lease = client
                .lease_grant(id, ttl_seconds.saturating_mul(1000))
                .await?;
            out.show(&lease, |l| {
                format!("lease {} granted with TTL {}s", l.id, l.ttl_ms / 1000)
            });
        }
        LeaseCommand::Revoke { id } => {
            let revision = client.lease_revoke(id).await?;
            out.done(
                serde_json::json!({"revision": revision}),
                format!("lease {id} revoked (revision {revision})"),
            );
        }
        LeaseCommand::KeepAlive { id, once } => loop {
            let lease: Lease = client.lease_keep_alive(id).await?;
            out.show(&lease, |l| {
                format!("lease {} kept alive with TTL {}s", l.id, l.ttl_ms / 1000)
            });
            if once {
                break;
            }
            tokio::time::sleep(Duration::from_millis((lease.ttl_ms / 3).max(100))).await;
        },
        LeaseCommand::Ttl { id, keys } => {
            let ttl = client.lease_time_to_live(id, keys).await?;
            out.show(&LeaseTtlView::from(&ttl), |t| {
                let mut lines = format!(
                    "lease {}: granted {}s, remaining {}s\n",
                    t.id,
                    t.granted_ttl_ms / 1000,
                    t.remaining_ms / 1000
                );
                for k in &t.keys {
                    lines.push_str(&format!("  {k}\n"));
                }
                lines
            });
        }
    }
    Ok(())
}
