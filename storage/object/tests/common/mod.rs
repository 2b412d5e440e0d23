//! Shared by the photon-object integration tests: temp dirs, an executor,
//! small configurations, checkable content, and raw access to segment files.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use photon_object::record::{self, RecordHeader, SegmentHeader};
use photon_object::StoreConfig;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("photon-object-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `future` on a fresh glommio executor.
pub fn run<T>(future: impl Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(future)
}

/// A small configuration: 1 MiB segments, 64 KiB inline, 128 KiB chunks.
pub fn small_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 1 << 20,
        inline_bytes_max: 64 << 10,
        chunk_bytes_max: 128 << 10,
        meta_bytes_max: 1024,
        checkpoint_every_bytes: 0,
        compact_live_ratio_max: 0.5,
        reserve_bytes: 0,
    }
}

/// Deterministic content for (key, version): checkable by any reader.
pub fn content(key: &str, version: u64, len: usize) -> Vec<u8> {
    let mut state =
        version.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(crc32c::crc32c(key.as_bytes()));
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Copies every file of `from` into a new directory: what a crash (kill -9)
/// at this instant leaves on disk, for acknowledged writes. Call it with no
/// write in flight. A background checkpoint may still be renaming or
/// deleting checkpoint files in the kernel meanwhile: a file that vanishes
/// is skipped, a half-copied one fails its crc and is rejected at open.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        match std::fs::copy(entry.path(), to.join(entry.file_name())) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("copy {}: {e}", entry.path().display()),
        }
    }
}

/// Segment files of a store directory, sorted by id.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Checkpoint files of a store directory.
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rkyv"))
        .collect()
}

/// The valid records of a segment file: (offset, header), found the way
/// recovery does (every 4096 boundary).
pub fn records_in_file(path: &Path) -> Vec<(u64, RecordHeader)> {
    let bytes = std::fs::read(path).unwrap();
    let nonce = SegmentHeader::decode(&bytes).unwrap().nonce;
    let mut out = Vec::new();
    let mut at = 4096usize;
    while at + 4096 <= bytes.len() {
        if let Ok((header, _)) = record::decode_record(&bytes[at..], nonce) {
            out.push((at as u64, header));
            at += header.record_bytes() as usize;
        } else {
            at += 4096;
        }
    }
    out
}

/// Overwrites `bytes` at `offset` of `path` and syncs.
pub fn patch_file(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
    file.sync_all().unwrap();
}

/// Reads `len` bytes at `offset` of `path`.
pub fn read_file_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).unwrap();
    let mut out = vec![0u8; len];
    file.read_exact_at(&mut out, offset).unwrap();
    out
}
