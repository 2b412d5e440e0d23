//! The Rust client of the control plane, used by `photon ctl` and by every
//! service: it connects to any node, follows "not the leader" answers to the
//! leader by itself, and moves on to the next endpoint when one is down.
//!
//! Must run inside a tokio `LocalSet` (Cap'n Proto's RPC system is `!Send`).

use std::net::SocketAddr;
use std::time::Duration;

use control_schema::kv_capnp::{kv, watcher};
use control_schema::raft_capnp::{cluster, node};

use crate::kv::{
    DeleteRangeRequest, DeleteRangeResponse, Event, PutRequest, PutResponse, RangeRequest,
    RangeResponse, Revision, TxnRequest, TxnResponse,
};
use crate::rpc::{self, convert, NOT_LEADER};

/// How long one call keeps retrying across redirects, dead endpoints and
/// elections before it gives up (a few election timeouts).
pub const CALL_RETRY_DEADLINE: Duration = Duration::from_secs(10);
/// Pause before retrying when no leader is known or an endpoint is down.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no control-plane endpoint given")]
    NoEndpoints,
    #[error("cannot reach any control-plane node ({tried}): {last}")]
    Unreachable { tried: String, last: String },
    #[error("{0}")]
    Remote(String),
    #[error("gave up after retrying for {CALL_RETRY_DEADLINE:?}: {0}")]
    Exhausted(String),
}

/// The membership and progress of the cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub term: u64,
    pub leader_id: u64,
    pub state: String,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: u64,
    pub address: String,
    pub voter: bool,
    /// The last log index the leader knows this member holds (leader only).
    pub matched_index: Option<u64>,
}

/// A connection to the control plane.
pub struct Client {
    endpoints: Vec<SocketAddr>,
    current: usize,
    node: Option<node::Client>,
    /// The KV capability of `node`, fetched once per connection.
    kv: Option<kv::Client>,
    /// Whether any endpoint ever answered: a client that never reached the
    /// cluster fails at once instead of waiting out an "election".
    reached: bool,
}

enum Failure {
    /// The node is not the leader; go to this address (if known).
    Redirect(Option<SocketAddr>),
    /// The connection failed: try another endpoint.
    Transport(String),
    /// The request itself failed: report it.
    Remote(String),
}

fn classify(e: capnp::Error) -> Failure {
    let text = e.to_string();
    if let Some(pos) = text.find(NOT_LEADER) {
        let rest = &text[pos..];
        let address = rest
            .rsplit(" at ")
            .next()
            .and_then(|a| a.trim().parse::<SocketAddr>().ok());
        return Failure::Redirect(address);
    }
    match e.kind {
        capnp::ErrorKind::Disconnected | capnp::ErrorKind::Overloaded => Failure::Transport(text),
        _ => Failure::Remote(strip_remote_prefix(&text)),
    }
}

/// capnp prefixes remote failures with "remote exception: "; users want the reason.
fn strip_remote_prefix(text: &str) -> String {
    let mut t = text;
    for prefix in ["Failed: ", "failed: ", "remote exception: "] {
        t = t.trim_start_matches(prefix);
    }
    t.to_string()
}

