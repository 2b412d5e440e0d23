//! Prometheus' query API: `/api/v1/query`, `query_range`, `series`,
//! `labels`, `label/<name>/values`, `metadata`, `status/buildinfo`.
//!
//! A query is evaluated on the shard that received it: the expression's
//! selections (`photon_promql::selections`) are fetched from every shard in
//! one round, then evaluated in memory.

use std::collections::{BTreeMap, BTreeSet};

use photon_promql::{self as promql, MemStorage, QueryError, QueryParams};
use photon_tsdb::{Labels, Matcher};
use serde_json::{json, Value};

use crate::api::{success, Api, ApiError, ApiResult};
use crate::auth::Caller;
use crate::params::{parse_duration, parse_time, Form};
use crate::shard::{ask_all, Range, Reply, Request};

/// Prometheus' bounds of "no start" and "no end" for metadata queries.
const MIN_TIME_MS: i64 = -9_223_372_036_854_775 / 1000 * 1000;
const MAX_TIME_MS: i64 = 9_223_372_036_854_775 / 1000 * 1000;

/// Series `/api/v1/series` and friends return at most (Prometheus has
/// `limit`, unbounded by default; ours is bounded).
const SERIES_RESULT_MAX: usize = 100_000;

pub fn buildinfo() -> Value {
    json!({
        "version": "2.42.0",
        "revision": concat!("photon-nightlight-", env!("CARGO_PKG_VERSION")),
        "branch": "nightlight",
        "buildUser": "photoncloud",
        "buildDate": "20260101-00:00:00",
        "goVersion": "none (NightLight is Rust)"
    })
}

fn query_error(e: QueryError) -> ApiError {
    let status = match e.error_type() {
        "bad_data" => 400,
        "execution" => 422,
        "timeout" | "canceled" => 503,
        _ => 500,
    };
    ApiError::new(status, e.error_type(), e.to_string())
}

pub async fn route(api: &Api, caller: &Caller, path: &str, form: &Form) -> ApiResult {
    let tenant = caller.namespace();
    match path {
        "/api/v1/query" => instant_query(api, &tenant, form).await,
        "/api/v1/query_range" => range_query(api, &tenant, form).await,
        "/api/v1/series" => series(api, &tenant, form).await,
        "/api/v1/labels" => labels(api, &tenant, form).await,
        "/api/v1/metadata" => metadata(api, &tenant, form).await,
        "/api/v1/status/runtimeinfo" => success(
            json!({"storageRetention": format!("{}h", api.service.params.config.retention_hours)}),
        ),
        _ => {
            if let Some(name) = path
                .strip_prefix("/api/v1/label/")
                .and_then(|rest| rest.strip_suffix("/values"))
            {
                return label_values(api, &tenant, name, form).await;
            }
            Err(ApiError::new(
                404,
                "not_found",
                format!("no such endpoint: {path}"),
            ))
        }
    }
}

fn limits(api: &Api, form: &Form) -> Result<promql::Limits, ApiError> {
    Ok(promql::Limits {
        samples_max: api.service.params.config.query_samples_max,
        deadline: Some(api.deadline(form)?),
        ..promql::Limits::default()
    })
}

async fn instant_query(api: &Api, tenant: &str, form: &Form) -> ApiResult {
    let text = form
        .get("query")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": query is empty"))?;
    let time = match form.get("time") {
        Some(t) => parse_time("time", t).map_err(ApiError::bad_data)?,
        None => crate::now_ms(),
    };
    let mut params = QueryParams::instant(time);
    params.limits = limits(api, form)?;
    if let Some(l) = form.get("lookback_delta") {
        params.lookback_ms = parse_duration("lookback_delta", l).map_err(ApiError::bad_data)?;
    }
    let expr = promql::parse(text).map_err(query_error)?;
    let storage = fetch(api, tenant, &expr, &params).await?;
    let value = promql::eval_instant(&expr, &storage, &params).map_err(query_error)?;
    success(promql::result_json(&value))
}

