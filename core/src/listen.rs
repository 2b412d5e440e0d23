//! Per-shard listeners: the same address bound on every shard with
//! SO_REUSEPORT (glommio sets it), after shard 0 has checked that no other
//! process holds the port and resolved port 0 to a concrete one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::ShardId;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{name}: address {addr} is already in use by another process")]
    InUse { name: String, addr: SocketAddr },
    #[error("{name}: cannot bind {addr} on shard {shard}")]
    Bind {
        name: String,
        addr: SocketAddr,
        shard: ShardId,
        #[source]
        source: std::io::Error,
    },
    #[error("{name}: shard {shard} binds before shard 0 resolved the address")]
    NotResolved { name: String, shard: ShardId },
}

/// One endpoint the node serves, for the endpoint table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub service: &'static str,
    pub addr: SocketAddr,
}

/// The addresses every named listener resolved to, shared by all shards.
#[derive(Debug, Default)]
pub struct ListenerRegistry {
    resolved: Mutex<BTreeMap<String, Endpoint>>,
}

impl ListenerRegistry {
    pub(crate) fn bind(
        &self,
        shard: ShardId,
        name: &str,
        service: &'static str,
        addr: SocketAddr,
    ) -> Result<glommio::net::TcpListener, ListenError> {
        let target = if shard == 0 {
            if addr.port() != 0 {
                probe_free(name, addr)?;
            }
            addr
        } else {
            let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            match resolved.get(name) {
                Some(e) => e.addr,
                None => {
                    return Err(ListenError::NotResolved {
                        name: name.to_string(),
                        shard,
                    })
                }
            }
        };
        let listener = reuse_listener(target).map_err(|source| ListenError::Bind {
            name: name.to_string(),
            addr: target,
            shard,
            source,
        })?;
        if shard == 0 {
            let actual = listener.local_addr().map_err(|e| ListenError::Bind {
                name: name.to_string(),
                addr: target,
                shard,
                source: std::io::Error::other(e.to_string()),
            })?;
            self.resolved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    name.to_string(),
                    Endpoint {
                        name: name.to_string(),
                        service,
                        addr: actual,
                    },
                );
        }
        Ok(listener)
    }

    /// Every endpoint shard 0 resolved, sorted by name.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// A socket without SO_REUSEPORT cannot bind a port that any socket listens on,
/// including another process's SO_REUSEPORT group, which glommio's own bind
/// would silently join. Rust's std sets SO_REUSEADDR, so TIME_WAIT does not
/// count as in use.
fn probe_free(name: &str, addr: SocketAddr) -> Result<(), ListenError> {
    match std::net::TcpListener::bind(addr) {
        Ok(_probe) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(ListenError::InUse {
            name: name.to_string(),
            addr,
        }),
        Err(source) => Err(ListenError::Bind {
            name: name.to_string(),
            addr,
            shard: 0,
            source,
        }),
    }
}

/// Connections a listener queues before `accept`.
const LISTEN_BACKLOG: i32 = 1024;

/// A listening socket with SO_REUSEPORT (every shard binds the address) and
/// SO_REUSEADDR. glommio's own `bind` sets only the first; then the server
/// side of connections it closed lingers in TIME_WAIT without the reuse flag,
/// and a restarted node cannot bind its port for a minute.
fn reuse_listener(addr: SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
    use std::os::fd::IntoRawFd;
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a bound, listening TCP socket we own and hand over;
    // nothing else closes or uses it.
    Ok(unsafe { <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}
