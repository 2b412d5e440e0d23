//! The IAM API over Cap'n Proto. Every call acts in the caller's tenant and
//! is authorized against its roles; writes are KV transactions through Raft
//! whose compares keep the model consistent (no duplicate names, no binding
//! to a principal that is gone); reads come from the applied state after a
//! linearizable read index, so a caller sees its own writes.

use std::rc::Rc as StdRc;

use capnp::capability::Rc;
use control_schema::iam_capnp::{iam, identity};
use photon_iam::model::{self, keys, Principal, PrincipalKind};
use photon_iam::password;
use photon_iam::policy::BUILTIN_ROLES;
use photon_iam::{records, Identity, Scope};

use super::convert::wrong_response;
use super::now_ms;
use super::session::{denied, Session, PERMISSION_DENIED};
use crate::kv::{Command, CommandResponse, Compare, KeyValue, PutRequest, RequestOp};
use crate::proposer::Proposer;
use crate::raft::KvStateMachine;
use crate::resource::txn::{self, Plan};

/// How long a revocation record outlives the token it revokes (clock skew
/// between nodes).
const REVOCATION_SLACK_MS: u64 = 60_000;

pub struct IamService {
    proposer: Proposer,
    session: StdRc<Session>,
}

fn invalid(message: impl std::fmt::Display) -> capnp::Error {
    capnp::Error::failed(format!("invalid argument: {message}"))
}

fn not_found(what: &str, name: &str) -> capnp::Error {
    capnp::Error::failed(format!("not found: {what} {name:?}"))
}

fn exists(what: &str, name: &str) -> capnp::Error {
    capnp::Error::failed(format!("already exists: {what} {name:?}"))
}

fn text(reader: capnp::text::Reader<'_>) -> capnp::Result<String> {
    reader
        .to_string()
        .map_err(|_| invalid("text is not valid UTF-8"))
}

fn name(what: &str, value: &str) -> capnp::Result<()> {
    model::check_name(what, value).map_err(invalid)
}

fn record_op((key, value): records::Record) -> RequestOp {
    txn::put(key, value)
}

/// The IAM record at `key` in this node's applied state.
fn local_record<T: serde::de::DeserializeOwned>(
    state: &KvStateMachine,
    key: &str,
) -> capnp::Result<Option<(KeyValue, T)>> {
    match state.get_local(key.as_bytes()) {
        None => Ok(None),
        Some(kv) => {
            let value = serde_json::from_slice(&kv.value)
                .map_err(|_| capnp::Error::failed(format!("internal: damaged IAM record {key}")))?;
            Ok(Some((kv, value)))
        }
    }
}

impl IamService {
    pub fn new(proposer: Proposer, session: StdRc<Session>) -> Self {
        Self { proposer, session }
    }

    fn check(
        &self,
        scope: Scope,
        action: &str,
        resource: &str,
    ) -> capnp::Result<std::sync::Arc<Identity>> {
        self.session.check(scope, action, resource)
    }

    fn cluster_admin(&self) -> capnp::Result<std::sync::Arc<Identity>> {
        let identity = self.session.identity()?;
        if !identity.cluster_admin {
            return Err(capnp::Error::failed(format!(
                "{PERMISSION_DENIED}: only the cluster administrator manages tenants and signing keys"
            )));
        }
        Ok(identity)
    }

    /// Runs a txn; `Ok(false)` when its compares failed.
    async fn txn(&self, compare: Vec<Compare>, success: Vec<RequestOp>) -> capnp::Result<bool> {
        Ok(txn::commit(&self.proposer, compare, success).await?)
    }

    /// Every record under `prefix`, read linearizably.
    async fn read_prefix(&self, prefix: &str) -> capnp::Result<Vec<KeyValue>> {
        self.proposer.linearizable().await?;
        Ok(self
            .proposer
            .state_machine
            .scan_prefix_local(prefix.as_bytes()))
    }

    async fn read_one<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> capnp::Result<Option<(KeyValue, T)>> {
        self.proposer.linearizable().await?;
        local_record(&self.proposer.state_machine, key)
    }

