//! The life cycle every shard and the control-plane thread follow, driven by
//! the engine's main thread, and a tracker of in-flight work to drain.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Phases in order; a phase never goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Shard 0 starts its services alone, so it can claim listen ports first.
    StartingFirst,
    /// The other shards start their services.
    StartingRest,
    /// Every service on every shard started; serving.
    Running,
    /// Stop accepting, finish in-flight requests.
    Draining,
    /// Every shard drained (or the deadline passed): stop services and exit.
    Exit,
}

/// A shard's view of the life cycle; cheap to clone, `Send`.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<Phase>,
}

impl ShutdownSignal {
    pub fn phase(&self) -> Phase {
        *self.rx.borrow()
    }

    /// True once the node stopped accepting new work.
    pub fn is_draining(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Resolves when the life cycle reaches `phase` (at once if it has).
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.rx.clone();
        // The sender lives as long as the engine; if it is gone, the engine is
        // gone too and every wait is over.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// Resolves when the node starts draining.
    pub async fn draining(&self) {
        self.reached(Phase::Draining).await;
    }
}

/// The engine's end of the life cycle.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    tx: watch::Sender<Phase>,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(Phase::StartingFirst),
        }
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// Moves forward to `phase`; never moves back.
    pub fn advance(&self, phase: Phase) {
        self.tx.send_if_modified(|p| {
            if phase > *p {
                *p = phase;
                true
            } else {
                false
            }
        });
    }

    pub fn phase(&self) -> Phase {
        *self.tx.borrow()
    }
}

/// Counts in-flight units of work (connections, requests) on one shard so
/// shutdown can wait for them. Single-threaded: lives in an `Rc`.
#[derive(Debug, Default)]
pub struct InFlight {
    count: Cell<usize>,
    idle: Notify,
}

/// Held while one unit of work is in flight.
#[derive(Debug)]
pub struct InFlightGuard {
    owner: Rc<InFlight>,
}

impl InFlight {
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    pub fn enter(self: &Rc<Self>) -> InFlightGuard {
        self.count.set(self.count.get() + 1);
        InFlightGuard {
            owner: self.clone(),
        }
    }

    pub fn count(&self) -> usize {
        self.count.get()
    }

    /// Waits until nothing is in flight or `deadline` passes; returns how many
    /// units were still in flight (0 when fully drained).
    pub async fn wait_idle(&self, deadline: Duration) -> usize {
        let wait = async {
            while self.count.get() > 0 {
                let notified = self.idle.notified();
                if self.count.get() == 0 {
                    break;
                }
                notified.await;
            }
        };
        let timeout = glommio::timer::sleep(deadline);
        futures_lite::future::or(wait, timeout).await;
        self.count.get()
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let n = self.owner.count.get() - 1;
        self.owner.count.set(n);
        if n == 0 {
            self.owner.idle.notify_waiters();
        }
    }
}
