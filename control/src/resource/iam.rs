//! The IAM kinds: tenants, projects, principals (users and service
//! accounts), roles, bindings, access keys, signing keys and token
//! revocations. Their record types, KV keys and name rules are
//! `photon_iam::model` and `photon_iam::records` (every node's verifier reads
//! them too); this module owns the reads from the applied state and the
//! guarded writes whose compares keep the model consistent: no duplicate
//! names, no binding to a principal, project or role that is gone, one
//! signing key at a time.

use photon_iam::model::{self, keys, Principal};
use photon_iam::records;
use photon_iam::seal::ClusterKey;
use photon_iam::token::KeyPair;

use super::txn::{self, Plan};
use super::CommitError;
use crate::kv::{Command, CommandResponse, KeyValue, PutRequest, RequestOp};
use crate::proposer::{ProposeError, Proposer};
use crate::raft::KvStateMachine;

/// How long a revocation record outlives the token it revokes (clock skew
/// between nodes).
pub const REVOCATION_SLACK_MS: u64 = 60_000;

/// Why an IAM write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamWriteError {
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("not found: {what} {name:?}")]
    NotFound { what: &'static str, name: String },
    #[error("already exists: {what} {name:?}")]
    Exists { what: &'static str, name: String },
    #[error("internal: damaged IAM record {0}")]
    Damaged(String),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

impl From<ProposeError> for IamWriteError {
    fn from(e: ProposeError) -> Self {
        Self::Commit(CommitError::Propose(e))
    }
}

refusal!(IamWriteError {
            Self::Invalid(_) => InvalidArgument,
            Self::NotFound { .. } => NotFound,
            Self::Exists { .. } => AlreadyExists,
            Self::Damaged(_) | Self::Commit(_) => Internal,
});

fn not_found(what: &'static str, name: &str) -> IamWriteError {
    IamWriteError::NotFound {
        what,
        name: name.to_owned(),
    }
}

fn exists(what: &'static str, name: &str) -> IamWriteError {
    IamWriteError::Exists {
        what,
        name: name.to_owned(),
    }
}

/// Checks a tenant, project, principal or role name.
pub fn check_name(what: &str, value: &str) -> Result<(), IamWriteError> {
    model::check_name(what, value).map_err(|e| IamWriteError::Invalid(e.to_string()))
}

fn record_op((key, value): records::Record) -> RequestOp {
    txn::put(key, value)
}

// ---- reads (from the applied state; callers read linearizably first) ----

/// The IAM record at `key`.
pub fn record<T: serde::de::DeserializeOwned>(
    state: &KvStateMachine,
    key: &str,
) -> Result<Option<(KeyValue, T)>, IamWriteError> {
    match state.get_local(key.as_bytes()) {
        None => Ok(None),
        Some(kv) => {
            let value = serde_json::from_slice(&kv.value)
                .map_err(|_| IamWriteError::Damaged(key.to_owned()))?;
            Ok(Some((kv, value)))
        }
    }
}

/// Every record under `prefix` (damaged ones are skipped).
pub fn all<T: serde::de::DeserializeOwned>(state: &KvStateMachine, prefix: &str) -> Vec<T> {
    state
        .scan_prefix_local(prefix.as_bytes())
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect()
}

/// The access keys of `tenant` held by `principal` (every principal's for `None`).
pub fn access_keys(
    state: &KvStateMachine,
    tenant: &str,
    principal: Option<&str>,
) -> Vec<model::AccessKey> {
    all::<model::AccessKey>(state, keys::ACCESS_KEYS)
        .into_iter()
        .filter(|k| k.tenant == tenant && principal.is_none_or(|p| k.principal == p))
        .collect()
}

// ---- writes ----

/// Runs a txn; `Ok(false)` when its compares failed.
async fn commit(
    proposer: &Proposer,
    compare: Vec<crate::kv::Compare>,
    success: Vec<RequestOp>,
) -> Result<bool, IamWriteError> {
    Ok(txn::commit(proposer, compare, success).await?)
}

/// Creates tenant `tenant` with its `default` project and `admin` as its
/// administrator (bound to `admin` on every project).
pub async fn create_tenant(
    proposer: &Proposer,
    admin: &Principal,
    now_ms: u64,
) -> Result<(), IamWriteError> {
    let tenant = &admin.tenant;
    let created = commit(
        proposer,
        vec![txn::absent(keys::tenant(tenant))],
        vec![
            record_op(records::tenant(tenant, now_ms)),
            record_op(records::project(tenant, model::DEFAULT_PROJECT, now_ms)),
            record_op(records::principal(admin)),
            record_op(records::binding(
                tenant,
                &admin.name,
                model::ALL_PROJECTS,
                "admin",
            )),
        ],
    )
    .await?;
    if !created {
        return Err(exists("tenant", tenant));
    }
    Ok(())
}

pub async fn create_project(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    now_ms: u64,
) -> Result<(), IamWriteError> {
    check_name("project", project)?;
    let created = commit(
        proposer,
        vec![txn::absent(keys::project(tenant, project))],
        vec![record_op(records::project(tenant, project, now_ms))],
    )
    .await?;
    if !created {
        return Err(exists("project", project));
    }
    Ok(())
}

/// Creates `principal` (its secret already hashed).
pub async fn create_principal(
    proposer: &Proposer,
    principal: &Principal,
) -> Result<(), IamWriteError> {
    let key = keys::principal(&principal.tenant, &principal.name);
    if !commit(
        proposer,
        vec![txn::absent(&key)],
        vec![record_op(records::principal(principal))],
    )
    .await?
    {
        return Err(exists("principal", &principal.name));
    }
    Ok(())
}

/// Changes principal `subject` of `tenant` with `change` (which may
/// refuse), re-reading it when it changed meanwhile.
pub async fn update_principal(
    proposer: &Proposer,
    tenant: &str,
    subject: &str,
    mut change: impl FnMut(&mut Principal) -> Result<(), IamWriteError>,
) -> Result<Principal, IamWriteError> {
    let key = keys::principal(tenant, subject);
    proposer.linearizable().await?;
    txn::update(proposer, &format!("principal {subject}"), |state| {
        let Some((kv, mut principal)) = record::<Principal>(state, &key)? else {
            return Err(not_found("principal", subject));
        };
        change(&mut principal)?;
        let (_, value) = records::principal(&principal);
        Ok(Plan::replace(&kv, value, principal))
    })
    .await
}

/// Deletes principal `subject` of `tenant` with its bindings and access keys.
pub async fn delete_principal(
    proposer: &Proposer,
    tenant: &str,
    subject: &str,
) -> Result<(), IamWriteError> {
    if tenant == model::SYSTEM_TENANT && subject == model::CLUSTER_ADMIN {
        return Err(IamWriteError::Invalid(
            "the cluster administrator cannot be deleted".into(),
        ));
    }
    proposer.linearizable().await?;
    let key = keys::principal(tenant, subject);
    let mut ops = vec![
        txn::delete(&key),
        txn::delete_prefix(keys::bindings_of_principal(tenant, subject)),
    ];
    ops.extend(
        access_keys(&proposer.state_machine, tenant, Some(subject))
            .iter()
            .map(|k| txn::delete(keys::access_key(&k.id))),
    );
    if !commit(proposer, vec![txn::present(&key)], ops).await? {
        return Err(not_found("principal", subject));
    }
    Ok(())
}

/// Makes `pair` the signing key: the key that signed until now verifies
/// until `verify_until_ms`, keys whose tokens all expired go.
pub async fn rotate_signing_key(
    proposer: &Proposer,
    cluster_key: &ClusterKey,
    pair: &KeyPair,
    now_ms: u64,
    verify_until_ms: u64,
) -> Result<(), IamWriteError> {
    proposer.linearizable().await?;
    txn::update(proposer, "the signing keys", |state| {
        let kvs = state.scan_prefix_local(keys::SIGNING_KEYS.as_bytes());
        // A rotation that raced this one added a key: plan again so only
        // one key is left signing.
        let mut compare = vec![txn::none_created_after(
            keys::SIGNING_KEYS,
            txn::newest_creation(&kvs),
        )];
        let mut ops = vec![record_op(records::signing_key(
            cluster_key,
            pair,
            now_ms,
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
                    verify_until_ms,
                ))),
                // Drop keys whose tokens have all expired.
                Some(until) if until <= now_ms => {
                    ops.push(txn::delete(keys::signing_key(&record.id)))
                }
                Some(_) => {}
            }
        }
        Ok::<_, IamWriteError>(Plan::write(compare, ops, ()))
    })
    .await
}

