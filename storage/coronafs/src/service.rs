//! The NBD service on every shard: the listener, the handshake, the move of
//! a connection to its volume's owner shard, the owner's store, and the
//! control plane's volume commands.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use photon_core::service::{BoxError, ShardContext, ShardService};
use photon_core::ShardId;
use photon_iam::{Directory, Scope};
use photon_records::attach_resource_id;
use photon_volume::{Store, StoreConfig};

use crate::catalog::{VolumeCatalog, VolumeEvent, VolumeLink};
use crate::command::{VolumeCommand, VolumeOp};
use crate::handshake::{negotiate, Export, Negotiated};
use crate::metrics::NbdMetrics;
use photon_core::gate::{Gate, Ticket};
use photon_core::mailbox::MailboxReceiver;

/// The NBD service's settings.
#[derive(Clone)]
pub struct NbdParams {
    pub listen: SocketAddr,
    /// `<data>/volumes`; shard `n` keeps its store in `shard-<n>`.
    pub dir: PathBuf,
    /// This node's id (volume records name the node that holds them).
    pub node: u64,
    pub directory: Arc<Directory>,
    /// The typed link from the control plane (volume records and commands).
    pub control: VolumeLink,
    pub journal_bytes_max: u64,
}

/// What a shard sends a volume's owner: a connection past its handshake.
pub enum NbdRequest {
    Adopt { fd: OwnedFd, session: Negotiated },
}

