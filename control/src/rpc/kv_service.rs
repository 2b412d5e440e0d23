//! The KV API over Cap'n Proto: conversions between the wire structs and the
//! state machine's types, writes proposed through Raft, linearizable reads
//! through openraft's read index, and watches fed by applied events.

use crate::api_error::{ApiError, Code, Reply};
use std::sync::Arc;

use capnp::capability::Rc;
use photon_iam::{Identity, Scope};
use photon_schema::kv_capnp::{kv, watch_handle, watcher};

use super::convert::wrong_response;
use super::convert::{
    bytes, kv_error, read_delete, read_put, read_range, read_txn, write_delete, write_event,
    write_put, write_range, write_txn,
};
use super::kv_scope::{resource, KeyScope};
use super::now_ms;
use super::session::Session;
use crate::kv::{Command, CommandResponse, Event, KeyValue, RequestOp, TxnRequest};
use crate::proposer::Proposer;

/// Marks a lease as a tenant's: `iam/lease/<id>` holds the tenant's key
/// prefix and lives on the lease itself, so it goes when the lease goes.
fn lease_owner_key(id: i64) -> Vec<u8> {
    format!("iam/lease/{id}").into_bytes()
}

pub struct KvService {
    proposer: Proposer,
    session: Rc<Session>,
    /// The caller's key prefix, known once its token was verified (the
    /// getter that made this service answers even for a bad token).
    scope: std::cell::OnceCell<KeyScope>,
    /// Watches open on this connection.
    watches: std::rc::Rc<std::cell::Cell<usize>>,
}

impl KvService {
    pub fn new(
        proposer: Proposer,
        session: Rc<Session>,
        watches: std::rc::Rc<std::cell::Cell<usize>>,
    ) -> Self {
        Self {
            proposer,
            session,
            scope: std::cell::OnceCell::new(),
            watches,
        }
    }

    /// The caller's key scope (verifying its token the first time).
    fn scope(&self) -> Reply<&KeyScope> {
        if let Some(scope) = self.scope.get() {
            return Ok(scope);
        }
        let identity = self.session.identity()?;
        let scope = KeyScope::for_identity(&identity);
        Ok(self.scope.get_or_init(|| scope))
    }

    /// The key scope of `identity`, a verified caller of this session.
    fn scope_of(&self, identity: &Identity) -> &KeyScope {
        self.scope.get_or_init(|| KeyScope::for_identity(identity))
    }

    fn check(&self, action: &str, key: &[u8]) -> Reply<Arc<Identity>> {
        self.session.check(Scope::Project, action, &resource(key))
    }

    /// Checks every key a txn names: compares and reads need `kv:Get`,
    /// writes `kv:Put`/`kv:Delete`.
    fn check_txn(&self, txn: &TxnRequest) -> Reply<()> {
        for c in &txn.compare {
            // A compare over a range reveals whether its keys hold: every
            // key it covers must be readable.
            self.check_range("kv:Get", &c.key, &c.range_end)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                // Reads are filtered key by key in the response.
                RequestOp::Range(r) => {
                    self.check("kv:Get", &r.key)?;
                }
                RequestOp::Put(p) => {
                    self.check("kv:Put", &p.key)?;
                }
                RequestOp::DeleteRange(d) => self.check_range("kv:Delete", &d.key, &d.range_end)?,
                RequestOp::Txn(t) => self.check_txn(t)?,
            }
        }
        Ok(())
    }

    /// Checks `action` on the start key and, for a range, on every key the
    /// range holds now (keys written between this check and the commit are
    /// not seen: the check is as of the request).
    fn check_range(&self, action: &str, key: &[u8], range_end: &[u8]) -> Reply<()> {
        let identity = self.check(action, key)?;
        if range_end.is_empty() || identity.cluster_admin {
            return Ok(());
        }
        let (start, end) = self.scope()?.range(key, range_end);
        let present = self
            .proposer
            .state_machine
            .state()
            .kv
            .range(&crate::kv::RangeRequest {
                key: start,
                range_end: end,
                keys_only: true,
                ..Default::default()
            })
            .map_err(kv_error)?;
        for kv in &present.kvs {
            self.check(action, self.scope()?.strip(&kv.key))?;
        }
        Ok(())
    }

    /// Filters and renames the results of a txn as [`visible`](Self::visible) does.
    fn visible_txn(&self, identity: &Identity, response: &mut crate::kv::TxnResponse) {
        let scope = self.scope_of(identity);
        for op in &mut response.responses {
            match op {
                crate::kv::ResponseOp::Range(r) => self.visible(identity, &mut r.kvs),
                crate::kv::ResponseOp::Put(p) => {
                    if let Some(kv) = &mut p.prev_kv {
                        scope.strip_kv(kv);
                    }
                }
                crate::kv::ResponseOp::DeleteRange(d) => {
                    d.prev_kvs.iter_mut().for_each(|kv| scope.strip_kv(kv));
                }
                crate::kv::ResponseOp::Txn(t) => self.visible_txn(identity, t),
            }
        }
    }

    /// Drops the key-values the caller may not read (a range can span keys
    /// its roles treat differently) and gives back the caller's key names.
    fn visible(&self, identity: &Identity, kvs: &mut Vec<KeyValue>) {
        let scope = self.scope_of(identity);
        if !identity.cluster_admin {
            kvs.retain(|kv| {
                self.session
                    .allows(identity, "kv:Get", &resource(scope.strip(&kv.key)))
            });
        }
        kvs.iter_mut().for_each(|kv| scope.strip_kv(kv));
    }

    /// A tenant may only use leases it granted.
    async fn check_lease(&self, id: i64) -> Reply<()> {
        if self.scope()?.is_whole() || id == 0 {
            return Ok(());
        }
        self.proposer.linearizable().await?;
        let owner = self.proposer.state_machine.get_local(&lease_owner_key(id));
        match owner {
            Some(kv) if kv.value == self.scope()?.prefix() => Ok(()),
            _ => Err(crate::kv::KvError::LeaseNotFound { id }.into()),
        }
    }
}

