//! The HTTP side of `bench metrics`: keep-alive HTTP/1.1 connections
//! (hyper's client connection on a tokio current_thread runtime), the
//! remote-write sender and the range-query runner.
//!
//! The sender plays Prometheus' remote-write queue: one connection per
//! shard, one request in flight on each, the shard's series always on it,
//! and no shard more than `lag_rounds` scrapes ahead of the slowest (they
//! would keep step if the scrapes came in real time; Prometheus' receiver
//! refuses samples older than its head's newest minus half a block range).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::series::{Body, Dataset};
use crate::child::Stop;
use crate::report::new_histogram;

/// Bytes of an error reply kept for the report.
pub const ERROR_TEXT_BYTES_MAX: usize = 300;
/// Bytes of a query reply read at most.
pub const QUERY_REPLY_BYTES_MAX: usize = 256 << 20;

/// Where a server listens and how to talk to it.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    /// The `Authorization` header, when the server wants one.
    pub authorization: Option<String>,
}

/// One keep-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    server: Server,
}

impl Connection {
    /// Connects and runs the connection's driver as a local task.
    pub async fn open(server: &Server) -> Result<Self, String> {
        let stream = TcpStream::connect(server.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", server.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            server: server.clone(),
        })
    }

    fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.server.addr.to_string())
            .header(hyper::header::USER_AGENT, "photon-bench-metrics");
        if let Some(auth) = &self.server.authorization {
            request = request.header(hyper::header::AUTHORIZATION, auth);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("{path}: reply body: {e}"))?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > QUERY_REPLY_BYTES_MAX {
                    return Err(format!("{path}: reply over {QUERY_REPLY_BYTES_MAX} bytes"));
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok((status, Bytes::from(bytes)))
    }

    /// POSTs one remote-write 1.0 body.
    pub async fn write(&mut self, body: Bytes) -> Result<(), String> {
        let headers = [
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "snappy"),
            ("x-prometheus-remote-write-version", "0.1.0"),
        ];
        let (status, reply) = self
            .send(Method::POST, "/api/v1/write", &headers, body)
            .await?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", error_text(&reply)));
        }
        Ok(())
    }

    /// GETs `path_and_query`; a non-2xx is an error with the reply's text.
    pub async fn get(&mut self, path_and_query: &str) -> Result<Bytes, String> {
        let (status, reply) = self
            .send(Method::GET, path_and_query, &[], Bytes::new())
            .await?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", error_text(&reply)));
        }
        Ok(reply)
    }
}

fn error_text(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(&reply[..reply.len().min(ERROR_TEXT_BYTES_MAX)]);
    text.trim().replace('\n', " ")
}

/// Runs `future` on a tokio current_thread runtime inside a `LocalSet`.
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(tokio::task::LocalSet::new().block_on(&runtime, future))
}

/// What one target's ingestion did.
#[derive(Debug)]
pub struct Ingested {
    /// Samples in requests answered 2xx.
    pub samples: u64,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first request sent to the last reply.
    pub elapsed: Duration,
    /// Request latency, us.
    pub histogram: Histogram<u64>,
}

/// Every connection's progress: the scrape round of the next body it
/// sends (`u32::MAX` once done). A connection waits while it would be more
/// than `lag_rounds` ahead of the slowest.
struct Pace {
    next_round: RefCell<Vec<u32>>,
    moved: Notify,
    lag_rounds: u32,
}

impl Pace {
    async fn wait_turn(&self, round: u32) {
        loop {
            let notified = self.moved.notified();
            let slowest = self.next_round.borrow().iter().copied().min().unwrap_or(0);
            if round <= slowest.saturating_add(self.lag_rounds) {
                return;
            }
            notified.await;
        }
    }

    fn set(&self, connection: usize, round: u32) {
        self.next_round.borrow_mut()[connection] = round;
        self.moved.notify_waiters();
    }
}

struct Tally {
    samples: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    histogram: Histogram<u64>,
}

