//! The agent: one controller per VM record of this node, which makes the
//! QEMU process match the record. Desired state is the record (power,
//! start and reboot counters, restart policy); actual state is what the
//! process and QMP say. QEMU runs detached (see [`crate::qemu`]), so when
//! photon restarts, a controller finds the running QEMU by its pid file and
//! adopts it over its QMP socket.
//!
//! Each VM has a directory `<dir>/<id>/` (mode 0700): QMP and console
//! sockets, pid file, console log, seed image, and `applied.json` (the
//! start and reboot numbers acted on, so a restarted agent neither starts
//! a VM twice for one `vm start` nor reboots it again).
//!
//! A live migration (`VmRecord::migration`) involves two agents. The
//! destination's controller starts QEMU with `-incoming defer`, makes it
//! listen (`migrate-incoming tcp:HOST:0`) and writes the address into the
//! record; the source's controller then runs `migrate` to it, follows
//! `query-migrate`, and when QEMU says completed moves the record to the
//! destination, whose QEMU already runs the guest. A failure on either
//! side is written as the migration's `failed` reason; the source's QEMU
//! then goes on running the guest, and the destination's is stopped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use photon_records::{Migration, Power, RestartPolicy, VmRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::console::{self, ConsoleLog, Hub};
use crate::qemu::{self, Accel, Drive, Kernel, Launch};
use crate::qmp::{Qmp, QmpError};

/// How long a QMP command may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a controller looks at its process when nothing happens.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Wait after a failed start before the next try.
const START_BACKOFF: Duration = Duration::from_secs(5);
/// How long a migration's destination has to start listening.
const MIGRATION_SETUP_MAX: Duration = Duration::from_secs(60);

/// The agent's settings (`[compute]` of the node's config).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the VMs' directories and the boot file cache live.
    pub dir: PathBuf,
    pub qemu: PathBuf,
    pub qemu_img: PathBuf,
    /// How long a guest has to power off after the ACPI request.
    pub stop_timeout: Duration,
    /// Console log kept per VM.
    pub log_bytes_max: u64,
    /// Use this accelerator instead of probing.
    pub accel: Option<Accel>,
    /// Tap NICs on this bridge with addresses from this network
    /// (`compute.bridge`, `compute.network`); `None`: user-mode NICs.
    pub network: Option<(String, String)>,
    /// This node's id (what the records' `node` names).
    pub node: u64,
    /// The address incoming migrations listen on: the host other nodes
    /// reach this one at.
    pub migration_host: String,
}

/// Where the agent gets its VMs' volumes: attach URIs (tokens of the VM's
/// owner) for volume ids of the VM's project.
pub trait Volumes {
    fn uri(&self, vm: &VmRecord, volume_id: u64) -> Result<String, String>;
}

/// A future the agent runs on its own thread.
pub type LocalFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T>>>;

/// How the agent writes to a VM's record (a migration's progress).
pub trait Reports {
    /// Applies `change` to `vm`'s record if it is still that VM (by id);
    /// `change` returns false when there is nothing (left) to do. The
    /// answer is whether it wrote.
    fn report(
        &self,
        vm: &VmRecord,
        change: Box<dyn Fn(&mut VmRecord) -> bool>,
    ) -> LocalFuture<Result<bool, String>>;
}

/// What the agent tells the API about one VM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub state: String,
    pub detail: String,
    pub accel: String,
    pub pid: u32,
    pub restarts: u32,
    /// Its static address on the node's bridge, "" without one.
    pub address: String,
}

/// What the agent shares with the API thread-safely.
#[derive(Debug, Clone, Default)]
pub struct Board {
    status: Arc<Mutex<HashMap<u64, Status>>>,
    consoles: Arc<Mutex<HashMap<u64, Arc<Hub>>>>,
    logs: Arc<Mutex<HashMap<u64, ConsoleLog>>>,
    unusable: Arc<Mutex<Option<String>>>,
}

impl Board {
    pub fn status(&self, id: u64) -> Option<Status> {
        self.status.lock().ok()?.get(&id).cloned()
    }

    pub fn logs(&self, id: u64, tail: usize) -> Result<Vec<u8>, String> {
        let log = self
            .logs
            .lock()
            .ok()
            .and_then(|l| l.get(&id).cloned())
            .ok_or_else(|| "the VM has no console log on this node yet".to_owned())?;
        log.tail(tail).map_err(|e| format!("console log: {e}"))
    }

    pub fn console(&self, id: u64) -> Result<console::Viewer, String> {
        let hub = self
            .consoles
            .lock()
            .ok()
            .and_then(|c| c.get(&id).cloned())
            .ok_or_else(|| "the VM is not running".to_owned())?;
        Ok(hub.attach())
    }

