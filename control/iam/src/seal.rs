//! Secrets the cluster must be able to read back (S3 secrets for SigV4,
//! token-signing keys) are stored in the KV sealed with the cluster key:
//! XChaCha20-Poly1305 with a random 24-byte nonce, and the record's purpose
//! (for example `accesskey/PK...`) as associated data, so a sealed value
//! copied into another record does not open.
//!
//! The cluster key lives outside the KV: a 0600 file of 64 hex characters that
//! every node of a cluster shares (`iam.cluster_key_file`); `photon dev`
//! creates one in its data directory. Node-to-node Raft traffic proves
//! knowledge of it with [`ClusterKey::peer_proof`].

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::Mac;

/// Bytes of the cluster key.
pub const CLUSTER_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The cluster's sealing key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct ClusterKey {
    bytes: [u8; CLUSTER_KEY_BYTES],
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl Drop for ClusterKey {
    fn drop(&mut self) {
        // Best effort: the key does not linger in freed memory.
        self.bytes.fill(0);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadClusterKeyError {
    #[error("cannot read the cluster key file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the cluster key file {path}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster key file {path} must hold exactly {} hex characters", CLUSTER_KEY_BYTES * 2)]
    Format { path: String },
    #[error("the cluster key file {path} is readable by others (mode {mode:o}); chmod 600 it")]
    Permissions { path: String, mode: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenSealedError {
    #[error("sealed value is not hex or too short")]
    Format,
    #[error(
        "sealed value does not open with this cluster key (another cluster's key, or tampered)"
    )]
    Authentication,
}

impl ClusterKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; CLUSTER_KEY_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        Self { bytes }
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; CLUSTER_KEY_BYTES];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Self { bytes })
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// Reads the key at `path`; a file others can read is refused.
    pub fn load(path: &Path) -> Result<Self, LoadClusterKeyError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let metadata = std::fs::metadata(path).map_err(|source| LoadClusterKeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(LoadClusterKeyError::Permissions { path: shown, mode });
        }
        let text = std::fs::read_to_string(path).map_err(|source| LoadClusterKeyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_hex(&text).ok_or(LoadClusterKeyError::Format { path: shown })
    }

    /// Reads the key at `path`, or creates it (mode 0600) when it is absent.
    pub fn load_or_create(path: &Path) -> Result<Self, LoadClusterKeyError> {
        if path.exists() {
            return Self::load(path);
        }
        let key = Self::generate();
        key.write_new(path)
            .map_err(|source| LoadClusterKeyError::Create {
                path: path.display().to_string(),
                source,
            })?;
        Ok(key)
    }

    /// Writes the key to a new 0600 file (refuses to overwrite).
    pub fn write_new(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(format!("{}\n", self.to_hex()).as_bytes())?;
        file.sync_all()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }

    /// Seals `plaintext` for the record named `purpose`; hex out.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the OS random source failed");
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        hex::encode(out)
    }

    /// Opens a value [`seal`](Self::seal) made for the same `purpose`.
    pub fn open(&self, purpose: &str, sealed_hex: &str) -> Result<Vec<u8>, OpenSealedError> {
        let sealed = hex::decode(sealed_hex).map_err(|_| OpenSealedError::Format)?;
        if sealed.len() < NONCE_BYTES + 16 {
            return Err(OpenSealedError::Format);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| OpenSealedError::Authentication)
    }

    /// What a node presents to its Raft peers: HMAC-SHA256 of a fixed label
    /// under the cluster key (the key itself never leaves the node).
    pub fn peer_proof(&self) -> [u8; 32] {
        self.peer_mac().finalize().into_bytes().into()
    }

    /// Compares a presented proof with ours in constant time.
    pub fn check_peer_proof(&self, presented: &[u8]) -> bool {
        self.peer_mac().verify_slice(presented).is_ok()
    }

    fn peer_mac(&self) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.bytes)
            .expect("HMAC takes keys of any length");
        mac.update(b"photon raft peer v1");
        mac
    }
}

/// The purpose (associated data) of the cluster-key check record.
pub const KEY_CHECK_PURPOSE: &str = "cluster-key-check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"photon cluster key";

/// A fresh check record value for `key`.
pub fn key_check(key: &ClusterKey) -> String {
    key.seal(KEY_CHECK_PURPOSE, KEY_CHECK_PLAINTEXT)
}

/// Whether `sealed` (a check record) was made with `key`.
pub fn key_matches_check(key: &ClusterKey, sealed: &str) -> bool {
    key.open(KEY_CHECK_PURPOSE, sealed)
        .is_ok_and(|plain| plain == KEY_CHECK_PLAINTEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_purpose_binding() {
        let key = ClusterKey::generate();
        let sealed = key.seal("accesskey/PK1", b"secret");
        assert!(!sealed.contains(&hex::encode(b"secret")));
        assert_eq!(key.open("accesskey/PK1", &sealed).unwrap(), b"secret");
        assert_eq!(
            key.open("accesskey/PK2", &sealed),
            Err(OpenSealedError::Authentication)
        );
        assert_eq!(
            ClusterKey::generate().open("accesskey/PK1", &sealed),
            Err(OpenSealedError::Authentication)
        );
        assert_eq!(key.open("x", "zz"), Err(OpenSealedError::Format));
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            key.open("accesskey/PK1", std::str::from_utf8(&tampered).unwrap()),
            Err(OpenSealedError::Authentication)
        );
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("photon-iam-seal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.key");
        let key = ClusterKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = ClusterKey::load_or_create(&path).unwrap();
        assert_eq!(key.to_hex(), again.to_hex());
        assert!(format!("{key:?}").find(&key.to_hex()).is_none());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ClusterKey::load(&path),
            Err(LoadClusterKeyError::Permissions { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn peer_proof_and_key_check() {
        let key = ClusterKey::generate();
        let other = ClusterKey::generate();
        assert!(key.check_peer_proof(&key.peer_proof()));
        assert!(!key.check_peer_proof(&other.peer_proof()));
        assert!(!key.check_peer_proof(b"short"));
        let check = key_check(&key);
        assert!(key_matches_check(&key, &check));
        assert!(!key_matches_check(&other, &check));
    }
}
