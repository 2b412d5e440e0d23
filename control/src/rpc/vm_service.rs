//! The `Vms` API (`photon ctl vm`): virtual machines of the caller's project,
//! written through [`crate::resource::vm`]; what they do comes from this
//! node's agent ([`VmHost`]).

use crate::api_error::{ApiError, Code, Reply};
use std::rc::Rc as StdRc;
use std::sync::Arc;

use photon_iam::{Identity, Scope};
use photon_records::{
    check_guest_data, check_vm_name, check_vm_size, new_bucket_id, new_mac, DirectBoot, ImageState,
    Power, RestartPolicy, VmDisk, VmRecord, VolumeKind,
};
use photon_schema::vm_capnp::{console_input, console_output, vm as vm_reply, vms as api};

use super::convert::{invalid, refusal, text};
use super::session::Session;
use super::volume_service::VolumeService;
use super::{now_ms, Proposer};
use crate::resource::vm::{self, ConsoleChunk, VmHost, VmSettings, VmStatus, VmWriteError};

/// How much of the log `vm logs` returns unless asked, and at most.
const LOGS_TAIL_DEFAULT: u32 = 64 * 1024;
const LOGS_TAIL_MAX: u32 = 4 << 20;
/// How long `vm rm` waits for the agent to stop QEMU before it frees the
/// VM's volumes.
const DELETE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// Longest keystroke message a console takes.
const CONSOLE_INPUT_BYTES_MAX: usize = 4096;

pub struct VmService {
    proposer: Proposer,
    session: StdRc<Session>,
    settings: StdRc<VmSettings>,
    volumes: VolumeService,
}

impl VmService {
    pub fn new(
        proposer: Proposer,
        session: StdRc<Session>,
        settings: StdRc<VmSettings>,
        volumes: VolumeService,
    ) -> Self {
        Self {
            proposer,
            session,
            settings,
            volumes,
        }
    }

    /// The agent of this node, if VMs can run here.
    fn host(&self) -> Reply<&Arc<dyn VmHost>> {
        let host = self.settings.host.as_ref().ok_or_else(|| {
            ApiError::with_words(
                Code::FailedPrecondition,
                "this node runs no VMs (start it with the compute role)",
            )
        })?;
        if let Some(why) = host.unusable() {
            return Err(ApiError::with_words(Code::FailedPrecondition, why));
        }
        Ok(host)
    }

    /// [`Self::existing`] for what the node that runs a VM answers (its
    /// info, log and console): when this node's applied state says the VM
    /// runs here, that is the record the agent acts on, and it is used
    /// without a round to the leader (a follower that runs a VM answers
    /// for it); otherwise a linearizable read as usual.
    async fn existing_here(
        &self,
        action: &str,
        name: &str,
    ) -> Reply<(Arc<Identity>, crate::kv::KeyValue, VmRecord)> {
        check_vm_name(name).map_err(invalid)?;
        let identity = self
            .session
            .check(Scope::Project, action, &format!("vm/{name}"))?;
        let here = vm::get(
            &self.proposer.state_machine,
            identity.tenant(),
            identity.project(),
            name,
        )
        .filter(|(_, r)| r.node == self.settings.node);
        match here {
            Some((kv, record)) => Ok((identity, kv, record)),
            None => self.existing(action, name).await,
        }
    }

    /// The caller (allowed `action` on `vm/<name>`) and its VM `name`.
    async fn existing(
        &self,
        action: &str,
        name: &str,
    ) -> Reply<(Arc<Identity>, crate::kv::KeyValue, VmRecord)> {
        check_vm_name(name).map_err(invalid)?;
        let (identity, (kv, record)) = self
            .session
            .project_record(
                &self.proposer,
                action,
                &format!("vm/{name}"),
                |state, tenant, project| vm::get(state, tenant, project, name),
                || refusal(VmWriteError::NoSuchVm(name.to_owned())),
            )
            .await?;
        Ok((identity, kv, record))
    }