    /// Why VMs cannot run on this node, if they cannot.
    pub fn unusable(&self) -> Option<String> {
        self.unusable.lock().ok()?.clone()
    }

    fn set(&self, id: u64, status: Status) {
        if let Ok(mut s) = self.status.lock() {
            s.insert(id, status);
        }
    }

    fn forget(&self, id: u64) {
        if let Ok(mut consoles) = self.consoles.lock() {
            consoles.remove(&id);
        }
        if let Ok(mut l) = self.logs.lock() {
            l.remove(&id);
        }
        if let Ok(mut s) = self.status.lock() {
            s.remove(&id);
        }
    }
}

/// The numbers a controller acted on, kept in the VM's directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    starts: u64,
    reboots: u64,
    /// The disks after the boot disk that QEMU has: (volume id, port).
    #[serde(default)]
    disks: Vec<(u64, u32)>,
    /// The hot-plug ports QEMU was started with.
    #[serde(default)]
    ports: u32,
}

impl Applied {
    /// What a QEMU just started (or receiving a migration) for `vm` has
    /// acted on: its start and reboot numbers, its disks and ports.
    fn started(vm: &VmRecord) -> Self {
        Self {
            starts: vm.starts,
            reboots: vm.reboots,
            disks: hotplug_disks(vm),
            ports: qemu::hotplug_ports(vm.disks.iter().map(|d| d.slot)),
        }
    }

    fn load(dir: &Path) -> Self {
        std::fs::read(dir.join("applied.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, dir: &Path) {
        let tmp = dir.join("applied.json.tmp");
        let ok = std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, dir.join("applied.json")));
        if let Err(e) = ok {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot save the VM's applied state");
        }
    }
}

/// How the VM's last run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// It has not run under this agent (or is running).
    None,
    /// The guest powered itself off.
    Guest,
    /// The agent stopped it.
    Stopped,
    /// QEMU died (or was killed) without a power-off.
    Crashed,
}

/// The per-node agent.
pub struct Agent {
    inner: Rc<Inner>,
    controllers: RefCell<HashMap<u64, watch::Sender<Option<VmRecord>>>>,
}

struct Inner {
    config: AgentConfig,
    volumes: Box<dyn Volumes>,
    reports: Box<dyn Reports>,
    board: Board,
    accel: tokio::sync::OnceCell<(Accel, String)>,
    network: Option<crate::network::NodeNetwork>,
}

impl Agent {
    /// An agent; `unusable` says why VMs cannot run here (QEMU missing),
    /// and the API refuses to create or start VMs while it is set.
    pub fn new(
        config: AgentConfig,
        volumes: Box<dyn Volumes>,
        reports: Box<dyn Reports>,
        board: Board,
    ) -> Self {
        if let Err(e) = std::fs::create_dir_all(&config.dir) {
            tracing::warn!(dir = %config.dir.display(), error = %e, "cannot make the VM directory");
        }
        let missing = [&config.qemu, &config.qemu_img]
            .into_iter()
            .find(|p| which(p).is_none());
        if let (Some(p), Ok(mut u)) = (missing, board.unusable.lock()) {
            *u = Some(format!(
                "{} is not installed on this node: install QEMU (Debian: apt-get install qemu-system-x86 qemu-utils)",
                p.display()
            ));
        }
        let network = config.network.as_ref().and_then(|(bridge, cidr)| {
            let made = crate::network::NodeNetwork::new(bridge, cidr, &config.dir)
                .and_then(|n| n.ensure_bridge().map(|()| n));
            match made {
                Ok(n) => Some(n),
                Err(e) => {
                    if let Ok(mut u) = board.unusable.lock() {
                        *u = Some(format!(
                            "the VM network (compute.bridge) is not usable: {e}"
                        ));
                    }
                    None
                }
            }
        });
        Self {
            inner: Rc::new(Inner {
                config,
                volumes,
                reports,
                board,
                accel: tokio::sync::OnceCell::new(),
                network,
            }),
            controllers: RefCell::default(),
        }
    }

