//! `photon ctl iam ...`: tenants, projects, users, service accounts, S3
//! access keys, roles, bindings, tokens and signing keys.

use anyhow::Context;
use clap::Subcommand;
use photon_control::client::{BindingInfo, Client};
use serde::Serialize;
use serde_json::json;

use crate::ctl::auth::read_secret;
use crate::ctl::output::Output;
use crate::ctl::utc_time;

#[derive(Debug, Subcommand)]
pub enum IamCommand {
    /// Tenants (cluster administrator only).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Projects of your tenant.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Users of your tenant.
    #[command(subcommand)]
    User(UserCommand),
    /// Service accounts of your tenant (log in with their generated secret).
    #[command(subcommand, name = "sa")]
    ServiceAccount(ServiceAccountCommand),
    /// S3 access keys (SigV4); they act in your token's project.
    #[command(subcommand)]
    AccessKey(AccessKeyCommand),
    /// Roles: admin, editor and viewer are built in; add your own.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Give PRINCIPAL the ROLE in a project (--project '*': every project).
    Bind {
        principal: String,
        role: String,
        /// Default: your token's project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Take a role binding away.
    Unbind {
        principal: String,
        role: String,
        #[arg(long)]
        project: Option<String>,
    },
    /// List role bindings (of one principal, or all).
    Bindings { principal: Option<String> },
    /// Revoke a token (every node refuses it within a second).
    RevokeToken {
        /// The token to revoke; read from stdin when omitted. (Not named
        /// `token`: that is the global option naming the caller's token.)
        #[arg(id = "revoked_token", value_name = "TOKEN")]
        revoked: Option<String>,
    },
    /// Refuse every token PRINCIPAL holds now (default: yourself).
    SignOut { principal: Option<String> },
    /// Token-signing keys (cluster administrator only).
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant with its first administrator (admin of every project).
    Create {
        name: String,
        #[arg(long)]
        admin: String,
        /// Read the administrator's password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the tenants.
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project in your tenant.
    Create { name: String },
    /// List your tenant's projects.
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (the password is read from stdin or asked for).
    Create {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Users and service accounts.
    Ls,
    /// Delete a user or service account, its bindings and access keys.
    Rm { name: String },
    /// Change a password (default: yours); its old tokens stop working.
    Passwd {
        name: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceAccountCommand {
    /// Create one; prints its secret once.
    Create { name: String },
    /// Delete a service account, its bindings and access keys.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum AccessKeyCommand {
    /// Create a key for yourself or --principal; prints the secret once.
    Create {
        #[arg(long)]
        principal: Option<String>,
    },
    /// List your keys (or --principal's, or --all of the tenant's).
    Ls {
        #[arg(long)]
        principal: Option<String>,
        /// Every principal's keys in your tenant.
        #[arg(long, conflicts_with = "principal")]
        all: bool,
    },
    /// Delete a key.
    Rm { id: String },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create or replace a role from a JSON list of statements:
    /// [{"effect":"allow","actions":["kv:Get"],"resources":["kv/app/*"]}]
    Put {
        name: String,
        /// The statements (JSON), or @FILE.
        statements: String,
    },
    /// Delete a custom role.
    Rm { name: String },
    /// List the built-in and custom roles with their statements.
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Make a new key sign; the old one verifies until its tokens expire.
    Rotate,
    /// List the signing keys (the active one, and retired ones still verifying).
    Ls,
}

/// A row of a list of names (tenants, projects).
#[derive(Serialize)]
struct Named {
    name: String,
}

fn names(out: Output, names: Vec<String>) {
    let rows: Vec<Named> = names.into_iter().map(|name| Named { name }).collect();
    out.list(&rows, ["NAME"], |r| [r.name.clone()]);
}

/// Reports an action that returns nothing: `{"ok": true}` with `--json`.
fn ok(out: Output, message: impl std::fmt::Display) {
    out.done(json!({"ok": true}), message);
}

pub async fn run(client: &mut Client, cmd: IamCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        IamCommand::Tenant(cmd) => tenant(client, cmd, out).await,
        IamCommand::Project(cmd) => project(client, cmd, out).await,
        IamCommand::User(cmd) => user(client, cmd, out).await,
        IamCommand::ServiceAccount(cmd) => service_account(client, cmd, out).await,
        IamCommand::AccessKey(cmd) => access_key(client, cmd, out).await,
        IamCommand::Role(cmd) => role(client, cmd, out).await,
        IamCommand::Bind {
            principal,
            role,
            project,
        } => {
            let b = binding(client, principal, role, project).await?;
            client.bind(&b).await?;
            ok(
                out,
                format!(
                    "bound {} to {} in project {}",
                    b.principal, b.role, b.project
                ),
            );
            Ok(())
        }
        IamCommand::Unbind {
            principal,
            role,
            project,
        } => {
            let b = binding(client, principal, role, project).await?;
            client.unbind(&b).await?;
            ok(
                out,
                format!(
                    "unbound {} from {} in project {}",
                    b.principal, b.role, b.project
                ),
            );
            Ok(())
        }
        IamCommand::Bindings { principal } => {
            let bindings = client.list_bindings(&principal.unwrap_or_default()).await?;
            out.list(&bindings, ["PRINCIPAL", "PROJECT", "ROLE"], |b| {
                [b.principal.clone(), b.project.clone(), b.role.clone()]
            });
            Ok(())
        }
        IamCommand::RevokeToken { revoked } => revoke_token(client, revoked, out).await,
        IamCommand::SignOut { principal } => {
            client.sign_out(&principal.unwrap_or_default()).await?;
            ok(out, "every token issued until now is refused");
            Ok(())
        }
        IamCommand::SigningKey(cmd) => signing_key(client, cmd, out).await,
    }
}

/// The binding a `bind`/`unbind` names (default project: the token's).
async fn binding(
    client: &mut Client,
    principal: String,
    role: String,
    project: Option<String>,
) -> anyhow::Result<BindingInfo> {
    let project = match project {
        Some(p) => p,
        None => client.whoami().await?.project,
    };
    Ok(BindingInfo {
        principal,
        project,
        role,
    })
}

async fn revoke_token(
    client: &mut Client,
    revoked: Option<String>,
    out: Output,
) -> anyhow::Result<()> {
    let token = match revoked {
        Some(t) => t,
        None => read_secret("token", true)?,
    };
    client.revoke_token(&token).await?;
    ok(out, "revoked");
    Ok(())
}

async fn tenant(client: &mut Client, cmd: TenantCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create {
            name,
            admin,
            password_stdin,
        } => {
            let password = read_secret("administrator password", password_stdin)?;
            client.create_tenant(&name, &admin, &password).await?;
            ok(
                out,
                format!("created tenant {name} with administrator {admin}"),
            );
        }
        TenantCommand::Ls => names(out, client.list_tenants().await?),
    }
    Ok(())
}

async fn project(client: &mut Client, cmd: ProjectCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        ProjectCommand::Create { name } => {
            client.create_project(&name).await?;
            ok(out, format!("created project {name}"));
        }
        ProjectCommand::Ls => names(out, client.list_projects().await?),
    }
    Ok(())
}

async fn user(client: &mut Client, cmd: UserCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            name,
            password_stdin,
        } => {
            let password = read_secret("password", password_stdin)?;
            client.create_user(&name, &password).await?;
            ok(out, format!("created user {name}"));
        }
        UserCommand::Ls => {
            let principals = client.list_principals().await?;
            out.list(&principals, ["NAME", "KIND", "CLUSTER_ADMIN"], |p| {
                [p.name.clone(), p.kind.clone(), p.cluster_admin.to_string()]
            });
        }
        UserCommand::Rm { name } => {
            client.delete_principal(&name).await?;
            ok(out, format!("deleted {name}"));
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_secret("new password", password_stdin)?;
            client
                .set_password(&name.unwrap_or_default(), &password)
                .await?;
            ok(
                out,
                "password changed; tokens issued before now are refused",
            );
        }
    }
    Ok(())
}

