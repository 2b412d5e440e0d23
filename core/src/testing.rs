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
