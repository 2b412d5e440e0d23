//! The Rust client of the control plane, used by `photon ctl` and by every
//! service: it connects to any node, follows "not the leader" answers to the
//! leader by itself, and moves on to the next endpoint when one is down.
//!
//! Must run inside a tokio `LocalSet` (Cap'n Proto's RPC system is `!Send`).

use std::net::SocketAddr;
use std::time::Duration;

use control_schema::iam_capnp::iam;
use control_schema::kv_capnp::{kv, watcher};
use control_schema::raft_capnp::{cluster, node, session};

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
    #[error("no token: log in first (photon ctl login)")]
    NoToken,
    #[error("cannot reach any control-plane node ({tried}): {last}")]
    Unreachable { tried: String, last: String },
    #[error("{0}")]
    Remote(String),
    #[error("gave up after retrying for {CALL_RETRY_DEADLINE:?}: {0}")]
    Exhausted(String),
    /// The connection broke after the request was sent: it may or may not
    /// have been applied (only from an [`Client::at_most_once`] client).
    #[error("the outcome is unknown: the connection broke after the request was sent ({0})")]
    Unknown(String),
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

/// The capabilities of one connection.
#[derive(Clone)]
struct Caps {
    node: node::Client,
    session: Option<session::Client>,
    kv: Option<kv::Client>,
}

/// A connection to the control plane.
pub struct Client {
    endpoints: Vec<SocketAddr>,
    current: usize,
    node: Option<node::Client>,
    /// The token every call presents (None: only `login` works).
    token: Option<String>,
    /// The session and KV capabilities of `node`, obtained once per
    /// connection (pipelined: no extra round trip).
    session: Option<session::Client>,
    kv: Option<kv::Client>,
    /// Whether any endpoint ever answered: a client that never reached the
    /// cluster fails at once instead of waiting out an "election".
    reached: bool,
    /// Never send a request twice once it may have reached a node.
    at_most_once: bool,
}

