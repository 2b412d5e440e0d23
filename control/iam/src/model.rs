//! The IAM model as it is stored in the replicated KV: one JSON value per
//! key under [`PREFIX`]. The control plane writes these records (through
//! Raft, guarded by transactions); every node rebuilds its
//! [`crate::Directory`] from them.
//!
//! Key layout (all under `iam/`):
//!
//! | key | value |
//! |---|---|
//! | `iam/tenant/<tenant>` | [`Tenant`] |
//! | `iam/project/<tenant>/<project>` | [`Project`] |
//! | `iam/principal/<tenant>/<name>` | [`Principal`] |
//! | `iam/role/<tenant>/<name>` | [`Role`] |
//! | `iam/binding/<tenant>/<principal>/<project>/<role>` | [`Binding`] |
//! | `iam/accesskey/<access key id>` | [`AccessKey`] |
//! | `iam/signingkey/<key id>` | [`SigningKey`] |
//! | `iam/revoked/<token id>` | [`Revocation`] (on a lease that ends with the token) |
//! | `iam/cluster-key-check` | [`ClusterKeyCheck`] |

use serde::{Deserialize, Serialize};

/// Every IAM key starts with this; the KV API refuses writes under it.
pub const PREFIX: &str = "iam/";

/// The tenant that holds the cluster administrator.
pub const SYSTEM_TENANT: &str = "system";

/// The cluster administrator's name in [`SYSTEM_TENANT`].
pub const CLUSTER_ADMIN: &str = "admin";

/// The project every tenant gets when it is created.
pub const DEFAULT_PROJECT: &str = "default";

/// A binding's project that means "every project of the tenant"; tenant-level
/// actions (users, roles, projects, other principals' keys) need a binding here.
pub const ALL_PROJECTS: &str = "*";

/// Longest tenant, project, principal or role name.
pub const NAME_BYTES_MAX: usize = 63;

/// Statements one role may hold.
pub const STATEMENTS_PER_ROLE_MAX: usize = 64;

/// Patterns one statement may list (actions and resources each).
pub const PATTERNS_PER_STATEMENT_MAX: usize = 64;

/// Longest action or resource pattern.
pub const PATTERN_BYTES_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub tenant: String,
    pub name: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person; logs in with a password.
    User,
    /// A program; logs in with a generated secret.
    ServiceAccount,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub tenant: String,
    pub name: String,
    pub kind: PrincipalKind,
    /// argon2id PHC string of the password or service-account secret.
    pub secret_hash: String,
    /// The cluster administrator: every action on every tenant.
    #[serde(default)]
    pub cluster_admin: bool,
    /// Tokens issued before this instant are refused ("sign out everywhere",
    /// password change).
    #[serde(default)]
    pub tokens_not_before_ms: u64,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

/// One policy statement: `effect` for any action matching one of `actions`
/// on any resource matching one of `resources`. Patterns use `*` (any run of
/// characters, `/` included) and `?` (one character).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub tenant: String,
    pub name: String,
    pub statements: Vec<Statement>,
}

/// `principal` holds `role` in `project` of `tenant` ([`ALL_PROJECTS`]: in
/// every project, and at tenant level).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Binding {
    pub tenant: String,
    pub principal: String,
    pub project: String,
    pub role: String,
}

/// An S3 access key: SigV4 needs the secret in clear, so it is stored sealed
/// with the cluster key (see [`crate::seal`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub id: String,
    pub tenant: String,
    pub principal: String,
    /// Requests signed with this key act in this project.
    pub project: String,
    /// Hex of the sealed secret.
    pub sealed_secret: String,
    pub created_ms: u64,
}

/// An Ed25519 token-signing key. The newest key that is not retiring signs;
/// every key verifies until `verify_until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    pub id: String,
    /// Hex of the 32-byte public key.
    pub public: String,
    /// Hex of the sealed 64-byte secret key.
    pub sealed_secret: String,
    pub created_ms: u64,
    /// Set when a newer key took over: tokens it signed verify until then.
    #[serde(default)]
    pub verify_until_ms: Option<u64>,
}

