//! The NightLight service on every shard: opens the shard's store, serves
//! the HTTP API on the shared `nightlight` port, answers the other shards'
//! requests, cuts and compacts blocks, and (on shard 0, with
//! `nightlight.self_scrape`) pushes the node's own `/metrics` into the
//! `system/default` namespace.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use photon_core::http::{serve, HttpMetrics, ServeOptions};
use photon_core::metrics::{Counter, Gauge, ShardMetrics};
use photon_core::{BoxError, ShardContext, ShardId, ShardService};
use photon_metrics_wire::{Limits as WireLimits, Metadata};

use crate::api::Api;
use crate::auth::Authenticator;
use crate::config::NightLightParams;
use crate::shard::{self, Reply, Request};
use crate::store::{ShardStore, StoreConfig};

/// How often a shard looks at its head (cut, compact, expire) and updates
/// its metrics.
const MAINTAIN_INTERVAL: Duration = Duration::from_secs(5);
/// Metric families whose metadata one tenant keeps per shard.
const METADATA_PER_TENANT_MAX: usize = 20_000;
/// Tenants whose metadata a shard keeps.
const METADATA_TENANTS_MAX: usize = 10_000;

pub struct NightLightService {
    pub(crate) store: ShardStore,
    pub(crate) params: NightLightParams,
    pub(crate) auth: Authenticator,
    metadata: RefCell<HashMap<String, BTreeMap<String, Metadata>>>,
    listener: RefCell<Option<glommio::net::TcpListener>>,
}

struct StoreMetrics {
    samples: Counter,
    series_created: Counter,
    blocks_cut: Counter,
    compactions: Counter,
    head_series: Gauge,
    head_bytes: Gauge,
    blocks: Gauge,
}

impl StoreMetrics {
    fn new(m: &ShardMetrics) -> Self {
        Self {
            samples: m.counter(
                "photon_nightlight_samples_appended_total",
                "Samples NightLight stored",
                &[],
            ),
            series_created: m.counter(
                "photon_nightlight_series_created_total",
                "Series NightLight created",
                &[],
            ),
            blocks_cut: m.counter(
                "photon_nightlight_blocks_cut_total",
                "Blocks cut from the head",
                &[],
            ),
            compactions: m.counter("photon_nightlight_compactions_total", "Block merges", &[]),
            head_series: m.gauge("photon_nightlight_head_series", "Series in the heads", &[]),
            head_bytes: m.gauge(
                "photon_nightlight_head_bytes",
                "Approximate memory of the heads",
                &[],
            ),
            blocks: m.gauge("photon_nightlight_blocks", "Blocks on disk", &[]),
        }
    }

    fn update(&self, store: &ShardStore) {
        let c = store.counts();
        self.samples.mirror(c.samples_appended);
        self.series_created.mirror(c.series_created);
        self.blocks_cut.mirror(c.blocks_cut);
        self.compactions.mirror(c.compactions);
        let h = store.head_stats();
        self.head_series.set(h.series as i64);
        self.head_bytes.set(h.memory_bytes as i64);
        self.blocks.set(store.block_count() as i64);
    }
}

impl NightLightService {
    pub(crate) fn wire_limits(&self) -> WireLimits {
        let c = &self.params.config;
        WireLimits {
            body_bytes_max: c.write_bytes_max,
            labels_per_series_max: c.labels_per_series_max,
            label_value_bytes_max: c.label_value_bytes_max,
            ..WireLimits::default()
        }
    }

    pub(crate) fn remember_metadata(&self, tenant: &str, metadata: Vec<Metadata>) {
        if metadata.is_empty() {
            return;
        }
        let mut all = self.metadata.borrow_mut();
        if !all.contains_key(tenant) && all.len() >= METADATA_TENANTS_MAX {
            return;
        }
        let mine = all.entry(tenant.to_string()).or_default();
        for m in metadata {
            if mine.len() < METADATA_PER_TENANT_MAX || mine.contains_key(&m.metric_family) {
                mine.insert(m.metric_family.clone(), m);
            }
        }
    }

    pub(crate) fn metadata_of(&self, tenant: &str) -> Vec<Metadata> {
        self.metadata
            .borrow()
            .get(tenant)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl ShardService for NightLightService {
    type Params = NightLightParams;
    type Request = Request;
    type Reply = Reply;
    const NAME: &'static str = "nightlight";

    async fn start(ctx: &ShardContext<Self>, params: &NightLightParams) -> Result<Self, BoxError> {
        let shards = ctx.shards();
        let config = StoreConfig {
            dir: params.dir.join(format!("shard-{}", ctx.shard())),
            block_range_ms: params.config.block_range_ms(),
            retention_ms: params.config.retention().as_millis() as i64,
            ooo_window_ms: params.config.out_of_order_window_ms(),
            tenant_series_max: params.config.tenant_series_max.div_ceil(shards).max(1),
        };
        let (store, report) = ShardStore::open(config).await?;
        tracing::info!(shard = ctx.shard(), ?report, "metrics store open");
        let listener = ctx.listen("nightlight", params.config.listen)?;
        Ok(Self {
            store,
            auth: Authenticator::new(params.directory.clone()),
            params: params.clone(),
            metadata: RefCell::new(HashMap::new()),
            listener: RefCell::new(Some(listener)),
        })
    }

    async fn run(self: Rc<Self>, ctx: ShardContext<Self>) {
        let Some(listener) = self.listener.borrow_mut().take() else {
            return;
        };
        let api = Rc::new(Api {
            service: self.clone(),
            ctx: ctx.clone(),
        });
        let maintainer = ctx.spawn_bulk(maintain_loop(self.clone(), ctx.clone()));
        let scraper = (ctx.shard() == 0 && self.params.config.self_scrape)
            .then(|| ctx.spawn_bulk(crate::self_scrape::run(api.clone())));
        let mut limits = self.params.http.clone();
        limits.connection = ctx.config().limits.per_shard(ctx.shards());
        limits.authenticates = true;
        let options = ServeOptions {
            service: "nightlight",
            limits,
            shutdown: ctx.shutdown().clone(),
            in_flight: ctx.in_flight().clone(),
            metrics: HttpMetrics::new(ctx.metrics(), "nightlight"),
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
        drop(scraper);
        drop(maintainer);
    }

    async fn handle(
        self: Rc<Self>,
        _ctx: &ShardContext<Self>,
        _from: ShardId,
        request: Request,
    ) -> Reply {
        shard::serve(self, request).await
    }
}

async fn maintain_loop(service: Rc<NightLightService>, ctx: ShardContext<NightLightService>) {
    let metrics = StoreMetrics::new(ctx.metrics());
    loop {
        metrics.update(&service.store);
        if let Err(e) = service.store.maintain(crate::now_ms()).await {
            tracing::warn!(shard = ctx.shard(), error = %e, "metrics store maintenance failed; retrying");
        }
        let stop = futures_lite::future::or(
            async {
                glommio::timer::sleep(MAINTAIN_INTERVAL).await;
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
    }
}
