//! The `Images` API (`photon ctl image`): images of the caller's project.
//! An import is two calls around the importer's own writes: `create` makes
//! the image's volumes (disk, and kernel and initrd for direct boot) and
//! hands out attach URIs; the importer writes them (`qemu-img convert -n`);
//! `seal` snapshots each one (`<volume>@image`). VMs clone the disk's
//! snapshot, so an image never changes under them.

use crate::api_error::Reply;
use std::rc::Rc as StdRc;
use std::sync::Arc;

use photon_iam::{Identity, Scope};
use photon_records::{
    check_vm_name, new_bucket_id, ImagePart, ImageRecord, ImageState, VolumeKind, CMDLINE_BYTES_MAX,
};
use photon_schema::vm_capnp::{image, image_part, images as api};

use super::convert::{invalid, refusal, text};
use super::session::Session;
use super::volume_service::VolumeService;
use super::{now_ms, Proposer};
use crate::resource::vm::{self, VmWriteError};
use crate::resource::volume::VOLUME_BYTES_MAX;

/// Block size of image volumes; sizes round up to it.
const IMAGE_BLOCK_BYTES: u64 = 4096;
/// How long the importer's attach URIs live.
const IMPORT_TTL_S: u32 = 3600;
/// Largest kernel or initrd.
const BOOT_FILE_BYTES_MAX: u64 = 1 << 30;

pub struct ImageService {
    proposer: Proposer,
    session: StdRc<Session>,
    volumes: VolumeService,
}

impl ImageService {
    pub fn new(proposer: Proposer, session: StdRc<Session>, volumes: VolumeService) -> Self {
        Self {
            proposer,
            session,
            volumes,
        }
    }

    async fn existing(
        &self,
        action: &str,
        name: &str,
    ) -> Reply<(Arc<Identity>, crate::kv::KeyValue, ImageRecord)> {
        check_vm_name(name).map_err(invalid)?;
        let (identity, (kv, record)) = self
            .session
            .project_record(
                &self.proposer,
                action,
                &format!("image/{name}"),
                |state, tenant, project| vm::get_image(state, tenant, project, name),
                || refusal(VmWriteError::NoSuchImage(name.to_owned())),
            )
            .await?;
        Ok((identity, kv, record))
    }

    /// Makes the volume of one part (`<image>.<part>`) of `bytes`.
    async fn make_part(
        &self,
        identity: &Identity,
        image: &str,
        part: &str,
        bytes: u64,
    ) -> Reply<ImagePart> {
        let name = format!("{image}.{part}");
        self.session
            .check(Scope::Project, "volume:Create", &format!("volume/{name}"))?;
        let size = bytes.div_ceil(IMAGE_BLOCK_BYTES) * IMAGE_BLOCK_BYTES;
        let record = self
            .volumes
            .create_volume(identity, name, size, IMAGE_BLOCK_BYTES as u32)
            .await?;
        Ok(ImagePart {
            volume: record.name,
            volume_id: record.id,
            snapshot_id: 0,
            bytes,
        })
    }

    /// Removes the volume and the snapshot of `part`, where they exist.
    async fn drop_part(&self, identity: &Identity, part: &ImagePart) {
        for name in [format!("{}@image", part.volume), part.volume.clone()] {
            if let Some((kv, record)) = crate::resource::volume::get(
                &self.proposer.state_machine,
                identity.tenant(),
                identity.project(),
                &name,
            ) {
                if let Err(e) = self.volumes.remove_volume(&kv, &record).await {
                    tracing::warn!(volume = name, error = %e.message, "an image volume was not removed");
                }
            }
        }
    }