    /// Makes the set of VMs this node runs equal `records` (the VM records
    /// of this node).
    pub fn replace_all(&self, records: Vec<VmRecord>) {
        let ids: std::collections::HashSet<u64> = records.iter().map(|r| r.id).collect();
        let gone: Vec<u64> = self
            .controllers
            .borrow()
            .keys()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.remove(id);
        }
        for record in records {
            self.upsert(record);
        }
    }

    /// A VM record of this node was created or changed.
    pub fn upsert(&self, record: VmRecord) {
        let mut controllers = self.controllers.borrow_mut();
        if let Some(tx) = controllers.get(&record.id) {
            tx.send_replace(Some(record));
            return;
        }
        let (tx, rx) = watch::channel(Some(record.clone()));
        controllers.insert(record.id, tx);
        tokio::task::spawn_local(control(self.inner.clone(), record.id, rx));
    }

    /// VM `id` was deleted (or moved away): its controller stops QEMU and
    /// removes its directory.
    pub fn remove(&self, id: u64) {
        if let Some(tx) = self.controllers.borrow_mut().remove(&id) {
            tx.send_replace(None);
        }
    }

    /// VMs of this node that ran before and have no record any more (their
    /// record was deleted while photon was down): stopped and removed.
    /// `exists(id)` says whether VM `id` has a record (ask the applied
    /// state, once it holds what it held before a restart).
    pub fn sweep_orphans(&self, exists: impl Fn(u64) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.inner.config.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if exists(id) || self.controllers.borrow().contains_key(&id) {
                continue;
            }
            let (tx, rx) = watch::channel(None);
            drop(tx);
            tokio::task::spawn_local(control(self.inner.clone(), id, rx));
        }
    }
}

