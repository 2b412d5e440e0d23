//! The HTTP/1.1 path of the data services: hyper 1.x on glommio through the
//! `hyper::rt` traits, with a per-shard connection limit, header-read timeout,
//! metrics per service, and graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use hyper::body::{Body, Incoming};
use hyper::rt::{ReadBufCursor, Sleep, Timer};
use hyper::{Request, Response};

use crate::metrics::{Counter, Gauge, LatencyHistogram, ShardMetrics};
use crate::shutdown::{InFlight, ShutdownSignal};

/// Limits of one HTTP server on one shard.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Open connections per shard; accepting waits beyond it.
    pub connections_max: usize,
    /// A client must send a whole request head within this time.
    pub header_read_timeout: Duration,
    /// Largest request head hyper buffers, in bytes.
    pub header_bytes_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connections_max: 10_000,
            header_read_timeout: Duration::from_secs(30),
            header_bytes_max: 64 * 1024,
        }
    }
}

/// Bounds of the slice handed to one socket read. Reads go through
/// futures-io, which wants initialized memory, so each read zeroes what it
/// offers. The offer adapts to what reads return (doubling when a read fills
/// it, halving when reads use a quarter of it), so small requests zero ~1 KiB
/// instead of hyper's whole 8 KiB buffer, and large bodies still read 64 KiB
/// at a time.
const READ_OFFER_BYTES_MIN: usize = 1024;
const READ_OFFER_BYTES_MAX: usize = 64 * 1024;

/// A glommio stream seen through hyper's IO traits.
#[derive(Debug)]
pub struct HyperIo<T> {
    inner: T,
    read_offer: usize,
}

impl<T> HyperIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            read_offer: READ_OFFER_BYTES_MIN,
        }
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // SAFETY: we only write into the slice (after initializing it) and
        // advance the cursor by the number of bytes the read reported, which
        // never exceeds the slice length.
        let uninit = unsafe { buf.as_mut() };
        let len = uninit.len().min(this.read_offer);
        let uninit = &mut uninit[..len];
        for b in uninit.iter_mut() {
            b.write(0);
        }
        // SAFETY: every byte of `uninit` was initialized just above, and
        // MaybeUninit<u8> has the same layout as u8.
        let slice = unsafe { &mut *(uninit as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        match Pin::new(&mut this.inner).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                if n == len {
                    this.read_offer = (this.read_offer * 2).min(READ_OFFER_BYTES_MAX);
                } else if n < this.read_offer / 4 {
                    this.read_offer = (this.read_offer / 2).max(READ_OFFER_BYTES_MIN);
                }
                // SAFETY: `n` bytes were filled by the read and n <= len.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// hyper's timer over glommio timers. Without one hyper silently disables its
/// header-read timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlommioTimer;

/// A glommio timer made to look `Send + Sync`, as `hyper::rt::Sleep` demands.
struct GlommioSleep(glommio::timer::Timer);

// SAFETY: hyper asks for Send + Sync because its Timer trait is executor
// agnostic. A GlommioSleep is created by hyper while polling a connection on a
// shard, is owned by that connection's future, and that future is `!Send`
// (its IO is a glommio TcpStream), so the sleep is never moved to or touched
// from another thread.
unsafe impl Send for GlommioSleep {}
// SAFETY: see above; no shared reference to it ever reaches another thread.
unsafe impl Sync for GlommioSleep {}

impl Future for GlommioSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
    }
}

impl Sleep for GlommioSleep {}

impl Timer for GlommioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(GlommioSleep(glommio::timer::Timer::new(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

/// Per-service HTTP metrics on one shard.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    connections_open: Gauge,
    connections_total: Counter,
    responses: [Counter; 5],
    latency: LatencyHistogram,
}

impl HttpMetrics {
    pub fn new(metrics: &ShardMetrics, service: &str) -> Self {
        let class = |c: &str| {
            metrics.counter(
                "photon_http_responses_total",
                "HTTP responses sent, by status class",
                &[("service", service), ("class", c)],
            )
        };
        Self {
            connections_open: metrics.gauge(
                "photon_http_connections_open",
                "HTTP connections open now",
                &[("service", service)],
            ),
            connections_total: metrics.counter(
                "photon_http_connections_total",
                "HTTP connections accepted",
                &[("service", service)],
            ),
            responses: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            latency: metrics.histogram(
                "photon_http_request_duration_seconds",
                "Time from request head to response head",
                &[("service", service)],
            ),
        }
    }

    fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].inc();
        self.latency.record(elapsed);
    }
}

