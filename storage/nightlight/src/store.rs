//! One shard's metrics store: the in-memory head (`photon_tsdb::Head`), its
//! WAL on disk ([`crate::wal_file`]), and immutable blocks cut from the
//! head, memory-mapped, compacted and dropped by retention.
//!
//! Tenants share a shard's store: every series carries the hidden label
//! [`TENANT_LABEL`] (a name no client can send, since ingestion accepts only
//! Prometheus label names), every read adds a matcher on it and strips it
//! from what it returns.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::OpenOptions;
use photon_metrics_wire::SeriesSamples;
use photon_tsdb::block::{self, Block};
use photon_tsdb::chunk::SAMPLES_PER_CHUNK_MAX;
use photon_tsdb::head::{AppendError, Head, HeadLimits};
use photon_tsdb::wal::WalRecord;
use photon_tsdb::{Labels, Matcher, Sample};

use crate::wal_file::{Wal, WalError};

/// The label that holds a series' `tenant/project`.
pub const TENANT_LABEL: &str = "~tenant";

/// Series one shard's head holds, all tenants together (memory bound).
pub const SHARD_SERIES_MAX: usize = 4_000_000;

/// Blocks at most this many times the base block range are made by
/// compaction.
const COMPACTED_RANGES_MAX: i64 = 12;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    pub block_range_ms: i64,
    pub retention_ms: i64,
    pub ooo_window_ms: i64,
    /// Series of one tenant on this shard.
    pub tenant_series_max: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("block {path}: {reason}")]
    Block { path: PathBuf, reason: String },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// Why a write was refused (nothing of it was stored) or failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendFailure {
    /// Bad data: out of order, duplicate, too old, over a limit (HTTP 400).
    #[error("{0}")]
    Refused(String),
    /// The WAL could not be written (HTTP 503: the client retries).
    #[error("{0}")]
    Unavailable(String),
}

struct OpenBlock {
    path: PathBuf,
    mint: i64,
    maxt: i64,
    block: Block<memmap2::Mmap>,
}

impl OpenBlock {
    /// A block that fails a read (its checks on the mapped bytes) fails the
    /// query and reports the node unhealthy: answers without its data would
    /// be silently wrong.
    fn error(&self, e: photon_tsdb::BlockQueryError) -> ReadError {
        let reason = format!("block {} is damaged: {e}", self.path.display());
        photon_core::health::report_failed("nightlight block", &reason);
        ReadError(reason)
    }
}

/// A read that could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

fn head_error(e: photon_tsdb::EmptyMatchersError) -> ReadError {
    // Reads always carry the tenant matcher, so this does not happen.
    ReadError(e.to_string())
}

/// Counts a store keeps for metrics and `/api/v1/status/tsdb`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreCounts {
    pub samples_appended: u64,
    pub series_created: u64,
    pub blocks_cut: u64,
    pub compactions: u64,
    pub blocks_deleted: u64,
}

pub struct ShardStore {
    config: StoreConfig,
    head: RefCell<Head>,
    wal: Wal,
    blocks: RefCell<Vec<Rc<OpenBlock>>>,
    /// Series per tenant in the head (recounted after every cut).
    tenant_series: RefCell<HashMap<String, usize>>,
    counts: Cell<StoreCounts>,
    /// Set while a cut or compaction runs (one at a time).
    maintaining: Cell<bool>,
}

/// What opening found.
#[derive(Debug)]
pub struct OpenReport {
    pub blocks: usize,
    pub wal_records: usize,
    pub wal_segments: usize,
    pub torn_bytes: usize,
    pub series: usize,
    /// Replayed samples the head refused (older than its blocks, dups).
    pub replay_skipped: usize,
}

fn tenant_matcher(tenant: &str) -> Matcher {
    Matcher::equal(TENANT_LABEL, tenant)
}

fn strip_tenant(labels: &Labels) -> Labels {
    labels.retain(|n| n != TENANT_LABEL)
}

