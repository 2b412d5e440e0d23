//! `photon ctl iam ...`: tenants, projects, users, service accounts, S3
//! access keys, roles, bindings, tokens and signing keys.

use anyhow::Context;
use clap::Subcommand;
use control_schema::iam_capnp::iam;
use photon_control::client::{read_binding, BindingInfo, Client};
use serde_json::{json, Value};

use crate::ctl_auth::read_secret;

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
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    Create { name: String },
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
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
    Create {
        name: String,
    },
    Rm {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessKeyCommand {
    /// Create a key for yourself or --principal; prints the secret once.
    Create {
        #[arg(long)]
        principal: Option<String>,
    },
    Ls {
        #[arg(long)]
        principal: Option<String>,
        /// Every principal's keys in your tenant.
        #[arg(long, conflicts_with = "principal")]
        all: bool,
    },
    Rm {
        id: String,
    },
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
    Rm {
        name: String,
    },
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Make a new key sign; the old one verifies until its tokens expire.
    Rotate,
    Ls,
}

/// Runs one call on the IAM API.
async fn call<T, F, Fut>(client: &mut Client, f: F) -> anyhow::Result<T>
where
    F: Fn(iam::Client) -> Fut,
    Fut: std::future::Future<Output = capnp::Result<T>>,
{
    Ok(client.with_iam(f).await?)
}

fn text_list(list: capnp::text_list::Reader<'_>) -> capnp::Result<Vec<String>> {
    list.iter()
        .map(|t| Ok(t?.to_string()?))
        .collect::<capnp::Result<Vec<_>>>()
}

fn print_rows(as_json: bool, rows: &[Value], columns: &[&str]) {
    if as_json {
        println!("{}", Value::Array(rows.to_vec()));
        return;
    }
    println!("{}", columns.join("\t").to_uppercase());
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match &row[*c] {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        println!("{}", cells.join("\t"));
    }
}

fn done(as_json: bool, message: &str) {
    if as_json {
        println!("{}", json!({"ok": true}));
    } else {
        println!("{message}");
    }
}

pub async fn run(client: &mut Client, cmd: IamCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        IamCommand::Tenant(TenantCommand::Create {
            name,
            admin,
            password_stdin,
        }) => {
            let password = read_secret("administrator password", password_stdin)?;
            call(client, |iam| {
                let (name, admin, password) = (name.clone(), admin.clone(), password.clone());
                async move {
                    let mut c = iam.create_tenant_request();
                    c.get().set_name(&name);
                    c.get().set_admin_name(&admin);
                    c.get().set_admin_password(&password);
                    c.send().promise.await?;
                    Ok(())
                }
            })
            .await?;
            done(
                as_json,
                &format!("created tenant {name} with administrator {admin}"),
            );
        }
        IamCommand::Tenant(TenantCommand::Ls) => {
            let tenants = call(client, |iam| async move {
                let reply = iam.list_tenants_request().send().promise.await?;
                text_list(reply.get()?.get_tenants()?)
            })
            .await?;
            let rows: Vec<Value> = tenants.iter().map(|t| json!({"name": t})).collect();
            print_rows(as_json, &rows, &["name"]);
        }
        IamCommand::Project(ProjectCommand::Create { name }) => {
            call(client, |iam| {
                let name = name.clone();
                async move {
                    let mut c = iam.create_project_request();
                    c.get().set_name(&name);
                    c.send().promise.await?;
                    Ok(())
                }
            })
            .await?;
            done(as_json, &format!("created project {name}"));
        }
        IamCommand::Project(ProjectCommand::Ls) => {
            let projects = call(client, |iam| async move {
                let reply = iam.list_projects_request().send().promise.await?;
                text_list(reply.get()?.get_projects()?)
            })
            .await?;
            let rows: Vec<Value> = projects.iter().map(|p| json!({"name": p})).collect();
            print_rows(as_json, &rows, &["name"]);
        }
        IamCommand::User(cmd) => user(client, cmd, as_json).await?,
        IamCommand::ServiceAccount(ServiceAccountCommand::Create { name }) => {
            let secret = call(client, |iam| {
                let name = name.clone();
                async move {
                    let mut c = iam.create_service_account_request();
                    c.get().set_name(&name);
                    let reply = c.send().promise.await?;
                    Ok(reply.get()?.get_secret()?.to_string()?)
                }
            })
            .await?;
            if as_json {
                println!("{}", json!({"name": name, "secret": secret}));
            } else {
                println!("created service account {name}; its secret (shown once):\n{secret}");
            }
        }
        IamCommand::ServiceAccount(ServiceAccountCommand::Rm { name }) => {
            delete_principal(client, &name).await?;
            done(as_json, &format!("deleted {name}"));
        }
        IamCommand::AccessKey(cmd) => access_key(client, cmd, as_json).await?,
        IamCommand::Role(cmd) => role(client, cmd, as_json).await?,
        IamCommand::Bind {
            principal,
            role,
            project,
        } => {
            let project = project_or_own(client, project).await?;
            binding_call(client, true, &principal, &project, &role).await?;
            done(
                as_json,
                &format!("bound {principal} to {role} in project {project}"),
            );
        }
        IamCommand::Unbind {
            principal,
            role,
            project,
        } => {
            let project = project_or_own(client, project).await?;
            binding_call(client, false, &principal, &project, &role).await?;
            done(
                as_json,
                &format!("unbound {principal} from {role} in project {project}"),
            );
        }
        IamCommand::Bindings { principal } => {
            let principal = principal.unwrap_or_default();
            let bindings: Vec<BindingInfo> = call(client, |iam| {
                let principal = principal.clone();
                async move {
                    let mut c = iam.list_bindings_request();
                    c.get().set_principal(&principal);
                    let reply = c.send().promise.await?;
                    reply
                        .get()?
                        .get_bindings()?
                        .iter()
                        .map(read_binding)
                        .collect()
                }
            })
            .await?;
            let rows: Vec<Value> = bindings
                .iter()
                .map(|b| json!({"principal": b.principal, "project": b.project, "role": b.role}))
                .collect();
            print_rows(as_json, &rows, &["principal", "project", "role"]);
        }
        IamCommand::RevokeToken { revoked } => {
            let token = match revoked {
                Some(t) => t,
                None => read_secret("token", true)?,
            };
            call(client, |iam| {
                let token = token.clone();
                async move {
                    let mut c = iam.revoke_token_request();
                    c.get().set_token(&token);
                    c.send().promise.await?;
                    Ok(())
                }
            })
            .await?;
            done(as_json, "revoked");
        }
        IamCommand::SignOut { principal } => {
            let principal = principal.unwrap_or_default();
            call(client, |iam| {
                let principal = principal.clone();
                async move {
                    let mut c = iam.sign_out_request();
                    c.get().set_principal(&principal);
                    c.send().promise.await?;
                    Ok(())
                }
            })
            .await?;
            done(as_json, "every token issued until now is refused");
        }
        IamCommand::SigningKey(SigningKeyCommand::Rotate) => {
            let id = call(client, |iam| async move {
                let reply = iam.rotate_signing_key_request().send().promise.await?;
                Ok(reply.get()?.get_key_id()?.to_string()?)
            })
            .await?;
            if as_json {
                println!("{}", json!({"key_id": id}));
            } else {
                println!("signing key {id} signs from now on");
            }
        }
        IamCommand::SigningKey(SigningKeyCommand::Ls) => {
            let keys =
                call(client, |iam| async move {
                    let reply = iam.list_signing_keys_request().send().promise.await?;
                    reply
                    .get()?
                    .get_keys()?
                    .iter()
                    .map(|k| {
                        Ok(json!({"id": k.get_id()?.to_string()?, "created_ms": k.get_created_ms(),
                                  "verify_until_ms": k.get_verify_until_ms(),
                                  "active": k.get_verify_until_ms() == 0}))
                    })
                    .collect::<capnp::Result<Vec<Value>>>()
                })
                .await?;
            // Tables show UTC times; JSON keeps the milliseconds.
            let rows: Vec<Value> = if as_json {
                keys
            } else {
                keys.into_iter()
                    .map(|mut k| {
                        let created = k["created_ms"].as_u64().unwrap_or(0);
                        k["created"] = json!(crate::ctl::utc_time(created));
                        k["verify_until"] = match k["verify_until_ms"].as_u64().unwrap_or(0) {
                            0 => json!("-"),
                            ms => json!(crate::ctl::utc_time(ms)),
                        };
                        k
                    })
                    .collect()
            };
            print_rows(as_json, &rows, &["id", "active", "created", "verify_until"]);
        }
    }
    Ok(())
}

