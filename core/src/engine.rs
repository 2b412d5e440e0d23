//! The engine: one pinned glommio executor per shard, every registered
//! service started on every shard, the channel mesh between them, the
//! control-plane thread beside them, and the life cycle (start, run, drain,
//! exit) driven from the caller's thread.

use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures_util::future::LocalBoxFuture;
use glommio::sync::Semaphore;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

use crate::config::CoreConfig;
use crate::control::{self, ControlHandle, ControlPlaneContext, ControlPlaneMain};
use crate::listen::{Endpoint, ListenerRegistry};
use crate::mailbox::{mailbox, MailboxSender};
use crate::mesh::{self, Inbound, MeshWiring, Outbound, ReplyEnvelope};
use crate::metrics::ShardMetrics;
use crate::service::{spawn_into, BoxError, ShardContext, ShardCore, ShardService};
use crate::shutdown::{InFlight, Lifecycle, Phase, ShutdownSignal};
use crate::ShardId;

/// Startup gives up on a shard that has not reported in this long.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Extra time the main thread grants beyond the drain deadline before it
/// forces the exit phase (the shards enforce the deadline themselves).
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Shares of the latency-sensitive and bulk task queues.
pub const LATENCY_SHARES: usize = 1000;
pub const BULK_SHARES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum StartEngineError {
    #[error("service {service} failed to start on shard {shard}")]
    Service {
        service: &'static str,
        shard: ShardId,
        #[source]
        source: BoxError,
    },
    #[error("cannot spawn the thread of shard {shard}")]
    SpawnShard {
        shard: ShardId,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot spawn the control-plane thread")]
    SpawnControl(#[source] std::io::Error),
    #[error("shard {0} exited during start-up")]
    ShardDied(ShardId),
    #[error("shard {0} did not finish starting within {START_TIMEOUT:?}")]
    StartTimeout(ShardId),
    #[error("the control plane failed to start: {0}")]
    Control(String),
}

enum Report {
    Started(ShardId, Result<(), StartEngineError>),
    Drained(ShardId),
    Exited(ShardId),
}

/// Tells the main thread that a shard's thread ended, however it ended.
struct ExitReporter {
    shard: ShardId,
    reports: Sender<Report>,
}

impl Drop for ExitReporter {
    fn drop(&mut self) {
        let _ = self.reports.send(Report::Exited(self.shard));
    }
}

/// A registered service, type-erased so shards can hold a list of them.
trait ServiceSlot: Send + Sync {
    fn instantiate(
        self: Arc<Self>,
        core: Rc<ShardCore>,
    ) -> LocalBoxFuture<'static, Box<dyn Instance>>;
}

/// A service on one shard.
trait Instance {
    fn name(&self) -> &'static str;
    fn start(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>>;
    fn run(&mut self) -> LocalBoxFuture<'static, ()>;
    fn stop(&self) -> LocalBoxFuture<'static, ()>;
    fn close(&self);
}

struct Slot<S: ShardService> {
    params: S::Params,
    wiring: MeshWiring<S::Request, S::Reply>,
    depth: usize,
    pending_max: usize,
    inflight_max: usize,
}

struct LiveInstance<S: ShardService> {
    slot: Arc<Slot<S>>,
    ctx: ShardContext<S>,
    inbound: Option<Inbound<S::Request, S::Reply>>,
}

impl<S: ShardService> ServiceSlot for Slot<S> {
    fn instantiate(
        self: Arc<Self>,
        core: Rc<ShardCore>,
    ) -> LocalBoxFuture<'static, Box<dyn Instance>> {
        Box::pin(async move {
            let ends = self.wiring.take(core.shard);
            let (outbound, inbound) =
                mesh::connect(core.shard, ends, self.depth, self.pending_max).await;
            let ctx = ShardContext {
                core,
                outbound: Rc::new(outbound),
                instance: Rc::new(OnceCell::new()),
            };
            Box::new(LiveInstance {
                slot: self,
                ctx,
                inbound: Some(inbound),
            }) as Box<dyn Instance>
        })
    }
}

impl<S: ShardService> Instance for LiveInstance<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn start(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let service = S::start(&self.ctx, &self.slot.params).await?;
            let _ = self.ctx.instance.set(Rc::new(service));
            Ok(())
        })
    }

    fn run(&mut self) -> LocalBoxFuture<'static, ()> {
        let ctx = self.ctx.clone();
        let Some(instance) = ctx.instance.get().cloned() else {
            return Box::pin(async {});
        };
        if let Some(inbound) = self.inbound.take() {
            spawn_dispatch(&ctx, &instance, inbound, self.slot.inflight_max);
        }
        Box::pin(instance.run(ctx))
    }

    fn stop(&self) -> LocalBoxFuture<'static, ()> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            if let Some(instance) = ctx.instance.get().cloned() {
                instance.stop(&ctx).await;
            }
        })
    }

    fn close(&self) {
        self.ctx.outbound.close();
    }
}