enum Failure {
    /// The node is not the leader; go to this address (if known).
    Redirect(Option<SocketAddr>),
    /// The connection failed: try another endpoint.
    Transport(String),
    /// The node refused the request without doing it (overloaded, no
    /// quorum for a read): try again.
    Refused(String),
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
        capnp::ErrorKind::Disconnected => Failure::Transport(text),
        capnp::ErrorKind::Overloaded => Failure::Refused(text),
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
    /// A client without a token: it can only [`login`](Self::login).
    pub fn new(endpoints: Vec<SocketAddr>) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(Self {
            endpoints,
            current: 0,
            node: None,
            token: None,
            session: None,
            kv: None,
            reached: false,
            at_most_once: false,
        })
    }

    /// A client whose calls present `token`.
    pub fn with_token(endpoints: Vec<SocketAddr>, token: String) -> Result<Self, ClientError> {
        let mut client = Self::new(endpoints)?;
        client.token = Some(token);
        Ok(client)
    }

    /// A client that sends each request at most once past a node: a
    /// connection that breaks after sending gives [`ClientError::Unknown`]
    /// instead of a retry elsewhere. Redirects ("not the leader") and
    /// overload refusals are still followed, as they say nothing was done.
    /// By default a mutation whose connection broke is sent again, so it
    /// may apply twice (a put twice is harmless; a txn may then report the
    /// second attempt's compare).
    pub fn at_most_once(mut self) -> Self {
        self.at_most_once = true;
        self
    }

    /// Replaces the token (after a refresh); the next call authenticates anew.
    pub fn set_token(&mut self, token: String) {
        self.token = Some(token);
        self.session = None;
        self.kv = None;
    }

    /// Logs in and returns the token and its expiry (ms since the epoch).
    pub async fn login(
        &mut self,
        tenant: &str,
        principal: &str,
        secret: &str,
        project: &str,
        ttl_seconds: u32,
    ) -> Result<(String, u64), ClientError> {
        self.retrying(|caps| async move {
            let mut call = caps.node.login_request();
            {
                let mut p = call.get();
                p.set_tenant(tenant);
                p.set_principal(principal);
                p.set_secret(secret);
                p.set_project(project);
                p.set_ttl_seconds(ttl_seconds);
            }
            let reply = call.send().promise.await?;
            let r = reply.get()?;
            Ok((r.get_token()?.to_string()?, r.get_expires_at_ms()))
        })
        .await
    }

    /// The capabilities of the current connection for this client's token.
    fn caps(&mut self, node: node::Client) -> Caps {
        if self.session.is_none() {
            if let Some(token) = &self.token {
                let mut call = node.authenticate_request();
                call.get().set_token(token);
                self.session = Some(call.send().pipeline.get_session());
            }
        }
        if self.kv.is_none() {
            if let Some(session) = &self.session {
                self.kv = Some(session.kv_request().send().pipeline.get_kv());
            }
        }
        Caps {
            node,
            session: self.session.clone(),
            kv: self.kv.clone(),
        }
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
        self.session = None;
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
        if self.token.is_none() {
            return Err(ClientError::NoToken);
        }
        self.retrying(|caps| {
            let kv = caps.kv.expect("a client with a token has a KV capability");
            call(kv)
        })
        .await
    }

    /// Runs `call` against the session of the current node.
    async fn with_session<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(session::Client) -> Fut,
        Fut: std::future::Future<Output = capnp::Result<T>>,
    {
        if self.token.is_none() {
            return Err(ClientError::NoToken);
        }
        self.retrying(|caps| {
            let session = caps.session.expect("a client with a token has a session");
            call(session)
        })
        .await
    }

    /// Runs `call` against the IAM API of the current node.
    pub async fn with_iam<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(iam::Client) -> Fut,
        Fut: std::future::Future<Output = capnp::Result<T>>,
    {
        self.with_session(|session| call(session.iam_request().send().pipeline.get_iam()))
            .await
    }

    /// Runs `call` against the S3 bucket API of the current node.
    pub async fn with_buckets<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(control_schema::buckets_capnp::buckets::Client) -> Fut,
        Fut: std::future::Future<Output = capnp::Result<T>>,
    {
        self.with_session(|session| call(session.buckets_request().send().pipeline.get_buckets()))
            .await
    }

    /// Runs `call` against the volume API of the current node.
    pub async fn with_volumes<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(control_schema::volumes_capnp::volumes::Client) -> Fut,
        Fut: std::future::Future<Output = capnp::Result<T>>,
    {
        self.with_session(|session| call(session.volumes_request().send().pipeline.get_volumes()))
            .await
    }

    /// Runs `call` against the load-balancer API (FiberLB) of the current node.
    pub async fn with_lb<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(control_schema::lb_capnp::lb::Client) -> Fut,
        Fut: std::future::Future<Output = capnp::Result<T>>,
    {
        self.with_session(|session| call(session.lb_request().send().pipeline.get_lb()))
            .await
    }

    /// Runs `call` with the current node's capabilities, following "not the
    /// leader" to the leader and moving to another endpoint when one fails,
    /// until [`CALL_RETRY_DEADLINE`].
    async fn retrying<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Caps) -> Fut,
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
            let caps = self.caps(node);
            let outcome = call(caps).await;
            match outcome.map_err(classify) {
                Ok(v) => return Ok(v),
                Err(Failure::Remote(e)) => {
                    if e.starts_with(rpc::UNAUTHENTICATED) {
                        // A refused session stays refused: authenticate
                        // again on the next call (the node may have caught
                        // up, or the token was replaced).
                        self.session = None;
                        self.kv = None;
                    }
                    return Err(ClientError::Remote(e));
                }
                Err(Failure::Redirect(address)) => {
                    last = format!("{NOT_LEADER} (redirected to {address:?})");
                    if address.is_none() {
                        tokio::time::sleep(RETRY_BACKOFF).await;
                    }
                    self.switch_to(address);
                }
                Err(Failure::Transport(e)) if self.at_most_once => {
                    self.switch_to(None);
                    return Err(ClientError::Unknown(e));
                }
                Err(Failure::Transport(e) | Failure::Refused(e)) => {
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
        self.with_session(|session| async move {
            session
                .cluster_request()
                .send()
                .promise
                .await?
                .get()?
                .get_cluster()
        })
        .await
    }

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
                    Failure::Redirect(_) | Failure::Transport(_) | Failure::Refused(_) => {
                        last = "leader changed".into()
                    }
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

/// A role binding as the IAM API reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BindingInfo {
    pub principal: String,
    pub project: String,
    pub role: String,
}