pub struct NbdService {
    store: Rc<Store>,
    params: NbdParams,
    /// This shard's copy of the volume records.
    catalog: VolumeCatalog,
    /// Events from the control plane, until `run` takes them.
    events: RefCell<Option<MailboxReceiver<VolumeEvent>>>,
    listener: RefCell<Option<TcpListener>>,
    metrics: Rc<NbdMetrics>,
    /// Admission of this shard's NBD connections (`limits.*`): the
    /// handshake is the authentication (an attach token).
    gate: Rc<Gate>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl NbdService {
    /// The export an attach token opens, or why not (sent to the client as
    /// `NBD_REP_ERR_POLICY`).
    fn resolve(&self, token: &str, shards: usize) -> Result<Export, String> {
        if token.is_empty() {
            return Err("the export name must be an attach token: run `photon ctl volume attach NAME` and use the URI it prints".into());
        }
        let snapshot = self.params.directory.snapshot();
        let (identity, resource) = snapshot
            .verify_attachment(token, now_ms())
            .map_err(|e| format!("attach token refused: {e}"))?;
        let id = attach_resource_id(&resource)
            .ok_or_else(|| "attach token refused: it is not for a volume".to_owned())?;
        let volume = self
            .catalog
            .get(id)
            .ok_or_else(|| "the volume of this attach token no longer exists".to_owned())?;
        if volume.tenant != identity.tenant() || volume.project != identity.project() {
            return Err("attach token refused: the volume is not in the token's project".into());
        }
        snapshot
            .authorize(
                &identity,
                Scope::Project,
                "volume:Attach",
                &volume.resource(),
            )
            .map_err(|e| e.to_string())?;
        if volume.node != self.params.node {
            return Err(format!(
                "volume {} is served by node {}, not this one",
                volume.name, volume.node
            ));
        }
        if volume.shard as usize >= shards {
            return Err(format!(
                "volume {} lives on shard {} but this node runs {shards} shards",
                volume.name, volume.shard
            ));
        }
        // The session may move to the owner shard: it carries its own copy.
        Ok(Export::new(Arc::new(photon_records::VolumeRecord::clone(
            &volume,
        ))))
    }

    async fn connection(
        self: Rc<Self>,
        ctx: ShardContext<Self>,
        mut stream: TcpStream,
        ticket: Ticket,
    ) {
        let shards = ctx.shards();
        let this = self.clone();
        let handshake =
            async { Some(negotiate(&mut stream, |token| this.resolve(token, shards)).await) };
        let timeout = async {
            futures_lite::future::or(
                glommio::timer::sleep(ticket.limits().handshake_timeout),
                ticket.evicted(),
            )
            .await;
            None
        };
        let session = match futures_lite::future::or(handshake, timeout).await {
            Some(Ok(session)) => session,
            Some(Err(e)) => {
                self.metrics.handshakes_refused.inc();
                tracing::debug!(error = %e, "NBD handshake ended");
                return;
            }
            None => {
                self.metrics.handshakes_refused.inc();
                tracing::debug!("NBD handshake timed out");
                return;
            }
        };
        ticket.mark().set();
        let owner = session.export.volume.shard as ShardId;
        if owner == ctx.shard() {
            self.serve(&ctx, stream, session).await;
            drop(ticket);
            return;
        }
        // The owner counts it from here on.
        drop(ticket);
        // Move the socket to the owner: its data path stays on one core.
        // SAFETY: dup returns a new descriptor we own (or -1, checked).
        let fd = unsafe { libc::dup(stream.as_raw_fd()) };
        if fd < 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot hand an NBD connection over");
            return;
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        drop(stream);
        match ctx.call(owner, NbdRequest::Adopt { fd, session }).await {
            Ok(()) => self.metrics.handoffs.inc(),
            Err(e) => {
                tracing::warn!(error = %e, owner, "the owner shard did not take the NBD connection")
            }
        }
    }

    async fn serve(&self, ctx: &ShardContext<Self>, stream: TcpStream, session: Negotiated) {
        crate::transmission::serve(
            stream,
            session,
            self.store.clone(),
            self.metrics.clone(),
            ctx.latency_queue(),
        )
        .await
    }

    /// Drops extent maps of volumes that no record names (a snapshot or
    /// clone whose record was never committed, a delete interrupted by a
    /// crash). Runs once, before any command, after the catalog loaded.
    async fn reconcile(&self, ctx: &ShardContext<Self>) {
        let known: std::collections::HashSet<u64> = self
            .catalog
            .ids_on(self.params.node, ctx.shard() as u32)
            .into_iter()
            .collect();
        for id in self.store.map_ids() {
            if !known.contains(&id) {
                tracing::info!(
                    shard = ctx.shard(),
                    map = id,
                    "dropping the data of a volume no record names"
                );
                if let Err(e) = self.store.drop_map(id).await {
                    tracing::warn!(error = %e, "cannot drop an orphan volume map");
                }
            }
        }
    }

    /// Follows the control plane: catalog changes apply at once; commands
    /// wait until the first full load was reconciled with the store.
    async fn follow_control(
        self: Rc<Self>,
        ctx: ShardContext<Self>,
        events: MailboxReceiver<VolumeEvent>,
    ) {
        let mut waiting = Vec::new();
        while let Some(event) = events.recv().await {
            match event {
                VolumeEvent::Command(command) if self.catalog.is_loaded() => {
                    self.run_command(&ctx, command);
                }
                VolumeEvent::Command(command) => waiting.push(command),
                change => {
                    let first_load = !self.catalog.is_loaded();
                    self.catalog.apply(change);
                    if first_load && self.catalog.is_loaded() {
                        self.reconcile(&ctx).await;
                        for command in waiting.drain(..) {
                            self.run_command(&ctx, command);
                        }
                    }
                }
            }
        }
    }

    fn run_command(&self, ctx: &ShardContext<Self>, command: VolumeCommand) {
        let store = self.store.clone();
        ctx.spawn(async move {
            let result = match command.op {
                VolumeOp::Copy { from, to } => store.copy_map(from, to).await.map(|()| 0),
                VolumeOp::Drop { id } => store.drop_map(id).await.map(|()| 0),
                VolumeOp::Usage { id } => Ok(store.allocated_bytes(id)),
            };
            let _ = command.reply.send(result.map_err(|e| e.to_string()));
        })
        .detach();
    }

    async fn mirror_stats(self: Rc<Self>, shard: ShardId) {
        let component = format!("volume store shard {shard}");
        loop {
            if self.store.has_failed() {
                photon_core::health::report_failed(
                    &component,
                    "a sync failed; the store refuses writes until photon restarts",
                );
            }
            let s = self.store.stats();
            self.metrics.store_syncs.mirror(s.syncs);
            self.metrics.store_records.mirror(s.records_written);
            self.metrics.store_cow_copies.mirror(s.cow_copies);
            self.metrics.store_slots_used.set(s.slots_used as i64);
            glommio::timer::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl ShardService for NbdService {
    type Params = NbdParams;
    type Request = NbdRequest;
    type Reply = ();
    const NAME: &'static str = "nbd";

    async fn start(ctx: &ShardContext<Self>, params: &NbdParams) -> Result<Self, BoxError> {
        let mut config = StoreConfig::new(params.dir.join(format!("shard-{}", ctx.shard())));
        config.journal_bytes_max = params.journal_bytes_max;
        let store = Store::open(config).await?;
        let s = store.stats();
        tracing::info!(
            shard = ctx.shard(),
            maps = store.map_ids().len(),
            slots_used = s.slots_used,
            torn_journal_tail = s.torn_tail_at_open,
            "volume store open"
        );
        let listener = ctx.listen("nbd", params.listen)?;
        let events = params
            .control
            .take_receiver(ctx.shard())
            .ok_or("the NBD service's control link has no receiver for this shard")?;
        Ok(Self {
            store,
            params: params.clone(),
            catalog: VolumeCatalog::default(),
            events: RefCell::new(Some(events)),
            listener: RefCell::new(Some(listener)),
            metrics: Rc::new(NbdMetrics::new(ctx.metrics())),
            gate: Gate::new(ctx.config().limits.per_shard(ctx.shards())),
        })
    }

    async fn run(self: Rc<Self>, ctx: ShardContext<Self>) {
        let Some(listener) = self.listener.borrow_mut().take() else {
            return;
        };
        let background = ctx.spawn_bulk(self.store.clone().background());
        let events = self.events.borrow_mut().take();
        let commands =
            events.map(|events| ctx.spawn(self.clone().follow_control(ctx.clone(), events)));
        let stats = ctx.spawn_bulk(self.clone().mirror_stats(ctx.shard()));
        loop {
            let accept = async {
                self.gate.room().await;
                Some(listener.accept().await)
            };
            let drain = async {
                ctx.shutdown().draining().await;
                None
            };
            match futures_lite::future::or(accept, drain).await {
                None => break,
                Some(Ok(stream)) => {
                    let Some(source) = stream.peer_addr().ok().map(|a| a.ip()) else {
                        continue;
                    };
                    let Ok(ticket) = self.gate.admit(source) else {
                        self.metrics.handshakes_refused.inc();
                        continue; // too many strangers from there: closed
                    };
                    ctx.spawn(self.clone().connection(ctx.clone(), stream, ticket))
                        .detach();
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "NBD accept failed");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        drop(commands);
        drop(stats);
        drop(background);
    }

    async fn handle(self: Rc<Self>, ctx: &ShardContext<Self>, _from: ShardId, request: NbdRequest) {
        match request {
            NbdRequest::Adopt { fd, session } => {
                // SAFETY: the descriptor is ours (moved in) and a TCP socket.
                let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
                let source = stream
                    .peer_addr()
                    .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| {
                        a.ip()
                    });
                let ticket = self.gate.adopt(source);
                let this = self.clone();
                let ctx2 = ctx.clone();
                ctx.spawn(async move {
                    this.serve(&ctx2, stream, session).await;
                    drop(ticket);
                })
                .detach();
            }
        }
    }

    async fn stop(&self, ctx: &ShardContext<Self>) {
        let s = self.store.stats();
        tracing::info!(
            shard = ctx.shard(),
            records = s.records_written,
            syncs = s.syncs,
            cow_copies = s.cow_copies,
            "volume store closing"
        );
        if let Err(e) = self.store.close().await {
            tracing::error!(shard = ctx.shard(), error = %e, "volume store did not close cleanly");
        }
    }
}
