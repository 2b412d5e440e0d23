//! The PlasmaVMC API: virtual machines and images.

use photon_schema::vm_capnp::{console_input, console_output, image, image_part, images, vm, vms};

use super::{reply, text, unit_call, Attempt, Caps, Client, ClientError};

/// One disk of a VM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VmDiskInfo {
    pub volume: String,
    pub read_only: bool,
    /// Made with the VM; removed with it unless kept.
    pub owned: bool,
}

/// A VM: what was asked for, and what the agent of its node sees.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VmInfo {
    pub name: String,
    #[serde(serialize_with = "as_string")]
    pub id: u64,
    pub node: u64,
    pub cpus: u32,
    pub memory_mib: u32,
    pub image: Option<String>,
    pub disks: Vec<VmDiskInfo>,
    pub mac: String,
    /// What was asked: `running` or `stopped`.
    pub power: String,
    pub restart: String,
    pub created_ms: u64,
    /// What the agent sees: running, stopping, stopped, failed, unknown.
    pub state: String,
    pub state_detail: String,
    /// `kvm` or `tcg` while it runs.
    pub accel: String,
    pub pid: u32,
    pub restarts: u32,
    pub user_data: bool,
    /// Its static address on the node's VM bridge (with `compute.bridge`).
    pub address: Option<String>,
    /// The live migration under way, or why the last one failed.
    pub migration: Option<String>,
}

/// What a new VM is made of.
#[derive(Debug, Clone, Default)]
pub struct VmSpec {
    pub name: String,
    /// Boot from a clone of this image...
    pub image: Option<String>,
    /// ...or from this volume.
    pub volume: Option<String>,
    pub extra_volumes: Vec<String>,
    pub cpus: u32,
    pub memory_mib: u32,
    pub user_data: Option<String>,
    pub ssh_keys: Vec<String>,
    /// `always`, `on-failure` (default) or `never`.
    pub restart: Option<String>,
    /// Create it stopped.
    pub stopped: bool,
}

/// One part of an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImagePartInfo {
    pub volume: String,
    pub bytes: u64,
    /// Only from `create_image`: where the importer writes it.
    #[serde(skip_serializing)]
    pub uri: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    pub name: String,
    #[serde(serialize_with = "as_string")]
    pub id: u64,
    pub state: String,
    pub source_format: String,
    pub disk: ImagePartInfo,
    pub kernel: Option<ImagePartInfo>,
    pub initrd: Option<ImagePartInfo>,
    pub cmdline: String,
    pub created_ms: u64,
}

/// What an image import starts with.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub name: String,
    pub disk_bytes: u64,
    pub kernel_bytes: u64,
    pub initrd_bytes: u64,
    pub cmdline: String,
    pub source_format: String,
}

/// What a console viewer receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    Output(Vec<u8>),
    Closed(String),
}

/// An attached console: output arrives on `output`; [`Console::send`]
/// types.
pub struct Console {
    pub output: tokio::sync::mpsc::UnboundedReceiver<ConsoleEvent>,
    input: console_input::Client,
}

impl Console {
    /// Sends keystrokes to the VM's serial port.
    pub async fn send(&self, data: &[u8]) -> Result<(), ClientError> {
        let mut call = self.input.write_request();
        call.get().set_data(data);
        let reply = call
            .send()
            .promise
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let r = reply
            .get()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if r.has_error() {
            let error = r
                .get_error()
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            return Err(ClientError::Api(
                crate::api_error::ApiError::read(error)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?,
            ));
        }
        Ok(())
    }
}

struct OutputSink(tokio::sync::mpsc::UnboundedSender<ConsoleEvent>);

impl console_output::Server for OutputSink {
    async fn write(
        self: capnp::capability::Rc<Self>,
        params: console_output::WriteParams,
        _results: console_output::WriteResults,
    ) -> Result<(), capnp::Error> {
        let data = params.get()?.get_data()?.to_vec();
        self.0
            .send(ConsoleEvent::Output(data))
            .map_err(|_| capnp::Error::disconnected("the viewer left".into()))
    }

    async fn closed(
        self: capnp::capability::Rc<Self>,
        params: console_output::ClosedParams,
        _results: console_output::ClosedResults,
    ) -> Result<(), capnp::Error> {
        let reason = params.get()?.get_reason()?.to_string()?;
        let _ = self.0.send(ConsoleEvent::Closed(reason));
        Ok(())
    }
}

