//! The Rust client of the control plane, used by `photon ctl` and by every
//! service: it connects to any node, follows "not the leader" answers to the
//! leader by itself, and moves on to the next endpoint when one is down.
//!
//! Must run inside a tokio `LocalSet` (Cap'n Proto's RPC system is `!Send`).

use std::net::SocketAddr;
use std::time::Duration;

use photon_schema::raft_capnp::{node, session};

pub use crate::api_error::{ApiError, Code};
use crate::rpc;

mod buckets;
mod cluster;
mod iam;
mod kv;
mod lb;
mod vms;
mod volumes;

pub use buckets::BucketInfo;
pub use cluster::{ClusterStatus, Member, NodeInfo};
pub use iam::{
    AccessKeyInfo, BindingInfo, IdentityInfo, NewAccessKey, PrincipalInfo, RefreshedToken,
    RoleInfo, SigningKeyInfo,
};
pub use kv::{Lease, LeaseTimeToLive, WatchHandle, WatchMessage};
pub use lb::{Backend, HealthChange, HealthCheck, LbStats, Vip, VipInfo};
pub use vms::{
    Console, ConsoleEvent, ImageInfo, ImagePartInfo, ImageSpec, VmDiskInfo, VmInfo, VmSpec,
};
pub use volumes::{Attachment, VolumeInfo};

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
    /// The server refused the call (its typed error).
    #[error("{0}")]
    Api(ApiError),
    /// A reply that does not follow the schema, or a Cap'n Proto failure
    /// other than a broken connection.
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("gave up after retrying for {CALL_RETRY_DEADLINE:?}: {0}")]
    Exhausted(String),
    /// The connection broke after the request was sent: it may or may not
    /// have been applied (only from an [`Client::at_most_once`] client).
    #[error("the outcome is unknown: the connection broke after the request was sent ({0})")]
    Unknown(String),
}

impl ClientError {
    /// The server's error code, when the server refused the call.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

/// How one attempt of a call failed, before the retry policy looks at it.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Cap'n Proto itself failed (connection, malformed message).
    Capnp(capnp::Error),
    /// The reply carried a typed error.
    Api(ApiError),
}

impl From<capnp::Error> for CallError {
    fn from(e: capnp::Error) -> Self {
        Self::Capnp(e)
    }
}

impl From<capnp::NotInSchema> for CallError {
    fn from(e: capnp::NotInSchema) -> Self {
        Self::Capnp(e.into())
    }
}

impl From<std::str::Utf8Error> for CallError {
    fn from(e: std::str::Utf8Error) -> Self {
        Self::Capnp(e.into())
    }
}

/// What one attempt of a call returns.
pub(crate) type Attempt<T> = Result<T, CallError>;

/// The reply reader `$reply` (any results struct of the API), or an early
/// return with its typed error.
macro_rules! reply {
    ($reply:expr) => {{
        let r = $reply;
        if r.has_error() {
            return Err($crate::client::CallError::Api(
                $crate::api_error::ApiError::read(r.get_error()?)?,
            ));
        }
        r
    }};
}
pub(crate) use reply;

/// A call whose reply carries nothing but `error`: `$api(&caps).$request()`
/// with its params set by `$set` (`$p` is the params builder), sent through
/// [`Client::with_session`] and checked.
macro_rules! unit_call {
    ($client:expr, $api:path, $request:ident, |$p:ident| $set:block) => {
        $client
            .with_session(|caps| async move {
                let mut call = $api(&caps).$request();
                #[allow(unused_mut)]
                let mut $p = call.get();
                $set
                let reply = call.send().promise.await?;
                reply!(reply.get()?);
                Ok(())
            })
            .await
    };
}
pub(crate) use unit_call;

/// Reads a Cap'n Proto text field as a `String`.
pub(crate) fn text(t: capnp::Result<capnp::text::Reader<'_>>) -> Attempt<String> {
    Ok(t?.to_string()?)
}

/// The capabilities of one connection.
#[derive(Clone)]
pub(crate) struct Caps {
    node: node::Client,
    session: Option<session::Client>,
    kv: Option<photon_schema::kv_capnp::kv::Client>,
}

impl Caps {
    pub(crate) fn node(&self) -> &node::Client {
        &self.node
    }

    /// The session of a client with a token.
    pub(crate) fn session(&self) -> &session::Client {
        self.session
            .as_ref()
            .expect("calls that need a session check for a token first")
    }

    pub(crate) fn kv(&self) -> &photon_schema::kv_capnp::kv::Client {
        self.kv
            .as_ref()
            .expect("calls that need a session check for a token first")
    }
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
    kv: Option<photon_schema::kv_capnp::kv::Client>,
    /// Whether any endpoint ever answered: a client that never reached the
    /// cluster fails at once instead of waiting out an "election".
    reached: bool,
    /// Never send a request twice once it may have reached a node.
    at_most_once: bool,
    /// Report "not the leader" instead of following it.
    pinned: bool,
}

/// What the retry policy does with a failed attempt.
enum Failure {
    /// The node is not the leader; go to this address (if known).
    Redirect(Option<SocketAddr>, ApiError),
    /// The connection failed: try another endpoint.
    Transport(String),
    /// The node refused the request without doing it (busy, electing,
    /// catching up): try again.
    Refused(String),
    /// The request itself failed: report it.
    Final(ClientError),
}

