//! Admission of connections to a listener: what keeps a flood of idle,
//! half-sent or unauthenticated connections from using up the descriptors
//! and memory that authenticated clients need.
//!
//! Every listener (S3, NBD, admin, control, and every one added later) owns
//! one [`Gate`] per thread that accepts for it. A connection is admitted
//! with a [`Ticket`] and counts as *unauthenticated* until its protocol
//! marks it ([`AuthMark::set`]) after checking a credential. The gate holds:
//!
//! - at most `connections_max` connections: beyond that, accepting waits;
//! - at most `unauthenticated_max` unauthenticated ones: a new connection
//!   evicts the oldest unauthenticated one (its [`Ticket::evicted`] fires),
//!   so a flood only ever displaces itself while clients that authenticate
//!   keep their place;
//! - at most `per_source_unauthenticated_max` unauthenticated connections
//!   from one IP address: more are refused at once.
//!
//! Timeouts (`handshake_timeout` for connections that never authenticate,
//! `idle_timeout` between requests) are enforced by each protocol's
//! connection loop with its own executor's timers; the gate only counts.
//! Single-threaded: the gate is `Rc`-shared on its thread, the mark is the
//! only piece that may travel (inside `http` request extensions).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::local_sync::Signal;

/// The limits of one listener on one thread (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub connections_max: usize,
    pub unauthenticated_max: usize,
    pub per_source_unauthenticated_max: usize,
    /// A connection that has not authenticated within this time is closed.
    pub handshake_timeout: Duration,
    /// A connection with nothing in flight for this long is closed (where
    /// the protocol has requests; NBD and Cap'n Proto sessions that
    /// authenticated may stay idle).
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            connections_max: 10_000,
            unauthenticated_max: 1_000,
            per_source_unauthenticated_max: 100,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Set once a connection presented a valid credential. `Send + Sync` so it
/// can ride in `http::Request` extensions to the handler that checks it.
#[derive(Debug, Clone, Default)]
pub struct AuthMark(Arc<AtomicBool>);

impl AuthMark {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

struct Waiting {
    id: u64,
    source: IpAddr,
    mark: AuthMark,
    evict: Rc<Eviction>,
}

/// Fired once, and remembered (a listener that starts late still sees it).
#[derive(Default)]
struct Eviction {
    fired: Cell<bool>,
    signal: Signal,
}

impl Eviction {
    fn fire(&self) {
        self.fired.set(true);
        self.signal.notify_all();
    }

