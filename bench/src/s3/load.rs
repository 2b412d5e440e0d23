//! The closed loops of `bench s3`: N connections, each sending one signed
//! request and reading the whole reply before the next, on one or more
//! tokio current_thread runtimes; plus the fill that writes every key
//! before the reads, and the bucket set-up.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;

use super::client::{BucketError, Endpoint, Payload, S3Connection};
use super::objects::{ObjectSet, OBJECT_BYTES_MAX, OBJECT_BYTES_MIN};
use crate::disk::{ByteSize, SplitMix64};
use crate::report::new_histogram;

/// Pause of a connection after a failed request, so that a failing server
/// is not hammered in a tight loop.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// How long a point may run past its end (requests in flight finish,
/// uncounted) before it counts as hung, on top of the request timeout.
pub const POINT_GRACE: Duration = Duration::from_secs(10);
/// Retry pause while a bucket is being set up.
pub const BUCKET_RETRY: Duration = Duration::from_millis(200);

/// What each request of a workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Put,
    Get,
    /// GETs and PUTs, `--mixed-get-percent` of them GETs.
    Mixed,
}

/// One operation on objects of one size, written `put-4k`, `get-64m`, `mixed-4k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Workload {
    pub operation: Operation,
    pub size: u64,
}

impl Workload {
    /// Whether it reads objects that must have been written first.
    pub fn reads(&self) -> bool {
        self.operation != Operation::Put
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (operation, size) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?}: expected put-SIZE, get-SIZE or mixed-SIZE"))?;
        let operation = match operation.to_ascii_lowercase().as_str() {
            "put" => Operation::Put,
            "get" => Operation::Get,
            "mixed" => Operation::Mixed,
            other => return Err(format!("{other:?}: the operations are put, get and mixed")),
        };
        let size = size.parse::<ByteSize>()?.0;
        if !(OBJECT_BYTES_MIN..=OBJECT_BYTES_MAX).contains(&size) {
            return Err(format!(
                "{text:?}: object sizes are {OBJECT_BYTES_MIN} bytes to {}",
                ByteSize(OBJECT_BYTES_MAX)
            ));
        }
        Ok(Self { operation, size })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operation = match self.operation {
            Operation::Put => "put",
            Operation::Get => "get",
            Operation::Mixed => "mixed",
        };
        write!(f, "{operation} {}", ByteSize(self.size))
    }
}

/// What one point's closed loops need to know.
#[derive(Debug)]
pub struct Plan {
    pub operation: Operation,
    pub set: Arc<ObjectSet>,
    pub payload: Payload,
    pub get_percent: u64,
    pub verify_full: bool,
    pub request_timeout: Duration,
    pub window: Window,
}

/// The measured window of a point: from the end of the warm-up to the
/// first moment after `stop` at which `samples_min` requests have completed
/// inside it, or to `stop_max`. Large objects take longer than a few
/// seconds per request; a p99 needs some samples.
#[derive(Debug)]
pub struct Window {
    pub from: Instant,
    pub stop: Instant,
    pub stop_max: Instant,
    pub samples_min: u64,
    completed: AtomicU64,
    end: OnceLock<Instant>,
}

impl Window {
    pub fn new(
        from: Instant,
        duration: Duration,
        duration_max: Duration,
        samples_min: u64,
    ) -> Self {
        assert!(duration <= duration_max);
        Self {
            from,
            stop: from + duration,
            stop_max: from + duration_max,
            samples_min,
            completed: AtomicU64::new(0),
            end: OnceLock::new(),
        }
    }

    /// Whether a connection may start another request at `now`; decides
    /// the window's end the first time the answer is no.
    fn is_open(&self, now: Instant) -> bool {
        if let Some(end) = self.end.get() {
            return now < *end;
        }
        if now >= self.stop_max {
            let _ = self.end.set(self.stop_max);
            return false;
        }
        if now >= self.stop && self.completed.load(Ordering::Relaxed) >= self.samples_min {
            let _ = self.end.set(now);
            return false;
        }
        true
    }

