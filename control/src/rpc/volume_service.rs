//! The `Volumes` API (`photon ctl volume`): CoronaFS volumes and snapshots
//! of the caller's project, written through [`crate::volumes`].

use crate::api_error::{ApiError, Code, Reply};
use std::rc::Rc as StdRc;

use photon_iam::{Identity, Scope};
use photon_records::{check_volume_name, new_bucket_id, VolumeKind, VolumeRecord};
use photon_schema::volumes_capnp::{volume_info, volumes as api};

use super::convert::{invalid, refusal, text};
use super::session::Session;
use super::{now_ms, Proposer};
use crate::resource::volume::{
    self, check_block_size, check_size, ShardOps, StoreOp, VolumeSettings, VolumeWriteError,
};

/// Attach tokens live this long unless asked otherwise.
/// Usage queries `list` sends to owner shards at once.
const USAGE_QUERIES_AT_ONCE: usize = 32;
pub const ATTACH_TTL_DEFAULT_S: u32 = 24 * 3600;
/// And at most this long.
pub const ATTACH_TTL_MAX_S: u32 = 30 * 24 * 3600;

pub struct VolumeService {
    proposer: Proposer,
    session: StdRc<Session>,
    settings: StdRc<VolumeSettings>,
}

impl VolumeService {
    pub fn new(
        proposer: Proposer,
        session: StdRc<Session>,
        settings: StdRc<VolumeSettings>,
    ) -> Self {
        Self {
            proposer,
            session,
            settings,
        }
    }

    fn ops(&self) -> Reply<&ShardOps> {
        self.settings.ops.as_ref().ok_or_else(|| {
            ApiError::with_words(
                Code::FailedPrecondition,
                "this node serves no volumes (start it with the storage role)",
            )
        })
    }

    /// Runs `op` on the owner shard of `record`, which must be on this node.
    async fn on_owner(&self, record: &VolumeRecord, op: StoreOp) -> Reply<u64> {
        if record.node != self.settings.node {
            return Err(ApiError::with_words(
                Code::FailedPrecondition,
                format!(
                    "volume {} is served by node {}; ask that node",
                    record.name, record.node
                ),
            ));
        }
        let ops = self.ops()?;
        ops(record.shard, op).await.map_err(|e| {
            ApiError::new(Code::Unavailable, format!("unavailable: volume store: {e}"))
        })
    }

    /// The caller (allowed `action` on `name`) and its record of `name`.
    pub(crate) async fn existing(
        &self,
        action: &str,
        name: &str,
    ) -> Reply<(std::sync::Arc<Identity>, crate::kv::KeyValue, VolumeRecord)> {
        check_volume_name(name).map_err(invalid)?;
        let (identity, (kv, record)) = self
            .session
            .project_record(
                &self.proposer,
                action,
                &format!("volume/{name}"),
                |state, tenant, project| volume::get(state, tenant, project, name),
                || refusal(VolumeWriteError::NoSuchVolume(name.to_owned())),
            )
            .await?;
        Ok((identity, kv, record))
    }

    /// Copies `source`'s extent map into a new record `name` of `kind`.
    pub(crate) async fn derive(
        &self,
        source: &VolumeRecord,
        name: String,
        kind: VolumeKind,
    ) -> Reply<VolumeRecord> {
        if volume::get(
            &self.proposer.state_machine,
            &source.tenant,
            &source.project,
            &name,
        )
        .is_some()
        {
            return Err(refusal(VolumeWriteError::Exists(name)));
        }
        let record = VolumeRecord {
            name,
            id: new_bucket_id(),
            kind,
            parent: Some(source.name.clone()),
            created_ms: now_ms(),
            ..source.clone()
        };
        self.on_owner(
            source,
            StoreOp::Copy {
                from: source.id,
                to: record.id,
            },
        )
        .await?;
        if let Err(e) = volume::insert(&self.proposer, &record).await {
            // The copy is unnamed: give its extents back.
            let _ = self
                .on_owner(&record, StoreOp::Drop { id: record.id })
                .await;
            return Err(refusal(e));
        }
        Ok(record)
    }
}

impl VolumeService {
    /// Makes a new empty volume `name` on this node for `identity`'s
    /// project (the caller checked the name and the caller's rights).
    pub(crate) async fn create_volume(
        &self,
        identity: &Identity,
        name: String,
        size: u64,
        block_size: u32,
    ) -> Reply<VolumeRecord> {
        self.ops()?;
        let id = new_bucket_id();
        let record = VolumeRecord {
            name,
            id,
            tenant: identity.tenant().to_owned(),
            project: identity.project().to_owned(),
            kind: VolumeKind::Volume,
            size,
            block_size,
            parent: None,
            node: self.settings.node,
            shard: (id % u64::from(self.settings.shards.max(1))) as u32,
            created_ms: now_ms(),
        };
        volume::insert(&self.proposer, &record)
            .await
            .map_err(refusal)?;
        Ok(record)
    }

