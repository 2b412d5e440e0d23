//! A closed-loop HTTP/1.1 load generator: N keep-alive connections, each
//! sending one GET and reading the whole response before the next, latency of
//! every request recorded in an hdrhistogram. Runs in its own process (see
//! `bench engine`) so that the server's threads and its threads never share a
//! process: glommio's membarrier IPIs reach every thread of the process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::{new_histogram, Latency};

/// Largest response the generator accepts (head plus body).
pub const RESPONSE_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server address.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Path to GET.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Open connections, spread over the threads.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Load generator threads (one tokio current_thread runtime each).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Measured time, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration_s: f64,
    /// Unmeasured time before it, in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Pin thread i to CPU cpus[i % len]; empty leaves them to the scheduler.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Latency,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "rps": self.rps(),
            "latency_us": self.latency.to_json(),
        })
    }

    pub fn from_json(v: &serde_json::Value) -> anyhow::Result<Self> {
        let get = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_f64())
                .with_context(|| format!("missing {k}"))
        };
        Ok(Self {
            requests: get("requests")? as u64,
            errors: get("errors")? as u64,
            elapsed: Duration::from_secs_f64(get("elapsed_s")?),
            latency: Latency::from_json(v.get("latency_us").context("missing latency_us")?)?,
        })
    }
}

pub fn run_cli(args: LoadArgs) -> anyhow::Result<()> {
    let result = run(&args)?;
    if args.json {
        println!("{}", result.to_json());
    } else {
        println!(
            "{} requests in {:.2} s: {:.0} req/s, {} errors, latency {}",
            result.requests,
            result.elapsed.as_secs_f64(),
            result.rps(),
            result.errors,
            result.latency
        );
    }
    Ok(())
}

/// Runs the load and returns the merged result of every thread.
pub fn run(args: &LoadArgs) -> anyhow::Result<LoadResult> {
    if args.connections == 0 || args.threads == 0 {
        bail!("--connections and --threads must be at least 1");
    }
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: photon-bench\r\n\r\n",
        args.path, args.addr
    )
    .into_bytes();
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(args.warmup_s);
    let stop = measure_from + Duration::from_secs_f64(args.duration_s);
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let per_thread =
            args.connections / args.threads + usize::from(t < args.connections % args.threads);
        let cpu = (!args.cpus.is_empty()).then(|| args.cpus[t % args.cpus.len()]);
        let request = request.clone();
        let addr = args.addr;
        handles.push(std::thread::spawn(
            move || -> anyhow::Result<(u64, u64, Histogram<u64>)> {
                if let Some(cpu) = cpu {
                    crate::pin_current_thread(cpu)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let tasks: Vec<_> = (0..per_thread)
                        .map(|_| {
                            tokio::spawn(connection(addr, request.clone(), measure_from, stop))
                        })
                        .collect();
                    let _ = start;
                    let mut total = (0, 0, new_histogram());
                    for t in tasks {
                        let (ok, err, h) = t.await?;
                        total.0 += ok;
                        total.1 += err;
                        total.2.add(&h)?;
                    }
                    Ok(total)
                })
            },
        ));
    }
    let mut requests = 0;
    let mut errors = 0;
    let mut hist = new_histogram();
    for h in handles {
        let (ok, err, part) = h
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        requests += ok;
        errors += err;
        hist.add(&part)?;
    }
    Ok(LoadResult {
        requests,
        errors,
        elapsed: stop.saturating_duration_since(measure_from),
        latency: Latency::from_histogram(&hist),
    })
}

/// One connection's closed loop; reconnects after an error.
async fn connection(
    addr: SocketAddr,
    request: Vec<u8>,
    measure_from: Instant,
    stop: Instant,
) -> (u64, u64, Histogram<u64>) {
    let mut hist = new_histogram();
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut buf = vec![0u8; 16 * 1024];
    'outer: while Instant::now() < stop {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        loop {
            let sent = Instant::now();
            if sent >= stop {
                break 'outer;
            }
            if stream.write_all(&request).await.is_err()
                || read_response(&mut stream, &mut buf).await.is_err()
            {
                errors += 1;
                continue 'outer;
            }
            if sent >= measure_from {
                ok += 1;
                let us = sent.elapsed().as_micros() as u64;
                let _ = hist.record(us.max(1));
            }
        }
    }
    (ok, errors, hist)
}

/// Reads one response (head and Content-Length body).
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= RESPONSE_BYTES_MAX {
                bail!("response larger than {RESPONSE_BYTES_MAX} bytes");
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            bail!("connection closed mid-response");
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(&buf[..filled])? {
            if response.code != Some(200) {
                bail!("status {:?}", response.code);
            }
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .context("response without Content-Length")?;
            let total = head + length;
            while filled < total {
                if total > buf.len() {
                    buf.resize(total, 0);
                }
                let n = stream.read(&mut buf[filled..total]).await?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                filled += n;
            }
            return Ok(());
        }
    }
}