async fn range_query(api: &Api, tenant: &str, form: &Form) -> ApiResult {
    let get = |name: &str| {
        form.get(name)
            .ok_or_else(|| ApiError::bad_data(format!("invalid parameter {name:?}: missing")))
    };
    let text = get("query")?;
    let start = parse_time("start", get("start")?).map_err(ApiError::bad_data)?;
    let end = parse_time("end", get("end")?).map_err(ApiError::bad_data)?;
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = parse_duration("step", get("step")?).map_err(ApiError::bad_data)?;
    if step <= 0 {
        return Err(ApiError::bad_data("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"));
    }
    let mut params = QueryParams::range(start, end, step);
    params.limits = limits(api, form)?;
    if (end - start) / step >= params.limits.points_per_series_max as i64 {
        return Err(ApiError::bad_data("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
    }
    let expr = promql::parse(text).map_err(query_error)?;
    let storage = fetch(api, tenant, &expr, &params).await?;
    let value = promql::eval_range(&expr, &storage, &params).map_err(query_error)?;
    success(promql::result_json(&value))
}

/// Fetches what the expression reads from every shard into memory.
async fn fetch(
    api: &Api,
    tenant: &str,
    expr: &promql::Expr,
    params: &QueryParams,
) -> Result<MemStorage, ApiError> {
    let ranges: Vec<Range> = promql::selections(expr, params)
        .into_iter()
        .map(|s| Range {
            matchers: s.matchers,
            mint: s.mint_ms,
            maxt: s.maxt_ms,
        })
        .collect();
    let mut storage = MemStorage::new();
    if ranges.is_empty() {
        return Ok(storage);
    }
    let replies = ask_all(&api.ctx, || Request::Select {
        tenant: tenant.to_string(),
        ranges: ranges.clone(),
    })
    .await
    .map_err(|e| ApiError::new(503, "unavailable", e))?;
    let mut merged: BTreeMap<Labels, Vec<photon_tsdb::Sample>> = BTreeMap::new();
    let mut loaded = 0usize;
    for reply in replies {
        if let Reply::Selected(series) = reply {
            let series = series.map_err(|e| ApiError::new(500, "internal", e.0))?;
            for (labels, samples) in series {
                loaded += samples.len();
                if loaded > params.limits.samples_max {
                    return Err(query_error(QueryError::TooManySamples));
                }
                merged.entry(labels).or_default().extend(samples);
            }
        }
    }
    for (labels, mut samples) in merged {
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
        storage.add(labels, &samples);
    }
    Ok(storage)
}

/// `match[]` selectors as matcher sets.
fn matcher_sets(form: &Form, required: bool) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let texts = form.all("match[]");
    if texts.is_empty() && required {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    texts
        .into_iter()
        .map(|t| promql::parse_selector(t).map_err(query_error))
        .collect()
}

fn time_range(form: &Form) -> Result<(i64, i64), ApiError> {
    let start = match form.get("start") {
        Some(s) => parse_time("start", s).map_err(ApiError::bad_data)?,
        None => MIN_TIME_MS,
    };
    let end = match form.get("end") {
        Some(s) => parse_time("end", s).map_err(ApiError::bad_data)?,
        None => MAX_TIME_MS,
    };
    Ok((start, end))
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|(n, v)| (n.to_string(), Value::String(v.to_string())))
            .collect(),
    )
}

fn result_limit(form: &Form) -> Result<usize, ApiError> {
    match form.get("limit") {
        Some(l) => {
            let n: usize = l.parse().map_err(|_| {
                ApiError::bad_data(format!("invalid parameter \"limit\": cannot parse {l:?}"))
            })?;
            Ok(if n == 0 {
                SERIES_RESULT_MAX
            } else {
                n.min(SERIES_RESULT_MAX)
            })
        }
        None => Ok(SERIES_RESULT_MAX),
    }
}

async fn series(api: &Api, tenant: &str, form: &Form) -> ApiResult {
    let sets = matcher_sets(form, true)?;
    let (mint, maxt) = time_range(form)?;
    let replies = ask_all(&api.ctx, || Request::Series {
        tenant: tenant.to_string(),
        sets: sets.clone(),
        mint,
        maxt,
    })
    .await
    .map_err(|e| ApiError::new(503, "unavailable", e))?;
    let mut all: BTreeSet<Labels> = BTreeSet::new();
    for r in replies {
        if let Reply::Series(s) = r {
            all.extend(s.map_err(|e| ApiError::new(500, "internal", e.0))?);
        }
    }
    let limit = result_limit(form)?;
    success(Value::Array(
        all.iter().take(limit).map(labels_json).collect(),
    ))
}

async fn strings(api: &Api, make: impl Fn() -> Request, form: &Form) -> ApiResult {
    let replies = ask_all(&api.ctx, make)
        .await
        .map_err(|e| ApiError::new(503, "unavailable", e))?;
    let mut all: BTreeSet<String> = BTreeSet::new();
    for r in replies {
        if let Reply::Strings(s) = r {
            all.extend(s.map_err(|e| ApiError::new(500, "internal", e.0))?);
        }
    }
    let limit = result_limit(form)?;
    success(Value::Array(
        all.into_iter().take(limit).map(Value::String).collect(),
    ))
}

async fn labels(api: &Api, tenant: &str, form: &Form) -> ApiResult {
    let sets = matcher_sets(form, false)?;
    let (mint, maxt) = time_range(form)?;
    strings(
        api,
        || Request::LabelNames {
            tenant: tenant.to_string(),
            sets: sets.clone(),
            mint,
            maxt,
        },
        form,
    )
    .await
}

async fn label_values(api: &Api, tenant: &str, name: &str, form: &Form) -> ApiResult {
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .map_err(|_| ApiError::bad_data("invalid label name"))?
        .into_owned();
    if !valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let sets = matcher_sets(form, false)?;
    let (mint, maxt) = time_range(form)?;
    strings(
        api,
        || Request::LabelValues {
            tenant: tenant.to_string(),
            name: name.clone(),
            sets: sets.clone(),
            mint,
            maxt,
        },
        form,
    )
    .await
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn metadata(api: &Api, tenant: &str, form: &Form) -> ApiResult {
    let replies = ask_all(&api.ctx, || Request::Metadata {
        tenant: tenant.to_string(),
    })
    .await
    .map_err(|e| ApiError::new(503, "unavailable", e))?;
    let only = form.get("metric");
    let limit: usize = form
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(usize::MAX);
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in replies {
        if let Reply::Metadata(ms) = r {
            for m in ms {
                if only.is_some_and(|o| o != m.metric_family) {
                    continue;
                }
                let entry = out.entry(m.metric_family.clone()).or_default();
                let v = json!({"type": m.kind, "help": m.help, "unit": m.unit});
                if !entry.contains(&v) {
                    entry.push(v);
                }
            }
        }
    }
    success(Value::Object(
        out.into_iter()
            .take(limit)
            .map(|(k, v)| (k, Value::Array(v)))
            .collect(),
    ))
}