    /// Deletes the volume record read as `kv`, then frees the extents no
    /// snapshot or clone shares.
    pub(crate) async fn remove_volume(
        &self,
        kv: &crate::kv::KeyValue,
        record: &VolumeRecord,
    ) -> Reply<()> {
        self.ops()?;
        volume::remove(&self.proposer, kv, record)
            .await
            .map_err(refusal)?;
        // The record is gone, so nothing can attach. If this fails, the
        // shard drops the unnamed map when it next starts.
        if let Err(e) = self.on_owner(record, StoreOp::Drop { id: record.id }).await {
            tracing::warn!(volume = %record.name, error = %e, "volume data not dropped yet");
        }
        Ok(())
    }

    /// An attach URI for `record` (on this node), for `identity`.
    pub(crate) fn attach_uri(
        &self,
        identity: &Identity,
        record: &VolumeRecord,
        ttl_s: u32,
    ) -> Reply<(String, String, u64)> {
        if record.node != self.settings.node {
            return Err(ApiError::with_words(
                Code::FailedPrecondition,
                format!(
                    "volume {} is served by node {}; attach through that node",
                    record.name, record.node
                ),
            ));
        }
        let address = self
            .settings
            .nbd_address
            .lock()
            .ok()
            .and_then(|a| *a)
            .ok_or_else(|| {
                ApiError::with_words(Code::FailedPrecondition, "this node serves no NBD endpoint")
            })?;
        let (token, claims) = self
            .session
            .auth
            .directory
            .issue_attach_token(
                identity,
                &record.attach_resource(),
                now_ms(),
                u64::from(ttl_s) * 1000,
            )
            .map_err(ApiError::internal)?;
        Ok((format!("nbd://{address}/{token}"), token, claims.exp))
    }
}

/// Writes `r`; `allocated` is the data its extents hold, `None` when the
/// owner did not say.
fn write_info(mut info: volume_info::Builder<'_>, r: &VolumeRecord, allocated: Option<u64>) {
    info.set_name(&r.name);
    info.set_id(r.id);
    info.set_kind(match r.kind {
        VolumeKind::Volume => "volume",
        VolumeKind::Snapshot => "snapshot",
    });
    info.set_size(r.size);
    info.set_block_size(r.block_size);
    info.set_parent(r.parent.as_deref().unwrap_or(""));
    info.set_tenant(&r.tenant);
    info.set_project(&r.project);
    info.set_node(r.node);
    info.set_shard(r.shard);
    info.set_created_ms(r.created_ms);
    info.set_allocated_bytes(allocated.unwrap_or(0));
    info.set_allocated_known(allocated.is_some());
}