/// Who a token speaks for (`whoami`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdentityInfo {
    pub tenant: String,
    pub principal: String,
    pub project: String,
    pub kind: String,
    pub cluster_admin: bool,
    pub token_id: String,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    pub bindings: Vec<BindingInfo>,
}

pub fn read_binding(
    b: control_schema::iam_capnp::binding_info::Reader<'_>,
) -> capnp::Result<BindingInfo> {
    Ok(BindingInfo {
        principal: b.get_principal()?.to_string()?,
        project: b.get_project()?.to_string()?,
        role: b.get_role()?.to_string()?,
    })
}

fn read_identity(
    i: control_schema::iam_capnp::identity::Reader<'_>,
) -> capnp::Result<IdentityInfo> {
    Ok(IdentityInfo {
        tenant: i.get_tenant()?.to_string()?,
        principal: i.get_principal()?.to_string()?,
        project: i.get_project()?.to_string()?,
        kind: i.get_kind()?.to_string()?,
        cluster_admin: i.get_cluster_admin(),
        token_id: i.get_token_id()?.to_string()?,
        issued_at_ms: i.get_issued_at_ms(),
        expires_at_ms: i.get_expires_at_ms(),
        bindings: i
            .get_bindings()?
            .iter()
            .map(read_binding)
            .collect::<capnp::Result<_>>()?,
    })
}

impl Client {
    /// Who this client's token speaks for.
    pub async fn whoami(&mut self) -> Result<IdentityInfo, ClientError> {
        self.with_session(|session| async move {
            let reply = session.whoami_request().send().promise.await?;
            read_identity(reply.get()?.get_identity()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposer::{LeaderHint, ProposeError};
    use crate::resource::CommitError;

    #[test]
    fn typed_refusals_reach_the_client_as_redirects_and_retries() {
        let hint = LeaderHint {
            id: 3,
            address: "10.0.0.3:7100".into(),
        };
        let e: capnp::Error = ProposeError::NotLeader(Some(hint)).into();
        match classify(e) {
            Failure::Redirect(Some(a)) => {
                assert_eq!(a, "10.0.0.3:7100".parse::<SocketAddr>().unwrap())
            }
            _ => panic!("a not-leader answer with a hint must redirect there"),
        }
        let e: capnp::Error = ProposeError::NotLeader(None).into();
        assert!(matches!(classify(e), Failure::Redirect(None)));
        // Through a resource kind's error too (a commit on a follower).
        let e = crate::resource::volume::VolumeWriteError::Commit(CommitError::Propose(
            ProposeError::NotLeader(Some(LeaderHint {
                id: 2,
                address: "10.0.0.2:7100".into(),
            })),
        ));
        match classify(crate::rpc::convert::refusal(e)) {
            Failure::Redirect(Some(a)) => {
                assert_eq!(a, "10.0.0.2:7100".parse::<SocketAddr>().unwrap())
            }
            _ => panic!("a resource write on a follower must redirect to the leader"),
        }
        let busy: capnp::Error = ProposeError::Busy("full queue".into()).into();
        assert!(matches!(classify(busy), Failure::Refused(_)));
        let contended: capnp::Error = CommitError::Contended {
            what: "vip web".into(),
        }
        .into();
        assert!(matches!(classify(contended), Failure::Refused(_)));
        let disk: capnp::Error = ProposeError::DiskFull.into();
        assert!(matches!(classify(disk), Failure::Remote(t) if t.contains("disk is full")));
    }
}
