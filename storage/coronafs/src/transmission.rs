//! The transmission phase of one NBD connection, on the volume's owner
//! shard: a reader parses requests and starts each as its own task (so a
//! queue depth of 32 means 32 I/Os in flight), a writer sends the replies in
//! completion order, coalescing whatever is ready into one socket write.
//!
//! Bounds: requests in flight per connection hold permits of a byte budget
//! ([`INFLIGHT_BYTES_MAX`]), so a client cannot make the server buffer more
//! than that; a malformed request header or a payload over the protocol
//! limit closes the connection (the stream can no longer be framed).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::TaskQueueHandle;
use photon_core::local_sync::Signal;
use photon_nbd::consts::*;
use photon_nbd::transmission::{self, Command, Request};
use photon_volume::{Chunk, Store, StoreError};

use crate::handshake::Negotiated;
use crate::metrics::NbdMetrics;

/// Bytes of request payloads and read replies in flight per connection.
pub const INFLIGHT_BYTES_MAX: u64 = 128 << 20;
/// Largest piece WRITE_ZEROES with NO_HOLE writes at once.
const ZERO_WRITE_BYTES: u64 = 1 << 20;
const WRITE_BUFFER_BYTES: usize = 256 << 10;
const READ_BUFFER_BYTES: usize = 256 << 10;

enum Reply {
    Raw(Vec<u8>),
    Read {
        cookie: u64,
        offset: u64,
        chunks: Vec<Chunk>,
    },
}

/// Replies waiting for the writer.
#[derive(Default)]
struct Outbox {
    queue: RefCell<VecDeque<Reply>>,
    ready: Signal,
    closed: std::cell::Cell<bool>,
}

impl Outbox {
    fn push(&self, reply: Reply) {
        self.queue.borrow_mut().push_back(reply);
        self.ready.notify_all();
    }
}

struct Conn {
    store: Rc<Store>,
    session: Negotiated,
    outbox: Outbox,
    metrics: Rc<NbdMetrics>,
}

impl Conn {
    fn map(&self) -> u64 {
        self.session.export.volume.id
    }

    fn done(&self, cookie: u64, result: Result<(), StoreError>) {
        match result {
            Ok(()) => self.ok(cookie),
            Err(e) => self.error(cookie, errno_of(&e), &e.to_string()),
        }
    }

    fn ok(&self, cookie: u64) {
        let bytes = if self.session.structured {
            transmission::structured_done(cookie).to_vec()
        } else {
            transmission::simple_reply(cookie, 0).to_vec()
        };
        self.outbox.push(Reply::Raw(bytes));
    }

    fn error(&self, cookie: u64, errno: u32, message: &str) {
        self.metrics.errors.inc();
        let bytes = if self.session.structured {
            transmission::structured_error(cookie, errno, message)
        } else {
            transmission::simple_reply(cookie, errno).to_vec()
        };
        self.outbox.push(Reply::Raw(bytes));
    }

    async fn write(self: Rc<Self>, r: Request, buf: glommio::io::DmaBuffer) {
        let started = std::time::Instant::now();
        let mut result = self.store.write(self.map(), r.offset, buf).await;
        if result.is_ok() && r.flags & CMD_FLAG_FUA != 0 {
            result = self.store.flush().await;
        }
        self.metrics.writes.inc();
        self.metrics.write_bytes.add(u64::from(r.length));
        self.metrics.write_latency.record(started.elapsed());
        self.done(r.cookie, result);
    }

    async fn read(self: Rc<Self>, r: Request) {
        let started = std::time::Instant::now();
        let result = self
            .store
            .read(self.map(), r.offset, u64::from(r.length))
            .await;
        self.metrics.reads.inc();
        self.metrics.read_bytes.add(u64::from(r.length));
        self.metrics.read_latency.record(started.elapsed());
        match result {
            Ok(chunks) => self.outbox.push(Reply::Read {
                cookie: r.cookie,
                offset: r.offset,
                chunks,
            }),
            Err(e) => self.error(r.cookie, errno_of(&e), &e.to_string()),
        }
    }

    async fn flush(self: Rc<Self>, r: Request) {
        let started = std::time::Instant::now();
        let result = self.store.flush().await;
        self.metrics.flushes.inc();
        self.metrics.flush_latency.record(started.elapsed());
        self.done(r.cookie, result);
    }

