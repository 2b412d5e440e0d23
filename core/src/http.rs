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
use hyper::body::{Body, Incoming};
use hyper::rt::{ReadBufCursor, Sleep, Timer};
use hyper::{Request, Response};

use crate::gate::{ConnectionLimits, Gate, Ticket};
use crate::metrics::{Counter, Gauge, LatencyHistogram, ShardMetrics};
use crate::shutdown::{InFlight, ShutdownSignal};

/// Limits of one HTTP server on one shard.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connection admission and timeouts ([`crate::gate`]).
    pub connection: ConnectionLimits,
    /// A client must send a whole request head within this time.
    pub header_read_timeout: Duration,
    /// Largest request head hyper buffers, in bytes.
    pub header_bytes_max: usize,
    /// Whether the service checks credentials itself (it then sets the
    /// request's [`crate::gate::AuthMark`]); otherwise a connection counts as
    /// authenticated once a whole request head arrived.
    pub authenticates: bool,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connection: ConnectionLimits::default(),
            header_read_timeout: Duration::from_secs(30),
            header_bytes_max: 64 * 1024,
            authenticates: false,
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
    /// Connections closed by a limit: evicted, refused, timed out.
    connections_limited: [Counter; 4],
    responses: [Counter; 5],
    latency: LatencyHistogram,
}

impl HttpMetrics {
    pub fn new(metrics: &ShardMetrics, service: &str) -> Self {
        let limited = |reason: &str| {
            metrics.counter(
                "photon_http_connections_limited_total",
                "HTTP connections closed or refused by a connection limit",
                &[("service", service), ("reason", reason)],
            )
        };
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
            connections_limited: [
                limited("evicted"),
                limited("source_busy"),
                limited("handshake_timeout"),
                limited("idle_timeout"),
            ],
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

/// Why a connection was closed by a limit (index into
/// `HttpMetrics::connections_limited`).
#[derive(Debug, Clone, Copy)]
enum Limited {
    Evicted = 0,
    SourceBusy = 1,
    Handshake = 2,
    Idle = 3,
}

/// Accepts connections until draining starts, serves each with hyper, then
/// lets open connections finish (idle keep-alive ones close at once) within
/// the drain deadline. Returns the number of connections cut at the deadline.
/// Admission goes through a [`Gate`] of `options.limits.connection`.
pub async fn serve<H, F, B>(listener: TcpListener, handler: H, options: ServeOptions) -> usize
where
    H: Fn(Request<Incoming>) -> F + Clone + 'static,
    F: Future<Output = Response<B>> + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let gate = Gate::new(options.limits.connection.clone());
    let connections = InFlight::new();
    loop {
        let accepted = futures_lite::future::or(
            async {
                gate.room().await;
                Some(listener.accept().await)
            },
            async {
                options.shutdown.draining().await;
                None
            },
        )
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                // Out of descriptors and similar: log, back off briefly, go on.
                tracing::warn!(service = options.service, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let source = match stream.peer_addr() {
            Ok(address) => address.ip(),
            Err(_) => continue, // already gone
        };
        let ticket = match gate.admit(source) {
            Ok(ticket) => ticket,
            Err(_) => {
                options.metrics.connections_limited[Limited::SourceBusy as usize].inc();
                continue; // dropping the stream closes it
            }
        };
        let conn_guard = connections.enter();
        let drain_guard = options.in_flight.enter();
        let (handler, options2) = (handler.clone(), options.clone());
        glommio::spawn_local_into(
            async move {
                serve_connection(stream, ticket, handler, &options2).await;
                drop((conn_guard, drain_guard));
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

/// What one connection is doing, for its watchdog.
#[derive(Default)]
struct Activity {
    in_flight: std::cell::Cell<usize>,
    /// When the last response was handed to hyper (or the connection began).
    idle_since: std::cell::Cell<Option<Instant>>,
}

async fn serve_connection<H, F, B>(
    stream: TcpStream,
    ticket: Ticket,
    handler: H,
    options: &ServeOptions,
) where
    H: Fn(Request<Incoming>) -> F + Clone + 'static,
    F: Future<Output = Response<B>> + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    options.metrics.connections_total.inc();
    options.metrics.connections_open.inc();
    let metrics = options.metrics.clone();
    let mark = ticket.mark().clone();
    let authenticates = options.limits.authenticates;
    let activity = Rc::new(Activity::default());
    activity.idle_since.set(Some(Instant::now()));
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let started = Instant::now();
        if !authenticates {
            mark.set();
        }
        req.extensions_mut().insert(mark.clone());
        tracked.in_flight.set(tracked.in_flight.get() + 1);
        let close = empty_expecting_continue(req.headers());
        let fut = handler(req);
        let metrics = metrics.clone();
        let tracked = tracked.clone();
        async move {
            let mut response = fut.await;
            if close {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            metrics.record(response.status().as_u16(), started.elapsed());
            tracked.in_flight.set(tracked.in_flight.get() - 1);
            tracked.idle_since.set(Some(Instant::now()));
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
    let first = futures_lite::future::or(
        async { Ok(conn.as_mut().await) },
        futures_lite::future::or(
            async {
                options.shutdown.draining().await;
                Err(None)
            },
            async {
                futures_lite::future::or(
                    async {
                        ticket.evicted().await;
                        Err(Some(Limited::Evicted))
                    },
                    async { Err(Some(watch(&ticket, &activity).await)) },
                )
                .await
            },
        ),
    )
    .await;
    let result = match first {
        Ok(r) => r,
        Err(None) => {
            // Finish the request in flight, close an idle keep-alive at once.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        Err(Some(reason)) => {
            // Dropping the connection closes the socket.
            options.metrics.connections_limited[reason as usize].inc();
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::debug!(service = options.service, error = %e, "connection ended with an error");
    }
    options.metrics.connections_open.dec();
    drop(ticket);
}

/// Completes when the connection has outstayed a timeout: never
/// authenticated within `handshake_timeout`, or nothing in flight for
/// `idle_timeout`. A request in flight is never cut here (its body has its
/// own timeout in the service that reads it).
async fn watch(ticket: &Ticket, activity: &Activity) -> Limited {
    let limits = ticket.limits();
    let step = (limits.handshake_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let opened = Instant::now();
    loop {
        glommio::timer::sleep(step).await;
        if activity.in_flight.get() > 0 {
            continue;
        }
        if !ticket.is_authenticated() && opened.elapsed() >= limits.handshake_timeout {
            return Limited::Handshake;
        }
        let idle = activity
            .idle_since
            .get()
            .map_or(Duration::ZERO, |t| t.elapsed());
        if idle >= limits.idle_timeout {
            return Limited::Idle;
        }
    }
}

/// Whether a request announced an empty body and still asked for `100
/// Continue`. hyper sends no `100 Continue` for an empty body (there is
/// nothing to continue with), but botocore waits for one, takes the final
/// response through its expect path, and then misreads the next response on
/// the same connection. Closing such a connection after the reply keeps
/// botocore (and so the aws CLI) from hanging on its next request.
fn empty_expecting_continue(headers: &http::HeaderMap) -> bool {
    expects_continue(headers)
        && headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
}

/// Whether the client sent `Expect: 100-continue` (it waits for our word
/// before sending the body).
pub fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
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
