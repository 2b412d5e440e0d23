//! Helpers for tests in other crates (feature `test-support`): a small
//! tmpfs to run a store on a disk that fills up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a few MiB mounted for one test, unmounted on drop. Mounting
/// needs root, which CI has; anywhere else the test fails with that reason
/// rather than passing without having run.
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    pub fn mount(path: impl Into<PathBuf>, mib: u64) -> Self {
        let path = path.into();
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Fills the disk with a file named `name` until a write fails with
    /// ENOSPC; returns its path (remove it to give the space back).
    pub fn fill(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0xa5u8; 64 << 10];
        let mut chunk = block.len();
        loop {
            match file.write(&block[..chunk]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if crate::health::is_no_space(&e) => {
                    // Fill the last pages too.
                    if chunk == 4096 {
                        break;
                    }
                    chunk = 4096;
                }
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Power loss, simulated: stores under test report every write (with the
/// bytes it replaced) and every sync to a [`WriteTrace`]; a crash image is
/// then a copy of their files in which each write that no completed sync
/// covers is kept, lost (its old bytes back) or torn (only its first
/// sectors reached the disk), chosen at random, undone newest first.
///
/// Writes reach the trace before the syscall; a sync is marked when it
/// starts ([`WriteTrace::begin_sync`]) and recorded when it returned, and
/// covers only the writes issued before it started. Only
/// file contents are modelled; creations, renames and deletions are taken
/// as they are at the crash (every store syncs its directory before it
/// relies on one).
pub mod crash {
    use std::collections::HashMap;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    /// Bytes a torn write keeps are a multiple of this.
    pub const SECTOR_BYTES: usize = 512;

    /// Copies the files of `from` into `to` (created): what kill -9 leaves,
    /// before [`WriteTrace::power_loss`] turns it into what a power loss
    /// leaves. Stores delete files on other threads (glommio's blocking
    /// pool, the Raft log writer), so a listed file may be gone by the time
    /// it is copied: that is the image of a crash just after the unlink,
    /// as valid as one just before.
    pub fn copy_image(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            match entry.file_type() {
                Ok(t) if t.is_file() => {}
                _ => continue,
            }
            match std::fs::copy(entry.path(), to.join(entry.file_name())) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("copy {}: {e}", entry.path().display()),
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Event {
        Write {
            path: PathBuf,
            offset: u64,
            old: Vec<u8>,
        },
        Sync {
            path: PathBuf,
            /// Writes before this position in the trace are covered.
            covers: usize,
        },
    }

    /// See the module documentation. `Send + Sync`: the Raft log writes on
    /// its own thread.
    #[derive(Debug, Default)]
    pub struct WriteTrace {
        events: Mutex<Vec<Event>>,
    }

    impl WriteTrace {
        /// `path` is about to get `len` new bytes at `offset`; `old` are the
        /// bytes there now (shorter, or empty, past the end of the file:
        /// those read as zeroes once the write is undone).
        pub fn write(&self, path: &Path, offset: u64, len: usize, mut old: Vec<u8>) {
            old.resize(len, 0);
            self.events.lock().unwrap().push(Event::Write {
                path: path.to_path_buf(),
                offset,
                old,
            });
        }

        /// Reads what `file` holds at `offset..offset + len` (for
        /// [`WriteTrace::write`]).
        pub fn old_bytes(file: &std::fs::File, offset: u64, len: usize) -> Vec<u8> {
            let mut old = vec![0u8; len];
            let mut got = 0;
            while got < len {
                match file.read_at(&mut old[got..], offset + got as u64) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            old.truncate(got);
            old
        }

        /// An fdatasync is about to start; pass the mark to
        /// [`WriteTrace::synced`] once it returned.
        pub fn begin_sync(&self) -> usize {
            self.events.lock().unwrap().len()
        }

        /// An fdatasync of `path` that began at `mark` returned.
        pub fn synced(&self, path: &Path, mark: usize) {
            self.events.lock().unwrap().push(Event::Sync {
                path: path.to_path_buf(),
                covers: mark,
            });
        }

        /// Writes traced so far that no sync covers.
        pub fn unsynced(&self) -> usize {
            self.unsynced_events().len()
        }

        /// Waits (polling, at most `limit`) until some traced write is not
        /// yet covered by a sync, so a crash image taken next has something
        /// a power loss can undo. Where syncs are nearly free (tmpfs, a
        /// fast disk) a crash taken at a random instant mostly finds every
        /// write covered, and such a test would not look at what it is
        /// about. Returns whether there was one.
        pub async fn until_unsynced(&self, limit: std::time::Duration) -> bool {
            let deadline = std::time::Instant::now() + limit;
            loop {
                if self.unsynced() > 0 {
                    return true;
                }
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                glommio::timer::sleep(std::time::Duration::from_micros(20)).await;
            }
        }

        fn unsynced_events(&self) -> Vec<(PathBuf, u64, Vec<u8>)> {
            let events = self.events.lock().unwrap();
            let mut covered: HashMap<&Path, usize> = HashMap::new();
            for e in events.iter() {
                if let Event::Sync { path, covers } = e {
                    let c = covered.entry(path).or_default();
                    *c = (*c).max(*covers);
                }
            }
            events
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match e {
                    Event::Write { path, offset, old }
                        if covered.get(path.as_path()).is_none_or(|&c| c <= i) =>
                    {
                        Some((path.clone(), *offset, old.clone()))
                    }
                    _ => None,
                })
                .collect()
        }

        /// Turns `image` (a copy of the directory `original` taken now, as
        /// kill -9 would leave it) into what a power loss could leave:
        /// `rand(n)` picks in `0..n`. Returns how many writes were lost or
        /// torn.
        pub fn power_loss(
            &self,
            original: &Path,
            image: &Path,
            mut rand: impl FnMut(u64) -> u64,
        ) -> usize {
            let mut undone = 0;
            for (path, offset, old) in self.unsynced_events().into_iter().rev() {
                let Ok(relative) = path.strip_prefix(original) else {
                    continue;
                };
                let target = image.join(relative);
                let Ok(file) = std::fs::OpenOptions::new().write(true).open(&target) else {
                    continue; // deleted since
                };
                // Cut off since (a truncation): nothing of it is left to undo.
                let end = file.metadata().unwrap().len();
                if offset >= end {
                    continue;
                }
                let old = &old[..old.len().min((end - offset) as usize)];
                let sectors = old.len().div_ceil(SECTOR_BYTES) as u64;
                let keep_sectors = match rand(3) {
                    0 => continue,                      // it reached the disk
                    1 => 0,                             // lost
                    _ => rand(sectors.max(1)) as usize, // torn
                };
                let from = (keep_sectors * SECTOR_BYTES).min(old.len());
                file.write_all_at(&old[from..], offset + from as u64)
                    .unwrap();
                undone += 1;
            }
            undone
        }
    }
}
