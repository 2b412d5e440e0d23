//! Who is writing or querying: a bearer token (a PhotonCloud session token,
//! `photon ctl login`) or HTTP basic auth with an access key (id as user,
//! secret as password), the two ways Prometheus' `remote_write` and
//! Grafana's data sources carry credentials. The caller's tenant and project
//! are its series' namespace; IAM decides `metrics:Write` and
//! `metrics:GetData` on `metrics`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use photon_iam::{Directory, Identity, Scope, Verifier};
use sha2::{Digest, Sha256};

/// Access keys a shard keeps opened (dropped when the IAM view changes).
const OPENED_KEYS_MAX: usize = 4096;

/// The IAM action of writes and of reads.
pub const WRITE_ACTION: &str = "metrics:Write";
pub const READ_ACTION: &str = "metrics:GetData";
/// The IAM resource every metrics action is on.
pub const RESOURCE: &str = "metrics";

#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Arc<Identity>,
}

impl Caller {
    /// The namespace of the caller's series: `tenant/project`.
    pub fn namespace(&self) -> String {
        namespace(self.identity.tenant(), self.identity.project())
    }
}

pub fn namespace(tenant: &str, project: &str) -> String {
    format!("{tenant}/{project}")
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send a bearer token or basic auth with an access key")]
    Missing,
    #[error("invalid credentials: {0}")]
    Invalid(String),
    #[error("{0}")]
    Denied(String),
}

impl AuthError {
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Invalid(_) => 401,
            AuthError::Denied(_) => 403,
        }
    }
}

struct Opened {
    secret_digest: [u8; 32],
    identity: Arc<Identity>,
}

/// One shard's authenticator.
pub struct Authenticator {
    directory: Arc<Directory>,
    verifier: RefCell<Verifier>,
    generation: std::cell::Cell<u64>,
    keys: RefCell<HashMap<String, Opened>>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equal without an early exit (the secret's bytes are not timed).
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    pub fn new(directory: Arc<Directory>) -> Self {
        Self {
            verifier: RefCell::new(Verifier::new(directory.clone())),
            generation: std::cell::Cell::new(directory.generation()),
            directory,
            keys: RefCell::new(HashMap::new()),
        }
    }

    /// Checks the `Authorization` header's credentials.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let Some(value) = authorization else {
            return Err(AuthError::Missing);
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let identity = self
                .verifier
                .borrow_mut()
                .verify(rest, crate::now_ms().max(0) as u64)
                .map_err(|e| AuthError::Invalid(e.to_string()))?;
            return Ok(Caller { identity });
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| AuthError::Invalid("basic credentials are not base64".into()))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| AuthError::Invalid("basic credentials are not UTF-8".into()))?;
            let (id, secret) = text
                .split_once(':')
                .ok_or_else(|| AuthError::Invalid("basic credentials lack a ':'".into()))?;
            return self.access_key(id, secret);
        }
        Err(AuthError::Invalid(format!(
            "unsupported authorization scheme {scheme:?} (use Bearer or Basic)"
        )))
    }

    fn access_key(&self, id: &str, secret: &str) -> Result<Caller, AuthError> {
        let generation = self.directory.generation();
        if generation != self.generation.get() {
            self.keys.borrow_mut().clear();
            self.generation.set(generation);
        }
        let unknown = || AuthError::Invalid("unknown access key or wrong secret".into());
        let given = digest(secret.as_bytes());
        if let Some(o) = self.keys.borrow().get(id) {
            return if same(&o.secret_digest, &given) {
                Ok(Caller {
                    identity: o.identity.clone(),
                })
            } else {
                Err(unknown())
            };
        }
        let (record, stored) = self.directory.access_key_secret(id).ok_or_else(unknown)?;
        let identity = Arc::new(
            self.directory
                .snapshot()
                .access_key_identity(&record)
                .ok_or_else(unknown)?,
        );
        let secret_digest = digest(&stored);
        let mut keys = self.keys.borrow_mut();
        if keys.len() >= OPENED_KEYS_MAX {
            keys.clear();
        }
        keys.insert(
            id.to_string(),
            Opened {
                secret_digest,
                identity: identity.clone(),
            },
        );
        if same(&secret_digest, &given) {
            Ok(Caller { identity })
        } else {
            Err(unknown())
        }
    }

    /// Whether the caller may do `action` on its project's metrics.
    pub fn authorize(&self, caller: &Caller, action: &str) -> Result<(), AuthError> {
        self.verifier
            .borrow_mut()
            .authorize(&caller.identity, Scope::Project, action, RESOURCE)
            .map_err(|d| AuthError::Denied(d.to_string()))
    }
}
