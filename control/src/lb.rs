//! FiberLB's VIP and backend records (`lb/...` in the KV, laid out in
//! [`fiberlb::spec`]) written through Raft. Each write is one txn whose
//! compares keep the cluster's invariants under concurrent writers:
//!
//! * a VIP and the claim of its address, port and protocol are created
//!   together and deleted together, so no two VIPs share an address;
//! * a VIP is deleted only while it has no backends, and a backend is added
//!   only while its VIP exists, so no backend outlives its VIP;
//! * the count of VIPs ([`VIPS_MAX`], cluster-wide) and of backends per VIP
//!   ([`BACKENDS_PER_VIP_MAX`]) is taken, and the txn requires that nothing
//!   was created under the prefix since, so a limit never overshoots.

use std::sync::{Arc, Mutex};

use fiberlb::spec::{
    backend_key, backend_prefix, vip_key, vip_prefix, BackendRecord, StatsSnapshot, VipRecord,
    BACKENDS_PER_VIP_MAX, VIPS_MAX, VIP_PREFIX,
};

use crate::kv::{Compare, KeyValue, RequestOp};
use crate::records;
use crate::rpc::Proposer;

/// Txns a write tries when records it counted changed meanwhile (each try
/// re-reads them, so it fails with the precise reason when there is one).
pub const WRITE_ATTEMPTS_MAX: usize = 4;

/// What the load-balancer API needs besides the KV.
#[derive(Clone, Default)]
pub struct LbSettings {
    /// The latest counters of this node's FiberLB agent; `None` when the
    /// node runs none (the default). The agent replaces it as it reads its
    /// data plane.
    pub stats: Arc<Mutex<Option<StatsSnapshot>>>,
}

impl std::fmt::Debug for LbSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let agent = self.stats.lock().map(|s| s.is_some()).unwrap_or(false);
        f.debug_struct("LbSettings").field("agent", &agent).finish()
    }
}

