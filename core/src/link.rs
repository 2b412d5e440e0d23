//! Typed links between the control-plane thread and one service's
//! instances on every shard. The composition root (which knows both ends'
//! types) makes a link with [`link`], gives the [`ShardEnd`] to the service's
//! params and the [`ControlEnd`] to the control plane. Messages travel in
//! bounded [`mailbox`]es: a sender never blocks, a full mailbox is an error
//! it handles.
//!
//! `Up` goes from any shard to the control plane, `Down` from the control
//! plane to one shard.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use crate::ShardId;

/// Makes a link for `shards` shards whose mailboxes hold `depth` messages.
pub fn link<Up, Down>(shards: usize, depth: usize) -> (ShardEnd<Up, Down>, ControlEnd<Up, Down>) {
    let (up, from_shards) = mailbox(depth);
    let (to_shards, receivers): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| mailbox(depth))
        .map(|(tx, rx)| (tx, Some(rx)))
        .unzip();
    (
        ShardEnd {
            up,
            down: Arc::new(Mutex::new(receivers)),
        },
        ControlEnd {
            from_shards,
            to_shards,
        },
    )
}

/// The shards' end: one sender to the control plane, and each shard's
/// receiver, taken once by that shard when its service starts.
pub struct ShardEnd<Up, Down> {
    up: MailboxSender<Up>,
    down: Arc<Mutex<Vec<Option<MailboxReceiver<Down>>>>>,
}

impl<Up, Down> Clone for ShardEnd<Up, Down> {
    fn clone(&self) -> Self {
        Self {
            up: self.up.clone(),
            down: self.down.clone(),
        }
    }
}

impl<Up, Down> std::fmt::Debug for ShardEnd<Up, Down> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardEnd").finish_non_exhaustive()
    }
}

impl<Up, Down> ShardEnd<Up, Down> {
    /// The way to the control plane (any shard, any number of times).
    pub fn to_control(&self) -> MailboxSender<Up> {
        self.up.clone()
    }

    /// Shard `shard`'s receiver; `None` when it was taken already or the
    /// shard does not exist. Locks only here, at start-up, never on a
    /// request path.
    pub fn take_receiver(&self, shard: ShardId) -> Option<MailboxReceiver<Down>> {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        down.get_mut(shard).and_then(Option::take)
    }
}

/// The control plane's end: what every shard sends, and one sender per shard.
#[derive(Debug)]
pub struct ControlEnd<Up, Down> {
    pub from_shards: MailboxReceiver<Up>,
    pub to_shards: Vec<MailboxSender<Down>>,
}

/// Turns an applied KV change (key, value or `None` for a delete) into a
/// [`Feed`] change: the key and the record (`None`: deleted), or `None` to
/// skip it (another kind's key, a damaged record).
pub type Decode<R> = fn(&[u8], Option<&[u8]>) -> Option<(Vec<u8>, Option<R>)>;

/// One change of a record a [`Feed`] follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<R> {
    /// Created or replaced.
    Put(R),
    /// Deleted (the record as it was).
    Removed(R),
}

/// The control-plane side of per-shard record copies: the records as of
/// the last applied change (by KV key), and one mailbox per shard. Changes
/// go to every shard in order; a shard whose mailbox was full misses one,
/// so it gets no more changes until [`Feed::resync`] delivers every record.
pub struct Feed<R, Down> {
    current: BTreeMap<Vec<u8>, R>,
    to_shards: Vec<MailboxSender<Down>>,
    stale: Vec<bool>,
    everything: fn(Vec<R>) -> Down,
    changes: fn(Vec<Change<R>>) -> Down,
}

impl<R: Clone, Down> Feed<R, Down> {
    /// `everything` and `changes` wrap records in the shards' message type.
    pub fn new(
        to_shards: Vec<MailboxSender<Down>>,
        everything: fn(Vec<R>) -> Down,
        changes: fn(Vec<Change<R>>) -> Down,
    ) -> Self {
        let stale = vec![false; to_shards.len()];
        Self {
            current: BTreeMap::new(),
            to_shards,
            stale,
            everything,
            changes,
        }
    }

    /// The records, by key.
    pub fn records(&self) -> impl Iterator<Item = &R> {
        self.current.values()
    }

    /// Replaces every record (a full load) and sends them to every shard.
    pub fn replace(&mut self, records: impl IntoIterator<Item = (Vec<u8>, R)>) {
        self.current = records.into_iter().collect();
        self.stale.fill(true);
        self.resync();
    }

