//! The channel mesh of one service: a bounded request queue and a reply queue
//! from every shard to every other shard, built on glommio's shared channels
//! (SPSC rings between executors, woken through the executors' notifiers).
//!
//! Requests and replies travel on separate queues so that a shard whose request
//! queues are full can always drain its replies: back-pressure on requests can
//! never deadlock two shards that wait on each other.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Mutex;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::{GlommioError, ResourceType};
use tokio::sync::oneshot;

use crate::ShardId;

/// A request on the wire between two shards.
pub(crate) struct Envelope<Req> {
    pub id: u64,
    pub from: ShardId,
    pub request: Req,
}

/// A reply, matched to its request by `id`.
pub(crate) struct ReplyEnvelope<Rep> {
    pub id: u64,
    pub reply: Rep,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    #[error("shard {0} does not exist")]
    NoSuchShard(ShardId),
    #[error("request queue to shard {to} is full ({depth} queued)")]
    QueueFull { to: ShardId, depth: usize },
    #[error("shard {from} has {max} forwarded calls waiting for replies")]
    TooManyPending { from: ShardId, max: usize },
    #[error("shard {0} is shutting down and no longer takes requests")]
    Closed(ShardId),
}

/// The ends of the mesh that belong to one shard, before they are connected on
/// that shard's executor.
pub(crate) struct ShardEnds<Req: Send, Rep: Send> {
    request_tx: Vec<Option<SharedSender<Envelope<Req>>>>,
    request_rx: Vec<Option<SharedReceiver<Envelope<Req>>>>,
    reply_tx: Vec<Option<SharedSender<ReplyEnvelope<Rep>>>>,
    reply_rx: Vec<Option<SharedReceiver<ReplyEnvelope<Rep>>>>,
}

/// All shards' ends of one service's mesh; each shard takes its own once.
pub(crate) struct MeshWiring<Req: Send, Rep: Send> {
    ends: Vec<Mutex<Option<ShardEnds<Req, Rep>>>>,
}

impl<Req: Send + 'static, Rep: Send + 'static> MeshWiring<Req, Rep> {
    pub fn new(shards: usize, depth: usize) -> Self {
        let mut ends: Vec<ShardEnds<Req, Rep>> = (0..shards)
            .map(|_| ShardEnds {
                request_tx: (0..shards).map(|_| None).collect(),
                request_rx: (0..shards).map(|_| None).collect(),
                reply_tx: (0..shards).map(|_| None).collect(),
                reply_rx: (0..shards).map(|_| None).collect(),
            })
            .collect();
        for from in 0..shards {
            for to in 0..shards {
                if from == to {
                    continue;
                }
                let (tx, rx) = shared_channel::new_bounded(depth);
                ends[from].request_tx[to] = Some(tx);
                ends[to].request_rx[from] = Some(rx);
                // Every reply answers a request that holds a pending slot, so
                // the reply queue needs no more room than the request queue.
                let (tx, rx) = shared_channel::new_bounded(depth);
                ends[to].reply_tx[from] = Some(tx);
                ends[from].reply_rx[to] = Some(rx);
            }
        }
        Self {
            ends: ends.into_iter().map(|e| Mutex::new(Some(e))).collect(),
        }
    }

    /// Takes the ends of `shard`. Called once per shard, on that shard's thread.
    pub fn take(&self, shard: ShardId) -> ShardEnds<Req, Rep> {
        self.ends[shard]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("each shard takes its mesh ends once")
    }
}

/// Connected receivers of one shard, consumed by its dispatch loops.
pub(crate) struct Inbound<Req: Send, Rep: Send> {
    pub requests: Vec<(ShardId, ConnectedReceiver<Envelope<Req>>)>,
    pub replies: Vec<(ShardId, ConnectedReceiver<ReplyEnvelope<Rep>>)>,
    pub reply_tx: Vec<Option<ConnectedSender<ReplyEnvelope<Rep>>>>,
}

/// The sending half of one shard's mesh: forwards calls and completes replies.
pub(crate) struct Outbound<Req: Send, Rep: Send> {
    shard: ShardId,
    depth: usize,
    request_tx: Vec<Option<ConnectedSender<Envelope<Req>>>>,
    pending: RefCell<HashMap<u64, (ShardId, oneshot::Sender<Rep>)>>,
    pending_max: usize,
    next_id: Cell<u64>,
}

