//! Authentication on a node: the shared [`Auth`] state (the IAM directory,
//! this thread's verifier, the login limiter) and the per-caller
//! [`Session`] every scoped capability holds. A session re-checks its token
//! on every call (a cached check: revocation and expiry still apply at once)
//! and authorizes the call's action on its resource.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use photon_iam::directory::Denied;
use photon_iam::ratelimit::{LoginLimiter, LoginLimits};
use photon_iam::token::TokenError;
use photon_iam::{Directory, Identity, Scope, Verifier};

use super::now_ms;
use crate::api_error::{ApiError, Reply};
use crate::proposer::{LeaderHint, ProposeError};

/// Token lifetimes and login limits of a node.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    /// Lifetime of a token when the caller asks for none.
    pub token_ttl_default_ms: u64,
    /// Longest lifetime a caller may ask for; retired signing keys verify
    /// this long after a rotation.
    pub token_ttl_max_ms: u64,
    pub login: LoginLimits,
    /// Password hashes computed at once on this node (each takes ~19 MiB
    /// and tens of ms of CPU, off the control thread).
    pub hashing_concurrent_max: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_ttl_default_ms: 3_600_000,
            token_ttl_max_ms: 12 * 3_600_000,
            login: LoginLimits::default(),
            hashing_concurrent_max: 2,
        }
    }
}

/// A node's authentication state, shared by every connection (control
/// thread only).
pub struct Auth {
    pub directory: Arc<Directory>,
    /// To tell a token this node cannot vouch for yet (it lags the leader)
    /// from a bad one.
    raft: crate::raft::Raft,
    pub verifier: RefCell<Verifier>,
    pub limiter: RefCell<LoginLimiter>,
    pub hashing: tokio::sync::Semaphore,
    pub settings: AuthSettings,
    /// The last log index this node held when it started, and whether it
    /// has applied that far since (see [`Auth::caught_up`]).
    start_log_index: u64,
    caught_up: Cell<bool>,
}

impl Auth {
    pub fn new(
        directory: Arc<Directory>,
        raft: crate::raft::Raft,
        settings: AuthSettings,
        start_log_index: u64,
    ) -> Rc<Self> {
        Rc::new(Self {
            raft,
            start_log_index,
            caught_up: Cell::new(false),
            verifier: RefCell::new(Verifier::new(directory.clone())),
            directory,
            limiter: RefCell::new(LoginLimiter::new(settings.login)),
            hashing: tokio::sync::Semaphore::new(settings.hashing_concurrent_max),
            settings,
        })
    }

    /// Verifies `token` now. A follower that does not know the token's key
    /// or principal may simply lag the leader (it was not yet replicated to,
    /// or it lost an election race): it sends the caller to the leader
    /// instead of refusing a token the cluster accepts.
    pub fn verify(&self, token: &str) -> Reply<Arc<Identity>> {
        if !self.caught_up() {
            return Err(self.redirect_if_follower().unwrap_or_else(|| {
                ApiError::unavailable("this node is still applying its log after a start; retry")
            }));
        }
        let result = self.verifier.borrow_mut().verify(token, now_ms());
        match result {
            Ok(identity) => Ok(identity),
            Err(e @ (TokenError::UnknownKey | TokenError::PrincipalGone)) => Err(self
                .redirect_if_follower()
                .unwrap_or_else(|| unauthenticated(e))),
            Err(e) => Err(unauthenticated(e)),
        }
    }

    /// Whether this node's state may decide a token. A restarted node
    /// replays only up to the commit index it persisted (lazily, up to a
    /// second old), so until it applies the log it held at start, or what a
    /// leader has since sent it, a revocation or deletion it had applied
    /// before the restart may be missing: it would accept a revoked token.
    /// Once caught up it stays so (later lag is the usual follower lag).
    fn caught_up(&self) -> bool {
        if self.caught_up.get() {
            return true;
        }
        let done = crate::node::caught_up(&self.raft, self.start_log_index);
        self.caught_up.set(done);
        done
    }

    /// A "not the leader" answer when this node is not the leader.
    fn redirect_if_follower(&self) -> Option<ApiError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader == Some(metrics.id) {
            return None;
        }
        let leader = metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|node| (id, node.addr.clone()))
        });
        let hint = leader.map(|(id, address)| LeaderHint { id, address });
        Some(ProposeError::NotLeader(hint).into())
    }

    /// The token lifetime for a request of `ttl_seconds` (0: the default).
    pub fn ttl_ms(&self, ttl_seconds: u32) -> Reply<u64> {
        let asked = u64::from(ttl_seconds) * 1000;
        if asked == 0 {
            return Ok(self.settings.token_ttl_default_ms);
        }
        if asked > self.settings.token_ttl_max_ms {
            return Err(ApiError::invalid(format!(
                "a token lives at most {} s (iam.token_ttl_max_s)",
                self.settings.token_ttl_max_ms / 1000
            )));
        }
        Ok(asked)
    }

    /// Runs an argon2id hash or verification on the blocking pool, at most
    /// `hashing_concurrent_max` at once, so the control thread (and Raft's
    /// heartbeats) never wait for it.
    pub async fn hash_work<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Reply<T> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ApiError::from(ProposeError::ShuttingDown))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::internal(format!("hashing task failed: {e}")))
    }
}

pub fn unauthenticated(e: TokenError) -> ApiError {
    ApiError::unauthenticated(e)
}

pub fn denied(e: Denied) -> ApiError {
    ApiError::permission_denied(e)
}

/// An authenticated caller.
pub struct Session {
    pub auth: Rc<Auth>,
    token: String,
}

impl Session {
    pub fn new(auth: Rc<Auth>, token: String) -> Self {
        Self { auth, token }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The caller, if its token is still valid.
    pub fn identity(&self) -> Reply<Arc<Identity>> {
        self.auth.verify(&self.token)
    }

    /// The caller, if its token is valid and its roles allow `action` on
    /// `resource` in `scope`.
    pub fn check(&self, scope: Scope, action: &str, resource: &str) -> Reply<Arc<Identity>> {
        let identity = self.identity()?;
        self.auth
            .verifier
            .borrow_mut()
            .authorize(&identity, scope, action, resource)
            .map_err(denied)?;
        Ok(identity)
    }

    /// The caller, allowed `action` on `resource` in its project, and the
    /// project's record that `get` reads from the applied state once this
    /// node has caught up with the leader (a caller sees its own writes);
    /// `missing` is the refusal when there is none.
    pub async fn project_record<R>(
        &self,
        proposer: &crate::proposer::Proposer,
        action: &str,
        resource: &str,
        get: impl FnOnce(&crate::raft::KvStateMachine, &str, &str) -> Option<R>,
        missing: impl FnOnce() -> crate::api_error::ApiError,
    ) -> Reply<(Arc<Identity>, R)> {
        let identity = self.check(Scope::Project, action, resource)?;
        proposer.linearizable().await?;
        let record = get(
            &proposer.state_machine,
            identity.tenant(),
            identity.project(),
        )
        .ok_or_else(missing)?;
        Ok((identity, record))
    }

    /// Whether `identity` may do `action` on `resource` (for filtering
    /// results key by key).
    pub fn allows(&self, identity: &Identity, action: &str, resource: &str) -> bool {
        identity.cluster_admin
            || self
                .auth
                .verifier
                .borrow_mut()
                .authorize(identity, Scope::Project, action, resource)
                .is_ok()
    }
}