/// Starts the loops that serve requests forwarded by peers and complete the
/// replies to this shard's own calls.
fn spawn_dispatch<S: ShardService>(
    ctx: &ShardContext<S>,
    instance: &Rc<S>,
    inbound: Inbound<S::Request, S::Reply>,
    inflight_max: usize,
) {
    let permits = Rc::new(Semaphore::new(inflight_max as u64));
    let reply_tx = Rc::new(inbound.reply_tx);
    for (from, rx) in inbound.requests {
        let (ctx, instance, permits, reply_tx) = (
            ctx.clone(),
            instance.clone(),
            permits.clone(),
            reply_tx.clone(),
        );
        let queue = ctx.latency_queue();
        spawn_into(
            async move {
                while let Some(envelope) = rx.recv().await {
                    // A shard handles at most `inflight_max` forwarded requests
                    // at once; beyond that the peers' queues fill and they wait.
                    let Ok(permit) = permits.acquire_static_permit(1).await else {
                        break;
                    };
                    let (ctx, instance, reply_tx) =
                        (ctx.clone(), instance.clone(), reply_tx.clone());
                    ctx.clone()
                        .spawn(async move {
                            let reply =
                                instance.handle(&ctx, envelope.from, envelope.request).await;
                            if let Some(Some(tx)) = reply_tx.get(envelope.from) {
                                let _ = tx
                                    .send(ReplyEnvelope {
                                        id: envelope.id,
                                        reply,
                                    })
                                    .await;
                            }
                            drop(permit);
                        })
                        .detach();
                }
                tracing::trace!(service = S::NAME, from, "request queue closed");
            },
            queue,
        )
        .detach();
    }
    for (from, rx) in inbound.replies {
        let outbound: Rc<Outbound<S::Request, S::Reply>> = ctx.outbound.clone();
        spawn_into(
            async move {
                while let Some(reply) = rx.recv().await {
                    outbound.complete(reply);
                }
                outbound.fail_pending(from);
            },
            ctx.latency_queue(),
        )
        .detach();
    }
}

/// Assembles an engine: the config, the services to run on every shard, and
/// the control plane.
pub struct EngineBuilder {
    config: Arc<CoreConfig>,
    shards: usize,
    services: Vec<Arc<dyn ServiceSlot>>,
    control: Option<ControlPlaneMain>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("shards", &self.shards)
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    pub fn new(config: CoreConfig) -> Self {
        let shards = config.engine.shard_count();
        Self {
            config: Arc::new(config),
            shards,
            services: Vec::new(),
            control: None,
        }
    }

    /// Runs service `S` on every shard with `params`.
    pub fn service<S: ShardService>(mut self, params: S::Params) -> Self {
        let engine = &self.config.engine;
        self.services.push(Arc::new(Slot::<S> {
            params,
            wiring: MeshWiring::new(self.shards, engine.mesh_queue_depth),
            depth: engine.mesh_queue_depth,
            pending_max: engine.calls_pending_max,
            inflight_max: engine.forwarded_inflight_max,
        }));
        self
    }