/// Connects every end on the current executor. All shards must do this at the
/// same time: a shared channel's connect waits for its peer.
pub(crate) async fn connect<Req: Send + 'static, Rep: Send + 'static>(
    shard: ShardId,
    ends: ShardEnds<Req, Rep>,
    depth: usize,
    pending_max: usize,
) -> (Outbound<Req, Rep>, Inbound<Req, Rep>) {
    use futures_util::future::join_all;
    let request_tx = join_all(ends.request_tx.into_iter().map(|tx| async move {
        match tx {
            Some(tx) => Some(tx.connect().await),
            None => None,
        }
    }));
    let reply_tx = join_all(ends.reply_tx.into_iter().map(|tx| async move {
        match tx {
            Some(tx) => Some(tx.connect().await),
            None => None,
        }
    }));
    let requests = join_all(
        ends.request_rx
            .into_iter()
            .enumerate()
            .filter_map(|(from, rx)| rx.map(|rx| async move { (from, rx.connect().await) })),
    );
    let replies = join_all(
        ends.reply_rx
            .into_iter()
            .enumerate()
            .filter_map(|(from, rx)| rx.map(|rx| async move { (from, rx.connect().await) })),
    );
    let (request_tx, reply_tx, requests, replies) =
        futures_util::future::join4(request_tx, reply_tx, requests, replies).await;
    (
        Outbound {
            shard,
            depth,
            request_tx,
            pending: RefCell::new(HashMap::new()),
            pending_max,
            next_id: Cell::new(0),
        },
        Inbound {
            requests,
            replies,
            reply_tx,
        },
    )
}

/// A call in flight: resolves to the reply, or `Closed` if the peer went away.
pub(crate) type PendingReply<Rep> = oneshot::Receiver<Rep>;

impl<Req: Send + 'static, Rep: Send + 'static> Outbound<Req, Rep> {
    fn sender(&self, to: ShardId) -> Result<&ConnectedSender<Envelope<Req>>, CallError> {
        match self.request_tx.get(to) {
            Some(Some(tx)) => Ok(tx),
            _ => Err(CallError::NoSuchShard(to)),
        }
    }

    fn reserve(&self, to: ShardId) -> Result<(u64, PendingReply<Rep>), CallError> {
        let mut pending = self.pending.borrow_mut();
        if pending.len() >= self.pending_max {
            return Err(CallError::TooManyPending {
                from: self.shard,
                max: self.pending_max,
            });
        }
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        pending.insert(id, (to, tx));
        Ok((id, rx))
    }

    /// Queues a request, waiting for room when the queue is full (back-pressure).
    pub async fn send(&self, to: ShardId, request: Req) -> Result<PendingReply<Rep>, CallError> {
        let tx = self.sender(to)?;
        let (id, rx) = self.reserve(to)?;
        let envelope = Envelope {
            id,
            from: self.shard,
            request,
        };
        if tx.send(envelope).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(CallError::Closed(to));
        }
        Ok(rx)
    }

    /// Queues a request only if there is room now.
    pub fn try_send(
        &self,
        to: ShardId,
        request: Req,
    ) -> Result<PendingReply<Rep>, (CallError, Req)> {
        let tx = match self.sender(to) {
            Ok(tx) => tx,
            Err(e) => return Err((e, request)),
        };
        let (id, rx) = match self.reserve(to) {
            Ok(r) => r,
            Err(e) => return Err((e, request)),
        };
        let envelope = Envelope {
            id,
            from: self.shard,
            request,
        };
        match tx.try_send(envelope) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.pending.borrow_mut().remove(&id);
                let (err, envelope) = match e {
                    GlommioError::WouldBlock(ResourceType::Channel(env)) => (
                        CallError::QueueFull {
                            to,
                            depth: self.depth,
                        },
                        env,
                    ),
                    GlommioError::Closed(ResourceType::Channel(env)) => {
                        (CallError::Closed(to), env)
                    }
                    other => unreachable!("shared channel try_send returned {other}"),
                };
                Err((err, envelope.request))
            }
        }
    }

    /// Completes the call that `id` names; a reply for a call that was given
    /// up (its receiver dropped) is discarded.
    pub fn complete(&self, reply: ReplyEnvelope<Rep>) {
        if let Some((_, tx)) = self.pending.borrow_mut().remove(&reply.id) {
            let _ = tx.send(reply.reply);
        }
    }

    /// Fails every call still waiting on `peer` (its reply queue closed):
    /// dropping the reply senders resolves those calls with `Closed`.
    pub fn fail_pending(&self, peer: ShardId) {
        self.pending.borrow_mut().retain(|_, (to, _)| *to != peer);
    }

    pub fn pending(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Closes every request queue so peers' dispatch loops end.
    pub fn close(&self) {
        for tx in self.request_tx.iter().flatten() {
            tx.close();
        }
    }
}
