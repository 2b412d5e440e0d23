//! `photon ctl login`, `logout`, `whoami`, and the stored token every other
//! `photon ctl` command presents.
//!
//! The token lives in `$PHOTON_CONFIG_DIR/credentials.json`, else in the
//! user's config dir (`~/.config/photon/credentials.json`), mode 0600, with
//! the endpoints it was obtained from. `--token` / `PHOTON_TOKEN` override it.
//!
//! `login` forgets the stored token before it tries: a login that fails
//! leaves the user logged out, so no later command acts as whoever was
//! logged in before.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use photon_control::client::{Client, IdentityInfo};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ctl::output::Output;

/// What `photon ctl login` stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredToken {
    pub endpoints: Vec<SocketAddr>,
    pub token: String,
    pub tenant: String,
    pub principal: String,
    pub project: String,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
}

/// Where the token is stored.
pub fn credentials_path() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PHOTON_CONFIG_DIR") {
        return Ok(PathBuf::from(dir).join("credentials.json"));
    }
    let dir = dirs::config_dir().context("no config directory: set PHOTON_CONFIG_DIR or HOME")?;
    Ok(dir.join("photon").join("credentials.json"))
}

pub fn load() -> anyhow::Result<Option<StoredToken>> {
    let path = credentials_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("cannot parse {}", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `stored` (mode 0600, replaced atomically).
pub fn save(stored: &StoredToken) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = credentials_path()?;
    let dir = path.parent().context("credentials path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(serde_json::to_string_pretty(stored)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The dev administrator's credentials file in a node's data directory.
pub fn admin_credentials_path(data_dir: &Path) -> PathBuf {
    data_dir
        .join("control")
        .join(photon_control::iam_node::ADMIN_CREDENTIALS_FILE)
}

#[derive(Deserialize)]
struct AdminCredentials {
    tenant: String,
    principal: String,
    password: String,
}

/// Reads a secret: one line from stdin with `from_stdin`, else a prompt on
/// the terminal.
pub fn read_secret(prompt: &str, from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the {prompt} on: pass it with --password-stdin");
    }
    Ok(rpassword::prompt_password(format!("{prompt}: "))?)
}

pub struct LoginRequest {
    pub endpoints: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub project: String,
    pub password_stdin: bool,
    pub ttl_seconds: u32,
}

/// Removes the stored token, returning what it was.
fn forget() -> anyhow::Result<Option<StoredToken>> {
    forget_at(&credentials_path()?)
}

fn forget_at(path: &Path) -> anyhow::Result<Option<StoredToken>> {
    // A file that does not parse is removed too: a login replaces it anyway.
    let previous = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    match std::fs::remove_file(path) {
        Ok(()) => Ok(previous),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot remove {}: the previous login stays in place, not logging in",
                path.display()
            )
        }),
    }
}

/// Logs in and stores the token. The stored token is forgotten first, so a
/// failed login leaves the caller logged out, and the error says so.
pub async fn login(request: LoginRequest, out: Output) -> anyhow::Result<()> {
    let previous = forget()?;
    login_and_store(request, out).await.map_err(|e| match previous {
        Some(p) => anyhow::anyhow!(
            "{e:#}; you are logged out (the stored login as {}/{} was forgotten before this attempt)",
            p.tenant,
            p.principal
        ),
        None => e,
    })
}

/// What `login` reports.
#[derive(Serialize)]
struct LoggedIn {
    tenant: String,
    principal: String,
    project: String,
    expires_at_ms: u64,
    credentials: PathBuf,
}

/// The tenant, principal and password to log in with: `--user`'s, else
/// the dev administrator's from the data directory.
fn credentials(request: &LoginRequest) -> anyhow::Result<(String, String, String)> {
    Ok(match &request.user {
        Some(user) => {
            let tenant = request
                .tenant
                .clone()
                .context("--tenant is needed with --user")?;
            let password = read_secret("password", request.password_stdin)?;
            (tenant, user.clone(), password)
        }
        None => {
            let path = admin_credentials_path(&request.data_dir);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no --user given and no administrator credentials at {} (is `photon dev --data-dir {}` running here?)",
                    path.display(),
                    request.data_dir.display()
                )
            })?;
            let creds: AdminCredentials = toml::from_str(&text)
                .with_context(|| format!("cannot parse {}", path.display()))?;
            (creds.tenant, creds.principal, creds.password)
        }
    })
}