    async fn create_image(
        &self,
        p: api::CreateParams,
        identity: &Arc<Identity>,
    ) -> Reply<ImageRecord> {
        let p = p.get()?;
        let name = text(p.get_name()?)?;
        let (disk, kernel, initrd) = (
            p.get_disk_bytes(),
            p.get_kernel_bytes(),
            p.get_initrd_bytes(),
        );
        let cmdline = text(p.get_cmdline()?)?;
        let format = text(p.get_source_format()?)?;
        if !matches!(format.as_str(), "raw" | "qcow2") {
            return Err(invalid(format!("format {format:?} is not raw or qcow2")));
        }
        if disk == 0 || disk > VOLUME_BYTES_MAX {
            return Err(invalid(format!(
                "an image disk is 1 byte to {VOLUME_BYTES_MAX} bytes"
            )));
        }
        if kernel > BOOT_FILE_BYTES_MAX || initrd > BOOT_FILE_BYTES_MAX {
            return Err(invalid(format!(
                "a kernel or initrd is at most {BOOT_FILE_BYTES_MAX} bytes"
            )));
        }
        if kernel == 0 && (initrd != 0 || !cmdline.is_empty()) {
            return Err(invalid("an initrd or a kernel command line needs a kernel"));
        }
        if cmdline.len() > CMDLINE_BYTES_MAX || cmdline.chars().any(char::is_control) {
            return Err(invalid(format!(
                "the kernel command line is one line of at most {CMDLINE_BYTES_MAX} bytes"
            )));
        }
        self.proposer.linearizable().await?;
        let state = &self.proposer.state_machine;
        if vm::get_image(state, identity.tenant(), identity.project(), &name).is_some() {
            return Err(refusal(VmWriteError::ImageExists(name)));
        }
        let mut made = Vec::new();
        let parts = async {
            made.push(self.make_part(identity, &name, "disk", disk).await?);
            if kernel > 0 {
                made.push(self.make_part(identity, &name, "kernel", kernel).await?);
            }
            if initrd > 0 {
                made.push(self.make_part(identity, &name, "initrd", initrd).await?);
            }
            Reply::Ok(())
        }
        .await;
        let record = ImageRecord {
            name,
            id: new_bucket_id(),
            tenant: identity.tenant().to_owned(),
            project: identity.project().to_owned(),
            state: ImageState::Importing,
            source_format: format,
            disk: made.first().cloned().unwrap_or_else(|| ImagePart {
                volume: String::new(),
                volume_id: 0,
                snapshot_id: 0,
                bytes: 0,
            }),
            kernel: (kernel > 0).then(|| made.get(1).cloned()).flatten(),
            initrd: (initrd > 0)
                .then(|| made.get(if kernel > 0 { 2 } else { 1 }).cloned())
                .flatten(),
            cmdline,
            created_ms: now_ms(),
        };
        let inserted = match parts {
            Ok(()) => vm::insert_image(&self.proposer, &record)
                .await
                .map_err(refusal),
            Err(e) => Err(e),
        };
        if let Err(e) = inserted {
            for part in &made {
                self.drop_part(identity, part).await;
            }
            return Err(e);
        }
        Ok(record)
    }

    /// Snapshots every part of `record` not snapshotted yet.
    async fn seal_parts(&self, record: &mut ImageRecord) -> Reply<()> {
        let parts = [
            Some(&mut record.disk),
            record.kernel.as_mut(),
            record.initrd.as_mut(),
        ];
        for part in parts.into_iter().flatten() {
            if part.snapshot_id != 0 {
                continue;
            }
            let snapshot = format!("{}@image", part.volume);
            let existing = crate::resource::volume::get(
                &self.proposer.state_machine,
                &record.tenant,
                &record.project,
                &snapshot,
            );
            part.snapshot_id = match existing {
                Some((_, snap)) => snap.id,
                None => {
                    let (_, _, source) = self
                        .volumes
                        .existing("volume:Snapshot", &part.volume)
                        .await?;
                    self.volumes
                        .derive(&source, snapshot, VolumeKind::Snapshot)
                        .await?
                        .id
                }
            };
        }
        Ok(())
    }
}

fn write_part(mut out: image_part::Builder<'_>, part: Option<&ImagePart>, uri: &str) {
    if let Some(part) = part {
        out.set_volume(&part.volume);
        out.set_bytes(part.bytes);
        out.set_uri(uri);
    }
}