    async fn zero(self: Rc<Self>, r: Request) {
        let (offset, len) = (r.offset, u64::from(r.length));
        let allocate = r.command == Command::WriteZeroes && r.flags & CMD_FLAG_NO_HOLE != 0;
        let mut result = if allocate {
            // NO_HOLE: the range must stay allocated, so write real zeroes.
            let mut at = offset;
            let mut result = Ok(());
            while at < offset + len && result.is_ok() {
                let n = (offset + len - at).min(ZERO_WRITE_BYTES);
                let mut buf = self.store.alloc_buffer(n as usize);
                buf.as_bytes_mut().fill(0);
                result = self.store.write(self.map(), at, buf).await;
                at += n;
            }
            result
        } else {
            self.store.zero(self.map(), offset, len).await
        };
        if result.is_ok() && r.flags & CMD_FLAG_FUA != 0 {
            result = self.store.flush().await;
        }
        self.metrics.zeroes.inc();
        self.done(r.cookie, result);
    }

    fn block_status(&self, r: Request) {
        if !self.session.base_allocation {
            self.error(r.cookie, EINVAL, "base:allocation was not negotiated");
            return;
        }
        let runs = self
            .store
            .allocation(self.map(), r.offset, u64::from(r.length));
        let mut extents: Vec<(u32, u32)> = runs
            .into_iter()
            .map(|(len, data)| (len as u32, if data { 0 } else { STATE_HOLE | STATE_ZERO }))
            .collect();
        if r.flags & CMD_FLAG_REQ_ONE != 0 {
            extents.truncate(1);
        }
        if extents.is_empty() {
            // A zero-length query still gets one descriptor.
            extents.push((0, STATE_HOLE | STATE_ZERO));
        }
        self.outbox.push(Reply::Raw(transmission::block_status(
            r.cookie, 1, &extents, true,
        )));
    }
}

/// The NBD errno of a store error: a full disk is ENOSPC (the protocol
/// asks for it, and QEMU reports it as such), a deleted volume ESHUTDOWN,
/// anything else EIO.
fn errno_of(e: &StoreError) -> u32 {
    match e {
        StoreError::Gone(_) => ESHUTDOWN,
        StoreError::NoSpace => ENOSPC,
        StoreError::Io(io) if photon_core::health::is_no_space(io) => ENOSPC,
        _ => EIO,
    }
}

/// Serves the transmission phase until the client disconnects or breaks
/// the protocol.
pub async fn serve(
    stream: TcpStream,
    session: Negotiated,
    store: Rc<Store>,
    metrics: Rc<NbdMetrics>,
    queue: TaskQueueHandle,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = futures_lite::io::split(stream);
    let conn = Rc::new(Conn {
        store,
        session,
        outbox: Outbox::default(),
        metrics,
    });
    metrics_connections(&conn, 1);
    let writer_task = glommio::spawn_local_into(write_replies(conn.clone(), writer), queue)
        .expect("the latency queue exists");
    let budget = Rc::new(Semaphore::new(INFLIGHT_BYTES_MAX));
    if let Err(reason) = read_requests(&conn, reader, &budget, queue).await {
        tracing::debug!(volume = conn.map(), %reason, "NBD connection ends");
    }
    // Let every started request reply before the connection closes.
    let _ = budget.acquire(INFLIGHT_BYTES_MAX).await;
    conn.outbox.closed.set(true);
    conn.outbox.ready.notify_all();
    writer_task.await;
    metrics_connections(&conn, -1);
}

fn metrics_connections(conn: &Conn, delta: i64) {
    if delta > 0 {
        conn.metrics.connections.inc();
    } else {
        conn.metrics.connections.dec();
    }
}