async fn login_and_store(request: LoginRequest, out: Output) -> anyhow::Result<()> {
    let (tenant, principal, password) = credentials(&request)?;
    let mut client = Client::new(request.endpoints.clone())?;
    let (token, expires_at_ms) = client
        .login(
            &tenant,
            &principal,
            &password,
            &request.project,
            request.ttl_seconds,
        )
        .await?;
    let project = if request.project.is_empty() {
        photon_iam::model::DEFAULT_PROJECT.to_owned()
    } else {
        request.project.clone()
    };
    let stored = StoredToken {
        endpoints: request.endpoints,
        token,
        tenant: tenant.clone(),
        principal: principal.clone(),
        project: project.clone(),
        issued_at_ms: photon_control::rpc::now_ms(),
        expires_at_ms,
    };
    let logged_in = LoggedIn {
        tenant,
        principal,
        project,
        expires_at_ms,
        credentials: save(&stored)?,
    };
    out.show(&logged_in, |l| {
        format!(
            "logged in as {} (tenant {}, project {}); token stored in {}",
            l.principal,
            l.tenant,
            l.project,
            l.credentials.display()
        )
    });
    Ok(())
}

/// The token for this command: `--token`/`PHOTON_TOKEN`, else the stored
/// one, refreshed when more than half its life is gone.
pub async fn token_for(
    explicit: Option<String>,
    endpoints: &[SocketAddr],
) -> anyhow::Result<String> {
    if let Some(token) = explicit {
        return Ok(token);
    }
    let Some(mut stored) = load()? else {
        bail!("not logged in: run `photon ctl login` (or pass --token / PHOTON_TOKEN)");
    };
    let now = photon_control::rpc::now_ms();
    if now >= stored.expires_at_ms {
        bail!("the stored token expired: run `photon ctl login` again");
    }
    let half_life = stored.expires_at_ms.saturating_sub(stored.issued_at_ms) / 2;
    if now > stored.issued_at_ms + half_life {
        let mut client = Client::with_token(endpoints.to_vec(), stored.token.clone())?;
        // 0: the cluster's default lifetime.
        if let Ok(refreshed) = client.refresh(0).await {
            stored.token = refreshed.token;
            stored.issued_at_ms = now;
            stored.expires_at_ms = refreshed.expires_at_ms;
            save(&stored)?;
        }
    }
    Ok(stored.token)
}

/// Endpoints to use when none were given and the data dir names none.
pub fn stored_endpoints() -> Option<Vec<SocketAddr>> {
    load().ok().flatten().map(|s| s.endpoints)
}

pub async fn whoami(client: &mut Client, out: Output) -> anyhow::Result<()> {
    let identity = client.whoami().await?;
    out.show(&identity, identity_text);
    Ok(())
}

fn identity_text(identity: &IdentityInfo) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "principal:     {} ({})",
        identity.principal, identity.kind
    );
    let _ = writeln!(text, "tenant:        {}", identity.tenant);
    let _ = writeln!(text, "project:       {}", identity.project);
    if identity.cluster_admin {
        let _ = writeln!(text, "cluster admin: yes");
    }
    let _ = writeln!(
        text,
        "token:         {} (expires in {} s)",
        identity.token_id,
        identity
            .expires_at_ms
            .saturating_sub(photon_control::rpc::now_ms())
            / 1000
    );
    for b in &identity.bindings {
        let _ = writeln!(text, "role:          {} in project {}", b.role, b.project);
    }
    text
}

/// Revokes the stored token and forgets it.
pub async fn logout(client: &mut Client, out: Output) -> anyhow::Result<()> {
    let Some(stored) = load()? else {
        out.done(
            json!({"logged_out": false, "revoked": false}),
            "not logged in",
        );
        return Ok(());
    };
    let revoked = client.revoke_token(&stored.token).await;
    std::fs::remove_file(credentials_path()?)?;
    match revoked {
        Ok(()) => out.done(
            json!({"logged_out": true, "revoked": true}),
            "logged out; the token is revoked",
        ),
        Err(e) => out.done(
            json!({"logged_out": true, "revoked": false, "reason": e.to_string()}),
            format!("logged out locally; the token could not be revoked: {e}"),
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forget_removes_the_stored_token_and_returns_it() {
        let dir = std::env::temp_dir().join(format!("photon-forget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials.json");
        let stored = StoredToken {
            endpoints: vec![SocketAddr::from(([127, 0, 0, 1], 9500))],
            token: "v4.public.x".into(),
            tenant: "acme".into(),
            principal: "alice".into(),
            project: "default".into(),
            issued_at_ms: 1,
            expires_at_ms: 2,
        };
        std::fs::write(&path, serde_json::to_string(&stored).unwrap()).unwrap();
        let previous = forget_at(&path).unwrap().expect("the stored token");
        assert_eq!(
            (previous.tenant.as_str(), previous.principal.as_str()),
            ("acme", "alice")
        );
        assert!(!path.exists());
        assert!(forget_at(&path).unwrap().is_none());
        std::fs::write(&path, "not json").unwrap();
        assert!(forget_at(&path).unwrap().is_none());
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
