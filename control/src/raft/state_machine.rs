//! openraft's state machine over the KV store, and the node's snapshot file.
//!
//! The applied state sits behind a mutex so that readers (range queries,
//! watches) and the Raft core can share it; this is the control plane, not a
//! data path. Snapshots are the KV's rkyv image plus the Raft metadata, kept in
//! one file replaced atomically (write, fsync, rename, fsync directory).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};

use super::codec;
use super::{ApplyResult, TypeConfig};
use crate::kv::{prefix_end, Event, KeyValue, KvStore, RangeRequest};

const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";
const SNAPSHOT_MAGIC: &[u8; 8] = b"PHSNAP01";

/// A snapshot's Raft metadata and the KV image.
type StoredSnapshot = (SnapshotMeta<u64, BasicNode>, Vec<u8>);

/// A mapped snapshot file: the mapping, the Raft metadata, the KV image's range.
type MappedSnapshot = (
    memmap2::Mmap,
    SnapshotMeta<u64, BasicNode>,
    std::ops::Range<usize>,
);

/// The applied state: what every read sees.
#[derive(Debug)]
pub struct Applied {
    pub kv: KvStore,
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
}

/// Where a node keeps its latest snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    /// Released when a snapshot finds the disk full (see `photon_core::reserve`).
    reserve: Option<Arc<photon_core::reserve::SpaceReserve>>,
}

/// Applied batches of events a watch may fall behind by before it is cut.
pub const WATCH_EVENT_BACKLOG: usize = 4096;

/// The KV state machine of one node. Clones share the state.
#[derive(Debug, Clone)]
pub struct KvStateMachine {
    applied: Arc<Mutex<Applied>>,
    snapshots: SnapshotStore,
    events: tokio::sync::broadcast::Sender<Arc<Vec<Event>>>,
}

fn sm_read_err<E: std::error::Error + 'static>(e: &E) -> StorageError<u64> {
    StorageIOError::read_state_machine(AnyError::new(e)).into()
}

fn snapshot_err<E: std::error::Error + 'static>(e: &E) -> StorageError<u64> {
    StorageIOError::write_snapshot(None, AnyError::new(e)).into()
}

impl KvStateMachine {
    /// Opens the state machine, starting from the snapshot in `dir` if any.
    /// `reserve` is the disk's space reserve, when it has one.
    pub fn open(
        dir: &Path,
        reserve: Option<Arc<photon_core::reserve::SpaceReserve>>,
    ) -> Result<Self, StorageError<u64>> {
        std::fs::create_dir_all(dir).map_err(|e| sm_read_err(&e))?;
        let snapshots = SnapshotStore {
            dir: dir.to_path_buf(),
            reserve,
        };
        let applied = match snapshots.map()? {
            Some((map, meta, data)) => Applied {
                kv: KvStore::from_snapshot(&map[data]).map_err(|e| sm_read_err(&e))?,
                last_applied: meta.last_log_id,
                membership: meta.last_membership,
            },
            None => Applied {
                kv: KvStore::new(),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        Ok(Self {
            applied: Arc::new(Mutex::new(applied)),
            snapshots,
            events: tokio::sync::broadcast::Sender::new(WATCH_EVENT_BACKLOG),
        })
    }

    /// Every batch of events applied from now on, in log order.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Vec<Event>>> {
        self.events.subscribe()
    }

    /// The applied state, for reads.
    pub fn state(&self) -> MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current value of `key` in this replica's applied state (no read
    /// index: callers that need the latest call `Proposer::linearizable` first).
    pub fn get_local(&self, key: &[u8]) -> Option<KeyValue> {
        let request = RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        self.state()
            .kv
            .range(&request)
            .ok()
            .and_then(|r| r.kvs.into_iter().next())
    }

    /// Every current key-value under `prefix` in this replica's applied state.
    pub fn scan_prefix_local(&self, prefix: &[u8]) -> Vec<KeyValue> {
        let request = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            ..Default::default()
        };
        self.state()
            .kv
            .range(&request)
            .map(|r| r.kvs)
            .unwrap_or_default()
    }
}

