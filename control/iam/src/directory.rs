//! A node's local view of IAM, and the per-thread verifier that answers
//! "who is this and may they do that?" without leaving the thread.
//!
//! [`Directory`] holds the current [`Snapshot`] of every IAM record; one
//! feeder (a KV watch on `iam/`) applies changes in batches and publishes a
//! new snapshot with a new generation number. Each thread or shard that
//! checks requests owns a [`Verifier`]: it keeps the snapshot it last saw and
//! a cache of verified tokens, and drops both when the generation moves. The
//! cached path is one atomic load, one hash lookup and one comparison.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::model::{
    self, AccessKey, Binding, Principal, PrincipalKind, Project, Revocation, Role, SigningKey,
    Tenant,
};
use crate::policy::{self, Decision};
use crate::seal::ClusterKey;
use crate::token::{Claims, KeyPair, TokenError, Unverified, VerifyingKey};

/// Verified tokens one [`Verifier`] keeps; beyond this it starts over (a
/// flood of distinct valid tokens costs verifications, never memory).
pub const VERIFIED_TOKENS_MAX: usize = 16_384;

/// One tenant's records.
#[derive(Debug, Clone, Default)]
pub struct TenantState {
    pub tenant: Option<Tenant>,
    pub projects: BTreeMap<String, Project>,
    pub principals: BTreeMap<String, Principal>,
    pub roles: BTreeMap<String, Role>,
    /// By principal.
    pub bindings: BTreeMap<String, BTreeSet<BindingKey>>,
}

/// A binding as held in the snapshot: (project, role).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BindingKey {
    pub project: String,
    pub role: String,
}

/// A signing key as a node holds it: the record and its parsed public key.
#[derive(Debug, Clone)]
pub struct KnownKey {
    pub record: SigningKey,
    pub verifying: VerifyingKey,
}

/// Every IAM record a node knows, at one generation.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub tenants: BTreeMap<String, TenantState>,
    pub access_keys: BTreeMap<String, AccessKey>,
    pub signing_keys: BTreeMap<String, KnownKey>,
    pub revoked: HashSet<String>,
    pub cluster_key_check: Option<String>,
    /// Records that did not parse (written by a newer version, or damaged);
    /// counted so an operator sees them, otherwise ignored.
    pub malformed_records: u64,
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub claims: Claims,
    pub kind: PrincipalKind,
    pub cluster_admin: bool,
}

impl Identity {
    pub fn tenant(&self) -> &str {
        &self.claims.ten
    }
    pub fn principal(&self) -> &str {
        &self.claims.sub
    }
    pub fn project(&self) -> &str {
        &self.claims.prj
    }
}

/// Where an action applies: inside the token's project, or at tenant level
/// (users, roles, projects, other principals' keys), which needs a binding on
/// every project ([`model::ALL_PROJECTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Project,
    Tenant,
}

/// An authorization refusal; the message names the action and resource the
/// caller asked for, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access denied: {principal} may not {action} on {resource}")]
pub struct Denied {
    pub principal: String,
    pub action: String,
    pub resource: String,
}

impl Snapshot {
    pub fn tenant(&self, tenant: &str) -> Option<&TenantState> {
        self.tenants.get(tenant).filter(|t| t.tenant.is_some())
    }

    pub fn principal(&self, tenant: &str, name: &str) -> Option<&Principal> {
        self.tenant(tenant)?.principals.get(name)
    }

    /// The signing key that signs new tokens: the newest one not retiring.
    pub fn active_signing_key(&self) -> Option<&SigningKey> {
        self.signing_keys
            .values()
            .map(|k| &k.record)
            .filter(|k| k.verify_until_ms.is_none())
            .max_by_key(|k| (k.created_ms, k.id.clone()))
    }