async fn read_requests(
    conn: &Rc<Conn>,
    reader: futures_lite::io::ReadHalf<TcpStream>,
    budget: &Rc<Semaphore>,
    queue: TaskQueueHandle,
) -> Result<(), String> {
    let mut reader = futures_lite::io::BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let export = &conn.session.export;
    let (size, block_min, read_only) = (export.volume.size, export.block_min(), export.read_only);
    loop {
        let mut header = [0u8; Request::BYTES];
        match reader.read_exact(&mut header).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let r = Request::parse(header).map_err(|e| e.to_string())?;
        let cost = match r.command {
            Command::Read | Command::Write => u64::from(r.length).max(1),
            _ => 1,
        };
        let permit = budget
            .clone()
            .acquire_static_permit(cost.min(INFLIGHT_BYTES_MAX))
            .await
            .map_err(|e| e.to_string())?;
        let check = r.check(size, block_min, read_only);
        if r.command == Command::Write {
            if let Err(errno) = check {
                // Consume the payload to stay framed, then refuse.
                let mut left = u64::from(r.length);
                let mut scratch = vec![0u8; 64 << 10];
                while left > 0 {
                    let n = left.min(scratch.len() as u64) as usize;
                    reader
                        .read_exact(&mut scratch[..n])
                        .await
                        .map_err(|e| format!("client vanished mid-write: {e}"))?;
                    left -= n as u64;
                }
                conn.error(r.cookie, errno, "write refused");
                continue;
            }
            let mut buf = conn.store.alloc_buffer(r.length as usize);
            // A client that vanishes here never gets (or expects) a reply;
            // nothing was written.
            reader
                .read_exact(buf.as_bytes_mut())
                .await
                .map_err(|e| format!("client vanished mid-write: {e}"))?;
            spawn(queue, permit, conn.clone().write(r, buf));
            continue;
        }
        if r.command == Command::Disconnect {
            return Ok(());
        }
        if let Err(errno) = check {
            conn.error(r.cookie, errno, "request refused");
            continue;
        }
        match r.command {
            Command::Read => spawn(queue, permit, conn.clone().read(r)),
            Command::Flush => spawn(queue, permit, conn.clone().flush(r)),
            Command::Trim | Command::WriteZeroes => spawn(queue, permit, conn.clone().zero(r)),
            Command::BlockStatus => conn.block_status(r),
            Command::Cache => conn.ok(r.cookie),
            Command::Write | Command::Disconnect | Command::Unknown(_) => {
                conn.error(r.cookie, EINVAL, "unknown command")
            }
        }
    }
}

fn spawn(
    queue: TaskQueueHandle,
    permit: glommio::sync::StaticPermit,
    work: impl std::future::Future<Output = ()> + 'static,
) {
    glommio::spawn_local_into(
        async move {
            work.await;
            drop(permit);
        },
        queue,
    )
    .expect("the latency queue exists")
    .detach();
}

static ZEROES: [u8; 64 << 10] = [0; 64 << 10];

async fn write_replies(conn: Rc<Conn>, writer: futures_lite::io::WriteHalf<TcpStream>) {
    let mut out = futures_lite::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    loop {
        let listen = conn.outbox.ready.listen();
        let batch: Vec<Reply> = conn.outbox.queue.borrow_mut().drain(..).collect();
        if batch.is_empty() {
            if conn.outbox.closed.get() {
                break;
            }
            listen.await;
            continue;
        }
        for reply in batch {
            if let Err(e) = send(&mut out, reply, conn.session.structured).await {
                tracing::debug!(error = %e, "NBD client went away while we replied");
                conn.outbox.closed.set(true);
                return;
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.flush().await;
    let _ = out.close().await;
}

async fn send<W: futures_lite::AsyncWrite + Unpin>(
    out: &mut W,
    reply: Reply,
    structured: bool,
) -> std::io::Result<()> {
    match reply {
        Reply::Raw(bytes) => out.write_all(&bytes).await,
        Reply::Read {
            cookie,
            offset,
            chunks,
        } => {
            if !structured {
                out.write_all(&transmission::simple_reply(cookie, 0))
                    .await?;
                for chunk in &chunks {
                    match chunk {
                        Chunk::Data { data, .. } => out.write_all(data).await?,
                        Chunk::Zero { len, .. } => write_zeroes(out, *len).await?,
                    }
                }
                return Ok(());
            }
            if chunks.is_empty() {
                return out.write_all(&transmission::structured_done(cookie)).await;
            }
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.iter().enumerate() {
                let at = offset + chunk.offset();
                match chunk {
                    Chunk::Data { data, .. } => {
                        out.write_all(&transmission::offset_data(
                            cookie,
                            at,
                            data.len() as u32,
                            i == last,
                        ))
                        .await?;
                        out.write_all(data).await?;
                    }
                    Chunk::Zero { len, .. } => {
                        out.write_all(&transmission::offset_hole(
                            cookie,
                            at,
                            *len as u32,
                            i == last,
                        ))
                        .await?;
                    }
                }
            }
            Ok(())
        }
    }
}

async fn write_zeroes<W: futures_lite::AsyncWrite + Unpin>(
    out: &mut W,
    mut len: u64,
) -> std::io::Result<()> {
    while len > 0 {
        let n = len.min(ZEROES.len() as u64) as usize;
        out.write_all(&ZEROES[..n]).await?;
        len -= n as u64;
    }
    Ok(())
}
