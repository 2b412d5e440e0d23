//! The log's small mutable state (Raft vote, committed log id, purge point),
//! replaced atomically: written to `meta.tmp`, fsynced, renamed over `meta`,
//! directory fsynced. A crash leaves either the old or the new file, never a
//! mix; a CRC guards against anything else.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use photon_core::reserve::SpaceReserve;

use super::{io_error, LogError};

const MAGIC: &[u8; 8] = b"PHLOGMET";
const FORMAT_VERSION: u32 = 1;
pub const META_FILE: &str = "meta";
const META_TMP_FILE: &str = "meta.tmp";

/// Opaque blobs are the Raft layer's encodings; the store only keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub vote: Option<Vec<u8>>,
    pub committed: Option<Vec<u8>>,
    /// The Raft layer's encoding of the last purged log id.
    pub purged: Option<Vec<u8>>,
    /// Entries at or below this index are gone (0: nothing purged).
    pub purged_index: u64,
}

fn put_blob(out: &mut Vec<u8>, blob: &Option<Vec<u8>>) {
    match blob {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

fn get_blob(buf: &mut &[u8]) -> Option<Option<Vec<u8>>> {
    match take(buf, 1)?[0] {
        0 => Some(None),
        1 => {
            let len = u32::from_le_bytes(take(buf, 4)?.try_into().ok()?) as usize;
            Some(Some(take(buf, len)?.to_vec()))
        }
        _ => None,
    }
}

impl Meta {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        put_blob(&mut out, &self.vote);
        put_blob(&mut out, &self.committed);
        put_blob(&mut out, &self.purged);
        out.extend_from_slice(&self.purged_index.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Meta> {
        if bytes.len() < 4 {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut buf = body;
        if take(&mut buf, 8)? != MAGIC
            || u32::from_le_bytes(take(&mut buf, 4)?.try_into().ok()?) != FORMAT_VERSION
        {
            return None;
        }
        let meta = Meta {
            vote: get_blob(&mut buf)?,
            committed: get_blob(&mut buf)?,
            purged: get_blob(&mut buf)?,
            purged_index: u64::from_le_bytes(take(&mut buf, 8)?.try_into().ok()?),
        };
        buf.is_empty().then_some(meta)
    }

    /// Reads `dir/meta`; a missing file is an empty meta.
    pub fn load(dir: &Path) -> Result<Meta, LogError> {
        let path = dir.join(META_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Meta::decode(&bytes).ok_or_else(|| LogError::Corrupt {
                path,
                offset: 0,
                reason: "meta file fails its checksum or format".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    /// Replaces `dir/meta` atomically and durably. A full disk releases
    /// `reserve` (when given) and writes once more.
    pub fn store(&self, dir: &Path, reserve: Option<&SpaceReserve>) -> Result<(), LogError> {
        let tmp = dir.join(META_TMP_FILE);
        let path = dir.join(META_FILE);
        let bytes = self.encode();
        let file = retry_on_full(reserve, || {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            Ok(file)
        })
        .map_err(|e| io_error("write", &tmp, e))?;
        file.sync_all().map_err(|e| io_error("fsync", &tmp, e))?;
        retry_on_full(reserve, || std::fs::rename(&tmp, &path))
            .map_err(|e| io_error("rename", &path, e))?;
        sync_dir(dir)
    }
}

/// Runs a repeatable write through `reserve` when there is one.
pub fn retry_on_full<T>(
    reserve: Option<&SpaceReserve>,
    op: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    match reserve {
        Some(r) => r.retry_on_full(op),
        None => {
            let mut op = op;
            op()
        }
    }
}

/// Makes creations, renames and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let meta = Meta {
            vote: Some(b"term 3 node 2".to_vec()),
            committed: None,
            purged: Some(vec![]),
            purged_index: 77,
        };
        let bytes = meta.encode();
        assert_eq!(Meta::decode(&bytes), Some(meta));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(Meta::decode(&bad), None, "flip at {i} not detected");
        }
        assert_eq!(Meta::decode(&bytes[..bytes.len() - 1]), None);
    }
}
