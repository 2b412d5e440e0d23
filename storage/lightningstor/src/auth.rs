//! Who signed a request, and may they do this: SigV4 against the access
//! key's secret from IAM, then the IAM policy of the key's principal in the
//! key's project, then bucket ownership (a bucket belongs to one
//! tenant/project; nobody else sees it, whatever their roles say).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use photon_iam::{Directory, Identity, Scope, Snapshot};
use photon_s3::error::{S3Error, S3ErrorCode};
use photon_s3::sigv4::{self, RequestParts, Verified};

/// Access keys a shard keeps opened; the cache is dropped whenever the IAM
/// view changes, so a deleted key or principal stops working at once.
const OPENED_KEYS_MAX: usize = 4096;

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Arc<Identity>,
    pub verified: Verified,
}

impl Caller {
    pub fn tenant(&self) -> &str {
        self.identity.tenant()
    }
    pub fn project(&self) -> &str {
        self.identity.project()
    }
    pub fn principal(&self) -> &str {
        self.identity.principal()
    }
    /// The canonical owner id S3 puts in listings.
    pub fn owner_id(&self) -> String {
        format!("{}/{}", self.tenant(), self.project())
    }
}

struct Opened {
    secret: Arc<Vec<u8>>,
    identity: Arc<Identity>,
}

/// One shard's view of IAM for S3.
pub struct Authenticator {
    directory: Arc<Directory>,
    region: String,
    state: RefCell<State>,
}

struct State {
    generation: u64,
    snapshot: Arc<Snapshot>,
    keys: HashMap<String, Opened>,
}

impl Authenticator {
    pub fn new(directory: Arc<Directory>, region: String) -> Self {
        let snapshot = directory.snapshot();
        let generation = directory.generation();
        Self {
            directory,
            region,
            state: RefCell::new(State {
                generation,
                snapshot,
                keys: HashMap::new(),
            }),
        }
    }

    fn renew(&self, state: &mut State) {
        let generation = self.directory.generation();
        if generation != state.generation {
            state.snapshot = self.directory.snapshot();
            state.generation = generation;
            state.keys.clear();
        }
    }

    /// Checks the request's signature; anonymous requests are refused.
    pub fn authenticate(&self, parts: &RequestParts<'_>) -> Result<Caller, S3Error> {
        let auth = sigv4::parse_auth(parts).map_err(sigv4_error)?;
        let Some(key_id) = auth.access_key_id() else {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "anonymous requests are not allowed; sign the request with an access key",
            ));
        };
        let (secret, identity) = self.open_key(key_id)?;
        let verified = sigv4::verify(parts, &auth, &secret, SystemTime::now(), &self.region)
            .map_err(sigv4_error)?;
        Ok(Caller { identity, verified })
    }

    fn open_key(&self, key_id: &str) -> Result<(Arc<Vec<u8>>, Arc<Identity>), S3Error> {
        let mut state = self.state.borrow_mut();
        self.renew(&mut state);
        if let Some(o) = state.keys.get(key_id) {
            return Ok((o.secret.clone(), o.identity.clone()));
        }
        let unknown = || S3Error::new(S3ErrorCode::InvalidAccessKeyId);
        let (record, secret) = self
            .directory
            .access_key_secret(key_id)
            .ok_or_else(unknown)?;
        let identity = Arc::new(
            state
                .snapshot
                .access_key_identity(&record)
                .ok_or_else(unknown)?,
        );
        if state.keys.len() >= OPENED_KEYS_MAX {
            state.keys.clear();
        }
        let secret = Arc::new(secret);
        state.keys.insert(
            key_id.to_owned(),
            Opened {
                secret: secret.clone(),
                identity: identity.clone(),
            },
        );
        Ok((secret, identity))
    }

    /// Whether the caller's roles allow `s3:<operation>` on `resource`.
    pub fn authorize(
        &self,
        caller: &Caller,
        operation: &str,
        resource: &str,
    ) -> Result<(), S3Error> {
        let mut state = self.state.borrow_mut();
        self.renew(&mut state);
        let action = format!("s3:{operation}");
        if state
            .snapshot
            .decide(&caller.identity, Scope::Project, &action, resource)
            .is_allowed()
        {
            Ok(())
        } else {
            Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                format!("{} may not {action} on {resource}", caller.principal()),
            ))
        }
    }
}

/// A SigV4 failure as an S3 error.
pub fn sigv4_error(e: sigv4::SigV4Error) -> S3Error {
    let code = S3ErrorCode::from_code(e.s3_code()).unwrap_or(S3ErrorCode::AccessDenied);
    S3Error::with_message(code, e.message())
}

/// The IAM resource name of a bucket or an object in it.
pub fn resource(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("bucket/{bucket}/{key}"),
        None => format!("bucket/{bucket}"),
    }
}