fn with_tenant(tenant: &str, matchers: &[Matcher]) -> Vec<Matcher> {
    let mut m = Vec::with_capacity(matchers.len() + 1);
    m.push(tenant_matcher(tenant));
    m.extend(matchers.iter().cloned());
    m
}

impl ShardStore {
    pub async fn open(config: StoreConfig) -> Result<(ShardStore, OpenReport), StoreError> {
        let blocks_dir = config.dir.join("blocks");
        std::fs::create_dir_all(&blocks_dir).map_err(io("create", &blocks_dir))?;
        let blocks = open_blocks(&blocks_dir)?;
        let mut head = Head::new(HeadLimits {
            series_max: SHARD_SERIES_MAX,
            ooo_window_ms: config.ooo_window_ms,
            chunk_samples_max: SAMPLES_PER_CHUNK_MAX,
        });
        let (wal, replay) = Wal::open(&config.dir.join("wal")).await?;
        let newest_block = blocks.iter().map(|b| b.maxt).max();
        if let Some(maxt) = newest_block {
            head.set_min_valid_t(maxt + 1);
        }
        let mut skipped = 0usize;
        let wal_records = replay.records.len();
        for record in replay.records {
            match record {
                WalRecord::Series { r, labels } => head.restore_series(r, labels),
                WalRecord::Samples(samples) => {
                    for (r, s) in samples {
                        if head.append(r, s).is_err() {
                            skipped += 1;
                        }
                    }
                }
            }
        }
        let report = OpenReport {
            blocks: blocks.len(),
            wal_records,
            wal_segments: replay.segments,
            torn_bytes: replay.torn_bytes,
            series: head.stats().series,
            replay_skipped: skipped,
        };
        let store = ShardStore {
            config,
            head: RefCell::new(head),
            wal,
            blocks: RefCell::new(blocks),
            tenant_series: RefCell::new(HashMap::new()),
            counts: Cell::new(StoreCounts::default()),
            maintaining: Cell::new(false),
        };
        store.recount_tenants();
        Ok((store, report))
    }

    fn recount_tenants(&self) {
        let head = self.head.borrow();
        let mut counts = HashMap::new();
        let tenants = head
            .label_values(TENANT_LABEL, &[], i64::MIN, i64::MAX)
            .unwrap_or_default();
        for tenant in tenants {
            let n = head
                .series(&[tenant_matcher(&tenant)], i64::MIN, i64::MAX)
                .map_or(0, |s| s.len());
            counts.insert(tenant, n);
        }
        *self.tenant_series.borrow_mut() = counts;
    }

    /// The labels a series of `tenant` is stored under.
    fn stored_labels(tenant: &str, labels: &Labels) -> Labels {
        let mut l = labels.clone();
        l.set(TENANT_LABEL, tenant);
        l
    }

    /// Checks a write without storing anything (the first phase of a write
    /// that spans shards).
    pub fn check(&self, tenant: &str, series: &[SeriesSamples]) -> Result<(), AppendFailure> {
        let batch: Vec<(Labels, Vec<Sample>)> = series
            .iter()
            .map(|s| (Self::stored_labels(tenant, &s.labels), s.samples.clone()))
            .collect();
        self.check_batch(tenant, &batch)
    }

    fn check_batch(
        &self,
        tenant: &str,
        batch: &[(Labels, Vec<Sample>)],
    ) -> Result<(), AppendFailure> {
        let head = self.head.borrow();
        if let Err(e) = head.check(batch) {
            return Err(AppendFailure::Refused(append_error_text(&e)));
        }
        let new = batch
            .iter()
            .filter(|(l, _)| head.lookup(l).is_none())
            .count();
        let have = self
            .tenant_series
            .borrow()
            .get(tenant)
            .copied()
            .unwrap_or(0);
        if new > 0 && have + new > self.config.tenant_series_max {
            return Err(AppendFailure::Refused(format!(
                "too many series for this tenant: {have} + {new} new over the limit of {} per shard (nightlight.tenant_series_max)",
                self.config.tenant_series_max
            )));
        }
        if let Some(maxt) = self.newest_block() {
            if let Some((l, s)) = batch
                .iter()
                .find_map(|(l, ss)| ss.iter().find(|s| s.t < maxt).map(|s| (l, s)))
            {
                return Err(AppendFailure::Refused(format!(
                    "out of bounds: sample at {} for {} is older than the head (cut into a block up to {maxt})",
                    s.t,
                    strip_tenant(l)
                )));
            }
        }
        Ok(())
    }

