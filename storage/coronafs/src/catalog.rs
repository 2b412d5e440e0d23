//! A shard's copy of the volume records (`volume/...` in the KV), fed by the
//! control-plane thread from applied Raft entries over the NBD service's
//! typed link ([`VolumeEvent`]), and touched only by its shard (no lock).
//! Looked up by id: an attach token names a volume by id.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use photon_core::link::{Change, ControlEnd, Feed, ShardEnd};
use photon_core::mailbox::MailboxSender;
use photon_records::{VolumeRecord, VOLUME_PREFIX};

use crate::command::VolumeCommand;

/// What the control plane sends one shard's NBD service.
#[derive(Debug)]
pub enum VolumeEvent {
    /// Every volume record: at start, after a KV snapshot install, or to
    /// resync a shard whose mailbox was full.
    Volumes(Vec<VolumeRecord>),
    /// Records created, changed or deleted, in order.
    VolumeChanges(Vec<Change<VolumeRecord>>),
    /// An operation on this shard's extent maps.
    Command(VolumeCommand),
}

/// The NBD service's link: nothing up, events down.
pub type VolumeLink = ShardEnd<(), VolumeEvent>;
/// The control plane's end of [`VolumeLink`].
pub type VolumeControlEnd = ControlEnd<(), VolumeEvent>;
/// The control-plane thread's side: the applied volume records, fed to
/// every shard.
pub type VolumeFeed = Feed<VolumeRecord, VolumeEvent>;

/// A feed over the NBD service's shard mailboxes.
pub fn volume_feed(to_shards: Vec<MailboxSender<VolumeEvent>>) -> VolumeFeed {
    Feed::new(to_shards, VolumeEvent::Volumes, VolumeEvent::VolumeChanges)
}

/// An applied KV change under `volume/` as a feed change (`None` record:
/// deleted); `None` for a damaged record, which is logged and skipped.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<(Vec<u8>, Option<VolumeRecord>)> {
    if !key.starts_with(VOLUME_PREFIX.as_bytes()) {
        return None;
    }
    match value.map(VolumeRecord::from_json) {
        None => Some((key.to_vec(), None)),
        Some(Some(record)) => Some((key.to_vec(), Some(record))),
        Some(None) => {
            tracing::warn!(key = %String::from_utf8_lossy(key), "damaged volume record");
            None
        }
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct VolumeCatalog {
    by_id: RefCell<HashMap<u64, Rc<VolumeRecord>>>,
    /// Whether a full load happened (the shard reconciles only after it).
    loaded: Cell<bool>,
}

impl VolumeCatalog {
    pub fn get(&self, id: u64) -> Option<Rc<VolumeRecord>> {
        self.by_id.borrow().get(&id).cloned()
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.get()
    }

    /// Ids of the volumes whose data lives on `node`/`shard`.
    pub fn ids_on(&self, node: u64, shard: u32) -> Vec<u64> {
        self.by_id
            .borrow()
            .values()
            .filter(|r| r.node == node && r.shard == shard)
            .map(|r| r.id)
            .collect()
    }

    /// Applies a catalog event (not a command).
    pub fn apply(&self, event: VolumeEvent) {
        let mut by_id = self.by_id.borrow_mut();
        match event {
            VolumeEvent::Volumes(all) => {
                *by_id = all.into_iter().map(|r| (r.id, Rc::new(r))).collect();
                self.loaded.set(true);
            }
            VolumeEvent::VolumeChanges(changes) => {
                for change in changes {
                    match change {
                        Change::Put(record) => by_id.insert(record.id, Rc::new(record)),
                        Change::Removed(record) => by_id.remove(&record.id),
                    };
                }
            }
            VolumeEvent::Command(_) => {}
        }
    }
}
