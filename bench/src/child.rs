//! Processes a benchmark starts (servers, peers) and the scratch directory
//! they run in; both are cleaned up on drop, and a child dies with the
//! benchmark.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

/// Bytes of a process's log printed when it fails.
pub const LOG_TAIL_BYTES: u64 = 4096;

/// The run's scratch directory, removed on drop.
pub struct WorkDir {
    pub path: PathBuf,
}

impl WorkDir {
    /// `<base>/photon-bench-<name>-<pid>`, emptied first.
    pub fn create(base: &Path, name: &str) -> anyhow::Result<Self> {
        let path = base.join(format!("photon-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process, killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `command` with stdout and stderr to `log`.
    pub fn spawn(name: String, command: &mut Command, log: PathBuf) -> anyhow::Result<Self> {
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // If the benchmark itself dies (panic=abort, SIGKILL), its servers
        // must not outlive it and keep ports, CPU and disk busy.
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches
        // no memory of the parent; it runs in the child between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(command, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self { name, child, log })
    }

    /// Fails, with the end of the process's log, if it has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); end of its log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log)
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last [`LOG_TAIL_BYTES`] of a log file.
pub fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text
}

/// A free port on 127.0.0.1, for addresses that must be known before start.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}
