//! The server side of NBD's fixed-newstyle handshake: greeting, options,
//! and the export chosen by an attach token (the export name). Runs on the
//! shard that accepted the connection; the transmission phase then moves to
//! the volume's owner shard.

use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use photon_nbd::consts::*;
use photon_nbd::handshake::{self, ClientOption, OptionError, OptionHeader};
use photon_records::{VolumeKind, VolumeRecord};

/// Options a client may send before choosing an export.
pub const OPTIONS_MAX: usize = 64;
/// Smallest I/O unit a client may use (the store's page).
pub const BLOCK_MIN: u32 = 4096;

/// A volume the client may use, as the token resolved it.
#[derive(Debug, Clone)]
pub struct Export {
    pub volume: Arc<VolumeRecord>,
    pub read_only: bool,
}

impl Export {
    pub fn new(volume: Arc<VolumeRecord>) -> Self {
        let read_only = volume.kind == VolumeKind::Snapshot;
        Self { volume, read_only }
    }

    /// The transmission flags this export announces.
    pub fn flags(&self) -> u16 {
        let mut flags = FLAG_HAS_FLAGS
            | FLAG_SEND_FLUSH
            | FLAG_SEND_FUA
            | FLAG_SEND_TRIM
            | FLAG_SEND_WRITE_ZEROES
            | FLAG_CAN_MULTI_CONN
            | FLAG_SEND_CACHE;
        if self.read_only {
            flags |= FLAG_READ_ONLY;
        }
        flags
    }

    pub fn block_min(&self) -> u32 {
        self.volume.block_size.max(BLOCK_MIN)
    }
}

/// What the handshake agreed on.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub export: Export,
    pub structured: bool,
    pub base_allocation: bool,
}

/// Why the handshake ended without an export.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("client aborted the handshake")]
    Aborted,
    #[error("client sent more than {OPTIONS_MAX} options")]
    TooManyOptions,
}

/// Runs the handshake. `resolve` checks an export name (an attach token)
/// and returns the export, or the reason to refuse it with
/// `NBD_REP_ERR_POLICY`.
pub async fn negotiate<S, R>(stream: &mut S, resolve: R) -> Result<Negotiated, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: Fn(&str) -> Result<Export, String>,
{
    stream.write_all(&handshake::greeting()).await?;
    stream.flush().await?;
    let mut flags = [0u8; 4];
    stream.read_exact(&mut flags).await?;
    let no_zeroes = handshake::parse_client_flags(flags)
        .map_err(|e| HandshakeError::Protocol(e.to_string()))?;
    let mut structured = false;
    let mut base_allocation = false;
    for _ in 0..OPTIONS_MAX {
        let mut h = [0u8; 16];
        stream.read_exact(&mut h).await?;
        let header = OptionHeader::parse(h).map_err(|e| HandshakeError::Protocol(e.to_string()))?;
        let mut data = vec![0u8; header.length as usize];
        stream.read_exact(&mut data).await?;
        let option = match ClientOption::parse(header.option, &data) {
            Ok(o) => o,
            Err(e) => {
                send(stream, &handshake::error_reply(header.option, &e)).await?;
                continue;
            }
        };
        match option {
            ClientOption::ExportName(name) => match resolve(&name) {
                // EXPORT_NAME has no error reply: a refused name closes.
                Ok(export) => {
                    let reply =
                        handshake::export_name_reply(export.volume.size, export.flags(), no_zeroes);
                    send(stream, &reply).await?;
                    return Ok(Negotiated {
                        export,
                        structured: false,
                        base_allocation: false,
                    });
                }
                Err(reason) => return Err(HandshakeError::Protocol(reason)),
            },
            ClientOption::Abort => {
                let _ = send(stream, &handshake::ack(OPT_ABORT)).await;
                return Err(HandshakeError::Aborted);
            }
            ClientOption::List => {
                let e = OptionError {
                    reply: REP_ERR_POLICY,
                    message: "exports are not listed: attach a volume with `photon ctl volume attach NAME` and use the export name it prints".into(),
                };
                send(stream, &handshake::error_reply(OPT_LIST, &e)).await?;
            }
            ClientOption::StructuredReply => {
                structured = true;
                send(stream, &handshake::ack(header.option)).await?;
            }
            ClientOption::MetaContext { set, queries, .. } => {
                if set && !structured {
                    let e = OptionError::invalid("negotiate structured replies first");
                    send(stream, &handshake::error_reply(header.option, &e)).await?;
                    continue;
                }
                let wanted = queries.is_empty()
                    || queries.iter().any(|q| q == BASE_ALLOCATION || q == "base:");
                let mut reply = Vec::new();
                if wanted {
                    reply.extend(handshake::meta_context(header.option, 1, BASE_ALLOCATION));
                }
                if set {
                    base_allocation = wanted;
                }
                reply.extend(handshake::ack(header.option));
                send(stream, &reply).await?;
            }
            ClientOption::Info { go, name, .. } => match resolve(&name) {
                Ok(export) => {
                    let mut reply =
                        handshake::info_export(header.option, export.volume.size, export.flags());
                    reply.extend(handshake::info_block_size(
                        header.option,
                        export.block_min(),
                        export.block_min(),
                        limits::PAYLOAD_BYTES_MAX,
                    ));
                    reply.extend(handshake::ack(header.option));
                    send(stream, &reply).await?;
                    if go {
                        return Ok(Negotiated {
                            export,
                            structured,
                            base_allocation,
                        });
                    }
                }
                Err(reason) => {
                    let e = OptionError {
                        reply: REP_ERR_POLICY,
                        message: reason,
                    };
                    send(stream, &handshake::error_reply(header.option, &e)).await?;
                }
            },
            ClientOption::Unsupported(code) => {
                let e = OptionError::unsupported(format!("option {code} is not supported"));
                send(stream, &handshake::error_reply(code, &e)).await?;
            }
        }
    }
    Err(HandshakeError::TooManyOptions)
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}