async fn project_or_own(client: &mut Client, project: Option<String>) -> anyhow::Result<String> {
    match project {
        Some(p) => Ok(p),
        None => Ok(client.whoami().await?.project),
    }
}

async fn binding_call(
    client: &mut Client,
    bind: bool,
    principal: &str,
    project: &str,
    role: &str,
) -> anyhow::Result<()> {
    call(client, |iam| async move {
        if bind {
            let mut c = iam.bind_request();
            let mut b = c.get().init_binding();
            b.set_principal(principal);
            b.set_project(project);
            b.set_role(role);
            c.send().promise.await?;
        } else {
            let mut c = iam.unbind_request();
            let mut b = c.get().init_binding();
            b.set_principal(principal);
            b.set_project(project);
            b.set_role(role);
            c.send().promise.await?;
        }
        Ok(())
    })
    .await
}

async fn delete_principal(client: &mut Client, name: &str) -> anyhow::Result<()> {
    call(client, |iam| async move {
        let mut c = iam.delete_principal_request();
        c.get().set_name(name);
        c.send().promise.await?;
        Ok(())
    })
    .await
}

async fn user(client: &mut Client, cmd: UserCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            name,
            password_stdin,
        } => {
            let password = read_secret("password", password_stdin)?;
            call(client, |iam| {
                let (name, password) = (name.clone(), password.clone());
                async move {
                    let mut c = iam.create_user_request();
                    c.get().set_name(&name);
                    c.get().set_password(&password);
                    c.send().promise.await?;
                    Ok(())
                }
            })
            .await?;
            done(as_json, &format!("created user {name}"));
        }
        UserCommand::Ls => {
            let rows = call(client, |iam| async move {
                let reply = iam.list_principals_request().send().promise.await?;
                reply
                    .get()?
                    .get_principals()?
                    .iter()
                    .map(|p| {
                        Ok(json!({"name": p.get_name()?.to_string()?, "kind": p.get_kind()?.to_string()?,
                                  "cluster_admin": p.get_cluster_admin(), "created_ms": p.get_created_ms()}))
                    })
                    .collect::<capnp::Result<Vec<Value>>>()
            })
            .await?;
            print_rows(as_json, &rows, &["name", "kind", "cluster_admin"]);
        }
        UserCommand::Rm { name } => {
            delete_principal(client, &name).await?;
            done(as_json, &format!("deleted {name}"));
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let name = name.unwrap_or_default();
            let password = read_secret("new password", password_stdin)?;
            call(client, |iam| {
                let (name, password) = (name.clone(), password.clone());
                async move {
                    let mut c = iam.set_password_request();
                    c.get().set_name(&name);
                    c.get().set_password(&password);
                    c.send().promise.await?;
                    Ok(())
                }
            })
            .await?;
            done(
                as_json,
                "password changed; tokens issued before now are refused",
            );
        }
    }
    Ok(())
}