    /// What the agent sees of `record`.
    fn status(&self, record: &VmRecord) -> VmStatus {
        let local = record.node == self.settings.node;
        match self.settings.host.as_ref().filter(|_| local) {
            Some(host) => host.status(record.id).unwrap_or_else(|| VmStatus {
                state: "unknown".into(),
                detail: "the agent has not seen it yet".into(),
                ..VmStatus::default()
            }),
            None => VmStatus {
                state: "unknown".into(),
                detail: format!(
                    "runs on node {}{}; ask that node",
                    record.node,
                    self.node_address(record.node)
                ),
                ..VmStatus::default()
            },
        }
    }

    /// Changes VM `name` (the caller is allowed `action`) and answers it.
    async fn change(
        &self,
        action: &str,
        name: &str,
        change: impl Fn(&mut VmRecord) -> Result<(), VmWriteError>,
    ) -> Reply<VmRecord> {
        let (identity, _, _) = self.existing(action, name).await?;
        vm::modify(
            &self.proposer,
            identity.tenant(),
            identity.project(),
            name,
            |vm| {
                // Nothing else changes under a migration but its end.
                if let Some(m) = vm.migrating() {
                    return Err(VmWriteError::Precondition(format!(
                        "vm {} is migrating from node {} to node {}; wait until it is done",
                        vm.name, m.from, m.to
                    )));
                }
                change(vm)
            },
        )
        .await
        .map_err(refusal)
    }

    /// The disk for existing volume `name` (the caller may attach it); it
    /// must be a volume of this node, where the VM runs.
    async fn disk(&self, name: &str, read_only: bool) -> Reply<VmDisk> {
        let (_, _, record) = self.volumes.existing("volume:Attach", name).await?;
        if record.kind == VolumeKind::Snapshot && !read_only {
            return Err(invalid(format!(
                "{name} is a snapshot: attach it read-only, or clone it"
            )));
        }
        if record.node != self.settings.node {
            return Err(ApiError::with_words(
                Code::FailedPrecondition,
                format!(
                    "volume {name} is served by node {}; create the VM there",
                    record.node
                ),
            ));
        }
        Ok(VmDisk {
            volume: name.to_owned(),
            id: record.id,
            read_only,
            owned: false,
            slot: 0,
        })
    }

    /// The boot disk (a clone of the image's disk) and the direct boot of
    /// image `image`, for VM `vm`.
    async fn boot_from_image(&self, image: &str, vm: &str) -> Reply<(VmDisk, Option<DirectBoot>)> {
        check_vm_name(image).map_err(invalid)?;
        let identity =
            self.session
                .check(Scope::Project, "image:Get", &format!("image/{image}"))?;
        let (_, record) = vm::get_image(
            &self.proposer.state_machine,
            identity.tenant(),
            identity.project(),
            image,
        )
        .ok_or_else(|| refusal(VmWriteError::NoSuchImage(image.to_owned())))?;
        if record.state != ImageState::Ready {
            return Err(refusal(VmWriteError::Precondition(format!(
                "image {image} is still importing (finish it with `photon ctl image import`)"
            ))));
        }
        let boot_name = format!("{vm}.boot");
        self.session.check(
            Scope::Project,
            "volume:Create",
            &format!("volume/{boot_name}"),
        )?;
        let snapshot = format!("{}@image", record.disk.volume);
        let (_, _, source) = self.volumes.existing("volume:Clone", &snapshot).await?;
        let clone = self
            .volumes
            .derive(&source, boot_name.clone(), VolumeKind::Volume)
            .await?;
        let boot = record.kernel.as_ref().map(|kernel| DirectBoot {
            kernel_id: kernel.snapshot_id,
            kernel_bytes: kernel.bytes,
            initrd_id: record.initrd.as_ref().map_or(0, |i| i.snapshot_id),
            initrd_bytes: record.initrd.as_ref().map_or(0, |i| i.bytes),
            cmdline: record.cmdline.clone(),
        });
        let disk = VmDisk {
            volume: boot_name,
            id: clone.id,
            read_only: false,
            owned: true,
            slot: 0,
        };
        Ok((disk, boot))
    }

    /// Deletes volume `name` made for a VM (after a failed create or with
    /// the VM).
    async fn drop_owned(&self, identity: &Identity, name: &str) {
        let Some((kv, record)) = crate::resource::volume::get(
            &self.proposer.state_machine,
            identity.tenant(),
            identity.project(),
            name,
        ) else {
            return;
        };
        if let Err(e) = self.volumes.remove_volume(&kv, &record).await {
            tracing::warn!(volume = name, error = %e.message, "the VM's volume was not removed");
        }
    }

