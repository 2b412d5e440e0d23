//! The KV API: ranges, puts, deletes, txns, compaction, leases, watches.

use photon_schema::kv_capnp::watcher;

use super::{reply, Client, ClientError};
use crate::kv::{
    DeleteRangeRequest, DeleteRangeResponse, Event, PutRequest, PutResponse, RangeRequest,
    RangeResponse, Revision, TxnRequest, TxnResponse,
};
use crate::rpc::convert;

/// A lease and its time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    pub id: i64,
    pub ttl_ms: u64,
}

/// What `lease_time_to_live` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTimeToLive {
    pub id: i64,
    pub granted_ttl_ms: u64,
    pub remaining_ms: u64,
    /// The keys attached to the lease (when asked for).
    pub keys: Vec<Vec<u8>>,
}

/// A running watch; dropping it ends the watch.
pub struct WatchHandle(#[allow(dead_code)] photon_schema::kv_capnp::watch_handle::Client);

impl Client {
    pub async fn range(
        &mut self,
        request: RangeRequest,
        serializable: bool,
    ) -> Result<RangeResponse, ClientError> {
        self.with_session(|caps| {
            let request = request.clone();
            async move {
                let mut call = caps.kv().range_request();
                convert::write_range_request(call.get().init_request(), &request, serializable);
                let reply = call.send().promise.await?;
                Ok(convert::read_range_response(
                    reply!(reply.get()?).get_response()?,
                )?)
            }
        })
        .await
    }

    pub async fn put(&mut self, request: PutRequest) -> Result<PutResponse, ClientError> {
        self.with_session(|caps| {
            let request = request.clone();
            async move {
                let mut call = caps.kv().put_request();
                convert::write_put_request(call.get().init_request(), &request);
                let reply = call.send().promise.await?;
                Ok(convert::read_put_response(
                    reply!(reply.get()?).get_response()?,
                )?)
            }
        })
        .await
    }

    pub async fn delete_range(
        &mut self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ClientError> {
        self.with_session(|caps| {
            let request = request.clone();
            async move {
                let mut call = caps.kv().delete_range_request();
                convert::write_delete_request(call.get().init_request(), &request);
                let reply = call.send().promise.await?;
                Ok(convert::read_delete_response(
                    reply!(reply.get()?).get_response()?,
                )?)
            }
        })
        .await
    }

    pub async fn txn(&mut self, request: TxnRequest) -> Result<TxnResponse, ClientError> {
        self.with_session(|caps| {
            let request = request.clone();
            async move {
                let mut call = caps.kv().txn_request();
                convert::write_txn_request(call.get().init_request(), &request);
                let reply = call.send().promise.await?;
                Ok(convert::read_txn_response(
                    reply!(reply.get()?).get_response()?,
                )?)
            }
        })
        .await
    }

    pub async fn compact(&mut self, revision: Revision) -> Result<Revision, ClientError> {
        self.with_session(|caps| async move {
            let mut call = caps.kv().compact_request();
            call.get().set_revision(revision);
            let reply = call.send().promise.await?;
            Ok(reply!(reply.get()?).get_revision())
        })
        .await
    }

    /// Grants a lease (`id` 0: the store picks one).
    pub async fn lease_grant(&mut self, id: i64, ttl_ms: u64) -> Result<Lease, ClientError> {
        self.with_session(|caps| async move {
            let mut call = caps.kv().lease_grant_request();
            call.get().set_id(id);
            call.get().set_ttl_ms(ttl_ms);
            let reply = call.send().promise.await?;
            let r = reply!(reply.get()?);
            Ok(Lease {
                id: r.get_id(),
                ttl_ms: r.get_ttl_ms(),
            })
        })
        .await
    }

    /// Revokes a lease and deletes its keys; returns the store's revision.
    pub async fn lease_revoke(&mut self, id: i64) -> Result<Revision, ClientError> {
        self.with_session(|caps| async move {
            let mut call = caps.kv().lease_revoke_request();
            call.get().set_id(id);
            let reply = call.send().promise.await?;
            Ok(reply!(reply.get()?).get_revision())
        })
        .await
    }

    /// Renews a lease.
    pub async fn lease_keep_alive(&mut self, id: i64) -> Result<Lease, ClientError> {
        self.with_session(|caps| async move {
            let mut call = caps.kv().lease_keep_alive_request();
            call.get().set_id(id);
            let reply = call.send().promise.await?;
            Ok(Lease {
                id,
                ttl_ms: reply!(reply.get()?).get_ttl_ms(),
            })
        })
        .await
    }

    /// How long a lease has left (and, with `keys`, the keys on it).
    pub async fn lease_time_to_live(
        &mut self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLive, ClientError> {
        self.with_session(|caps| async move {
            let mut call = caps.kv().lease_time_to_live_request();
            call.get().set_id(id);
            call.get().set_keys(keys);
            let reply = call.send().promise.await?;
            let r = reply!(reply.get()?);
            let keys = r
                .get_keys()?
                .iter()
                .map(|k| k.map(<[u8]>::to_vec))
                .collect::<capnp::Result<_>>()?;
            Ok(LeaseTimeToLive {
                id,
                granted_ttl_ms: r.get_granted_ttl_ms(),
                remaining_ms: r.get_remaining_ms(),
                keys,
            })
        })
        .await
    }

    /// Watches `key`..`range_end` from `start_revision` (0: from now); every
    /// batch of events goes to `events` in revision order. Returns the handle
    /// (dropping it ends the watch) and the revision the watch started after.
    pub async fn watch(
        &mut self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_revision: Revision,
        prev_kv: bool,
        events: tokio::sync::mpsc::Sender<WatchMessage>,
    ) -> Result<(WatchHandle, Revision), ClientError> {
        self.with_session(|caps| {
            let (key, range_end, events) = (key.clone(), range_end.clone(), events.clone());
            async move {
                let mut call = caps.kv().watch_request();
                {
                    let mut p = call.get();
                    p.set_key(&key);
                    p.set_range_end(&range_end);
                    p.set_start_revision(start_revision);
                    p.set_prev_kv(prev_kv);
                    p.set_watcher(capnp_rpc::new_client(WatcherSink { events }));
                }
                let reply = call.send().promise.await?;
                let r = reply!(reply.get()?);
                Ok((WatchHandle(r.get_handle()?), r.get_revision()))
            }
        })
        .await
    }
}

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMessage {
    Events(Vec<Event>),
    Cancelled(String),
}

/// Forwards deliveries into a bounded channel; a slow consumer slows the
/// stream (Cap'n Proto streaming flow control), it never grows a queue.
struct WatcherSink {
    events: tokio::sync::mpsc::Sender<WatchMessage>,
}

impl watcher::Server for WatcherSink {
    async fn events(
        self: capnp::capability::Rc<Self>,
        params: watcher::EventsParams,
    ) -> Result<(), capnp::Error> {
        let list = params.get()?.get_events()?;
        let events = list
            .iter()
            .map(convert::read_event)
            .collect::<capnp::Result<Vec<_>>>()?;
        self.events
            .send(WatchMessage::Events(events))
            .await
            .map_err(|_| capnp::Error::disconnected("watch consumer is gone".into()))
    }

    async fn cancelled(
        self: capnp::capability::Rc<Self>,
        params: watcher::CancelledParams,
        _results: watcher::CancelledResults,
    ) -> Result<(), capnp::Error> {
        let reason = params.get()?.get_reason()?.to_string()?;
        let _ = self.events.send(WatchMessage::Cancelled(reason)).await;
        Ok(())
    }
}
