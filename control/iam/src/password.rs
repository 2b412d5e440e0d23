//! Hashing of passwords and service-account secrets with argon2id, and
//! generation of random secrets and identifiers.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), so
//! each carries its own parameters: raising the parameters later only affects
//! new hashes, and old ones still verify.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2id memory cost (OWASP's recommendation: 19 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;

/// argon2id passes over memory (OWASP's recommendation with 19 MiB).
pub const ARGON2_ITERATIONS: u32 = 2;

/// argon2id lanes (OWASP's recommendation; the crate computes lanes one after
/// the other anyway).
pub const ARGON2_PARALLELISM: u32 = 1;

/// Random salt per hash, so equal secrets hash differently.
pub const SALT_BYTES: usize = 16;

/// Longest secret accepted, checked before any hashing so that nobody can
/// make the server hash megabytes per login attempt.
pub const SECRET_BYTES_MAX: usize = 1024;

/// Shortest password accepted when setting one.
pub const PASSWORD_BYTES_MIN: usize = 8;

/// Random bytes of a [`generate_secret`] secret (256 bits).
pub const GENERATED_SECRET_BYTES: usize = 32;

/// Highest memory cost a stored hash may ask for when verifying. Stored hashes
/// are written by the control plane, but a corrupted or forged record must not
/// make a login allocate gigabytes. It leaves room to raise
/// [`ARGON2_MEMORY_KIB`] later.
pub const VERIFY_MEMORY_KIB_MAX: u32 = 256 * 1024;

/// Highest iteration count a stored hash may ask for when verifying, for the
/// same reason as [`VERIFY_MEMORY_KIB_MAX`].
pub const VERIFY_ITERATIONS_MAX: u32 = 16;

/// Highest lane count a stored hash may ask for when verifying.
pub const VERIFY_PARALLELISM_MAX: u32 = 16;

/// The parameters of every new hash. Evaluated at compile time, so invalid
/// constants fail the build rather than a login.
const PARAMS: Params = match Params::new(
    ARGON2_MEMORY_KIB,
    ARGON2_ITERATIONS,
    ARGON2_PARALLELISM,
    None,
) {
    Ok(params) => params,
    Err(_) => panic!("argon2 parameter constants are invalid"),
};

/// Hashed by [`verify_dummy`]'s hash. Any value does: nobody is meant to know
/// it matches, and matching it grants nothing.
const DUMMY_SECRET: &str = "photon-iam dummy secret for timing";

/// Salt of [`verify_dummy`]'s hash. Fixed, so building that hash needs no
/// randomness and cannot fail on it.
const DUMMY_SALT: [u8; SALT_BYTES] = [0x5a; SALT_BYTES];

#[derive(Debug, thiserror::Error)]
pub enum HashSecretError {
    #[error("the secret must be at least {PASSWORD_BYTES_MIN} bytes long")]
    TooShort,
    #[error("the secret must be at most {SECRET_BYTES_MAX} bytes long")]
    TooLong,
    // The getrandom and argon2 error types implement `std::error::Error`
    // only with features this workspace does not enable, so they cannot be a
    // `#[source]` and go into the message instead.
    #[error("could not read random bytes for the salt: {0}")]
    Random(getrandom::Error),
    #[error("argon2 could not hash the secret: {0}")]
    Argon2(argon2::password_hash::Error),
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

fn hash_with_salt(secret: &str, salt: &[u8]) -> Result<String, HashSecretError> {
    let salt = SaltString::encode_b64(salt).map_err(HashSecretError::Argon2)?;
    let hash = hasher()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(HashSecretError::Argon2)?;
    Ok(hash.to_string())
}

/// Hashes a password or secret with argon2id and a random salt, giving a PHC
/// string to store. Refuses secrets shorter than [`PASSWORD_BYTES_MIN`] or
/// longer than [`SECRET_BYTES_MAX`] bytes; no error ever holds the secret.
pub fn hash_secret(secret: &str) -> Result<String, HashSecretError> {
    if secret.len() < PASSWORD_BYTES_MIN {
        return Err(HashSecretError::TooShort);
    }
    if secret.len() > SECRET_BYTES_MAX {
        return Err(HashSecretError::TooLong);
    }
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(HashSecretError::Random)?;
    hash_with_salt(secret, &salt)
}

/// Whether `secret` matches the PHC string `phc`. False for a secret longer
/// than [`SECRET_BYTES_MAX`], for a malformed PHC string, for any algorithm
/// other than argon2id and for parameters beyond the `VERIFY_*_MAX` limits;
/// never panics. The final comparison is constant-time.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    if secret.len() > SECRET_BYTES_MAX {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > VERIFY_MEMORY_KIB_MAX
        || params.t_cost() > VERIFY_ITERATIONS_MAX
        || params.p_cost() > VERIFY_PARALLELISM_MAX
    {
        return false;
    }
    // The verifier takes algorithm, version and parameters from the hash.
    hasher().verify_password(secret.as_bytes(), &hash).is_ok()
}