impl Client {
    pub fn new(endpoints: Vec<SocketAddr>) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(Self {
            endpoints,
            current: 0,
            node: None,
            kv: None,
            reached: false,
        })
    }

    async fn node(&mut self) -> Result<node::Client, ClientError> {
        if let Some(n) = &self.node {
            return Ok(n.clone());
        }
        let mut last = String::new();
        for step in 0..self.endpoints.len() {
            let i = (self.current + step) % self.endpoints.len();
            match rpc::connect(self.endpoints[i]).await {
                Ok(n) => {
                    self.current = i;
                    self.node = Some(n.clone());
                    self.reached = true;
                    return Ok(n);
                }
                Err(e) => last = format!("{}: {e}", self.endpoints[i]),
            }
        }
        Err(ClientError::Unreachable {
            tried: self
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            last,
        })
    }

    fn switch_to(&mut self, address: Option<SocketAddr>) {
        self.node = None;
        self.kv = None;
        match address {
            Some(a) => match self.endpoints.iter().position(|e| *e == a) {
                Some(i) => self.current = i,
                None => {
                    self.endpoints.push(a);
                    self.current = self.endpoints.len() - 1;
                }
            },
            None => self.current = (self.current + 1) % self.endpoints.len(),
        }
    }

    /// Runs `call` against the KV of the current node, following redirects.
    async fn with_kv<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(kv::Client) -> Fut,
        Fut: std::future::Future<Output = capnp::Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + CALL_RETRY_DEADLINE;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let node = match self.node().await {
                Ok(n) => n,
                Err(e) if !self.reached => return Err(e),
                Err(e) => {
                    // Every endpoint refused: nodes may be restarting.
                    last = e.to_string();
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            };
            let result = match &self.kv {
                Some(kv) => Ok(kv.clone()),
                None => async { node.kv_request().send().promise.await?.get()?.get_kv() }.await,
            };
            if let Ok(kv) = &result {
                self.kv = Some(kv.clone());
            }
            let outcome = match result {
                Ok(kv) => call(kv).await,
                Err(e) => Err(e),
            };
            match outcome.map_err(classify) {
                Ok(v) => return Ok(v),
                Err(Failure::Remote(e)) => return Err(ClientError::Remote(e)),
                Err(Failure::Redirect(address)) => {
                    last = format!("{NOT_LEADER} (redirected to {address:?})");
                    if address.is_none() {
                        tokio::time::sleep(RETRY_BACKOFF).await;
                    }
                    self.switch_to(address);
                }
                Err(Failure::Transport(e)) => {
                    last = e;
                    self.switch_to(None);
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
        }
        Err(ClientError::Exhausted(last))
    }

    pub async fn range(
        &mut self,
        request: RangeRequest,
        serializable: bool,
    ) -> Result<RangeResponse, ClientError> {
        self.with_kv(|kv| {
            let request = request.clone();
            async move {
                let mut call = kv.range_request();
                convert::write_range_request(call.get().init_request(), &request, serializable);
                let reply = call.send().promise.await?;
                convert::read_range_response(reply.get()?.get_response()?)
            }
        })
        .await
    }

    pub async fn put(&mut self, request: PutRequest) -> Result<PutResponse, ClientError> {
        self.with_kv(|kv| {
            let request = request.clone();
            async move {
                let mut call = kv.put_request();
                convert::write_put_request(call.get().init_request(), &request);
                let reply = call.send().promise.await?;
                convert::read_put_response(reply.get()?.get_response()?)
            }
        })
        .await
    }

    pub async fn delete_range(
        &mut self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ClientError> {
        self.with_kv(|kv| {
            let request = request.clone();
            async move {
                let mut call = kv.delete_range_request();
                convert::write_delete_request(call.get().init_request(), &request);
                let reply = call.send().promise.await?;
                convert::read_delete_response(reply.get()?.get_response()?)
            }
        })
        .await
    }

    pub async fn txn(&mut self, request: TxnRequest) -> Result<TxnResponse, ClientError> {
        self.with_kv(|kv| {
            let request = request.clone();
            async move {
                let mut call = kv.txn_request();
                convert::write_txn_request(call.get().init_request(), &request);
                let reply = call.send().promise.await?;
                convert::read_txn_response(reply.get()?.get_response()?)
            }
        })
        .await
    }

    pub async fn compact(&mut self, revision: Revision) -> Result<Revision, ClientError> {
        self.with_kv(|kv| async move {
            let mut call = kv.compact_request();
            call.get().set_revision(revision);
            Ok(call.send().promise.await?.get()?.get_revision())
        })
        .await
    }

    /// Grants a lease; returns (id, ttl in ms).
    pub async fn lease_grant(&mut self, id: i64, ttl_ms: u64) -> Result<(i64, u64), ClientError> {
        self.with_kv(|kv| async move {
            let mut call = kv.lease_grant_request();
            call.get().set_id(id);
            call.get().set_ttl_ms(ttl_ms);
            let reply = call.send().promise.await?;
            let r = reply.get()?;
            Ok((r.get_id(), r.get_ttl_ms()))
        })
        .await
    }

    pub async fn lease_revoke(&mut self, id: i64) -> Result<Revision, ClientError> {
        self.with_kv(|kv| async move {
            let mut call = kv.lease_revoke_request();
            call.get().set_id(id);
            Ok(call.send().promise.await?.get()?.get_revision())
        })
        .await
    }

    /// Renews a lease; returns its ttl in ms.
    pub async fn lease_keep_alive(&mut self, id: i64) -> Result<u64, ClientError> {
        self.with_kv(|kv| async move {
            let mut call = kv.lease_keep_alive_request();
            call.get().set_id(id);
            Ok(call.send().promise.await?.get()?.get_ttl_ms())
        })
        .await
    }

    /// Returns (granted ttl ms, remaining ms, attached keys).
    pub async fn lease_time_to_live(
        &mut self,
        id: i64,
        keys: bool,
    ) -> Result<(u64, u64, Vec<Vec<u8>>), ClientError> {
        self.with_kv(|kv| async move {
            let mut call = kv.lease_time_to_live_request();
            call.get().set_id(id);
            call.get().set_keys(keys);
            let reply = call.send().promise.await?;
            let r = reply.get()?;
            let keys = r
                .get_keys()?
                .iter()
                .map(|k| k.map(<[u8]>::to_vec))
                .collect::<capnp::Result<_>>()?;
            Ok((r.get_granted_ttl_ms(), r.get_remaining_ms(), keys))
        })
        .await
    }

    /// Watches `key`..`range_end` from `start_revision` (0: from now); every
    /// batch of events goes to `events` in revision order. Returns the handle
    /// (dropping it ends the watch) and the revision the watch started after.
    pub async fn watch(
        &mut self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_revision: Revision,
        prev_kv: bool,
        events: tokio::sync::mpsc::Sender<WatchMessage>,
    ) -> Result<(control_schema::kv_capnp::watch_handle::Client, Revision), ClientError> {
        self.with_kv(|kv| {
            let (key, range_end, events) = (key.clone(), range_end.clone(), events.clone());
            async move {
                let mut call = kv.watch_request();
                {
                    let mut p = call.get();
                    p.set_key(&key);
                    p.set_range_end(&range_end);
                    p.set_start_revision(start_revision);
                    p.set_prev_kv(prev_kv);
                    p.set_watcher(capnp_rpc::new_client(WatcherSink { events }));
                }
                let reply = call.send().promise.await?;
                let r = reply.get()?;
                Ok((r.get_handle()?, r.get_revision()))
            }
        })
        .await
    }

    async fn cluster(&mut self) -> Result<cluster::Client, ClientError> {
        let node = self.node().await?;
        let result = async {
            node.cluster_request()
                .send()
                .promise
                .await?
                .get()?
                .get_cluster()
        }
        .await;
        result.map_err(|e| ClientError::Remote(strip_remote_prefix(&e.to_string())))
    }

    /// Status as the node the client is connected to sees it.
    pub async fn status(&mut self) -> Result<ClusterStatus, ClientError> {
        let cluster = self.cluster().await?;
        let result = async {
            let reply = cluster.status_request().send().promise.await?;
            let s = reply.get()?.get_status()?;
            let members = s
                .get_members()?
                .iter()
                .map(|m| {
                    Ok(Member {
                        node_id: m.get_node_id(),
                        address: m.get_address()?.to_string()?,
                        voter: m.get_voter(),
                        matched_index: rpc::read_optional_log_id(m.get_matched()?)?
                            .map(|l| l.index),
                    })
                })
                .collect::<capnp::Result<Vec<_>>>()?;
            Ok::<_, capnp::Error>(ClusterStatus {
                node_id: s.get_node_id(),
                term: s.get_term(),
                leader_id: s.get_leader_id(),
                state: s.get_state()?.to_string()?,
                last_log_index: s.get_last_log_index(),
                applied_index: s.get_applied_index(),
                members,
            })
        }
        .await;
        result.map_err(|e| ClientError::Remote(strip_remote_prefix(&e.to_string())))
    }

    /// Runs a membership change on the leader (found through `status`).
    async fn on_leader<F, Fut>(&mut self, change: F) -> Result<(), ClientError>
    where
        F: Fn(cluster::Client) -> Fut,
        Fut: std::future::Future<Output = capnp::Result<()>>,
    {
        let deadline = tokio::time::Instant::now() + CALL_RETRY_DEADLINE;
        let mut last = String::from("no leader");
        while tokio::time::Instant::now() < deadline {
            let status = match self.status().await {
                Ok(s) => s,
                Err(e) => {
                    last = e.to_string();
                    self.switch_to(None);
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            };
            let leader = status
                .members
                .iter()
                .find(|m| m.node_id == status.leader_id);
            match leader.and_then(|l| l.address.parse::<SocketAddr>().ok()) {
                Some(address) => self.switch_to(Some(address)),
                None => {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            }
            let cluster = self.cluster().await?;
            match change(cluster).await {
                Ok(()) => return Ok(()),
                Err(e) => match classify(e) {
                    Failure::Remote(e) => return Err(ClientError::Remote(e)),
                    Failure::Redirect(_) | Failure::Transport(_) => last = "leader changed".into(),
                },
            }
        }
        Err(ClientError::Exhausted(last))
    }

    pub async fn add_learner(&mut self, node_id: u64, address: &str) -> Result<(), ClientError> {
        let address = address.to_string();
        self.on_leader(|c| {
            let address = address.clone();
            async move {
                let mut call = c.add_learner_request();
                call.get().set_node_id(node_id);
                call.get().set_address(address.as_str());
                call.send().promise.await.map(|_| ())
            }
        })
        .await
    }

    pub async fn promote(&mut self, node_id: u64) -> Result<(), ClientError> {
        self.on_leader(|c| async move {
            let mut call = c.promote_request();
            call.get().set_node_id(node_id);
            call.send().promise.await.map(|_| ())
        })
        .await
    }

    pub async fn remove(&mut self, node_id: u64) -> Result<(), ClientError> {
        self.on_leader(|c| async move {
            let mut call = c.remove_request();
            call.get().set_node_id(node_id);
            call.send().promise.await.map(|_| ())
        })
        .await
    }
}

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMessage {
    Events(Vec<Event>),
    Cancelled(String),
}

/// Forwards deliveries into a bounded channel; a slow consumer slows the
/// stream (Cap'n Proto streaming flow control), it never grows a queue.
struct WatcherSink {
    events: tokio::sync::mpsc::Sender<WatchMessage>,
}

impl watcher::Server for WatcherSink {
    async fn events(
        self: capnp::capability::Rc<Self>,
        params: watcher::EventsParams,
    ) -> Result<(), capnp::Error> {
        let list = params.get()?.get_events()?;
        let events = list
            .iter()
            .map(convert::read_event)
            .collect::<capnp::Result<Vec<_>>>()?;
        self.events
            .send(WatchMessage::Events(events))
            .await
            .map_err(|_| capnp::Error::disconnected("watch consumer is gone".into()))
    }

    async fn cancelled(
        self: capnp::capability::Rc<Self>,
        params: watcher::CancelledParams,
        _results: watcher::CancelledResults,
    ) -> Result<(), capnp::Error> {
        let reason = params.get()?.get_reason()?.to_string()?;
        let _ = self.events.send(WatchMessage::Cancelled(reason)).await;
        Ok(())
    }
}