    /// Applies one KV change (`value` None: deleted).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        let Some(rest) = key.strip_prefix(model::PREFIX) else {
            return;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if self.apply_parts(&parts, value).is_err() {
            self.malformed_records += 1;
        }
    }

    fn apply_parts(&mut self, parts: &[&str], value: Option<&[u8]>) -> Result<(), ()> {
        fn parse<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, ()> {
            serde_json::from_slice(value).map_err(|_| ())
        }
        match parts {
            ["tenant", tenant] => {
                let state = self.tenants.entry((*tenant).to_owned()).or_default();
                state.tenant = value.map(parse).transpose()?;
            }
            ["project", tenant, project] => {
                let state = self.tenants.entry((*tenant).to_owned()).or_default();
                match value {
                    Some(v) => {
                        state.projects.insert((*project).to_owned(), parse(v)?);
                    }
                    None => {
                        state.projects.remove(*project);
                    }
                }
            }
            ["principal", tenant, name] => {
                let state = self.tenants.entry((*tenant).to_owned()).or_default();
                match value {
                    Some(v) => {
                        state.principals.insert((*name).to_owned(), parse(v)?);
                    }
                    None => {
                        state.principals.remove(*name);
                    }
                }
            }
            ["role", tenant, name] => {
                let state = self.tenants.entry((*tenant).to_owned()).or_default();
                match value {
                    Some(v) => {
                        state.roles.insert((*name).to_owned(), parse(v)?);
                    }
                    None => {
                        state.roles.remove(*name);
                    }
                }
            }
            ["binding", tenant, principal, project, role] => {
                let state = self.tenants.entry((*tenant).to_owned()).or_default();
                let key = BindingKey {
                    project: (*project).to_owned(),
                    role: (*role).to_owned(),
                };
                match value {
                    Some(v) => {
                        let _: Binding = parse(v)?;
                        state
                            .bindings
                            .entry((*principal).to_owned())
                            .or_default()
                            .insert(key);
                    }
                    None => {
                        if let Some(set) = state.bindings.get_mut(*principal) {
                            set.remove(&key);
                            if set.is_empty() {
                                state.bindings.remove(*principal);
                            }
                        }
                    }
                }
            }
            ["accesskey", id] => match value {
                Some(v) => {
                    self.access_keys.insert((*id).to_owned(), parse(v)?);
                }
                None => {
                    self.access_keys.remove(*id);
                }
            },
            ["signingkey", id] => match value {
                Some(v) => {
                    let record: SigningKey = parse(v)?;
                    let public = hex::decode(&record.public).map_err(|_| ())?;
                    let verifying = VerifyingKey::from_bytes(&public).ok_or(())?;
                    self.signing_keys
                        .insert((*id).to_owned(), KnownKey { record, verifying });
                }
                None => {
                    self.signing_keys.remove(*id);
                }
            },
            ["revoked", token_id] => match value {
                Some(v) => {
                    let _: Revocation = parse(v)?;
                    self.revoked.insert((*token_id).to_owned());
                }
                None => {
                    self.revoked.remove(*token_id);
                }
            },
            ["cluster-key-check"] => {
                self.cluster_key_check = value
                    .map(parse::<model::ClusterKeyCheck>)
                    .transpose()?
                    .map(|c| c.sealed);
            }
            _ => return Err(()),
        }
        Ok(())
    }

    /// Checks a token against this snapshot: signature by a known key still
    /// verifying at `now_ms`, not expired, not revoked, principal present and
    /// not signed out since.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Identity, TokenError> {
        let claims = self.signed_claims(token, now_ms)?;
        if claims.att.is_some() {
            return Err(TokenError::WrongKind);
        }
        self.check_claims(claims, now_ms)
    }

    /// Checks an attach token (see [`Directory::issue_attach_token`]) like a
    /// login token, and returns its identity and the resource it opens.
    pub fn verify_attachment(
        &self,
        token: &str,
        now_ms: u64,
    ) -> Result<(Identity, String), TokenError> {
        let mut claims = self.signed_claims(token, now_ms)?;
        let resource = claims.att.take().ok_or(TokenError::WrongKind)?;
        Ok((self.check_claims(claims, now_ms)?, resource))
    }

    /// The claims of a token whose signature holds under a key that still
    /// verifies at `now_ms`.
    fn signed_claims(&self, token: &str, now_ms: u64) -> Result<Claims, TokenError> {
        let unverified = Unverified::parse(token)?;
        let key = self
            .signing_keys
            .get(unverified.key_id())
            .filter(|k| k.record.verify_until_ms.is_none_or(|until| now_ms < until))
            .ok_or(TokenError::UnknownKey)?;
        unverified.verify(&key.verifying)
    }

    fn check_claims(&self, claims: Claims, now_ms: u64) -> Result<Identity, TokenError> {
        if now_ms >= claims.exp {
            return Err(TokenError::Expired);
        }
        if self.revoked.contains(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        let principal = self
            .principal(&claims.ten, &claims.sub)
            .ok_or(TokenError::PrincipalGone)?;
        if claims.iat < principal.tokens_not_before_ms {
            return Err(TokenError::SignedOut);
        }
        Ok(Identity {
            kind: principal.kind,
            cluster_admin: principal.cluster_admin,
            claims,
        })
    }

    /// The decision for `identity` doing `action` on `resource` (a name
    /// relative to its project, like `kv/app/config`).
    pub fn decide(
        &self,
        identity: &Identity,
        scope: Scope,
        action: &str,
        resource: &str,
    ) -> Decision {
        if identity.cluster_admin {
            return Decision::Allow;
        }
        let Some(tenant) = self.tenant(identity.tenant()) else {
            return Decision::ImplicitDeny;
        };
        let Some(bindings) = tenant.bindings.get(identity.principal()) else {
            return Decision::ImplicitDeny;
        };
        let statements = bindings
            .iter()
            .filter(|b| {
                b.project == model::ALL_PROJECTS
                    || (scope == Scope::Project && b.project == identity.project())
            })
            .flat_map(|b| {
                let statements: &[model::Statement] = match policy::builtin_role(&b.role) {
                    Some(builtin) => builtin,
                    None => tenant
                        .roles
                        .get(&b.role)
                        .map_or(&[], |r| r.statements.as_slice()),
                };
                statements.iter()
            });
        policy::evaluate(statements, action, resource)
    }

    /// The identity requests signed with S3 access key `key` act as, while
    /// its principal and tenant exist (a deleted principal's keys stop working
    /// at once, even before the key records are removed).
    pub fn access_key_identity(&self, key: &AccessKey) -> Option<Identity> {
        let principal = self.principal(&key.tenant, &key.principal)?;
        Some(Identity {
            claims: Claims {
                sub: key.principal.clone(),
                ten: key.tenant.clone(),
                prj: key.project.clone(),
                iat: key.created_ms,
                exp: u64::MAX,
                jti: format!("accesskey:{}", key.id),
                att: None,
            },
            kind: principal.kind,
            cluster_admin: principal.cluster_admin,
        })
    }

    /// [`decide`](Self::decide) as a `Result` with the refusal's message.
    pub fn authorize(
        &self,
        identity: &Identity,
        scope: Scope,
        action: &str,
        resource: &str,
    ) -> Result<(), Denied> {
        if self.decide(identity, scope, action, resource).is_allowed() {
            Ok(())
        } else {
            Err(Denied {
                principal: identity.principal().to_owned(),
                action: action.to_owned(),
                resource: resource.to_owned(),
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueTokenError {
    #[error("no token-signing key exists yet (the cluster is still bootstrapping)")]
    NoSigningKey,
    #[error("the token-signing key does not open with this node's cluster key: {0}")]
    Unseal(#[from] crate::seal::OpenSealedError),
    #[error("the token-signing key record is damaged")]
    DamagedKey,
}

/// A node's IAM view, shared by every thread of the node.
#[derive(Debug)]
pub struct Directory {
    current: RwLock<Arc<Snapshot>>,
    generation: AtomicU64,
    cluster_key: ClusterKey,
}

/// The purpose (sealing associated data) of a signing key's secret.
pub fn signing_key_purpose(id: &str) -> String {
    format!("signingkey/{id}")
}

/// The purpose (sealing associated data) of an access key's secret.
pub fn access_key_purpose(id: &str) -> String {
    format!("accesskey/{id}")
}

impl Directory {
    pub fn new(cluster_key: ClusterKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(Snapshot::default())),
            generation: AtomicU64::new(1),
            cluster_key,
        })
    }

    pub fn cluster_key(&self) -> &ClusterKey {
        &self.cluster_key
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Applies a batch of KV changes and publishes the result at once.
    pub fn apply<'a>(&self, changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Snapshot::clone(&guard);
        let mut changed = false;
        for (key, value) in changes {
            next.apply(key, value);
            changed = true;
        }
        if changed {
            *guard = Arc::new(next);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Replaces the whole view (after loading every `iam/` record).
    pub fn replace(&self, snapshot: Snapshot) {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(snapshot);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The active signing key, opened with the cluster key.
    fn signing_pair(&self) -> Result<KeyPair, IssueTokenError> {
        let snapshot = self.snapshot();
        let record = snapshot
            .active_signing_key()
            .ok_or(IssueTokenError::NoSigningKey)?;
        let secret = self
            .cluster_key
            .open(&signing_key_purpose(&record.id), &record.sealed_secret)?;
        KeyPair::from_secret(record.id.clone(), &secret).ok_or(IssueTokenError::DamagedKey)
    }

    /// Signs a token for `principal` of `tenant` acting in `project`.
    pub fn issue_token(
        &self,
        tenant: &str,
        principal: &str,
        project: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(String, Claims), IssueTokenError> {
        let pair = self.signing_pair()?;
        let claims = Claims {
            sub: principal.to_owned(),
            ten: tenant.to_owned(),
            prj: project.to_owned(),
            iat: now_ms,
            exp: now_ms.saturating_add(ttl_ms),
            jti: crate::token::new_token_id(),
            att: None,
        };
        Ok((pair.sign(&claims), claims))
    }

    /// Signs an attach token: it lets `principal` reach `resource` (like
    /// `volume-id/<id>`) and nothing else until it expires, is revoked, or
    /// the principal goes.
    pub fn issue_attach_token(
        &self,
        identity: &Identity,
        resource: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(String, Claims), IssueTokenError> {
        self.issue_attach_token_for(
            identity.tenant(),
            identity.principal(),
            identity.project(),
            resource,
            now_ms,
            ttl_ms,
        )
    }

    /// [`Directory::issue_attach_token`] for a principal that is not the
    /// caller: a node's VM agent opens a VM's volumes as the VM's owner.
    pub fn issue_attach_token_for(
        &self,
        tenant: &str,
        principal: &str,
        project: &str,
        resource: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(String, Claims), IssueTokenError> {
        let pair = self.signing_pair()?;
        let claims = Claims {
            sub: principal.to_owned(),
            ten: tenant.to_owned(),
            prj: project.to_owned(),
            iat: now_ms,
            exp: now_ms.saturating_add(ttl_ms),
            jti: crate::token::new_token_id(),
            att: Some(resource.to_owned()),
        };
        Ok((pair.sign(&claims), claims))
    }

    /// The secret of S3 access key `id`, opened, with its record.
    pub fn access_key_secret(&self, id: &str) -> Option<(AccessKey, Vec<u8>)> {
        let snapshot = self.snapshot();
        let record = snapshot.access_keys.get(id)?.clone();
        let secret = self
            .cluster_key
            .open(&access_key_purpose(id), &record.sealed_secret)
            .ok()?;
        Some((record, secret))
    }
}

/// One thread's verifier: a snapshot and a cache of verified tokens, both
/// renewed when the directory's generation moves. Not `Sync` on purpose.
#[derive(Debug)]
pub struct Verifier {
    directory: Arc<Directory>,
    snapshot: Arc<Snapshot>,
    generation: u64,
    verified: HashMap<Box<str>, Arc<Identity>, xxhash_rust::xxh3::Xxh3Builder>,
}

impl Verifier {
    pub fn new(directory: Arc<Directory>) -> Self {
        let generation = directory.generation();
        let snapshot = directory.snapshot();
        Self {
            directory,
            snapshot,
            generation,
            verified: HashMap::with_hasher(xxhash_rust::xxh3::Xxh3Builder::new().with_seed(seed())),
        }
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// The snapshot this verifier currently answers from.
    pub fn snapshot(&mut self) -> &Arc<Snapshot> {
        self.renew();
        &self.snapshot
    }

    fn renew(&mut self) {
        let generation = self.directory.generation();
        if generation != self.generation {
            self.snapshot = self.directory.snapshot();
            self.generation = generation;
            self.verified.clear();
        }
    }

    /// Verifies `token` at `now_ms`, from the cache when it was verified
    /// before at this generation.
    pub fn verify(&mut self, token: &str, now_ms: u64) -> Result<Arc<Identity>, TokenError> {
        self.renew();
        if let Some(identity) = self.verified.get(token) {
            if now_ms < identity.claims.exp {
                return Ok(identity.clone());
            }
            return Err(TokenError::Expired);
        }
        let identity = Arc::new(self.snapshot.verify(token, now_ms)?);
        if self.verified.len() >= VERIFIED_TOKENS_MAX {
            self.verified.clear();
        }
        self.verified.insert(token.into(), identity.clone());
        Ok(identity)
    }

    pub fn authorize(
        &mut self,
        identity: &Identity,
        scope: Scope,
        action: &str,
        resource: &str,
    ) -> Result<(), Denied> {
        self.renew();
        self.snapshot.authorize(identity, scope, action, resource)
    }
}

/// A per-process random seed for the cache's hash, so nobody can aim hash
/// collisions at it.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Effect, Statement};
    use crate::records;

    const NOW: u64 = 1_000_000;
    const HOUR: u64 = 3_600_000;

    fn user(tenant: &str, name: &str) -> Principal {
        Principal {
            tenant: tenant.into(),
            name: name.into(),
            kind: PrincipalKind::User,
            // Verification of passwords is not under test here.
            secret_hash: String::new(),
            cluster_admin: false,
            tokens_not_before_ms: 0,
            created_ms: 0,
        }
    }

    fn apply(directory: &Directory, records: &[records::Record]) {
        directory.apply(
            records
                .iter()
                .map(|(k, v)| (k.as_bytes(), Some(v.as_slice()))),
        );
    }

    /// Two tenants, each with a viewer and an editor in project "web", and a
    /// custom role in acme that denies one key.
    fn fixture() -> Arc<Directory> {
        let directory = Directory::new(ClusterKey::generate());
        let key = KeyPair::generate("k1".into());
        let mut all = vec![
            records::signing_key(directory.cluster_key(), &key, NOW - 10, None),
            records::cluster_key_check(directory.cluster_key()),
        ];
        for tenant in ["acme", "globex"] {
            all.push(records::tenant(tenant, 0));
            all.push(records::project(tenant, "web", 0));
            all.push(records::principal(&user(tenant, "viewer")));
            all.push(records::principal(&user(tenant, "editor")));
            all.push(records::binding(tenant, "viewer", "web", "viewer"));
            all.push(records::binding(tenant, "editor", "web", "editor"));
        }
        all.push(records::role(&Role {
            tenant: "acme".into(),
            name: "no-secrets".into(),
            statements: vec![Statement {
                effect: Effect::Deny,
                actions: vec!["kv:*".into()],
                resources: vec!["kv/secrets/*".into()],
            }],
        }));
        all.push(records::binding("acme", "editor", "web", "no-secrets"));
        apply(&directory, &all);
        directory
    }

    fn token(directory: &Directory, tenant: &str, who: &str) -> (String, Claims) {
        directory
            .issue_token(tenant, who, "web", NOW, HOUR)
            .unwrap()
    }

    #[test]
    fn attach_tokens_open_one_resource_and_are_not_login_tokens() {
        let directory = fixture();
        let snapshot = directory.snapshot();
        let (login, _) = token(&directory, "acme", "editor");
        let identity = snapshot.verify(&login, NOW + 1).unwrap();
        let (attach, claims) = directory
            .issue_attach_token(&identity, "volume-id/7", NOW, HOUR)
            .unwrap();
        assert_eq!(claims.att.as_deref(), Some("volume-id/7"));
        // An attach token cannot log in, and a login token cannot attach.
        assert_eq!(
            snapshot.verify(&attach, NOW + 1).unwrap_err(),
            TokenError::WrongKind
        );
        assert_eq!(
            snapshot.verify_attachment(&login, NOW + 1).unwrap_err(),
            TokenError::WrongKind
        );
        let (who, resource) = snapshot.verify_attachment(&attach, NOW + 1).unwrap();
        assert_eq!(
            (who.principal(), resource.as_str()),
            ("editor", "volume-id/7")
        );
        assert_eq!(
            snapshot.verify_attachment(&attach, NOW + HOUR).unwrap_err(),
            TokenError::Expired
        );
        // Tampering with the claims breaks the signature.
        let mut bytes = attach.into_bytes();
        let at = "v4.public.".len() + 10;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(snapshot.verify_attachment(&tampered, NOW + 1).is_err());
    }

    #[test]
    fn verify_and_authorize_per_role() {
        let directory = fixture();
        let mut verifier = Verifier::new(directory.clone());
        let (viewer, _) = token(&directory, "acme", "viewer");
        let (editor, _) = token(&directory, "acme", "editor");
        let viewer = verifier.verify(&viewer, NOW + 1).unwrap();
        let editor = verifier.verify(&editor, NOW + 1).unwrap();
        assert_eq!(viewer.tenant(), "acme");
        let can = |v: &mut Verifier, id: &Identity, action: &str, resource: &str| {
            v.authorize(id, Scope::Project, action, resource).is_ok()
        };
        assert!(can(&mut verifier, &viewer, "kv:Get", "kv/app"));
        assert!(!can(&mut verifier, &viewer, "kv:Put", "kv/app"));
        assert!(can(&mut verifier, &editor, "kv:Put", "kv/app"));
        // The custom deny wins over the built-in editor's allow.
        assert!(!can(&mut verifier, &editor, "kv:Put", "kv/secrets/db"));
        // Tenant-level actions need a binding on every project.
        assert!(verifier
            .authorize(&editor, Scope::Tenant, "iam:ListUsers", "iam/user/x")
            .is_err());
        let denied = verifier
            .authorize(&viewer, Scope::Project, "kv:Put", "kv/app")
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "access denied: viewer may not kv:Put on kv/app"
        );
    }

    #[test]
    fn expired_revoked_signed_out_and_deleted_are_refused() {
        let directory = fixture();
        let mut verifier = Verifier::new(directory.clone());
        let (t, claims) = token(&directory, "acme", "viewer");
        assert!(verifier.verify(&t, NOW).is_ok());
        assert_eq!(
            verifier.verify(&t, NOW + HOUR).err(),
            Some(TokenError::Expired)
        );
        apply(&directory, &[records::revocation(&claims.jti, claims.exp)]);
        assert_eq!(verifier.verify(&t, NOW).err(), Some(TokenError::Revoked));

        let (t, _) = token(&directory, "acme", "editor");
        assert!(verifier.verify(&t, NOW).is_ok());
        let mut signed_out = user("acme", "editor");
        signed_out.tokens_not_before_ms = NOW + 5;
        apply(&directory, &[records::principal(&signed_out)]);
        assert_eq!(
            verifier.verify(&t, NOW + 6).err(),
            Some(TokenError::SignedOut)
        );

        let (t, _) = token(&directory, "globex", "viewer");
        assert!(verifier.verify(&t, NOW).is_ok());
        directory.apply([(model::keys::principal("globex", "viewer").as_bytes(), None)]);
        assert_eq!(
            verifier.verify(&t, NOW).err(),
            Some(TokenError::PrincipalGone)
        );
    }

    #[test]
    fn unknown_key_and_key_rotation() {
        let directory = fixture();
        let mut verifier = Verifier::new(directory.clone());
        let (old, _) = token(&directory, "acme", "viewer");
        // A token from a key this cluster never had.
        let stranger = KeyPair::generate("k1".into()).sign(&Claims {
            sub: "viewer".into(),
            ten: "acme".into(),
            prj: "web".into(),
            iat: NOW,
            exp: NOW + HOUR,
            jti: "x".into(),
            att: None,
        });
        assert_eq!(
            verifier.verify(&stranger, NOW).err(),
            Some(TokenError::BadSignature)
        );
        // Rotate: k2 signs from now on, k1 verifies for one more hour.
        let k1 = directory.snapshot().signing_keys["k1"].record.clone();
        let k2 = KeyPair::generate("k2".into());
        apply(
            &directory,
            &[
                records::signing_key(directory.cluster_key(), &k2, NOW, None),
                records::retire_signing_key(&k1, NOW + HOUR),
            ],
        );
        let (new, claims) = token(&directory, "acme", "viewer");
        assert!(new.contains('.'));
        assert_eq!(
            Unverified::parse(&new).unwrap().key_id(),
            "k2",
            "the new key signs"
        );
        assert!(claims.exp > NOW);
        assert!(verifier.verify(&old, NOW + 1).is_ok());
        assert!(verifier.verify(&new, NOW + 1).is_ok());
        // Once k1 retires, its tokens are refused (they would be expired
        // anyway when the retirement equals the longest token lifetime).
        let past = NOW + HOUR;
        assert_eq!(
            directory.snapshot().verify(&old, past).err(),
            Some(TokenError::UnknownKey)
        );
    }

    #[test]
    fn cross_tenant_tokens_only_reach_their_own_tenant() {
        let directory = fixture();
        let mut verifier = Verifier::new(directory.clone());
        let (t, _) = token(&directory, "globex", "editor");
        let globex_editor = verifier.verify(&t, NOW).unwrap();
        assert_eq!(globex_editor.tenant(), "globex");
        // A token naming a tenant it was not issued for cannot be made
        // without the signing key; a token for a principal that exists only
        // in another tenant is refused.
        let (t, _) = directory
            .issue_token("globex", "nobody", "web", NOW, HOUR)
            .unwrap();
        assert_eq!(
            verifier.verify(&t, NOW).err(),
            Some(TokenError::PrincipalGone)
        );
    }

    #[test]
    fn access_key_secret_is_sealed_in_the_record() {
        let directory = fixture();
        let record = records::access_key(
            directory.cluster_key(),
            "PK1",
            "s3cr3t-value",
            "acme",
            "editor",
            "web",
            NOW,
        );
        assert!(!String::from_utf8_lossy(&record.1).contains("s3cr3t-value"));
        apply(&directory, &[record]);
        let (key, secret) = directory.access_key_secret("PK1").unwrap();
        assert_eq!(key.principal, "editor");
        assert_eq!(secret, b"s3cr3t-value");
        assert!(directory.access_key_secret("PK2").is_none());
    }

    #[test]
    fn malformed_records_are_counted_not_applied() {
        let directory = fixture();
        directory.apply([
            (
                b"iam/principal/acme/x".as_slice(),
                Some(b"{not json".as_slice()),
            ),
            (b"iam/what/ever".as_slice(), Some(b"{}".as_slice())),
        ]);
        let snapshot = directory.snapshot();
        assert_eq!(snapshot.malformed_records, 2);
        assert!(snapshot.principal("acme", "x").is_none());
    }
}
