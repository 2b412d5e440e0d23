//! The writer thread: the only owner of a [`LogStore`]. It takes every request
//! queued while it was busy, writes all the appends, runs one fdatasync, then
//! acknowledges them together (group commit). Other requests act as barriers:
//! appends before them are synced and acknowledged first.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::{LogError, LogStats, LogStore, Meta};

/// Called once the entries of one append are durable, or failed.
pub type AppendDone = Box<dyn FnOnce(Result<(), LogError>) + Send>;

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, LogError>>;

enum Request {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        done: AppendDone,
    },
    Truncate {
        from: u64,
        reply: Reply<()>,
    },
    Purge {
        upto: u64,
        purged: Vec<u8>,
        reply: Reply<()>,
    },
    SaveMeta {
        vote: Option<Vec<u8>>,
        committed: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    Read {
        range: Range<u64>,
        reply: Reply<Vec<(u64, Vec<u8>)>>,
    },
    State {
        reply: Reply<LogState>,
    },
    /// Finish what was queued before, then stop (other handles get `Closed`).
    Stop,
    /// Remember the committed log id; persisted lazily (see `COMMITTED_FLUSH_INTERVAL`).
    NoteCommitted(Vec<u8>),
    #[cfg(test)]
    Hold(Receiver<()>),
}

/// A consistent view of the log's bounds, meta and counters.
#[derive(Debug, Clone)]
pub struct LogState {
    pub first_index: u64,
    pub last_index: u64,
    pub meta: Meta,
    pub stats: LogStats,
}

/// A handle to the writer thread; clones share it. The thread stops when
/// every handle is dropped, after finishing what was queued.
#[derive(Clone)]
pub struct LogWriter {
    tx: Sender<Request>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("queued", &self.tx.len())
            .finish()
    }
}

