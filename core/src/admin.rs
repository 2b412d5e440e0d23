//! The admin endpoint, itself a per-shard service: `/metrics` merges every
//! shard's registry over the mesh, `/healthz` checks that every shard and the
//! control-plane thread answer and that no component reported a failure
//! (`crate::health`), `/readyz` says whether the node serves.

use std::rc::Rc;
use std::time::Duration;

use ::http::{Method, StatusCode};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::http::{self, HttpLimits, HttpMetrics, ServeOptions};
use crate::metrics::MetricsSnapshot;
use crate::service::{BoxError, ShardContext, ShardService};
use crate::shutdown::Phase;
use crate::ShardId;

/// How long a scrape or health check waits for one shard or the control plane.
pub const SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Name of the admin listener in the endpoint table.
pub const LISTENER: &str = "admin";

#[derive(Debug)]
pub enum AdminRequest {
    Snapshot,
    Ping,
}

#[derive(Debug)]
pub enum AdminReply {
    Snapshot(MetricsSnapshot),
    Pong,
}

/// Metrics kept outside the shards (e.g. the load balancer's kernel
/// counters): each source renders Prometheus text appended to `/metrics`.
pub type MetricsSource = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// What the admin service serves besides the shards' registries.
#[derive(Clone, Default)]
pub struct AdminParams {
    pub extra_metrics: Vec<MetricsSource>,
}

impl std::fmt::Debug for AdminParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminParams")
            .field("extra_metrics", &self.extra_metrics.len())
            .finish()
    }
}

/// Serves the admin endpoint on every shard (SO_REUSEPORT spreads scrapes).
pub struct AdminService {
    listener: std::cell::RefCell<Option<glommio::net::TcpListener>>,
    extra_metrics: Rc<Vec<MetricsSource>>,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService")
            .field("extra_metrics", &self.extra_metrics.len())
            .finish_non_exhaustive()
    }
}

impl ShardService for AdminService {
    type Params = AdminParams;
    type Request = AdminRequest;
    type Reply = AdminReply;
    const NAME: &'static str = "admin";

    async fn start(ctx: &ShardContext<Self>, params: &AdminParams) -> Result<Self, BoxError> {
        let listener = ctx.listen(LISTENER, ctx.config().admin.listen)?;
        engine_metrics(ctx);
        Ok(Self {
            listener: std::cell::RefCell::new(Some(listener)),
            extra_metrics: Rc::new(params.extra_metrics.clone()),
        })
    }

    async fn run(self: Rc<Self>, ctx: ShardContext<Self>) {
        let Some(listener) = self.listener.borrow_mut().take() else {
            return;
        };
        let options = ServeOptions {
            service: Self::NAME,
            limits: HttpLimits {
                connection: ctx.config().limits.per_shard(ctx.shards()),
                ..HttpLimits::default()
            },
            shutdown: ctx.shutdown().clone(),
            in_flight: ctx.in_flight().clone(),
            metrics: HttpMetrics::new(ctx.metrics(), Self::NAME),
            drain_deadline: ctx.drain_deadline(),
            task_queue: ctx.latency_queue(),
        };
        let handler_ctx = ctx.clone();
        let extra = self.extra_metrics.clone();
        http::serve(
            listener,
            move |req| {
                let ctx = handler_ctx.clone();
                let extra = extra.clone();
                async move { route(&ctx, &extra, req).await }
            },
            options,
        )
        .await;
    }

    async fn handle(
        self: Rc<Self>,
        ctx: &ShardContext<Self>,
        _from: ShardId,
        request: AdminRequest,
    ) -> AdminReply {
        match request {
            AdminRequest::Snapshot => {
                engine_metrics(ctx);
                AdminReply::Snapshot(ctx.metrics().snapshot())
            }
            AdminRequest::Ping => AdminReply::Pong,
        }
    }
}

async fn route(
    ctx: &ShardContext<AdminService>,
    extra: &[MetricsSource],
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = http::text_response(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut().insert(
            ::http::header::ALLOW,
            ::http::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    match req.uri().path() {
        "/metrics" => metrics(ctx, extra).await,
        "/healthz" => healthz(ctx).await,
        "/readyz" => readyz(ctx),
        _ => http::text_response(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz\n",
        ),
    }
}

async fn with_timeout<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(SHARD_ANSWER_TIMEOUT).await;
        None
    })
    .await
}