/// Sends the whole data set to `server`, one connection per shard of it.
pub fn ingest(
    server: &Server,
    data: &Dataset,
    lag_rounds: u32,
    request_timeout: Duration,
    stop: &Stop,
) -> anyhow::Result<Ingested> {
    let pace = Rc::new(Pace {
        next_round: RefCell::new(
            data.connections
                .iter()
                .map(|b| b.first().map_or(u32::MAX, |b| b.round))
                .collect(),
        ),
        moved: Notify::new(),
        lag_rounds,
    });
    let tally = Rc::new(RefCell::new(Tally {
        samples: 0,
        requests: 0,
        errors: 0,
        first_error: None,
        histogram: new_histogram(),
    }));
    let started = Instant::now();
    block_on(async {
        let tasks: Vec<_> = data
            .connections
            .iter()
            .enumerate()
            .map(|(index, bodies)| {
                let shard = Shard {
                    index,
                    server: server.clone(),
                    bodies: bodies.clone(),
                    pace: pace.clone(),
                    tally: tally.clone(),
                    timeout: request_timeout,
                    stop: stop.clone(),
                };
                tokio::task::spawn_local(shard.run())
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    })?;
    let elapsed = started.elapsed();
    stop.check()?;
    let tally = Rc::try_unwrap(tally)
        .map_err(|_| anyhow::anyhow!("a sender outlived the run"))?
        .into_inner();
    Ok(Ingested {
        samples: tally.samples,
        requests: tally.requests,
        errors: tally.errors,
        first_error: tally.first_error,
        elapsed,
        histogram: tally.histogram,
    })
}

/// One remote-write shard: its bodies, in order, on one connection.
struct Shard {
    index: usize,
    server: Server,
    bodies: Vec<Body>,
    pace: Rc<Pace>,
    tally: Rc<RefCell<Tally>>,
    timeout: Duration,
    stop: Stop,
}

impl Shard {
    async fn run(self) {
        let mut connection: Option<Connection> = None;
        for (i, body) in self.bodies.iter().enumerate() {
            if self.stop.check().is_err() {
                break;
            }
            self.pace.wait_turn(body.round).await;
            let started = Instant::now();
            let result = tokio::time::timeout(self.timeout, async {
                if !connection.as_ref().is_some_and(Connection::is_open) {
                    connection = Some(Connection::open(&self.server).await?);
                }
                let open = connection.as_mut().expect("connected above");
                open.write(body.bytes.clone()).await
            })
            .await
            .unwrap_or_else(|_| Err(format!("no reply in {:?}", self.timeout)));
            let micros = started.elapsed().as_micros() as u64;
            let mut tally = self.tally.borrow_mut();
            tally.requests += 1;
            match result {
                Ok(()) => {
                    tally.samples += u64::from(body.samples);
                    let _ = tally.histogram.record(micros.max(1));
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(e);
                    // A reply may still come on this connection: start afresh.
                    connection = None;
                }
            }
            drop(tally);
            let next = self.bodies.get(i + 1).map_or(u32::MAX, |b| b.round);
            self.pace.set(self.index, next);
        }
        self.pace.set(self.index, u32::MAX);
    }
}

/// A dashboard panel's range query.
#[derive(Debug, Clone)]
pub struct Panel {
    pub name: &'static str,
    pub expr: String,
}

/// One panel's timings on one target.
#[derive(Debug)]
pub struct PanelResult {
    pub histogram: Histogram<u64>,
    /// Series in the (last) answer.
    pub series: usize,
    /// Points in the (last) answer.
    pub points: usize,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Runs each panel once unmeasured, then `repeats` times measured, one
/// after another on one connection, as a dashboard refresh would (one
/// panel after the other).
pub fn run_panels(
    server: &Server,
    panels: &[Panel],
    range_ms: (i64, i64),
    step_s: u64,
    repeats: u32,
    timeout: Duration,
) -> anyhow::Result<Vec<PanelResult>> {
    block_on(async {
        let mut results = Vec::new();
        let mut connection: Option<Connection> = None;
        for panel in panels {
            let path = format!(
                "/api/v1/query_range?query={}&start={:.3}&end={:.3}&step={step_s}",
                url_encode(&panel.expr),
                range_ms.0 as f64 / 1000.0,
                range_ms.1 as f64 / 1000.0,
            );
            let mut result = PanelResult {
                histogram: new_histogram(),
                series: 0,
                points: 0,
                errors: 0,
                first_error: None,
            };
            for attempt in 0..=repeats {
                let started = Instant::now();
                let reply = tokio::time::timeout(timeout, async {
                    if !connection.as_ref().is_some_and(Connection::is_open) {
                        connection = Some(Connection::open(server).await?);
                    }
                    connection
                        .as_mut()
                        .expect("connected above")
                        .get(&path)
                        .await
                })
                .await
                .unwrap_or_else(|_| Err(format!("no reply in {timeout:?}")))
                .and_then(|body| matrix_size(&body));
                let micros = started.elapsed().as_micros() as u64;
                match reply {
                    Ok((series, points)) => {
                        result.series = series;
                        result.points = points;
                        if attempt > 0 {
                            let _ = result.histogram.record(micros.max(1));
                        }
                    }
                    Err(e) => {
                        result.errors += 1;
                        result.first_error.get_or_insert(e);
                        connection = None;
                    }
                }
            }
            results.push(result);
        }
        results
    })
}

/// Series and points of a Prometheus API `matrix` answer.
fn matrix_size(body: &[u8]) -> Result<(usize, usize), String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("reply is not JSON: {e}"))?;
    if doc["status"] != "success" {
        return Err(format!("status {}: {}", doc["status"], doc["error"]));
    }
    let result = doc["data"]["result"]
        .as_array()
        .ok_or("reply has no data.result array")?;
    let points = result
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum();
    Ok((result.len(), points))
}

/// Percent-encodes a query parameter.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_are_counted_and_errors_kept() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"1"},"values":[[1,"1"],[2,"2"]]},{"metric":{},"values":[[1,"3"]]}]}}"#;
        assert_eq!(matrix_size(body), Ok((2, 3)));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(matrix_size(error).unwrap_err().contains("parse error"));
        assert!(matrix_size(b"nope").is_err());
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            url_encode("sum(rate(x[5m]))"),
            "sum%28rate%28x%5B5m%5D%29%29"
        );
    }
}
