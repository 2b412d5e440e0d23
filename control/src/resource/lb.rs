//! The load-balancer resources: FiberLB's VIP and backend records (`lb/...` in the KV, laid out in
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

use super::txn::{self, CommitError, Plan};
use crate::kv::KeyValue;
use crate::proposer::Proposer;
use crate::raft::KvStateMachine;

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
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

refusal!(LbWriteError {
            Self::VipExists(_)
            | Self::AddressTaken { .. }
            | Self::BackendExists { .. }
            | Self::BackendAddressTaken { .. } => AlreadyExists,
            Self::NoSuchVip(_) | Self::NoSuchBackend { .. } => NotFound,
            // Record-count limits: deleting one makes room.
            Self::HasBackends { .. } | Self::TooManyVips | Self::TooManyBackends(_) => FailedPrecondition,
            Self::Invalid(_) => InvalidArgument,
            Self::Commit(_) => Internal,
});

fn local(state: &KvStateMachine, key: &str) -> Option<KeyValue> {
    state.get_local(key.as_bytes())
}

fn scan(state: &KvStateMachine, prefix: &str) -> Vec<KeyValue> {
    state.scan_prefix_local(prefix.as_bytes())
}

/// VIP `name` of `tenant`/`project`, from this node's applied state.
pub fn get_vip(
    state: &KvStateMachine,
    tenant: &str,
    project: &str,
    name: &str,
) -> Option<(KeyValue, VipRecord)> {
    let kv = local(state, &vip_key(tenant, project, name))?;
    let record = VipRecord::from_json(&kv.value)?;
    Some((kv, record))
}

/// Every VIP of a project.
pub fn list_vips(state: &KvStateMachine, tenant: &str, project: &str) -> Vec<VipRecord> {
    scan(state, &vip_prefix(tenant, project))
        .iter()
        .filter_map(|kv| VipRecord::from_json(&kv.value))
        .collect()
}

/// Backend `name` of VIP `vip`.
pub fn get_backend(
    state: &KvStateMachine,
    tenant: &str,
    project: &str,
    vip: &str,
    name: &str,
) -> Option<(KeyValue, BackendRecord)> {
    let kv = local(state, &backend_key(tenant, project, vip, name))?;
    let record = BackendRecord::from_json(&kv.value)?;
    Some((kv, record))
}

/// Every backend of VIP `vip`.
pub fn list_backends(
    state: &KvStateMachine,
    tenant: &str,
    project: &str,
    vip: &str,
) -> Vec<BackendRecord> {
    scan(state, &backend_prefix(tenant, project, vip))
        .iter()
        .filter_map(|kv| BackendRecord::from_json(&kv.value))
        .collect()
}