    async fn create_vm(
        &self,
        p: photon_schema::vm_capnp::vm_create::Reader<'_>,
    ) -> Reply<VmRecord> {
        let name = text(p.get_name()?)?;
        check_vm_name(&name).map_err(invalid)?;
        let (cpus, memory_mib) = (p.get_cpus(), p.get_memory_mib());
        check_vm_size(cpus, memory_mib).map_err(invalid)?;
        let user_data = Some(text(p.get_user_data()?)?).filter(|d| !d.is_empty());
        let ssh_keys = p
            .get_ssh_keys()?
            .iter()
            .map(|k| text(k?))
            .collect::<Reply<Vec<String>>>()?;
        check_guest_data(user_data.as_deref(), &ssh_keys).map_err(invalid)?;
        let restart = match text(p.get_restart()?)?.as_str() {
            "" => RestartPolicy::OnFailure,
            other => RestartPolicy::parse(other).ok_or_else(|| {
                invalid(format!(
                    "restart policy {other:?} is not always, on-failure or never"
                ))
            })?,
        };
        let (image, volume) = (text(p.get_image()?)?, text(p.get_volume()?)?);
        if image.is_empty() == volume.is_empty() {
            return Err(invalid("give exactly one of an image and a boot volume"));
        }
        let identity = self
            .session
            .check(Scope::Project, "vm:Create", &format!("vm/{name}"))?;
        let node_mib = self.host()?.memory_mib();
        if node_mib > 0 && u64::from(memory_mib) > node_mib {
            return Err(ApiError::with_words(
                Code::ResourceExhausted,
                format!("{memory_mib} MiB of memory is more than this node has ({node_mib} MiB)"),
            ));
        }
        self.proposer.linearizable().await?;
        let state = &self.proposer.state_machine;
        if vm::get(state, identity.tenant(), identity.project(), &name).is_some() {
            return Err(refusal(VmWriteError::VmExists(name)));
        }
        let mut disks = Vec::new();
        let mut boot = None;
        for (slot, extra) in (1..).zip(p.get_extra_volumes()?.iter()) {
            let mut disk = self.disk(&text(extra?)?, false).await?;
            disk.slot = slot;
            disks.push(disk);
        }
        if disks.len() >= photon_records::VM_DISKS_MAX {
            return Err(invalid(format!(
                "a VM has at most {} disks",
                photon_records::VM_DISKS_MAX
            )));
        }
        if image.is_empty() {
            disks.insert(0, self.disk(&volume, false).await?);
        } else {
            let (disk, direct) = self.boot_from_image(&image, &name).await?;
            disks.insert(0, disk);
            boot = direct;
        }
        let record = VmRecord {
            name,
            id: new_bucket_id(),
            tenant: identity.tenant().to_owned(),
            project: identity.project().to_owned(),
            owner: identity.principal().to_owned(),
            node: self.settings.node,
            cpus,
            memory_mib,
            image: (!image.is_empty()).then_some(image),
            boot,
            disks,
            mac: new_mac(),
            user_data,
            ssh_keys,
            power: if p.get_start() {
                Power::Running
            } else {
                Power::Stopped
            },
            force_stop: false,
            restart,
            reboots: 0,
            starts: u64::from(p.get_start()),
            created_ms: now_ms(),
            migration: None,
        };
        if let Err(e) = vm::insert(&self.proposer, &record).await {
            // No half-made VM: the clone made for it goes again.
            for disk in record.disks.iter().filter(|d| d.owned) {
                self.drop_owned(&identity, &disk.volume).await;
            }
            return Err(refusal(e));
        }
        Ok(record)
    }
}