async fn service_account(
    client: &mut Client,
    cmd: ServiceAccountCommand,
    out: Output,
) -> anyhow::Result<()> {
    match cmd {
        ServiceAccountCommand::Create { name } => {
            let secret = client.create_service_account(&name).await?;
            out.done(
                json!({"name": name, "secret": secret}),
                format!("created service account {name}; its secret (shown once):\n{secret}"),
            );
        }
        ServiceAccountCommand::Rm { name } => {
            client.delete_principal(&name).await?;
            ok(out, format!("deleted {name}"));
        }
    }
    Ok(())
}

async fn access_key(client: &mut Client, cmd: AccessKeyCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        AccessKeyCommand::Create { principal } => {
            let key = client
                .create_access_key(&principal.unwrap_or_default())
                .await?;
            out.show(&key, |k| {
                format!(
                    "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}",
                    k.access_key_id, k.secret_access_key
                )
            });
        }
        AccessKeyCommand::Ls { principal, all } => {
            let principal = if all {
                "*".to_owned()
            } else {
                principal.unwrap_or_default()
            };
            let keys = client.list_access_keys(&principal).await?;
            out.list(&keys, ["ID", "PRINCIPAL", "PROJECT"], |k| {
                [k.id.clone(), k.principal.clone(), k.project.clone()]
            });
        }
        AccessKeyCommand::Rm { id } => {
            client.delete_access_key(&id).await?;
            ok(out, format!("deleted access key {id}"));
        }
    }
    Ok(())
}

async fn role(client: &mut Client, cmd: RoleCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        RoleCommand::Put { name, statements } => {
            let statements = match statements.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
                }
                None => statements,
            };
            client.put_role(&name, &statements).await?;
            ok(out, format!("role {name} saved"));
        }
        RoleCommand::Rm { name } => {
            client.delete_role(&name).await?;
            ok(out, format!("role {name} deleted"));
        }
        RoleCommand::Ls => {
            let roles = client.list_roles().await?;
            out.list(&roles, ["NAME", "BUILTIN", "STATEMENTS"], |r| {
                [
                    r.name.clone(),
                    r.builtin.to_string(),
                    r.statements.to_string(),
                ]
            });
        }
    }
    Ok(())
}

async fn signing_key(
    client: &mut Client,
    cmd: SigningKeyCommand,
    out: Output,
) -> anyhow::Result<()> {
    match cmd {
        SigningKeyCommand::Rotate => {
            let id = client.rotate_signing_key().await?;
            out.done(
                json!({"key_id": id}),
                format!("signing key {id} signs from now on"),
            );
        }
        SigningKeyCommand::Ls => {
            // Tables show UTC times; JSON keeps the milliseconds.
            let keys = client.list_signing_keys().await?;
            out.list(&keys, ["ID", "ACTIVE", "CREATED", "VERIFY_UNTIL"], |k| {
                let until = match k.verify_until_ms {
                    0 => "-".to_owned(),
                    ms => utc_time(ms),
                };
                [
                    k.id.clone(),
                    k.active.to_string(),
                    utc_time(k.created_ms),
                    until,
                ]
            });
        }
    }
    Ok(())
}
