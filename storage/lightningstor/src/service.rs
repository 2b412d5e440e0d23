//! The S3 service on every shard: opens the shard's store, serves HTTP on
//! the shared `s3` port, answers the other shards' store requests, frees
//! garbage chunks, and (on shard 0) sweeps chunks orphaned by a crash and
//! answers the control plane's "is this bucket empty?".

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use photon_core::http::{serve, HttpMetrics, ServeOptions};
use photon_core::{BoxError, ShardContext, ShardId, ShardService};
use photon_object::Store;

use crate::api::Api;
use crate::auth::Authenticator;
use crate::catalog::{BucketRequest, S3Event, ShardCatalog};
use crate::config::S3Params;
use crate::meta::{chunk_shard, objects_ns, uploads_ns};
use crate::response::RequestIdSource;
use crate::shard::{self, Reply, Request};
use photon_core::mailbox::{MailboxReceiver, MailboxSender};

/// How long shard 0 waits after start before sweeping orphaned chunks.
const SWEEP_DELAY: Duration = Duration::from_secs(2);
/// How often each shard tries to compact a segment.
const COMPACT_INTERVAL: Duration = Duration::from_secs(5);
/// How often the store's statistics are copied into the shard's metrics.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// The store's statistics as metrics of the shard.
struct StoreMetrics {
    records: photon_core::metrics::Counter,
    syncs: photon_core::metrics::Counter,
    bytes: photon_core::metrics::Counter,
    compactions: photon_core::metrics::Counter,
    segment_bytes: photon_core::metrics::Gauge,
    live_bytes: photon_core::metrics::Gauge,
    objects: photon_core::metrics::Gauge,
    chunks: photon_core::metrics::Gauge,
}

impl StoreMetrics {
    fn new(metrics: &photon_core::metrics::ShardMetrics) -> Self {
        Self {
            records: metrics.counter(
                "photon_s3_store_records_written_total",
                "Records the object store wrote (puts, deletes, compaction copies)",
                &[],
            ),
            syncs: metrics.counter(
                "photon_s3_store_syncs_total",
                "fdatasync rounds of the object store (records per sync shows group commit)",
                &[],
            ),
            bytes: metrics.counter(
                "photon_s3_store_bytes_written_total",
                "Record bytes the object store wrote, padding included",
                &[],
            ),
            compactions: metrics.counter(
                "photon_s3_store_compactions_total",
                "Segments freed by compaction",
                &[],
            ),
            segment_bytes: metrics.gauge(
                "photon_s3_store_segment_bytes",
                "Bytes of the object store's segment files",
                &[],
            ),
            live_bytes: metrics.gauge(
                "photon_s3_store_live_bytes",
                "Bytes of records that are current in the index",
                &[],
            ),
            objects: metrics.gauge(
                "photon_s3_store_objects",
                "Index entries: objects, upload and part records",
                &[],
            ),
            chunks: metrics.gauge(
                "photon_s3_store_chunks",
                "Chunks of large objects held by this shard",
                &[],
            ),
        }
    }

    fn update(&self, s: &photon_object::StoreStats) {
        self.records.mirror(s.records_written);
        self.syncs.mirror(s.syncs);
        self.bytes.mirror(s.bytes_written);
        self.compactions.mirror(s.compactions);
        self.segment_bytes.set(s.segment_bytes as i64);
        self.live_bytes.set(s.live_bytes as i64);
        self.objects.set(s.objects as i64);
        self.chunks.set(s.chunks as i64);
    }
}

pub struct S3Service {
    pub(crate) store: Rc<Store>,
    pub(crate) params: S3Params,
    pub(crate) auth: Authenticator,
    pub(crate) ids: RequestIdSource,
    /// This shard's copy of the buckets.
    pub(crate) catalog: ShardCatalog,
    /// Bucket changes go to the control plane this way.
    pub(crate) to_control: MailboxSender<BucketRequest>,
    /// Events from the control plane, until `run` takes them.
    events: RefCell<Option<MailboxReceiver<S3Event>>>,
    listener: RefCell<Option<glommio::net::TcpListener>>,
    /// Chunks found at start-up; those nothing references are orphans of a
    /// crash or an interrupted upload. New chunks never join this set, so a
    /// sweep cannot take the chunks of an upload in progress.
    recovered_chunks: RefCell<Option<HashSet<(u64, u32)>>>,
}

impl ShardService for S3Service {
    type Params = S3Params;
    type Request = Request;
    type Reply = Reply;
    const NAME: &'static str = "s3";