/// Spends the time of a real [`verify_secret`] (same parameters, same length
/// check) against a fixed hash, and throws the answer away.
///
/// Call it when a login names a principal that does not exist: the reply then
/// takes as long as for a wrong password, so timing does not tell which names
/// exist. The fixed hash is computed on first use and kept; call this once at
/// start-up so that first use does not stand out either.
pub fn verify_dummy(secret: &str) {
    static DUMMY_HASH: OnceLock<String> = OnceLock::new();
    let phc = DUMMY_HASH.get_or_init(|| {
        // Hashing constants with valid parameters cannot fail; should it
        // anyway, an empty string makes the dummy cheap, which only weakens
        // the timing cover, never access.
        hash_with_salt(DUMMY_SECRET, &DUMMY_SALT).unwrap_or_default()
    });
    std::hint::black_box(verify_secret(secret, phc));
}

fn random_bytes(count: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; count];
    // Without the OS random source no secret or identifier can be made
    // safely, and there is nothing sensible to fall back to.
    if let Err(error) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random source failed: {error}");
    }
    bytes
}

/// A new random secret: [`GENERATED_SECRET_BYTES`] random bytes as lowercase
/// hex (64 characters). Used for service-account and S3 secrets.
///
/// # Panics
///
/// If the operating system's random source fails.
pub fn generate_secret() -> String {
    hex::encode(random_bytes(GENERATED_SECRET_BYTES))
}

/// A new random identifier: `prefix` followed by `random_bytes` random bytes
/// as uppercase hex (two characters per byte), e.g. `generate_id("PK", 9)`
/// for a 20-character access key id like `PK3F09A1C2B4D5E6F708`.
///
/// # Panics
///
/// If the operating system's random source fails.
pub fn generate_id(prefix: &str, random_bytes: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + 2 * random_bytes);
    id.push_str(prefix);
    id.push_str(&hex::encode_upper(self::random_bytes(random_bytes)));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "correct horse battery staple";

    #[test]
    fn round_trip() {
        let phc = hash_secret(PASSWORD).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_secret(PASSWORD, &phc));
    }

    #[test]
    fn wrong_password_is_refused() {
        let phc = hash_secret(PASSWORD).expect("hash");
        assert!(!verify_secret("correct horse battery stapl", &phc));
        assert!(!verify_secret("", &phc));
        assert!(!verify_secret(&PASSWORD.to_uppercase(), &phc));
    }

    #[test]
    fn malformed_phc_is_refused() {
        let phc = hash_secret(PASSWORD).expect("hash");
        let truncated = &phc[..phc.len() - 4];
        let other_algorithm = phc.replacen("argon2id", "argon2i", 1);
        let huge_memory = phc.replacen("m=19456", "m=4194304", 1);
        for bad in [
            "",
            "plaintext",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=x,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
            "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA",
            truncated,
            &other_algorithm,
            &huge_memory,
        ] {
            assert!(!verify_secret(PASSWORD, bad), "{bad:?}");
        }
    }

    #[test]
    fn too_short_and_too_long_are_refused() {
        let short = "a".repeat(PASSWORD_BYTES_MIN - 1);
        let error = hash_secret(&short).expect_err("too short");
        assert!(matches!(error, HashSecretError::TooShort));
        assert!(!error.to_string().contains(&short));

        let long = "b".repeat(SECRET_BYTES_MAX + 1);
        let error = hash_secret(&long).expect_err("too long");
        assert!(matches!(error, HashSecretError::TooLong));
        assert!(!error.to_string().contains("bbbb"));

        assert!(hash_secret(&"c".repeat(PASSWORD_BYTES_MIN)).is_ok());
    }

    #[test]
    fn too_long_secret_never_verifies() {
        let phc = hash_secret(PASSWORD).expect("hash");
        let long = "d".repeat(SECRET_BYTES_MAX + 1);
        assert!(!verify_secret(&long, &phc));
    }

    #[test]
    fn equal_secrets_hash_differently() {
        let first = hash_secret(PASSWORD).expect("hash");
        let second = hash_secret(PASSWORD).expect("hash");
        assert_ne!(first, second);
        assert!(verify_secret(PASSWORD, &first));
        assert!(verify_secret(PASSWORD, &second));
    }

    #[test]
    fn dummy_hash_uses_current_parameters() {
        let phc = hash_with_salt(DUMMY_SECRET, &DUMMY_SALT).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_secret(DUMMY_SECRET, &phc));
        verify_dummy(PASSWORD);
    }

    #[test]
    fn generated_secrets_are_random_hex() {
        let first = generate_secret();
        let second = generate_secret();
        assert_eq!(first.len(), 2 * GENERATED_SECRET_BYTES);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, second);
        // A generated secret is a valid password.
        let phc = hash_secret(&first).expect("hash");
        assert!(verify_secret(&first, &phc));
    }

    #[test]
    fn generated_ids_have_prefix_and_uppercase_hex() {
        let id = generate_id("PK", 9);
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("PK"));
        assert!(id[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        assert_ne!(generate_id("PK", 9), generate_id("PK", 9));
        assert_eq!(generate_id("SA", 0), "SA");
    }
}
