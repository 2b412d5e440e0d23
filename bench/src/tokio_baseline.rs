//! The baseline a user would otherwise write: a tokio multi-thread runtime
//! doing the same work as the engine (hyper serving the same response; tasks
//! exchanging requests and replies over tokio channels).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use tokio::sync::{mpsc, oneshot};

use crate::report::Latency;

/// The body every benchmark HTTP server answers with.
pub const HELLO_BODY: &[u8] = b"hello, photon\n";

fn runtime(workers: usize, cpus: Vec<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(workers)
        .enable_all()
        .thread_name("tokio-baseline");
    if !cpus.is_empty() {
        builder.on_thread_start(move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = crate::pin_current_thread(cpus[i % cpus.len()]) {
                tracing::warn!("{e:#}");
            }
        });
    }
    Ok(builder.build()?)
}

/// hyper on a tokio multi-thread runtime, answering every GET with HELLO_BODY.
pub struct TokioHttpServer {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for TokioHttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokioHttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TokioHttpServer {
    pub fn start(workers: usize, cpus: Vec<usize>) -> anyhow::Result<Self> {
        let runtime = runtime(workers, cpus)?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                HELLO_BODY,
                            ))))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            runtime: Some(runtime),
        })
    }
}

impl Drop for TokioHttpServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Result of a request/reply exchange between two executors or tasks.
#[derive(Debug, Clone, Copy)]
pub struct CallResult {
    /// Round trips of one caller waiting for each reply.
    pub sequential: Latency,
    /// Round trips per second with `concurrency` callers.
    pub concurrent_calls_per_s: f64,
    pub concurrency: usize,
}

type CallSender = mpsc::Sender<(u64, oneshot::Sender<u64>)>;

/// One request/reply exchange over a tokio channel; `None` if the server is gone.
async fn tokio_call(tx: &CallSender, n: u64) -> Option<u64> {
    let (reply, wait) = oneshot::channel();
    tx.send((n, reply)).await.ok()?;
    wait.await.ok()
}

/// A server task answers `u64 -> u64` requests from tokio mpsc with a oneshot
/// reply; a caller measures round trips, then `concurrency` callers measure
/// throughput for `duration`.
pub fn cross_task_calls(
    workers: usize,
    cpus: Vec<usize>,
    calls: usize,
    warmup: usize,
    concurrency: usize,
    duration: Duration,
    queue_depth: usize,
) -> anyhow::Result<CallResult> {
    let runtime = runtime(workers, cpus)?;
    let result = runtime.block_on(async move {
        let (tx, mut rx): (CallSender, _) = mpsc::channel(queue_depth);
        tokio::spawn(async move {
            while let Some((v, reply)) = rx.recv().await {
                let _ = reply.send(v * 2);
            }
        });
        // The caller runs in its own spawned task, as the photon caller runs
        // in a task of its shard.
        let caller_tx = tx.clone();
        let sequential = tokio::spawn(async move {
            crate::calls::sequential(|n| tokio_call(&caller_tx, n), warmup, calls).await
        })
        .await
        .expect("caller task");
        let stop = Instant::now() + duration;
        let callers: Vec<_> = (0..concurrency)
            .map(|_| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    crate::calls::closed_loop(|n| tokio_call(&tx, n), stop).await
                })
            })
            .collect();
        let started = Instant::now();
        let mut total = 0;
        for c in callers {
            total += c.await.unwrap_or(0);
        }
        CallResult {
            sequential,
            concurrent_calls_per_s: total as f64 / started.elapsed().as_secs_f64(),
            concurrency,
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(result)
}

/// The same exchange between two tokio current_thread runtimes on two pinned
/// threads: a thread-per-core design built from tokio, where every call
/// crosses cores (unlike the multi-thread runtime, which may run both tasks on
/// one worker).
pub fn cross_thread_calls(
    cpus: [usize; 2],
    calls: usize,
    warmup: usize,
    concurrency: usize,
    duration: Duration,
    queue_depth: usize,
) -> anyhow::Result<CallResult> {
    let (tx, mut rx): (CallSender, _) = mpsc::channel(queue_depth);
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        crate::pin_current_thread(cpus[1])?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            while let Some((v, reply)) = rx.recv().await {
                let _ = reply.send(v * 2);
            }
        });
        Ok(())
    });
    let caller = std::thread::spawn(move || -> anyhow::Result<CallResult> {
        crate::pin_current_thread(cpus[0])?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        Ok(local.block_on(&rt, async move {
            let sequential = crate::calls::sequential(|n| tokio_call(&tx, n), warmup, calls).await;
            let stop = Instant::now() + duration;
            let started = Instant::now();
            let callers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let tx = tx.clone();
                    tokio::task::spawn_local(async move {
                        crate::calls::closed_loop(|n| tokio_call(&tx, n), stop).await
                    })
                })
                .collect();
            let mut total = 0;
            for c in callers {
                total += c.await.unwrap_or(0);
            }
            CallResult {
                sequential,
                concurrent_calls_per_s: total as f64 / started.elapsed().as_secs_f64(),
                concurrency,
            }
        }))
    });
    let result = caller
        .join()
        .map_err(|_| anyhow::anyhow!("caller thread panicked"))??;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    Ok(result)
}
