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

/// Set by SIGINT or SIGTERM; every wait of a run checks it, so that the
/// children and the scratch directory are cleaned up on the way out.
#[derive(Debug, Clone, Default)]
pub struct Stop(pub std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Stop {
    /// A flag that SIGINT and SIGTERM set.
    pub fn install() -> anyhow::Result<Self> {
        let stop = Self::default();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, stop.0.clone())
                .context("cannot install a signal handler")?;
        }
        Ok(stop)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if self.0.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }
}

/// `photon ctl` against a benchmark's `photon dev` (its data directory and
/// a config directory of its own for the token).
#[derive(Debug, Clone)]
pub struct DevCtl {
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub config_dir: PathBuf,
    /// Longest one command may take.
    pub timeout: std::time::Duration,
}

impl DevCtl {
    /// Runs `photon ctl --data-dir DIR ARGS`; returns its stdout.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(&self.exe);
        command
            .arg("ctl")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env("PHOTON_CONFIG_DIR", &self.config_dir)
            .env_remove("PHOTON_TOKEN")
            .env_remove("PHOTON_ENDPOINTS");
        let what = format!("photon ctl {}", args.join(" "));
        let output = output_with_timeout(&mut command, self.timeout)
            .with_context(|| format!("cannot run {what}"))?;
        if !output.status.success() {
            bail!(
                "{what} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `photon ctl --json ARGS`, parsed.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.run(&all)?;
        serde_json::from_str(&text).with_context(|| format!("not JSON: {text:?}"))
    }

    /// `photon ctl login` as the dev administrator, retried while the
    /// control plane elects its leader and writes the credentials, for at
    /// most `startup`.
    pub fn login(
        &self,
        server: &mut Proc,
        stop: &Stop,
        startup: std::time::Duration,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        loop {
            stop.check()?;
            server.check_alive()?;
            match self.run(&["login"]) {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() > startup => {
                    return Err(e.context(format!("no login after {startup:?}")))
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }
}

/// `command`'s output, killed after `timeout`. A thread collects it (the
/// pipes are drained while it runs) and the caller wakes up the moment it
/// exits, so that timings are not rounded up to a polling step.
pub fn output_with_timeout(
    command: &mut Command,
    timeout: std::time::Duration,
) -> anyhow::Result<std::process::Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => {
            let _ = waiter.join();
            Ok(output?)
        }
        Err(_) => {
            // SAFETY: kill(2) on our own child; the waiter thread has not
            // reaped it (it would have sent its output), so the pid is ours.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = waiter.join();
            bail!("no answer in {timeout:?} (killed)")
        }
    }
}
