//! The per-shard service trait and the context a service gets on each shard.

use std::cell::OnceCell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::TaskQueueHandle;

use crate::config::CoreConfig;
use crate::control::ControlHandle;
use crate::listen::{ListenError, ListenerRegistry};
use crate::mesh::{CallError, Outbound};
use crate::metrics::ShardMetrics;
use crate::shutdown::{InFlight, ShutdownSignal};
use crate::ShardId;

/// Errors a service returns from `start`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A data service that runs on every shard.
///
/// The engine creates one instance per shard with [`ShardService::start`],
/// runs [`ShardService::run`] until the node drains, routes requests that other
/// shards forward to [`ShardService::handle`], and calls
/// [`ShardService::stop`] once every shard has drained. Futures are
/// shard-local (`!Send`) on purpose: a service instance never leaves its core.
#[allow(async_fn_in_trait)]
pub trait ShardService: Sized + 'static {
    /// Settings given to every shard's instance.
    type Params: Send + Sync + 'static;
    /// What other shards forward to this one.
    type Request: Send + 'static;
    /// What this shard answers to a forwarded request.
    type Reply: Send + 'static;
    /// Name in logs, metrics and the endpoint table.
    const NAME: &'static str;

    /// Creates this shard's instance: bind listeners, open files. An error on
    /// any shard stops the engine before it serves.
    async fn start(ctx: &ShardContext<Self>, params: &Self::Params) -> Result<Self, BoxError>;

    /// Serves until `ctx.shutdown().draining()` resolves, then finishes
    /// in-flight work (bounded by `ctx.drain_deadline()`) and returns.
    async fn run(self: Rc<Self>, ctx: ShardContext<Self>);

    /// Answers a request forwarded from shard `from`.
    async fn handle(
        self: Rc<Self>,
        ctx: &ShardContext<Self>,
        from: ShardId,
        request: Self::Request,
    ) -> Self::Reply;

    /// Flushes and closes, after every shard has drained.
    fn stop(&self, _ctx: &ShardContext<Self>) -> impl Future<Output = ()> {
        async {}
    }
}

/// What every service on one shard shares.
pub(crate) struct ShardCore {
    pub shard: ShardId,
    pub shards: usize,
    pub config: Arc<CoreConfig>,
    pub metrics: ShardMetrics,
    pub shutdown: ShutdownSignal,
    pub control: ControlHandle,
    pub latency_queue: TaskQueueHandle,
    pub bulk_queue: TaskQueueHandle,
    pub listeners: Arc<ListenerRegistry>,
    pub in_flight: Rc<InFlight>,
}

/// A service's handle to its shard: identity, config, metrics, the mesh to the
/// other shards' instances of the same service, the control plane, shutdown.
pub struct ShardContext<S: ShardService> {
    pub(crate) core: Rc<ShardCore>,
    pub(crate) outbound: Rc<Outbound<S::Request, S::Reply>>,
    pub(crate) instance: Rc<OnceCell<Rc<S>>>,
}

impl<S: ShardService> Clone for ShardContext<S> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            outbound: self.outbound.clone(),
            instance: self.instance.clone(),
        }
    }
}

impl<S: ShardService> std::fmt::Debug for ShardContext<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardContext")
            .field("service", &S::NAME)
            .field("shard", &self.core.shard)
            .field("shards", &self.core.shards)
            .finish()
    }
}

impl<S: ShardService> ShardContext<S> {
    pub fn shard(&self) -> ShardId {
        self.core.shard
    }

    pub fn shards(&self) -> usize {
        self.core.shards
    }

    pub fn config(&self) -> &CoreConfig {
        &self.core.config
    }

    pub fn metrics(&self) -> &ShardMetrics {
        &self.core.metrics
    }

    pub fn shutdown(&self) -> &ShutdownSignal {
        &self.core.shutdown
    }

    pub fn control(&self) -> &ControlHandle {
        &self.core.control
    }