    /// Replaces the control plane's main function (default: answers pings).
    pub fn control_plane(mut self, main: ControlPlaneMain) -> Self {
        self.control = Some(main);
        self
    }

    /// Starts the control-plane thread and every shard, then every service on
    /// shard 0, then on the others. Returns once all serve, or the first error.
    pub fn start(self) -> Result<RunningEngine, StartEngineError> {
        let shards = self.shards;
        let config = self.config.clone();
        let lifecycle = Lifecycle::new();
        let listeners = Arc::new(ListenerRegistry::default());
        let (reports_tx, reports) = crossbeam_channel::unbounded();

        let depth = config.engine.control_queue_depth;
        let (to_control, from_shards) = mailbox(depth);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let control_ctx = ControlPlaneContext {
            config: config.clone(),
            ready: control::ReadySignal::new(ready_tx),
            from_shards,
            shards,
            shutdown: lifecycle.signal(),
        };
        let control_main = self.control.unwrap_or_else(control::minimal_control_plane);
        let control_thread = control::spawn_thread(control_main, control_ctx)
            .map_err(StartEngineError::SpawnControl)?;

        let mut engine = RunningEngine {
            config: config.clone(),
            lifecycle,
            listeners: listeners.clone(),
            reports,
            threads: Vec::with_capacity(shards),
            control_thread: Some(control_thread),
            drained: vec![false; shards],
            exited: vec![false; shards],
            started_at: Instant::now(),
            control_endpoints: Vec::new(),
        };
        let cpus = if config.engine.cpu_list.is_empty() {
            allowed_cpus()
        } else {
            config.engine.cpu_list.clone()
        };
        let services = Arc::new(self.services);
        for shard in 0..shards {
            let spawn = spawn_shard(ShardSpec {
                shard,
                shards,
                config: config.clone(),
                services: services.clone(),
                listeners: listeners.clone(),
                signal: engine.lifecycle.signal(),
                to_control: to_control.clone(),
                reports: reports_tx.clone(),
                cpu: cpus[shard % cpus.len()],
            });
            match spawn {
                Ok(handle) => engine.threads.push(handle),
                Err(e) => {
                    engine.abort();
                    return Err(e);
                }
            }
        }
        drop(to_control);
        drop(reports_tx);
        engine.wait_started(0..1)?;
        engine.lifecycle.advance(Phase::StartingRest);
        engine.wait_started(1..shards)?;
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(endpoints)) => engine.control_endpoints = endpoints,
            Ok(Err(reason)) => {
                engine.abort();
                return Err(StartEngineError::Control(reason));
            }
            Err(_) => {
                engine.abort();
                return Err(StartEngineError::Control(format!(
                    "it did not report ready within {START_TIMEOUT:?}"
                )));
            }
        }
        engine.lifecycle.advance(Phase::Running);
        tracing::info!(shards, "engine running");
        Ok(engine)
    }
}

struct ShardSpec {
    shard: ShardId,
    shards: usize,
    config: Arc<CoreConfig>,
    services: Arc<Vec<Arc<dyn ServiceSlot>>>,
    listeners: Arc<ListenerRegistry>,
    signal: ShutdownSignal,
    to_control: MailboxSender<control::FromShard>,
    reports: Sender<Report>,
    cpu: usize,
}

fn spawn_shard(spec: ShardSpec) -> Result<JoinHandle<()>, StartEngineError> {
    let shard = spec.shard;
    let engine = &spec.config.engine;
    let placement = if engine.pin {
        Placement::Fixed(spec.cpu)
    } else {
        Placement::Unbound
    };
    let mut builder = LocalExecutorBuilder::new(placement)
        .name(&format!("photon-shard-{shard}"))
        .io_memory(engine.io_memory_mib << 20)
        .preempt_timer(Duration::from_millis(engine.preempt_timer_ms));
    if engine.spin_before_park_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(engine.spin_before_park_us));
    }
    let handle =
        builder
            .spawn(move || shard_main(spec))
            .map_err(|e| StartEngineError::SpawnShard {
                shard,
                source: std::io::Error::other(e.to_string()),
            })?;
    // glommio's handle joins to a Result; the thread's own outcome reaches the
    // main thread through the report channel, so a plain join is enough here.
    Ok(std::thread::spawn(move || {
        if let Err(e) = handle.join() {
            tracing::error!(shard, error = %e, "shard thread failed");
        }
    }))
}