fn write_vm(mut out: vm_reply::Builder<'_>, r: &VmRecord, status: &VmStatus) {
    out.set_name(&r.name);
    out.set_id(r.id);
    out.set_node(r.node);
    out.set_cpus(r.cpus);
    out.set_memory_mib(r.memory_mib);
    out.set_image(r.image.as_deref().unwrap_or(""));
    let mut disks = out.reborrow().init_disks(r.disks.len() as u32);
    for (i, d) in r.disks.iter().enumerate() {
        let mut disk = disks.reborrow().get(i as u32);
        disk.set_volume(&d.volume);
        disk.set_read_only(d.read_only);
        disk.set_owned(d.owned);
    }
    out.set_mac(&r.mac);
    out.set_power(match r.power {
        Power::Running => "running",
        Power::Stopped => "stopped",
    });
    out.set_restart(r.restart.as_str());
    out.set_created_ms(r.created_ms);
    out.set_state(&status.state);
    out.set_state_detail(&status.detail);
    out.set_accel(&status.accel);
    out.set_pid(status.pid);
    out.set_restarts(status.restarts);
    out.set_user_data(r.needs_seed());
    out.set_address(&status.address);
    out.set_migration(match &r.migration {
        None => String::new(),
        Some(m) => match (&m.failed, &m.incoming) {
            (Some(why), _) => format!("failed (node {} to node {}): {why}", m.from, m.to),
            (None, None) => format!("to node {}: waiting for node {} to get ready", m.to, m.to),
            (None, Some(at)) => format!("to node {}: sending its state to {at}", m.to),
        },
    });
}