    /// Changes principal `subject` of `tenant` with `change` (which may
    /// refuse), re-reading it when it changed meanwhile.
    async fn update_principal(
        &self,
        tenant: &str,
        subject: &str,
        mut change: impl FnMut(&mut Principal) -> capnp::Result<()>,
    ) -> capnp::Result<Principal> {
        let key = keys::principal(tenant, subject);
        self.proposer.linearizable().await?;
        txn::update(&self.proposer, &format!("principal {subject}"), |state| {
            let Some((kv, mut principal)) = local_record::<Principal>(state, &key)? else {
                return Err(not_found("principal", subject));
            };
            change(&mut principal)?;
            let (_, value) = records::principal(&principal);
            Ok(Plan::replace(&kv, value, principal))
        })
        .await
    }

    fn parse_all<T: serde::de::DeserializeOwned>(kvs: &[KeyValue]) -> Vec<T> {
        kvs.iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect()
    }

    async fn hash(&self, secret: String) -> capnp::Result<String> {
        self.session
            .auth
            .hash_work(move || password::hash_secret(&secret))
            .await?
            .map_err(invalid)
    }

    /// Creates a principal of the caller's tenant.
    async fn create_principal(
        &self,
        identity: &Identity,
        name_: &str,
        kind: PrincipalKind,
        secret: String,
    ) -> capnp::Result<()> {
        name("principal", name_)?;
        let secret_hash = self.hash(secret).await?;
        let principal = Principal {
            tenant: identity.tenant().to_owned(),
            name: name_.to_owned(),
            kind,
            secret_hash,
            cluster_admin: false,
            tokens_not_before_ms: 0,
            created_ms: now_ms(),
        };
        let key = keys::principal(identity.tenant(), name_);
        if !self
            .txn(
                vec![txn::absent(&key)],
                vec![record_op(records::principal(&principal))],
            )
            .await?
        {
            return Err(exists("principal", name_));
        }
        Ok(())
    }

    /// The principal a self-service call names ("" = the caller), and
    /// whether it is the caller.
    fn subject<'a>(identity: &'a Identity, named: &'a str) -> (&'a str, bool) {
        if named.is_empty() || named == identity.principal() {
            (identity.principal(), true)
        } else {
            (named, false)
        }
    }
}

fn write_identity(
    mut out: identity::Builder<'_>,
    identity: &Identity,
    bindings: &[model::Binding],
) {
    out.set_tenant(identity.tenant());
    out.set_principal(identity.principal());
    out.set_project(identity.project());
    out.set_kind(identity.kind.as_str());
    out.set_cluster_admin(identity.cluster_admin);
    out.set_token_id(&identity.claims.jti);
    out.set_issued_at_ms(identity.claims.iat);
    out.set_expires_at_ms(identity.claims.exp);
    let mut list = out.init_bindings(bindings.len() as u32);
    for (i, b) in bindings.iter().enumerate() {
        let mut item = list.reborrow().get(i as u32);
        item.set_principal(&b.principal);
        item.set_project(&b.project);
        item.set_role(&b.role);
    }
}

/// Answers `whoami` for a session (shared by `Session.whoami` and `Iam.whoami`).
pub fn whoami(
    session: &Session,
    state_machine: &crate::raft::KvStateMachine,
    out: identity::Builder<'_>,
) -> capnp::Result<()> {
    let identity = session.identity()?;
    let prefix = keys::bindings_of_principal(identity.tenant(), identity.principal());
    let kvs = state_machine.scan_prefix_local(prefix.as_bytes());
    let bindings: Vec<model::Binding> = IamService::parse_all(&kvs);
    write_identity(out, &identity, &bindings);
    Ok(())
}

impl iam::Server for IamService {
    async fn whoami(
        self: Rc<Self>,
        _params: iam::WhoamiParams,
        mut results: iam::WhoamiResults,
    ) -> Result<(), capnp::Error> {
        whoami(
            &self.session,
            &self.proposer.state_machine,
            results.get().init_identity(),
        )
    }

    async fn refresh(
        self: Rc<Self>,
        params: iam::RefreshParams,
        mut results: iam::RefreshResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.session.identity()?;
        let ttl_ms = self.session.auth.ttl_ms(params.get()?.get_ttl_seconds())?;
        let (token, claims) = self
            .session
            .auth
            .directory
            .issue_token(
                identity.tenant(),
                identity.principal(),
                identity.project(),
                now_ms(),
                ttl_ms,
            )
            .map_err(|e| capnp::Error::failed(e.to_string()))?;
        let mut r = results.get();
        r.set_token(&token);
        r.set_expires_at_ms(claims.exp);
        Ok(())
    }

