//! openraft's log storage over our [`LogWriter`]: entries are rkyv records in
//! the segment log; vote, committed and purged log ids live in its meta file.
//!
//! openraft numbers entries from 0 (the initial membership); the segment log
//! from 1, with 0 meaning "nothing purged". Raft index `i` is stored at `i + 1`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};

use super::codec;
use super::TypeConfig;
use crate::logstore::{LogError, LogWriter};

/// The Raft log of one node. Clones share the writer thread.
#[derive(Debug, Clone)]
pub struct RaftLogStore {
    writer: LogWriter,
}

impl RaftLogStore {
    pub fn new(writer: LogWriter) -> Self {
        Self { writer }
    }

    pub fn writer(&self) -> &LogWriter {
        &self.writer
    }
}

fn read_err<E: std::error::Error + 'static>(e: E) -> StorageError<u64> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err<E: std::error::Error + 'static>(e: E) -> StorageError<u64> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn vote_err<E: std::error::Error + 'static>(e: E) -> StorageError<u64> {
    StorageIOError::write_vote(AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let state = self.writer.state().await.map_err(read_err)?;
        // Stored positions: Raft index + 1.
        let start = match range.start_bound() {
            Bound::Included(s) => s + 1,
            Bound::Excluded(s) => s + 2,
            Bound::Unbounded => state.first_index,
        }
        .max(state.first_index);
        let end = match range.end_bound() {
            Bound::Included(e) => e + 2,
            Bound::Excluded(e) => e + 1,
            Bound::Unbounded => state.last_index + 1,
        }
        .min(state.last_index + 1);
        if start >= end {
            return Ok(Vec::new());
        }
        let records = self.writer.read(start..end).await.map_err(read_err)?;
        records
            .iter()
            .map(|(_, bytes)| codec::decode_entry(bytes).map_err(read_err))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for RaftLogStore {
    type LogReader = RaftLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let state = self.writer.state().await.map_err(read_err)?;
        let last_purged_log_id = match &state.meta.purged {
            Some(bytes) => Some(codec::decode_log_id(bytes).map_err(read_err)?),
            None => None,
        };
        let last_log_id = if state.last_index >= state.first_index {
            let records = self
                .writer
                .read(state.last_index..state.last_index + 1)
                .await
                .map_err(read_err)?;
            let entry = codec::decode_entry(&records[0].1).map_err(read_err)?;
            Some(entry.log_id)
        } else {
            last_purged_log_id
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let bytes = codec::encode_vote(vote).map_err(vote_err)?;
        self.writer
            .save_meta(Some(bytes), None)
            .await
            .map_err(vote_err)
    }

    /// The stored vote, always as not committed. openraft reads it only at
    /// start-up, and a committed vote for this node would restart it as
    /// leader at once, without an election: its read index would then be
    /// the first entry of its old term or the committed index it persisted
    /// (lazily, see `save_committed`), both older than what the cluster
    /// committed, and a linearizable read right after the restart would
    /// miss acknowledged writes (the production-path linearizability test
    /// caught it). Forgetting that the vote was granted by a quorum only
    /// makes the node win an election first, whose new blank entry orders
    /// every later read; the term and the node it voted for stay.
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        let state = self.writer.state().await.map_err(read_err)?;
        match state.meta.vote {
            Some(bytes) => {
                let vote = codec::decode_vote(&bytes).map_err(read_err)?;
                Ok(Some(Vote::new(vote.leader_id.term, vote.leader_id.node_id)))
            }
            None => Ok(None),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let Some(committed) = committed else {
            return Ok(());
        };
        let bytes = codec::encode_log_id(&committed).map_err(write_err)?;
        // The committed index is a restart hint (a node that loses it re-learns
        // it from the leader), so the writer persists it at most once a second
        // instead of an atomic file replace per commit.
        self.writer.note_committed(bytes).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        let state = self.writer.state().await.map_err(read_err)?;
        match state.meta.committed {
            Some(bytes) => Ok(Some(codec::decode_log_id(&bytes).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        for entry in entries {
            records.push((
                entry.log_id.index + 1,
                codec::encode_entry(&entry).map_err(write_err)?,
            ));
        }
        self.writer
            .append(
                records,
                Box::new(move |result: Result<(), LogError>| {
                    callback
                        .log_io_completed(result.map_err(|e| std::io::Error::other(e.to_string())));
                }),
            )
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.writer
            .truncate(log_id.index + 1)
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let bytes = codec::encode_log_id(&log_id).map_err(write_err)?;
        self.writer
            .purge(log_id.index + 1, bytes)
            .await
            .map_err(write_err)
    }
}
