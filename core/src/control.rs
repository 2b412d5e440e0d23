//! The control-plane slot: one thread running a tokio current_thread runtime
//! inside a `LocalSet` (openraft and capnp-rpc need tokio; `RpcSystem` is
//! `!Send`). It talks to the shards only through mailboxes, so a shard never
//! blocks on it.
//!
//! The engine's own channel carries only pings (for `/healthz`). A service
//! that talks to the control plane gets a typed [`crate::link`] from the
//! composition root, which knows both ends' types.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::LocalBoxFuture;
use tokio::sync::oneshot;

use crate::config::CoreConfig;
use crate::mailbox::{MailboxError, MailboxReceiver, MailboxSender};
use crate::shutdown::ShutdownSignal;
use crate::ShardId;

/// A message from a shard to the control plane on the engine's channel.
#[derive(Debug)]
pub struct FromShard {
    pub shard: ShardId,
    pub ping: Ping,
}

/// Asks the control-plane thread whether it is alive (used by `/healthz`).
#[derive(Debug)]
pub struct Ping {
    pub reply: oneshot::Sender<Pong>,
}

#[derive(Debug, Clone, Copy)]
pub struct Pong {
    /// How long the control-plane thread has been running.
    pub uptime_ms: u64,
}

/// What a control plane reports once it serves (its endpoints), or why it
/// could not start.
pub type ControlReady = Result<Vec<crate::listen::Endpoint>, String>;

/// What the control plane's main function is given.
pub struct ControlPlaneContext {
    pub config: Arc<CoreConfig>,
    /// Report readiness exactly once; the engine's start waits for it.
    pub ready: ReadySignal,
    /// Pings from every shard.
    pub from_shards: MailboxReceiver<FromShard>,
    /// How many shards the engine runs.
    pub shards: usize,
    pub shutdown: ShutdownSignal,
}

impl std::fmt::Debug for ControlPlaneContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneContext")
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// The control plane's one-shot start-up report to the engine.
#[derive(Debug)]
pub struct ReadySignal(Option<crossbeam_channel::Sender<ControlReady>>);

impl ReadySignal {
    pub(crate) fn new(tx: crossbeam_channel::Sender<ControlReady>) -> Self {
        Self(Some(tx))
    }

    /// Reports that the control plane serves (with its endpoints) or failed.
    pub fn report(&mut self, result: ControlReady) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(result);
        }
    }
}

/// The control plane's main function, run on its thread until it returns.
pub type ControlPlaneMain =
    Box<dyn FnOnce(ControlPlaneContext) -> LocalBoxFuture<'static, ()> + Send>;

/// The control plane of a node without the `control` role: it reports ready
/// at once and answers pings until the engine exits.
pub fn minimal_control_plane() -> ControlPlaneMain {
    Box::new(|mut ctx: ControlPlaneContext| {
        Box::pin(async move {
            ctx.ready.report(Ok(Vec::new()));
            serve_shard_messages(&ctx.from_shards, &ctx.shutdown).await;
        })
    })
}

/// Answers the shards' pings until the engine exits; every control plane
/// runs this beside its own work so `/healthz` can see the thread is alive.
pub async fn serve_shard_messages(
    from_shards: &MailboxReceiver<FromShard>,
    shutdown: &ShutdownSignal,
) {
    let started = Instant::now();
    loop {
        let next = tokio::select! {
            m = from_shards.recv() => m,
            () = shutdown.reached(crate::shutdown::Phase::Exit) => None,
        };
        let Some(FromShard { ping, .. }) = next else {
            break;
        };
        let uptime_ms = started.elapsed().as_millis() as u64;
        let _ = ping.reply.send(Pong { uptime_ms });
    }
}

/// A shard's handle to the control plane's thread: is it alive?
#[derive(Clone)]
pub struct ControlHandle {
    shard: ShardId,
    to_control: MailboxSender<FromShard>,
}

impl ControlHandle {
    pub(crate) fn new(shard: ShardId, to_control: MailboxSender<FromShard>) -> Self {
        Self { shard, to_control }
    }

    /// Asks the control-plane thread for a pong.
    pub async fn ping(&self) -> Result<Pong, MailboxError> {
        let (reply, rx) = oneshot::channel();
        self.to_control
            .try_send(FromShard {
                shard: self.shard,
                ping: Ping { reply },
            })
            .map_err(|(e, _)| e)?;
        rx.await.map_err(|_| MailboxError::Closed)
    }
}

/// Runs the control plane's main function on a new thread.
pub(crate) fn spawn_thread(
    main: ControlPlaneMain,
    ctx: ControlPlaneContext,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("photon-control".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the control-plane runtime");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, main(ctx));
        })
}
