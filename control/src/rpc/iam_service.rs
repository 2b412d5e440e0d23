//! The IAM API over Cap'n Proto. Every call acts in the caller's tenant and
//! is authorized against its roles; writes are KV transactions through Raft
//! whose compares keep the model consistent (no duplicate names, no binding
//! to a principal that is gone); reads come from the applied state after a
//! linearizable read index, so a caller sees its own writes.

use std::rc::Rc as StdRc;

use capnp::capability::Rc;
use photon_iam::model::{self, keys, Principal, PrincipalKind};
use photon_iam::password;
use photon_iam::policy::BUILTIN_ROLES;
use photon_iam::{records, Identity, Scope};
use photon_schema::iam_capnp::{iam, identity};

use super::now_ms;
use super::session::{denied, Session};
use crate::api_error::{refusal, ApiError, Reply};
use crate::proposer::Proposer;
use crate::resource::iam::{self as kind, IamWriteError};

pub struct IamService {
    proposer: Proposer,
    session: StdRc<Session>,
}

fn invalid(message: impl std::fmt::Display) -> ApiError {
    refusal(IamWriteError::Invalid(message.to_string()))
}

fn text(reader: capnp::text::Reader<'_>) -> Reply<String> {
    reader
        .to_string()
        .map_err(|_| invalid("text is not valid UTF-8"))
}

fn name(what: &str, value: &str) -> Reply<()> {
    kind::check_name(what, value).map_err(refusal)
}

impl IamService {
    pub fn new(proposer: Proposer, session: StdRc<Session>) -> Self {
        Self { proposer, session }
    }

    fn check(&self, scope: Scope, action: &str, resource: &str) -> Reply<std::sync::Arc<Identity>> {
        self.session.check(scope, action, resource)
    }

    fn cluster_admin(&self) -> Reply<std::sync::Arc<Identity>> {
        let identity = self.session.identity()?;
        if !identity.cluster_admin {
            return Err(ApiError::permission_denied(
                "only the cluster administrator manages tenants and signing keys",
            ));
        }
        Ok(identity)
    }

    /// Every record under `prefix`, read linearizably.
    async fn read_all<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Reply<Vec<T>> {
        self.proposer.linearizable().await?;
        Ok(kind::all(&self.proposer.state_machine, prefix))
    }

    async fn hash(&self, secret: String) -> Reply<String> {
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
        kind_: PrincipalKind,
        secret: String,
    ) -> Reply<()> {
        name("principal", name_)?;
        let principal = Principal {
            tenant: identity.tenant().to_owned(),
            name: name_.to_owned(),
            kind: kind_,
            secret_hash: self.hash(secret).await?,
            cluster_admin: false,
            tokens_not_before_ms: 0,
            created_ms: now_ms(),
        };
        kind::create_principal(&self.proposer, &principal)
            .await
            .map_err(refusal)
    }

    /// The principal a self-service call names ("" = the caller); naming
    /// another needs `action` on it at tenant level.
    fn subject_allowed<'a>(
        &self,
        identity: &'a Identity,
        named: &'a str,
        action: &str,
    ) -> Reply<&'a str> {
        let (subject, is_self) = Self::subject(identity, named);
        if !is_self {
            self.check(Scope::Tenant, action, &format!("iam/principal/{subject}"))?;
        }
        Ok(subject)
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
) -> Reply<()> {
    let identity = session.identity()?;
    let prefix = keys::bindings_of_principal(identity.tenant(), identity.principal());
    let bindings: Vec<model::Binding> = kind::all(state_machine, &prefix);
    write_identity(out, &identity, &bindings);
    Ok(())
}