    fn newest_block(&self) -> Option<i64> {
        self.blocks.borrow().iter().map(|b| b.maxt).max()
    }

    /// Stores a write: all of it or (refused) none of it, durable when this
    /// returns `Ok`.
    pub async fn append(
        &self,
        tenant: &str,
        series: Vec<SeriesSamples>,
    ) -> Result<usize, AppendFailure> {
        let batch: Vec<(Labels, Vec<Sample>)> = series
            .into_iter()
            .map(|s| (Self::stored_labels(tenant, &s.labels), s.samples))
            .collect();
        // Check and apply with no await between: on this shard nothing
        // else runs in between, so the check still holds.
        self.check_batch(tenant, &batch)?;
        let mut records = Vec::new();
        let mut samples_log = Vec::new();
        let mut appended = 0usize;
        let mut created = 0usize;
        {
            let mut head = self.head.borrow_mut();
            for (labels, samples) in batch {
                let (r, new) = head
                    .get_or_create(&labels)
                    .map_err(|e| AppendFailure::Refused(append_error_text(&e)))?;
                if new {
                    created += 1;
                    records.push(WalRecord::Series { r, labels });
                }
                for s in samples {
                    head.append(r, s)
                        .map_err(|e| AppendFailure::Refused(append_error_text(&e)))?;
                    samples_log.push((r, s));
                    appended += 1;
                }
            }
        }
        if created > 0 {
            *self
                .tenant_series
                .borrow_mut()
                .entry(tenant.to_string())
                .or_default() += created;
        }
        let mut c = self.counts.get();
        c.samples_appended += appended as u64;
        c.series_created += created as u64;
        self.counts.set(c);
        if !samples_log.is_empty() {
            records.push(WalRecord::Samples(samples_log));
        }
        self.wal
            .append(&records)
            .await
            .map_err(|e| AppendFailure::Unavailable(e.to_string()))?;
        Ok(appended)
    }

    /// Series of `tenant` matching every matcher, with their samples in
    /// `[mint, maxt]`, from the blocks and the head, without the tenant label.
    pub fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, ReadError> {
        let matchers = with_tenant(tenant, matchers);
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for b in self.blocks.borrow().iter() {
            if b.maxt < mint || b.mint > maxt {
                continue;
            }
            for (labels, samples) in b
                .block
                .select(&matchers, mint, maxt)
                .map_err(|e| b.error(e))?
            {
                merged.entry(labels).or_default().extend(samples);
            }
        }
        for (labels, samples) in self
            .head
            .borrow()
            .select(&matchers, mint, maxt)
            .map_err(head_error)?
        {
            merged.entry(labels).or_default().extend(samples);
        }
        Ok(merged
            .into_iter()
            .map(|(labels, mut samples)| {
                samples.sort_by_key(|s| s.t);
                samples.dedup_by_key(|s| s.t);
                (strip_tenant(&labels), samples)
            })
            .collect())
    }

