//! A VM's serial console: QEMU serves it on a Unix socket; the relay holds
//! the one connection, keeps what the guest prints in a bounded log
//! (`console.log` plus the previous `console.log.1`, each at most half the
//! bound), copies it to attached viewers, and passes their keystrokes on.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub const LOG_FILE: &str = "console.log";
const LOG_FILE_OLD: &str = "console.log.1";
/// Output queued for a viewer; one that falls this far behind is dropped.
const VIEWER_QUEUE: usize = 256;
/// What a new viewer gets first: the end of the log.
const VIEWER_BACKLOG_BYTES: usize = 16 * 1024;

/// What a viewer receives.
#[derive(Debug)]
pub enum Output {
    Data(Vec<u8>),
    Closed(String),
}

/// A viewer's two ends.
pub struct Viewer {
    pub output: mpsc::Receiver<Output>,
    pub input: mpsc::Sender<Vec<u8>>,
}

/// The log of one VM, bounded to `bytes_max` over its two files.
#[derive(Debug, Clone)]
pub struct ConsoleLog {
    dir: PathBuf,
    bytes_max: u64,
}

impl ConsoleLog {
    pub fn new(dir: &Path, bytes_max: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            bytes_max: bytes_max.max(2),
        }
    }

    /// Appends `data`, starting a new file when the current one is full.
    pub fn append(&self, data: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(LOG_FILE);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len + data.len() as u64 > self.bytes_max / 2 {
            std::fs::rename(&path, self.dir.join(LOG_FILE_OLD)).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        }
        let keep = &data[data.len().saturating_sub((self.bytes_max / 2) as usize)..];
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(keep)
    }

    /// The last `tail` bytes of the log.
    pub fn tail(&self, tail: usize) -> std::io::Result<Vec<u8>> {
        let read = |name: &str| match std::fs::read(self.dir.join(name)) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        let mut all = read(LOG_FILE_OLD)?;
        all.extend(read(LOG_FILE)?);
        Ok(all.split_off(all.len().saturating_sub(tail)))
    }
}

/// The attachment point of one VM's console: viewers join here while the
/// relay runs.
#[derive(Debug)]
pub struct Hub {
    log: ConsoleLog,
    viewers: std::sync::Mutex<Vec<mpsc::Sender<Output>>>,
    input: mpsc::Sender<Vec<u8>>,
}

impl Hub {
    /// A new viewer: it gets the end of the log first, then live output.
    pub fn attach(&self) -> Viewer {
        let (tx, rx) = mpsc::channel(VIEWER_QUEUE);
        if let Ok(backlog) = self.log.tail(VIEWER_BACKLOG_BYTES) {
            if !backlog.is_empty() {
                let _ = tx.try_send(Output::Data(backlog));
            }
        }
        if let Ok(mut viewers) = self.viewers.lock() {
            viewers.push(tx);
        }
        Viewer {
            output: rx,
            input: self.input.clone(),
        }
    }

    /// Sends `output` to every viewer; drops those that fell behind.
    fn broadcast(&self, output: impl Fn() -> Output) {
        if let Ok(mut viewers) = self.viewers.lock() {
            viewers.retain(|v| v.try_send(output()).is_ok());
        }
    }
}

/// Starts relaying the console of the VM in `dir`: returns its hub and
/// the relay, which runs until QEMU closes the console (connecting first,
/// retrying while QEMU sets up).
pub fn relay(
    dir: PathBuf,
    log: ConsoleLog,
) -> (std::sync::Arc<Hub>, impl std::future::Future<Output = ()>) {
    let (input, mut keys) = mpsc::channel::<Vec<u8>>(64);
    let hub = std::sync::Arc::new(Hub {
        log,
        viewers: std::sync::Mutex::new(Vec::new()),
        input,
    });
    let relay_hub = hub.clone();
    let run = async move {
        let hub = relay_hub;
        let socket = dir.join(crate::qemu::CONSOLE_SOCKET);
        let mut stream = None;
        for _ in 0..100 {
            if let Ok(s) = tokio::net::UnixStream::connect(&socket).await {
                stream = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Some(stream) = stream else {
            hub.broadcast(|| Output::Closed("the console did not open".into()));
            return;
        };
        let (mut read, mut write) = stream.into_split();
        let mut buf = vec![0u8; 16 * 1024];
        let reason = loop {
            tokio::select! {
                n = read.read(&mut buf) => {
                    let n = match n {
                        Ok(0) => break "the VM stopped".to_owned(),
                        Ok(n) => n,
                        Err(e) => break format!("console: {e}"),
                    };
                    if let Err(e) = hub.log.append(&buf[..n]) {
                        tracing::warn!(dir = %dir.display(), error = %e, "console log not written");
                    }
                    hub.broadcast(|| Output::Data(buf[..n].to_vec()));
                }
                Some(data) = keys.recv() => {
                    if let Err(e) = write.write_all(&data).await {
                        break format!("console: {e}");
                    }
                }
            }
        };
        hub.broadcast(|| Output::Closed(reason.clone()));
        if let Ok(mut viewers) = hub.viewers.lock() {
            viewers.clear();
        };
    };
    (hub, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_stays_bounded_and_keeps_the_end() {
        let dir = std::env::temp_dir().join(format!("photon-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = ConsoleLog::new(&dir, 1000);
        for i in 0..500u32 {
            log.append(format!("line {i}\n").as_bytes()).unwrap();
        }
        let all = log.tail(usize::MAX).unwrap();
        assert!(all.len() <= 1000, "{}", all.len());
        assert!(all.ends_with(b"line 499\n"));
        assert_eq!(log.tail(9).unwrap(), b"line 499\n");
        log.append(&[b'x'; 5000]).unwrap();
        assert!(log.tail(usize::MAX).unwrap().len() <= 1000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