fn as_string<S: serde::Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn read_vm(v: vm::Reader<'_>) -> Attempt<VmInfo> {
    let image = text(v.get_image())?;
    Ok(VmInfo {
        name: text(v.get_name())?,
        id: v.get_id(),
        node: v.get_node(),
        cpus: v.get_cpus(),
        memory_mib: v.get_memory_mib(),
        image: (!image.is_empty()).then_some(image),
        disks: v
            .get_disks()?
            .iter()
            .map(|d| {
                Ok(VmDiskInfo {
                    volume: text(d.get_volume())?,
                    read_only: d.get_read_only(),
                    owned: d.get_owned(),
                })
            })
            .collect::<Attempt<_>>()?,
        mac: text(v.get_mac())?,
        power: text(v.get_power())?,
        restart: text(v.get_restart())?,
        created_ms: v.get_created_ms(),
        state: text(v.get_state())?,
        state_detail: text(v.get_state_detail())?,
        accel: text(v.get_accel())?,
        pid: v.get_pid(),
        restarts: v.get_restarts(),
        user_data: v.get_user_data(),
        address: Some(text(v.get_address())?).filter(|a| !a.is_empty()),
        migration: Some(text(v.get_migration())?).filter(|m| !m.is_empty()),
    })
}

fn read_part(p: image_part::Reader<'_>) -> Attempt<Option<ImagePartInfo>> {
    let volume = text(p.get_volume())?;
    Ok((!volume.is_empty()).then(|| ImagePartInfo {
        volume,
        bytes: p.get_bytes(),
        uri: text(p.get_uri()).unwrap_or_default(),
    }))
}

fn read_image(i: image::Reader<'_>) -> Attempt<ImageInfo> {
    Ok(ImageInfo {
        name: text(i.get_name())?,
        id: i.get_id(),
        state: text(i.get_state())?,
        source_format: text(i.get_source_format())?,
        disk: read_part(i.get_disk()?)?.ok_or_else(|| {
            super::CallError::Capnp(capnp::Error::failed("an image without a disk".into()))
        })?,
        kernel: read_part(i.get_kernel()?)?,
        initrd: read_part(i.get_initrd()?)?,
        cmdline: text(i.get_cmdline())?,
        created_ms: i.get_created_ms(),
    })
}

fn vms_api(caps: &Caps) -> vms::Client {
    caps.session().vms_request().send().pipeline.get_vms()
}

fn images_api(caps: &Caps) -> images::Client {
    caps.session().images_request().send().pipeline.get_images()
}

/// A call on VM `name` whose reply is the VM.
macro_rules! vm_call {
    ($client:expr, $request:ident, $name:expr $(, $setter:ident = $value:expr)*) => {
        $client
            .with_session(|caps| async move {
                let mut call = vms_api(&caps).$request();
                call.get().set_name($name);
                $(call.get().$setter($value);)*
                let reply = call.send().promise.await?;
                read_vm(reply!(reply.get()?).get_vm()?)
            })
            .await
    };
}

impl Client {
    pub async fn list_vms(&mut self) -> Result<Vec<VmInfo>, ClientError> {
        self.with_session(|caps| async move {
            let reply = vms_api(&caps).list_request().send().promise.await?;
            reply!(reply.get()?)
                .get_vms()?
                .iter()
                .map(read_vm)
                .collect()
        })
        .await
    }