/// A revoked token, kept until the token would have expired anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub token_id: String,
    pub expires_ms: u64,
}

/// A known value sealed with the cluster key, so a node started with another
/// key finds out at once instead of failing on the first secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterKeyCheck {
    pub sealed: String,
}

/// Keys of the records above.
pub mod keys {
    pub const TENANTS: &str = "iam/tenant/";
    pub fn tenant(tenant: &str) -> String {
        format!("iam/tenant/{tenant}")
    }
    pub fn project(tenant: &str, project: &str) -> String {
        format!("iam/project/{tenant}/{project}")
    }
    pub fn projects_of(tenant: &str) -> String {
        format!("iam/project/{tenant}/")
    }
    pub fn principal(tenant: &str, name: &str) -> String {
        format!("iam/principal/{tenant}/{name}")
    }
    pub fn principals_of(tenant: &str) -> String {
        format!("iam/principal/{tenant}/")
    }
    pub fn role(tenant: &str, name: &str) -> String {
        format!("iam/role/{tenant}/{name}")
    }
    pub fn roles_of(tenant: &str) -> String {
        format!("iam/role/{tenant}/")
    }
    pub fn binding(tenant: &str, principal: &str, project: &str, role: &str) -> String {
        format!("iam/binding/{tenant}/{principal}/{project}/{role}")
    }
    pub fn bindings_of(tenant: &str) -> String {
        format!("iam/binding/{tenant}/")
    }
    pub fn bindings_of_principal(tenant: &str, principal: &str) -> String {
        format!("iam/binding/{tenant}/{principal}/")
    }
    pub const ACCESS_KEYS: &str = "iam/accesskey/";
    pub fn access_key(id: &str) -> String {
        format!("iam/accesskey/{id}")
    }
    pub fn signing_key(id: &str) -> String {
        format!("iam/signingkey/{id}")
    }
    pub const SIGNING_KEYS: &str = "iam/signingkey/";
    pub fn revoked(token_id: &str) -> String {
        format!("iam/revoked/{token_id}")
    }
    pub const CLUSTER_KEY_CHECK: &str = "iam/cluster-key-check";
}

/// Checks a tenant, project, principal or role name: 1..=63 bytes of
/// `[a-z0-9._-]`, starting with a letter or digit (so names are safe inside
/// keys, resource names and file names).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c);
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > NAME_BYTES_MAX {
        return Err(format!(
            "{what} name must be 1 to {NAME_BYTES_MAX} bytes long"
        ));
    }
    if !bytes[0].is_ascii_alphanumeric() || !bytes.iter().all(|&c| ok_char(c)) {
        return Err(format!(
            "{what} name {name:?} may only hold a-z, 0-9, '.', '_' and '-', and must start with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a role's statements against the named limits.
pub fn check_statements(statements: &[Statement]) -> Result<(), String> {
    if statements.len() > STATEMENTS_PER_ROLE_MAX {
        return Err(format!(
            "a role holds at most {STATEMENTS_PER_ROLE_MAX} statements"
        ));
    }
    for (i, statement) in statements.iter().enumerate() {
        for (what, patterns) in [
            ("actions", &statement.actions),
            ("resources", &statement.resources),
        ] {
            if patterns.is_empty() || patterns.len() > PATTERNS_PER_STATEMENT_MAX {
                return Err(format!(
                    "statement {i}: {what} must list 1 to {PATTERNS_PER_STATEMENT_MAX} patterns"
                ));
            }
            if let Some(p) = patterns
                .iter()
                .find(|p| p.is_empty() || p.len() > PATTERN_BYTES_MAX)
            {
                return Err(format!(
                    "statement {i}: pattern {p:?} must be 1 to {PATTERN_BYTES_MAX} bytes long"
                ));
            }
        }
    }
    Ok(())
}
