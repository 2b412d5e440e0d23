//! Signing requests (header auth, presigned URLs, chunked bodies), for clients and load generators.

use super::*;

// ---------------------------------------------------------------- signing

/// An access key pair to sign with.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a [u8],
}

/// Why [`sign_request`] or [`presign`] could not sign.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignRequestError {
    #[error("the request has no Host header")]
    MissingHost,
    #[error("the signing time is not between 1970 and 9999")]
    TimeOutOfRange,
    #[error("a presigned URL expires after 1 to {PRESIGNED_EXPIRES_MAX_S} seconds")]
    ExpiresOutOfRange,
    #[error("the access key id, region or payload hash cannot appear in a signature")]
    InvalidParameter,
    #[error("the request cannot be canonicalized")]
    Canonicalize(#[source] SigV4Error),
}

/// A header-signed request: the headers to add, and the seed of its chunk chain.
#[derive(Clone)]
pub struct SignedRequest {
    /// To add to the request, in this order: `x-amz-date`,
    /// `x-amz-content-sha256`, `authorization`.
    pub headers: Vec<(String, String)>,
    pub signature: [u8; 32],
    pub(super) context: ChunkContext,
}

impl SignedRequest {
    /// Signs the chunks of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` body.
    pub fn chunk_signer(&self) -> ChunkSigner {
        ChunkSigner {
            context: self.context.clone(),
            previous: self.signature,
        }
    }
}

pub(super) struct SigningSetup {
    pub(super) amz_date: String,
    pub(super) credential: Credential,
    pub(super) signing_key: [u8; 32],
    /// Lowercase, sorted, unique.
    pub(super) signed_headers: Vec<String>,
}

pub(super) fn signing_setup(
    req: &RequestParts,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    extra_headers: &[&str],
) -> Result<SigningSetup, SignRequestError> {
    let seconds = unix_seconds(time).ok_or(SignRequestError::TimeOutOfRange)?;
    let amz_date = format_amz_date(seconds);
    let credential = Credential {
        access_key_id: credentials.access_key_id.to_owned(),
        date: amz_date[..8].to_owned(),
        region: region.to_owned(),
    };
    // Sign exactly what the verifier accepts as a credential.
    let scope = format!("{}/{}", credential.access_key_id, credential.scope());
    parse_credential(&scope, Source::Header).map_err(|_| SignRequestError::InvalidParameter)?;
    let mut signed_headers: Vec<String> = req
        .headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .chain(extra_headers.iter().map(|name| (*name).to_owned()))
        .filter(|name| !UNSIGNABLE_HEADERS.contains(&name.as_str()))
        .collect();
    signed_headers.sort_unstable();
    signed_headers.dedup();
    if !signed_headers.iter().any(|n| n == "host") {
        return Err(SignRequestError::MissingHost);
    }
    let signing_key = signing_key(credentials.secret_access_key, &credential.date, region);
    Ok(SigningSetup {
        amz_date,
        credential,
        signing_key,
        signed_headers,
    })
}

/// Signs a request with an `Authorization` header as botocore's
/// `S3SigV4Auth` does: every header present is signed (hop-by-hop ones
/// and `user-agent` aside), plus `x-amz-date` and `x-amz-content-sha256`
/// (`content_sha256`: hex SHA-256, `UNSIGNED-PAYLOAD` or
/// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`). `req.headers` must hold `host`;
/// any `authorization`, `x-amz-date` or `x-amz-content-sha256` in it is replaced.
pub fn sign_request(
    req: &RequestParts,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    content_sha256: &str,
) -> Result<SignedRequest, SignRequestError> {
    if content_sha256.is_empty() || !content_sha256.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SignRequestError::InvalidParameter);
    }
    let replaced = ["authorization", "x-amz-date", "x-amz-content-sha256"];
    let kept: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .filter(|(name, _)| !replaced.iter().any(|r| name.eq_ignore_ascii_case(r)))
        .copied()
        .collect();
    let base = RequestParts {
        headers: &kept,
        ..*req
    };
    let setup = signing_setup(&base, credentials, region, time, &replaced[1..])?;
    let mut all = kept.clone();
    all.push(("x-amz-date", setup.amz_date.as_bytes()));
    all.push(("x-amz-content-sha256", content_sha256.as_bytes()));
    let full = RequestParts {
        headers: &all,
        ..*req
    };
    let canonical = canonical_request(&full, &setup.signed_headers, content_sha256, false)
        .map_err(SignRequestError::Canonicalize)?;
    let scope = setup.credential.scope();
    let signature = request_signature(&setup.signing_key, &setup.amz_date, &scope, &canonical);
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={}",
        setup.credential.access_key_id,
        setup.signed_headers.join(";"),
        hex::encode(signature)
    );
    Ok(SignedRequest {
        headers: vec![
            ("x-amz-date".to_owned(), setup.amz_date.clone()),
            ("x-amz-content-sha256".to_owned(), content_sha256.to_owned()),
            ("authorization".to_owned(), authorization),
        ],
        signature,
        context: ChunkContext {
            signing_key: setup.signing_key,
            scope,
            amz_date: setup.amz_date,
        },
    })
}

/// Presigns a request as botocore's `S3SigV4QueryAuth` does and returns the
/// query string to send (without `?`): the request's own parameters,
/// re-encoded, then `X-Amz-Algorithm`, `-Credential`, `-Date`, `-Expires`,
/// `-SignedHeaders` and `-Signature`. Every header in `req.headers` is
/// signed; `host` must be there.
pub fn presign(
    req: &RequestParts,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    expires_s: u64,
) -> Result<String, SignRequestError> {
    if !(1..=PRESIGNED_EXPIRES_MAX_S).contains(&expires_s) {
        return Err(SignRequestError::ExpiresOutOfRange);
    }
    let setup = signing_setup(req, credentials, region, time, &[])?;
    let scope = setup.credential.scope();
    let mut query = String::with_capacity(req.query.len() + 256);
    for (name, value) in decode_query(req.query).map_err(SignRequestError::Canonicalize)? {
        query.push_str(&uri_encode(&name, true));
        query.push('=');
        query.push_str(&uri_encode(&value, true));
        query.push('&');
    }
    let credential = format!("{}/{scope}", setup.credential.access_key_id);
    query.push_str(&format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={}&X-Amz-Date={}&X-Amz-Expires={expires_s}&X-Amz-SignedHeaders={}",
        uri_encode(credential.as_bytes(), true),
        setup.amz_date,
        uri_encode(setup.signed_headers.join(";").as_bytes(), true),
    ));
    let payload_hash = match req.header_values("x-amz-content-sha256").next() {
        Some(value) => String::from_utf8_lossy(value).into_owned(),
        None => UNSIGNED_PAYLOAD.to_owned(),
    };
    let full = RequestParts {
        query: &query,
        ..*req
    };
    let canonical = canonical_request(&full, &setup.signed_headers, &payload_hash, true)
        .map_err(SignRequestError::Canonicalize)?;
    let signature = request_signature(&setup.signing_key, &setup.amz_date, &scope, &canonical);
    query.push_str("&X-Amz-Signature=");
    query.push_str(&hex::encode(signature));
    Ok(query)
}

/// A `SystemTime` from seconds since the Unix epoch, clamped to the last
/// second of year 9999 (adding more could overflow `SystemTime`).
pub fn system_time(unix_s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_s.min(UNIX_S_MAX))
}