async fn shard_main(spec: ShardSpec) {
    let ShardSpec {
        shard,
        shards,
        config,
        services,
        listeners,
        signal,
        to_control,
        reports,
        cpu: _,
    } = spec;
    let _exit = ExitReporter {
        shard,
        reports: reports.clone(),
    };
    let executor = glommio::executor();
    let preempt = Duration::from_millis(config.engine.preempt_timer_ms);
    let latency_queue = executor.create_task_queue(
        Shares::Static(LATENCY_SHARES),
        Latency::Matters(preempt),
        "latency",
    );
    let bulk_queue =
        executor.create_task_queue(Shares::Static(BULK_SHARES), Latency::NotImportant, "bulk");
    let control = ControlHandle::new(shard, to_control);
    let core = Rc::new(ShardCore {
        shard,
        shards,
        config,
        metrics: ShardMetrics::new(),
        shutdown: signal.clone(),
        control,
        latency_queue,
        bulk_queue,
        listeners,
        in_flight: InFlight::new(),
    });

    let mut instances = futures_util::future::join_all(
        services.iter().map(|s| s.clone().instantiate(core.clone())),
    )
    .await;

    signal
        .reached(if shard == 0 {
            Phase::StartingFirst
        } else {
            Phase::StartingRest
        })
        .await;
    if signal.phase() < Phase::Draining {
        let mut result = Ok(());
        for instance in &mut instances {
            if let Err(source) = instance.start().await {
                result = Err(StartEngineError::Service {
                    service: instance.name(),
                    shard,
                    source,
                });
                break;
            }
        }
        let failed = result.is_err();
        let _ = reports.send(Report::Started(shard, result));
        if !failed {
            signal.reached(Phase::Running).await;
            if signal.phase() < Phase::Exit {
                let runs = futures_util::future::join_all(instances.iter_mut().map(|i| i.run()));
                futures_lite::future::or(runs, async {
                    signal.reached(Phase::Exit).await;
                    Vec::new()
                })
                .await;
            }
            let _ = reports.send(Report::Drained(shard));
        }
    }
    signal.reached(Phase::Exit).await;
    for instance in &instances {
        instance.stop().await;
    }
    for instance in &instances {
        instance.close();
    }
    tracing::debug!(shard, "shard exits");
}

/// CPUs this process may run on, in order (from `sched_getaffinity`).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; zeroed is a valid empty set, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the pointer and size describe `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    let cpus: Vec<usize> = if rc == 0 {
        // SAFETY: `set` was filled by the kernel; CPU_ISSET only reads it.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    } else {
        cpus
    }
}

/// How a shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Shards that finished all in-flight work before the deadline.
    pub drained: usize,
    pub shards: usize,
    pub elapsed: Duration,
}

impl ShutdownReport {
    pub fn clean(&self) -> bool {
        self.drained == self.shards
    }
}

/// Why `run_until_signal` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Signal(i32),
    ShardDied(ShardId),
}

/// A started engine. Dropping it without `shutdown` aborts it.
pub struct RunningEngine {
    config: Arc<CoreConfig>,
    lifecycle: Lifecycle,
    listeners: Arc<ListenerRegistry>,
    reports: Receiver<Report>,
    threads: Vec<JoinHandle<()>>,
    control_thread: Option<JoinHandle<()>>,
    drained: Vec<bool>,
    exited: Vec<bool>,
    started_at: Instant,
    control_endpoints: Vec<Endpoint>,
}