    async fn revoke_token(
        self: Rc<Self>,
        params: iam::RevokeTokenParams,
        _results: iam::RevokeTokenResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.session.identity()?;
        let token = text(params.get()?.get_token()?)?;
        // Only a valid token needs revoking; an invalid one is refused anyway.
        let target = self
            .session
            .auth
            .verify(&token)
            .map_err(|e| invalid(format!("that token is not valid ({e})")))?;
        if !identity.cluster_admin {
            if target.tenant() != identity.tenant() {
                return Err(denied(photon_iam::directory::Denied {
                    principal: identity.principal().to_owned(),
                    action: "iam:RevokeToken".into(),
                    resource: "a token of another tenant".into(),
                }));
            }
            if target.principal() != identity.principal() {
                self.check(
                    Scope::Tenant,
                    "iam:RevokeToken",
                    &format!("iam/principal/{}", target.principal()),
                )?;
            }
        }
        let now = now_ms();
        let ttl_ms = target.claims.exp.saturating_sub(now) + REVOCATION_SLACK_MS;
        let CommandResponse::LeaseGrant(lease) = self
            .proposer
            .propose(Command::LeaseGrant { id: 0, ttl_ms })
            .await?
        else {
            return Err(wrong_response());
        };
        let (key, value) = records::revocation(&target.claims.jti, target.claims.exp);
        self.proposer
            .propose(Command::Put(PutRequest {
                key: key.into_bytes(),
                value,
                lease: lease.id,
                ..Default::default()
            }))
            .await?;
        Ok(())
    }

