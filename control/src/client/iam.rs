//! The IAM API: tenants, projects, principals, roles, bindings, access
//! keys, signing keys and tokens.

use photon_schema::iam_capnp::{access_key_info, binding_info, iam, principal_info, role_info};
use photon_schema::iam_capnp::{identity, signing_key_info};

use super::{reply, text, unit_call, Attempt, CallError, Caps, Client, ClientError};

/// A role binding as the IAM API reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindingInfo {
    pub principal: String,
    /// `*`: every project, and tenant-level actions.
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

/// A user or service account of the caller's tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrincipalInfo {
    pub name: String,
    /// `user` or `service_account`.
    pub kind: String,
    pub cluster_admin: bool,
    pub created_ms: u64,
}

/// An S3 access key (its secret is shown only when it is created).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessKeyInfo {
    pub id: String,
    pub principal: String,
    /// The project the key acts in.
    pub project: String,
    pub created_ms: u64,
}

/// A role: a list of `{effect, actions, resources}` statements.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoleInfo {
    pub name: String,
    pub builtin: bool,
    /// The statements as JSON (a list of `{effect, actions, resources}`).
    pub statements: serde_json::Value,
}

/// A token-signing key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SigningKeyInfo {
    pub id: String,
    pub created_ms: u64,
    /// Until when it still verifies the tokens it signed (0: the active key).
    pub verify_until_ms: u64,
    /// Whether it signs new tokens.
    pub active: bool,
}

/// A new token from [`Client::refresh`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefreshedToken {
    pub token: String,
    pub expires_at_ms: u64,
}

/// A new S3 access key from [`Client::create_access_key`]: the only time
/// its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewAccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

pub(crate) fn read_binding(b: binding_info::Reader<'_>) -> Attempt<BindingInfo> {
    Ok(BindingInfo {
        principal: text(b.get_principal())?,
        project: text(b.get_project())?,
        role: text(b.get_role())?,
    })
}

fn write_binding(mut b: binding_info::Builder<'_>, binding: &BindingInfo) {
    b.set_principal(&binding.principal);
    b.set_project(&binding.project);
    b.set_role(&binding.role);
}

fn read_identity(i: identity::Reader<'_>) -> Attempt<IdentityInfo> {
    Ok(IdentityInfo {
        tenant: text(i.get_tenant())?,
        principal: text(i.get_principal())?,
        project: text(i.get_project())?,
        kind: text(i.get_kind())?,
        cluster_admin: i.get_cluster_admin(),
        token_id: text(i.get_token_id())?,
        issued_at_ms: i.get_issued_at_ms(),
        expires_at_ms: i.get_expires_at_ms(),
        bindings: i
            .get_bindings()?
            .iter()
            .map(read_binding)
            .collect::<Attempt<_>>()?,
    })
}

fn read_principal(p: principal_info::Reader<'_>) -> Attempt<PrincipalInfo> {
    Ok(PrincipalInfo {
        name: text(p.get_name())?,
        kind: text(p.get_kind())?,
        cluster_admin: p.get_cluster_admin(),
        created_ms: p.get_created_ms(),
    })
}

fn read_access_key(k: access_key_info::Reader<'_>) -> Attempt<AccessKeyInfo> {
    Ok(AccessKeyInfo {
        id: text(k.get_id())?,
        principal: text(k.get_principal())?,
        project: text(k.get_project())?,
        created_ms: k.get_created_ms(),
    })
}

fn read_role(r: role_info::Reader<'_>) -> Attempt<RoleInfo> {
    let name = text(r.get_name())?;
    let statements = serde_json::from_str(&text(r.get_statements())?).map_err(|e| {
        CallError::Capnp(capnp::Error::failed(format!(
            "role {name}: statements are not JSON: {e}"
        )))
    })?;
    Ok(RoleInfo {
        name,
        builtin: r.get_builtin(),
        statements,
    })
}