impl api::Server for VmService {
    async fn list(
        self: capnp::capability::Rc<Self>,
        _params: api::ListParams,
        mut results: api::ListResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.session.check(Scope::Project, "vm:List", "vm")?;
            self.proposer.linearizable().await?;
            let mut all = vm::list(
                &self.proposer.state_machine,
                identity.tenant(),
                identity.project(),
            );
            all.sort_by(|a, b| a.1.name.cmp(&b.1.name));
            let mut list = results.get().init_vms(all.len() as u32);
            for (i, (_, record)) in all.iter().enumerate() {
                write_vm(list.reborrow().get(i as u32), record, &self.status(record));
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
            let record = self.create_vm(params.get()?.get_vm()?).await?;
            write_vm(results.get().init_vm(), &record, &self.status(&record));
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
            let (_, _, record) = self.existing_here("vm:Get", &name).await?;
            write_vm(results.get().init_vm(), &record, &self.status(&record));
            Ok(())
        })
    }

    async fn start(
        self: capnp::capability::Rc<Self>,
        params: api::StartParams,
        mut results: api::StartResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            self.host()?;
            let record = self
                .change("vm:Start", &name, |vm| {
                    vm.power = Power::Running;
                    vm.force_stop = false;
                    vm.starts += 1;
                    Ok(())
                })
                .await?;
            write_vm(results.get().init_vm(), &record, &self.status(&record));
            Ok(())
        })
    }

    async fn stop(
        self: capnp::capability::Rc<Self>,
        params: api::StopParams,
        mut results: api::StopResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let (name, force) = (text(p.get_name()?)?, p.get_force());
            let record = self
                .change("vm:Stop", &name, |vm| {
                    vm.power = Power::Stopped;
                    // A forced stop stays forced until the VM starts again.
                    vm.force_stop |= force;
                    Ok(())
                })
                .await?;
            write_vm(results.get().init_vm(), &record, &self.status(&record));
            Ok(())
        })
    }

    async fn reboot(
        self: capnp::capability::Rc<Self>,
        params: api::RebootParams,
        mut results: api::RebootResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            let record = self
                .change("vm:Reboot", &name, |vm| {
                    if vm.power != Power::Running {
                        return Err(VmWriteError::Precondition(format!(
                            "vm {} is stopped; start it",
                            vm.name
                        )));
                    }
                    vm.reboots += 1;
                    Ok(())
                })
                .await?;
            write_vm(results.get().init_vm(), &record, &self.status(&record));
            Ok(())
        })
    }

    async fn delete(
        self: capnp::capability::Rc<Self>,
        params: api::DeleteParams,
        mut results: api::DeleteResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let (name, keep) = (text(p.get_name()?)?, p.get_keep_volumes());
            let (identity, kv, record) = self.existing("vm:Delete", &name).await?;
            vm::remove(&self.proposer, &kv, &name)
                .await
                .map_err(refusal)?;
            if keep || !record.disks.iter().any(|d| d.owned) {
                return Ok(());
            }
            // The agent stops QEMU when the record goes; its volumes are
            // freed once it did (or after DELETE_WAIT, when the NBD
            // connection fails under it).
            if record.node == self.settings.node {
                if let Some(host) = &self.settings.host {
                    let deadline = tokio::time::Instant::now() + DELETE_WAIT;
                    while host.status(record.id).is_some() && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
            for disk in record.disks.iter().filter(|d| d.owned) {
                self.drop_owned(&identity, &disk.volume).await;
            }
            Ok(())
        })
    }

    async fn logs(
        self: capnp::capability::Rc<Self>,
        params: api::LogsParams,
        mut results: api::LogsResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let name = text(p.get_name()?)?;
            let tail = match p.get_tail_bytes() {
                0 => LOGS_TAIL_DEFAULT,
                t => t.min(LOGS_TAIL_MAX),
            };
            let (_, _, record) = self.existing_here("vm:GetLogs", &name).await?;
            let host = self.local_host(&record)?;
            let data = host
                .logs(record.id, tail as usize)
                .map_err(|e| ApiError::with_words(Code::Unavailable, e))?;
            results.get().set_data(&data);
            Ok(())
        })
    }

    async fn console(
        self: capnp::capability::Rc<Self>,
        params: api::ConsoleParams,
        mut results: api::ConsoleResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let name = text(p.get_name()?)?;
            let output = p.get_output()?;
            let (_, _, record) = self.existing_here("vm:Console", &name).await?;
            let host = self.local_host(&record)?;
            let stream = host
                .console(record.id)
                .map_err(|e| ApiError::with_words(Code::FailedPrecondition, e))?;
            tokio::task::spawn_local(pump_console(stream.output, output));
            results
                .get()
                .set_input(capnp_rpc::new_client(ConsoleInputService {
                    to_vm: stream.input,
                }));
            Ok(())
        })
    }

    async fn attach_volume(
        self: capnp::capability::Rc<Self>,
        params: api::AttachVolumeParams,
        mut results: api::AttachVolumeResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let (name, volume) = (text(p.get_name()?)?, text(p.get_volume()?)?);
            self.existing("vm:AttachVolume", &name).await?;
            let disk = self.disk(&volume, p.get_read_only()).await?;
            let record = self
                .change("vm:AttachVolume", &name, |vm| {
                    if vm.disks.iter().any(|d| d.id == disk.id) {
                        return Err(VmWriteError::Precondition(format!(
                            "volume {} is a disk of vm {} already",
                            disk.volume, vm.name
                        )));
                    }
                    if vm.disks.len() >= photon_records::VM_DISKS_MAX {
                        return Err(VmWriteError::Invalid(format!(
                            "a VM has at most {} disks",
                            photon_records::VM_DISKS_MAX
                        )));
                    }
                    // A running VM's agent hot-plugs it on this port.
                    let slot = vm.free_slot().ok_or_else(|| {
                        VmWriteError::Invalid(format!(
                            "a VM has at most {} disks",
                            photon_records::VM_DISKS_MAX
                        ))
                    })?;
                    vm.disks.push(VmDisk {
                        slot,
                        ..disk.clone()
                    });
                    Ok(())
                })
                .await?;
            write_vm(results.get().init_vm(), &record, &self.status(&record));
            Ok(())
        })
    }

    async fn detach_volume(
        self: capnp::capability::Rc<Self>,
        params: api::DetachVolumeParams,
        mut results: api::DetachVolumeResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let (name, volume) = (text(p.get_name()?)?, text(p.get_volume()?)?);
            let record = self
                .change("vm:DetachVolume", &name, |vm| {
                    let at = vm
                        .disks
                        .iter()
                        .position(|d| d.volume == volume)
                        .ok_or_else(|| {
                            VmWriteError::Precondition(format!(
                                "volume {volume} is not a disk of vm {}",
                                vm.name
                            ))
                        })?;
                    if at == 0 {
                        return Err(VmWriteError::Precondition(format!(
                            "volume {volume} is the boot disk of vm {}",
                            vm.name
                        )));
                    }
                    vm.disks.remove(at);
                    Ok(())
                })
                .await?;
            write_vm(results.get().init_vm(), &record, &self.status(&record));
            Ok(())
        })
    }

    async fn migrate(
        self: capnp::capability::Rc<Self>,
        params: api::MigrateParams,
        mut results: api::MigrateResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let (name, to) = (text(p.get_name()?)?, p.get_to_node());
            let (_, _, current) = self.existing("vm:Migrate", &name).await?;
            let target =
                crate::resource::node::get(&self.proposer.state_machine, to).ok_or_else(|| {
                    ApiError::not_found(format!(
                        "node {to} is not in the node registry (photon ctl node ls)"
                    ))
                })?;
            let precondition = |why: String| ApiError::with_words(Code::FailedPrecondition, why);
            if !target.has_role("compute") {
                return Err(precondition(format!(
                    "node {to} does not run VMs (no compute role)"
                )));
            }
            let state = target.state(now_ms(), self.settings.liveness);
            if state != photon_records::NodeState::Up {
                return Err(precondition(format!("node {to} is {}", state.as_str())));
            }
            if target.memory_mib > 0 && u64::from(current.memory_mib) > target.memory_mib {
                return Err(ApiError::with_words(
                    Code::ResourceExhausted,
                    format!(
                        "vm {name} has {} MiB of memory, more than node {to} has ({} MiB)",
                        current.memory_mib, target.memory_mib
                    ),
                ));
            }
            let record = self
                .change("vm:Migrate", &name, |vm| {
                    if vm.node == to {
                        return Err(VmWriteError::Precondition(format!(
                            "vm {} runs on node {to} already",
                            vm.name
                        )));
                    }
                    if vm.power != Power::Running {
                        return Err(VmWriteError::Precondition(format!(
                            "vm {} is stopped: live migration moves a running VM",
                            vm.name
                        )));
                    }
                    vm.migration = Some(photon_records::Migration {
                        id: new_bucket_id(),
                        from: vm.node,
                        to,
                        incoming: None,
                        failed: None,
                        started_ms: now_ms(),
                    });
                    Ok(())
                })
                .await?;
            write_vm(results.get().init_vm(), &record, &self.status(&record));
            Ok(())
        })
    }
}