async fn metrics(
    ctx: &ShardContext<AdminService>,
    extra: &[MetricsSource],
) -> Response<Full<Bytes>> {
    let calls = (0..ctx.shards()).map(|shard| async move {
        match with_timeout(ctx.call(shard, AdminRequest::Snapshot)).await {
            Some(Ok(AdminReply::Snapshot(s))) => Ok(s),
            _ => Err(shard),
        }
    });
    let mut merged = MetricsSnapshot::default();
    let mut missing = Vec::new();
    for result in futures_util::future::join_all(calls).await {
        match result {
            Ok(s) => merged.merge(s),
            Err(shard) => missing.push(shard),
        }
    }
    let mut body = merged.render();
    body.push_str(
        "# HELP photon_scrape_shards_missing Shards that did not answer this scrape in time\n",
    );
    body.push_str("# TYPE photon_scrape_shards_missing gauge\n");
    body.push_str(&format!("photon_scrape_shards_missing {}\n", missing.len()));
    for source in extra {
        body.push_str(&source());
    }
    let mut response = http::text_response(StatusCode::OK, body);
    response.headers_mut().insert(
        ::http::header::CONTENT_TYPE,
        ::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn healthz(ctx: &ShardContext<AdminService>) -> Response<Full<Bytes>> {
    let calls = (0..ctx.shards()).map(|shard| async move {
        matches!(
            with_timeout(ctx.call(shard, AdminRequest::Ping)).await,
            Some(Ok(AdminReply::Pong))
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    let silent: Vec<ShardId> = answers
        .iter()
        .enumerate()
        .filter(|(_, ok)| !**ok)
        .map(|(s, _)| s)
        .collect();
    let control_ok = matches!(with_timeout(ctx.control().ping()).await, Some(Ok(_)));
    let failed = crate::health::failures();
    if silent.is_empty() && control_ok && failed.is_empty() {
        http::text_response(StatusCode::OK, "ok\n")
    } else {
        http::text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: shards not answering {silent:?}, control plane answering: {control_ok}{}\n",
                failed_text(&failed)
            ),
        )
    }
}

fn failed_text(failed: &[(String, String)]) -> String {
    failed
        .iter()
        .map(|(component, reason)| format!("\nfailed: {component}: {reason}"))
        .collect()
}

fn readyz(ctx: &ShardContext<AdminService>) -> Response<Full<Bytes>> {
    match ctx.shutdown().phase() {
        Phase::Running => {
            let failed = crate::health::failures();
            if failed.is_empty() {
                http::text_response(StatusCode::OK, "ready\n")
            } else {
                http::text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready{}\n", failed_text(&failed)),
                )
            }
        }
        Phase::StartingFirst | Phase::StartingRest => {
            http::text_response(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
        }
        Phase::Draining | Phase::Exit => {
            http::text_response(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        }
    }
}

/// Mirrors glommio's executor statistics of this shard into its registry.
fn engine_metrics(ctx: &ShardContext<AdminService>) {
    let shard = ctx.shard().to_string();
    let labels = [("shard", shard.as_str())];
    let m = ctx.metrics();
    let stats = glommio::executor().executor_stats();
    m.gauge(
        "photon_shard_info",
        "One series per shard of this node",
        &labels,
    )
    .set(1);
    m.counter(
        "photon_shard_tasks_executed_total",
        "Tasks the shard's executor ran",
        &labels,
    )
    .mirror(stats.tasks_executed());
    m.counter(
        "photon_shard_scheduler_runs_total",
        "Times the shard's scheduler ran its task queues",
        &labels,
    )
    .mirror(stats.scheduler_runs());
    m.counter(
        "photon_shard_busy_microseconds_total",
        "Time the shard spent running tasks",
        &labels,
    )
    .mirror(stats.executor_runtime().as_micros() as u64);
    m.gauge(
        "photon_shard_in_flight",
        "Connections and requests in flight on the shard",
        &labels,
    )
    .set(ctx.in_flight().count() as i64);
}