    /// Applies changes by key (`None`: deleted) and sends them on.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = (Vec<u8>, Option<R>)>) {
        let mut delta = Vec::new();
        for (key, record) in changes {
            match record {
                Some(record) => {
                    self.current.insert(key, record.clone());
                    delta.push(Change::Put(record));
                }
                None => {
                    if let Some(old) = self.current.remove(&key) {
                        delta.push(Change::Removed(old));
                    }
                }
            }
        }
        if delta.is_empty() {
            return;
        }
        for (shard, tx) in self.to_shards.iter().enumerate() {
            if self.stale[shard] {
                continue;
            }
            if tx.try_send((self.changes)(delta.clone())).is_err() {
                tracing::warn!(shard, "record changes not delivered; the shard resyncs");
                self.stale[shard] = true;
            }
        }
    }

    /// Sends every record to the shards that missed changes; true when none
    /// is left behind. Call it periodically.
    pub fn resync(&mut self) -> bool {
        for (shard, tx) in self.to_shards.iter().enumerate() {
            if !self.stale[shard] {
                continue;
            }
            let all = self.current.values().cloned().collect();
            if tx.try_send((self.everything)(all)).is_ok() {
                self.stale[shard] = false;
            }
        }
        !self.stale.contains(&true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shard_gets_its_own_receiver_once_and_messages_keep_their_type() {
        let (shards, control) = link::<u32, String>(2, 4);
        let first = shards.take_receiver(0).unwrap();
        assert!(shards.take_receiver(0).is_none(), "taken twice");
        assert!(shards.take_receiver(5).is_none(), "no such shard");
        let second = shards.clone().take_receiver(1).unwrap();
        control.to_shards[0].try_send("zero".to_owned()).unwrap();
        control.to_shards[1].try_send("one".to_owned()).unwrap();
        assert_eq!(first.try_recv().unwrap(), "zero");
        assert_eq!(second.try_recv().unwrap(), "one");
        shards.to_control().try_send(7).unwrap();
        assert_eq!(control.from_shards.try_recv().unwrap(), 7);
    }

    #[derive(Debug)]
    enum Event {
        All(Vec<u32>),
        Changes(Vec<Change<u32>>),
    }

    /// A shard's copy, rebuilt from events.
    fn deliver(rx: &MailboxReceiver<Event>, copy: &mut Vec<u32>) {
        while let Some(event) = rx.try_recv() {
            match event {
                Event::All(all) => *copy = all,
                Event::Changes(changes) => {
                    for c in changes {
                        match c {
                            Change::Put(v) => copy.push(v),
                            Change::Removed(v) => copy.retain(|x| *x != v),
                        }
                    }
                }
            }
            copy.sort_unstable();
        }
    }

    #[test]
    fn a_feed_keeps_every_copy_equal_and_resyncs_a_shard_that_missed_changes() {
        let (shards, control) = link::<(), Event>(2, 2);
        let mut feed = Feed::new(control.to_shards, Event::All, Event::Changes);
        let rx: Vec<_> = (0..2).map(|s| shards.take_receiver(s).unwrap()).collect();
        let mut copies = [Vec::new(), Vec::new()];
        feed.replace([(b"k1".to_vec(), 1)]);
        feed.apply([(b"k2".to_vec(), Some(2))]);
        // A delete of an unknown key changes nothing and sends nothing.
        feed.apply([(b"k9".to_vec(), None)]);
        deliver(&rx[0], &mut copies[0]);
        assert_eq!(copies[0], [1, 2]);
        // Shard 1 has not read: its mailbox (depth 2) is full, so the next
        // change misses it and it stops getting changes until resynced.
        feed.apply([(b"k1".to_vec(), None), (b"k3".to_vec(), Some(3))]);
        deliver(&rx[0], &mut copies[0]);
        assert_eq!(copies[0], [2, 3]);
        assert!(!feed.resync(), "shard 1's mailbox is still full");
        deliver(&rx[1], &mut copies[1]);
        assert_eq!(copies[1], [1, 2], "only what was delivered");
        assert!(feed.resync());
        deliver(&rx[1], &mut copies[1]);
        assert_eq!(copies[1], [2, 3]);
        let mut records: Vec<_> = feed.records().copied().collect();
        records.sort_unstable();
        assert_eq!(records, [2, 3]);
    }
}