impl api::Server for VolumeService {
    async fn list(
        self: capnp::capability::Rc<Self>,
        _params: api::ListParams,
        mut results: api::ListResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self
                .session
                .check(Scope::Project, "volume:List", "volume")?;
            self.proposer.linearizable().await?;
            let mut all = volume::list(
                &self.proposer.state_machine,
                identity.tenant(),
                identity.project(),
            );
            all.sort_by(|a, b| a.name.cmp(&b.name));
            // Ask the owner shards for usage, a bounded number at once (their
            // mailboxes are bounded); a volume whose owner does not answer, or
            // that lives on another node, is listed with its usage unknown.
            use futures::StreamExt;
            let this = &self;
            let usage: Vec<Option<u64>> = futures::stream::iter(all.iter())
                .map(|record| async move {
                    this.on_owner(record, StoreOp::Usage { id: record.id })
                        .await
                        .ok()
                })
                .buffered(USAGE_QUERIES_AT_ONCE)
                .collect()
                .await;
            let mut list = results.get().init_volumes(all.len() as u32);
            for (i, (record, allocated)) in all.iter().zip(usage).enumerate() {
                write_info(list.reborrow().get(i as u32), record, allocated);
            }
            Ok(())
        })
    }

    async fn create(
        self: capnp::capability::Rc<Self>,
        params: api::CreateParams,
        mut results: api::CreateResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let name = text(p.get_name()?)?;
            let size = p.get_size();
            let block_size = match p.get_block_size() {
                0 => 4096,
                b => b,
            };
            check_volume_name(&name).map_err(invalid)?;
            if name.contains('@') {
                return Err(invalid(
                    "'@' names snapshots; create them with `volume snapshot`",
                ));
            }
            check_block_size(block_size).map_err(refusal)?;
            check_size(size, block_size).map_err(refusal)?;
            let identity =
                self.session
                    .check(Scope::Project, "volume:Create", &format!("volume/{name}"))?;
            let record = self
                .create_volume(&identity, name, size, block_size)
                .await?;
            write_info(results.get().init_volume(), &record, Some(0));
            Ok(())
        })
    }

    async fn info(
        self: capnp::capability::Rc<Self>,
        params: api::InfoParams,
        mut results: api::InfoResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            let (_, _, record) = self.existing("volume:Get", &name).await?;
            let allocated = self
                .on_owner(&record, StoreOp::Usage { id: record.id })
                .await?;
            write_info(results.get().init_volume(), &record, Some(allocated));
            Ok(())
        })
    }

    async fn resize(
        self: capnp::capability::Rc<Self>,
        params: api::ResizeParams,
        mut results: api::ResizeResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let name = text(p.get_name()?)?;
            let size = p.get_size();
            let (identity, _, _) = self.existing("volume:Resize", &name).await?;
            let record = volume::resize(
                &self.proposer,
                identity.tenant(),
                identity.project(),
                &name,
                size,
            )
            .await
            .map_err(refusal)?;
            write_info(results.get().init_volume(), &record, None);
            Ok(())
        })
    }

    async fn snapshot(
        self: capnp::capability::Rc<Self>,
        params: api::SnapshotParams,
        mut results: api::SnapshotResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let name = text(p.get_name()?)?;
            let snap = text(p.get_snapshot()?)?;
            let full = format!("{name}@{snap}");
            check_volume_name(&full).map_err(invalid)?;
            let (_, _, source) = self.existing("volume:Snapshot", &name).await?;
            if source.kind != VolumeKind::Volume {
                return Err(invalid(format!(
                    "{name} is a snapshot; snapshot its volume"
                )));
            }
            let record = self.derive(&source, full, VolumeKind::Snapshot).await?;
            write_info(results.get().init_volume(), &record, None);
            Ok(())
        })
    }

    async fn clone_snapshot(
        self: capnp::capability::Rc<Self>,
        params: api::CloneSnapshotParams,
        mut results: api::CloneSnapshotResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let snapshot = text(p.get_snapshot()?)?;
            let name = text(p.get_name()?)?;
            check_volume_name(&name).map_err(invalid)?;
            if name.contains('@') {
                return Err(invalid("a clone is a volume: its name has no '@'"));
            }
            self.session
                .check(Scope::Project, "volume:Create", &format!("volume/{name}"))?;
            let (_, _, source) = self.existing("volume:Clone", &snapshot).await?;
            if source.kind != VolumeKind::Snapshot {
                return Err(invalid(format!(
                    "{snapshot} is not a snapshot (clone from VOLUME@SNAPSHOT)"
                )));
            }
            let record = self.derive(&source, name, VolumeKind::Volume).await?;
            write_info(results.get().init_volume(), &record, None);
            Ok(())
        })
    }

    async fn delete(
        self: capnp::capability::Rc<Self>,
        params: api::DeleteParams,
        mut results: api::DeleteResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            let (identity, kv, record) = self.existing("volume:Delete", &name).await?;
            if let Some(user) = crate::resource::vm::volume_user(
                &self.proposer.state_machine,
                identity.tenant(),
                identity.project(),
                record.id,
            ) {
                return Err(ApiError::with_words(
                    Code::FailedPrecondition,
                    format!("volume {name} is in use by {user}"),
                ));
            }
            self.remove_volume(&kv, &record).await
        })
    }

    async fn attach(
        self: capnp::capability::Rc<Self>,
        params: api::AttachParams,
        mut results: api::AttachResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let name = text(p.get_name()?)?;
            let ttl_s = match p.get_ttl_seconds() {
                0 => ATTACH_TTL_DEFAULT_S,
                t if t > ATTACH_TTL_MAX_S => {
                    return Err(invalid(format!(
                        "an attach token lives at most {ATTACH_TTL_MAX_S} s"
                    )))
                }
                t => t,
            };
            let (identity, _, record) = self.existing("volume:Attach", &name).await?;
            let (uri, token, expires) = self.attach_uri(&identity, &record, ttl_s)?;
            let mut r = results.get();
            r.set_uri(&uri);
            r.set_token(&token);
            r.set_expires_at_ms(expires);
            Ok(())
        })
    }
}