fn read_signing_key(k: signing_key_info::Reader<'_>) -> Attempt<SigningKeyInfo> {
    Ok(SigningKeyInfo {
        id: text(k.get_id())?,
        created_ms: k.get_created_ms(),
        verify_until_ms: k.get_verify_until_ms(),
        active: k.get_verify_until_ms() == 0,
    })
}

fn read_texts(list: capnp::Result<capnp::text_list::Reader<'_>>) -> Attempt<Vec<String>> {
    list?.iter().map(text).collect()
}

/// The IAM capability of a connection (pipelined: no extra round trip).
fn api(caps: &Caps) -> iam::Client {
    caps.session().iam_request().send().pipeline.get_iam()
}

/// Tokens and sign-out.
impl Client {
    /// Who this client's token speaks for.
    pub async fn whoami(&mut self) -> Result<IdentityInfo, ClientError> {
        self.with_session(|caps| async move {
            let reply = caps.session().whoami_request().send().promise.await?;
            read_identity(reply!(reply.get()?).get_identity()?)
        })
        .await
    }

    /// A new token for the same principal and project, living `ttl_seconds`
    /// (0: the cluster's default). The current token must be valid.
    pub async fn refresh(&mut self, ttl_seconds: u32) -> Result<RefreshedToken, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).refresh_request();
            call.get().set_ttl_seconds(ttl_seconds);
            let reply = call.send().promise.await?;
            let r = reply!(reply.get()?);
            Ok(RefreshedToken {
                token: text(r.get_token())?,
                expires_at_ms: r.get_expires_at_ms(),
            })
        })
        .await
    }

    /// Revokes one token (your own, or any of your tenant's as its admin).
    pub async fn revoke_token(&mut self, token: &str) -> Result<(), ClientError> {
        unit_call!(self, api, revoke_token_request, |p| {
            p.set_token(token);
        })
    }

    /// Refuses every token `principal` holds now ("": yourself).
    pub async fn sign_out(&mut self, principal: &str) -> Result<(), ClientError> {
        unit_call!(self, api, sign_out_request, |p| {
            p.set_principal(principal);
        })
    }
}

/// Tenants and signing keys (cluster administrator only).
impl Client {
    /// Creates a tenant with its first administrator.
    pub async fn create_tenant(
        &mut self,
        name: &str,
        admin_name: &str,
        admin_password: &str,
    ) -> Result<(), ClientError> {
        unit_call!(self, api, create_tenant_request, |p| {
            p.set_name(name);
            p.set_admin_name(admin_name);
            p.set_admin_password(admin_password);
        })
    }

    pub async fn list_tenants(&mut self) -> Result<Vec<String>, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps).list_tenants_request().send().promise.await?;
            read_texts(reply!(reply.get()?).get_tenants())
        })
        .await
    }

    /// Makes a new key sign and returns its id; the old one verifies until
    /// its tokens expire.
    pub async fn rotate_signing_key(&mut self) -> Result<String, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps)
                .rotate_signing_key_request()
                .send()
                .promise
                .await?;
            text(reply!(reply.get()?).get_key_id())
        })
        .await
    }

    pub async fn list_signing_keys(&mut self) -> Result<Vec<SigningKeyInfo>, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps)
                .list_signing_keys_request()
                .send()
                .promise
                .await?;
            reply!(reply.get()?)
                .get_keys()?
                .iter()
                .map(read_signing_key)
                .collect()
        })
        .await
    }
}

/// Projects and principals of the caller's tenant.
impl Client {
    pub async fn create_project(&mut self, name: &str) -> Result<(), ClientError> {
        unit_call!(self, api, create_project_request, |p| {
            p.set_name(name);
        })
    }