/// The disks after the boot disk that `vm` asks for: (volume id, port).
fn hotplug_disks(vm: &VmRecord) -> Vec<(u64, u32)> {
    vm.disks
        .iter()
        .filter(|d| d.slot > 0)
        .map(|d| (d.id, d.slot))
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.exists().then(|| program.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// One VM's controller: see the module documentation.
struct Controller {
    inner: Rc<Inner>,
    id: u64,
    dir: PathBuf,
    applied: Applied,
    pid: Option<u32>,
    qmp: Option<Qmp>,
    accel: String,
    exit: Exit,
    restarts: u32,
    /// When the ACPI power-off was asked for (a stop in progress).
    powerdown_at: Option<Instant>,
    /// Why the last start failed, and when to try again.
    failure: Option<(String, Instant)>,
    relay: Option<tokio::task::JoinHandle<()>>,
    /// The VM's address on the node's bridge, once known.
    address: String,
    /// The migration whose state this QEMU waits for (destination side).
    incoming_for: Option<u64>,
    /// The migration this QEMU sends (source side), once `migrate` ran.
    outgoing_for: Option<u64>,
    /// Disks asked to leave (`device_del` sent), waiting for the guest.
    unplugging: std::collections::HashSet<u64>,
}

async fn control(inner: Rc<Inner>, id: u64, mut desired: watch::Receiver<Option<VmRecord>>) {
    let dir = inner.config.dir.join(id.to_string());
    if let Err(e) = make_private_dir(&dir) {
        tracing::error!(vm = id, error = %e, "cannot make the VM's directory");
        return;
    }
    if let Ok(mut logs) = inner.board.logs.lock() {
        logs.insert(id, ConsoleLog::new(&dir, inner.config.log_bytes_max));
    }
    let mut c = Controller {
        applied: Applied::load(&dir),
        pid: qemu::running_pid(&dir),
        inner,
        id,
        dir,
        qmp: None,
        accel: String::new(),
        exit: Exit::None,
        restarts: 0,
        powerdown_at: None,
        failure: None,
        relay: None,
        address: String::new(),
        incoming_for: None,
        outgoing_for: None,
        unplugging: std::collections::HashSet::new(),
    };
    if c.pid.is_some() {
        c.adopt().await;
    } else if c.dir.join(qemu::PID_FILE).exists() {
        // It ran, and died while the agent was away.
        c.exit = Exit::Crashed;
    }
    loop {
        let record = desired.borrow_and_update().clone();
        let Some(vm) = record else {
            c.destroy().await;
            return;
        };
        c.look();
        let detail = c.act(&vm).await;
        c.report(&vm, detail);
        c.wait(&mut desired).await;
    }
}

/// `52:54:00:12:34:56` as bytes.
fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("MAC {text:?} is malformed"))?;
    bytes
        .try_into()
        .map_err(|_| format!("MAC {text:?} is not 6 bytes"))
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl Controller {
    /// Takes over a QEMU that runs already (started before photon restarted).
    async fn adopt(&mut self) {
        if let Some(net) = &self.inner.network {
            self.address = net
                .known(self.id)
                .map(|a| a.to_string())
                .unwrap_or_default();
        }
        match Qmp::connect(&self.dir.join(qemu::QMP_SOCKET), QMP_TIMEOUT).await {
            Ok((qmp, _)) => {
                self.qmp = Some(qmp);
                self.accel = self.query_accel().await;
                self.start_relay();
                tracing::info!(vm = self.id, pid = ?self.pid, "adopted a running VM");
            }
            Err(e) => {
                tracing::warn!(vm = self.id, error = %e, "a running VM's QMP does not answer; killing it");
                if let Some(pid) = self.pid.take() {
                    qemu::kill(pid);
                }
                self.exit = Exit::Crashed;
            }
        }
    }

    async fn query_accel(&mut self) -> String {
        let Some(qmp) = self.qmp.as_mut() else {
            return String::new();
        };
        match qmp.execute("query-kvm", None).await {
            Ok(v) if v["enabled"] == serde_json::json!(true) => "kvm".into(),
            Ok(_) => "tcg".into(),
            Err(_) => String::new(),
        }
    }

    fn start_relay(&mut self) {
        let log = ConsoleLog::new(&self.dir, self.inner.config.log_bytes_max);
        let (hub, run) = console::relay(self.dir.clone(), log);
        if let Ok(mut consoles) = self.inner.board.consoles.lock() {
            consoles.insert(self.id, hub);
        }
        self.relay = Some(tokio::task::spawn_local(run));
    }

    /// Notices a QEMU that went away.
    fn look(&mut self) {
        if self.pid.is_some() && qemu::running_pid(&self.dir).is_none() {
            self.pid = None;
            self.qmp = None;
            self.powerdown_at = None;
            if self.exit == Exit::None {
                self.exit = Exit::Crashed;
            }
            if let Ok(mut consoles) = self.inner.board.consoles.lock() {
                consoles.remove(&self.id);
            }
        }
    }

    /// Moves toward `vm`; returns what to say about it.
    async fn act(&mut self, vm: &VmRecord) -> String {
        let node = self.inner.config.node;
        if let Some(m) = vm.migrating().cloned() {
            if vm.node != node && m.to == node {
                return self.migrate_in(vm, &m).await;
            }
            if vm.node == node {
                return self.migrate_out(vm, &m).await;
            }
        }
        match (vm.power, self.pid) {
            (Power::Running, None) => {
                let asked = self.applied.starts < vm.starts;
                let restart = match vm.restart {
                    RestartPolicy::Always => self.exit != Exit::None,
                    RestartPolicy::OnFailure => self.exit == Exit::Crashed,
                    RestartPolicy::Never => false,
                };
                if let Some((why, retry_at)) = &self.failure {
                    if Instant::now() < *retry_at {
                        return why.clone();
                    }
                }
                if !asked && !restart {
                    return self.exit_detail();
                }
                match self.launch(vm, false).await {
                    Ok(pid) => {
                        if !asked {
                            self.restarts += 1;
                        }
                        self.pid = Some(pid);
                        self.exit = Exit::None;
                        self.failure = None;
                        self.applied = Applied::started(vm);
                        self.applied.save(&self.dir);
                        match Qmp::connect(&self.dir.join(qemu::QMP_SOCKET), QMP_TIMEOUT).await {
                            Ok((qmp, _)) => self.qmp = Some(qmp),
                            Err(e) => tracing::warn!(vm = self.id, error = %e, "no QMP"),
                        }
                        self.start_relay();
                        String::new()
                    }
                    Err(e) => {
                        tracing::warn!(vm = %vm.name, error = %e, "the VM did not start");
                        self.failure = Some((e.clone(), Instant::now() + START_BACKOFF));
                        e
                    }
                }
            }
            (Power::Running, Some(_)) => {
                if vm.reboots > self.applied.reboots {
                    if let Err(e) = self.command("system_reset").await {
                        return format!("reboot: {e}");
                    }
                    self.applied.reboots = vm.reboots;
                    self.applied.save(&self.dir);
                }
                self.reconcile_disks(vm).await
            }
            (Power::Stopped, Some(pid)) => {
                self.failure = None;
                let overdue = self
                    .powerdown_at
                    .is_some_and(|t| t.elapsed() >= self.inner.config.stop_timeout);
                if vm.force_stop || overdue {
                    self.pull_plug(pid).await;
                    "stopping (forced)".into()
                } else if self.powerdown_at.is_none() {
                    self.powerdown_at = Some(Instant::now());
                    if let Err(e) = self.command("system_powerdown").await {
                        return format!("stopping: {e}");
                    }
                    "stopping (ACPI power-off asked)".into()
                } else {
                    "stopping (ACPI power-off asked)".into()
                }
            }
            (Power::Stopped, None) => {
                self.failure = None;
                self.applied.starts = vm.starts;
                self.exit_detail()
            }
        }
    }

    /// Destination side: QEMU waiting for the state, its address in the
    /// record; then nothing but waiting until the source moves the record.
    async fn migrate_in(&mut self, vm: &VmRecord, m: &Migration) -> String {
        if self.pid.is_some() {
            return format!("receiving the VM from node {}", m.from);
        }
        if self.incoming_for == Some(m.id) {
            // It listened, and QEMU went: the state did not arrive whole.
            self.incoming_for = None;
            let why = format!(
                "QEMU on node {} exited while receiving the VM",
                self.inner.config.node
            );
            self.fail_migration(vm, m, why.clone()).await;
            return why;
        }
        match self.listen_incoming(vm).await {
            Ok(at) => {
                self.incoming_for = Some(m.id);
                let id = m.id;
                let wrote = self
                    .inner
                    .reports
                    .report(
                        vm,
                        Box::new(move |r| match r.migration.as_mut() {
                            Some(m) if m.id == id && m.active() && m.incoming.is_none() => {
                                m.incoming = Some(at.clone());
                                true
                            }
                            _ => false,
                        }),
                    )
                    .await;
                if let Err(e) = wrote {
                    // Said again on the next look: QEMU keeps listening.
                    self.incoming_for = None;
                    if let Some(pid) = self.pid {
                        self.pull_plug(pid).await;
                    }
                    return format!("cannot tell the source where to send the VM: {e}");
                }
                format!("receiving the VM from node {}", m.from)
            }
            Err(e) => {
                if let Some(pid) = self.pid {
                    self.pull_plug(pid).await;
                }
                let why = format!("node {}: {e}", self.inner.config.node);
                self.fail_migration(vm, m, why.clone()).await;
                why
            }
        }
    }

    /// Starts QEMU waiting for a migration; returns where it listens.
    async fn listen_incoming(&mut self, vm: &VmRecord) -> Result<String, String> {
        let pid = self.launch(vm, true).await?;
        self.pid = Some(pid);
        self.exit = Exit::None;
        // The record moves here with these numbers acted on.
        self.applied = Applied::started(vm);
        self.applied.save(&self.dir);
        let (qmp, _) = Qmp::connect(&self.dir.join(qemu::QMP_SOCKET), QMP_TIMEOUT)
            .await
            .map_err(|e| format!("QMP: {e}"))?;
        self.qmp = Some(qmp);
        self.start_relay();
        let host = self.inner.config.migration_host.clone();
        let uri = match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => format!("tcp:[{host}]:0"),
            _ => format!("tcp:{host}:0"),
        };
        self.execute("migrate-incoming", serde_json::json!({ "uri": uri }))
            .await
            .map_err(|e| format!("migrate-incoming: {e}"))?;
        let info = self
            .execute("query-migrate", serde_json::Value::Null)
            .await
            .map_err(|e| format!("query-migrate: {e}"))?;
        let port = info["socket-address"][0]["port"]
            .as_str()
            .ok_or_else(|| format!("QEMU did not say where it listens: {info}"))?;
        Ok(match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        })
    }

    /// Source side: once the destination listens, `migrate` to it and
    /// follow it; at the end move the record, or say why it failed.
    async fn migrate_out(&mut self, vm: &VmRecord, m: &Migration) -> String {
        if self.pid.is_none() {
            let why = format!("the VM is not running on node {}", m.from);
            self.fail_migration(vm, m, why.clone()).await;
            return why;
        }
        let Some(at) = &m.incoming else {
            let waited = now_ms().saturating_sub(m.started_ms);
            if waited > MIGRATION_SETUP_MAX.as_millis() as u64 {
                let why = format!(
                    "node {} did not get ready to receive the VM within {} s",
                    m.to,
                    MIGRATION_SETUP_MAX.as_secs()
                );
                self.fail_migration(vm, m, why.clone()).await;
                return why;
            }
            return format!("migrating to node {}: waiting for it to get ready", m.to);
        };
        let info = match self.execute("query-migrate", serde_json::Value::Null).await {
            Ok(info) => info,
            Err(e) => return format!("migrating to node {}: query-migrate: {e}", m.to),
        };
        let status = info["status"].as_str().unwrap_or("none").to_owned();
        if self.outgoing_for != Some(m.id) {
            // After a restart of photon QEMU may be sending already.
            let sending = matches!(
                status.as_str(),
                "setup" | "active" | "device" | "pre-switchover" | "completed"
            );
            if !sending {
                let uri = format!("tcp:{at}");
                if let Err(e) = self
                    .execute("migrate", serde_json::json!({ "uri": uri }))
                    .await
                {
                    let why = format!("migrate: {e}");
                    self.fail_migration(vm, m, why.clone()).await;
                    return why;
                }
            }
            self.outgoing_for = Some(m.id);
            return format!("migrating to node {}: started", m.to);
        }
        match status.as_str() {
            "completed" => {
                let (id, to) = (m.id, m.to);
                tracing::info!(
                    vm = %vm.name,
                    to,
                    total_ms = info["total-time"].as_u64().unwrap_or(0),
                    downtime_ms = info["downtime"].as_u64().unwrap_or(0),
                    "live migration completed"
                );
                let moved = self
                    .inner
                    .reports
                    .report(
                        vm,
                        Box::new(move |r| match &r.migration {
                            Some(m) if m.id == id && m.active() => {
                                r.node = to;
                                r.migration = None;
                                true
                            }
                            _ => false,
                        }),
                    )
                    .await;
                match moved {
                    Ok(_) => format!("migrated to node {to}"),
                    Err(e) => format!("migrated to node {to}; the record is not moved yet: {e}"),
                }
            }
            "failed" | "cancelled" => {
                self.outgoing_for = None;
                let why = info["error-desc"]
                    .as_str()
                    .map_or_else(|| format!("QEMU says {status}"), str::to_owned);
                self.fail_migration(vm, m, why.clone()).await;
                why
            }
            _ => {
                let ram = &info["ram"];
                let mib = |v: &serde_json::Value| v.as_u64().unwrap_or(0) >> 20;
                format!(
                    "migrating to node {}: {status}, {} of {} MiB sent",
                    m.to,
                    mib(&ram["transferred"]),
                    mib(&ram["total"])
                )
            }
        }
    }

    /// Hot-plugs the disks the record added and unplugs those it removed
    /// while the VM runs; says what is still under way.
    async fn reconcile_disks(&mut self, vm: &VmRecord) -> String {
        let want = hotplug_disks(vm);
        let leaving: Vec<(u64, u32)> = self
            .applied
            .disks
            .iter()
            .filter(|d| !want.contains(d))
            .copied()
            .collect();
        for (id, _) in &leaving {
            let (backend, device) = qemu::drive_names(*id);
            if self.unplugging.insert(*id) {
                if let Err(e) = self
                    .execute("device_del", serde_json::json!({ "id": device }))
                    .await
                {
                    tracing::warn!(vm = %vm.name, volume = id, error = %e, "device_del");
                }
                continue;
            }
            match self.device_present(&device).await {
                Ok(true) => {}
                Ok(false) => {
                    // Backends of `-drive` go with their device; those of
                    // blockdev-add must be deleted.
                    let _ = self
                        .execute("blockdev-del", serde_json::json!({ "node-name": backend }))
                        .await;
                    self.unplugging.remove(id);
                    self.applied.disks.retain(|d| d.0 != *id);
                    self.applied.save(&self.dir);
                }
                Err(e) => return format!("detaching volume {id}: {e}"),
            }
        }
        if let Some((id, _)) = self
            .applied
            .disks
            .iter()
            .find(|d| self.unplugging.contains(&d.0))
        {
            return format!("detaching volume {id}: waiting for the guest to release it");
        }
        for (id, slot) in want {
            if self.applied.disks.iter().any(|d| d.0 == id) {
                continue;
            }
            let read_only = vm.disks.iter().any(|d| d.id == id && d.read_only);
            if let Err(e) = self.hotplug(vm, id, slot, read_only).await {
                return format!("attaching volume {id}: {e}");
            }
            self.applied.disks.push((id, slot));
            self.applied.save(&self.dir);
        }
        String::new()
    }

    /// Adds volume `id` to the running VM on port `slot`.
    async fn hotplug(
        &mut self,
        vm: &VmRecord,
        id: u64,
        slot: u32,
        read_only: bool,
    ) -> Result<(), String> {
        if self.applied.ports > 0 && slot > self.applied.ports {
            return Err(format!(
                "the VM started with {} hot-plug ports and this disk needs port {slot}: stop and start it to attach the disk",
                self.applied.ports
            ));
        }
        let uri = self.inner.volumes.uri(vm, id)?;
        let (backend, device) = qemu::drive_names(id);
        let blockdev = qemu::nbd_blockdev(&uri, &backend, read_only)
            .ok_or_else(|| "the volume's attach URI is not nbd://host:port/export".to_owned())?;
        self.execute("blockdev-add", blockdev)
            .await
            .map_err(|e| format!("blockdev-add: {e}"))?;
        let added = self
            .execute(
                "device_add",
                serde_json::json!({
                    "driver": "virtio-blk-pci",
                    "drive": backend,
                    "id": device,
                    "bus": format!("hp{slot}"),
                }),
            )
            .await;
        if let Err(e) = added {
            let _ = self
                .execute("blockdev-del", serde_json::json!({ "node-name": backend }))
                .await;
            return Err(format!("device_add: {e}"));
        }
        Ok(())
    }

    /// Whether QEMU still has device `id` (user-created devices live under
    /// /machine/peripheral).
    async fn device_present(&mut self, id: &str) -> Result<bool, QmpError> {
        let list = self
            .execute(
                "qom-list",
                serde_json::json!({ "path": "/machine/peripheral" }),
            )
            .await?;
        Ok(list
            .as_array()
            .is_some_and(|props| props.iter().any(|p| p["name"] == id)))
    }

    /// Writes why migration `m` failed (once; the VM stays on its node).
    async fn fail_migration(&self, vm: &VmRecord, m: &Migration, why: String) {
        tracing::warn!(vm = %vm.name, to = m.to, reason = %why, "live migration failed");
        let id = m.id;
        let wrote = self
            .inner
            .reports
            .report(
                vm,
                Box::new(move |r| match r.migration.as_mut() {
                    Some(m) if m.id == id && m.active() => {
                        m.failed = Some(why.clone());
                        true
                    }
                    _ => false,
                }),
            )
            .await;
        if let Err(e) = wrote {
            tracing::warn!(vm = %vm.name, error = %e, "cannot record the failed migration");
        }
    }

    async fn execute(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value, QmpError> {
        let arguments = (!arguments.is_null()).then_some(arguments);
        match self.qmp.as_mut() {
            Some(qmp) => qmp.execute(command, arguments).await,
            None => Err(QmpError::Closed),
        }
    }

    fn exit_detail(&self) -> String {
        match self.exit {
            Exit::None => String::new(),
            Exit::Guest => "the guest powered off".into(),
            Exit::Stopped => "stopped".into(),
            Exit::Crashed => "QEMU exited without a power-off".into(),
        }
    }

    async fn command(&mut self, command: &str) -> Result<(), QmpError> {
        self.execute(command, serde_json::Value::Null)
            .await
            .map(drop)
    }

    /// Ends QEMU now: `quit` over QMP, SIGKILL if that fails.
    async fn pull_plug(&mut self, pid: u32) {
        self.exit = Exit::Stopped;
        if self.command("quit").await.is_err() {
            qemu::kill(pid);
        }
        for _ in 0..100 {
            if qemu::running_pid(&self.dir).is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if qemu::running_pid(&self.dir).is_some() {
            qemu::kill(pid);
        }
        self.look();
    }

    fn report(&self, vm: &VmRecord, detail: String) {
        let state = match (self.pid, vm.power) {
            (Some(_), Power::Stopped) => "stopping",
            (Some(_), Power::Running) => "running",
            (None, _) if self.failure.is_some() => "failed",
            (None, _) => "stopped",
        };
        self.inner.board.set(
            self.id,
            Status {
                state: state.into(),
                detail,
                accel: if self.pid.is_some() {
                    self.accel.clone()
                } else {
                    String::new()
                },
                pid: self.pid.unwrap_or(0),
                restarts: self.restarts,
                address: self.address.clone(),
            },
        );
    }

    /// Until the record changes, QEMU says something, or it is time to look.
    async fn wait(&mut self, desired: &mut watch::Receiver<Option<VmRecord>>) {
        let event = async {
            match self.qmp.as_mut() {
                Some(qmp) => qmp.next_event(LOOK_EVERY).await,
                None => {
                    tokio::time::sleep(LOOK_EVERY).await;
                    Ok(None)
                }
            }
        };
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    // The agent went (the node stops): QEMU keeps running.
                    std::future::pending::<()>().await;
                }
            }
            event = event => match event {
                Ok(Some(event)) if event.name == "SHUTDOWN" => {
                    if event.data["guest"] == serde_json::json!(true) && self.exit == Exit::None {
                        // A power-off the agent asked for is a stop.
                        self.exit = if self.powerdown_at.is_some() {
                            Exit::Stopped
                        } else {
                            Exit::Guest
                        };
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    // QEMU closed QMP: it exits; `look` notices.
                    self.qmp = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn launch(&mut self, vm: &VmRecord, incoming: bool) -> Result<u32, String> {
        let inner = self.inner.clone();
        let config = &inner.config;
        let accel = match config.accel {
            Some(a) => a,
            None => {
                inner
                    .accel
                    .get_or_init(|| async {
                        let probed = qemu::probe_accel(&config.qemu).await;
                        tracing::info!(accel = probed.0.as_str(), reason = %probed.1, "VM acceleration");
                        probed
                    })
                    .await
                    .0
            }
        };
        let drives = vm
            .disks
            .iter()
            .map(|d| {
                Ok(Drive {
                    uri: inner.volumes.uri(vm, d.id)?,
                    read_only: d.read_only,
                    id: d.id,
                    slot: d.slot,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let kernel = match &vm.boot {
            Some(boot) => Some(Kernel {
                kernel: self
                    .boot_file(vm, boot.kernel_id, boot.kernel_bytes)
                    .await?,
                initrd: match boot.initrd_id {
                    0 => None,
                    id => Some(self.boot_file(vm, id, boot.initrd_bytes).await?),
                },
                cmdline: boot.cmdline.clone(),
            }),
            None => None,
        };
        let nic = match &inner.network {
            Some(net) => Some((net.create_tap(vm.id)?, net.address_of(vm.id)?)),
            None => None,
        };
        let static_address = match (&inner.network, &nic) {
            (Some(net), Some((_, address))) => Some(crate::seed::StaticAddress {
                mac: parse_mac(&vm.mac)?,
                address: (*address).into(),
                prefix_len: net.prefix_len,
                gateway: net.gateway.into(),
                dns: Vec::new(),
            }),
            _ => None,
        };
        self.address = nic.as_ref().map(|(_, a)| a.to_string()).unwrap_or_default();
        let seed = if vm.needs_seed() || static_address.is_some() {
            Some(self.write_seed(vm, static_address)?)
        } else {
            let _ = std::fs::remove_file(self.dir.join(qemu::SEED_FILE));
            None
        };
        let launch = Launch {
            dir: self.dir.clone(),
            name: vm.name.clone(),
            cpus: vm.cpus,
            memory_mib: vm.memory_mib,
            accel,
            drives,
            kernel,
            seed,
            mac: vm.mac.clone(),
            tap: nic.map(|(tap, _)| tap),
            incoming,
            hotplug_ports: qemu::hotplug_ports(vm.disks.iter().map(|d| d.slot)),
        };
        let pid = qemu::start(&config.qemu, &launch).await?;
        self.accel = accel.as_str().into();
        Ok(pid)
    }

    /// The kernel or initrd in snapshot volume `id`, `bytes` long, copied
    /// once into the node's cache (snapshots never change).
    async fn boot_file(&self, vm: &VmRecord, id: u64, bytes: u64) -> Result<PathBuf, String> {
        let cache = self.inner.config.dir.join("cache");
        make_private_dir(&cache).map_err(|e| format!("boot file cache: {e}"))?;
        let path = cache.join(id.to_string());
        if path.exists() {
            return Ok(path);
        }
        let uri = self.inner.volumes.uri(vm, id)?;
        let tmp = cache.join(format!("{id}.tmp"));
        let out = tokio::process::Command::new(&self.inner.config.qemu_img)
            .args(["convert", "-f", "raw", "-O", "raw", &uri])
            .arg(&tmp)
            .output()
            .await
            .map_err(|e| format!("qemu-img: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot read boot file {id}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_len(bytes).map(|()| f))
            .map_err(|e| format!("boot file {id}: {e}"))?;
        file.sync_all()
            .map_err(|e| format!("boot file {id}: {e}"))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("boot file {id}: {e}"))?;
        Ok(path)
    }

    fn write_seed(
        &self,
        vm: &VmRecord,
        network: Option<crate::seed::StaticAddress>,
    ) -> Result<PathBuf, String> {
        let seed = crate::seed::Seed {
            instance_id: format!("vm-{:x}", vm.id),
            hostname: vm.name.clone(),
            user_data: vm.user_data.as_ref().map(|d| d.as_bytes().to_vec()),
            ssh_keys: vm.ssh_keys.clone(),
            network,
        };
        let image = crate::seed::build(&seed).map_err(|e| format!("cloud-init seed: {e}"))?;
        let path = self.dir.join(qemu::SEED_FILE);
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(&image))
            .map_err(|e| format!("cloud-init seed: {e}"))?;
        Ok(path)
    }

    /// The record is gone: stop QEMU, forget the VM.
    async fn destroy(&mut self) {
        self.look();
        if let Some(pid) = self.pid {
            self.pull_plug(pid).await;
        }
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
        if let Some(net) = &self.inner.network {
            net.release(self.id);
        }
        self.inner.board.forget(self.id);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(vm = self.id, error = %e, "cannot remove the VM's directory");
        }
    }
}