    /// Label sets of `tenant`'s series matching any of the matcher sets.
    /// One listing over the blocks that overlap `[mint, maxt]` and the
    /// head, with the tenant's matcher added, sorted and deduplicated.
    fn listing<T: Ord>(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        from_block: impl Fn(
            &Block<memmap2::Mmap>,
            &[Matcher],
        ) -> Result<Vec<T>, photon_tsdb::BlockQueryError>,
        from_head: impl Fn(&Head, &[Matcher]) -> Result<Vec<T>, photon_tsdb::EmptyMatchersError>,
    ) -> Result<Vec<T>, ReadError> {
        let matchers = with_tenant(tenant, matchers);
        let mut out: Vec<T> = Vec::new();
        for b in self.blocks.borrow().iter() {
            if b.maxt >= mint && b.mint <= maxt {
                out.extend(from_block(&b.block, &matchers).map_err(|e| b.error(e))?);
            }
        }
        out.extend(from_head(&self.head.borrow(), &matchers).map_err(head_error)?);
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn series(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, ReadError> {
        let all = self.listing(
            tenant,
            matchers,
            mint,
            maxt,
            |b, m| b.series(m, mint, maxt),
            |h, m| h.series(m, mint, maxt),
        )?;
        // Distinct with the tenant label are distinct without it: one tenant.
        Ok(all.iter().map(strip_tenant).collect())
    }

    pub fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, ReadError> {
        let mut names = self.listing(
            tenant,
            matchers,
            mint,
            maxt,
            |b, m| b.label_names(m, mint, maxt),
            |h, m| h.label_names(m, mint, maxt),
        )?;
        names.retain(|n| n != TENANT_LABEL);
        Ok(names)
    }

    pub fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, ReadError> {
        if name == TENANT_LABEL {
            return Ok(Vec::new());
        }
        self.listing(
            tenant,
            matchers,
            mint,
            maxt,
            |b, m| b.label_values(name, m, mint, maxt),
            |h, m| h.label_values(name, m, mint, maxt),
        )
    }

    pub fn counts(&self) -> StoreCounts {
        self.counts.get()
    }

    pub fn head_stats(&self) -> photon_tsdb::head::HeadStats {
        self.head.borrow().stats()
    }

    pub fn block_count(&self) -> usize {
        self.blocks.borrow().len()
    }

    /// Cuts the head into a block when it spans 1.5 block ranges past the
    /// out-of-order window, compacts small blocks, drops expired ones.
    pub async fn maintain(&self, now_ms: i64) -> Result<(), StoreError> {
        if self.maintaining.replace(true) {
            return Ok(());
        }
        let result = self.maintain_inner(now_ms).await;
        self.maintaining.set(false);
        result
    }

    async fn maintain_inner(&self, now_ms: i64) -> Result<(), StoreError> {
        let range = self.config.block_range_ms;
        loop {
            let stats = self.head.borrow().stats();
            let (Some(min_t), Some(max_t)) = (stats.min_t, stats.max_t) else {
                break;
            };
            let start = min_t.div_euclid(range) * range;
            if max_t - self.config.ooo_window_ms < start + range + range / 2 {
                break;
            }
            self.cut_block(start + range).await?;
        }
        self.expire(now_ms)?;
        self.compact(now_ms).await?;
        Ok(())
    }

    async fn cut_block(&self, before: i64) -> Result<(), StoreError> {
        let series = self.head.borrow_mut().cut(before);
        if !series.is_empty() {
            let mint = series
                .iter()
                .flat_map(|(_, cs)| cs.iter().map(|c| c.min_t()))
                .min()
                .unwrap_or(before);
            let bytes = block::write(mint, before - 1, series);
            self.install_block(mint, before - 1, bytes, &[]).await?;
            let mut c = self.counts.get();
            c.blocks_cut += 1;
            self.counts.set(c);
        }
        let checkpoint = self.head.borrow().checkpoint();
        self.wal.checkpoint(&checkpoint).await?;
        self.recount_tenants();
        Ok(())
    }

    /// Writes a block file (temporary name, fdatasync, rename), maps it and
    /// replaces `replaced` with it.
    async fn install_block(
        &self,
        mint: i64,
        maxt: i64,
        bytes: Vec<u8>,
        replaced: &[PathBuf],
    ) -> Result<(), StoreError> {
        let dir = self.config.dir.join("blocks");
        let name = format!("{mint:016x}-{maxt:016x}-{:08x}.block", rand_suffix());
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        write_file(&tmp, bytes).await?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
        sync_dir(&dir)?;
        let opened = open_block(&path)?;
        let mut blocks = self.blocks.borrow_mut();
        blocks.retain(|b| !replaced.contains(&b.path));
        blocks.push(Rc::new(opened));
        blocks.sort_by_key(|b| (b.mint, b.maxt));
        drop(blocks);
        for old in replaced {
            std::fs::remove_file(old).map_err(io("remove", old))?;
        }
        Ok(())
    }

    /// Deletes blocks wholly older than the retention.
    fn expire(&self, now_ms: i64) -> Result<(), StoreError> {
        let keep_from = now_ms - self.config.retention_ms;
        let expired: Vec<PathBuf> = self
            .blocks
            .borrow()
            .iter()
            .filter(|b| b.maxt < keep_from)
            .map(|b| b.path.clone())
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        self.blocks
            .borrow_mut()
            .retain(|b| !expired.contains(&b.path));
        for path in &expired {
            std::fs::remove_file(path).map_err(io("remove", path))?;
        }
        let mut c = self.counts.get();
        c.blocks_deleted += expired.len() as u64;
        self.counts.set(c);
        Ok(())
    }

    /// Merges the two oldest adjacent blocks while their union stays within
    /// `COMPACTED_RANGES_MAX` block ranges (fewer files, one index for the
    /// older data, samples past the retention dropped on the way).
    async fn compact(&self, now_ms: i64) -> Result<(), StoreError> {
        let limit = self.config.block_range_ms * COMPACTED_RANGES_MAX;
        let pair = {
            let blocks = self.blocks.borrow();
            blocks
                .windows(2)
                .find(|w| w[1].maxt - w[0].mint < limit)
                .map(|w| (w[0].clone(), w[1].clone()))
        };
        let Some((a, b)) = pair else {
            return Ok(());
        };
        let keep_from = now_ms - self.config.retention_ms;
        let bytes =
            block::merge(&[&a.block, &b.block], keep_from).map_err(|e| StoreError::Block {
                path: a.path.clone(),
                reason: format!("merging with {}: {e}", b.path.display()),
            })?;
        let (mint, maxt) = (a.mint.min(b.mint), a.maxt.max(b.maxt));
        self.install_block(mint, maxt, bytes, &[a.path.clone(), b.path.clone()])
            .await?;
        let mut c = self.counts.get();
        c.compactions += 1;
        self.counts.set(c);
        Ok(())
    }
}

fn append_error_text(e: &AppendError) -> String {
    e.to_string()
        .replace(&format!("{TENANT_LABEL}="), "tenant=")
}

fn rand_suffix() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}

async fn write_file(path: &Path, bytes: Vec<u8>) -> Result<(), StoreError> {
    let wrap = |op: &'static str| {
        let path = path.to_path_buf();
        move |e: glommio::GlommioError<()>| StoreError::Io {
            op,
            path,
            source: std::io::Error::from(e),
        }
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .buffered_open(path)
        .await
        .map_err(wrap("create"))?;
    let len = bytes.len();
    let mut written = 0usize;
    while written < len {
        let n = file
            .write_at(bytes[written..].to_vec(), written as u64)
            .await
            .map_err(wrap("write"))?;
        if n == 0 {
            return Err(StoreError::Io {
                op: "write",
                path: path.to_path_buf(),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        written += n;
    }
    file.fdatasync().await.map_err(wrap("fdatasync"))?;
    file.close().await.map_err(wrap("close"))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

fn open_block(path: &Path) -> Result<OpenBlock, StoreError> {
    let file = std::fs::File::open(path).map_err(io("open", path))?;
    // SAFETY: block files are written once under a temporary name and
    // renamed; nothing writes or truncates them while they are mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io("mmap", path))?;
    let block = Block::open(map).map_err(|e| StoreError::Block {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(OpenBlock {
        path: path.to_path_buf(),
        mint: block.mint(),
        maxt: block.maxt(),
        block,
    })
}

fn open_blocks(dir: &Path) -> Result<Vec<Rc<OpenBlock>>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".tmp") {
            // A block whose write did not finish: the WAL still has it.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if name.ends_with(".block") {
            out.push(Rc::new(open_block(&path)?));
        }
    }
    out.sort_by_key(|b| (b.mint, b.maxt));
    Ok(out)
}
