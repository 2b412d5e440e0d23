//! What one shard asks another over the engine's mesh: a series is owned by
//! the shard its label set hashes to, so a write fans out to the owners of
//! its series, and a read asks every shard.

use std::rc::Rc;

use photon_core::ShardContext;
use photon_metrics_wire::{Metadata, SeriesSamples};
use photon_tsdb::{Labels, Matcher, Sample};

use crate::service::NightLightService;
use crate::store::{AppendFailure, ReadError};

/// One time range of one selector, as the query needs it.
#[derive(Debug, Clone)]
pub struct Range {
    pub matchers: Vec<Matcher>,
    pub mint: i64,
    pub maxt: i64,
}

#[derive(Debug)]
pub enum Request {
    /// Phase one of a write: would `Append` succeed?
    Check {
        tenant: String,
        series: Vec<SeriesSamples>,
    },
    Append {
        tenant: String,
        series: Vec<SeriesSamples>,
        metadata: Vec<Metadata>,
    },
    /// Series (with samples) matching each range.
    Select {
        tenant: String,
        ranges: Vec<Range>,
    },
    /// Label sets matching any of the matcher sets (none: every series).
    Series {
        tenant: String,
        sets: Vec<Vec<Matcher>>,
        mint: i64,
        maxt: i64,
    },
    LabelNames {
        tenant: String,
        sets: Vec<Vec<Matcher>>,
        mint: i64,
        maxt: i64,
    },
    LabelValues {
        tenant: String,
        name: String,
        sets: Vec<Vec<Matcher>>,
        mint: i64,
        maxt: i64,
    },
    Metadata {
        tenant: String,
    },
}

#[derive(Debug)]
pub enum Reply {
    Written(Result<usize, AppendFailure>),
    Checked(Result<(), AppendFailure>),
    Selected(Result<Vec<(Labels, Vec<Sample>)>, ReadError>),
    Series(Result<Vec<Labels>, ReadError>),
    Strings(Result<Vec<String>, ReadError>),
    Metadata(Vec<Metadata>),
}

/// The shard that owns a series.
pub fn owner(labels: &Labels, shards: usize) -> usize {
    let mut key = Vec::with_capacity(labels.byte_len() + 2 * labels.len());
    for (n, v) in labels.iter() {
        key.extend_from_slice(n.as_bytes());
        key.push(0xff);
        key.extend_from_slice(v.as_bytes());
        key.push(0xff);
    }
    photon_core::routing::owner_of(&key, shards)
}

/// Serves a request on the shard that received it.
pub async fn serve(service: Rc<NightLightService>, request: Request) -> Reply {
    let store = &service.store;
    match request {
        Request::Check { tenant, series } => Reply::Checked(store.check(&tenant, &series)),
        Request::Append {
            tenant,
            series,
            metadata,
        } => {
            service.remember_metadata(&tenant, metadata);
            Reply::Written(store.append(&tenant, series).await)
        }
        Request::Select { tenant, ranges } => Reply::Selected(
            ranges
                .iter()
                .map(|r| store.select(&tenant, &r.matchers, r.mint, r.maxt))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.into_iter().flatten().collect()),
        ),
        Request::Series {
            tenant,
            sets,
            mint,
            maxt,
        } => Reply::Series(flatten(
            each_set(&sets).map(|m| store.series(&tenant, m, mint, maxt)),
        )),
        Request::LabelNames {
            tenant,
            sets,
            mint,
            maxt,
        } => Reply::Strings(flatten(
            each_set(&sets).map(|m| store.label_names(&tenant, m, mint, maxt)),
        )),
        Request::LabelValues {
            tenant,
            name,
            sets,
            mint,
            maxt,
        } => Reply::Strings(flatten(
            each_set(&sets).map(|m| store.label_values(&tenant, &name, m, mint, maxt)),
        )),
        Request::Metadata { tenant } => Reply::Metadata(service.metadata_of(&tenant)),
    }
}

fn flatten<T>(parts: impl Iterator<Item = Result<Vec<T>, ReadError>>) -> Result<Vec<T>, ReadError> {
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// The matcher sets, or one empty set for "no `match[]` given".
fn each_set(sets: &[Vec<Matcher>]) -> impl Iterator<Item = &[Matcher]> {
    const NONE: &[Matcher] = &[];
    let all = sets.is_empty().then_some(NONE);
    sets.iter().map(|s| s.as_slice()).chain(all)
}

/// Asks every shard and collects the replies.
pub async fn ask_all(
    ctx: &ShardContext<NightLightService>,
    make: impl Fn() -> Request,
) -> Result<Vec<Reply>, String> {
    let mut pending = Vec::with_capacity(ctx.shards());
    for shard in 0..ctx.shards() {
        let ctx = ctx.clone();
        let request = make();
        pending.push(
            ctx.clone()
                .spawn(async move { ctx.call(shard, request).await }),
        );
    }
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(
            p.await
                .map_err(|e| format!("a shard did not answer: {e}"))?,
        );
    }
    Ok(out)
}
