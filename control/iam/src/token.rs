//! Access tokens: PASETO v4.public (Ed25519), made and checked with the
//! `pasetors` crate. The payload is [`Claims`] as JSON; the footer names the
//! signing key (`{"kid":"..."}`), and the signature covers both, so a token
//! cannot be moved to another key.
//!
//! This module checks signatures only. Expiry, revocation and whether the
//! principal still exists are the [`crate::Directory`]'s business, because
//! they depend on the cluster's current state.

use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use pasetors::Public;
use serde::{Deserialize, Serialize};

/// Longest token accepted for parsing: real ones are ~400 bytes; this bounds
/// the work a garbage token can cause.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// What a token says. Times are ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Principal name (user or service account).
    pub sub: String,
    /// Tenant of the principal.
    pub ten: String,
    /// Project the token acts in.
    pub prj: String,
    /// Issued at.
    pub iat: u64,
    /// Expires at.
    pub exp: u64,
    /// Token id (for revocation).
    pub jti: String,
    /// Set on attach tokens only: the one resource the token opens (like
    /// `volume/<id>`). Such a token is not a login token: `verify` refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub att: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Footer {
    kid: String,
}

/// Why a token was refused. The messages are what a client sees: they name
/// the reason and nothing more (no key material, no other tenant's names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed (not a PhotonCloud v4.public token)")]
    Malformed,
    #[error("token was signed by an unknown or retired key")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token was revoked")]
    Revoked,
    #[error("token's principal or tenant no longer exists")]
    PrincipalGone,
    #[error("token was issued before its principal signed out or changed credentials")]
    SignedOut,
    #[error("token is an attach token, not a login token (or the other way round)")]
    WrongKind,
}

/// A signing key with its secret in clear (only inside a node's memory).
pub struct KeyPair {
    pub id: String,
    secret: AsymmetricSecretKey<V4>,
    public: AsymmetricPublicKey<V4>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("id", &self.id).finish()
    }
}

impl KeyPair {
    pub fn generate(id: String) -> Self {
        let pair = AsymmetricKeyPair::<V4>::generate().expect("Ed25519 key generation failed");
        Self {
            id,
            secret: pair.secret,
            public: pair.public,
        }
    }

    /// From the 64-byte secret key (as [`secret_bytes`](Self::secret_bytes) gives).
    pub fn from_secret(id: String, secret: &[u8]) -> Option<Self> {
        let secret = AsymmetricSecretKey::<V4>::from(secret).ok()?;
        let public = AsymmetricPublicKey::<V4>::try_from(&secret).ok()?;
        Some(Self { id, secret, public })
    }

    pub fn secret_bytes(&self) -> &[u8] {
        self.secret.as_bytes()
    }

    pub fn public_bytes(&self) -> &[u8] {
        self.public.as_bytes()
    }

    /// Signs `claims` into a token string.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).expect("claims serialize");
        let footer = serde_json::to_vec(&Footer {
            kid: self.id.clone(),
        })
        .expect("footer serializes");
        PublicToken::sign(&self.secret, &payload, Some(&footer), None)
            .expect("signing a non-empty payload cannot fail")
    }
}

/// A public key that verifies tokens.
#[derive(Clone)]
pub struct VerifyingKey {
    public: AsymmetricPublicKey<V4>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyingKey")
    }
}

impl VerifyingKey {
    pub fn from_bytes(public: &[u8]) -> Option<Self> {
        Some(Self {
            public: AsymmetricPublicKey::<V4>::from(public).ok()?,
        })
    }
}

/// A parsed but not yet verified token.
pub struct Unverified {
    token: UntrustedToken<Public, V4>,
    key_id: String,
}

impl Unverified {
    /// Parses `token` and reads its footer's key id (not trusted until
    /// [`verify`](Self::verify) checks the signature over it).
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::Malformed);
        }
        let token =
            UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::Malformed)?;
        let footer: Footer =
            serde_json::from_slice(token.untrusted_footer()).map_err(|_| TokenError::Malformed)?;
        Ok(Self {
            token,
            key_id: footer.kid,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Checks the signature with `key` and returns the claims.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Claims, TokenError> {
        let trusted = PublicToken::verify(&key.public, &self.token, None, None)
            .map_err(|_| TokenError::BadSignature)?;
        serde_json::from_str(trusted.payload()).map_err(|_| TokenError::Malformed)
    }
}

/// A random token id (128 bits, hex).
pub fn new_token_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            sub: "alice".into(),
            ten: "acme".into(),
            prj: "web".into(),
            iat: 1,
            exp: 2,
            jti: new_token_id(),
            att: None,
        }
    }

    #[test]
    fn sign_then_verify() {
        let pair = KeyPair::generate("k1".into());
        let token = pair.sign(&claims());
        assert!(token.starts_with("v4.public."));
        let parsed = Unverified::parse(&token).unwrap();
        assert_eq!(parsed.key_id(), "k1");
        let key = VerifyingKey::from_bytes(pair.public_bytes()).unwrap();
        assert_eq!(parsed.verify(&key).unwrap().sub, "alice");
        let again = KeyPair::from_secret("k1".into(), pair.secret_bytes()).unwrap();
        assert_eq!(again.public_bytes(), pair.public_bytes());
    }

    #[test]
    fn wrong_key_tampering_and_garbage_are_refused() {
        let pair = KeyPair::generate("k1".into());
        let other = KeyPair::generate("k1".into());
        let token = pair.sign(&claims());
        let other_key = VerifyingKey::from_bytes(other.public_bytes()).unwrap();
        assert_eq!(
            Unverified::parse(&token).unwrap().verify(&other_key).err(),
            Some(TokenError::BadSignature)
        );
        // Flip one character of the payload part.
        let key = VerifyingKey::from_bytes(pair.public_bytes()).unwrap();
        let mut bytes = token.clone().into_bytes();
        let at = "v4.public.".len() + 5;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        let refused = Unverified::parse(&tampered).and_then(|t| t.verify(&key));
        assert!(refused.is_err());
        for garbage in [
            "",
            "v4.public.",
            "v4.local.abc",
            "v2.public.xx",
            "a.b.c.d.e",
        ] {
            assert_eq!(
                Unverified::parse(garbage).err(),
                Some(TokenError::Malformed)
            );
        }
        assert_eq!(
            Unverified::parse(&"x".repeat(TOKEN_BYTES_MAX + 1)).err(),
            Some(TokenError::Malformed)
        );
    }
}