impl LogWriter {
    /// Moves `store` onto its own thread.
    pub fn start(
        store: LogStore,
        queue_depth: usize,
        batch_requests_max: usize,
    ) -> std::io::Result<LogWriter> {
        let (tx, rx) = crossbeam_channel::bounded(queue_depth);
        let thread = std::thread::Builder::new()
            .name("photon-raft-log".into())
            .spawn(move || run(store, rx, batch_requests_max))?;
        Ok(LogWriter {
            tx,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Queues entries; `done` runs on the writer thread once they are durable.
    /// Waits for room when the queue is full (the disk is behind).
    pub fn append(&self, entries: Vec<(u64, Vec<u8>)>, done: AppendDone) -> Result<(), LogError> {
        self.tx
            .send(Request::Append { entries, done })
            .map_err(|_| LogError::Closed)
    }

    /// Appends and waits until durable.
    pub fn append_and_wait(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), LogError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.append(entries, Box::new(move |r| drop(tx.send(r))))?;
        rx.recv().map_err(|_| LogError::Closed)?
    }

    /// Sends a request and awaits its answer without blocking the caller's
    /// runtime (only the queue send may wait, when the queue is full).
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, LogError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// Records the committed log id without waiting; the writer persists the
    /// latest one at most every `COMMITTED_FLUSH_INTERVAL` and at stop.
    pub fn note_committed(&self, committed: Vec<u8>) -> Result<(), LogError> {
        self.tx
            .send(Request::NoteCommitted(committed))
            .map_err(|_| LogError::Closed)
    }

    pub async fn truncate(&self, from: u64) -> Result<(), LogError> {
        self.ask(|reply| Request::Truncate { from, reply }).await
    }

    pub async fn purge(&self, upto: u64, purged: Vec<u8>) -> Result<(), LogError> {
        self.ask(|reply| Request::Purge {
            upto,
            purged,
            reply,
        })
        .await
    }

    pub async fn save_meta(
        &self,
        vote: Option<Vec<u8>>,
        committed: Option<Vec<u8>>,
    ) -> Result<(), LogError> {
        self.ask(|reply| Request::SaveMeta {
            vote,
            committed,
            reply,
        })
        .await
    }

    pub async fn read(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        self.ask(|reply| Request::Read { range, reply }).await
    }

    pub async fn state(&self) -> Result<LogState, LogError> {
        self.ask(|reply| Request::State { reply }).await
    }

    /// Stops the writer after the requests queued before this call and waits
    /// for its thread. Other handles (openraft keeps log readers in its tasks)
    /// may still exist; their later requests fail with `Closed`.
    pub fn shutdown(self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = self.tx.send(Request::Stop);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// Blocks the writer until the returned sender is dropped or used (tests
    /// use it to queue many appends and watch them commit as one group).
    #[cfg(test)]
    pub(crate) fn hold(&self) -> Sender<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = self.tx.send(Request::Hold(rx));
        tx
    }
}

/// How often, at most, the committed log id is written to the meta file.
pub const COMMITTED_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

fn run(mut store: LogStore, rx: Receiver<Request>, batch_requests_max: usize) {
    let mut durable_callbacks: Vec<AppendDone> = Vec::new();
    let mut committed = PendingCommitted::default();
    let mut reserve_checked = std::time::Instant::now();
    loop {
        if reserve_checked.elapsed() >= COMMITTED_FLUSH_INTERVAL {
            store.restore_reserve();
            reserve_checked = std::time::Instant::now();
        }
        let first = match rx.recv_timeout(COMMITTED_FLUSH_INTERVAL) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                committed.flush(&mut store, true);
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        // A hold pauses the writer before it gathers a batch, so everything
        // queued meanwhile lands in the next one.
        #[cfg(test)]
        let first = match first {
            Request::Hold(release) => {
                let _ = release.recv();
                continue;
            }
            other => other,
        };
        let mut batch = vec![first];
        while batch.len() < batch_requests_max {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut stop = false;
        for request in batch {
            if stop {
                refuse(request);
                continue;
            }
            match request {
                Request::Stop => stop = true,
                Request::NoteCommitted(c) => committed.latest = Some(c),
                // A vote write carries the latest committed id along.
                Request::SaveMeta {
                    vote,
                    committed: c,
                    reply,
                } => {
                    settle(&mut store, &mut durable_callbacks);
                    let c = c.or_else(|| committed.latest.take());
                    drop(reply.send(store.save_meta(vote, c)));
                }
                Request::Append { entries, done } => match store.append(&entries) {
                    Ok(()) => durable_callbacks.push(done),
                    Err(e) => done(Err(e)),
                },
                // Reads see written (not yet synced) entries: no barrier needed.
                read @ (Request::Read { .. } | Request::State { .. }) => serve(&mut store, read),
                // Every other write is ordered after the appends before it,
                // durably: a vote must never be on disk before earlier entries.
                other => {
                    settle(&mut store, &mut durable_callbacks);
                    serve(&mut store, other);
                }
            }
        }
        settle(&mut store, &mut durable_callbacks);
        committed.flush(&mut store, stop);
        if stop {
            return;
        }
    }
    committed.flush(&mut store, true);
}

/// The committed log id waiting to be written.
#[derive(Default)]
struct PendingCommitted {
    latest: Option<Vec<u8>>,
    written_at: Option<std::time::Instant>,
}

impl PendingCommitted {
    fn flush(&mut self, store: &mut LogStore, now: bool) {
        let due = now
            || self
                .written_at
                .is_none_or(|t| t.elapsed() >= COMMITTED_FLUSH_INTERVAL);
        if !due {
            return;
        }
        if let Some(c) = self.latest.take() {
            if let Err(e) = store.save_meta(None, Some(c)) {
                tracing::warn!(error = %e, "cannot persist the committed log id");
            }
            self.written_at = Some(std::time::Instant::now());
        }
    }
}

/// Answers a request that arrived after `Stop` with `Closed`.
fn refuse(request: Request) {
    match request {
        Request::Append { done, .. } => done(Err(LogError::Closed)),
        Request::Truncate { reply, .. }
        | Request::Purge { reply, .. }
        | Request::SaveMeta { reply, .. } => drop(reply.send(Err(LogError::Closed))),
        Request::Read { reply, .. } => drop(reply.send(Err(LogError::Closed))),
        Request::State { reply } => drop(reply.send(Err(LogError::Closed))),
        Request::Stop | Request::NoteCommitted(_) => {}
        #[cfg(test)]
        Request::Hold(_) => {}
    }
}

/// One fdatasync for every append written since the last one, then the acks.
fn settle(store: &mut LogStore, callbacks: &mut Vec<AppendDone>) {
    if callbacks.is_empty() {
        return;
    }
    let result = store.sync();
    for done in callbacks.drain(..) {
        done(result.clone());
    }
}

fn serve(store: &mut LogStore, request: Request) {
    match request {
        Request::Append { .. } | Request::Stop | Request::NoteCommitted(_) => {
            unreachable!("appends, stop and committed notes are handled by run()")
        }
        Request::Truncate { from, reply } => drop(reply.send(store.truncate(from))),
        Request::Purge {
            upto,
            purged,
            reply,
        } => drop(reply.send(store.purge(upto, purged))),
        Request::SaveMeta {
            vote,
            committed,
            reply,
        } => drop(reply.send(store.save_meta(vote, committed))),
        Request::Read { range, reply } => drop(reply.send(store.read(range))),
        Request::State { reply } => drop(reply.send(Ok(LogState {
            first_index: store.first_index(),
            last_index: store.last_index(),
            meta: store.meta().clone(),
            stats: store.stats(),
        }))),
        #[cfg(test)]
        Request::Hold(release) => drop(release.recv()),
    }
}