    async fn start(ctx: &ShardContext<Self>, params: &S3Params) -> Result<Self, BoxError> {
        let mut store_config = params.store.clone();
        store_config.dir = params.store.dir.join(format!("shard-{}", ctx.shard()));
        let (store, report) = Store::open(store_config).await?;
        tracing::info!(shard = ctx.shard(), ?report, "object store open");
        let listener = ctx.listen("s3", params.listen)?;
        let recovered: HashSet<(u64, u32)> = store.chunk_ids().into_iter().collect();
        let events = params
            .control
            .take_receiver(ctx.shard())
            .ok_or("the S3 service's control link has no receiver for this shard")?;
        Ok(Self {
            catalog: ShardCatalog::default(),
            to_control: params.control.to_control(),
            events: RefCell::new(Some(events)),
            auth: Authenticator::new(params.directory.clone(), params.region.clone()),
            ids: RequestIdSource::new(ctx.shard()),
            store,
            params: params.clone(),
            listener: RefCell::new(Some(listener)),
            recovered_chunks: RefCell::new(Some(recovered)),
        })
    }

    async fn run(self: Rc<Self>, ctx: ShardContext<Self>) {
        let Some(listener) = self.listener.borrow_mut().take() else {
            return;
        };
        let compactor = ctx.spawn_bulk(compact_loop(self.store.clone(), ctx.clone()));
        if ctx.shard() == 0 {
            ctx.spawn_bulk(sweep_orphans(ctx.clone())).detach();
        }
        if let Some(events) = self.events.borrow_mut().take() {
            ctx.spawn(follow_control(self.clone(), ctx.clone(), events))
                .detach();
        }
        let api = Rc::new(Api::new(self.clone(), ctx.clone()));
        let mut limits = self.params.http.clone();
        limits.connection = ctx.config().limits.per_shard(ctx.shards());
        // SigV4 is checked per request: `Api` marks the connection.
        limits.authenticates = true;
        let options = ServeOptions {
            service: "s3",
            limits,
            shutdown: ctx.shutdown().clone(),
            in_flight: ctx.in_flight().clone(),
            metrics: HttpMetrics::new(ctx.metrics(), "s3"),
            drain_deadline: ctx.drain_deadline(),
            task_queue: ctx.latency_queue(),
        };
        serve(
            listener,
            move |req| {
                let api = api.clone();
                async move { api.handle(req).await }
            },
            options,
        )
        .await;
        drop(compactor);
    }

    async fn handle(
        self: Rc<Self>,
        ctx: &ShardContext<Self>,
        _from: ShardId,
        request: Request,
    ) -> Reply {
        if let Request::SweepOrphans { referenced } = &request {
            return Reply::Done(self.sweep_local(referenced).await);
        }
        let (reply, garbage) = shard::serve(&self.store, request).await;
        if !garbage.is_empty() {
            let ctx = ctx.clone();
            let grace = self.params.limits.garbage_grace;
            ctx.clone()
                .spawn_bulk(async move {
                    glommio::timer::sleep(grace).await;
                    free_chunks(&ctx, garbage).await;
                })
                .detach();
        }
        reply
    }

    async fn stop(&self, ctx: &ShardContext<Self>) {
        let s = self.store.stats();
        tracing::info!(
            shard = ctx.shard(),
            records = s.records_written,
            syncs = s.syncs,
            compactions = s.compactions,
            "object store: records per sync shows group commit at work"
        );
        if let Err(e) = self.store.close().await {
            tracing::error!(shard = ctx.shard(), error = %e, "object store did not close cleanly");
        }
    }
}