/// Creates VIP `record` and claims its address, port and protocol, unless
/// the name or the address is taken or the cluster holds [`VIPS_MAX`] VIPs.
pub async fn insert_vip(proposer: &Proposer, record: &VipRecord) -> Result<(), LbWriteError> {
    let (key, value) = record.to_kv();
    let claim = record.address_key();
    let owner = record.owner();
    txn::update(proposer, "the cluster's VIPs", |state| {
        if local(state, &key).is_some() {
            return Err(LbWriteError::VipExists(record.name.clone()));
        }
        if let Some(held) = local(state, &claim) {
            return Err(address_taken(record, &held.value));
        }
        let all = scan(state, VIP_PREFIX);
        if all.len() >= VIPS_MAX {
            return Err(LbWriteError::TooManyVips);
        }
        let compares = vec![
            txn::absent(key.as_bytes()),
            txn::absent(claim.as_bytes()),
            txn::none_created_after(VIP_PREFIX.as_bytes(), txn::newest_creation(&all)),
        ];
        let ops = vec![
            txn::put(key.clone().into_bytes(), value.clone()),
            txn::put(claim.clone().into_bytes(), owner.clone().into_bytes()),
        ];
        Ok(Plan::write(compares, ops, ()))
    })
    .await
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

/// Changes VIP `name` with `change` (which may refuse), re-reading it when
/// it changed meanwhile; the name and the address stay.
pub async fn update_vip(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    name: &str,
    mut change: impl FnMut(&mut VipRecord) -> Result<(), LbWriteError>,
) -> Result<VipRecord, LbWriteError> {
    txn::update(proposer, &format!("vip {name}"), |state| {
        let (kv, mut record) = get_vip(state, tenant, project, name)
            .ok_or_else(|| LbWriteError::NoSuchVip(name.to_owned()))?;
        change(&mut record)?;
        let (key, value) = record.to_kv();
        debug_assert_eq!(kv.key, key.as_bytes());
        Ok(Plan::replace(&kv, value, record))
    })
    .await
}

/// Deletes VIP `record` (read as `kv`) and its address claim, unless it has
/// backends.
pub async fn remove_vip(
    proposer: &Proposer,
    kv: &KeyValue,
    record: &VipRecord,
) -> Result<(), LbWriteError> {
    let backends = backend_prefix(&record.tenant, &record.project, &record.name);
    let claim = record.address_key();
    let owner = record.owner();
    txn::update(proposer, &format!("vip {}", record.name), |state| {
        let same = local(state, &record.key())
            .is_some_and(|now| now.create_revision == kv.create_revision);
        if !same {
            return Err(LbWriteError::NoSuchVip(record.name.clone()));
        }
        let count = scan(state, &backends).len();
        if count > 0 {
            return Err(LbWriteError::HasBackends {
                vip: record.name.clone(),
                count,
            });
        }
        let mut compares = vec![txn::still_exists(kv), txn::none_under(backends.as_bytes())];
        let mut ops = vec![txn::delete(kv.key.clone())];
        // The claim goes with the VIP when it is the VIP's; a claim someone
        // else holds (after a repair by hand) stays theirs.
        if local(state, &claim).is_some_and(|c| c.value == owner.as_bytes()) {
            compares.push(txn::holds(claim.as_bytes(), owner.as_bytes()));
            ops.push(txn::delete(claim.clone().into_bytes()));
        }
        Ok(Plan::write(compares, ops, ()))
    })
    .await
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
    let what = format!("the backends of vip {}", record.vip);
    txn::update(proposer, &what, |state| {
        let vip_now = local(
            state,
            &vip_key(&record.tenant, &record.project, &record.vip),
        );
        if vip_now.is_none_or(|now| now.create_revision != vip_kv.create_revision) {
            return Err(LbWriteError::NoSuchVip(record.vip.clone()));
        }
        let existing = scan(state, &prefix);
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
            txn::still_exists(vip_kv),
            txn::absent(key.as_bytes()),
            txn::none_created_after(prefix.as_bytes(), txn::newest_creation(&existing)),
        ];
        let ops = vec![txn::put(key.clone().into_bytes(), value.clone())];
        Ok(Plan::write(compares, ops, ()))
    })
    .await
}

/// Changes backend `name` of VIP `vip` with `change`, re-reading it when it
/// changed meanwhile.
pub async fn update_backend(
    proposer: &Proposer,
    tenant: &str,
    project: &str,
    vip: &str,
    name: &str,
    mut change: impl FnMut(&mut BackendRecord),
) -> Result<BackendRecord, LbWriteError> {
    let what = format!("backend {name} of vip {vip}");
    txn::update(proposer, &what, |state| {
        let (kv, mut record) = get_backend(state, tenant, project, vip, name).ok_or_else(|| {
            LbWriteError::NoSuchBackend {
                vip: vip.to_owned(),
                name: name.to_owned(),
            }
        })?;
        change(&mut record);
        let (key, value) = record.to_kv();
        debug_assert_eq!(kv.key, key.as_bytes());
        Ok(Plan::replace(&kv, value, record))
    })
    .await
}

/// Deletes backend record `kv` unless it was deleted (or re-created) since.
pub async fn remove_backend(
    proposer: &Proposer,
    kv: &KeyValue,
    record: &BackendRecord,
) -> Result<(), LbWriteError> {
    let delete = txn::delete(kv.key.clone());
    if txn::commit(proposer, vec![txn::still_exists(kv)], vec![delete])
        .await
        .map_err(CommitError::from)?
    {
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