impl SnapshotStore {
    fn encode(
        meta: &SnapshotMeta<u64, BasicNode>,
        data: &[u8],
    ) -> Result<Vec<u8>, StorageError<u64>> {
        let meta_bytes = codec::encode_snapshot_meta(meta).map_err(|e| snapshot_err(&e))?;
        let mut out = Vec::with_capacity(24 + meta_bytes.len() + data.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(meta_bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&meta_bytes);
        out.extend_from_slice(data);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Checks the file's framing and checksum; returns the metadata and
    /// where the KV image lies in `bytes`.
    fn decode(bytes: &[u8]) -> Option<(SnapshotMeta<u64, BasicNode>, std::ops::Range<usize>)> {
        if bytes.len() < 20 || &bytes[..8] != SNAPSHOT_MAGIC {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let meta_len = usize::try_from(u64::from_le_bytes(body[8..16].try_into().ok()?)).ok()?;
        let meta_end = 16usize.checked_add(meta_len).filter(|e| *e <= body.len())?;
        let meta = codec::decode_snapshot_meta(&body[16..meta_end]).ok()?;
        Some((meta, meta_end..body.len()))
    }

    /// Maps the snapshot file (no copy until the caller takes one) and checks it.
    fn map(&self) -> Result<Option<MappedSnapshot>, StorageError<u64>> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(sm_read_err(&e)),
        };
        // SAFETY: the snapshot file is only ever replaced by rename, never
        // written in place, so the mapped inode does not change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| sm_read_err(&e))?;
        match Self::decode(&map) {
            Some((meta, data)) => Ok(Some((map, meta, data))),
            None => Err(sm_read_err(&std::io::Error::other(format!(
                "snapshot file {} fails its checksum or format",
                path.display()
            )))),
        }
    }

    fn load(&self) -> Result<Option<StoredSnapshot>, StorageError<u64>> {
        Ok(self
            .map()?
            .map(|(map, meta, data)| (meta, map[data].to_vec())))
    }

    /// Writes the snapshot file atomically and durably. A disk too full for
    /// it (even with the reserve released) is waited out, never an error:
    /// openraft stops for good on a storage error, and Raft keeps running
    /// meanwhile (the log is not purged until the snapshot is durable).
    async fn save(
        &self,
        meta: &SnapshotMeta<u64, BasicNode>,
        data: &[u8],
    ) -> Result<(), StorageError<u64>> {
        use std::io::Write;
        let bytes = Self::encode(meta, data)?;
        let tmp = self.dir.join(SNAPSHOT_TMP_FILE);
        let write = || {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            Ok(file)
        };
        let mut waited = false;
        let file = loop {
            let written = match &self.reserve {
                Some(r) => r.retry_on_full(write),
                None => write(),
            };
            match written {
                Ok(file) => break file,
                Err(e) if photon_core::health::is_no_space(&e) => {
                    let _ = std::fs::remove_file(&tmp);
                    if !waited {
                        tracing::warn!(
                            bytes = bytes.len(),
                            "no space for a Raft snapshot; waiting for space"
                        );
                        waited = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => return Err(snapshot_err(&e)),
            }
        };
        file.sync_all().map_err(|e| snapshot_err(&e))?;
        std::fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE)).map_err(|e| snapshot_err(&e))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| snapshot_err(&e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for KvStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (meta, data) = {
            let applied = self.state();
            let data = applied.kv.to_snapshot().map_err(|e| snapshot_err(&e))?;
            let snapshot_id = match &applied.last_applied {
                Some(id) => format!(
                    "{}-{}-{}",
                    id.leader_id.term, id.leader_id.node_id, id.index
                ),
                None => "empty".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            (meta, data)
        };
        self.snapshots.save(&meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for KvStateMachine {
    type SnapshotBuilder = KvStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let applied = self.state();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.state();
        let mut results = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Membership(m) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                    None
                }
                EntryPayload::Normal(proposal) => {
                    let mut events = Vec::new();
                    let responses = proposal
                        .commands
                        .into_iter()
                        .map(|command| {
                            applied.kv.apply(command, proposal.now_ms).map(
                                |(response, mut command_events)| {
                                    events.append(&mut command_events);
                                    response
                                },
                            )
                        })
                        .collect();
                    if !events.is_empty() {
                        // No receiver is not an error: nobody watches.
                        let _ = self.events.send(Arc::new(events));
                    }
                    Some(responses)
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        let kv = KvStore::from_snapshot(&data).map_err(|e| snapshot_err(&e))?;
        self.snapshots.save(meta, &data).await?;
        let mut applied = self.state();
        applied.kv = kv;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        drop(applied);
        // An empty batch tells followers of the event stream (the IAM view)
        // that the whole state was replaced and must be read again.
        let _ = self.events.send(Arc::new(Vec::new()));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.snapshots.load()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Keeps a local view equal to the applied records under `prefix`:
/// `reset` runs at start, after a snapshot was installed (an empty event
/// batch) and after falling behind the event stream; `apply` gets each
/// later batch of changes under the prefix (a value puts, `None` deletes).
/// Returns when the state machine is gone.
pub async fn follow_prefix(
    state_machine: KvStateMachine,
    prefix: &[u8],
    mut reset: impl FnMut(&KvStateMachine),
    mut apply: impl for<'a> FnMut(&mut dyn Iterator<Item = (&'a [u8], Option<&'a [u8]>)>),
) {
    use crate::kv::EventKind;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let mut live = state_machine.subscribe();
        reset(&state_machine);
        loop {
            match live.recv().await {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    let mut changes =
                        events
                            .iter()
                            .filter(|e| e.kv.key.starts_with(prefix))
                            .map(|e| {
                                let value = match e.kind {
                                    EventKind::Put => Some(e.kv.value.as_slice()),
                                    EventKind::Delete => None,
                                };
                                (e.kv.key.as_slice(), value)
                            });
                    apply(&mut changes);
                }
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
    }
}
