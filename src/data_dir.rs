//! The node's data directory is private: the directory and everything in
//! it belong to the user running photon alone (directories 0700, files
//! 0600), whatever the umask. Object data, volume blocks and the Raft log
//! (argon2id password hashes, sealed keys) are never readable by other
//! local users.
//!
//! At start the process umask becomes 0077, so every file any service
//! creates later is private from its first byte, and a data directory left
//! with looser modes (an older release, a copy, a restore) is tightened
//! before anything opens it. A mode that cannot be fixed (a file owned by
//! another user) refuses the start with the path in the error.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Bits that other users (group and others) must never have.
const SHARED_BITS: u32 = 0o077;
/// Directories deeper than this under the data directory are not expected
/// (services nest two or three levels): deeper ones are a start error rather
/// than a walk without end.
const DEPTH_MAX: usize = 16;

/// What [`secure`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tightened {
    /// Paths whose mode lost group or other bits.
    pub fixed: Vec<PathBuf>,
}

/// Sets the process umask to 0077, creates `dir` (0700) if missing and
/// makes every directory in it 0700-at-most and every file 0600-at-most.
pub fn secure(dir: &Path) -> anyhow::Result<Tightened> {
    // SAFETY: umask(2) only sets the process's file mode creation mask.
    unsafe { libc::umask(SHARED_BITS as libc::mode_t) };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let mut tightened = Tightened::default();
    tighten(dir, 0, &mut tightened)?;
    Ok(tightened)
}

fn tighten(path: &Path, depth: usize, out: &mut Tightened) -> anyhow::Result<()> {
    // Never follows a symlink: its target is not ours to change, and the
    // link's own mode means nothing.
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    if mode & SHARED_BITS != 0 {
        // SAFETY: geteuid(2) has no arguments and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            bail!(
                "{} is readable by other users (mode {mode:o}) and owned by uid {}, not {me}: \
                 fix its owner and mode (chmod go-rwx) before starting photon",
                path.display(),
                meta.uid()
            );
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !SHARED_BITS))
            .with_context(|| format!("cannot make {} private", path.display()))?;
        out.fixed.push(path.to_owned());
    }
    if meta.is_dir() {
        if depth >= DEPTH_MAX {
            bail!(
                "{} is nested deeper than {DEPTH_MAX} directories in the data directory",
                path.display()
            );
        }
        let entries =
            std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
            tighten(&entry.path(), depth + 1, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_modes_are_tightened_and_symlinks_left_alone() {
        let root = std::env::temp_dir().join(format!("photon-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"x").unwrap();
        std::fs::write(root.join("g"), b"y").unwrap();
        std::fs::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("a/b/f"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::set_permissions(root.join("g"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let outside = std::env::temp_dir().join(format!("photon-outside-{}", std::process::id()));
        std::fs::write(&outside, b"z").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();

        let tightened = secure(&root).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&root.join("a")), 0o700);
        assert_eq!(mode(&root.join("a/b/f")), 0o600);
        assert_eq!(mode(&root.join("g")), 0o600);
        assert_eq!(mode(&outside), 0o644, "a symlink's target is not ours");
        assert!(tightened.fixed.contains(&root.join("a")));
        assert!(!tightened.fixed.contains(&root.join("g")));
        // Files made afterwards are private whatever the umask was.
        std::fs::write(root.join("new"), b"n").unwrap();
        assert_eq!(mode(&root.join("new")), 0o600);
        assert_eq!(secure(&root).unwrap(), Tightened::default());
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_file(&outside);
    }
}