fn classify(e: CallError) -> Failure {
    match e {
        CallError::Api(e) if e.code == Code::NotLeader => {
            let address = e.leader.as_ref().and_then(|l| l.address.parse().ok());
            Failure::Redirect(address, e)
        }
        CallError::Api(e) if e.retryable() => Failure::Refused(e.message),
        CallError::Api(e) => Failure::Final(ClientError::Api(e)),
        CallError::Capnp(e) => match e.kind {
            capnp::ErrorKind::Disconnected => Failure::Transport(e.to_string()),
            capnp::ErrorKind::Overloaded => Failure::Refused(e.to_string()),
            _ => Failure::Final(ClientError::Protocol(e.to_string())),
        },
    }
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
            pinned: false,
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
    /// retryable refusals are still followed, as they say nothing was done.
    /// By default a mutation whose connection broke is sent again, so it
    /// may apply twice (a put twice is harmless; a txn may then report the
    /// second attempt's compare).
    pub fn at_most_once(mut self) -> Self {
        self.at_most_once = true;
        self
    }

    /// A client that asks its first endpoint only: "not the leader" comes
    /// back as [`Code::NotLeader`] (with the leader's address) instead of
    /// being followed. For tools that inspect one node.
    pub fn pinned(mut self) -> Self {
        self.pinned = true;
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
            let mut call = caps.node().login_request();
            {
                let mut p = call.get();
                p.set_tenant(tenant);
                p.set_principal(principal);
                p.set_secret(secret);
                p.set_project(project);
                p.set_ttl_seconds(ttl_seconds);
            }
            let reply = call.send().promise.await?;
            let r = reply!(reply.get()?);
            Ok((text(r.get_token())?, r.get_expires_at_ms()))
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

    /// Runs `call` with the session of the current node (so it needs a
    /// token), following redirects.
    pub(crate) async fn with_session<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Caps) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        if self.token.is_none() {
            return Err(ClientError::NoToken);
        }
        self.retrying(call).await
    }

    /// Runs `call` with the current node's capabilities, following "not the
    /// leader" to the leader and moving to another endpoint when one fails,
    /// until [`CALL_RETRY_DEADLINE`].
    async fn retrying<T, F, Fut>(&mut self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Caps) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let deadline = tokio::time::Instant::now() + CALL_RETRY_DEADLINE;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let node = match self.node().await {
                Ok(n) => n,
                Err(e) if !self.reached || self.pinned => return Err(e),
                Err(e) => {
                    // Every endpoint refused: nodes may be restarting.
                    last = e.to_string();
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            };
            let caps = self.caps(node);
            match call(caps).await.map_err(classify) {
                Ok(v) => return Ok(v),
                Err(Failure::Final(e)) => {
                    if e.code() == Some(Code::Unauthenticated) {
                        // A refused session stays refused: authenticate
                        // again on the next call (the node may have caught
                        // up, or the token was replaced).
                        self.session = None;
                        self.kv = None;
                    }
                    return Err(e);
                }
                Err(Failure::Redirect(_, e)) if self.pinned => return Err(ClientError::Api(e)),
                Err(Failure::Redirect(address, e)) => {
                    last = e.message;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposer::{LeaderHint, ProposeError};
    use crate::resource::CommitError;

    /// What the client reads back from a reply carrying `e`.
    fn over_the_wire(e: ApiError) -> CallError {
        let mut message = capnp::message::Builder::new_default();
        e.write(message.init_root());
        let read = message
            .get_root_as_reader::<photon_schema::error_capnp::error::Reader<'_>>()
            .unwrap();
        CallError::Api(ApiError::read(read).unwrap())
    }

    #[test]
    fn typed_refusals_reach_the_client_as_redirects_and_retries() {
        let hint = LeaderHint {
            id: 3,
            address: "10.0.0.3:7100".into(),
        };
        let e = over_the_wire(ProposeError::NotLeader(Some(hint)).into());
        match classify(e) {
            Failure::Redirect(Some(a), e) => {
                assert_eq!(a, "10.0.0.3:7100".parse::<SocketAddr>().unwrap());
                assert_eq!(e.leader.unwrap().id, 3);
            }
            _ => panic!("a not-leader answer with a hint must redirect there"),
        }
        let e = over_the_wire(ProposeError::NotLeader(None).into());
        assert!(matches!(classify(e), Failure::Redirect(None, _)));
        // Through a resource kind's error too (a commit on a follower).
        let e = crate::resource::volume::VolumeWriteError::Commit(CommitError::Propose(
            ProposeError::NotLeader(Some(LeaderHint {
                id: 2,
                address: "10.0.0.2:7100".into(),
            })),
        ));
        match classify(over_the_wire(crate::api_error::refusal(e))) {
            Failure::Redirect(Some(a), _) => {
                assert_eq!(a, "10.0.0.2:7100".parse::<SocketAddr>().unwrap())
            }
            _ => panic!("a resource write on a follower must redirect to the leader"),
        }
        let busy = over_the_wire(ProposeError::Busy("full queue".into()).into());
        assert!(matches!(classify(busy), Failure::Refused(_)));
        let contended = over_the_wire(
            CommitError::Contended {
                what: "vip web".into(),
            }
            .into(),
        );
        assert!(matches!(classify(contended), Failure::Refused(_)));
        let disk = over_the_wire(ProposeError::DiskFull.into());
        match classify(disk) {
            Failure::Final(ClientError::Api(e)) => {
                assert_eq!(e.code, Code::ResourceExhausted);
                assert!(!e.retryable());
                assert!(e.message.contains("disk is full"));
            }
            _ => panic!("a full disk is final"),
        }
        let gone = over_the_wire(crate::api_error::refusal(
            crate::resource::volume::VolumeWriteError::NoSuchVolume("v".into()),
        ));
        assert!(matches!(
            classify(gone),
            Failure::Final(ClientError::Api(ApiError {
                code: Code::NotFound,
                ..
            }))
        ));
        let broken = CallError::Capnp(capnp::Error::disconnected("reset".into()));
        assert!(matches!(classify(broken), Failure::Transport(_)));
    }
}