    pub async fn list_projects(&mut self) -> Result<Vec<String>, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps).list_projects_request().send().promise.await?;
            read_texts(reply!(reply.get()?).get_projects())
        })
        .await
    }

    pub async fn create_user(&mut self, name: &str, password: &str) -> Result<(), ClientError> {
        unit_call!(self, api, create_user_request, |p| {
            p.set_name(name);
            p.set_password(password);
        })
    }

    /// Sets the password of `name` ("": yourself; anyone's as tenant
    /// admin). The principal's older tokens are refused from then on.
    pub async fn set_password(&mut self, name: &str, password: &str) -> Result<(), ClientError> {
        unit_call!(self, api, set_password_request, |p| {
            p.set_name(name);
            p.set_password(password);
        })
    }

    /// Creates a service account and returns its generated secret (shown
    /// only this once).
    pub async fn create_service_account(&mut self, name: &str) -> Result<String, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).create_service_account_request();
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            text(reply!(reply.get()?).get_secret())
        })
        .await
    }

    /// Deletes a user or service account, its bindings and access keys.
    pub async fn delete_principal(&mut self, name: &str) -> Result<(), ClientError> {
        unit_call!(self, api, delete_principal_request, |p| {
            p.set_name(name);
        })
    }

    /// Users and service accounts.
    pub async fn list_principals(&mut self) -> Result<Vec<PrincipalInfo>, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps).list_principals_request().send().promise.await?;
            reply!(reply.get()?)
                .get_principals()?
                .iter()
                .map(read_principal)
                .collect()
        })
        .await
    }
}

/// S3 access keys.
impl Client {
    /// A key acting as `principal` ("": yourself) in the token's project.
    pub async fn create_access_key(
        &mut self,
        principal: &str,
    ) -> Result<NewAccessKey, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).create_access_key_request();
            call.get().set_principal(principal);
            let reply = call.send().promise.await?;
            let r = reply!(reply.get()?);
            Ok(NewAccessKey {
                access_key_id: text(r.get_id())?,
                secret_access_key: text(r.get_secret())?,
            })
        })
        .await
    }

    /// The keys of `principal` ("": yourself, "*": every principal of the
    /// tenant).
    pub async fn list_access_keys(
        &mut self,
        principal: &str,
    ) -> Result<Vec<AccessKeyInfo>, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).list_access_keys_request();
            call.get().set_principal(principal);
            let reply = call.send().promise.await?;
            reply!(reply.get()?)
                .get_keys()?
                .iter()
                .map(read_access_key)
                .collect()
        })
        .await
    }

    pub async fn delete_access_key(&mut self, id: &str) -> Result<(), ClientError> {
        unit_call!(self, api, delete_access_key_request, |p| {
            p.set_id(id);
        })
    }
}

/// Roles and bindings.
impl Client {
    /// Creates or replaces a role; `statements` is a JSON list of
    /// `{effect, actions, resources}`.
    pub async fn put_role(&mut self, name: &str, statements: &str) -> Result<(), ClientError> {
        unit_call!(self, api, put_role_request, |p| {
            p.set_name(name);
            p.set_statements(statements);
        })
    }

    pub async fn delete_role(&mut self, name: &str) -> Result<(), ClientError> {
        unit_call!(self, api, delete_role_request, |p| {
            p.set_name(name);
        })
    }

    /// The built-in roles and the tenant's own.
    pub async fn list_roles(&mut self) -> Result<Vec<RoleInfo>, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps).list_roles_request().send().promise.await?;
            reply!(reply.get()?)
                .get_roles()?
                .iter()
                .map(read_role)
                .collect()
        })
        .await
    }

    pub async fn bind(&mut self, binding: &BindingInfo) -> Result<(), ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).bind_request();
            write_binding(call.get().init_binding(), binding);
            let reply = call.send().promise.await?;
            reply!(reply.get()?);
            Ok(())
        })
        .await
    }

    pub async fn unbind(&mut self, binding: &BindingInfo) -> Result<(), ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).unbind_request();
            write_binding(call.get().init_binding(), binding);
            let reply = call.send().promise.await?;
            reply!(reply.get()?);
            Ok(())
        })
        .await
    }

    /// The bindings of `principal` ("": every principal's).
    pub async fn list_bindings(
        &mut self,
        principal: &str,
    ) -> Result<Vec<BindingInfo>, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).list_bindings_request();
            call.get().set_principal(principal);
            let reply = call.send().promise.await?;
            reply!(reply.get()?)
                .get_bindings()?
                .iter()
                .map(read_binding)
                .collect()
        })
        .await
    }
}