    fn completed(&self, done: Instant) {
        if done > self.from {
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The end, once every connection has stopped.
    pub fn end(&self) -> Instant {
        *self.end.get().unwrap_or(&self.stop_max)
    }
}

/// One successful request.
#[derive(Debug, Clone, Copy)]
struct Sample {
    sent: Instant,
    done: Instant,
    bytes: u64,
}

/// What some connections did: every successful request, and the failures.
#[derive(Debug, Default)]
struct Log {
    samples: Vec<Sample>,
    errors: u64,
    first_error: Option<String>,
}

impl Log {
    fn merge(&mut self, other: Log) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn failed(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// Counts and latencies of a point.
///
/// Throughput counts each successful request in proportion to the part of
/// its lifetime inside the measured window (a request half inside counts
/// half, with half its bytes). With large objects a request can last longer
/// than the window, and connections that started together finish together:
/// counting only completions would then measure where the bursts fall.
/// Latencies are those of the requests that completed inside the window.
#[derive(Debug)]
pub struct Tally {
    /// Requests that completed inside the measured window.
    pub completed: u64,
    /// Requests counted by the share of their lifetime inside the window.
    pub ops: f64,
    /// Body bytes moved (sent for PUTs, received for GETs), counted the same way.
    pub bytes: f64,
    /// Failed requests during the whole point, warm-up included.
    pub errors: u64,
    pub first_error: Option<String>,
    pub histogram: Histogram<u64>,
    /// The measured window's length.
    pub elapsed: Duration,
}

impl Tally {
    fn of(log: Log, from: Instant, end: Instant) -> Self {
        let mut tally = Self {
            completed: 0,
            ops: 0.0,
            bytes: 0.0,
            errors: log.errors,
            first_error: log.first_error,
            histogram: new_histogram(),
            elapsed: end.saturating_duration_since(from),
        };
        for sample in &log.samples {
            let share = window_share(sample.sent, sample.done, from, end);
            tally.ops += share;
            tally.bytes += share * sample.bytes as f64;
            if sample.done > from && sample.done <= end {
                tally.completed += 1;
                let us = (sample.done - sample.sent).as_micros() as u64;
                let _ = tally.histogram.record(us.max(1));
            }
        }
        tally
    }
}

/// Runs `connections` closed loops spread over `threads` runtimes until
/// the window closes, then waits for the requests in flight.
pub fn measure(
    endpoint: &Arc<Endpoint>,
    plan: Arc<Plan>,
    connections: usize,
    threads: usize,
) -> anyhow::Result<Tally> {
    let threads = threads.clamp(1, connections);
    let deadline = plan.window.stop_max + plan.request_timeout + POINT_GRACE;
    let mut handles = Vec::new();
    for thread in 0..threads {
        let indices: Vec<usize> = (thread..connections).step_by(threads).collect();
        let (endpoint, plan) = (endpoint.clone(), plan.clone());
        handles.push(std::thread::spawn(move || {
            block_on(async move {
                let tasks: Vec<_> = indices
                    .into_iter()
                    .map(|i| {
                        tokio::task::spawn_local(closed_loop(endpoint.clone(), plan.clone(), i))
                    })
                    .collect();
                let deadline = tokio::time::Instant::from_std(deadline);
                let mut total = Log::default();
                for task in tasks {
                    let part = tokio::time::timeout_at(deadline, task)
                        .await
                        .context("a connection was still in a request long after the point")??;
                    total.merge(part);
                }
                anyhow::Ok(total)
            })?
        }));
    }
    let mut total = Log::default();
    for handle in handles {
        let part = handle
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        total.merge(part);
    }
    Ok(Tally::of(total, plan.window.from, plan.window.end()))
}

/// One connection: request, whole reply, next request, until the window
/// closes. Requests in flight then finish (and count for their share
/// inside the window); a failed request drops the connection (its reply
/// may be half read).
async fn closed_loop(endpoint: Arc<Endpoint>, plan: Arc<Plan>, index: usize) -> Log {
    let mut log = Log::default();
    let mut random = SplitMix64(0x9e37_79b9_7f4a_7c15 ^ index as u64);
    let mut connection: Option<S3Connection> = None;
    while plan.window.is_open(Instant::now()) {
        if !connection.as_ref().is_some_and(S3Connection::is_open) {
            match S3Connection::connect(&endpoint).await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    log.failed(e);
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        let n = random.next() % plan.set.keys;
        let get = match plan.operation {
            Operation::Get => true,
            Operation::Put => false,
            Operation::Mixed => random.next() % 100 < plan.get_percent,
        };
        let sent = Instant::now();
        let request = async {
            if get {
                conn.get(&plan.set, n, plan.verify_full).await
            } else {
                conn.put(&plan.set, n, plan.payload).await
            }
        };
        let result = tokio::time::timeout(plan.request_timeout, request).await;
        let done = Instant::now();
        match result {
            Ok(Ok(bytes)) => {
                plan.window.completed(done);
                log.samples.push(Sample { sent, done, bytes });
            }
            Ok(Err(e)) => {
                log.failed(e);
                connection = None;
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
            Err(_) => {
                log.failed(format!("no reply in {:?}", plan.request_timeout));
                connection = None;
            }
        }
    }
    log
}

/// The share of the interval [sent, done] inside [from, to]: 0 to 1.
fn window_share(sent: Instant, done: Instant, from: Instant, to: Instant) -> f64 {
    let inside = done.min(to).saturating_duration_since(sent.max(from));
    let lifetime = done.saturating_duration_since(sent);
    if lifetime.is_zero() {
        return if sent > from && sent <= to { 1.0 } else { 0.0 };
    }
    inside.as_secs_f64() / lifetime.as_secs_f64()
}

/// Writes every key of `set` once over `connections` connections, so that
/// every GET finds its object. Any failure fails the fill.
pub fn fill(
    endpoint: &Arc<Endpoint>,
    set: &Arc<ObjectSet>,
    payload: Payload,
    connections: usize,
    request_timeout: Duration,
) -> anyhow::Result<()> {
    let writers = (connections as u64).min(set.keys);
    block_on(async move {
        let tasks: Vec<_> = (0..writers)
            .map(|writer| {
                let (endpoint, set) = (endpoint.clone(), set.clone());
                tokio::task::spawn_local(async move {
                    let mut conn = S3Connection::connect(&endpoint)
                        .await
                        .map_err(anyhow::Error::msg)?;
                    for n in (writer..set.keys).step_by(writers as usize) {
                        tokio::time::timeout(request_timeout, conn.put(&set, n, payload))
                            .await
                            .map_err(|_| anyhow::anyhow!("no reply in {request_timeout:?}"))?
                            .map_err(anyhow::Error::msg)?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok(())
    })?
}

/// Makes sure the bucket exists (HEAD, then CreateBucket on 404), retrying
/// until `timeout` while the server does not answer or answers 5xx: a
/// server that just started may not be ready. A 4xx fails at once.
pub fn ensure_bucket(endpoint: &Arc<Endpoint>, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    block_on(async move {
        let mut last = String::new();
        while Instant::now() < deadline {
            let attempt = async {
                let mut conn = S3Connection::connect(endpoint)
                    .await
                    .map_err(BucketError::Unavailable)?;
                if !conn.bucket_exists().await? {
                    // A 404 may come with `Connection: close`.
                    let mut conn = S3Connection::connect(endpoint)
                        .await
                        .map_err(BucketError::Unavailable)?;
                    conn.create_bucket().await?;
                }
                Ok::<(), BucketError>(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(BucketError::Refused(e)) => {
                    bail!(
                        "{}: cannot use bucket {}: {e}",
                        endpoint.name,
                        endpoint.bucket
                    )
                }
                Err(BucketError::Unavailable(e)) => last = e,
            }
            tokio::time::sleep(BUCKET_RETRY).await;
        }
        bail!(
            "{}: bucket {} not usable in {timeout:?}: {last}",
            endpoint.name,
            endpoint.bucket
        )
    })?
}

/// Runs `future` on a tokio current_thread runtime inside a `LocalSet`
/// (the client's connection drivers are local tasks).
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build a tokio runtime")?;
    Ok(tokio::task::LocalSet::new().block_on(&runtime, future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_their_share_of_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let (from, to) = (at(1000), at(4000));
        assert_eq!(window_share(at(1500), at(2500), from, to), 1.0);
        assert_eq!(window_share(at(0), at(500), from, to), 0.0);
        assert_eq!(window_share(at(4000), at(5000), from, to), 0.0);
        assert!((window_share(at(0), at(2000), from, to) - 0.5).abs() < 1e-9);
        assert!((window_share(at(3000), at(5000), from, to) - 0.5).abs() < 1e-9);
        assert!((window_share(at(0), at(5000), from, to) - 0.6).abs() < 1e-9);
        assert_eq!(window_share(at(2000), at(2000), from, to), 1.0);
    }

    #[test]
    fn the_window_closes_after_its_duration_once_it_has_enough_samples() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let window = Window::new(at(1000), Duration::from_secs(3), Duration::from_secs(10), 2);
        assert!(window.is_open(at(3999)));
        window.completed(at(500)); // warm-up: not a sample
        window.completed(at(2000));
        assert!(window.is_open(at(5000)), "one sample is not enough");
        window.completed(at(5500));
        assert!(!window.is_open(at(6000)));
        window.completed(at(6500));
        assert!(!window.is_open(at(7000)), "the end is decided once");
        assert_eq!(window.end(), at(6000));
        let capped = Window::new(
            at(1000),
            Duration::from_secs(3),
            Duration::from_secs(10),
            99,
        );
        assert!(!capped.is_open(at(12_000)));
        assert_eq!(capped.end(), at(11_000));
    }

    #[test]
    fn a_tally_counts_shares_and_completions_inside_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let sample = |sent, done| Sample {
            sent: at(sent),
            done: at(done),
            bytes: 100,
        };
        let log = Log {
            samples: vec![
                sample(0, 2000),
                sample(1500, 2500),
                sample(3000, 5000),
                sample(0, 900),
            ],
            errors: 1,
            first_error: Some("x".into()),
        };
        let tally = Tally::of(log, at(1000), at(4000));
        assert_eq!(tally.completed, 2);
        assert!((tally.ops - 2.0).abs() < 1e-9);
        assert!((tally.bytes - 200.0).abs() < 1e-9);
        assert_eq!(tally.elapsed, Duration::from_secs(3));
        assert_eq!(tally.histogram.len(), 2);
    }

    #[test]
    fn workloads_parse_and_print() {
        let w: Workload = "put-4k".parse().unwrap();
        assert_eq!(
            w,
            Workload {
                operation: Operation::Put,
                size: 4096
            }
        );
        assert_eq!(w.to_string(), "put 4 KiB");
        let w: Workload = "mixed-64m".parse().unwrap();
        assert_eq!(w.operation, Operation::Mixed);
        assert!(w.reads());
        assert!("get".parse::<Workload>().is_err());
        assert!("list-4k".parse::<Workload>().is_err());
        assert!("get-8".parse::<Workload>().is_err());
        assert!("get-2g".parse::<Workload>().is_err());
    }
}