async fn access_key(
    client: &mut Client,
    cmd: AccessKeyCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    match cmd {
        AccessKeyCommand::Create { principal } => {
            let principal = principal.unwrap_or_default();
            let (id, secret) = call(client, |iam| {
                let principal = principal.clone();
                async move {
                    let mut c = iam.create_access_key_request();
                    c.get().set_principal(&principal);
                    let reply = c.send().promise.await?;
                    let r = reply.get()?;
                    Ok((r.get_id()?.to_string()?, r.get_secret()?.to_string()?))
                }
            })
            .await?;
            if as_json {
                println!(
                    "{}",
                    json!({"access_key_id": id, "secret_access_key": secret})
                );
            } else {
                println!("AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}");
            }
        }
        AccessKeyCommand::Ls { principal, all } => {
            let principal = if all {
                "*".to_owned()
            } else {
                principal.unwrap_or_default()
            };
            let rows = call(client, |iam| {
                let principal = principal.clone();
                async move {
                    let mut c = iam.list_access_keys_request();
                    c.get().set_principal(&principal);
                    let reply = c.send().promise.await?;
                    reply
                        .get()?
                        .get_keys()?
                        .iter()
                        .map(|k| {
                            Ok(json!({"id": k.get_id()?.to_string()?, "principal": k.get_principal()?.to_string()?,
                                      "project": k.get_project()?.to_string()?, "created_ms": k.get_created_ms()}))
                        })
                        .collect::<capnp::Result<Vec<Value>>>()
                }
            })
            .await?;
            print_rows(as_json, &rows, &["id", "principal", "project"]);
        }
        AccessKeyCommand::Rm { id } => {
            call(client, |iam| {
                let id = id.clone();
                async move {
                    let mut c = iam.delete_access_key_request();
                    c.get().set_id(&id);
                    c.send().promise.await?;
                    Ok(())
                }
            })
            .await?;
            done(as_json, &format!("deleted access key {id}"));
        }
    }
    Ok(())
}

async fn role(client: &mut Client, cmd: RoleCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        RoleCommand::Put { name, statements } => {
            let statements = match statements.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
                }
                None => statements,
            };
            call(client, |iam| {
                let (name, statements) = (name.clone(), statements.clone());
                async move {
                    let mut c = iam.put_role_request();
                    c.get().set_name(&name);
                    c.get().set_statements(&statements);
                    c.send().promise.await?;
                    Ok(())
                }
            })
            .await?;
            done(as_json, &format!("role {name} saved"));
        }
        RoleCommand::Rm { name } => {
            call(client, |iam| {
                let name = name.clone();
                async move {
                    let mut c = iam.delete_role_request();
                    c.get().set_name(&name);
                    c.send().promise.await?;
                    Ok(())
                }
            })
            .await?;
            done(as_json, &format!("role {name} deleted"));
        }
        RoleCommand::Ls => {
            let rows = call(client, |iam| async move {
                let reply = iam.list_roles_request().send().promise.await?;
                reply
                    .get()?
                    .get_roles()?
                    .iter()
                    .map(|r| {
                        let statements: Value = serde_json::from_str(r.get_statements()?.to_str()?)
                            .unwrap_or(Value::Null);
                        Ok(
                            json!({"name": r.get_name()?.to_string()?, "builtin": r.get_builtin(),
                                  "statements": statements}),
                        )
                    })
                    .collect::<capnp::Result<Vec<Value>>>()
            })
            .await?;
            print_rows(as_json, &rows, &["name", "builtin", "statements"]);
        }
    }
    Ok(())
}