    /// The shard's tracker of in-flight work, which shutdown drains.
    pub fn in_flight(&self) -> &Rc<InFlight> {
        &self.core.in_flight
    }

    /// How long in-flight work may take once draining starts.
    pub fn drain_deadline(&self) -> Duration {
        Duration::from_millis(self.core.config.shutdown.drain_timeout_ms)
    }

    /// The shard that owns `key`.
    pub fn owner_of(&self, key: &[u8]) -> ShardId {
        crate::routing::owner_of(key, self.core.shards)
    }

    /// Task queue for latency-sensitive work (request handling).
    pub fn latency_queue(&self) -> TaskQueueHandle {
        self.core.latency_queue
    }

    /// Task queue for bulk work (compaction, scrubbing, background copies).
    pub fn bulk_queue(&self) -> TaskQueueHandle {
        self.core.bulk_queue
    }

    /// Runs `fut` on this shard's latency-sensitive queue.
    pub fn spawn<F: Future + 'static>(&self, fut: F) -> glommio::Task<F::Output> {
        spawn_into(fut, self.core.latency_queue)
    }

    /// Runs `fut` on this shard's bulk queue.
    pub fn spawn_bulk<F: Future + 'static>(&self, fut: F) -> glommio::Task<F::Output> {
        spawn_into(fut, self.core.bulk_queue)
    }

    /// Binds this shard's listener for `name`: every shard binds the same
    /// address with SO_REUSEPORT and the kernel spreads connections over them.
    /// Shard 0 binds first, refuses a port another process holds, and resolves
    /// port 0 for the others.
    pub fn listen(
        &self,
        name: &str,
        addr: SocketAddr,
    ) -> Result<glommio::net::TcpListener, ListenError> {
        self.core
            .listeners
            .bind(self.core.shard, name, S::NAME, addr)
    }

    /// Calls this service's instance on shard `to` (directly when `to` is this
    /// shard) and returns its reply. Waits for room when the queue to `to` is
    /// full: callers see back-pressure, queues never grow past their depth.
    pub async fn call(&self, to: ShardId, request: S::Request) -> Result<S::Reply, CallError> {
        if to == self.core.shard {
            let instance = self.local_instance()?;
            return Ok(instance.handle(self, to, request).await);
        }
        let pending = self.outbound.send(to, request).await?;
        pending.await.map_err(|_| CallError::Closed(to))
    }

    /// Like [`call`](Self::call) but fails at once with `QueueFull` instead of
    /// waiting for room; the request comes back with the error.
    pub fn try_call(
        &self,
        to: ShardId,
        request: S::Request,
    ) -> Result<impl Future<Output = Result<S::Reply, CallError>> + 'static, (CallError, S::Request)>
    {
        if to == self.core.shard {
            let instance = match self.local_instance() {
                Ok(i) => i,
                Err(e) => return Err((e, request)),
            };
            let ctx = self.clone();
            return Ok(futures_util::future::Either::Left(async move {
                Ok(instance.handle(&ctx, to, request).await)
            }));
        }
        let pending = self.outbound.try_send(to, request)?;
        Ok(futures_util::future::Either::Right(async move {
            pending.await.map_err(|_| CallError::Closed(to))
        }))
    }

    /// Forwarded calls from this shard still waiting for replies.
    pub fn pending_calls(&self) -> usize {
        self.outbound.pending()
    }

    fn local_instance(&self) -> Result<Rc<S>, CallError> {
        self.instance
            .get()
            .cloned()
            .ok_or(CallError::Closed(self.core.shard))
    }
}

pub(crate) fn spawn_into<F: Future + 'static>(
    fut: F,
    queue: TaskQueueHandle,
) -> glommio::Task<F::Output> {
    // The queues are created by the engine on this executor before any service
    // runs and never removed, so spawning into them cannot fail.
    glommio::spawn_local_into(fut, queue).expect("engine task queues exist on every shard")
}