/// Refuses the token `jti` (valid until `expires_ms`) on every node: a
/// revocation record on a lease that outlives the token.
pub async fn revoke_token(
    proposer: &Proposer,
    jti: &str,
    expires_ms: u64,
    now_ms: u64,
) -> Result<(), IamWriteError> {
    let ttl_ms = expires_ms.saturating_sub(now_ms) + REVOCATION_SLACK_MS;
    let CommandResponse::LeaseGrant(lease) = proposer
        .propose(Command::LeaseGrant { id: 0, ttl_ms })
        .await?
    else {
        return Err(IamWriteError::Damaged("lease grant answer".into()));
    };
    let (key, value) = records::revocation(jti, expires_ms);
    proposer
        .propose(Command::Put(PutRequest {
            key: key.into_bytes(),
            value,
            lease: lease.id,
            ..Default::default()
        }))
        .await?;
    Ok(())
}

/// Stores an access key record of principal `subject`.
pub async fn create_access_key(
    proposer: &Proposer,
    record: records::Record,
    tenant: &str,
    subject: &str,
) -> Result<(), IamWriteError> {
    let principal_key = keys::principal(tenant, subject);
    if !commit(
        proposer,
        vec![txn::present(&principal_key), txn::absent(&record.0)],
        vec![record_op(record)],
    )
    .await?
    {
        return Err(not_found("principal", subject));
    }
    Ok(())
}

