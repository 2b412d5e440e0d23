//! One shard's volume store: the data file (slots of 256 KiB written
//! O_DIRECT through glommio's `DmaFile`), the extent maps in memory, and the
//! metadata journal that makes them durable.
//!
//! Writes go in place when their extent's slot belongs to one map, into a
//! new slot when it does not (copy-on-write after a snapshot or clone), or
//! into a fresh slot for an extent never written. Page masks change only
//! after the data write completed, and become journal records; a flush
//! (group commit: one round at a time, shared by every flush waiting) syncs
//! the data file first and then appends those records and syncs the
//! journal, so a durable record never points at data that is not.
//!
//! A slot that loses its last reference is reused only after (1) the
//! record that freed it is durable, so a crash cannot bring back a map that
//! points at reused bytes, and (2) every read and write that started before
//! it was freed has finished, so none of them touches the slot's next owner.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};
use glommio::sync::RwLock;
use photon_core::local_sync::{AsyncMutex, KeyLocks};

use crate::journal::{self, Record};
use crate::layout::{
    pieces, runs, slot_offset, Piece, DATA_HEADER_BYTES, DATA_MAGIC, EXTENT_BYTES, PAGE_BYTES,
};
use crate::state::{Entry, State};

/// Where a store keeps its files and when it rewrites its journal.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// A sync round writes a checkpoint and starts a new journal file once
    /// the journal would grow past this.
    pub journal_bytes_max: u64,
    /// How often pending metadata is made durable without a flush (it also
    /// lets freed slots be reused).
    pub background_sync: Duration,
    /// Space kept allocated past the journal's end, so the records of
    /// TRIM, deletes and already written data still reach the journal when
    /// the disk is full (that is how space gets freed).
    pub journal_reserve_bytes: u64,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            journal_bytes_max: 64 << 20,
            background_sync: Duration::from_millis(250),
            journal_reserve_bytes: 1 << 20,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store failed an earlier sync and refuses writes until restarted")]
    Failed,
    #[error("the disk is full")]
    NoSpace,
    #[error("map {0} was deleted")]
    Gone(u64),
    #[error("store files are damaged: {0}")]
    Corrupt(String),
}

impl<T: std::fmt::Debug> From<glommio::GlommioError<T>> for StoreError {
    fn from(e: glommio::GlommioError<T>) -> Self {
        StoreError::Io(e.into())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Part of a read: data read from the disk, or a run of zeroes.
pub enum Chunk {
    /// `data` holds the bytes at `offset` (relative to the request).
    Data { offset: u64, data: ReadResult },
    /// `len` bytes of zeroes (a hole) at `offset`.
    Zero { offset: u64, len: u64 },
}

impl Chunk {
    pub fn offset(&self) -> u64 {
        match self {
            Chunk::Data { offset, .. } | Chunk::Zero { offset, .. } => *offset,
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Chunk::Data { data, .. } => data.len() as u64,
            Chunk::Zero { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub writes: u64,
    pub reads: u64,
    pub cow_copies: u64,
    pub syncs: u64,
    pub records_written: u64,
    pub checkpoints: u64,
    pub slots_used: u64,
    pub slots_total: u64,
    /// Records past a torn or corrupt journal tail at open (ignored).
    pub torn_tail_at_open: bool,
}

struct Journal {
    file: Rc<DmaFile>,
    gen: u64,
    /// Sequence number of the next batch.
    seq: u64,
    /// Where the next batch goes.
    offset: u64,
    /// Bytes of the file allocated on disk (its reserve ends here).
    allocated: u64,
}

struct Quarantined {
    slot: u32,
    /// The sync round that makes the freeing record durable.
    round: u64,
    /// Held by every I/O that started before the slot was freed.
    epoch: Rc<()>,
}

/// See the module documentation.
pub struct Store {
    config: StoreConfig,
    data: Rc<DmaFile>,
    journal: RefCell<Journal>,
    state: RefCell<State>,
    /// Encoded records not yet in the journal.
    pending: RefCell<Vec<u8>>,
    /// Mutations completed so far, and how many of them are durable.
    completed: Cell<u64>,
    durable: Cell<u64>,
    rounds_started: Cell<u64>,
    rounds_done: Cell<u64>,
    sync_lock: AsyncMutex,
    /// Held while an extent is copied on write or zeroed.
    extent_locks: KeyLocks<(u64, u64)>,
    /// Per map: writes hold it shared, snapshots and deletes exclusively.
    gates: RefCell<HashMap<u64, Rc<RwLock<()>>>>,
    dropped: RefCell<HashSet<u64>>,
    epoch: RefCell<Rc<()>>,
    quarantine: RefCell<VecDeque<Quarantined>>,
    /// A sync failed in a way that may have lost data (not a full disk):
    /// writes are refused until restart.
    failed: Cell<bool>,
    /// The last sync round could not write its records for lack of space;
    /// they stay pending and the next round retries them.
    full: Cell<bool>,
    stats: Cell<StoreStats>,
    /// Tests record every data and journal write and every sync here to
    /// simulate a power loss.
    #[cfg(test)]
    pub(crate) trace: RefCell<Option<std::sync::Arc<photon_core::testing::crash::WriteTrace>>>,
}

fn journal_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("journal-{gen:016x}.log"))
}

fn checkpoint_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("checkpoint-{gen:016x}.ckpt"))
}

/// Generations of the files named `prefix-<hex>.<ext>` in `dir`.
fn generations(dir: &Path, prefix: &str, ext: &str) -> std::io::Result<Vec<u64>> {
    let mut gens = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let hex = name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|n| n.strip_suffix(ext))
            .and_then(|n| n.strip_suffix('.'));
        if let Some(gen) = hex.and_then(|h| u64::from_str_radix(h, 16).ok()) {
            gens.push(gen);
        }
    }
    gens.sort_unstable();
    Ok(gens)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates the data file with its header, or checks the header.