    pub async fn create_vm(&mut self, spec: &VmSpec) -> Result<VmInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = vms_api(&caps).create_request();
            {
                let mut v = call.get().init_vm();
                v.set_name(&spec.name);
                v.set_image(spec.image.as_deref().unwrap_or(""));
                v.set_volume(spec.volume.as_deref().unwrap_or(""));
                let mut extra = v
                    .reborrow()
                    .init_extra_volumes(spec.extra_volumes.len() as u32);
                for (i, e) in spec.extra_volumes.iter().enumerate() {
                    extra.set(i as u32, e);
                }
                v.set_cpus(spec.cpus);
                v.set_memory_mib(spec.memory_mib);
                v.set_user_data(spec.user_data.as_deref().unwrap_or(""));
                let mut keys = v.reborrow().init_ssh_keys(spec.ssh_keys.len() as u32);
                for (i, k) in spec.ssh_keys.iter().enumerate() {
                    keys.set(i as u32, k);
                }
                v.set_restart(spec.restart.as_deref().unwrap_or(""));
                v.set_start(!spec.stopped);
            }
            let reply = call.send().promise.await?;
            read_vm(reply!(reply.get()?).get_vm()?)
        })
        .await
    }

    pub async fn vm_info(&mut self, name: &str) -> Result<VmInfo, ClientError> {
        vm_call!(self, info_request, name)
    }

    pub async fn start_vm(&mut self, name: &str) -> Result<VmInfo, ClientError> {
        vm_call!(self, start_request, name)
    }

    /// Asks the guest to power off (or pulls the plug with `force`).
    pub async fn stop_vm(&mut self, name: &str, force: bool) -> Result<VmInfo, ClientError> {
        vm_call!(self, stop_request, name, set_force = force)
    }

    pub async fn reboot_vm(&mut self, name: &str) -> Result<VmInfo, ClientError> {
        vm_call!(self, reboot_request, name)
    }

    /// Starts a live migration of VM `name` to node `to`; answers at once
    /// (`vm_info` shows the progress, and `node` once it completed).
    pub async fn migrate_vm(&mut self, name: &str, to: u64) -> Result<VmInfo, ClientError> {
        vm_call!(self, migrate_request, name, set_to_node = to)
    }

    pub async fn attach_vm_volume(
        &mut self,
        name: &str,
        volume: &str,
        read_only: bool,
    ) -> Result<VmInfo, ClientError> {
        vm_call!(
            self,
            attach_volume_request,
            name,
            set_volume = volume,
            set_read_only = read_only
        )
    }

    pub async fn detach_vm_volume(
        &mut self,
        name: &str,
        volume: &str,
    ) -> Result<VmInfo, ClientError> {
        vm_call!(self, detach_volume_request, name, set_volume = volume)
    }

    /// Deletes a VM, and the volumes made with it unless `keep_volumes`.
    pub async fn delete_vm(&mut self, name: &str, keep_volumes: bool) -> Result<(), ClientError> {
        unit_call!(self, vms_api, delete_request, |p| {
            p.set_name(name);
            p.set_keep_volumes(keep_volumes);
        })
    }

    /// The last `tail_bytes` (0: the server's default) of the serial log.
    pub async fn vm_logs(&mut self, name: &str, tail_bytes: u32) -> Result<Vec<u8>, ClientError> {
        self.with_session(|caps| async move {
            let mut call = vms_api(&caps).logs_request();
            call.get().set_name(name);
            call.get().set_tail_bytes(tail_bytes);
            let reply = call.send().promise.await?;
            Ok(reply!(reply.get()?).get_data()?.to_vec())
        })
        .await
    }

    /// Attaches to a VM's serial console (inside a tokio `LocalSet`).
    pub async fn vm_console(&mut self, name: &str) -> Result<Console, ClientError> {
        let (tx, output) = tokio::sync::mpsc::unbounded_channel();
        let input = self
            .with_session(|caps| {
                let tx = tx.clone();
                async move {
                    let mut call = vms_api(&caps).console_request();
                    call.get().set_name(name);
                    call.get().set_output(capnp_rpc::new_client(OutputSink(tx)));
                    let reply = call.send().promise.await?;
                    Ok(reply!(reply.get()?).get_input()?)
                }
            })
            .await?;
        Ok(Console { output, input })
    }

    pub async fn list_images(&mut self) -> Result<Vec<ImageInfo>, ClientError> {
        self.with_session(|caps| async move {
            let reply = images_api(&caps).list_request().send().promise.await?;
            reply!(reply.get()?)
                .get_images()?
                .iter()
                .map(read_image)
                .collect()
        })
        .await
    }

    /// Starts an import: the image's volumes, with URIs to write them.
    pub async fn create_image(&mut self, spec: &ImageSpec) -> Result<ImageInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = images_api(&caps).create_request();
            {
                let mut p = call.get();
                p.set_name(&spec.name);
                p.set_disk_bytes(spec.disk_bytes);
                p.set_kernel_bytes(spec.kernel_bytes);
                p.set_initrd_bytes(spec.initrd_bytes);
                p.set_cmdline(&spec.cmdline);
                p.set_source_format(&spec.source_format);
            }
            let reply = call.send().promise.await?;
            read_image(reply!(reply.get()?).get_image()?)
        })
        .await
    }

    /// Ends an import: VMs may start from the image after.
    pub async fn seal_image(&mut self, name: &str) -> Result<ImageInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = images_api(&caps).seal_request();
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            read_image(reply!(reply.get()?).get_image()?)
        })
        .await
    }

    pub async fn image_info(&mut self, name: &str) -> Result<ImageInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = images_api(&caps).info_request();
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            read_image(reply!(reply.get()?).get_image()?)
        })
        .await
    }

    pub async fn delete_image(&mut self, name: &str) -> Result<(), ClientError> {
        unit_call!(self, images_api, delete_request, |p| {
            p.set_name(name);
        })
    }
}