impl S3Service {
    async fn sweep_local(&self, referenced: &HashSet<(u64, u32)>) -> Result<(), String> {
        let Some(recovered) = self.recovered_chunks.borrow_mut().take() else {
            return Ok(());
        };
        let orphans: Vec<(u64, u32)> = recovered
            .into_iter()
            .filter(|c| !referenced.contains(c) && self.store.chunk_len(c.0, c.1).is_some())
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        tracing::info!(
            chunks = orphans.len(),
            "freeing chunks no object references (left by a crash or an interrupted upload)"
        );
        self.store
            .delete_chunks(&orphans)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Deletes chunks on the shards that hold them.
pub(crate) async fn free_chunks(ctx: &ShardContext<S3Service>, chunks: Vec<(u64, u32)>) {
    let mut by_shard: HashMap<usize, Vec<(u64, u32)>> = HashMap::new();
    for (blob, index) in chunks {
        by_shard
            .entry(chunk_shard(blob, index, ctx.shards()))
            .or_default()
            .push((blob, index));
    }
    for (shard, chunks) in by_shard {
        match ctx.call(shard, Request::DeleteChunks { chunks }).await {
            Ok(Reply::Done(Ok(()))) => {}
            other => tracing::warn!(
                shard,
                ?other,
                "could not free chunks; the start-up sweep will"
            ),
        }
    }
}

async fn compact_loop(store: Rc<Store>, ctx: ShardContext<S3Service>) {
    let metrics = StoreMetrics::new(ctx.metrics());
    let mut since_compaction = Duration::ZERO;
    let component = format!("s3 store shard {}", ctx.shard());
    loop {
        metrics.update(&store.stats());
        if store.is_poisoned() {
            photon_core::health::report_failed(
                &component,
                "an fdatasync failed; the store refuses writes until photon restarts",
            );
        }
        // While the disk is full, compaction is how space comes back: run
        // it every round instead of every COMPACT_INTERVAL.
        let disk_full = !store.maintain_reserve();
        let stop = futures_lite::future::or(
            async {
                glommio::timer::sleep(STATS_INTERVAL).await;
                false
            },
            async {
                ctx.shutdown().draining().await;
                true
            },
        )
        .await;
        if stop {
            return;
        }
        since_compaction += STATS_INTERVAL;
        if since_compaction < COMPACT_INTERVAL && !disk_full {
            continue;
        }
        since_compaction = Duration::ZERO;
        match store.compact_once().await {
            Ok(report) => tracing::debug!(shard = ctx.shard(), ?report, "compaction pass"),
            Err(e) => tracing::warn!(shard = ctx.shard(), error = %e, "compaction failed"),
        }
    }
}

/// Shard 0: collects every chunk reference, then lets each shard free the
/// chunks it recovered at start-up that nothing references.
async fn sweep_orphans(ctx: ShardContext<S3Service>) {
    glommio::timer::sleep(SWEEP_DELAY).await;
    let mut referenced = HashSet::new();
    for shard in 0..ctx.shards() {
        match ctx.call(shard, Request::ReferencedChunks).await {
            Ok(Reply::Chunks(chunks)) => referenced.extend(chunks),
            other => {
                tracing::warn!(
                    shard,
                    ?other,
                    "orphan sweep skipped: a shard did not answer"
                );
                return;
            }
        }
    }
    let referenced = Arc::new(referenced);
    for shard in 0..ctx.shards() {
        let request = Request::SweepOrphans {
            referenced: referenced.clone(),
        };
        if let Ok(Reply::Done(Err(e))) = ctx.call(shard, request).await {
            tracing::warn!(shard, error = %e, "orphan sweep failed");
        }
    }
}

/// Applies the control plane's bucket changes to this shard's copy, and
/// (on shard 0) answers its emptiness checks (`photon ctl bucket rm`).
async fn follow_control(
    service: Rc<S3Service>,
    ctx: ShardContext<S3Service>,
    events: MailboxReceiver<S3Event>,
) {
    while let Some(event) = events.recv().await {
        match event {
            S3Event::EmptyQuery(query) => {
                let ctx = ctx.clone();
                ctx.clone()
                    .spawn(async move {
                        let empty = bucket_is_empty(&ctx, query.id).await;
                        let _ = query.reply.send(empty);
                    })
                    .detach();
            }
            change => service.catalog.apply(change),
        }
    }
}

/// Whether bucket `id` has no objects and no uploads on any shard.
pub(crate) async fn bucket_is_empty(ctx: &ShardContext<S3Service>, id: u64) -> bool {
    namespaces_empty(ctx, &[objects_ns(id), uploads_ns(id)]).await
}

/// Whether bucket `id` has no objects on any shard (uploads may remain).
pub(crate) async fn bucket_has_no_objects(ctx: &ShardContext<S3Service>, id: u64) -> bool {
    namespaces_empty(ctx, &[objects_ns(id)]).await
}

async fn namespaces_empty(ctx: &ShardContext<S3Service>, namespaces: &[u64]) -> bool {
    for shard in 0..ctx.shards() {
        let request = Request::IsEmpty {
            namespaces: namespaces.to_vec(),
        };
        match ctx.call(shard, request).await {
            Ok(Reply::Empty(true)) => {}
            _ => return false,
        }
    }
    true
}