impl std::fmt::Debug for RunningEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEngine")
            .field("shards", &self.threads.len())
            .field("phase", &self.lifecycle.phase())
            .finish_non_exhaustive()
    }
}

impl RunningEngine {
    pub fn shards(&self) -> usize {
        self.drained.len()
    }

    /// Every endpoint the services and the control plane bound, by name.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut all = self.listeners.endpoints();
        all.extend(self.control_endpoints.iter().cloned());
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The resolved address of the listener called `name`.
    pub fn endpoint(&self, name: &str) -> Option<std::net::SocketAddr> {
        self.endpoints()
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.addr)
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    fn wait_started(&mut self, range: std::ops::Range<ShardId>) -> Result<(), StartEngineError> {
        let mut waiting: Vec<ShardId> = range.collect();
        let deadline = Instant::now() + START_TIMEOUT;
        while !waiting.is_empty() {
            let timeout = deadline.saturating_duration_since(Instant::now());
            let report = match self.reports.recv_timeout(timeout) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    let e = StartEngineError::StartTimeout(waiting[0]);
                    self.abort();
                    return Err(e);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let e = StartEngineError::ShardDied(waiting[0]);
                    self.abort();
                    return Err(e);
                }
            };
            match report {
                Report::Started(shard, Ok(())) => waiting.retain(|s| *s != shard),
                Report::Started(_, Err(e)) => {
                    self.abort();
                    return Err(e);
                }
                Report::Exited(shard) => {
                    self.exited[shard] = true;
                    self.abort();
                    return Err(StartEngineError::ShardDied(shard));
                }
                Report::Drained(shard) => self.drained[shard] = true,
            }
        }
        Ok(())
    }

    /// Blocks until SIGINT or SIGTERM arrives, or a shard dies.
    pub fn wait_for_stop(&mut self) -> std::io::Result<StopReason> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let (signal_tx, signal_rx) = crossbeam_channel::bounded(1);
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let waiter = std::thread::Builder::new()
            .name("photon-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let _ = signal_tx.send(sig);
                }
            })?;
        let reason = loop {
            crossbeam_channel::select! {
                recv(signal_rx) -> sig => break StopReason::Signal(sig.unwrap_or(SIGTERM)),
                recv(self.reports) -> report => match report {
                    Ok(Report::Exited(shard)) => {
                        self.exited[shard] = true;
                        break StopReason::ShardDied(shard);
                    }
                    Ok(Report::Drained(shard)) => self.drained[shard] = true,
                    Ok(Report::Started(..)) => {}
                    Err(_) => break StopReason::ShardDied(0),
                },
            }
        };
        handle.close();
        let _ = waiter.join();
        Ok(reason)
    }

    /// Stops accepting, lets every shard drain within the configured deadline,
    /// stops the services, joins every thread.
    pub fn shutdown(mut self) -> ShutdownReport {
        let started = Instant::now();
        self.lifecycle.advance(Phase::Draining);
        let deadline =
            started + Duration::from_millis(self.config.shutdown.drain_timeout_ms) + DRAIN_GRACE;
        while self.drained.iter().zip(&self.exited).any(|(d, x)| !d && !x) {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(timeout) {
                Ok(Report::Drained(shard)) => self.drained[shard] = true,
                Ok(Report::Exited(shard)) => self.exited[shard] = true,
                Ok(Report::Started(..)) => {}
                Err(_) => break,
            }
        }
        let drained = self.drained.iter().filter(|d| **d).count();
        self.finish();
        ShutdownReport {
            drained,
            shards: self.drained.len(),
            elapsed: started.elapsed(),
        }
    }

    fn abort(&mut self) {
        self.lifecycle.advance(Phase::Exit);
        self.finish();
    }

    fn finish(&mut self) {
        self.lifecycle.advance(Phase::Exit);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(t) = self.control_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningEngine {
    fn drop(&mut self) {
        self.finish();
    }
}