/// Why a load-balancer write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LbWriteError {
    #[error("already exists: vip {0}")]
    VipExists(String),
    #[error("already exists: {endpoint} is taken by {holder}")]
    AddressTaken { endpoint: String, holder: String },
    #[error("not found: no vip {0}")]
    NoSuchVip(String),
    #[error("already exists: backend {name} of vip {vip}")]
    BackendExists { vip: String, name: String },
    #[error("already exists: vip {vip} has backend {name} at {address} already")]
    BackendAddressTaken {
        vip: String,
        name: String,
        address: String,
    },
    #[error("not found: no backend {name} in vip {vip}")]
    NoSuchBackend { vip: String, name: String },
    #[error(
        "failed precondition: vip {vip} has {count} backend{}; remove them first",
        if *.count == 1 { "" } else { "s" }
    )]
    HasBackends { vip: String, count: usize },
    #[error(
        "failed precondition: the cluster has {VIPS_MAX} VIPs, the most it holds (VIPS_MAX); delete one first"
    )]
    TooManyVips,
    #[error(
        "failed precondition: vip {0} has {BACKENDS_PER_VIP_MAX} backends, the most a VIP holds (BACKENDS_PER_VIP_MAX); remove one first"
    )]
    TooManyBackends(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

fn local(proposer: &Proposer, key: &str) -> Option<KeyValue> {
    proposer.state_machine.get_local(key.as_bytes())
}

fn scan(proposer: &Proposer, prefix: &str) -> Vec<KeyValue> {
    proposer.state_machine.scan_prefix_local(prefix.as_bytes())
}

/// VIP `name` of `tenant`/`project`, from this node's applied state.
pub fn get_vip(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    name: &str,
) -> Option<(KeyValue, VipRecord)> {
    let kv = local(proposer, &vip_key(tenant, project, name))?;
    let record = VipRecord::from_json(&kv.value)?;
    Some((kv, record))
}

/// Every VIP of a project.
pub fn list_vips(proposer: &Proposer, tenant: &str, project: &str) -> Vec<VipRecord> {
    scan(proposer, &vip_prefix(tenant, project))
        .iter()
        .filter_map(|kv| VipRecord::from_json(&kv.value))
        .collect()
}

/// Backend `name` of VIP `vip`.
pub fn get_backend(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    vip: &str,
    name: &str,
) -> Option<(KeyValue, BackendRecord)> {
    let kv = local(proposer, &backend_key(tenant, project, vip, name))?;
    let record = BackendRecord::from_json(&kv.value)?;
    Some((kv, record))
}

/// Every backend of VIP `vip`.
pub fn list_backends(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    vip: &str,
) -> Vec<BackendRecord> {
    scan(proposer, &backend_prefix(tenant, project, vip))
        .iter()
        .filter_map(|kv| BackendRecord::from_json(&kv.value))
        .collect()
}

async fn commit(
    proposer: &Proposer,
    compares: Vec<Compare>,
    ops: Vec<RequestOp>,
) -> Result<bool, LbWriteError> {
    records::guarded_all(proposer, compares, ops)
        .await
        .map_err(LbWriteError::Unavailable)
}

fn changed_meanwhile(what: &str) -> LbWriteError {
    LbWriteError::Unavailable(format!(
        "{what} changed {WRITE_ATTEMPTS_MAX} times while this write tried to commit; retry"
    ))
}

/// Creates VIP `record` and claims its address, port and protocol, unless
/// the name or the address is taken or the cluster holds [`VIPS_MAX`] VIPs.
pub async fn insert_vip(proposer: &Proposer, record: &VipRecord) -> Result<(), LbWriteError> {
    let (key, value) = record.to_kv();
    let claim = record.address_key();
    let owner = record.owner();
    for _ in 0..WRITE_ATTEMPTS_MAX {
        if local(proposer, &key).is_some() {
            return Err(LbWriteError::VipExists(record.name.clone()));
        }
        if let Some(held) = local(proposer, &claim) {
            return Err(address_taken(record, &held.value));
        }
        let all = scan(proposer, VIP_PREFIX);
        if all.len() >= VIPS_MAX {
            return Err(LbWriteError::TooManyVips);
        }
        let compares = vec![
            records::absent(key.as_bytes()),
            records::absent(claim.as_bytes()),
            records::none_created_after(VIP_PREFIX.as_bytes(), records::newest_creation(&all)),
        ];
        let ops = vec![
            records::put(key.clone().into_bytes(), value.clone()),
            records::put(claim.clone().into_bytes(), owner.clone().into_bytes()),
        ];
        if commit(proposer, compares, ops).await? {
            return Ok(());
        }
    }
    Err(changed_meanwhile("the cluster's VIPs"))
}

/// Names the holder of a claimed address only to its own project: other
/// tenants learn that the address is taken, not by whom.
fn address_taken(record: &VipRecord, holder: &[u8]) -> LbWriteError {
    let holder = String::from_utf8_lossy(holder);
    let own = format!("{}/{}/", record.tenant, record.project);
    let holder = match holder.strip_prefix(&own) {
        Some(name) => format!("vip {name}"),
        None => "a VIP of another project (addresses are unique in the whole cluster)".to_owned(),
    };
    LbWriteError::AddressTaken {
        endpoint: record.endpoint(),
        holder,
    }
}

/// Replaces VIP record `kv` with `record` (same name and address) unless it
/// changed since it was read.
pub async fn update_vip(
    proposer: &Proposer,
    kv: &KeyValue,
    record: &VipRecord,
) -> Result<(), LbWriteError> {
    debug_assert_eq!(kv.key, record.key().into_bytes());
    let (key, value) = record.to_kv();
    let put = records::put(key.into_bytes(), value);
    if commit(proposer, vec![records::unchanged(kv)], vec![put]).await? {
        return Ok(());
    }
    match local(proposer, &record.key()) {
        None => Err(LbWriteError::NoSuchVip(record.name.clone())),
        Some(_) => Err(LbWriteError::Unavailable(format!(
            "vip {} changed meanwhile; retry",
            record.name
        ))),
    }
}

/// Deletes VIP record `kv` and its address claim, unless it has backends.
pub async fn remove_vip(
    proposer: &Proposer,
    kv: &KeyValue,
    record: &VipRecord,
) -> Result<(), LbWriteError> {
    let backends = backend_prefix(&record.tenant, &record.project, &record.name);
    let claim = record.address_key();
    let owner = record.owner();
    for _ in 0..WRITE_ATTEMPTS_MAX {
        let count = scan(proposer, &backends).len();
        if count > 0 {
            return Err(LbWriteError::HasBackends {
                vip: record.name.clone(),
                count,
            });
        }
        let mut compares = vec![
            records::still_exists(kv),
            records::none_under(backends.as_bytes()),
        ];
        let mut ops = vec![records::delete(kv.key.clone())];
        // The claim goes with the VIP when it is the VIP's; a claim someone
        // else holds (after a repair by hand) stays theirs.
        if local(proposer, &claim).is_some_and(|c| c.value == owner.as_bytes()) {
            compares.push(records::holds(claim.as_bytes(), owner.as_bytes()));
            ops.push(records::delete(claim.clone().into_bytes()));
        }
        if commit(proposer, compares, ops).await? {
            return Ok(());
        }
        let same = local(proposer, &record.key())
            .is_some_and(|now| now.create_revision == kv.create_revision);
        if !same {
            return Err(LbWriteError::NoSuchVip(record.name.clone()));
        }
    }
    Err(changed_meanwhile(&format!("vip {}", record.name)))
}

/// Adds backend `record` to the VIP read as `vip_kv`, unless the VIP is
/// gone, the name or the address is taken in the VIP, or the VIP holds
/// [`BACKENDS_PER_VIP_MAX`] backends.
pub async fn insert_backend(
    proposer: &Proposer,
    vip_kv: &KeyValue,
    record: &BackendRecord,
) -> Result<(), LbWriteError> {
    let (key, value) = record.to_kv();
    let prefix = backend_prefix(&record.tenant, &record.project, &record.vip);
    for _ in 0..WRITE_ATTEMPTS_MAX {
        let vip_now = local(
            proposer,
            &vip_key(&record.tenant, &record.project, &record.vip),
        );
        if vip_now.is_none_or(|now| now.create_revision != vip_kv.create_revision) {
            return Err(LbWriteError::NoSuchVip(record.vip.clone()));
        }
        let existing = scan(proposer, &prefix);
        if existing.iter().any(|kv| kv.key == key.as_bytes()) {
            return Err(LbWriteError::BackendExists {
                vip: record.vip.clone(),
                name: record.name.clone(),
            });
        }
        let same_address = existing
            .iter()
            .filter_map(|kv| BackendRecord::from_json(&kv.value))
            .find(|b| b.address == record.address);
        if let Some(other) = same_address {
            return Err(LbWriteError::BackendAddressTaken {
                vip: record.vip.clone(),
                name: other.name,
                address: other.address.to_string(),
            });
        }
        if existing.len() >= BACKENDS_PER_VIP_MAX {
            return Err(LbWriteError::TooManyBackends(record.vip.clone()));
        }
        let compares = vec![
            records::still_exists(vip_kv),
            records::absent(key.as_bytes()),
            records::none_created_after(prefix.as_bytes(), records::newest_creation(&existing)),
        ];
        let ops = vec![records::put(key.clone().into_bytes(), value.clone())];
        if commit(proposer, compares, ops).await? {
            return Ok(());
        }
    }
    Err(changed_meanwhile(&format!(
        "the backends of vip {}",
        record.vip
    )))
}

/// Replaces backend record `kv` with `record` unless it changed since.
pub async fn update_backend(
    proposer: &Proposer,
    kv: &KeyValue,
    record: &BackendRecord,
) -> Result<(), LbWriteError> {
    let (key, value) = record.to_kv();
    let put = records::put(key.into_bytes(), value);
    if commit(proposer, vec![records::unchanged(kv)], vec![put]).await? {
        return Ok(());
    }
    match local(proposer, &record.key()) {
        None => Err(no_such_backend(record)),
        Some(_) => Err(LbWriteError::Unavailable(format!(
            "backend {} of vip {} changed meanwhile; retry",
            record.name, record.vip
        ))),
    }
}

/// Deletes backend record `kv` unless it was deleted (or re-created) since.
pub async fn remove_backend(
    proposer: &Proposer,
    kv: &KeyValue,
    record: &BackendRecord,
) -> Result<(), LbWriteError> {
    let delete = records::delete(kv.key.clone());
    if commit(proposer, vec![records::still_exists(kv)], vec![delete]).await? {
        Ok(())
    } else {
        Err(no_such_backend(record))
    }
}

fn no_such_backend(record: &BackendRecord) -> LbWriteError {
    LbWriteError::NoSuchBackend {
        vip: record.vip.clone(),
        name: record.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_well() {
        let e = LbWriteError::HasBackends {
            vip: "web".into(),
            count: 3,
        };
        assert_eq!(
            e.to_string(),
            "failed precondition: vip web has 3 backends; remove them first"
        );
        let e = LbWriteError::HasBackends {
            vip: "web".into(),
            count: 1,
        };
        assert_eq!(
            e.to_string(),
            "failed precondition: vip web has 1 backend; remove them first"
        );
        assert!(LbWriteError::TooManyVips.to_string().contains("64 VIPs"));
    }

    #[test]
    fn only_the_owner_learns_who_holds_an_address() {
        let record = VipRecord {
            tenant: "acme".into(),
            project: "web".into(),
            name: "front".into(),
            address: "203.0.113.10".parse().unwrap(),
            port: 80,
            protocol: fiberlb::spec::Protocol::Tcp,
            health: Default::default(),
            created_ms: 0,
        };
        let mine = address_taken(&record, b"acme/web/old").to_string();
        assert_eq!(
            mine,
            "already exists: tcp 203.0.113.10:80 is taken by vip old"
        );
        let theirs = address_taken(&record, b"globex/default/secret").to_string();
        assert!(
            !theirs.contains("globex") && !theirs.contains("secret"),
            "{theirs}"
        );
        assert!(theirs.contains("another project"), "{theirs}");
        // A project whose name extends ours is another project.
        let other = address_taken(&record, b"acme/webshop/x").to_string();
        assert!(other.contains("another project"), "{other}");
    }
}