    async fn sign_out(
        self: Rc<Self>,
        params: iam::SignOutParams,
        _results: iam::SignOutResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.session.identity()?;
        let named = text(params.get()?.get_principal()?)?;
        let (subject, is_self) = Self::subject(&identity, &named);
        if !is_self {
            self.check(
                Scope::Tenant,
                "iam:SignOut",
                &format!("iam/principal/{subject}"),
            )?;
        }
        self.update_principal(identity.tenant(), subject, |principal| {
            principal.tokens_not_before_ms = now_ms() + 1;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn create_tenant(
        self: Rc<Self>,
        params: iam::CreateTenantParams,
        _results: iam::CreateTenantResults,
    ) -> Result<(), capnp::Error> {
        self.cluster_admin()?;
        let p = params.get()?;
        let tenant = text(p.get_name()?)?;
        let admin = text(p.get_admin_name()?)?;
        let password_ = text(p.get_admin_password()?)?;
        name("tenant", &tenant)?;
        name("principal", &admin)?;
        let now = now_ms();
        let principal = Principal {
            tenant: tenant.clone(),
            name: admin.clone(),
            kind: PrincipalKind::User,
            secret_hash: self.hash(password_).await?,
            cluster_admin: false,
            tokens_not_before_ms: 0,
            created_ms: now,
        };
        let created = self
            .txn(
                vec![txn::absent(keys::tenant(&tenant))],
                vec![
                    record_op(records::tenant(&tenant, now)),
                    record_op(records::project(&tenant, model::DEFAULT_PROJECT, now)),
                    record_op(records::principal(&principal)),
                    record_op(records::binding(
                        &tenant,
                        &admin,
                        model::ALL_PROJECTS,
                        "admin",
                    )),
                ],
            )
            .await?;
        if !created {
            return Err(exists("tenant", &tenant));
        }
        Ok(())
    }

    async fn list_tenants(
        self: Rc<Self>,
        _params: iam::ListTenantsParams,
        mut results: iam::ListTenantsResults,
    ) -> Result<(), capnp::Error> {
        self.cluster_admin()?;
        let tenants: Vec<model::Tenant> = Self::parse_all(&self.read_prefix("iam/tenant/").await?);
        let mut list = results.get().init_tenants(tenants.len() as u32);
        for (i, t) in tenants.iter().enumerate() {
            list.set(i as u32, &t.name);
        }
        Ok(())
    }

    async fn rotate_signing_key(
        self: Rc<Self>,
        _params: iam::RotateSigningKeyParams,
        mut results: iam::RotateSigningKeyResults,
    ) -> Result<(), capnp::Error> {
        self.cluster_admin()?;
        self.proposer.linearizable().await?;
        let now = now_ms();
        let verify_until = now + self.session.auth.settings.token_ttl_max_ms;
        let pair = photon_iam::token::KeyPair::generate(password::generate_id("k", 8));
        let cluster_key = self.session.auth.directory.cluster_key();
        txn::update(&self.proposer, "the signing keys", |state| {
            let kvs = state.scan_prefix_local(keys::SIGNING_KEYS.as_bytes());
            // A rotation that raced this one added a key: plan again so
            // only one key is left signing.
            let mut compare = vec![txn::none_created_after(
                keys::SIGNING_KEYS,
                txn::newest_creation(&kvs),
            )];
            let mut ops = vec![record_op(records::signing_key(
                cluster_key,
                &pair,
                now,
                None,
            ))];
            for kv in &kvs {
                let Ok(record) = serde_json::from_slice::<model::SigningKey>(&kv.value) else {
                    continue;
                };
                compare.push(txn::unchanged(kv));
                match record.verify_until_ms {
                    // Retire the key that signed until now.
                    None => ops.push(record_op(records::retire_signing_key(
                        &record,
                        verify_until,
                    ))),
                    // Drop keys whose tokens have all expired.
                    Some(until) if until <= now => {
                        ops.push(txn::delete(keys::signing_key(&record.id)))
                    }
                    Some(_) => {}
                }
            }
            Ok::<_, capnp::Error>(Plan::write(compare, ops, ()))
        })
        .await?;
        results.get().set_key_id(&pair.id);
        Ok(())
    }

    async fn list_signing_keys(
        self: Rc<Self>,
        _params: iam::ListSigningKeysParams,
        mut results: iam::ListSigningKeysResults,
    ) -> Result<(), capnp::Error> {
        self.cluster_admin()?;
        let all: Vec<model::SigningKey> =
            Self::parse_all(&self.read_prefix(keys::SIGNING_KEYS).await?);
        let mut list = results.get().init_keys(all.len() as u32);
        for (i, k) in all.iter().enumerate() {
            let mut item = list.reborrow().get(i as u32);
            item.set_id(&k.id);
            item.set_created_ms(k.created_ms);
            item.set_verify_until_ms(k.verify_until_ms.unwrap_or(0));
        }
        Ok(())
    }

    async fn create_project(
        self: Rc<Self>,
        params: iam::CreateProjectParams,
        _results: iam::CreateProjectResults,
    ) -> Result<(), capnp::Error> {
        let project = text(params.get()?.get_name()?)?;
        name("project", &project)?;
        let identity = self.check(
            Scope::Tenant,
            "iam:CreateProject",
            &format!("iam/project/{project}"),
        )?;
        let created = self
            .txn(
                vec![txn::absent(keys::project(identity.tenant(), &project))],
                vec![record_op(records::project(
                    identity.tenant(),
                    &project,
                    now_ms(),
                ))],
            )
            .await?;
        if !created {
            return Err(exists("project", &project));
        }
        Ok(())
    }

    async fn list_projects(
        self: Rc<Self>,
        _params: iam::ListProjectsParams,
        mut results: iam::ListProjectsResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.check(Scope::Project, "iam:ListProjects", "iam/project")?;
        let projects: Vec<model::Project> = Self::parse_all(
            &self
                .read_prefix(&keys::projects_of(identity.tenant()))
                .await?,
        );
        let mut list = results.get().init_projects(projects.len() as u32);
        for (i, p) in projects.iter().enumerate() {
            list.set(i as u32, &p.name);
        }
        Ok(())
    }

    async fn create_user(
        self: Rc<Self>,
        params: iam::CreateUserParams,
        _results: iam::CreateUserResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let user = text(p.get_name()?)?;
        let identity = self.check(
            Scope::Tenant,
            "iam:CreateUser",
            &format!("iam/principal/{user}"),
        )?;
        self.create_principal(
            &identity,
            &user,
            PrincipalKind::User,
            text(p.get_password()?)?,
        )
        .await
    }

    async fn set_password(
        self: Rc<Self>,
        params: iam::SetPasswordParams,
        _results: iam::SetPasswordResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.session.identity()?;
        let p = params.get()?;
        let named = text(p.get_name()?)?;
        let (subject, is_self) = Self::subject(&identity, &named);
        if !is_self {
            self.check(
                Scope::Tenant,
                "iam:SetPassword",
                &format!("iam/principal/{subject}"),
            )?;
        }
        // Refuse before the costly hash; the update checks again.
        let key = keys::principal(identity.tenant(), subject);
        match self.read_one::<Principal>(&key).await? {
            None => return Err(not_found("principal", subject)),
            Some((_, principal)) if principal.kind != PrincipalKind::User => {
                return Err(invalid(
                    "service accounts have generated secrets, not passwords",
                ))
            }
            Some(_) => {}
        }
        let hash = self.hash(text(p.get_password()?)?).await?;
        self.update_principal(identity.tenant(), subject, |principal| {
            if principal.kind != PrincipalKind::User {
                return Err(invalid(
                    "service accounts have generated secrets, not passwords",
                ));
            }
            principal.secret_hash = hash.clone();
            // Tokens issued with the old password stop working.
            principal.tokens_not_before_ms = now_ms() + 1;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn create_service_account(
        self: Rc<Self>,
        params: iam::CreateServiceAccountParams,
        mut results: iam::CreateServiceAccountResults,
    ) -> Result<(), capnp::Error> {
        let account = text(params.get()?.get_name()?)?;
        let identity = self.check(
            Scope::Tenant,
            "iam:CreateServiceAccount",
            &format!("iam/principal/{account}"),
        )?;
        let secret = password::generate_secret();
        self.create_principal(
            &identity,
            &account,
            PrincipalKind::ServiceAccount,
            secret.clone(),
        )
        .await?;
        results.get().set_secret(&secret);
        Ok(())
    }

    async fn delete_principal(
        self: Rc<Self>,
        params: iam::DeletePrincipalParams,
        _results: iam::DeletePrincipalResults,
    ) -> Result<(), capnp::Error> {
        let subject = text(params.get()?.get_name()?)?;
        let identity = self.check(
            Scope::Tenant,
            "iam:DeletePrincipal",
            &format!("iam/principal/{subject}"),
        )?;
        if identity.tenant() == model::SYSTEM_TENANT && subject == model::CLUSTER_ADMIN {
            return Err(invalid("the cluster administrator cannot be deleted"));
        }
        let key = keys::principal(identity.tenant(), &subject);
        let access_keys: Vec<model::AccessKey> =
            Self::parse_all(&self.read_prefix("iam/accesskey/").await?);
        let mut ops = vec![
            txn::delete(&key),
            txn::delete_prefix(keys::bindings_of_principal(identity.tenant(), &subject)),
        ];
        ops.extend(
            access_keys
                .iter()
                .filter(|k| k.tenant == identity.tenant() && k.principal == subject)
                .map(|k| txn::delete(keys::access_key(&k.id))),
        );
        if !self.txn(vec![txn::present(&key)], ops).await? {
            return Err(not_found("principal", &subject));
        }
        Ok(())
    }

    async fn list_principals(
        self: Rc<Self>,
        _params: iam::ListPrincipalsParams,
        mut results: iam::ListPrincipalsResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.check(Scope::Project, "iam:ListPrincipals", "iam/principal")?;
        let all: Vec<Principal> = Self::parse_all(
            &self
                .read_prefix(&keys::principals_of(identity.tenant()))
                .await?,
        );
        let mut list = results.get().init_principals(all.len() as u32);
        for (i, p) in all.iter().enumerate() {
            let mut item = list.reborrow().get(i as u32);
            item.set_name(&p.name);
            item.set_kind(p.kind.as_str());
            item.set_cluster_admin(p.cluster_admin);
            item.set_created_ms(p.created_ms);
        }
        Ok(())
    }

    async fn create_access_key(
        self: Rc<Self>,
        params: iam::CreateAccessKeyParams,
        mut results: iam::CreateAccessKeyResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.session.identity()?;
        let named = text(params.get()?.get_principal()?)?;
        let (subject, is_self) = Self::subject(&identity, &named);
        if !is_self {
            self.check(
                Scope::Tenant,
                "iam:CreateAccessKey",
                &format!("iam/principal/{subject}"),
            )?;
        }
        let id = password::generate_id("PK", 9);
        let secret = password::generate_secret();
        let record = records::access_key(
            self.session.auth.directory.cluster_key(),
            &id,
            &secret,
            identity.tenant(),
            subject,
            identity.project(),
            now_ms(),
        );
        let principal_key = keys::principal(identity.tenant(), subject);
        if !self
            .txn(
                vec![txn::present(&principal_key), txn::absent(&record.0)],
                vec![record_op(record)],
            )
            .await?
        {
            return Err(not_found("principal", subject));
        }
        let mut r = results.get();
        r.set_id(&id);
        r.set_secret(&secret);
        Ok(())
    }

    async fn list_access_keys(
        self: Rc<Self>,
        params: iam::ListAccessKeysParams,
        mut results: iam::ListAccessKeysResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.session.identity()?;
        let named = text(params.get()?.get_principal()?)?;
        let (subject, is_self) = Self::subject(&identity, &named);
        let every = named == "*";
        if !is_self {
            self.check(Scope::Project, "iam:ListAccessKeys", "iam/accesskey")?;
        }
        let all: Vec<model::AccessKey> =
            Self::parse_all(&self.read_prefix("iam/accesskey/").await?);
        let mine: Vec<&model::AccessKey> = all
            .iter()
            .filter(|k| k.tenant == identity.tenant() && (every || k.principal == subject))
            .collect();
        let mut list = results.get().init_keys(mine.len() as u32);
        for (i, k) in mine.iter().enumerate() {
            let mut item = list.reborrow().get(i as u32);
            item.set_id(&k.id);
            item.set_principal(&k.principal);
            item.set_project(&k.project);
            item.set_created_ms(k.created_ms);
        }
        Ok(())
    }

    async fn delete_access_key(
        self: Rc<Self>,
        params: iam::DeleteAccessKeyParams,
        _results: iam::DeleteAccessKeyResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.session.identity()?;
        let id = text(params.get()?.get_id()?)?;
        let key = keys::access_key(&id);
        let record = self.read_one::<model::AccessKey>(&key).await?;
        // Another tenant's key is "not found": its existence is not ours to know.
        let Some((kv, record)) = record.filter(|(_, r)| r.tenant == identity.tenant()) else {
            return Err(not_found("access key", &id));
        };
        if record.principal != identity.principal() {
            self.check(
                Scope::Tenant,
                "iam:DeleteAccessKey",
                &format!("iam/principal/{}", record.principal),
            )?;
        }
        if !self
            .txn(vec![txn::unchanged(&kv)], vec![txn::delete(&key)])
            .await?
        {
            return Err(not_found("access key", &id));
        }
        Ok(())
    }

    async fn put_role(
        self: Rc<Self>,
        params: iam::PutRoleParams,
        _results: iam::PutRoleResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let role = text(p.get_name()?)?;
        name("role", &role)?;
        if BUILTIN_ROLES.contains(&role.as_str()) {
            return Err(invalid(format!("{role:?} is a built-in role")));
        }
        let identity = self.check(Scope::Tenant, "iam:PutRole", &format!("iam/role/{role}"))?;
        let statements: Vec<model::Statement> = serde_json::from_str(&text(p.get_statements()?)?)
            .map_err(|e| {
            invalid(format!(
                "statements are not a JSON list of {{effect, actions, resources}}: {e}"
            ))
        })?;
        model::check_statements(&statements).map_err(invalid)?;
        let role = model::Role {
            tenant: identity.tenant().to_owned(),
            name: role,
            statements,
        };
        self.txn(Vec::new(), vec![record_op(records::role(&role))])
            .await?;
        Ok(())
    }

    async fn delete_role(
        self: Rc<Self>,
        params: iam::DeleteRoleParams,
        _results: iam::DeleteRoleResults,
    ) -> Result<(), capnp::Error> {
        let role = text(params.get()?.get_name()?)?;
        let identity = self.check(Scope::Tenant, "iam:DeleteRole", &format!("iam/role/{role}"))?;
        let key = keys::role(identity.tenant(), &role);
        if !self
            .txn(vec![txn::present(&key)], vec![txn::delete(&key)])
            .await?
        {
            return Err(not_found("role", &role));
        }
        Ok(())
    }

    async fn list_roles(
        self: Rc<Self>,
        _params: iam::ListRolesParams,
        mut results: iam::ListRolesResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.check(Scope::Project, "iam:ListRoles", "iam/role")?;
        let custom: Vec<model::Role> = Self::parse_all(
            &self
                .read_prefix(&format!("iam/role/{}/", identity.tenant()))
                .await?,
        );
        let mut all: Vec<(String, bool, String)> = BUILTIN_ROLES
            .iter()
            .map(|name| {
                let statements = photon_iam::policy::builtin_role(name).unwrap_or(&[]);
                (
                    (*name).to_owned(),
                    true,
                    serde_json::to_string(statements).unwrap_or_default(),
                )
            })
            .collect();
        all.extend(custom.iter().map(|r| {
            (
                r.name.clone(),
                false,
                serde_json::to_string(&r.statements).unwrap_or_default(),
            )
        }));
        let mut list = results.get().init_roles(all.len() as u32);
        for (i, (name, builtin, statements)) in all.iter().enumerate() {
            let mut item = list.reborrow().get(i as u32);
            item.set_name(name);
            item.set_builtin(*builtin);
            item.set_statements(statements);
        }
        Ok(())
    }

    async fn bind(
        self: Rc<Self>,
        params: iam::BindParams,
        _results: iam::BindResults,
    ) -> Result<(), capnp::Error> {
        let b = params.get()?.get_binding()?;
        let (principal, project, role) = (
            text(b.get_principal()?)?,
            text(b.get_project()?)?,
            text(b.get_role()?)?,
        );
        let identity = self.authorize_binding("iam:Bind", &principal, &project)?;
        name("role", &role)?;
        let tenant = identity.tenant();
        let mut compare = vec![txn::present(keys::principal(tenant, &principal))];
        if project != model::ALL_PROJECTS {
            compare.push(txn::present(keys::project(tenant, &project)));
        }
        if !BUILTIN_ROLES.contains(&role.as_str()) {
            compare.push(txn::present(keys::role(tenant, &role)));
        }
        let ok = self
            .txn(
                compare,
                vec![record_op(records::binding(
                    tenant, &principal, &project, &role,
                ))],
            )
            .await?;
        if !ok {
            return Err(invalid(format!(
                "principal {principal:?}, project {project:?} and role {role:?} must all exist in your tenant"
            )));
        }
        Ok(())
    }

    async fn unbind(
        self: Rc<Self>,
        params: iam::UnbindParams,
        _results: iam::UnbindResults,
    ) -> Result<(), capnp::Error> {
        let b = params.get()?.get_binding()?;
        let (principal, project, role) = (
            text(b.get_principal()?)?,
            text(b.get_project()?)?,
            text(b.get_role()?)?,
        );
        let identity = self.authorize_binding("iam:Unbind", &principal, &project)?;
        let key = keys::binding(identity.tenant(), &principal, &project, &role);
        if !self
            .txn(vec![txn::present(&key)], vec![txn::delete(&key)])
            .await?
        {
            return Err(not_found(
                "binding",
                &format!("{principal} {project} {role}"),
            ));
        }
        Ok(())
    }

    async fn list_bindings(
        self: Rc<Self>,
        params: iam::ListBindingsParams,
        mut results: iam::ListBindingsResults,
    ) -> Result<(), capnp::Error> {
        let identity = self.check(Scope::Project, "iam:ListBindings", "iam/binding")?;
        let principal = text(params.get()?.get_principal()?)?;
        let prefix = if principal.is_empty() {
            keys::bindings_of(identity.tenant())
        } else {
            name("principal", &principal)?;
            keys::bindings_of_principal(identity.tenant(), &principal)
        };
        let all: Vec<model::Binding> = Self::parse_all(&self.read_prefix(&prefix).await?);
        let mut list = results.get().init_bindings(all.len() as u32);
        for (i, b) in all.iter().enumerate() {
            let mut item = list.reborrow().get(i as u32);
            item.set_principal(&b.principal);
            item.set_project(&b.project);
            item.set_role(&b.role);
        }
        Ok(())
    }
}

impl IamService {
    /// A binding in the caller's own project needs `action` there; in any
    /// other project (or every project) it needs `action` at tenant level.
    fn authorize_binding(
        &self,
        action: &str,
        principal: &str,
        project: &str,
    ) -> capnp::Result<std::sync::Arc<Identity>> {
        name("principal", principal)?;
        if project != model::ALL_PROJECTS {
            name("project", project)?;
        }
        let identity = self.session.identity()?;
        let scope = if project == identity.project() {
            Scope::Project
        } else {
            Scope::Tenant
        };
        self.check(scope, action, &format!("iam/binding/{principal}"))
    }
}
