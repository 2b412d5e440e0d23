//! Writes: decode the request (`photon-metrics-wire`), check every owner
//! shard's part of it, then append each part on its owner. A request that
//! any shard refuses stores nothing (a write racing another between the
//! two phases can still be refused in the second: it is then answered with
//! the error, and the parts already appended are valid samples a retry
//! finds again as duplicates, which are no-ops).

use std::collections::BTreeMap;

use bytes::Bytes;
use http::HeaderMap;
use photon_metrics_wire::{self as wire, Metadata, SeriesSamples, WriteBatch};

use crate::api::{no_content, Api, ApiError, ApiResult};
use crate::auth::Caller;
use crate::params::Form;
use crate::shard::{owner, Reply, Request};
use crate::store::AppendFailure;

fn wire_error(e: wire::WireError) -> ApiError {
    ApiError::new(e.status(), "bad_data", e.to_string())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn write(
    api: &Api,
    caller: &Caller,
    path: &str,
    headers: &HeaderMap,
    query: &Form,
    body: Bytes,
) -> ApiResult {
    let limits = api.service.wire_limits();
    let (batch, v2) = match path {
        "/api/v1/write" | "/api/v1/push" => {
            let version = wire::remote_write_version(
                header(headers, "content-type"),
                header(headers, "content-encoding"),
            )
            .map_err(wire_error)?;
            let batch = wire::decode_remote_write(version, &body, &limits).map_err(wire_error)?;
            (batch, version == wire::RemoteWriteVersion::V2)
        }
        "/api/v2/write" => {
            let precision = match query.get("precision") {
                Some(p) => wire::Precision::parse_v2(p).map_err(wire_error)?,
                None => wire::Precision::Ns,
            };
            (
                wire::parse_influx(&body, precision, crate::now_ms(), &limits)
                    .map_err(wire_error)?,
                false,
            )
        }
        "/write" => {
            let precision = match query.get("precision") {
                Some(p) => wire::Precision::parse_v1(p).map_err(wire_error)?,
                None => wire::Precision::Ns,
            };
            (
                wire::parse_influx(&body, precision, crate::now_ms(), &limits)
                    .map_err(wire_error)?,
                false,
            )
        }
        _ => (
            wire::parse_prometheus_text(&body, crate::now_ms(), &limits).map_err(wire_error)?,
            false,
        ),
    };
    let samples: u64 = batch.series.iter().map(|s| s.samples.len() as u64).sum();
    store(api, &caller.namespace(), batch).await?;
    let mut response = no_content();
    if v2 {
        let h = response.headers_mut();
        h.insert("X-Prometheus-Remote-Write-Samples-Written", samples.into());
        h.insert("X-Prometheus-Remote-Write-Histograms-Written", 0u64.into());
        h.insert("X-Prometheus-Remote-Write-Exemplars-Written", 0u64.into());
    }
    Ok(response)
}

/// Splits a batch by owner shard: (series, metadata) per shard.
fn split(batch: WriteBatch, shards: usize) -> BTreeMap<usize, (Vec<SeriesSamples>, Vec<Metadata>)> {
    let mut parts: BTreeMap<usize, (Vec<SeriesSamples>, Vec<Metadata>)> = BTreeMap::new();
    for s in batch.series {
        parts.entry(owner(&s.labels, shards)).or_default().0.push(s);
    }
    for m in batch.metadata {
        let shard = photon_core::routing::owner_of(m.metric_family.as_bytes(), shards);
        parts.entry(shard).or_default().1.push(m);
    }
    parts
}

fn failure(e: AppendFailure) -> ApiError {
    match e {
        AppendFailure::Refused(m) => ApiError::bad_data(m),
        AppendFailure::Unavailable(m) => ApiError::new(503, "unavailable", m),
    }
}

/// Stores a decoded batch for `tenant` over the owner shards.
pub async fn store(api: &Api, tenant: &str, batch: WriteBatch) -> Result<(), ApiError> {
    let parts = split(batch, api.ctx.shards());
    if parts.len() > 1 {
        let mut checks = Vec::new();
        for (&shard, (series, _)) in &parts {
            if series.is_empty() {
                continue;
            }
            let request = Request::Check {
                tenant: tenant.to_string(),
                series: series.clone(),
            };
            let ctx = api.ctx.clone();
            checks.push(api.ctx.spawn(async move { ctx.call(shard, request).await }));
        }
        for c in checks {
            match c.await {
                Ok(Reply::Checked(Ok(()))) => {}
                Ok(Reply::Checked(Err(e))) => return Err(failure(e)),
                other => {
                    return Err(ApiError::new(
                        503,
                        "unavailable",
                        format!("a shard did not check the write: {other:?}"),
                    ))
                }
            }
        }
    }
    let mut appends = Vec::new();
    for (shard, (series, metadata)) in parts {
        let request = Request::Append {
            tenant: tenant.to_string(),
            series,
            metadata,
        };
        let ctx = api.ctx.clone();
        appends.push(api.ctx.spawn(async move { ctx.call(shard, request).await }));
    }
    let mut first_error = None;
    for a in appends {
        let outcome = match a.await {
            Ok(Reply::Written(Ok(_))) => continue,
            Ok(Reply::Written(Err(e))) => failure(e),
            other => ApiError::new(
                503,
                "unavailable",
                format!("a shard did not store its part: {other:?}"),
            ),
        };
        first_error.get_or_insert(outcome);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