    async fn wait(&self) {
        loop {
            let listen = self.signal.listen();
            if self.fired.get() {
                return;
            }
            listen.await;
        }
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    open: usize,
    /// Unauthenticated connections, oldest first. Marked ones are dropped
    /// from it lazily (when met while counting or evicting).
    unauthenticated: VecDeque<Waiting>,
    per_source: HashMap<IpAddr, usize>,
    evicted_total: u64,
    refused_total: u64,
}

/// One listener's admission state on one thread.
pub struct Gate {
    limits: ConnectionLimits,
    state: RefCell<State>,
    /// Woken when a connection closes, for an accept loop at the limit.
    freed: Signal,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its source already holds `per_source_unauthenticated_max`
    /// unauthenticated connections.
    SourceBusy,
}

impl Gate {
    pub fn new(limits: ConnectionLimits) -> Rc<Self> {
        assert!(limits.connections_max > 0 && limits.unauthenticated_max > 0);
        Rc::new(Self {
            limits,
            state: RefCell::default(),
            freed: Signal::default(),
        })
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Waits until fewer than `connections_max` connections are open.
    pub async fn room(&self) {
        while self.state.borrow().open >= self.limits.connections_max {
            self.freed.listen().await;
        }
    }

    /// Admits a connection from `source`, evicting the oldest
    /// unauthenticated connection if there are too many.
    pub fn admit(self: &Rc<Self>, source: IpAddr) -> Result<Ticket, Refusal> {
        let mut state = self.state.borrow_mut();
        Self::forget_marked(&mut state);
        let from_source = state.per_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.limits.per_source_unauthenticated_max {
            state.refused_total += 1;
            return Err(Refusal::SourceBusy);
        }
        while state.unauthenticated.len() >= self.limits.unauthenticated_max {
            let Some(oldest) = state.unauthenticated.pop_front() else {
                break;
            };
            Self::uncount(&mut state, oldest.source);
            if !oldest.mark.is_set() {
                state.evicted_total += 1;
                oldest.evict.fire();
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        state.open += 1;
        *state.per_source.entry(source).or_insert(0) += 1;
        let mark = AuthMark::default();
        let evict = Rc::new(Eviction::default());
        state.unauthenticated.push_back(Waiting {
            id,
            source,
            mark: mark.clone(),
            evict: evict.clone(),
        });
        Ok(Ticket {
            gate: self.clone(),
            id,
            source,
            mark,
            evict,
        })
    }

    /// Admits a connection that authenticated elsewhere (an NBD socket
    /// handed over by the shard that ran its handshake): it counts toward
    /// `connections_max` but never waits among the unauthenticated.
    pub fn adopt(self: &Rc<Self>, source: IpAddr) -> Ticket {
        let mut state = self.state.borrow_mut();
        let id = state.next_id;
        state.next_id += 1;
        state.open += 1;
        let mark = AuthMark::default();
        mark.set();
        Ticket {
            gate: self.clone(),
            id,
            source,
            mark,
            evict: Rc::new(Eviction::default()),
        }
    }

    /// Drops marked connections from the unauthenticated queue.
    fn forget_marked(state: &mut State) {
        let mut kept = VecDeque::with_capacity(state.unauthenticated.len());
        let mut released = Vec::new();
        for waiting in state.unauthenticated.drain(..) {
            if waiting.mark.is_set() {
                released.push(waiting.source);
            } else {
                kept.push_back(waiting);
            }
        }
        state.unauthenticated = kept;
        for source in released {
            Self::uncount(state, source);
        }
    }

    fn uncount(state: &mut State, source: IpAddr) {
        if let Some(n) = state.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                state.per_source.remove(&source);
            }
        }
    }

    fn close(&self, id: u64, source: IpAddr) {
        let mut state = self.state.borrow_mut();
        state.open -= 1;
        if let Some(at) = state.unauthenticated.iter().position(|w| w.id == id) {
            state.unauthenticated.remove(at);
            Self::uncount(&mut state, source);
        }
        drop(state);
        self.freed.notify_all();
    }

    /// (open, unauthenticated, evicted in total, refused in total).
    pub fn counts(&self) -> (usize, usize, u64, u64) {
        let mut state = self.state.borrow_mut();
        Self::forget_marked(&mut state);
        (
            state.open,
            state.unauthenticated.len(),
            state.evicted_total,
            state.refused_total,
        )
    }
}

/// One admitted connection; dropping it closes its place.
pub struct Ticket {
    gate: Rc<Gate>,
    id: u64,
    source: IpAddr,
    mark: AuthMark,
    evict: Rc<Eviction>,
}

impl Ticket {
    /// The mark its protocol sets after a valid credential.
    pub fn mark(&self) -> &AuthMark {
        &self.mark
    }

    pub fn is_authenticated(&self) -> bool {
        self.mark.is_set()
    }

    /// Completes when the gate evicts this connection to make room (only
    /// ever while it is unauthenticated).
    pub async fn evicted(&self) {
        self.evict.wait().await;
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.gate.limits
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.close(self.id, self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn limits(unauthenticated_max: usize, per_source: usize) -> ConnectionLimits {
        ConnectionLimits {
            connections_max: 100,
            unauthenticated_max,
            per_source_unauthenticated_max: per_source,
            ..ConnectionLimits::default()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn the_oldest_unauthenticated_connection_makes_room() {
        let gate = Gate::new(limits(2, 10));
        let first = gate.admit(ip(1)).unwrap();
        let second = gate.admit(ip(1)).unwrap();
        second.mark().set();
        let third = gate.admit(ip(1)).unwrap();
        // `second` authenticated, so only `first` and `third` wait: full.
        assert_eq!(gate.counts(), (3, 2, 0, 0));
        let fourth = gate.admit(ip(2)).unwrap();
        assert_eq!(gate.counts(), (4, 2, 1, 0), "first was evicted");
        let evicted = futures_lite::future::block_on(futures_lite::future::or(
            async {
                first.evicted().await;
                true
            },
            async { false },
        ));
        assert!(evicted);
        drop(first);
        assert_eq!(gate.counts(), (3, 2, 1, 0));
        drop((second, third, fourth));
        assert_eq!(gate.counts(), (0, 0, 1, 0));
    }

    #[test]
    fn one_source_cannot_hold_every_unauthenticated_place() {
        let gate = Gate::new(limits(10, 2));
        let a = gate.admit(ip(1)).unwrap();
        let b = gate.admit(ip(1)).unwrap();
        assert_eq!(gate.admit(ip(1)).err(), Some(Refusal::SourceBusy));
        let other = gate.admit(ip(2)).unwrap();
        a.mark().set();
        let c = gate.admit(ip(1)).unwrap();
        assert_eq!(gate.counts(), (4, 3, 0, 1));
        drop((a, b, c, other));
        assert_eq!(gate.counts(), (0, 0, 0, 1));
    }
}