fn write_image(mut out: image::Builder<'_>, r: &ImageRecord, uris: &[String]) {
    let uri = |i: usize| uris.get(i).map_or("", String::as_str);
    out.set_name(&r.name);
    out.set_id(r.id);
    out.set_state(match r.state {
        ImageState::Importing => "importing",
        ImageState::Ready => "ready",
    });
    out.set_source_format(&r.source_format);
    write_part(out.reborrow().init_disk(), Some(&r.disk), uri(0));
    write_part(out.reborrow().init_kernel(), r.kernel.as_ref(), uri(1));
    write_part(out.reborrow().init_initrd(), r.initrd.as_ref(), uri(2));
    out.set_cmdline(&r.cmdline);
    out.set_created_ms(r.created_ms);
}

impl api::Server for ImageService {
    async fn list(
        self: capnp::capability::Rc<Self>,
        _params: api::ListParams,
        mut results: api::ListResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.session.check(Scope::Project, "image:List", "image")?;
            self.proposer.linearizable().await?;
            let mut all = vm::list_images(
                &self.proposer.state_machine,
                identity.tenant(),
                identity.project(),
            );
            all.sort_by(|a, b| a.name.cmp(&b.name));
            let mut list = results.get().init_images(all.len() as u32);
            for (i, record) in all.iter().enumerate() {
                write_image(list.reborrow().get(i as u32), record, &[]);
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
            let name = text(params.get()?.get_name()?)?;
            check_vm_name(&name).map_err(invalid)?;
            let identity =
                self.session
                    .check(Scope::Project, "image:Create", &format!("image/{name}"))?;
            let record = self.create_image(params, &identity).await?;
            // The order of the URIs follows the parts: disk, kernel, initrd.
            let mut uris = vec![String::new(); 3];
            for (slot, part) in [
                Some(&record.disk),
                record.kernel.as_ref(),
                record.initrd.as_ref(),
            ]
            .into_iter()
            .enumerate()
            {
                let Some(part) = part else { continue };
                let (_, volume) = crate::resource::volume::get(
                    &self.proposer.state_machine,
                    &record.tenant,
                    &record.project,
                    &part.volume,
                )
                .ok_or_else(|| refusal(VmWriteError::NoSuchImage(record.name.clone())))?;
                uris[slot] = self.volumes.attach_uri(&identity, &volume, IMPORT_TTL_S)?.0;
            }
            write_image(results.get().init_image(), &record, &uris);
            Ok(())
        })
    }

    async fn seal(
        self: capnp::capability::Rc<Self>,
        params: api::SealParams,
        mut results: api::SealResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            let (identity, _, mut record) = self.existing("image:Create", &name).await?;
            if record.state == ImageState::Ready {
                return Err(refusal(VmWriteError::Precondition(format!(
                    "image {name} is sealed already"
                ))));
            }
            self.seal_parts(&mut record).await?;
            let sealed = record.clone();
            let record = vm::modify_image(
                &self.proposer,
                identity.tenant(),
                identity.project(),
                &name,
                |image| {
                    if image.id != sealed.id {
                        return Err(VmWriteError::NoSuchImage(sealed.name.clone()));
                    }
                    image.disk = sealed.disk.clone();
                    image.kernel = sealed.kernel.clone();
                    image.initrd = sealed.initrd.clone();
                    image.state = ImageState::Ready;
                    Ok(())
                },
            )
            .await
            .map_err(refusal)?;
            write_image(results.get().init_image(), &record, &[]);
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
            let (_, _, record) = self.existing("image:Get", &name).await?;
            write_image(results.get().init_image(), &record, &[]);
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
            let (identity, kv, record) = self.existing("image:Delete", &name).await?;
            let kernel = record.kernel.as_ref().map(|k| k.snapshot_id);
            if let Some((_, user)) = vm::list(
                &self.proposer.state_machine,
                identity.tenant(),
                identity.project(),
            )
            .into_iter()
            .find(|(_, v)| v.boot.is_some() && v.boot.as_ref().map(|b| b.kernel_id) == kernel)
            {
                return Err(refusal(VmWriteError::Precondition(format!(
                    "image {name} boots vm {} (its kernel); delete the vm first",
                    user.name
                ))));
            }
            vm::remove_image(&self.proposer, &kv, &name)
                .await
                .map_err(refusal)?;
            // VMs made from it keep their clones: the volume store keeps
            // shared extents until their last user goes.
            for part in record.parts() {
                self.drop_part(&identity, part).await;
            }
            Ok(())
        })
    }
}
