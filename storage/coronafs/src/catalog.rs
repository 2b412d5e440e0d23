//! Every shard's view of the volume records (`volume/...` in the KV), fed by
//! the control-plane thread from applied Raft entries. Looked up by id: an
//! attach token names a volume by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use photon_iam::resources::VolumeRecord;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct VolumeCatalog {
    by_id: RwLock<HashMap<u64, Arc<VolumeRecord>>>,
    /// Whether a full load happened (the shards reconcile only after it).
    loaded: AtomicBool,
}

impl VolumeCatalog {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn get(&self, id: u64) -> Option<Arc<VolumeRecord>> {
        self.by_id.read().ok()?.get(&id).cloned()
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Ids of the volumes whose data lives on `node`/`shard`.
    pub fn ids_on(&self, node: u64, shard: u32) -> Vec<u64> {
        self.by_id.read().map_or_else(
            |_| Vec::new(),
            |m| {
                m.values()
                    .filter(|r| r.node == node && r.shard == shard)
                    .map(|r| r.id)
                    .collect()
            },
        )
    }

    /// Replaces every record (a full load).
    pub fn replace(&self, records: impl IntoIterator<Item = VolumeRecord>) {
        let map = records.into_iter().map(|r| (r.id, Arc::new(r))).collect();
        if let Ok(mut m) = self.by_id.write() {
            *m = map;
        }
        self.loaded.store(true, Ordering::Release);
    }

    /// Applies changed KV entries (`None`: deleted).
    pub fn apply<'a>(&self, changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) {
        let Ok(mut m) = self.by_id.write() else {
            return;
        };
        for (key, value) in changes {
            match value.and_then(VolumeRecord::from_json) {
                Some(record) => {
                    m.insert(record.id, Arc::new(record));
                }
                None => {
                    // A delete names the key only: find the record by key.
                    let key = String::from_utf8_lossy(key);
                    m.retain(|_, r| r.key() != key);
                }
            }
        }
    }
}