impl VmService {
    /// The agent that runs `record`: this node's.
    fn local_host(&self, record: &VmRecord) -> Reply<&Arc<dyn VmHost>> {
        if record.node != self.settings.node {
            return Err(ApiError::with_words(
                Code::FailedPrecondition,
                format!(
                    "vm {} runs on node {}{}; ask that node",
                    record.name,
                    record.node,
                    self.node_address(record.node)
                ),
            ));
        }
        self.host()
    }

    /// " (at HOST:PORT)", the control endpoint of `node` in the registry,
    /// or "" when it is not registered.
    fn node_address(&self, node: u64) -> String {
        crate::resource::node::get(&self.proposer.state_machine, node)
            .and_then(|n| n.endpoint("control").map(|a| format!(" (at {a})")))
            .unwrap_or_default()
    }
}

/// Sends console output to the client until either side goes.
async fn pump_console(
    mut from_vm: tokio::sync::mpsc::Receiver<ConsoleChunk>,
    to_client: console_output::Client,
) {
    while let Some(chunk) = from_vm.recv().await {
        match chunk {
            ConsoleChunk::Data(data) => {
                let mut call = to_client.write_request();
                call.get().set_data(&data);
                if call.send().promise.await.is_err() {
                    return;
                }
            }
            ConsoleChunk::Closed(reason) => {
                let mut call = to_client.closed_request();
                call.get().set_reason(&reason);
                let _ = call.send().promise.await;
                return;
            }
        }
    }
}

struct ConsoleInputService {
    to_vm: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl console_input::Server for ConsoleInputService {
    async fn write(
        self: capnp::capability::Rc<Self>,
        params: console_input::WriteParams,
        mut results: console_input::WriteResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let data = params.get()?.get_data()?;
            if data.len() > CONSOLE_INPUT_BYTES_MAX {
                return Err(invalid(format!(
                    "send at most {CONSOLE_INPUT_BYTES_MAX} bytes at once"
                )));
            }
            self.to_vm.send(data.to_vec()).await.map_err(|_| {
                ApiError::with_words(Code::FailedPrecondition, "the console is closed")
            })
        })
    }
}
