//! Builders for the KV records of [`crate::model`]: each returns the key and
//! the JSON value to write. The control plane's IAM service writes them
//! through Raft; tests and benchmarks feed them to a [`crate::Directory`].

use crate::directory::{access_key_purpose, signing_key_purpose};
use crate::model::{self, keys};
use crate::seal::ClusterKey;
use crate::token::KeyPair;

/// A KV record: key and value bytes.
pub type Record = (String, Vec<u8>);

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("IAM records serialize")
}

pub fn tenant(name: &str, now_ms: u64) -> Record {
    (
        keys::tenant(name),
        json(&model::Tenant {
            name: name.to_owned(),
            created_ms: now_ms,
        }),
    )
}

pub fn project(tenant: &str, name: &str, now_ms: u64) -> Record {
    (
        keys::project(tenant, name),
        json(&model::Project {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            created_ms: now_ms,
        }),
    )
}

/// A principal record around an already computed argon2id hash.
pub fn principal(principal: &model::Principal) -> Record {
    (
        keys::principal(&principal.tenant, &principal.name),
        json(principal),
    )
}

pub fn role(role: &model::Role) -> Record {
    (keys::role(&role.tenant, &role.name), json(role))
}

pub fn binding(tenant: &str, principal: &str, project: &str, role: &str) -> Record {
    (
        keys::binding(tenant, principal, project, role),
        json(&model::Binding {
            tenant: tenant.to_owned(),
            principal: principal.to_owned(),
            project: project.to_owned(),
            role: role.to_owned(),
        }),
    )
}

/// A new S3 access key record with `secret` sealed under `cluster_key`.
pub fn access_key(
    cluster_key: &ClusterKey,
    id: &str,
    secret: &str,
    tenant: &str,
    principal: &str,
    project: &str,
    now_ms: u64,
) -> Record {
    (
        keys::access_key(id),
        json(&model::AccessKey {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            principal: principal.to_owned(),
            project: project.to_owned(),
            sealed_secret: cluster_key.seal(&access_key_purpose(id), secret.as_bytes()),
            created_ms: now_ms,
        }),
    )
}

/// A signing key record, its secret sealed under `cluster_key`.
pub fn signing_key(
    cluster_key: &ClusterKey,
    pair: &KeyPair,
    now_ms: u64,
    verify_until_ms: Option<u64>,
) -> Record {
    (
        keys::signing_key(&pair.id),
        json(&model::SigningKey {
            id: pair.id.clone(),
            public: hex::encode(pair.public_bytes()),
            sealed_secret: cluster_key.seal(&signing_key_purpose(&pair.id), pair.secret_bytes()),
            created_ms: now_ms,
            verify_until_ms,
        }),
    )
}

/// The same signing key record, now retiring: it verifies until `until_ms`.
pub fn retire_signing_key(record: &model::SigningKey, until_ms: u64) -> Record {
    let mut record = record.clone();
    record.verify_until_ms = Some(until_ms);
    (keys::signing_key(&record.id), json(&record))
}

pub fn revocation(token_id: &str, expires_ms: u64) -> Record {
    (
        keys::revoked(token_id),
        json(&model::Revocation {
            token_id: token_id.to_owned(),
            expires_ms,
        }),
    )
}

pub fn cluster_key_check(cluster_key: &ClusterKey) -> Record {
    (
        keys::CLUSTER_KEY_CHECK.to_owned(),
        json(&model::ClusterKeyCheck {
            sealed: crate::seal::key_check(cluster_key),
        }),
    )
}
