//! The control-plane slot: one thread running a tokio current_thread runtime
//! inside a `LocalSet` (openraft and capnp-rpc need tokio; `RpcSystem` is
//! `!Send`). It talks to the shards only through mailboxes, so a shard never
//! blocks on it.
//!
//! Messages are type-erased (`Box<dyn Any + Send>`) so that `photon-core`
//! needs no knowledge of the control plane's types; both ends agree on the
//! concrete types. These messages carry configuration changes, not data-path
//! requests, so the box per message is not on a hot path.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::LocalBoxFuture;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use tokio::sync::oneshot;

use crate::config::Config;
use crate::mailbox::{MailboxError, MailboxReceiver, MailboxSender};
use crate::shutdown::ShutdownSignal;
use crate::ShardId;

/// A message between the control plane and a shard.
pub type ControlMessage = Box<dyn Any + Send>;

/// A message from a shard to the control plane.
#[derive(Debug)]
pub struct FromShard {
    pub shard: ShardId,
    pub body: ControlMessage,
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
    pub config: Arc<Config>,
    /// Report readiness exactly once; the engine's start waits for it.
    pub ready: ReadySignal,
    /// Messages from every shard.
    pub from_shards: MailboxReceiver<FromShard>,
    /// One mailbox per shard, indexed by shard id.
    pub to_shards: Vec<MailboxSender<ControlMessage>>,
    pub shutdown: ShutdownSignal,
}

impl std::fmt::Debug for ControlPlaneContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneContext")
            .field("shards", &self.to_shards.len())
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

impl ControlPlaneContext {
    /// Sends `msg` to every shard; returns the shards that could not take it.
    pub fn broadcast<T: Clone + Send + 'static>(&self, msg: &T) -> Vec<(ShardId, MailboxError)> {
        let mut failed = Vec::new();
        for (shard, tx) in self.to_shards.iter().enumerate() {
            if let Err((e, _)) = tx.try_send(Box::new(msg.clone())) {
                failed.push((shard, e));
            }
        }
        failed
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
    serve_shard_messages_with(from_shards, shutdown, |msg| {
        tracing::warn!(
            shard = msg.shard,
            "control plane got a message it does not know"
        );
    })
    .await
}

/// Like [`serve_shard_messages`], handing every message other than a ping
/// to `other` (which must not block: spawn work that waits).
pub async fn serve_shard_messages_with(
    from_shards: &MailboxReceiver<FromShard>,
    shutdown: &ShutdownSignal,
    mut other: impl FnMut(FromShard),
) {
    let started = Instant::now();
    loop {
        let next = tokio::select! {
            m = from_shards.recv() => m,
            () = shutdown.reached(crate::shutdown::Phase::Exit) => None,
        };
        let Some(msg) = next else { break };
        let FromShard { shard, body } = msg;
        match body.downcast::<Ping>() {
            Ok(ping) => {
                let uptime_ms = started.elapsed().as_millis() as u64;
                let _ = ping.reply.send(Pong { uptime_ms });
            }
            Err(body) => other(FromShard { shard, body }),
        }
    }
}

/// A shard's handle to the control plane: send requests, subscribe to events.
#[derive(Clone)]
pub struct ControlHandle {
    shard: ShardId,
    to_control: MailboxSender<FromShard>,
    subscribers: Rc<RefCell<HashMap<TypeId, Subscriber>>>,
}

type Subscriber = Box<dyn Fn(ControlMessage) -> Result<(), &'static str>>;

/// Capacity of each per-type local event queue on a shard.
pub const EVENT_QUEUE_DEPTH: usize = 1024;

impl ControlHandle {
    pub(crate) fn new(shard: ShardId, to_control: MailboxSender<FromShard>) -> Self {
        Self {
            shard,
            to_control,
            subscribers: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// Sends a message to the control plane without waiting.
    pub fn send<T: Send + 'static>(&self, body: T) -> Result<(), MailboxError> {
        self.to_control
            .try_send(FromShard {
                shard: self.shard,
                body: Box::new(body),
            })
            .map_err(|(e, _)| e)
    }

    /// Asks the control-plane thread for a pong.
    pub async fn ping(&self) -> Result<Pong, MailboxError> {
        let (reply, rx) = oneshot::channel();
        self.send(Ping { reply })?;
        rx.await.map_err(|_| MailboxError::Closed)
    }

    /// Receives every control event of type `T` sent to this shard. One
    /// subscriber per type per shard; a second subscription replaces the first.
    pub fn subscribe<T: Send + 'static>(&self) -> LocalReceiver<T> {
        let (tx, rx): (LocalSender<T>, LocalReceiver<T>) =
            local_channel::new_bounded(EVENT_QUEUE_DEPTH);
        let deliver: Subscriber = Box::new(move |msg| {
            let value = msg.downcast::<T>().map_err(|_| "wrong type")?;
            tx.try_send(*value)
                .map_err(|_| "subscriber queue full or closed")
        });
        self.subscribers
            .borrow_mut()
            .insert(TypeId::of::<T>(), deliver);
        rx
    }

    /// Delivers events from the control plane to subscribers until the mailbox closes.
    pub(crate) async fn dispatch(&self, events: MailboxReceiver<ControlMessage>) {
        while let Some(msg) = events.recv().await {
            let type_id = (*msg).type_id();
            let subscribers = self.subscribers.borrow();
            match subscribers.get(&type_id) {
                Some(deliver) => {
                    if let Err(reason) = deliver(msg) {
                        tracing::warn!(shard = self.shard, reason, "control event dropped");
                    }
                }
                None => tracing::debug!(shard = self.shard, "control event with no subscriber"),
            }
        }
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