/// Deletes access key `id`, read as `kv`, unless it changed meanwhile.
pub async fn delete_access_key(
    proposer: &Proposer,
    id: &str,
    kv: &KeyValue,
) -> Result<(), IamWriteError> {
    let key = keys::access_key(id);
    if !commit(proposer, vec![txn::unchanged(kv)], vec![txn::delete(&key)]).await? {
        return Err(not_found("access key", id));
    }
    Ok(())
}

/// Creates or replaces a custom role (its statements already checked).
pub async fn put_role(proposer: &Proposer, role: &model::Role) -> Result<(), IamWriteError> {
    commit(proposer, Vec::new(), vec![record_op(records::role(role))]).await?;
    Ok(())
}

pub async fn delete_role(
    proposer: &Proposer,
    tenant: &str,
    role: &str,
) -> Result<(), IamWriteError> {
    let key = keys::role(tenant, role);
    if !commit(proposer, vec![txn::present(&key)], vec![txn::delete(&key)]).await? {
        return Err(not_found("role", role));
    }
    Ok(())
}

/// Binds `role` to `principal` on `project` (or every project); all three
/// must exist in `tenant` (built-in roles always do).
pub async fn bind(
    proposer: &Proposer,
    tenant: &str,
    binding: &model::Binding,
) -> Result<(), IamWriteError> {
    let model::Binding {
        principal,
        project,
        role,
        ..
    } = binding;
    let mut compare = vec![txn::present(keys::principal(tenant, principal))];
    if project != model::ALL_PROJECTS {
        compare.push(txn::present(keys::project(tenant, project)));
    }
    if !photon_iam::policy::BUILTIN_ROLES.contains(&role.as_str()) {
        compare.push(txn::present(keys::role(tenant, role)));
    }
    let op = record_op(records::binding(tenant, principal, project, role));
    if !commit(proposer, compare, vec![op]).await? {
        return Err(IamWriteError::Invalid(format!(
            "principal {principal:?}, project {project:?} and role {role:?} must all exist in your tenant"
        )));
    }
    Ok(())
}

pub async fn unbind(
    proposer: &Proposer,
    tenant: &str,
    binding: &model::Binding,
) -> Result<(), IamWriteError> {
    let model::Binding {
        principal,
        project,
        role,
        ..
    } = binding;
    let key = keys::binding(tenant, principal, project, role);
    if !commit(proposer, vec![txn::present(&key)], vec![txn::delete(&key)]).await? {
        return Err(not_found(
            "binding",
            &format!("{principal} {project} {role}"),
        ));
    }
    Ok(())
}