impl iam::Server for IamService {
    async fn whoami(
        self: Rc<Self>,
        _params: iam::WhoamiParams,
        mut results: iam::WhoamiResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            whoami(
                &self.session,
                &self.proposer.state_machine,
                results.get().init_identity(),
            )
        })
    }

    async fn refresh(
        self: Rc<Self>,
        params: iam::RefreshParams,
        mut results: iam::RefreshResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
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
                .map_err(ApiError::internal)?;
            let mut r = results.get();
            r.set_token(&token);
            r.set_expires_at_ms(claims.exp);
            Ok(())
        })
    }

    async fn revoke_token(
        self: Rc<Self>,
        params: iam::RevokeTokenParams,
        mut results: iam::RevokeTokenResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
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
            kind::revoke_token(
                &self.proposer,
                &target.claims.jti,
                target.claims.exp,
                now_ms(),
            )
            .await
            .map_err(refusal)?;
            Ok(())
        })
    }

    async fn sign_out(
        self: Rc<Self>,
        params: iam::SignOutParams,
        mut results: iam::SignOutResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.session.identity()?;
            let named = text(params.get()?.get_principal()?)?;
            let subject = self.subject_allowed(&identity, &named, "iam:SignOut")?;
            kind::update_principal(&self.proposer, identity.tenant(), subject, |principal| {
                principal.tokens_not_before_ms = now_ms() + 1;
                Ok(())
            })
            .await
            .map_err(refusal)?;
            Ok(())
        })
    }

    async fn create_tenant(
        self: Rc<Self>,
        params: iam::CreateTenantParams,
        mut results: iam::CreateTenantResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            self.cluster_admin()?;
            let p = params.get()?;
            let tenant = text(p.get_name()?)?;
            let admin = text(p.get_admin_name()?)?;
            let password_ = text(p.get_admin_password()?)?;
            name("tenant", &tenant)?;
            name("principal", &admin)?;
            let principal = Principal {
                tenant,
                name: admin,
                kind: PrincipalKind::User,
                secret_hash: self.hash(password_).await?,
                cluster_admin: false,
                tokens_not_before_ms: 0,
                created_ms: now_ms(),
            };
            kind::create_tenant(&self.proposer, &principal, principal.created_ms)
                .await
                .map_err(refusal)
        })
    }

    async fn list_tenants(
        self: Rc<Self>,
        _params: iam::ListTenantsParams,
        mut results: iam::ListTenantsResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            self.cluster_admin()?;
            let tenants: Vec<model::Tenant> = self.read_all(keys::TENANTS).await?;
            let mut list = results.get().init_tenants(tenants.len() as u32);
            for (i, t) in tenants.iter().enumerate() {
                list.set(i as u32, &t.name);
            }
            Ok(())
        })
    }

    async fn rotate_signing_key(
        self: Rc<Self>,
        _params: iam::RotateSigningKeyParams,
        mut results: iam::RotateSigningKeyResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            self.cluster_admin()?;
            let now = now_ms();
            let verify_until = now + self.session.auth.settings.token_ttl_max_ms;
            let pair = photon_iam::token::KeyPair::generate(password::generate_id("k", 8));
            let cluster_key = self.session.auth.directory.cluster_key();
            kind::rotate_signing_key(&self.proposer, cluster_key, &pair, now, verify_until)
                .await
                .map_err(refusal)?;
            results.get().set_key_id(&pair.id);
            Ok(())
        })
    }

    async fn list_signing_keys(
        self: Rc<Self>,
        _params: iam::ListSigningKeysParams,
        mut results: iam::ListSigningKeysResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            self.cluster_admin()?;
            let all: Vec<model::SigningKey> = self.read_all(keys::SIGNING_KEYS).await?;
            let mut list = results.get().init_keys(all.len() as u32);
            for (i, k) in all.iter().enumerate() {
                let mut item = list.reborrow().get(i as u32);
                item.set_id(&k.id);
                item.set_created_ms(k.created_ms);
                item.set_verify_until_ms(k.verify_until_ms.unwrap_or(0));
            }
            Ok(())
        })
    }

    async fn create_project(
        self: Rc<Self>,
        params: iam::CreateProjectParams,
        mut results: iam::CreateProjectResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let project = text(params.get()?.get_name()?)?;
            name("project", &project)?;
            let identity = self.check(
                Scope::Tenant,
                "iam:CreateProject",
                &format!("iam/project/{project}"),
            )?;
            kind::create_project(&self.proposer, identity.tenant(), &project, now_ms())
                .await
                .map_err(refusal)
        })
    }

    async fn list_projects(
        self: Rc<Self>,
        _params: iam::ListProjectsParams,
        mut results: iam::ListProjectsResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.check(Scope::Project, "iam:ListProjects", "iam/project")?;
            let projects: Vec<model::Project> =
                self.read_all(&keys::projects_of(identity.tenant())).await?;
            let mut list = results.get().init_projects(projects.len() as u32);
            for (i, p) in projects.iter().enumerate() {
                list.set(i as u32, &p.name);
            }
            Ok(())
        })
    }

    async fn create_user(
        self: Rc<Self>,
        params: iam::CreateUserParams,
        mut results: iam::CreateUserResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
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
        })
    }

    async fn set_password(
        self: Rc<Self>,
        params: iam::SetPasswordParams,
        mut results: iam::SetPasswordResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.session.identity()?;
            let p = params.get()?;
            let named = text(p.get_name()?)?;
            let subject = self.subject_allowed(&identity, &named, "iam:SetPassword")?;
            // Refuse before the costly hash; the update checks again.
            let key = keys::principal(identity.tenant(), subject);
            self.proposer.linearizable().await?;
            match kind::record::<Principal>(&self.proposer.state_machine, &key).map_err(refusal)? {
                None => {
                    return Err(refusal(IamWriteError::NotFound {
                        what: "principal",
                        name: subject.to_owned(),
                    }))
                }
                Some((_, principal)) if principal.kind != PrincipalKind::User => {
                    return Err(invalid(
                        "service accounts have generated secrets, not passwords",
                    ))
                }
                Some(_) => {}
            }
            let hash = self.hash(text(p.get_password()?)?).await?;
            kind::update_principal(&self.proposer, identity.tenant(), subject, |principal| {
                if principal.kind != PrincipalKind::User {
                    return Err(IamWriteError::Invalid(
                        "service accounts have generated secrets, not passwords".into(),
                    ));
                }
                principal.secret_hash = hash.clone();
                // Tokens issued with the old password stop working.
                principal.tokens_not_before_ms = now_ms() + 1;
                Ok(())
            })
            .await
            .map_err(refusal)?;
            Ok(())
        })
    }

    async fn create_service_account(
        self: Rc<Self>,
        params: iam::CreateServiceAccountParams,
        mut results: iam::CreateServiceAccountResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
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
        })
    }

    async fn delete_principal(
        self: Rc<Self>,
        params: iam::DeletePrincipalParams,
        mut results: iam::DeletePrincipalResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let subject = text(params.get()?.get_name()?)?;
            let identity = self.check(
                Scope::Tenant,
                "iam:DeletePrincipal",
                &format!("iam/principal/{subject}"),
            )?;
            kind::delete_principal(&self.proposer, identity.tenant(), &subject)
                .await
                .map_err(refusal)
        })
    }

    async fn list_principals(
        self: Rc<Self>,
        _params: iam::ListPrincipalsParams,
        mut results: iam::ListPrincipalsResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.check(Scope::Project, "iam:ListPrincipals", "iam/principal")?;
            let all: Vec<Principal> = self
                .read_all(&keys::principals_of(identity.tenant()))
                .await?;
            let mut list = results.get().init_principals(all.len() as u32);
            for (i, p) in all.iter().enumerate() {
                let mut item = list.reborrow().get(i as u32);
                item.set_name(&p.name);
                item.set_kind(p.kind.as_str());
                item.set_cluster_admin(p.cluster_admin);
                item.set_created_ms(p.created_ms);
            }
            Ok(())
        })
    }

    async fn create_access_key(
        self: Rc<Self>,
        params: iam::CreateAccessKeyParams,
        mut results: iam::CreateAccessKeyResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.session.identity()?;
            let named = text(params.get()?.get_principal()?)?;
            let subject = self.subject_allowed(&identity, &named, "iam:CreateAccessKey")?;
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
            kind::create_access_key(&self.proposer, record, identity.tenant(), subject)
                .await
                .map_err(refusal)?;
            let mut r = results.get();
            r.set_id(&id);
            r.set_secret(&secret);
            Ok(())
        })
    }

    async fn list_access_keys(
        self: Rc<Self>,
        params: iam::ListAccessKeysParams,
        mut results: iam::ListAccessKeysResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.session.identity()?;
            let named = text(params.get()?.get_principal()?)?;
            let (subject, is_self) = Self::subject(&identity, &named);
            let every = named == "*";
            if !is_self {
                self.check(Scope::Project, "iam:ListAccessKeys", "iam/accesskey")?;
            }
            self.proposer.linearizable().await?;
            let mine = kind::access_keys(
                &self.proposer.state_machine,
                identity.tenant(),
                (!every).then_some(subject),
            );
            let mut list = results.get().init_keys(mine.len() as u32);
            for (i, k) in mine.iter().enumerate() {
                let mut item = list.reborrow().get(i as u32);
                item.set_id(&k.id);
                item.set_principal(&k.principal);
                item.set_project(&k.project);
                item.set_created_ms(k.created_ms);
            }
            Ok(())
        })
    }

    async fn delete_access_key(
        self: Rc<Self>,
        params: iam::DeleteAccessKeyParams,
        mut results: iam::DeleteAccessKeyResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.session.identity()?;
            let id = text(params.get()?.get_id()?)?;
            let key = keys::access_key(&id);
            self.proposer.linearizable().await?;
            let record = kind::record::<model::AccessKey>(&self.proposer.state_machine, &key)
                .map_err(refusal)?;
            // Another tenant's key is "not found": its existence is not ours to know.
            let Some((kv, record)) = record.filter(|(_, r)| r.tenant == identity.tenant()) else {
                return Err(refusal(IamWriteError::NotFound {
                    what: "access key",
                    name: id,
                }));
            };
            if record.principal != identity.principal() {
                self.check(
                    Scope::Tenant,
                    "iam:DeleteAccessKey",
                    &format!("iam/principal/{}", record.principal),
                )?;
            }
            kind::delete_access_key(&self.proposer, &id, &kv)
                .await
                .map_err(refusal)
        })
    }

    async fn put_role(
        self: Rc<Self>,
        params: iam::PutRoleParams,
        mut results: iam::PutRoleResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let role = text(p.get_name()?)?;
            name("role", &role)?;
            if BUILTIN_ROLES.contains(&role.as_str()) {
                return Err(invalid(format!("{role:?} is a built-in role")));
            }
            let identity = self.check(Scope::Tenant, "iam:PutRole", &format!("iam/role/{role}"))?;
            let statements: Vec<model::Statement> =
                serde_json::from_str(&text(p.get_statements()?)?).map_err(|e| {
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
            kind::put_role(&self.proposer, &role).await.map_err(refusal)
        })
    }

    async fn delete_role(
        self: Rc<Self>,
        params: iam::DeleteRoleParams,
        mut results: iam::DeleteRoleResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let role = text(params.get()?.get_name()?)?;
            let identity =
                self.check(Scope::Tenant, "iam:DeleteRole", &format!("iam/role/{role}"))?;
            kind::delete_role(&self.proposer, identity.tenant(), &role)
                .await
                .map_err(refusal)
        })
    }

    async fn list_roles(
        self: Rc<Self>,
        _params: iam::ListRolesParams,
        mut results: iam::ListRolesResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.check(Scope::Project, "iam:ListRoles", "iam/role")?;
            let custom: Vec<model::Role> =
                self.read_all(&keys::roles_of(identity.tenant())).await?;
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
        })
    }

    async fn bind(
        self: Rc<Self>,
        params: iam::BindParams,
        mut results: iam::BindResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let b = params.get()?.get_binding()?;
            let (principal, project, role) = (
                text(b.get_principal()?)?,
                text(b.get_project()?)?,
                text(b.get_role()?)?,
            );
            let identity = self.authorize_binding("iam:Bind", &principal, &project)?;
            name("role", &role)?;
            let binding = model::Binding {
                tenant: identity.tenant().to_owned(),
                principal,
                project,
                role,
            };
            kind::bind(&self.proposer, identity.tenant(), &binding)
                .await
                .map_err(refusal)
        })
    }

    async fn unbind(
        self: Rc<Self>,
        params: iam::UnbindParams,
        mut results: iam::UnbindResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let b = params.get()?.get_binding()?;
            let (principal, project, role) = (
                text(b.get_principal()?)?,
                text(b.get_project()?)?,
                text(b.get_role()?)?,
            );
            let identity = self.authorize_binding("iam:Unbind", &principal, &project)?;
            let binding = model::Binding {
                tenant: identity.tenant().to_owned(),
                principal,
                project,
                role,
            };
            kind::unbind(&self.proposer, identity.tenant(), &binding)
                .await
                .map_err(refusal)
        })
    }

    async fn list_bindings(
        self: Rc<Self>,
        params: iam::ListBindingsParams,
        mut results: iam::ListBindingsResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.check(Scope::Project, "iam:ListBindings", "iam/binding")?;
            let principal = text(params.get()?.get_principal()?)?;
            let prefix = if principal.is_empty() {
                keys::bindings_of(identity.tenant())
            } else {
                name("principal", &principal)?;
                keys::bindings_of_principal(identity.tenant(), &principal)
            };
            let all: Vec<model::Binding> = self.read_all(&prefix).await?;
            let mut list = results.get().init_bindings(all.len() as u32);
            for (i, b) in all.iter().enumerate() {
                let mut item = list.reborrow().get(i as u32);
                item.set_principal(&b.principal);
                item.set_project(&b.project);
                item.set_role(&b.role);
            }
            Ok(())
        })
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
    ) -> Reply<std::sync::Arc<Identity>> {
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
