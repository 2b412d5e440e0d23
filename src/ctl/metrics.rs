//! `photon ctl metrics`: PromQL against NightLight, through its Prometheus
//! HTTP API with the stored token. The endpoint is `--endpoint`, else the
//! `nightlight` endpoint of an up node in the registry.

use anyhow::{bail, Context};
use clap::Subcommand;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use photon_control::client::Client;
use serde_json::Value;

use crate::ctl::output::{Output, Table};

/// Largest answer read (a table of a huge result is of no use anyway).
const ANSWER_BYTES_MAX: usize = 256 << 20;

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Evaluates an instant query: one value per series.
    Query {
        expr: String,
        /// Evaluation time (RFC 3339 or Unix seconds; default now).
        #[arg(long)]
        time: Option<String>,
        /// NightLight's address (default: from the node registry).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Evaluates a range query: points per series.
    QueryRange {
        expr: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        /// Resolution (`15s`, `1m`, or seconds).
        #[arg(long, default_value = "60s")]
        step: String,
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Series matching a selector.
    Series {
        selector: String,
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Label names.
    Labels {
        #[arg(long)]
        endpoint: Option<String>,
    },
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn endpoint(client: &mut Client, given: Option<String>) -> anyhow::Result<String> {
    if let Some(e) = given {
        return Ok(e
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string());
    }
    let nodes = client.nodes().await?;
    nodes
        .iter()
        .filter(|n| n.state == "up")
        .find_map(|n| n.endpoints.get("nightlight").cloned())
        .context("no node in the registry serves NightLight (the metrics role); pass --endpoint")
}

/// GETs `path?query` with the token and returns the API's `data`.
async fn get(address: &str, path_and_query: &str, token: &str) -> anyhow::Result<Value> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to NightLight at {address}"))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::task::spawn_local(connection);
    let request = hyper::Request::get(path_and_query)
        .header(hyper::header::HOST, address)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), ANSWER_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading NightLight's answer: {e}"))?
        .to_bytes();
    let doc: Value = serde_json::from_slice(&body)
        .with_context(|| format!("NightLight answered {status} with no JSON"))?;
    if doc["status"] != "success" {
        bail!(
            "{} ({}): {}",
            doc["errorType"].as_str().unwrap_or("error"),
            status,
            doc["error"].as_str().unwrap_or("")
        );
    }
    Ok(doc["data"].clone())
}

fn series_name(metric: &Value) -> String {
    let Some(map) = metric.as_object() else {
        return String::new();
    };
    let name = map.get("__name__").and_then(|v| v.as_str()).unwrap_or("");
    let labels: Vec<String> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={}", v))
        .collect();
    format!("{name}{{{}}}", labels.join(", "))
}

fn point(p: &Value) -> (String, String) {
    let t = p[0].as_f64().unwrap_or(0.0);
    let time = crate::ctl::utc_time((t * 1000.0) as u64);
    (time, p[1].as_str().unwrap_or("").to_string())
}

fn result_table(data: &Value) -> String {
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("vector") => {
            let mut table = Table::new(["SERIES", "VALUE", "TIME"]);
            for s in result.as_array().into_iter().flatten() {
                let (time, value) = point(&s["value"]);
                table.row([series_name(&s["metric"]), value, time]);
            }
            table.to_string()
        }
        Some("matrix") => {
            let mut table = Table::new(["SERIES", "POINTS", "FIRST", "LAST", "LAST VALUE"]);
            for s in result.as_array().into_iter().flatten() {
                let values = s["values"].as_array().cloned().unwrap_or_default();
                let first = values.first().map(|p| point(p).0).unwrap_or_default();
                let (last, value) = values.last().map(point).unwrap_or_default();
                table.row([
                    series_name(&s["metric"]),
                    values.len().to_string(),
                    first,
                    last,
                    value,
                ]);
            }
            table.to_string()
        }
        _ => {
            let (time, value) = point(result);
            let mut table = Table::new(["VALUE", "TIME"]);
            table.row([value, time]);
            table.to_string()
        }
    }
}

pub async fn run(
    client: &mut Client,
    token: &str,
    cmd: MetricsCommand,
    out: Output,
) -> anyhow::Result<()> {
    match cmd {
        MetricsCommand::Query {
            expr,
            time,
            endpoint: e,
        } => {
            let address = endpoint(client, e).await?;
            let mut q = format!("/api/v1/query?query={}", encode(&expr));
            if let Some(t) = time {
                q.push_str(&format!("&time={}", encode(&t)));
            }
            let data = get(&address, &q, token).await?;
            out.show(&data, result_table);
        }
        MetricsCommand::QueryRange {
            expr,
            start,
            end,
            step,
            endpoint: e,
        } => {
            let address = endpoint(client, e).await?;
            let q = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                encode(&expr),
                encode(&start),
                encode(&end),
                encode(&step)
            );
            let data = get(&address, &q, token).await?;
            out.show(&data, result_table);
        }
        MetricsCommand::Series {
            selector,
            endpoint: e,
        } => {
            let address = endpoint(client, e).await?;
            let q = format!("/api/v1/series?match[]={}", encode(&selector));
            let data = get(&address, &q, token).await?;
            out.show(&data, |d| {
                let mut table = Table::new(["SERIES"]);
                for s in d.as_array().into_iter().flatten() {
                    table.row([series_name(s)]);
                }
                table.to_string()
            });
        }
        MetricsCommand::Labels { endpoint: e } => {
            let address = endpoint(client, e).await?;
            let data = get(&address, "/api/v1/labels", token).await?;
            out.show(&data, |d| {
                let mut table = Table::new(["LABEL"]);
                for s in d.as_array().into_iter().flatten() {
                    table.row([s.as_str().unwrap_or("").to_string()]);
                }
                table.to_string()
            });
        }
    }
    Ok(())
}
