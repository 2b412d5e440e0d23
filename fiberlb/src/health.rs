//! Active health checks of backends: a TCP connect, or an HTTP GET whose
//! status must be 2xx/3xx, each within a timeout; rise/fall thresholds turn
//! results into a healthy/unhealthy verdict.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::spec::HealthKind;

/// Largest status line read from an HTTP check.
const STATUS_LINE_MAX: usize = 512;

/// Runs one check against `addr`: `Ok` or why it failed.
pub fn probe(addr: SocketAddr, kind: &HealthKind, timeout: Duration) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let HealthKind::Http { path } = kind else {
        return Ok(());
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket: {e}"))?;
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: photon-fiberlb-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; STATUS_LINE_MAX];
    let mut len = 0;
    while len < buf.len() && !buf[..len].contains(&b'\n') {
        match stream.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf[..len]);
    let line = line.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    if !version.starts_with("HTTP/") {
        return Err(format!("not an HTTP answer: {line:?}"));
    }
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

/// A backend's verdict from its recent checks. Unknown until the first
/// check; then `rise` passes in a row make it healthy and `fall` failures
/// in a row unhealthy.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub healthy: Option<bool>,
    passes: u8,
    failures: u8,
    /// Why the last check failed ("" after a pass).
    pub last_error: String,
}

impl Health {
    /// Takes one result; true when the verdict changed.
    pub fn record(&mut self, result: Result<(), String>, rise: u8, fall: u8) -> bool {
        let before = self.healthy;
        match result {
            Ok(()) => {
                self.passes = self.passes.saturating_add(1);
                self.failures = 0;
                self.last_error.clear();
                if self.healthy.is_none() || self.passes >= rise {
                    self.healthy = Some(true);
                }
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.passes = 0;
                self.last_error = e;
                if self.healthy.is_none() || self.failures >= fall {
                    self.healthy = Some(false);
                }
            }
        }
        before != self.healthy
    }

    /// Gets traffic: known healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn thresholds() {
        let mut h = Health::default();
        assert!(h.record(Ok(()), 3, 2), "the first result decides");
        assert!(h.is_healthy());
        assert!(
            !h.record(Err("x".into()), 3, 2),
            "one failure is not enough"
        );
        assert!(h.record(Err("x".into()), 3, 2));
        assert!(!h.is_healthy());
        assert!(!h.record(Ok(()), 3, 2));
        assert!(!h.record(Ok(()), 3, 2));
        assert!(h.record(Ok(()), 3, 2), "three passes in a row");
        assert!(h.is_healthy());
    }

    #[test]
    fn tcp_and_http_probes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for (i, conn) in listener.incoming().take(3).enumerate() {
                let mut conn = conn.unwrap();
                if i == 0 {
                    continue; // the TCP check: connect only
                }
                let mut req = [0u8; 1024];
                let n = conn.read(&mut req).unwrap();
                assert!(String::from_utf8_lossy(&req[..n]).starts_with("GET /healthz HTTP/1.1\r\n"));
                let status = if i == 1 {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = conn.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                );
            }
        });
        let t = Duration::from_secs(2);
        assert_eq!(probe(addr, &HealthKind::Tcp, t), Ok(()));
        let http = HealthKind::Http {
            path: "/healthz".into(),
        };
        assert_eq!(probe(addr, &http, t), Ok(()));
        assert_eq!(probe(addr, &http, t), Err("HTTP status 503".into()));
        server.join().unwrap();
        // Nobody listens any more.
        assert!(probe(addr, &HealthKind::Tcp, t)
            .unwrap_err()
            .starts_with("connect"));
    }
}
