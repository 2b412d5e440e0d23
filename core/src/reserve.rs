//! Space kept aside on a store's disk so the writes that free space, and the
//! metadata a store cannot stop without, still succeed when the disk is
//! full (a "ballast" file, as CockroachDB keeps one).
//!
//! The reserve is a preallocated file. A write that fails with ENOSPC
//! releases it (deletes the file) and is tried once more; from then on the
//! reserve is *released*: the owner refuses the writes that fill a disk
//! (new data) and keeps those that free it (deletes, compaction, Raft
//! metadata), and the health board says why. Every [`SpaceReserve::restore`]
//! tries to take the space back; once the disk has room again, it succeeds
//! and the owner takes writes again, without a restart.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// See the module documentation. Shared (`Arc`) by every writer of one disk
/// area; all methods take `&self`.
#[derive(Debug)]
pub struct SpaceReserve {
    path: PathBuf,
    bytes: u64,
    component: String,
    released: AtomicBool,
}

impl SpaceReserve {
    /// Keeps `bytes` at `path` (0600). A disk already too full to hold it
    /// starts released. `component` names it on the health board.
    pub fn new(path: impl Into<PathBuf>, bytes: u64, component: &str) -> std::io::Result<Self> {
        let reserve = SpaceReserve {
            path: path.into(),
            bytes,
            component: component.to_owned(),
            released: AtomicBool::new(false),
        };
        match allocate(&reserve.path, bytes) {
            Ok(()) => {}
            Err(e) if crate::health::is_no_space(&e) => reserve.mark_released(),
            Err(e) => return Err(e),
        }
        Ok(reserve)
    }

    /// Runs `op`; if it fails for lack of space, releases the reserve and
    /// runs it once more. `op` must be safe to repeat (a positioned write, a
    /// create that truncates, a rename), never an fsync: an fsync that
    /// failed may have lost pages and is not retried.
    pub fn retry_on_full<T>(
        &self,
        mut op: impl FnMut() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match op() {
            Err(e) if crate::health::is_no_space(&e) && self.release() => op(),
            other => other,
        }
    }

    /// Gives the reserve's space to the disk. Returns whether there was any
    /// to give (false once released).
    pub fn release(&self) -> bool {
        if self.released.load(Ordering::Acquire) {
            return false;
        }
        let had = match std::fs::remove_file(&self.path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot release the space reserve");
                false
            }
        };
        self.mark_released();
        had
    }

    fn mark_released(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            crate::health::report_failed(
                &self.component,
                "the disk is full: new data is refused until space is freed",
            );
        }
    }

    /// Whether the disk ran full and the reserve is not back yet: refuse
    /// writes that add data.
    pub fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Takes the reserve back if the disk has room again; returns whether it
    /// is in place.
    pub fn restore(&self) -> bool {
        if !self.is_released() {
            return true;
        }
        match allocate(&self.path, self.bytes) {
            Ok(()) => {
                self.released.store(false, Ordering::Release);
                crate::health::clear(&self.component);
                true
            }
            Err(e) => {
                if !crate::health::is_no_space(&e) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot restore the space reserve");
                }
                let _ = std::fs::remove_file(&self.path);
                false
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `path` holding `bytes` of allocated blocks, durably.
fn allocate(path: &Path, bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if bytes > 0 {
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_reserve_is_reported_and_restored() {
        let dir = std::env::temp_dir().join(format!("photon-reserve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("reserve");
        let reserve = SpaceReserve::new(&path, 1 << 20, "test reserve").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        let mut tries = 0;
        let result = reserve.retry_on_full(|| {
            tries += 1;
            if tries == 1 {
                Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
            } else {
                Ok(tries)
            }
        });
        assert_eq!(result.unwrap(), 2);
        assert!(reserve.is_released() && !path.exists());
        assert!(crate::health::failures()
            .iter()
            .any(|(c, _)| c == "test reserve"));
        // Released once: a second full disk is not retried.
        let result: std::io::Result<()> =
            reserve.retry_on_full(|| Err(std::io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(result.is_err());
        assert!(reserve.restore());
        assert!(!reserve.is_released() && path.exists());
        assert!(!crate::health::failures()
            .iter()
            .any(|(c, _)| c == "test reserve"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