/// Everything `serve` needs besides the listener and the handler.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub service: &'static str,
    pub limits: HttpLimits,
    pub shutdown: ShutdownSignal,
    pub in_flight: Rc<InFlight>,
    pub metrics: HttpMetrics,
    pub drain_deadline: Duration,
    pub task_queue: glommio::TaskQueueHandle,
}

/// Accepts connections until draining starts, serves each with hyper, then
/// lets open connections finish (idle keep-alive ones close at once) within
/// the drain deadline. Returns the number of connections cut at the deadline.
pub async fn serve<H, F, B>(listener: TcpListener, handler: H, options: ServeOptions) -> usize
where
    H: Fn(Request<Incoming>) -> F + Clone + 'static,
    F: Future<Output = Response<B>> + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let permits = Rc::new(Semaphore::new(options.limits.connections_max as u64));
    let connections = InFlight::new();
    loop {
        let accepted = futures_lite::future::or(
            async {
                let Ok(permit) = permits.clone().acquire_static_permit(1).await else {
                    return None;
                };
                Some(listener.accept().await.map(|s| (s, permit)))
            },
            async {
                options.shutdown.draining().await;
                None
            },
        )
        .await;
        let (stream, permit) = match accepted {
            None => break,
            Some(Ok(pair)) => pair,
            Some(Err(e)) => {
                // Out of descriptors and similar: log, back off briefly, go on.
                tracing::warn!(service = options.service, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let conn_guard = connections.enter();
        let drain_guard = options.in_flight.enter();
        let (handler, options2) = (handler.clone(), options.clone());
        glommio::spawn_local_into(
            async move {
                serve_connection(stream, handler, &options2).await;
                drop((permit, conn_guard, drain_guard));
            },
            options.task_queue,
        )
        .map(|t| {
            t.detach();
        })
        .unwrap_or_else(|e| tracing::error!(error = %e, "cannot spawn connection task"));
    }
    drop(listener);
    let cut = connections.wait_idle(options.drain_deadline).await;
    if cut > 0 {
        tracing::warn!(
            service = options.service,
            cut,
            "connections still open at the drain deadline"
        );
    }
    cut
}

async fn serve_connection<H, F, B>(stream: TcpStream, handler: H, options: &ServeOptions)
where
    H: Fn(Request<Incoming>) -> F + Clone + 'static,
    F: Future<Output = Response<B>> + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    options.metrics.connections_total.inc();
    options.metrics.connections_open.inc();
    let metrics = options.metrics.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let started = Instant::now();
        let close = empty_expecting_continue(req.headers());
        let fut = handler(req);
        let metrics = metrics.clone();
        async move {
            let mut response = fut.await;
            if close {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            metrics.record(response.status().as_u16(), started.elapsed());
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(GlommioTimer)
        .header_read_timeout(options.limits.header_read_timeout)
        .max_buf_size(options.limits.header_bytes_max.max(8192))
        // A client may shut down its sending side after a whole request
        // (`curl -T`, `nc -N`) and still wait for the answer.
        .half_close(true)
        .keep_alive(true);
    let conn = builder.serve_connection(HyperIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let first = futures_lite::future::or(async { Some(conn.as_mut().await) }, async {
        options.shutdown.draining().await;
        None
    })
    .await;
    let result = match first {
        Some(r) => r,
        None => {
            // Finish the request in flight, close an idle keep-alive at once.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(service = options.service, error = %e, "connection ended with an error");
    }
    options.metrics.connections_open.dec();
}

/// Whether a request announced an empty body and still asked for `100
/// Continue`. hyper sends no `100 Continue` for an empty body (there is
/// nothing to continue with), but botocore waits for one, takes the final
/// response through its expect path, and then misreads the next response on
/// the same connection. Closing such a connection after the reply keeps
/// botocore (and so the aws CLI) from hanging on its next request.
fn empty_expecting_continue(headers: &http::HeaderMap) -> bool {
    let expects = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    expects
        && headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
}

/// A small full-body response.
pub fn text_response(
    status: http::StatusCode,
    body: impl Into<bytes::Bytes>,
) -> Response<http_body_util::Full<bytes::Bytes>> {
    let mut response = Response::new(http_body_util::Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