fn prepare_data_file(path: &Path) -> Result<()> {
    use std::io::{Read, Write};
    if path.exists() {
        let mut magic = [0u8; 8];
        std::fs::File::open(path)?.read_exact(&mut magic)?;
        if &magic != DATA_MAGIC {
            return Err(StoreError::Corrupt(format!(
                "{} is not a volume data file",
                path.display()
            )));
        }
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    let mut header = vec![0u8; PAGE_BYTES as usize];
    header[..8].copy_from_slice(DATA_MAGIC);
    file.write_all(&header)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// State from the newest valid checkpoint and its journal: (state, gen,
/// next seq, journal end, torn tail seen).
fn recover(dir: &Path) -> Result<(State, u64, u64, u64, bool)> {
    let mut state = State::default();
    let checkpoints = generations(dir, "checkpoint", "ckpt")?;
    let mut gen = 0;
    let mut loaded = checkpoints.is_empty();
    for &g in checkpoints.iter().rev() {
        let bytes = std::fs::read(checkpoint_path(dir, g))?;
        match journal::decode_batch(&bytes, journal::KIND_CHECKPOINT, g, 1) {
            Ok(batch) => {
                batch.records.iter().for_each(|r| state.replay(r));
                gen = g;
                loaded = true;
                break;
            }
            Err(e) => tracing::warn!(gen = g, error = %e, "skipping a damaged volume checkpoint"),
        }
    }
    if !loaded {
        return Err(StoreError::Corrupt(
            "no volume checkpoint is readable".into(),
        ));
    }
    let path = journal_path(dir, gen);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let journal::Scan {
        records,
        end,
        next_seq,
        error,
    } = journal::scan(&bytes, gen);
    if let Some(e) = &error {
        tracing::warn!(
            journal = %path.display(),
            valid_bytes = end,
            error = %e,
            "volume journal ends in a torn or damaged batch; it is ignored"
        );
    }
    records.iter().for_each(|r| state.replay(r));
    Ok((state, gen, next_seq, end, error.is_some()))
}

impl Store {
    /// Opens (or creates) the store in `config.dir` and recovers its maps.
    pub async fn open(config: StoreConfig) -> Result<Rc<Store>> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir)?;
        let data_path = dir.join("data.vol");
        prepare_data_file(&data_path)?;
        let (mut state, gen, seq, end, torn) = recover(&dir)?;
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&data_path)
            .await?;
        let data_bytes = data.file_size().await?;
        // A slot partly written (the file ends inside it) counts.
        let slots_in_file = data_bytes
            .saturating_sub(DATA_HEADER_BYTES)
            .div_ceil(EXTENT_BYTES)
            .min(u64::from(u32::MAX)) as u32;
        state
            .rebuild_slots(slots_in_file)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // Space of unreferenced slots (writes never made durable) goes back.
        for slot in state.free_slots() {
            data.deallocate(slot_offset(slot), EXTENT_BYTES).await?;
        }
        let journal_file = OpenOptions::new()
            .write(true)
            .create(true)
            .dma_open(journal_path(&dir, gen))
            .await?;
        // Drop a torn tail so later scans end cleanly.
        journal_file.truncate(end).await?;
        let allocated = reserve(&journal_file, end, end, config.journal_reserve_bytes).await;
        journal_file.fdatasync().await?;
        remove_checkpoint_leftovers(&dir)?;
        for g in generations(&dir, "journal", "log")? {
            if g != gen {
                let _ = std::fs::remove_file(journal_path(&dir, g));
            }
        }
        for g in generations(&dir, "checkpoint", "ckpt")? {
            if g != gen {
                let _ = std::fs::remove_file(checkpoint_path(&dir, g));
            }
        }
        sync_dir(&dir)?;
        let stats = StoreStats {
            torn_tail_at_open: torn,
            ..StoreStats::default()
        };
        Ok(Rc::new(Store {
            config,
            data: Rc::new(data),
            journal: RefCell::new(Journal {
                file: Rc::new(journal_file),
                gen,
                seq,
                offset: end,
                allocated,
            }),
            state: RefCell::new(state),
            pending: RefCell::default(),
            completed: Cell::new(0),
            durable: Cell::new(0),
            rounds_started: Cell::new(0),
            rounds_done: Cell::new(0),
            sync_lock: AsyncMutex::default(),
            extent_locks: KeyLocks::default(),
            gates: RefCell::default(),
            dropped: RefCell::default(),
            epoch: RefCell::new(Rc::new(())),
            quarantine: RefCell::default(),
            failed: Cell::new(false),
            full: Cell::new(false),
            stats: Cell::new(stats),
            #[cfg(test)]
            trace: RefCell::new(None),
        }))
    }

    /// Tests: the bytes a write of `len` at `at` of `file` replaces.
    #[cfg(test)]
    async fn trace_before(
        &self,
        file: &DmaFile,
        at: u64,
        len: usize,
    ) -> Option<(
        std::sync::Arc<photon_core::testing::crash::WriteTrace>,
        Vec<u8>,
    )> {
        let trace = self.trace.borrow().clone()?;
        let old = file
            .read_at_aligned(at, len)
            .await
            .map(|r| r.to_vec())
            .unwrap_or_default();
        Some((trace, old))
    }

    /// Tests: a write traced by `trace_before` completed.
    #[cfg(test)]
    fn trace_after(
        traced: Option<(
            std::sync::Arc<photon_core::testing::crash::WriteTrace>,
            Vec<u8>,
        )>,
        path: &Path,
        at: u64,
        len: usize,
    ) {
        if let Some((trace, old)) = traced {
            trace.write(path, at, len, old);
        }
    }

    /// Tests: marks the start of a sync of `path`; `sync_done` records it.
    #[cfg(test)]
    fn sync_mark(&self) -> Option<usize> {
        self.trace.borrow().as_ref().map(|t| t.begin_sync())
    }

    #[cfg(test)]
    fn sync_done(&self, path: &Path, mark: Option<usize>) {
        if let (Some(trace), Some(mark)) = (self.trace.borrow().as_ref(), mark) {
            trace.synced(path, mark);
        }
    }

    #[cfg(test)]
    fn data_path(&self) -> PathBuf {
        self.config.dir.join("data.vol")
    }

    /// A buffer for [`Store::write`] (aligned for O_DIRECT).
    pub fn alloc_buffer(&self, len: usize) -> DmaBuffer {
        self.data.alloc_dma_buffer(len)
    }

    /// Writes are refused once a sync failed; reads are not (what is on
    /// disk is what the maps say).
    fn check_ok(&self, map: u64) -> Result<()> {
        if self.failed.get() {
            return Err(StoreError::Failed);
        }
        self.check_live(map)
    }

    fn check_live(&self, map: u64) -> Result<()> {
        if self.dropped.borrow().contains(&map) {
            return Err(StoreError::Gone(map));
        }
        Ok(())
    }

    fn gate(&self, map: u64) -> Rc<RwLock<()>> {
        self.gates
            .borrow_mut()
            .entry(map)
            .or_insert_with(|| Rc::new(RwLock::new(())))
            .clone()
    }

    fn bump(&self, f: impl FnOnce(&mut StoreStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Adds journal records to the pending batch.
    fn log(&self, records: &[Record]) {
        let mut pending = self.pending.borrow_mut();
        for r in records {
            r.encode(&mut pending);
        }
        drop(pending);
        self.bump(|s| s.records_written += records.len() as u64);
    }

    /// Records a completed mutation and its journal records.
    fn completed_with(&self, records: &[Record]) {
        self.log(records);
        self.completed.set(self.completed.get() + 1);
    }

    /// Puts unreferenced slots aside until they may be reused.
    fn quarantine_slots(&self, slots: impl IntoIterator<Item = u32>) {
        let mut q = self.quarantine.borrow_mut();
        let mut added = false;
        for slot in slots {
            q.push_back(Quarantined {
                slot,
                // Records added now are taken by the next round.
                round: self.rounds_started.get() + 1,
                epoch: self.epoch.borrow().clone(),
            });
            added = true;
        }
        if added {
            *self.epoch.borrow_mut() = Rc::new(());
        }
    }

    /// Reads `len` bytes of map `map` at `offset` (both page-aligned).
    pub async fn read(&self, map: u64, offset: u64, len: u64) -> Result<Vec<Chunk>> {
        self.check_live(map)?;
        let _epoch = self.epoch.borrow().clone();
        let mut zeros: Vec<(u64, u64)> = Vec::new();
        let mut reads: Vec<(u64, u64, u64)> = Vec::new();
        {
            let state = self.state.borrow();
            for piece in pieces(offset, len) {
                match state.get(map, piece.ext) {
                    None => zeros.push((piece.buf_offset, piece.bytes())),
                    Some(e) => {
                        for (page, n, set) in runs(e.pages, piece.first_page, piece.pages) {
                            let at = piece.buf_offset + (page - piece.first_page) * PAGE_BYTES;
                            if set {
                                reads.push((
                                    at,
                                    slot_offset(e.slot) + page * PAGE_BYTES,
                                    n * PAGE_BYTES,
                                ));
                            } else {
                                zeros.push((at, n * PAGE_BYTES));
                            }
                        }
                    }
                }
            }
        }
        let mut chunks: Vec<Chunk> = Vec::with_capacity(reads.len() + zeros.len());
        if reads.len() == 1 {
            let (at, pos, n) = reads[0];
            let data = self.data.read_at_aligned(pos, n as usize).await?;
            check_len(&data, n)?;
            chunks.push(Chunk::Data { offset: at, data });
        } else if !reads.is_empty() {
            let results = futures_util::future::join_all(
                reads
                    .iter()
                    .map(|&(_, pos, n)| self.data.read_at_aligned(pos, n as usize)),
            )
            .await;
            for (&(at, _, n), data) in reads.iter().zip(results) {
                let data = data?;
                check_len(&data, n)?;
                chunks.push(Chunk::Data { offset: at, data });
            }
        }
        for (offset, len) in zeros {
            match chunks.last_mut() {
                Some(Chunk::Zero { offset: o, len: l }) if *o + *l == offset => *l += len,
                _ => chunks.push(Chunk::Zero { offset, len }),
            }
        }
        chunks.sort_by_key(Chunk::offset);
        self.bump(|s| s.reads += 1);
        Ok(chunks)
    }

    /// Which parts of `offset..offset + len` of `map` hold data:
    /// `(length, allocated)` runs in order.
    pub fn allocation(&self, map: u64, offset: u64, len: u64) -> Vec<(u64, bool)> {
        let state = self.state.borrow();
        let mut out: Vec<(u64, bool)> = Vec::new();
        let mut push = |n: u64, set: bool| match out.last_mut() {
            Some((l, s)) if *s == set => *l += n,
            _ => out.push((n, set)),
        };
        for piece in pieces(offset, len) {
            match state.get(map, piece.ext) {
                None => push(piece.bytes(), false),
                Some(e) => {
                    for (_, n, set) in runs(e.pages, piece.first_page, piece.pages) {
                        push(n * PAGE_BYTES, set);
                    }
                }
            }
        }
        out
    }

    /// Writes `buf` at `offset` of map `map` (page-aligned). Durable after
    /// the next [`Store::flush`].
    pub async fn write(&self, map: u64, offset: u64, buf: DmaBuffer) -> Result<()> {
        self.check_ok(map)?;
        let gate = self.gate(map);
        let _shared = gate.read().await.map_err(|_| StoreError::Gone(map))?;
        let _epoch = self.epoch.borrow().clone();
        let all: Vec<Piece> = pieces(offset, buf.len() as u64).collect();
        let result = if all.len() == 1 {
            self.write_piece(map, all[0], buf).await
        } else {
            let writes = all.iter().map(|p| {
                let mut part = self.data.alloc_dma_buffer(p.bytes() as usize);
                let from = p.buf_offset as usize;
                part.as_bytes_mut()
                    .copy_from_slice(&buf.as_bytes()[from..from + p.bytes() as usize]);
                self.write_piece(map, *p, part)
            });
            futures_util::future::join_all(writes)
                .await
                .into_iter()
                .collect::<Result<Vec<()>>>()
                .map(|_| ())
        };
        self.bump(|s| s.writes += 1);
        result
    }

    async fn write_piece(&self, map: u64, piece: Piece, buf: DmaBuffer) -> Result<()> {
        let key = (map, piece.ext);
        loop {
            if self.extent_locks.is_locked(&key) {
                drop(self.extent_locks.lock(key).await);
                continue;
            }
            let in_place = {
                let mut state = self.state.borrow_mut();
                match state.get(map, piece.ext).copied() {
                    Some(e) if state.shared(e.slot) => None,
                    Some(e) => {
                        state.get_mut(map, piece.ext).expect("present").writers += 1;
                        Some(e.slot)
                    }
                    None => {
                        let slot = state.allocate();
                        state.insert(
                            map,
                            piece.ext,
                            Entry {
                                slot,
                                pages: 0,
                                writers: 1,
                            },
                        );
                        Some(slot)
                    }
                }
            };
            let Some(slot) = in_place else {
                let guard = self.extent_locks.lock(key).await;
                let still_shared = {
                    let state = self.state.borrow();
                    state
                        .get(map, piece.ext)
                        .copied()
                        .filter(|e| state.shared(e.slot))
                };
                let Some(entry) = still_shared else {
                    drop(guard);
                    continue;
                };
                return self.copy_on_write(map, piece, buf, entry).await;
            };
            #[cfg(test)]
            let traced = self
                .trace_before(&self.data, piece.file_offset(slot), buf.len())
                .await;
            let written = self.data.write_at(buf, piece.file_offset(slot)).await;
            #[cfg(test)]
            if matches!(written, Ok(n) if n as u64 == piece.bytes()) {
                Self::trace_after(
                    traced,
                    &self.data_path(),
                    piece.file_offset(slot),
                    piece.bytes() as usize,
                );
            }
            let ok = matches!(written, Ok(n) if n as u64 == piece.bytes());
            let mut records = Vec::new();
            let mut freed = None;
            {
                let mut state = self.state.borrow_mut();
                if let Some(e) = state.get_mut(map, piece.ext).filter(|e| e.slot == slot) {
                    e.writers -= 1;
                    let pages = if ok { e.pages | piece.mask() } else { e.pages };
                    if pages != e.pages {
                        e.pages = pages;
                        records.push(Record::Map {
                            map,
                            ext: piece.ext,
                            slot,
                            pages,
                        });
                    }
                    if e.pages == 0 && e.writers == 0 {
                        freed = state.remove(map, piece.ext);
                    }
                }
            }
            self.quarantine_slots(freed);
            self.completed_with(&records);
            return match written {
                Ok(n) if n as u64 == piece.bytes() => Ok(()),
                Ok(n) => Err(StoreError::Io(short_write(n, piece.bytes() as usize))),
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Writes `buf` into a new slot holding the extent's other pages, then
    /// points the map at it. The caller holds the extent's lock.
    async fn copy_on_write(
        &self,
        map: u64,
        piece: Piece,
        buf: DmaBuffer,
        old: Entry,
    ) -> Result<()> {
        let new = self.state.borrow_mut().allocate();
        let mut whole = self.data.alloc_dma_buffer(EXTENT_BYTES as usize);
        let result = async {
            let keep = old.pages & !piece.mask();
            if keep != 0 {
                let current = self
                    .data
                    .read_at_aligned(slot_offset(old.slot), EXTENT_BYTES as usize)
                    .await?;
                check_len(&current, EXTENT_BYTES)?;
                whole.as_bytes_mut().copy_from_slice(&current);
            } else {
                whole.as_bytes_mut().fill(0);
            }
            let at = (piece.first_page * PAGE_BYTES) as usize;
            whole.as_bytes_mut()[at..at + buf.len()].copy_from_slice(buf.as_bytes());
            #[cfg(test)]
            let traced = self
                .trace_before(&self.data, slot_offset(new), EXTENT_BYTES as usize)
                .await;
            let n = self.data.write_at(whole, slot_offset(new)).await?;
            #[cfg(test)]
            if n as u64 == EXTENT_BYTES {
                Self::trace_after(
                    traced,
                    &self.data_path(),
                    slot_offset(new),
                    EXTENT_BYTES as usize,
                );
            }
            if n as u64 != EXTENT_BYTES {
                return Err(StoreError::Io(short_write(n, EXTENT_BYTES as usize)));
            }
            Ok(())
        }
        .await;
        let freed = {
            let mut state = self.state.borrow_mut();
            if result.is_err() {
                // Nothing refers to the new slot; it was never journaled.
                [state.unref(new), None]
            } else {
                let pages = old.pages | piece.mask();
                state.insert(
                    map,
                    piece.ext,
                    Entry {
                        slot: new,
                        pages,
                        writers: 0,
                    },
                );
                [None, state.unref(old.slot)]
            }
        };
        self.quarantine_slots(freed.into_iter().flatten());
        if result.is_ok() {
            let pages = old.pages | piece.mask();
            self.completed_with(&[Record::Map {
                map,
                ext: piece.ext,
                slot: new,
                pages,
            }]);
            self.bump(|s| s.cow_copies += 1);
        }
        result
    }

    /// Makes `offset..offset + len` of `map` read as zeroes and gives the
    /// space back (TRIM, WRITE_ZEROES). Page-aligned.
    pub async fn zero(&self, map: u64, offset: u64, len: u64) -> Result<()> {
        self.check_ok(map)?;
        let gate = self.gate(map);
        let _shared = gate.read().await.map_err(|_| StoreError::Gone(map))?;
        let _epoch = self.epoch.borrow().clone();
        let mut punch: Vec<(u64, u64)> = Vec::new();
        for piece in pieces(offset, len) {
            let _lock = self.extent_locks.lock((map, piece.ext)).await;
            let mut state = self.state.borrow_mut();
            let Some(e) = state.get(map, piece.ext).copied() else {
                continue;
            };
            let shared = state.shared(e.slot);
            let pages = e.pages & !piece.mask();
            // Each record joins the pending batch before anything awaits, so
            // a slot freed here is quarantined until that very batch is durable.
            if pages == 0 && e.writers == 0 {
                let freed = state.remove(map, piece.ext);
                drop(state);
                self.quarantine_slots(freed);
                self.log(&[Record::Unmap {
                    map,
                    ext: piece.ext,
                }]);
            } else if pages != e.pages {
                state.get_mut(map, piece.ext).expect("present").pages = pages;
                drop(state);
                self.log(&[Record::Map {
                    map,
                    ext: piece.ext,
                    slot: e.slot,
                    pages,
                }]);
                if !shared {
                    punch.push((piece.file_offset(e.slot), piece.bytes()));
                }
            }
        }
        self.completed_with(&[]);
        for (at, n) in punch {
            self.data.deallocate(at, n).await?;
        }
        Ok(())
    }

    /// Returns once every mutation completed before the call is durable.
    pub async fn flush(&self) -> Result<()> {
        let ticket = self.completed.get();
        loop {
            if self.failed.get() {
                return Err(StoreError::Failed);
            }
            if self.durable.get() >= ticket {
                return Ok(());
            }
            let _round = self.sync_lock.lock().await;
            if self.durable.get() >= ticket {
                return Ok(());
            }
            self.round().await?;
        }
    }

    /// One sync round; the caller holds `sync_lock`.
    ///
    /// A round that finds the disk full before it changed anything on disk
    /// leaves its records pending for the next round and answers
    /// [`StoreError::NoSpace`]; the store keeps working (reads, and TRIM or
    /// deletes, whose records fit the journal's reserve and free space).
    /// Any other failure may have lost data, and stops writes until restart.
    async fn round(&self) -> Result<()> {
        let upto = self.completed.get();
        let payload = std::mem::take(&mut *self.pending.borrow_mut());
        let round = self.rounds_started.get() + 1;
        self.rounds_started.set(round);
        let (journal_end, gen) = {
            let j = self.journal.borrow();
            (j.offset, j.gen)
        };
        let rotate = journal_end + journal::batch_bytes(payload.len()) as u64
            > self.config.journal_bytes_max;
        let checkpoint = rotate.then(|| {
            let mut all = Vec::new();
            self.state.borrow().encode_all(&mut all);
            all
        });
        let result = async {
            #[cfg(test)]
            let mark = self.sync_mark();
            self.data.fdatasync().await.map_err(Step::fatal)?;
            #[cfg(test)]
            self.sync_done(&self.data_path(), mark);
            match checkpoint {
                Some(all) => match self.rotate(gen + 1, &all).await {
                    // No room for a checkpoint: the journal's reserve takes
                    // the batch, and a later round rotates.
                    Err(Step::Retry(e)) if !payload.is_empty() => {
                        tracing::warn!(error = %e, "no space for a volume checkpoint; appending instead");
                        self.append(&payload).await.map(|()| false)
                    }
                    other => other.map(|()| true),
                },
                None if payload.is_empty() => Ok(false),
                None => self.append(&payload).await.map(|()| false),
            }
        }
        .await;
        match result {
            Ok(rotated) => {
                if self.full.replace(false) {
                    tracing::info!("volume store has space again");
                }
                self.durable.set(upto);
                self.rounds_done.set(round);
                self.bump(|s| {
                    s.syncs += 1;
                    s.checkpoints += u64::from(rotated);
                });
                Ok(())
            }
            Err(Step::Retry(e)) => {
                // The records go back in front of any added meanwhile.
                let mut pending = self.pending.borrow_mut();
                let later = std::mem::replace(&mut *pending, payload);
                pending.extend_from_slice(&later);
                if !self.full.replace(true) {
                    tracing::warn!(error = %e, "volume store: the disk is full; writes fail with ENOSPC until space is freed");
                }
                Err(StoreError::NoSpace)
            }
            Err(Step::Fatal(e)) => {
                tracing::error!(error = %e, "volume store sync failed; refusing writes until restart");
                self.failed.set(true);
                Err(e)
            }
        }
    }

    /// Appends one batch to the journal and syncs it.
    async fn append(&self, payload: &[u8]) -> std::result::Result<(), Step> {
        let (file, gen, seq, offset) = {
            let j = self.journal.borrow();
            (j.file.clone(), j.gen, j.seq, j.offset)
        };
        let bytes = journal::batch_bytes(payload.len());
        let mut buf = file.alloc_dma_buffer(bytes);
        journal::encode_batch(buf.as_bytes_mut(), journal::KIND_JOURNAL, gen, seq, payload);
        #[cfg(test)]
        let traced = self.trace_before(&file, offset, bytes).await;
        // Nothing past `offset` counts until a batch there is complete, so a
        // write that found no space is simply written again later.
        match file.write_at(buf, offset).await {
            Ok(n) if n == bytes => {}
            Ok(n) => return Err(Step::Retry(short_write(n, bytes).into())),
            Err(e) => return Err(Step::classify(e.into())),
        }
        #[cfg(test)]
        let journal = journal_path(&self.config.dir, gen);
        #[cfg(test)]
        Self::trace_after(traced, &journal, offset, bytes);
        #[cfg(test)]
        let mark = self.sync_mark();
        file.fdatasync().await.map_err(Step::fatal)?;
        #[cfg(test)]
        self.sync_done(&journal, mark);
        let end = offset + bytes as u64;
        let allocated = {
            let mut j = self.journal.borrow_mut();
            j.seq += 1;
            j.offset = end;
            j.allocated = j.allocated.max(end);
            j.allocated
        };
        let reserve_bytes = self.config.journal_reserve_bytes;
        if allocated - end < reserve_bytes / 2 {
            let allocated = reserve(&file, end, allocated, reserve_bytes).await;
            self.journal.borrow_mut().allocated = allocated;
        }
        Ok(())
    }

    /// Writes a checkpoint of generation `gen` and starts its journal. Until
    /// the checkpoint's rename nothing has changed (a failure is retryable);
    /// after it, the new generation is the store's.
    async fn rotate(&self, gen: u64, all: &[u8]) -> std::result::Result<(), Step> {
        let dir = &self.config.dir;
        let tmp = dir.join(format!("checkpoint-{gen:016x}.tmp"));
        let prepared = async {
            let file = DmaFile::create(&tmp).await?;
            let bytes = journal::batch_bytes(all.len());
            let mut buf = file.alloc_dma_buffer(bytes);
            journal::encode_batch(buf.as_bytes_mut(), journal::KIND_CHECKPOINT, gen, 1, all);
            let n = file.write_at(buf, 0).await?;
            if n != bytes {
                return Err(StoreError::Io(short_write(n, bytes)));
            }
            file.fdatasync().await?;
            file.close().await?;
            let journal_file = OpenOptions::new()
                .write(true)
                .create(true)
                .dma_open(journal_path(dir, gen))
                .await?;
            journal_file.truncate(0).await?;
            journal_file
                .pre_allocate(self.config.journal_reserve_bytes, true)
                .await?;
            journal_file.fdatasync().await?;
            Ok(journal_file)
        }
        .await;
        let journal_file = match prepared {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                let _ = std::fs::remove_file(journal_path(dir, gen));
                return Err(Step::classify(e));
            }
        };
        if let Err(e) = std::fs::rename(&tmp, checkpoint_path(dir, gen)) {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(journal_path(dir, gen));
            return Err(Step::classify(e.into()));
        }
        sync_dir(dir).map_err(Step::fatal)?;
        let old_gen = {
            let mut j = self.journal.borrow_mut();
            let old = j.gen;
            *j = Journal {
                file: Rc::new(journal_file),
                gen,
                seq: 1,
                offset: 0,
                allocated: self.config.journal_reserve_bytes,
            };
            old
        };
        let _ = std::fs::remove_file(journal_path(dir, old_gen));
        let _ = std::fs::remove_file(checkpoint_path(dir, old_gen));
        Ok(())
    }

    /// Map `to` becomes a snapshot of map `from` (copy of its extent map,
    /// slots shared, copy-on-write from now on); durable on return.
    pub async fn copy_map(&self, from: u64, to: u64) -> Result<()> {
        self.check_ok(from)?;
        {
            let gate = self.gate(from);
            let _exclusive = gate.write().await.map_err(|_| StoreError::Gone(from))?;
            let freed = self.state.borrow_mut().copy(from, to);
            self.quarantine_slots(freed);
            self.dropped.borrow_mut().remove(&to);
            self.completed_with(&[Record::Copy { from, to }]);
        }
        self.flush().await
    }

    /// Deletes map `map`; its slots are freed unless other maps share them.
    /// Durable on return; later writes to `map` fail.
    pub async fn drop_map(&self, map: u64) -> Result<()> {
        {
            let gate = self.gate(map);
            let _exclusive = gate.write().await.map_err(|_| StoreError::Gone(map))?;
            self.dropped.borrow_mut().insert(map);
            let freed = self.state.borrow_mut().drop_map(map);
            self.quarantine_slots(freed);
            self.completed_with(&[Record::Drop { map }]);
        }
        self.gates.borrow_mut().remove(&map);
        self.flush().await
    }

    /// Maps that hold data.
    pub fn map_ids(&self) -> Vec<u64> {
        self.state.borrow().map_ids()
    }

    /// Bytes of data pages map `map` references.
    pub fn allocated_bytes(&self, map: u64) -> u64 {
        self.state.borrow().allocated_bytes(map)
    }

    /// Whether an earlier failed sync stopped the store from taking writes.
    pub fn has_failed(&self) -> bool {
        self.failed.get()
    }

    /// Whether the last sync round found the disk full (its records wait
    /// for space).
    pub fn is_full(&self) -> bool {
        self.full.get()
    }

    pub fn stats(&self) -> StoreStats {
        let mut s = self.stats.get();
        let (used, total) = self.state.borrow().slot_counts();
        s.slots_used = used;
        s.slots_total = total;
        s
    }

    /// Makes pending metadata durable and returns freed slots whose
    /// freeing is durable and that no I/O uses any more.
    pub async fn maintain(&self) -> Result<()> {
        let idle = self.pending.borrow().is_empty() && self.quarantine.borrow().is_empty();
        if idle || self.failed.get() {
            return Ok(());
        }
        if !self.pending.borrow().is_empty() {
            let _round = self.sync_lock.lock().await;
            if !self.pending.borrow().is_empty() {
                self.round().await?;
            }
        }
        loop {
            let ready = {
                let mut q = self.quarantine.borrow_mut();
                match q.front() {
                    Some(f)
                        if f.round <= self.rounds_done.get() && Rc::strong_count(&f.epoch) == 1 =>
                    {
                        q.pop_front()
                    }
                    _ => None,
                }
            };
            let Some(q) = ready else { break };
            self.data
                .deallocate(slot_offset(q.slot), EXTENT_BYTES)
                .await?;
            self.state.borrow_mut().release(q.slot);
        }
        Ok(())
    }

    /// Runs [`Store::maintain`] every `background_sync` until dropped.
    pub async fn background(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(self.config.background_sync).await;
            match self.maintain().await {
                Ok(()) | Err(StoreError::NoSpace) => {}
                Err(e) => {
                    tracing::error!(error = %e, "volume store maintenance failed");
                    if self.failed.get() {
                        return;
                    }
                }
            }
        }
    }

    /// Flushes everything and closes the files.
    pub async fn close(&self) -> Result<()> {
        if !self.failed.get() {
            let _round = self.sync_lock.lock().await;
            self.round().await?;
        }
        Ok(())
    }
}

/// How a step of a sync round failed.
enum Step {
    /// The disk was full before anything changed: try again later.
    Retry(StoreError),
    /// Data may be lost: stop taking writes.
    Fatal(StoreError),
}

impl Step {
    fn fatal(e: impl Into<StoreError>) -> Step {
        Step::Fatal(e.into())
    }

    fn classify(e: StoreError) -> Step {
        match &e {
            StoreError::Io(io) if photon_core::health::is_no_space(io) => Step::Retry(e),
            _ => Step::Fatal(e),
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Retry(e) | Step::Fatal(e) => e.fmt(f),
        }
    }
}

/// A regular file takes fewer bytes than asked only when its filesystem is
/// full.
fn short_write(n: usize, want: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        format!("short write: {n} of {want} bytes (disk full)"),
    )
}

/// Allocates `file` up to `end + reserve_bytes` (its size unchanged) and
/// returns how far it is allocated now; a full disk leaves the reserve as
/// it was (`allocated`), which the next append tries again.
async fn reserve(file: &DmaFile, end: u64, allocated: u64, reserve_bytes: u64) -> u64 {
    let want = end + reserve_bytes;
    if reserve_bytes == 0 || want <= allocated {
        return allocated;
    }
    match file.pre_allocate(want, true).await {
        Ok(()) => want,
        Err(e) => {
            tracing::warn!(error = %e, "could not extend the volume journal's reserve");
            allocated
        }
    }
}

/// Removes checkpoints a crash left half-written.
fn remove_checkpoint_leftovers(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("checkpoint-") && name.ends_with(".tmp") {
            std::fs::remove_file(dir.join(&*name))?;
        }
    }
    Ok(())
}

fn check_len(data: &ReadResult, want: u64) -> Result<()> {
    if data.len() as u64 == want {
        Ok(())
    } else {
        Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("short read: {} of {want} bytes", data.len()),
        )))
    }
}