/// Counts one open watch on its connection for as long as it lives.
struct WatchSlot(std::rc::Rc<std::cell::Cell<usize>>);

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

// ---- calls ----

impl kv::Server for KvService {
    async fn range(
        self: Rc<Self>,
        params: kv::RangeParams,
        mut results: kv::RangeResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let wire = params.get()?.get_request()?;
            let request = read_range(wire)?;
            let identity = self.check("kv:Get", &request.key)?;
            let request = self.scope()?.map_range(request);
            if !wire.get_serializable() {
                self.proposer.linearizable().await?;
            }
            let mut response = self
                .proposer
                .state_machine
                .state()
                .kv
                .range(&request)
                .map_err(kv_error)?;
            self.visible(&identity, &mut response.kvs);
            write_range(results.get().init_response(), &response);
            Ok(())
        })
    }

    async fn put(
        self: Rc<Self>,
        params: kv::PutParams,
        mut results: kv::PutResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let request = read_put(params.get()?.get_request()?)?;
            self.check("kv:Put", &request.key)?;
            let request = self.scope()?.map_put(request)?;
            let lease = request.lease;
            let command = if lease != 0 && !self.scope()?.is_whole() {
                // The put and the lease-ownership check commit together.
                Command::Txn(TxnRequest {
                    compare: vec![crate::kv::Compare {
                        key: lease_owner_key(lease),
                        range_end: Vec::new(),
                        target: crate::kv::CompareTarget::Value(self.scope()?.prefix().to_vec()),
                        result: crate::kv::CompareResult::Equal,
                    }],
                    success: vec![RequestOp::Put(request)],
                    failure: Vec::new(),
                })
            } else {
                Command::Put(request)
            };
            let mut response = match self.proposer.propose(command).await? {
                CommandResponse::Put(response) => response,
                CommandResponse::Txn(txn) => match txn.responses.into_iter().next() {
                    Some(crate::kv::ResponseOp::Put(response)) if txn.succeeded => response,
                    _ => return Err(crate::kv::KvError::LeaseNotFound { id: lease }.into()),
                },
                _ => return Err(wrong_response()),
            };
            if let Some(kv) = &mut response.prev_kv {
                self.scope()?.strip_kv(kv);
            }
            write_put(results.get().init_response(), &response);
            Ok(())
        })
    }

    async fn delete_range(
        self: Rc<Self>,
        params: kv::DeleteRangeParams,
        mut results: kv::DeleteRangeResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let request = read_delete(params.get()?.get_request()?)?;
            self.check_range("kv:Delete", &request.key, &request.range_end)?;
            let request = self.scope()?.map_delete(request)?;
            let CommandResponse::DeleteRange(mut response) =
                self.proposer.propose(Command::DeleteRange(request)).await?
            else {
                return Err(wrong_response());
            };
            let scope = self.scope()?;
            response
                .prev_kvs
                .iter_mut()
                .for_each(|kv| scope.strip_kv(kv));
            write_delete(results.get().init_response(), &response);
            Ok(())
        })
    }

    async fn txn(
        self: Rc<Self>,
        params: kv::TxnParams,
        mut results: kv::TxnResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let request = read_txn(params.get()?.get_request()?, 1)?;
            let identity = self.session.identity()?;
            self.check_txn(&request)?;
            let request = self.scope()?.map_txn(request)?;
            let CommandResponse::Txn(mut response) =
                self.proposer.propose(Command::Txn(request)).await?
            else {
                return Err(wrong_response());
            };
            self.visible_txn(&identity, &mut response);
            write_txn(results.get().init_response(), &response);
            Ok(())
        })
    }

    async fn compact(
        self: Rc<Self>,
        params: kv::CompactParams,
        mut results: kv::CompactResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let revision = params.get()?.get_revision();
            // Compaction drops history of every tenant: the cluster admin's call.
            let identity = self.session.identity()?;
            if !identity.cluster_admin {
                return Err(ApiError::permission_denied(
                    "compaction is the cluster administrator's (it drops every tenant's history)",
                ));
            }
            let CommandResponse::Compact(response) =
                self.proposer.propose(Command::Compact(revision)).await?
            else {
                return Err(wrong_response());
            };
            results.get().set_revision(response.revision);
            Ok(())
        })
    }

    async fn lease_grant(
        self: Rc<Self>,
        params: kv::LeaseGrantParams,
        mut results: kv::LeaseGrantResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            self.session
                .check(Scope::Project, "kv:LeaseGrant", "kv/lease")?;
            let command = Command::LeaseGrant {
                id: p.get_id(),
                ttl_ms: p.get_ttl_ms(),
            };
            let CommandResponse::LeaseGrant(response) = self.proposer.propose(command).await?
            else {
                return Err(wrong_response());
            };
            if !self.scope()?.is_whole() {
                // Record the owner on the lease itself. Should this fail, the
                // lease is unusable by anyone but the admin and simply expires.
                let owner = crate::kv::PutRequest {
                    key: lease_owner_key(response.id),
                    value: self.scope()?.prefix().to_vec(),
                    lease: response.id,
                    ..Default::default()
                };
                self.proposer.propose(Command::Put(owner)).await?;
            }
            let mut r = results.get();
            r.set_id(response.id);
            r.set_ttl_ms(response.ttl_ms);
            Ok(())
        })
    }

    async fn lease_revoke(
        self: Rc<Self>,
        params: kv::LeaseRevokeParams,
        mut results: kv::LeaseRevokeResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let id = params.get()?.get_id();
            self.session
                .check(Scope::Project, "kv:LeaseRevoke", "kv/lease")?;
            self.check_lease(id).await?;
            let CommandResponse::LeaseRevoke(response) =
                self.proposer.propose(Command::LeaseRevoke { id }).await?
            else {
                return Err(wrong_response());
            };
            results.get().set_revision(response.revision);
            Ok(())
        })
    }

    async fn lease_keep_alive(
        self: Rc<Self>,
        params: kv::LeaseKeepAliveParams,
        mut results: kv::LeaseKeepAliveResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let id = params.get()?.get_id();
            self.session
                .check(Scope::Project, "kv:LeaseKeepAlive", "kv/lease")?;
            self.check_lease(id).await?;
            let CommandResponse::LeaseKeepAlive(response) = self
                .proposer
                .propose(Command::LeaseKeepAlive { id })
                .await?
            else {
                return Err(wrong_response());
            };
            results.get().set_ttl_ms(response.ttl_ms);
            Ok(())
        })
    }

    async fn lease_time_to_live(
        self: Rc<Self>,
        params: kv::LeaseTimeToLiveParams,
        mut results: kv::LeaseTimeToLiveResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            self.session
                .check(Scope::Project, "kv:GetLease", "kv/lease")?;
            self.check_lease(p.get_id()).await?;
            self.proposer.linearizable().await?;
            let response = self
                .proposer
                .state_machine
                .state()
                .kv
                .lease_time_to_live(p.get_id(), now_ms(), p.get_keys())
                .map_err(kv_error)?;
            let scope = self.scope()?;
            let keys: Vec<&[u8]> = response
                .keys
                .iter()
                .filter(|k| scope.is_whole() || k.starts_with(scope.prefix()))
                .map(|k| scope.strip(k))
                .collect();
            let mut r = results.get();
            r.set_granted_ttl_ms(response.granted_ttl_ms);
            r.set_remaining_ms(response.remaining_ms);
            let mut list = r.init_keys(keys.len() as u32);
            for (i, k) in keys.iter().enumerate() {
                list.set(i as u32, k);
            }
            Ok(())
        })
    }

    async fn watch(
        self: Rc<Self>,
        params: kv::WatchParams,
        mut results: kv::WatchResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let key = bytes(p.get_key())?;
            self.check("kv:Watch", &key)?;
            let limit = self.proposer.limits.watches_per_connection_max;
            if self.watches.get() >= limit {
                return Err(ApiError::with_words(
                    Code::ResourceExhausted,
                    format!(
                        "this connection already holds {limit} watches (control.watches_per_connection_max)"
                    ),
                ));
            }
            let (key, range_end) = self.scope()?.range(&key, &bytes(p.get_range_end())?);
            let watcher = p.get_watcher()?;
            let with_prev = p.get_prev_kv();
            // Subscribe before reading history so no event falls in between.
            let mut live = self.proposer.state_machine.subscribe();
            let (history, revision) = {
                let state = self.proposer.state_machine.state();
                let current = state.kv.revision();
                let start = match p.get_start_revision() {
                    0 => current + 1,
                    r => r,
                };
                (
                    state
                        .kv
                        .events_since(start, &key, &range_end)
                        .map_err(kv_error)?,
                    current,
                )
            };
            let (cancel_tx, mut cancel_rx) = tokio::sync::oneshot::channel::<()>();
            results.get().set_revision(revision);
            results
                .get()
                .set_handle(capnp_rpc::new_client(WatchHandleImpl {
                    cancel: std::cell::RefCell::new(Some(cancel_tx)),
                }));
            self.watches.set(self.watches.get() + 1);
            let slot = WatchSlot(self.watches.clone());
            let this = self.clone();
            tokio::task::spawn_local(async move {
                let _slot = slot;
                if this
                    .deliver_visible(&watcher, &history, with_prev)
                    .await
                    .is_err()
                {
                    return;
                }
                loop {
                    let batch = tokio::select! {
                        _ = &mut cancel_rx => return,
                        b = live.recv() => b,
                    };
                    match batch {
                        Ok(events) => {
                            let mine: Vec<Event> = events
                                .iter()
                                .filter(|e| {
                                    e.revision() > revision && in_range(&e.kv.key, &key, &range_end)
                                })
                                .cloned()
                                .collect();
                            if !mine.is_empty()
                                && this
                                    .deliver_visible(&watcher, &mine, with_prev)
                                    .await
                                    .is_err()
                            {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let mut request = watcher.cancelled_request();
                            request.get().set_reason(format!(
                                "watcher fell {n} batches behind; watch again from the last revision it saw"
                            ));
                            let _ = request.send().promise.await;
                            return;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            Ok(())
        })
    }
}

impl KvService {
    /// Delivers the events the watcher's caller may still see (its token is
    /// checked again: a revoked token's watch ends), with its key names.
    async fn deliver_visible(
        &self,
        watcher: &watcher::Client,
        events: &[Event],
        with_prev: bool,
    ) -> Reply<()> {
        let identity = match self.session.identity() {
            Ok(identity) => identity,
            Err(e) => {
                let mut request = watcher.cancelled_request();
                request.get().set_reason(e.to_string());
                let _ = request.send().promise.await;
                return Err(e);
            }
        };
        let scope = self.scope_of(&identity);
        if scope.is_whole() && identity.cluster_admin {
            return deliver(watcher, events, with_prev).await;
        }
        let visible: Vec<Event> = events
            .iter()
            .filter(|e| {
                self.session
                    .allows(&identity, "kv:Watch", &resource(scope.strip(&e.kv.key)))
            })
            .map(|e| {
                let mut e = e.clone();
                scope.strip_kv(&mut e.kv);
                if let Some(prev) = &mut e.prev_kv {
                    scope.strip_kv(prev);
                }
                e
            })
            .collect();
        if visible.is_empty() {
            return Ok(());
        }
        deliver(watcher, &visible, with_prev).await
    }
}

/// Whether `k` is in the etcd-style range `key`..`range_end`.
fn in_range(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

/// Sends events to a watcher in batches of at most `WATCH_BATCH_MAX`.
async fn deliver(watcher: &watcher::Client, events: &[Event], with_prev: bool) -> Reply<()> {
    const WATCH_BATCH_MAX: usize = 256;
    for chunk in events.chunks(WATCH_BATCH_MAX) {
        let mut request = watcher.events_request();
        let mut p = request.get();
        p.set_revision(chunk.last().map_or(0, Event::revision));
        let mut list = p.init_events(chunk.len() as u32);
        for (i, e) in chunk.iter().enumerate() {
            let mut e = e.clone();
            if !with_prev {
                e.prev_kv = None;
            }
            write_event(list.reborrow().get(i as u32), &e);
        }
        request.send().await?;
    }
    Ok(())
}

struct WatchHandleImpl {
    cancel: std::cell::RefCell<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl watch_handle::Server for WatchHandleImpl {
    fn cancel(
        self: Rc<Self>,
        _params: watch_handle::CancelParams,
        _results: watch_handle::CancelResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        if let Some(tx) = self.cancel.borrow_mut().take() {
            let _ = tx.send(());
        }
        std::future::ready(Ok(()))
    }
}

impl Drop for WatchHandleImpl {
    fn drop(&mut self) {
        if let Some(tx) = self.cancel.borrow_mut().take() {
            let _ = tx.send(());
        }
    }
}
