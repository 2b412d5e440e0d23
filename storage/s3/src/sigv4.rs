//! AWS Signature Version 4 as S3 speaks it: the `Authorization` header,
//! presigned URLs (query parameters), and `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
//! bodies whose chunks carry chained signatures.
//!
//! Everything here is free of I/O. The HTTP layer calls [`parse_auth`] to
//! learn the access key id, looks the secret up in IAM, then calls
//! [`verify`]. For a streamed body it builds a [`ChunkedDecoder`] from the
//! [`Verified`] result and feeds it the body as it arrives.
//!
//! Canonicalization follows S3, which differs from the other services: the
//! path is never normalized (`.`/`..`/`//` stay), each path byte is decoded
//! once and re-encoded with the AWS rule (unreserved `A-Za-z0-9-._~` kept,
//! `/` kept as the separator, everything else `%XX` uppercase); query names
//! and values are decoded (a `+` counts as a space, as form encoders send
//! it) and re-encoded with the same rule, `/` included, then sorted.
//!
//! [`sign_request`] and [`presign`] produce what botocore produces, for the
//! tests and for the load generator.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// `x-amz-content-sha256` value (and presigned payload hash) for a body that is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `x-amz-content-sha256` value for an aws-chunked body with chunk signatures.
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// Hex SHA-256 of the empty string.
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const CHUNK_ALGORITHM: &str = "AWS4-HMAC-SHA256-PAYLOAD";
const SERVICE: &str = "s3";
const TERMINATOR: &str = "aws4_request";
const SIGNATURE_PARAMETER: &[u8] = b"X-Amz-Signature";
const CHUNK_SIGNATURE_PREFIX: &[u8] = b";chunk-signature=";
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];
/// Headers botocore never signs (hop-by-hop, or rewritten by proxies).
const UNSIGNABLE_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

// Limits, all in one place.
/// How far a header-signed request's time may be from the server's clock.
pub const CLOCK_SKEW_MAX_S: u64 = 15 * 60;
/// The longest lifetime of a presigned URL (one week).
pub const PRESIGNED_EXPIRES_MAX_S: u64 = 604_800;
/// The longest `Authorization` header value accepted.
pub const AUTHORIZATION_BYTES_MAX: usize = 4096;
/// The most headers one signature may cover.
pub const SIGNED_HEADERS_MAX: usize = 64;
/// The longest access key id accepted.
pub const ACCESS_KEY_ID_BYTES_MAX: usize = 128;
/// The longest region name accepted.
pub const REGION_BYTES_MAX: usize = 64;
/// The most query parameters one request may carry.
pub const QUERY_PARAMETERS_MAX: usize = 512;
/// The longest aws-chunked chunk header line (`{hex};chunk-signature={64 hex}\r\n`).
pub const CHUNK_HEADER_BYTES_MAX: usize = 128;
/// The largest aws-chunked chunk.
pub const CHUNK_BYTES_MAX: u64 = 16 << 20;

/// 9999-12-31T23:59:59Z: the last time an `X-Amz-Date` can name.
const UNIX_S_MAX: u64 = 253_402_300_799;

type HmacSha256 = Hmac<Sha256>;
/// A decoded query parameter: name, value.
type QueryPair = (Vec<u8>, Vec<u8>);

/// A request as the HTTP layer received it.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// Raw path, still percent-encoded as received.
    pub path: &'a str,
    /// Raw query string, without the `?`.
    pub query: &'a str,
    /// Headers as received: any case, possibly repeated, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl<'a> RequestParts<'a> {
    fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The value of a header that must not repeat.
    fn single_header(&self, name: &'static str) -> Result<Option<&'a [u8]>, SigV4Error> {
        let mut values = self.header_values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(SigV4Error::InvalidHeader(name));
        }
        Ok(first)
    }
}

/// Why a request failed authentication. Each variant maps to one S3 error
/// code ([`SigV4Error::s3_code`]); messages never carry secrets or signatures.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    #[error("the authorization header is malformed: {0}")]
    AuthorizationHeaderMalformed(Cow<'static, str>),
    #[error("the authorization query parameters are malformed: {0}")]
    AuthorizationQueryParametersError(Cow<'static, str>),
    #[error(
        "the authorization mechanism you have provided is not supported; use AWS4-HMAC-SHA256"
    )]
    UnsupportedAuthorization,
    #[error("only one auth mechanism allowed: the X-Amz-Algorithm query parameter or the Authorization header")]
    MultipleAuthMechanisms,
    #[error("an anonymous request carries no signature to verify")]
    AnonymousRequest,
    #[error("the AWS access key id you provided does not exist in our records")]
    InvalidAccessKeyId,
    #[error("the request signature we calculated does not match the signature you provided")]
    SignatureDoesNotMatch,
    #[error("the difference between the request time and the server's time is too large")]
    RequestTimeTooSkewed,
    #[error("request has expired")]
    Expired,
    #[error("request is not valid yet")]
    NotYetValid,
    #[error("AWS authentication requires a valid Date or x-amz-date header")]
    MissingDate,
    #[error("the Date header must be signed")]
    DateNotSigned,
    #[error("signed header {0} is missing from the request")]
    MissingSignedHeader(String),
    #[error("there were headers present in the request which were not signed: {0}")]
    UnsignedHeader(String),
    #[error("missing required header for this request: x-amz-content-sha256")]
    MissingContentSha256,
    #[error("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value")]
    InvalidContentSha256,
    #[error("the provided x-amz-content-sha256 header does not match what was computed")]
    ContentSha256Mismatch,
    #[error("payload mode {0} is not implemented")]
    UnsupportedPayload(&'static str),
    #[error("header {0} is repeated or invalid")]
    InvalidHeader(&'static str),
    #[error("the request has more than {QUERY_PARAMETERS_MAX} query parameters")]
    TooManyQueryParameters,
    #[error("the body is not signed with STREAMING-AWS4-HMAC-SHA256-PAYLOAD")]
    NotStreaming,
    #[error("the chunk signature we calculated does not match the signature you provided")]
    ChunkSignatureMismatch,
    #[error("the aws-chunked body is malformed: {0}")]
    ChunkedBodyMalformed(&'static str),
    #[error("trailing headers in aws-chunked bodies are not supported")]
    TrailersUnsupported,
    #[error("you did not provide the number of bytes specified by x-amz-decoded-content-length")]
    IncompleteBody,
}

impl SigV4Error {
    /// The S3 error code to put in the XML reply.
    pub fn s3_code(&self) -> &'static str {
        use SigV4Error::*;
        match self {
            AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            SignatureDoesNotMatch | ChunkSignatureMismatch => "SignatureDoesNotMatch",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            AnonymousRequest | Expired | NotYetValid | MissingDate | DateNotSigned
            | UnsignedHeader(_) => "AccessDenied",
            MissingSignedHeader(_) => "MissingSecurityHeader",
            ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
            IncompleteBody => "IncompleteBody",
            MultipleAuthMechanisms | InvalidContentSha256 => "InvalidArgument",
            UnsupportedPayload(_) | TrailersUnsupported => "NotImplemented",
            UnsupportedAuthorization
            | MissingContentSha256
            | InvalidHeader(_)
            | TooManyQueryParameters
            | NotStreaming
            | ChunkedBodyMalformed(_) => "InvalidRequest",
        }
    }

    /// The HTTP status S3 answers with for [`Self::s3_code`].
    pub fn http_status(&self) -> u16 {
        match self.s3_code() {
            "AccessDenied"
            | "SignatureDoesNotMatch"
            | "RequestTimeTooSkewed"
            | "InvalidAccessKeyId" => 403,
            "NotImplemented" => 501,
            _ => 400,
        }
    }

    /// A message for the reply body; never contains secrets.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// The credential scope of a signature: `AKID/date/region/s3/aws4_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
}

impl Credential {
    /// `date/region/s3/aws4_request`, as it appears in the string to sign.
    pub fn scope(&self) -> String {
        format!("{}/{}/{SERVICE}/{TERMINATOR}", self.date, self.region)
    }
}

/// A syntactically valid `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub credential: Credential,
    /// Lowercase names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
}

/// Syntactically valid presigned-URL query parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedPresigned {
    pub credential: Credential,
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
    /// `X-Amz-Date`, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
    pub expires_s: u64,
}

/// How a request claims to be authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Header(ParsedAuthorization),
    Presigned(ParsedPresigned),
    Anonymous,
}

impl Auth {
    /// The access key id to look up in IAM before [`verify`]; `None` when anonymous.
    pub fn access_key_id(&self) -> Option<&str> {
        match self {
            Auth::Header(p) => Some(&p.credential.access_key_id),
            Auth::Presigned(p) => Some(&p.credential.access_key_id),
            Auth::Anonymous => None,
        }
    }
}

/// What the body must satisfy, from `x-amz-content-sha256`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadMode {
    Unsigned,
    /// The body must hash to this; the caller checks with [`PayloadMode::check_sha256`].
    Sha256([u8; 32]),
    /// An aws-chunked body: decode it with [`ChunkedDecoder`].
    StreamingSigned {
        decoded_length: Option<u64>,
    },
}

impl PayloadMode {
    /// Checks the SHA-256 of a body received in full.
    pub fn check_sha256(&self, body_sha256: &[u8; 32]) -> Result<(), SigV4Error> {
        match self {
            PayloadMode::Sha256(expected) if !constant_time_eq(expected, body_sha256) => {
                Err(SigV4Error::ContentSha256Mismatch)
            }
            _ => Ok(()),
        }
    }
}

/// A request whose signature checked out.
#[derive(Clone)]
pub struct Verified {
    pub access_key_id: String,
    pub payload: PayloadMode,
    /// The request's own signature: the seed of a chunk signature chain.
    pub seed_signature: [u8; 32],
    pub signing_key: [u8; 32],
    /// `date/region/s3/aws4_request`.
    pub scope: String,
    pub amz_date: String,
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("access_key_id", &self.access_key_id)
            .field("payload", &self.payload)
            .field("scope", &self.scope)
            .field("amz_date", &self.amz_date)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Header,
    Query,
}

fn malformed(source: Source, reason: impl Into<Cow<'static, str>>) -> SigV4Error {
    match source {
        Source::Header => SigV4Error::AuthorizationHeaderMalformed(reason.into()),
        Source::Query => SigV4Error::AuthorizationQueryParametersError(reason.into()),
    }
}

// ---------------------------------------------------------------- parsing

/// Finds how the request is authenticated and checks the syntax of its
/// credentials, so the caller can look the access key id up.
pub fn parse_auth(req: &RequestParts) -> Result<Auth, SigV4Error> {
    let mut authorization = req.header_values("authorization");
    let header = authorization.next();
    if authorization.next().is_some() {
        return Err(malformed(Source::Header, "repeated Authorization header"));
    }
    let query = decode_query(req.query)?;
    let has = |name: &[u8]| query.iter().any(|(n, _)| n == name);
    let presigned = has(b"X-Amz-Algorithm") || has(b"X-Amz-Credential") || has(SIGNATURE_PARAMETER);
    let version_2 = has(b"AWSAccessKeyId") && has(b"Signature");
    match (header, presigned || version_2) {
        (Some(_), true) => Err(SigV4Error::MultipleAuthMechanisms),
        (Some(value), false) => parse_authorization(value).map(Auth::Header),
        (None, true) if presigned => parse_presigned(&query).map(Auth::Presigned),
        (None, true) => Err(SigV4Error::UnsupportedAuthorization),
        (None, false) => Ok(Auth::Anonymous),
    }
}

fn parse_authorization(value: &[u8]) -> Result<ParsedAuthorization, SigV4Error> {
    let src = Source::Header;
    if value.len() > AUTHORIZATION_BYTES_MAX {
        return Err(malformed(src, "too long"));
    }
    let value = std::str::from_utf8(value).map_err(|_| malformed(src, "not UTF-8"))?;
    let value = value.trim_matches(is_space);
    let (algorithm, rest) = value.split_once(is_space).unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(SigV4Error::UnsupportedAuthorization);
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim_matches(is_space);
        let (key, component) = part
            .split_once('=')
            .ok_or_else(|| malformed(src, "components must be key=value"))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(malformed(src, "unknown component")),
        };
        if slot.replace(component).is_some() {
            return Err(malformed(src, "repeated component"));
        }
    }
    Ok(ParsedAuthorization {
        credential: parse_credential(
            credential.ok_or_else(|| malformed(src, "missing Credential"))?,
            src,
        )?,
        signed_headers: parse_signed_headers(
            signed_headers.ok_or_else(|| malformed(src, "missing SignedHeaders"))?,
            src,
        )?,
        signature: parse_signature(
            signature.ok_or_else(|| malformed(src, "missing Signature"))?,
            src,
        )?,
    })
}

fn parse_presigned(query: &[QueryPair]) -> Result<ParsedPresigned, SigV4Error> {
    let src = Source::Query;
    let param = |name: &'static str| -> Result<&str, SigV4Error> {
        let mut values = query.iter().filter(|(n, _)| n == name.as_bytes());
        let (_, value) = values
            .next()
            .ok_or_else(|| malformed(src, format!("{name} is missing")))?;
        if values.next().is_some() {
            return Err(malformed(src, format!("{name} is repeated")));
        }
        std::str::from_utf8(value).map_err(|_| malformed(src, format!("{name} is not UTF-8")))
    };
    if param("X-Amz-Algorithm")? != ALGORITHM {
        return Err(malformed(
            src,
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        ));
    }
    let credential = parse_credential(param("X-Amz-Credential")?, src)?;
    let amz_date = param("X-Amz-Date")?;
    if parse_amz_date(amz_date).is_none() {
        return Err(malformed(
            src,
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        ));
    }
    let expires = param("X-Amz-Expires")?;
    let expires_s = parse_decimal(expires)
        .filter(|s| (1..=PRESIGNED_EXPIRES_MAX_S).contains(s))
        .ok_or_else(|| malformed(src, "X-Amz-Expires must be between 1 and 604800 seconds"))?;
    Ok(ParsedPresigned {
        credential,
        signed_headers: parse_signed_headers(param("X-Amz-SignedHeaders")?, src)?,
        signature: parse_signature(param("X-Amz-Signature")?, src)?,
        amz_date: amz_date.to_owned(),
        expires_s,
    })
}

fn parse_credential(value: &str, src: Source) -> Result<Credential, SigV4Error> {
    let mut parts = value.split('/');
    let (Some(key), Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(malformed(
            src,
            "the Credential must be AKID/date/region/s3/aws4_request",
        ));
    };
    if key.is_empty()
        || key.len() > ACCESS_KEY_ID_BYTES_MAX
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed(src, "invalid access key id"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(src, "invalid credential date"));
    }
    if region.is_empty()
        || region.len() > REGION_BYTES_MAX
        || !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(malformed(src, "invalid region"));
    }
    if service != SERVICE {
        return Err(malformed(
            src,
            "incorrect service; this endpoint belongs to \"s3\"",
        ));
    }
    if terminator != TERMINATOR {
        return Err(malformed(
            src,
            "the credential terminator must be \"aws4_request\"",
        ));
    }
    Ok(Credential {
        access_key_id: key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
    })
}

fn parse_signed_headers(value: &str, src: Source) -> Result<Vec<String>, SigV4Error> {
    let mut names: Vec<String> = Vec::new();
    for name in value.split(';') {
        if names.len() == SIGNED_HEADERS_MAX {
            return Err(malformed(src, "too many signed headers"));
        }
        if name.is_empty() || !name.bytes().all(is_lowercase_token) {
            return Err(malformed(
                src,
                "signed header names must be lowercase tokens",
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(malformed(src, "repeated signed header"));
        }
        names.push(name.to_owned());
    }
    if !names.iter().any(|n| n == "host") {
        return Err(malformed(src, "the host header must be signed"));
    }
    Ok(names)
}

fn parse_signature(value: &str, src: Source) -> Result<[u8; 32], SigV4Error> {
    parse_hex32(value.as_bytes())
        .ok_or_else(|| malformed(src, "the signature must be 64 hex digits"))
}

fn parse_hex32(value: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).ok()?;
    Some(out)
}

fn parse_decimal(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_lowercase_token(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ----------------------------------------------------------- verification

/// Checks a request's signature against `secret`. `region` is this
/// endpoint's region, or `"*"` to accept any.
pub fn verify(
    req: &RequestParts,
    auth: &Auth,
    secret: &[u8],
    now: SystemTime,
    region: &str,
) -> Result<Verified, SigV4Error> {
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match auth {
        Auth::Header(p) => verify_header(req, p, secret, now_s, region),
        Auth::Presigned(p) => verify_presigned(req, p, secret, now_s, region),
        Auth::Anonymous => Err(SigV4Error::AnonymousRequest),
    }
}

fn verify_header(
    req: &RequestParts,
    p: &ParsedAuthorization,
    secret: &[u8],
    now_s: u64,
    region: &str,
) -> Result<Verified, SigV4Error> {
    let src = Source::Header;
    check_region(&p.credential, region, src)?;
    let (amz_date, request_s) = header_request_time(req, &p.signed_headers)?;
    check_scope_date(&p.credential, &amz_date, src)?;
    if now_s.abs_diff(request_s) > CLOCK_SKEW_MAX_S {
        return Err(SigV4Error::RequestTimeTooSkewed);
    }
    check_signed_headers_present(req, &p.signed_headers)?;
    check_amz_headers_signed(req, &p.signed_headers, src)?;
    let content = req
        .single_header("x-amz-content-sha256")?
        .ok_or(SigV4Error::MissingContentSha256)?;
    let content = std::str::from_utf8(content).map_err(|_| SigV4Error::InvalidContentSha256)?;
    let payload = payload_mode(req, content)?;
    let check = SignatureCheck {
        credential: &p.credential,
        signed_headers: &p.signed_headers,
        signature: &p.signature,
        payload_hash: content,
        amz_date,
        source: src,
    };
    check.run(req, secret, payload)
}

fn verify_presigned(
    req: &RequestParts,
    p: &ParsedPresigned,
    secret: &[u8],
    now_s: u64,
    region: &str,
) -> Result<Verified, SigV4Error> {
    let src = Source::Query;
    check_region(&p.credential, region, src)?;
    check_scope_date(&p.credential, &p.amz_date, src)?;
    let request_s =
        parse_amz_date(&p.amz_date).ok_or_else(|| malformed(src, "invalid X-Amz-Date"))?;
    if request_s > now_s.saturating_add(CLOCK_SKEW_MAX_S) {
        return Err(SigV4Error::NotYetValid);
    }
    if now_s > request_s.saturating_add(p.expires_s) {
        return Err(SigV4Error::Expired);
    }
    check_signed_headers_present(req, &p.signed_headers)?;
    check_amz_headers_signed(req, &p.signed_headers, src)?;
    // A presigned URL does not know its body: the payload is unsigned
    // unless the client sent x-amz-content-sha256, which then is signed
    // as the canonical request's payload hash.
    let content = match req.single_header("x-amz-content-sha256")? {
        Some(v) => std::str::from_utf8(v).map_err(|_| SigV4Error::InvalidContentSha256)?,
        None => UNSIGNED_PAYLOAD,
    };
    let payload = payload_mode(req, content)?;
    let check = SignatureCheck {
        credential: &p.credential,
        signed_headers: &p.signed_headers,
        signature: &p.signature,
        payload_hash: content,
        amz_date: p.amz_date.clone(),
        source: src,
    };
    check.run(req, secret, payload)
}

struct SignatureCheck<'p> {
    credential: &'p Credential,
    signed_headers: &'p [String],
    signature: &'p [u8; 32],
    payload_hash: &'p str,
    amz_date: String,
    source: Source,
}

impl SignatureCheck<'_> {
    fn run(
        self,
        req: &RequestParts,
        secret: &[u8],
        payload: PayloadMode,
    ) -> Result<Verified, SigV4Error> {
        let presigned = self.source == Source::Query;
        let canonical = canonical_request(req, self.signed_headers, self.payload_hash, presigned)?;
        let scope = self.credential.scope();
        let signing_key = signing_key(secret, &self.credential.date, &self.credential.region);
        let expected = request_signature(&signing_key, &self.amz_date, &scope, &canonical);
        if !constant_time_eq(&expected, self.signature) {
            return Err(SigV4Error::SignatureDoesNotMatch);
        }
        Ok(Verified {
            access_key_id: self.credential.access_key_id.clone(),
            payload,
            seed_signature: expected,
            signing_key,
            scope,
            amz_date: self.amz_date,
        })
    }
}

fn check_region(credential: &Credential, region: &str, src: Source) -> Result<(), SigV4Error> {
    if region == "*" || credential.region == region {
        return Ok(());
    }
    Err(malformed(
        src,
        format!(
            "the region '{}' is wrong; expecting '{region}'",
            credential.region
        ),
    ))
}

fn check_scope_date(
    credential: &Credential,
    amz_date: &str,
    src: Source,
) -> Result<(), SigV4Error> {
    if amz_date.get(..8) == Some(credential.date.as_str()) {
        return Ok(());
    }
    Err(malformed(
        src,
        "invalid credential date: it is not the same as X-Amz-Date",
    ))
}

/// The request time of a header-signed request: `x-amz-date`, or else the
/// `Date` header, which then must be signed.
fn header_request_time(req: &RequestParts, signed: &[String]) -> Result<(String, u64), SigV4Error> {
    if let Some(value) = req.single_header("x-amz-date")? {
        let value = std::str::from_utf8(value).map_err(|_| SigV4Error::MissingDate)?;
        let seconds = parse_amz_date(value).ok_or(SigV4Error::MissingDate)?;
        return Ok((value.to_owned(), seconds));
    }
    let value = req.single_header("date")?.ok_or(SigV4Error::MissingDate)?;
    if !signed.iter().any(|n| n == "date") {
        return Err(SigV4Error::DateNotSigned);
    }
    let seconds = parse_http_date(value).ok_or(SigV4Error::MissingDate)?;
    Ok((format_amz_date(seconds), seconds))
}

fn check_signed_headers_present(req: &RequestParts, signed: &[String]) -> Result<(), SigV4Error> {
    match signed
        .iter()
        .find(|name| req.header_values(name).next().is_none())
    {
        Some(name) => Err(SigV4Error::MissingSignedHeader(name.clone())),
        None => Ok(()),
    }
}

/// S3 requires every `x-amz-*` header to be signed. A presigned URL may
/// carry an unsigned `x-amz-content-sha256`: it is signed as the payload hash.
fn check_amz_headers_signed(
    req: &RequestParts,
    signed: &[String],
    src: Source,
) -> Result<(), SigV4Error> {
    for (name, _) in req.headers {
        let is_amz = name
            .as_bytes()
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"x-amz-"));
        if !is_amz || signed.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            continue;
        }
        if src == Source::Query && name.eq_ignore_ascii_case("x-amz-content-sha256") {
            continue;
        }
        return Err(SigV4Error::UnsignedHeader(name.to_ascii_lowercase()));
    }
    Ok(())
}

fn payload_mode(req: &RequestParts, content: &str) -> Result<PayloadMode, SigV4Error> {
    match content {
        UNSIGNED_PAYLOAD => Ok(PayloadMode::Unsigned),
        STREAMING_PAYLOAD => {
            let decoded_length = match req.single_header("x-amz-decoded-content-length")? {
                None => None,
                Some(v) => Some(
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(parse_decimal)
                        .ok_or(SigV4Error::InvalidHeader("x-amz-decoded-content-length"))?,
                ),
            };
            Ok(PayloadMode::StreamingSigned { decoded_length })
        }
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Err(SigV4Error::UnsupportedPayload(
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        )),
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Err(SigV4Error::UnsupportedPayload(
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        )),
        _ if content.starts_with("STREAMING-") => {
            Err(SigV4Error::UnsupportedPayload("STREAMING-*"))
        }
        _ => parse_hex32(content.as_bytes())
            .map(PayloadMode::Sha256)
            .ok_or(SigV4Error::InvalidContentSha256),
    }
}

// ------------------------------------------------------- canonicalization

/// The canonical request S3 signs: method, canonical path, canonical
/// query (without `X-Amz-Signature` when `presigned`), canonical headers,
/// signed header list and payload hash, joined by newlines.
pub fn canonical_request(
    req: &RequestParts,
    signed_headers: &[String],
    payload_hash: &str,
    presigned: bool,
) -> Result<Vec<u8>, SigV4Error> {
    check_signed_headers_present(req, signed_headers)?;
    let mut out = Vec::with_capacity(256 + req.path.len() + req.query.len());
    out.extend_from_slice(req.method.as_bytes());
    out.push(b'\n');
    canonical_path_into(&mut out, req.path);
    out.push(b'\n');
    canonical_query_into(&mut out, req.query, presigned)?;
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in req.header_values(name).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            trim_all_into(&mut out, value);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        out.extend_from_slice(name.as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    Ok(out)
}

/// Decodes each byte of the raw path once and re-encodes it; raw `/` stays
/// the separator, a decoded `%2F` stays encoded.
fn canonical_path_into(out: &mut Vec<u8>, path: &str) {
    if path.is_empty() {
        out.push(b'/');
        return;
    }
    let raw = path.as_bytes();
    let mut at = 0;
    while at < raw.len() {
        let (byte, used) = decode_at(raw, at, false);
        if used == 1 && byte == b'/' {
            out.push(b'/');
        } else {
            encode_byte_into(out, byte, true);
        }
        at += used;
    }
}

fn canonical_query_into(out: &mut Vec<u8>, query: &str, presigned: bool) -> Result<(), SigV4Error> {
    let mut pairs: Vec<(String, String)> = decode_query(query)?
        .into_iter()
        .filter(|(name, _)| !(presigned && name == SIGNATURE_PARAMETER))
        .map(|(name, value)| (uri_encode(&name, true), uri_encode(&value, true)))
        .collect();
    pairs.sort_unstable();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
    Ok(())
}

/// Splits a raw query into decoded `(name, value)` pairs, in order; empty
/// pieces (`a&&b`) are skipped and a missing `=` means an empty value.
fn decode_query(query: &str) -> Result<Vec<QueryPair>, SigV4Error> {
    let mut pairs = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        if pairs.len() == QUERY_PARAMETERS_MAX {
            return Err(SigV4Error::TooManyQueryParameters);
        }
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        pairs.push((
            percent_decode(name.as_bytes()),
            percent_decode(value.as_bytes()),
        ));
    }
    Ok(pairs)
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        let (byte, used) = decode_at(raw, at, true);
        out.push(byte);
        at += used;
    }
    out
}

/// Decodes one byte at `at`: `%XX` when well formed (a malformed `%` is
/// taken literally), `+` as a space in queries. Returns the byte and the
/// number of raw bytes used.
fn decode_at(raw: &[u8], at: usize, plus_is_space: bool) -> (u8, usize) {
    let byte = raw[at];
    if byte == b'%' {
        if let (Some(high), Some(low)) = (
            raw.get(at + 1).and_then(|b| hex_value(*b)),
            raw.get(at + 2).and_then(|b| hex_value(*b)),
        ) {
            return (high << 4 | low, 3);
        }
    }
    if byte == b'+' && plus_is_space {
        return (b' ', 1);
    }
    (byte, 1)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The AWS URI encoding: unreserved `A-Za-z0-9-._~` kept, `/` kept unless
/// `encode_slash`, everything else `%XX` with uppercase hex.
pub fn uri_encode(input: &[u8], encode_slash: bool) -> String {
    let mut out = Vec::with_capacity(input.len() * 3);
    for &b in input {
        encode_byte_into(&mut out, b, encode_slash);
    }
    // Only ASCII was written.
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_byte_into(out: &mut Vec<u8>, b: u8, encode_slash: bool) {
    const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (b == b'/' && !encode_slash) {
        out.push(b);
    } else {
        out.extend_from_slice(&[
            b'%',
            HEX_UPPER[usize::from(b >> 4)],
            HEX_UPPER[usize::from(b & 15)],
        ]);
    }
}

/// Trims a header value and folds each run of whitespace into one space.
fn trim_all_into(out: &mut Vec<u8>, value: &[u8]) {
    let mut words = value
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .filter(|w| !w.is_empty());
    if let Some(first) = words.next() {
        out.extend_from_slice(first);
    }
    for word in words {
        out.push(b' ');
        out.extend_from_slice(word);
    }
}

// ----------------------------------------------------------------- crypto

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of every length (longer ones are hashed first), so
    // this cannot fail whatever the input.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn signing_key(secret: &[u8], date: &str, region: &str) -> [u8; 32] {
    let date_key = hmac_sha256(&[b"AWS4".as_slice(), secret].concat(), date.as_bytes());
    let region_key = hmac_sha256(&date_key, region.as_bytes());
    let service_key = hmac_sha256(&region_key, SERVICE.as_bytes());
    hmac_sha256(&service_key, TERMINATOR.as_bytes())
}

fn request_signature(key: &[u8; 32], amz_date: &str, scope: &str, canonical: &[u8]) -> [u8; 32] {
    let canonical_hash = hex::encode(Sha256::digest(canonical));
    let string_to_sign = format!("{ALGORITHM}\n{amz_date}\n{scope}\n{canonical_hash}");
    hmac_sha256(key, string_to_sign.as_bytes())
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

// ------------------------------------------------------------------- time

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses `YYYYMMDDTHHMMSSZ` into seconds since the Unix epoch.
fn parse_amz_date(value: &str) -> Option<u64> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let number = |range: Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // Reject 20130231 and the like: the date must round-trip.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

/// Formats seconds since the Unix epoch as `YYYYMMDDTHHMMSSZ`.
fn format_amz_date(seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX / 2);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// An HTTP date (IMF-fixdate, RFC 850 or asctime); the `-0000`/`+0000`
/// zone Python's `formatdate` writes is read as GMT.
fn parse_http_date(value: &[u8]) -> Option<u64> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let value: Cow<str> = match value
        .strip_suffix(" -0000")
        .or_else(|| value.strip_suffix(" +0000"))
    {
        Some(stem) => format!("{stem} GMT").into(),
        None => value.into(),
    };
    let time = httpdate::parse_http_date(&value).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

fn unix_seconds(time: SystemTime) -> Option<u64> {
    let seconds = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    // Four-digit years only, as in X-Amz-Date.
    (seconds <= UNIX_S_MAX).then_some(seconds)
}

// -------------------------------------------------------- chunk signatures

#[derive(Clone)]
struct ChunkContext {
    signing_key: [u8; 32],
    scope: String,
    amz_date: String,
}

impl ChunkContext {
    fn signature(&self, previous: &[u8; 32], chunk_sha256: &[u8; 32]) -> [u8; 32] {
        let string_to_sign = format!(
            "{CHUNK_ALGORITHM}\n{}\n{}\n{}\n{EMPTY_SHA256_HEX}\n{}",
            self.amz_date,
            self.scope,
            hex::encode(previous),
            hex::encode(chunk_sha256)
        );
        hmac_sha256(&self.signing_key, string_to_sign.as_bytes())
    }
}

/// Checks the chained signatures of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
/// body, chunk by chunk, the final 0-byte chunk included.
#[derive(Clone)]
pub struct ChunkVerifier {
    context: ChunkContext,
    previous: [u8; 32],
}

impl ChunkVerifier {
    pub fn new(verified: &Verified) -> Self {
        ChunkVerifier {
            context: ChunkContext {
                signing_key: verified.signing_key,
                scope: verified.scope.clone(),
                amz_date: verified.amz_date.clone(),
            },
            previous: verified.seed_signature,
        }
    }

    /// Checks one chunk given its `chunk-signature` (64 hex digits) and data.
    pub fn verify_chunk(
        &mut self,
        chunk_signature_hex: &str,
        chunk_data: &[u8],
    ) -> Result<(), SigV4Error> {
        let signature = parse_hex32(chunk_signature_hex.as_bytes()).ok_or(
            SigV4Error::ChunkedBodyMalformed("the chunk signature must be 64 hex digits"),
        )?;
        self.verify_chunk_digest(&signature, &Sha256::digest(chunk_data).into())
    }

    /// Checks one chunk given its signature and the SHA-256 of its data, for
    /// callers that hash the data as it streams by.
    pub fn verify_chunk_digest(
        &mut self,
        signature: &[u8; 32],
        chunk_sha256: &[u8; 32],
    ) -> Result<(), SigV4Error> {
        let expected = self.context.signature(&self.previous, chunk_sha256);
        if !constant_time_eq(&expected, signature) {
            return Err(SigV4Error::ChunkSignatureMismatch);
        }
        self.previous = expected;
        Ok(())
    }
}

/// Signs the chunks of an aws-chunked body, for clients (tests, the load
/// generator). Built by [`SignedRequest::chunk_signer`].
#[derive(Clone)]
pub struct ChunkSigner {
    context: ChunkContext,
    previous: [u8; 32],
}

impl ChunkSigner {
    /// The signature of the next chunk (call with `&[]` for the final one).
    pub fn sign_chunk(&mut self, data: &[u8]) -> [u8; 32] {
        let signature = self
            .context
            .signature(&self.previous, &Sha256::digest(data).into());
        self.previous = signature;
        signature
    }

    /// The whole aws-chunked body for `data`, in chunks of `chunk_bytes`
    /// (at least 1), final 0-byte chunk included.
    pub fn encode_body(&mut self, data: &[u8], chunk_bytes: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 100 * (data.len() / chunk_bytes.max(1) + 2));
        for chunk in data.chunks(chunk_bytes.max(1)).chain([&[][..]]) {
            let signature = self.sign_chunk(chunk);
            out.extend_from_slice(
                format!(
                    "{:x};chunk-signature={}\r\n",
                    chunk.len(),
                    hex::encode(signature)
                )
                .as_bytes(),
            );
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// The encoded length (`Content-Length`) of `data_bytes` sent in chunks of
/// `chunk_bytes`, as [`ChunkSigner::encode_body`] writes it.
pub fn encoded_chunked_length(data_bytes: u64, chunk_bytes: u64) -> u64 {
    let chunk_bytes = chunk_bytes.max(1);
    let overhead = |size: u64| -> u64 {
        let hex_digits = u64::from((64 - size.leading_zeros()).div_ceil(4).max(1));
        hex_digits + CHUNK_SIGNATURE_PREFIX.len() as u64 + 64 + 2 + 2
    };
    let full = data_bytes / chunk_bytes;
    let rest = data_bytes % chunk_bytes;
    let mut total = data_bytes + full * overhead(chunk_bytes) + overhead(0);
    if rest > 0 {
        total += overhead(rest);
    }
    total
}

// --------------------------------------------------------- chunked decoder

/// What [`ChunkedDecoder::push`] found in the bytes it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkEvent {
    /// Chunk data at this range of the slice passed to `push`. It is
    /// authenticated only once the chunk's [`ChunkEvent::ChunkVerified`]
    /// follows (S3 commits an object only whole, so keep it tentative).
    Data(Range<usize>),
    /// The chunk just ended and its signature is good.
    ChunkVerified { data_bytes: u64 },
    /// The final chunk and the body's end were read: the body is authentic.
    End,
}

#[derive(Clone, Debug)]
enum DecodeState {
    Header,
    Data { remaining: u64 },
    DataEnd { seen: usize },
    FinalEnd { seen: usize },
    Done,
    Failed(SigV4Error),
}

/// Incremental decoder of aws-chunked bodies
/// (`{hex size};chunk-signature={64 hex}\r\n{data}\r\n` ... `0;chunk-signature=...\r\n\r\n`),
/// fed arbitrary slices, checking each chunk's signature as it ends. Data is
/// hashed as it passes and never copied. After an error every call fails.
pub struct ChunkedDecoder {
    verifier: ChunkVerifier,
    state: DecodeState,
    line: [u8; CHUNK_HEADER_BYTES_MAX],
    line_bytes: usize,
    chunk_signature: [u8; 32],
    chunk_bytes: u64,
    chunk_hash: Sha256,
    decoded_bytes: u64,
    decoded_length: Option<u64>,
}

impl ChunkedDecoder {
    /// `decoded_length` is `x-amz-decoded-content-length`, when given.
    pub fn new(verifier: ChunkVerifier, decoded_length: Option<u64>) -> Self {
        ChunkedDecoder {
            verifier,
            state: DecodeState::Header,
            line: [0; CHUNK_HEADER_BYTES_MAX],
            line_bytes: 0,
            chunk_signature: [0; 32],
            chunk_bytes: 0,
            chunk_hash: Sha256::new(),
            decoded_bytes: 0,
            decoded_length,
        }
    }

    /// A decoder for a request verified with a streaming payload.
    pub fn from_verified(verified: &Verified) -> Result<Self, SigV4Error> {
        match verified.payload {
            PayloadMode::StreamingSigned { decoded_length } => {
                Ok(Self::new(ChunkVerifier::new(verified), decoded_length))
            }
            _ => Err(SigV4Error::NotStreaming),
        }
    }

    /// Data bytes decoded so far.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_bytes
    }

    /// Whether the body's end was read and verified.
    pub fn is_done(&self) -> bool {
        matches!(self.state, DecodeState::Done)
    }

    /// Decodes the next piece of the body, appending what it found to `events`.
    pub fn push(&mut self, input: &[u8], events: &mut Vec<ChunkEvent>) -> Result<(), SigV4Error> {
        if let DecodeState::Failed(error) = &self.state {
            return Err(error.clone());
        }
        let result = self.push_inner(input, events);
        if let Err(error) = &result {
            self.state = DecodeState::Failed(error.clone());
        }
        result
    }

    /// Call at the end of the body: fails unless the final chunk was read.
    pub fn finish(&self) -> Result<(), SigV4Error> {
        match &self.state {
            DecodeState::Done => Ok(()),
            DecodeState::Failed(error) => Err(error.clone()),
            _ => Err(SigV4Error::IncompleteBody),
        }
    }

    fn push_inner(&mut self, input: &[u8], events: &mut Vec<ChunkEvent>) -> Result<(), SigV4Error> {
        let mut at = 0;
        while at < input.len() {
            at += match self.state {
                DecodeState::Header => self.header_bytes(&input[at..], events)?,
                DecodeState::Data { remaining } => self.data_bytes(input, at, remaining, events)?,
                DecodeState::DataEnd { .. } | DecodeState::FinalEnd { .. } => {
                    self.line_end_byte(input[at], events)?;
                    1
                }
                DecodeState::Done => {
                    return Err(SigV4Error::ChunkedBodyMalformed(
                        "data after the final chunk",
                    ));
                }
                DecodeState::Failed(ref error) => return Err(error.clone()),
            };
        }
        Ok(())
    }

    /// Takes chunk header bytes up to the line's end; returns how many.
    fn header_bytes(
        &mut self,
        rest: &[u8],
        events: &mut Vec<ChunkEvent>,
    ) -> Result<usize, SigV4Error> {
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.append_line(&rest[..=end])?;
                self.header_complete(events)?;
                Ok(end + 1)
            }
            None => {
                self.append_line(rest)?;
                Ok(rest.len())
            }
        }
    }

    /// Hashes and reports the chunk data in `input[at..]`; returns how many
    /// bytes it took, and checks the chunk's signature once it is whole.
    fn data_bytes(
        &mut self,
        input: &[u8],
        at: usize,
        remaining: u64,
        events: &mut Vec<ChunkEvent>,
    ) -> Result<usize, SigV4Error> {
        let available = input.len() - at;
        let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
        self.chunk_hash.update(&input[at..at + take]);
        events.push(ChunkEvent::Data(at..at + take));
        let remaining = remaining - take as u64;
        self.state = DecodeState::Data { remaining };
        if remaining == 0 {
            let digest: [u8; 32] = self.chunk_hash.finalize_reset().into();
            self.verifier
                .verify_chunk_digest(&self.chunk_signature, &digest)?;
            events.push(ChunkEvent::ChunkVerified {
                data_bytes: self.chunk_bytes,
            });
            self.state = DecodeState::DataEnd { seen: 0 };
        }
        Ok(take)
    }

    /// One byte of the CRLF after chunk data or after the final chunk's
    /// header, where anything but CR means trailing headers.
    fn line_end_byte(&mut self, byte: u8, events: &mut Vec<ChunkEvent>) -> Result<(), SigV4Error> {
        let (seen, last) = match self.state {
            DecodeState::DataEnd { seen } => (seen, false),
            DecodeState::FinalEnd { seen } => (seen, true),
            _ => return Err(SigV4Error::ChunkedBodyMalformed("unexpected line end")),
        };
        if last && seen == 0 && byte != b'\r' {
            return Err(SigV4Error::TrailersUnsupported);
        }
        if byte != b"\r\n"[seen] {
            return Err(SigV4Error::ChunkedBodyMalformed(
                "a chunk must end with CRLF",
            ));
        }
        self.state = match (seen, last) {
            (0, false) => DecodeState::DataEnd { seen: 1 },
            (0, true) => DecodeState::FinalEnd { seen: 1 },
            (_, false) => DecodeState::Header,
            (_, true) => {
                events.push(ChunkEvent::End);
                DecodeState::Done
            }
        };
        Ok(())
    }

    fn append_line(&mut self, bytes: &[u8]) -> Result<(), SigV4Error> {
        let end = self.line_bytes + bytes.len();
        let slot =
            self.line
                .get_mut(self.line_bytes..end)
                .ok_or(SigV4Error::ChunkedBodyMalformed(
                    "chunk header line too long",
                ))?;
        slot.copy_from_slice(bytes);
        self.line_bytes = end;
        Ok(())
    }

    fn header_complete(&mut self, events: &mut Vec<ChunkEvent>) -> Result<(), SigV4Error> {
        let (size, signature) = parse_chunk_header(&self.line[..self.line_bytes])?;
        self.line_bytes = 0;
        let decoded = self.decoded_bytes.saturating_add(size);
        if self.decoded_length.is_some_and(|length| decoded > length) {
            return Err(SigV4Error::ChunkedBodyMalformed(
                "more data than x-amz-decoded-content-length",
            ));
        }
        self.decoded_bytes = decoded;
        if size > 0 {
            self.chunk_signature = signature;
            self.chunk_bytes = size;
            self.state = DecodeState::Data { remaining: size };
            return Ok(());
        }
        self.verifier
            .verify_chunk_digest(&signature, &EMPTY_SHA256)?;
        events.push(ChunkEvent::ChunkVerified { data_bytes: 0 });
        if self.decoded_length.is_some_and(|length| decoded < length) {
            return Err(SigV4Error::IncompleteBody);
        }
        self.state = DecodeState::FinalEnd { seen: 0 };
        Ok(())
    }
}

/// Parses `{hex size};chunk-signature={64 hex}\r\n`.
fn parse_chunk_header(line: &[u8]) -> Result<(u64, [u8; 32]), SigV4Error> {
    let malformed = SigV4Error::ChunkedBodyMalformed;
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or(malformed("chunk header must end with CRLF"))?;
    let split = line
        .iter()
        .position(|&b| b == b';')
        .ok_or(malformed("chunk header has no chunk-signature"))?;
    let (size_hex, rest) = line.split_at(split);
    let signature_hex = rest
        .strip_prefix(CHUNK_SIGNATURE_PREFIX)
        .ok_or(malformed("chunk header has no chunk-signature"))?;
    if size_hex.is_empty() || size_hex.len() > 16 {
        return Err(malformed("invalid chunk size"));
    }
    let size = size_hex.iter().try_fold(0u64, |acc, &b| {
        hex_value(b).map(|v| acc << 4 | u64::from(v))
    });
    let size = size.ok_or(malformed("invalid chunk size"))?;
    if size > CHUNK_BYTES_MAX {
        return Err(malformed("chunk larger than 16 MiB"));
    }
    let signature =
        parse_hex32(signature_hex).ok_or(malformed("the chunk signature must be 64 hex digits"))?;
    Ok((size, signature))
}

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
    context: ChunkContext,
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

struct SigningSetup {
    amz_date: String,
    credential: Credential,
    signing_key: [u8; 32],
    /// Lowercase, sorted, unique.
    signed_headers: Vec<String>,
}

fn signing_setup(
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 2013-05-24T00:00:00Z, the time of every AWS documentation example.
    const EXAMPLE_S: u64 = 1_369_353_600;

    /// An owned request, lent out as [`RequestParts`].
    #[derive(Clone, Debug)]
    struct Request {
        method: String,
        path: String,
        query: String,
        headers: Vec<(String, Vec<u8>)>,
    }

    impl Request {
        fn new(method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Self {
            Request {
                method: method.to_owned(),
                path: path.to_owned(),
                query: query.to_owned(),
                headers: headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                    .collect(),
            }
        }

        fn with<R>(&self, f: impl FnOnce(&RequestParts) -> R) -> R {
            let headers: Vec<(&str, &[u8])> = self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            f(&RequestParts {
                method: &self.method,
                path: &self.path,
                query: &self.query,
                headers: &headers,
            })
        }

        fn header(mut self, name: &str, value: &str) -> Self {
            self.headers
                .push((name.to_owned(), value.as_bytes().to_vec()));
            self
        }

        fn without(mut self, name: &str) -> Self {
            self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            self
        }

        fn set(self, name: &str, value: &str) -> Self {
            self.without(name).header(name, value)
        }

        fn verify_at(
            &self,
            secret: &[u8],
            now_s: u64,
            region: &str,
        ) -> Result<Verified, SigV4Error> {
            self.with(|r| verify(r, &parse_auth(r)?, secret, system_time(now_s), region))
        }

        fn canonical(&self, signed: &[&str], payload: &str, presigned: bool) -> String {
            let signed: Vec<String> = signed.iter().map(|s| (*s).to_owned()).collect();
            let bytes = self
                .with(|r| canonical_request(r, &signed, payload, presigned))
                .unwrap();
            String::from_utf8(bytes).unwrap()
        }

        /// Signs with [`sign_request`] and adds the headers it returns.
        fn signed(self, region: &str, at_s: u64, content: &str) -> (Self, SignedRequest) {
            let credentials = Credentials {
                access_key_id: AKID,
                secret_access_key: SECRET,
            };
            let signed = self
                .with(|r| sign_request(r, &credentials, region, system_time(at_s), content))
                .unwrap();
            let mut out = self;
            for (name, value) in &signed.headers {
                out = out.set(name, value);
            }
            (out, signed)
        }
    }

    fn signature_of(verified: &Verified) -> String {
        hex::encode(verified.seed_signature)
    }

    fn doc_authorization(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed_headers},Signature={signature}"
        )
    }

    // ------------------------------------------- AWS documentation vectors

    fn doc_get_object() -> Request {
        Request::new(
            "GET",
            "/test.txt",
            "",
            &[
                ("Host", "examplebucket.s3.amazonaws.com"),
                ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                ("x-amz-date", "20130524T000000Z"),
            ],
        )
    }

    #[test]
    fn doc_get_object_canonical_request_and_signature() {
        let signature = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let request = doc_get_object();
        let canonical = request.canonical(
            &["host", "range", "x-amz-content-sha256", "x-amz-date"],
            EMPTY_SHA256_HEX,
            false,
        );
        assert_eq!(
            canonical,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        let request = request.header(
            "Authorization",
            &doc_authorization("host;range;x-amz-content-sha256;x-amz-date", signature),
        );
        let verified = request.verify_at(SECRET, EXAMPLE_S, "us-east-1").unwrap();
        assert_eq!(signature_of(&verified), signature);
        assert_eq!(verified.access_key_id, AKID);
        assert_eq!(verified.scope, "20130524/us-east-1/s3/aws4_request");
        assert_eq!(verified.payload, PayloadMode::Sha256(EMPTY_SHA256));
        assert_eq!(
            verified.payload.check_sha256(&Sha256::digest(b"").into()),
            Ok(())
        );
    }

    #[test]
    fn sign_request_reproduces_the_doc_get_object_signature() {
        let request = doc_get_object()
            .without("x-amz-date")
            .without("x-amz-content-sha256");
        let (signed_request, signed) = request.signed("us-east-1", EXAMPLE_S, EMPTY_SHA256_HEX);
        assert_eq!(
            signed.headers[2].1,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(signed_request
            .verify_at(SECRET, EXAMPLE_S, "us-east-1")
            .is_ok());
    }

    #[test]
    fn doc_put_object_with_date_header_and_escaped_key() {
        let body = b"Welcome to Amazon S3.";
        let content = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
        assert_eq!(hex::encode(Sha256::digest(body)), content);
        let request = Request::new(
            "PUT",
            "/test%24file.text",
            "",
            &[
                ("Host", "examplebucket.s3.amazonaws.com"),
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", content),
            ],
        );
        let signed = "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class";
        let signature = "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd";
        let request = request.header("Authorization", &doc_authorization(signed, signature));
        let verified = request
            .verify_at(SECRET, EXAMPLE_S + 60, "us-east-1")
            .unwrap();
        assert_eq!(signature_of(&verified), signature);
        assert_eq!(
            verified.payload.check_sha256(&Sha256::digest(body).into()),
            Ok(())
        );
        assert_eq!(
            verified
                .payload
                .check_sha256(&Sha256::digest(b"Welcome to Amazon S3!").into()),
            Err(SigV4Error::ContentSha256Mismatch)
        );
        assert_eq!(
            SigV4Error::ContentSha256Mismatch.s3_code(),
            "XAmzContentSHA256Mismatch"
        );
    }

    #[test]
    fn doc_get_bucket_lifecycle_and_list_objects() {
        let signed = "host;x-amz-content-sha256;x-amz-date";
        for (query, signature) in [
            (
                "lifecycle",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
            (
                "max-keys=2&prefix=J",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
            (
                "prefix=J&max-keys=2",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ] {
            let request = Request::new(
                "GET",
                "/",
                query,
                &[
                    ("host", "examplebucket.s3.amazonaws.com"),
                    ("x-amz-date", "20130524T000000Z"),
                    ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                    ("authorization", &doc_authorization(signed, signature)),
                ],
            );
            let verified = request.verify_at(SECRET, EXAMPLE_S, "us-east-1").unwrap();
            assert_eq!(signature_of(&verified), signature, "{query}");
        }
    }

    const DOC_PRESIGNED_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    #[test]
    fn doc_presigned_get_object() {
        let request = Request::new(
            "GET",
            "/test.txt",
            DOC_PRESIGNED_QUERY,
            &[("Host", "examplebucket.s3.amazonaws.com")],
        );
        let auth = request.with(parse_auth).unwrap();
        assert_eq!(auth.access_key_id(), Some(AKID));
        let Auth::Presigned(parsed) = &auth else {
            panic!("not presigned: {auth:?}")
        };
        assert_eq!(parsed.expires_s, 86_400);
        let verified = request
            .verify_at(SECRET, EXAMPLE_S + 86_400, "us-east-1")
            .unwrap();
        assert_eq!(verified.payload, PayloadMode::Unsigned);
        assert_eq!(
            signature_of(&verified),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        assert_eq!(
            request
                .verify_at(SECRET, EXAMPLE_S + 86_401, "us-east-1")
                .unwrap_err(),
            SigV4Error::Expired
        );
        assert_eq!(SigV4Error::Expired.s3_code(), "AccessDenied");
        assert_eq!(
            request
                .verify_at(SECRET, EXAMPLE_S - CLOCK_SKEW_MAX_S - 1, "us-east-1")
                .unwrap_err(),
            SigV4Error::NotYetValid
        );
        // presign() writes the documented URL byte for byte.
        let credentials = Credentials {
            access_key_id: AKID,
            secret_access_key: SECRET,
        };
        let unsigned = Request::new(
            "GET",
            "/test.txt",
            "",
            &[("Host", "examplebucket.s3.amazonaws.com")],
        );
        let query = unsigned
            .with(|r| presign(r, &credentials, "us-east-1", system_time(EXAMPLE_S), 86_400))
            .unwrap();
        assert_eq!(query, DOC_PRESIGNED_QUERY);
    }

    const DOC_SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const DOC_CHUNK_SIGNATURES: [&str; 3] = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];

    fn doc_chunked_request() -> Request {
        Request::new(
            "PUT",
            "/examplebucket/chunkObject.txt",
            "",
            &[
                ("Host", "s3.amazonaws.com"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", STREAMING_PAYLOAD),
                ("Content-Encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", "66560"),
                ("Content-Length", "66824"),
            ],
        )
    }

    fn doc_chunked_body() -> Vec<u8> {
        let mut body = Vec::new();
        for (size, signature) in [(65_536usize, 0), (1024, 1), (0, 2)] {
            body.extend_from_slice(
                format!(
                    "{size:x};chunk-signature={}\r\n",
                    DOC_CHUNK_SIGNATURES[signature]
                )
                .as_bytes(),
            );
            body.extend(std::iter::repeat_n(b'a', size));
            body.extend_from_slice(b"\r\n");
        }
        body
    }

    fn doc_chunked_verified() -> Verified {
        let signed = "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;\
                      x-amz-decoded-content-length;x-amz-storage-class";
        let request =
            doc_chunked_request().header("Authorization", &doc_authorization(signed, DOC_SEED));
        request.verify_at(SECRET, EXAMPLE_S, "us-east-1").unwrap()
    }

    #[test]
    fn doc_chunked_upload_seed_and_chunk_signatures() {
        let verified = doc_chunked_verified();
        assert_eq!(signature_of(&verified), DOC_SEED);
        assert_eq!(
            verified.payload,
            PayloadMode::StreamingSigned {
                decoded_length: Some(66_560)
            }
        );
        let mut verifier = ChunkVerifier::new(&verified);
        assert_eq!(
            verifier.verify_chunk(DOC_CHUNK_SIGNATURES[0], &[b'a'; 65_536]),
            Ok(())
        );
        assert_eq!(
            verifier.verify_chunk(DOC_CHUNK_SIGNATURES[1], &[b'a'; 1024]),
            Ok(())
        );
        let mut replay = verifier.clone();
        assert_eq!(verifier.verify_chunk(DOC_CHUNK_SIGNATURES[2], &[]), Ok(()));
        // Chaining: a signature is good only in its place.
        assert_eq!(
            replay.verify_chunk(DOC_CHUNK_SIGNATURES[1], &[]),
            Err(SigV4Error::ChunkSignatureMismatch)
        );

        let body = doc_chunked_body();
        assert_eq!(body.len() as u64, encoded_chunked_length(66_560, 65_536));
        assert_eq!(body.len(), 66_824);
        let (data, events) = decode_in_pieces(&verified, &body, &[7, 86, 90, 65_536, 3]).unwrap();
        assert_eq!(data, vec![b'a'; 66_560]);
        assert_eq!(events.last(), Some(&ChunkEvent::End));
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, ChunkEvent::ChunkVerified { .. }))
                .count(),
            3
        );
    }

    #[test]
    fn sign_request_and_chunk_signer_reproduce_the_doc_chunked_upload() {
        let request = doc_chunked_request()
            .without("x-amz-date")
            .without("x-amz-content-sha256");
        let (request, signed) = request.signed("us-east-1", EXAMPLE_S, STREAMING_PAYLOAD);
        assert_eq!(hex::encode(signed.signature), DOC_SEED);
        let body = signed.chunk_signer().encode_body(&[b'a'; 66_560], 65_536);
        assert_eq!(body, doc_chunked_body());
        let verified = request.verify_at(SECRET, EXAMPLE_S, "us-east-1").unwrap();
        assert_eq!(
            decode_in_pieces(&verified, &body, &[1]).unwrap().0.len(),
            66_560
        );
    }

    // ---------------------------------------------------- canonicalization

    #[test]
    fn canonical_path_is_decoded_once_and_reencoded() {
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("/bucket/a%20b", "/bucket/a%20b"),
            ("/bucket/a b", "/bucket/a%20b"),
            ("/b/a+b", "/b/a%2Bb"),
            ("/b/a%2Bb", "/b/a%2Bb"),
            ("/b/a~b", "/b/a~b"),
            ("/b/a%7Eb", "/b/a~b"),
            ("/b/a=b&c", "/b/a%3Db%26c"),
            ("/b/%d0%ba%D0%BB%D1%8E%D1%87", "/b/%D0%BA%D0%BB%D1%8E%D1%87"),
            ("/b/ключ", "/b/%D0%BA%D0%BB%D1%8E%D1%87"),
            ("/b/日本 😀", "/b/%E6%97%A5%E6%9C%AC%20%F0%9F%98%80"),
            ("/b/a%2Fb", "/b/a%2Fb"),
            ("/b//a/../c/./", "/b//a/../c/./"),
            ("/b/100%", "/b/100%25"),
            ("/b/%zz%4", "/b/%25zz%254"),
            ("/b/test$file.text", "/b/test%24file.text"),
        ];
        for (raw, expected) in cases {
            let canonical =
                Request::new("GET", raw, "", &[("host", "h")]).canonical(&["host"], "x", false);
            assert_eq!(canonical.lines().nth(1), Some(expected), "{raw:?}");
        }
    }

    #[test]
    fn canonical_query_is_decoded_reencoded_and_sorted() {
        let cases = [
            ("", ""),
            ("uploads", "uploads="),
            ("acl=", "acl="),
            ("b=2&a=1&a=0", "a=0&a=1&b=2"),
            (
                "list-type=2&prefix=a b&delimiter=/",
                "delimiter=%2F&list-type=2&prefix=a%20b",
            ),
            ("prefix=a+b", "prefix=a%20b"),
            ("prefix=a%2Bb", "prefix=a%2Bb"),
            ("prefix=a%2bb", "prefix=a%2Bb"),
            ("x=%7e&y=~&z=a%3Db", "x=~&y=~&z=a%3Db"),
            ("a=1&&b=&", "a=1&b="),
            ("k=%E2%9C%93&k=%zz", "k=%25zz&k=%E2%9C%93"),
            ("a%20b=c", "a%20b=c"),
        ];
        for (raw, expected) in cases {
            let canonical =
                Request::new("GET", "/", raw, &[("host", "h")]).canonical(&["host"], "x", false);
            assert_eq!(canonical.lines().nth(2), Some(expected), "{raw:?}");
        }
        // A presigned request's canonical query leaves its signature out.
        let canonical = Request::new("GET", "/", "a=1&X-Amz-Signature=00", &[("host", "h")])
            .canonical(&["host"], "x", true);
        assert_eq!(canonical.lines().nth(2), Some("a=1"));
    }

    #[test]
    fn canonical_headers_fold_whitespace_and_join_repeats() {
        let request = Request::new(
            "PUT",
            "/",
            "",
            &[
                ("Host", "h"),
                ("X-Amz-Meta-Note", "  hello    big \t world  "),
                ("x-amz-meta-dup", "one"),
                ("X-AMZ-META-DUP", " two  three "),
                ("x-amz-meta-empty", ""),
            ],
        );
        let canonical = request.canonical(
            &[
                "host",
                "x-amz-meta-dup",
                "x-amz-meta-empty",
                "x-amz-meta-note",
            ],
            UNSIGNED_PAYLOAD,
            false,
        );
        assert_eq!(
            canonical,
            "PUT\n/\n\nhost:h\nx-amz-meta-dup:one,two three\nx-amz-meta-empty:\n\
             x-amz-meta-note:hello big world\n\nhost;x-amz-meta-dup;x-amz-meta-empty;x-amz-meta-note\n\
             UNSIGNED-PAYLOAD"
        );
        let missing =
            request.with(|r| canonical_request(r, &["host".into(), "range".into()], "x", false));
        assert_eq!(
            missing,
            Err(SigV4Error::MissingSignedHeader("range".into()))
        );
    }

    #[test]
    fn uri_encode_follows_the_aws_rule() {
        assert_eq!(uri_encode(b"a b/c+d~e=f", false), "a%20b/c%2Bd~e%3Df");
        assert_eq!(uri_encode(b"a b/c+d~e=f", true), "a%20b%2Fc%2Bd~e%3Df");
        assert_eq!(uri_encode(b"AZaz09-._~", true), "AZaz09-._~");
        assert_eq!(uri_encode(&[0, 0xff], true), "%00%FF");
    }

    #[test]
    fn amz_dates_parse_format_and_reject_nonsense() {
        assert_eq!(parse_amz_date("20130524T000000Z"), Some(EXAMPLE_S));
        assert_eq!(format_amz_date(EXAMPLE_S), "20130524T000000Z");
        assert_eq!(
            parse_amz_date("20000229T235959Z")
                .map(format_amz_date)
                .as_deref(),
            Some("20000229T235959Z")
        );
        for bad in [
            "20130231T000000Z",
            "20130524T240000Z",
            "20130524 000000Z",
            "2013052T000000Z",
            "19690101T000000Z",
            "2013O524T000000Z",
            "",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
        assert_eq!(
            parse_http_date(b"Fri, 24 May 2013 00:00:00 GMT"),
            Some(EXAMPLE_S)
        );
        assert_eq!(
            parse_http_date(b"Fri, 24 May 2013 00:00:00 -0000"),
            Some(EXAMPLE_S)
        );
        for days in [-1, 0, 59, 365 * 400, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    // ------------------------------------------------------------- parsing

    fn header_auth(value: &str) -> Result<Auth, SigV4Error> {
        Request::new("GET", "/", "", &[("host", "h"), ("Authorization", value)]).with(parse_auth)
    }

    #[test]
    fn authorization_header_tolerates_spacing_and_rejects_malformed() {
        let sig = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let credential = format!("Credential={AKID}/20130524/us-east-1/s3/aws4_request");
        for value in [
            format!("AWS4-HMAC-SHA256 {credential},SignedHeaders=host;x-amz-date,Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host;x-amz-date, Signature={sig}"),
            format!("  AWS4-HMAC-SHA256   {credential} ,  SignedHeaders=host;x-amz-date,\tSignature={sig} "),
            format!("AWS4-HMAC-SHA256 Signature={sig}, {credential}, SignedHeaders=host;x-amz-date"),
        ] {
            let auth = header_auth(&value).unwrap();
            let Auth::Header(parsed) = auth else { panic!("{value}") };
            assert_eq!(parsed.credential.access_key_id, AKID);
            assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
        }
        let malformed = [
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host"),
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature=abc"),
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature={sig}, Extra=1"),
            format!("AWS4-HMAC-SHA256 {credential}, {credential}, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=x-amz-date, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=Host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host;;a, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host;host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws5_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential={AKID}/2013052/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential={AKID}/20130524/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
            "AWS4-HMAC-SHA256".to_owned(),
            format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature={sig}{}", " ".repeat(5000)),
        ];
        for value in malformed {
            let error = header_auth(&value).unwrap_err();
            assert_eq!(
                error.s3_code(),
                "AuthorizationHeaderMalformed",
                "{value}: {error}"
            );
        }
        for value in [
            "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
            "Bearer x",
            "",
        ] {
            assert_eq!(
                header_auth(value).unwrap_err(),
                SigV4Error::UnsupportedAuthorization
            );
        }
    }

    #[test]
    fn auth_detection() {
        let none = Request::new("GET", "/", "list-type=2", &[("host", "h")]);
        assert_eq!(none.with(parse_auth), Ok(Auth::Anonymous));
        assert_eq!(
            none.verify_at(SECRET, 0, "*").unwrap_err().s3_code(),
            "AccessDenied"
        );
        let both = Request::new(
            "GET",
            "/",
            DOC_PRESIGNED_QUERY,
            &[("host", "h"), ("authorization", "AWS4-HMAC-SHA256 x")],
        );
        assert_eq!(
            both.with(parse_auth),
            Err(SigV4Error::MultipleAuthMechanisms)
        );
        let twice = Request::new(
            "GET",
            "/",
            "",
            &[("authorization", "a"), ("Authorization", "b")],
        );
        assert_eq!(
            twice.with(parse_auth).unwrap_err().s3_code(),
            "AuthorizationHeaderMalformed"
        );
        let v2 = Request::new(
            "GET",
            "/",
            "AWSAccessKeyId=A&Expires=1&Signature=x",
            &[("host", "h")],
        );
        assert_eq!(
            v2.with(parse_auth),
            Err(SigV4Error::UnsupportedAuthorization)
        );
    }

    #[test]
    fn presigned_parameters_are_checked() {
        let replace = |from: &str, to: &str| {
            Request::new(
                "GET",
                "/test.txt",
                &DOC_PRESIGNED_QUERY.replace(from, to),
                &[("host", "examplebucket.s3.amazonaws.com")],
            )
            .with(parse_auth)
        };
        for (from, to) in [
            ("X-Amz-Expires=86400", "X-Amz-Expires=0"),
            ("X-Amz-Expires=86400", "X-Amz-Expires=604801"),
            ("X-Amz-Expires=86400", "X-Amz-Expires=-1"),
            ("X-Amz-Expires=86400", "X-Amz-Expires=1e3"),
            ("X-Amz-Expires=86400&", ""),
            (
                "X-Amz-Algorithm=AWS4-HMAC-SHA256",
                "X-Amz-Algorithm=AWS4-HMAC-SHA1",
            ),
            ("X-Amz-Date=20130524T000000Z", "X-Amz-Date=20130524"),
            (
                "X-Amz-SignedHeaders=host",
                "X-Amz-SignedHeaders=host&X-Amz-SignedHeaders=host",
            ),
            ("%2Fs3%2F", "%2Fiam%2F"),
            ("X-Amz-Signature=aeeed9", "X-Amz-Signature=zzeed9"),
        ] {
            let error = replace(from, to).unwrap_err();
            assert_eq!(
                error.s3_code(),
                "AuthorizationQueryParametersError",
                "{to}: {error}"
            );
        }
        assert!(replace("X-Amz-Expires=86400", "X-Amz-Expires=604800").is_ok());
    }

    // -------------------------------------------------- verification rules

    fn signed_put(at_s: u64) -> Request {
        let request = Request::new(
            "PUT",
            "/bucket/dir/a%20b%2Bc~d.txt",
            "x-id=PutObject&tagging",
            &[
                ("Host", "s3.example.test:9000"),
                ("Content-Type", "text/plain"),
                ("X-Amz-Meta-Owner", "  Ada   Lovelace "),
                ("x-amz-storage-class", "STANDARD"),
                ("User-Agent", "test"),
            ],
        );
        request
            .signed(
                "eu-west-3",
                at_s,
                "0000000000000000000000000000000000000000000000000000000000000001",
            )
            .0
    }

    #[test]
    fn tampering_with_any_signed_part_fails() {
        let at_s = EXAMPLE_S + 12_345;
        let good = signed_put(at_s);
        let verified = good.verify_at(SECRET, at_s, "eu-west-3").unwrap();
        assert_eq!(
            verified.payload,
            PayloadMode::Sha256({
                let mut h = [0; 32];
                h[31] = 1;
                h
            })
        );
        // The unsigned User-Agent may change; nothing else may.
        assert!(good
            .clone()
            .set("User-Agent", "other")
            .verify_at(SECRET, at_s, "eu-west-3")
            .is_ok());
        let mut tampered: Vec<(&str, Request)> = vec![
            (
                "method",
                Request {
                    method: "POST".into(),
                    ..good.clone()
                },
            ),
            (
                "path",
                Request {
                    path: "/bucket/dir/a%20b%2Bc~e.txt".into(),
                    ..good.clone()
                },
            ),
            (
                "path encoding",
                Request {
                    path: "/bucket/dir/a%2520b%2Bc~d.txt".into(),
                    ..good.clone()
                },
            ),
            (
                "query",
                Request {
                    query: "x-id=PutObject&tagging=1".into(),
                    ..good.clone()
                },
            ),
            (
                "extra query",
                Request {
                    query: "x-id=PutObject&tagging&acl".into(),
                    ..good.clone()
                },
            ),
            ("host", good.clone().set("Host", "s3.example.test:9001")),
            (
                "content-type",
                good.clone().set("content-type", "text/html"),
            ),
            (
                "meta",
                good.clone().set("x-amz-meta-owner", "Charles Babbage"),
            ),
            (
                "meta repeated",
                good.clone().header("x-amz-meta-owner", "Charles"),
            ),
            (
                "unsigned amz header",
                good.clone().header("x-amz-acl", "public-read"),
            ),
            (
                "payload hash",
                good.clone().set("x-amz-content-sha256", &"0".repeat(64)),
            ),
            (
                "date",
                good.clone().set("x-amz-date", &format_amz_date(at_s + 1)),
            ),
            (
                "missing signed header",
                good.clone().without("content-type"),
            ),
        ];
        let authorization = good
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1
            .clone();
        let authorization = String::from_utf8(authorization).unwrap();
        let last = authorization.len() - 1;
        let flip = if authorization.as_bytes()[last] == b'0' {
            "1"
        } else {
            "0"
        };
        let bad_signature = format!("{}{flip}", &authorization[..last]);
        tampered.push((
            "signature",
            good.clone().set("authorization", &bad_signature),
        ));
        tampered.push((
            "scope region",
            good.clone().set(
                "authorization",
                &authorization.replace("eu-west-3", "us-east-1"),
            ),
        ));
        for (what, request) in &tampered {
            assert!(
                request.verify_at(SECRET, at_s, "*").is_err(),
                "{what} was not detected"
            );
        }
        assert_eq!(
            good.verify_at(b"another secret", at_s, "eu-west-3")
                .unwrap_err(),
            SigV4Error::SignatureDoesNotMatch
        );
        assert_eq!(SigV4Error::SignatureDoesNotMatch.http_status(), 403);
        let error = tampered[9].1.verify_at(SECRET, at_s, "*").unwrap_err();
        assert_eq!(
            (error.s3_code(), error.message().as_str()),
            (
                "AccessDenied",
                "there were headers present in the request which were not signed: x-amz-acl"
            )
        );
        let error = tampered[12].1.verify_at(SECRET, at_s, "*").unwrap_err();
        assert_eq!(error.s3_code(), "MissingSecurityHeader");
    }

    #[test]
    fn region_must_match_unless_any() {
        let at_s = EXAMPLE_S;
        let request = signed_put(at_s);
        assert!(request.verify_at(SECRET, at_s, "eu-west-3").is_ok());
        assert!(request.verify_at(SECRET, at_s, "*").is_ok());
        let error = request.verify_at(SECRET, at_s, "us-east-1").unwrap_err();
        assert_eq!(error.s3_code(), "AuthorizationHeaderMalformed");
        assert!(error
            .message()
            .contains("the region 'eu-west-3' is wrong; expecting 'us-east-1'"));
    }

    #[test]
    fn header_auth_time_must_be_within_fifteen_minutes() {
        let at_s = EXAMPLE_S + 1_000_000;
        let request = signed_put(at_s);
        for now_s in [
            at_s - CLOCK_SKEW_MAX_S,
            at_s - 60,
            at_s,
            at_s + CLOCK_SKEW_MAX_S,
        ] {
            assert!(
                request.verify_at(SECRET, now_s, "eu-west-3").is_ok(),
                "{now_s}"
            );
        }
        for now_s in [at_s - CLOCK_SKEW_MAX_S - 1, at_s + CLOCK_SKEW_MAX_S + 1, 0] {
            let error = request.verify_at(SECRET, now_s, "eu-west-3").unwrap_err();
            assert_eq!(error, SigV4Error::RequestTimeTooSkewed);
            assert_eq!(error.s3_code(), "RequestTimeTooSkewed");
        }
    }

    #[test]
    fn scope_date_must_match_the_request_date() {
        let at_s = EXAMPLE_S + 86_400 - 10;
        let request = signed_put(at_s);
        let moved = request
            .clone()
            .set("x-amz-date", &format_amz_date(at_s + 20));
        let error = moved.verify_at(SECRET, at_s, "*").unwrap_err();
        assert_eq!(error.s3_code(), "AuthorizationHeaderMalformed");
        assert!(error.message().contains("credential date"));
    }

    #[test]
    fn content_sha256_header_is_required_signed_and_valid() {
        let at_s = EXAMPLE_S;
        let request = signed_put(at_s);
        let error = request
            .clone()
            .without("x-amz-content-sha256")
            .verify_at(SECRET, at_s, "*")
            .unwrap_err();
        assert_eq!(error.s3_code(), "MissingSecurityHeader");
        let base = Request::new("PUT", "/b/k", "", &[("host", "h")]);
        for (content, code) in [
            ("not-a-hash", "InvalidArgument"),
            ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", "NotImplemented"),
            (
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                "NotImplemented",
            ),
        ] {
            let (signed, _) = base.clone().signed("us-east-1", at_s, content);
            assert_eq!(
                signed.verify_at(SECRET, at_s, "*").unwrap_err().s3_code(),
                code,
                "{content}"
            );
        }
        let (unsigned, _) = base.clone().signed("us-east-1", at_s, UNSIGNED_PAYLOAD);
        assert_eq!(
            unsigned.verify_at(SECRET, at_s, "*").unwrap().payload,
            PayloadMode::Unsigned
        );
        // Header auth without x-amz-content-sha256 at all: built by hand, as no SDK would.
        let signed = vec!["host".to_owned(), "x-amz-date".to_owned()];
        let request = base.clone().header("x-amz-date", &format_amz_date(at_s));
        let canonical = request
            .with(|r| canonical_request(r, &signed, EMPTY_SHA256_HEX, false))
            .unwrap();
        let key = signing_key(SECRET, "20130524", "us-east-1");
        let signature = request_signature(
            &key,
            &format_amz_date(at_s),
            "20130524/us-east-1/s3/aws4_request",
            &canonical,
        );
        let request = request.header(
            "authorization",
            &doc_authorization("host;x-amz-date", &hex::encode(signature)),
        );
        assert_eq!(
            request.verify_at(SECRET, at_s, "*").unwrap_err(),
            SigV4Error::MissingContentSha256
        );
    }

    #[test]
    fn date_header_stands_in_for_x_amz_date_when_signed() {
        let at_s = EXAMPLE_S + 3600;
        for date in [
            "Fri, 24 May 2013 01:00:00 GMT",
            "Fri, 24 May 2013 01:00:00 -0000",
        ] {
            let request = Request::new(
                "GET",
                "/b/k",
                "",
                &[
                    ("host", "h"),
                    ("date", date),
                    ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
                ],
            );
            let signed: Vec<String> = ["date", "host", "x-amz-content-sha256"]
                .map(String::from)
                .to_vec();
            let canonical = request
                .with(|r| canonical_request(r, &signed, UNSIGNED_PAYLOAD, false))
                .unwrap();
            let key = signing_key(SECRET, "20130524", "us-east-1");
            let signature = request_signature(
                &key,
                "20130524T010000Z",
                "20130524/us-east-1/s3/aws4_request",
                &canonical,
            );
            let request = request.header(
                "authorization",
                &doc_authorization("date;host;x-amz-content-sha256", &hex::encode(signature)),
            );
            let verified = request.verify_at(SECRET, at_s, "us-east-1").unwrap();
            assert_eq!(verified.amz_date, "20130524T010000Z");
        }
        let unsigned_date = Request::new(
            "GET",
            "/",
            "",
            &[("host", "h"), ("date", "Fri, 24 May 2013 01:00:00 GMT")],
        )
        .header("x-amz-content-sha256", UNSIGNED_PAYLOAD)
        .header(
            "authorization",
            &doc_authorization("host;x-amz-content-sha256", &"0".repeat(64)),
        );
        assert_eq!(
            unsigned_date.verify_at(SECRET, at_s, "*").unwrap_err(),
            SigV4Error::DateNotSigned
        );
        let no_date = Request::new("GET", "/", "", &[("host", "h")])
            .header("authorization", &doc_authorization("host", &"0".repeat(64)));
        assert_eq!(
            no_date.verify_at(SECRET, at_s, "*").unwrap_err(),
            SigV4Error::MissingDate
        );
    }

    #[test]
    fn presign_round_trips_and_tampering_fails() {
        let at_s = EXAMPLE_S + 777;
        let credentials = Credentials {
            access_key_id: AKID,
            secret_access_key: SECRET,
        };
        let request = Request::new(
            "PUT",
            "/bucket/a%20b/%E2%9C%93",
            "partNumber=1&uploadId=a%2Fb%2Bc",
            &[
                ("host", "h:1"),
                ("content-type", "application/octet-stream"),
            ],
        );
        let query = request
            .with(|r| presign(r, &credentials, "us-east-1", system_time(at_s), 900))
            .unwrap();
        assert!(
            query.starts_with("partNumber=1&uploadId=a%2Fb%2Bc&X-Amz-Algorithm=AWS4-HMAC-SHA256&"),
            "{query}"
        );
        assert!(
            query.contains("&X-Amz-SignedHeaders=content-type%3Bhost&"),
            "{query}"
        );
        let good = Request { query, ..request };
        assert!(good.verify_at(SECRET, at_s + 900, "us-east-1").is_ok());
        assert_eq!(
            good.verify_at(SECRET, at_s + 901, "us-east-1").unwrap_err(),
            SigV4Error::Expired
        );
        let tampered = [
            Request {
                query: good.query.replace("partNumber=1", "partNumber=2"),
                ..good.clone()
            },
            Request {
                query: good.query.replace("X-Amz-Expires=900", "X-Amz-Expires=901"),
                ..good.clone()
            },
            Request {
                query: format!("{}&acl", good.query),
                ..good.clone()
            },
            Request {
                path: "/bucket/a%20b/x".into(),
                ..good.clone()
            },
            Request {
                method: "GET".into(),
                ..good.clone()
            },
            good.clone().set("content-type", "text/html"),
            good.clone().header("x-amz-acl", "public-read"),
            good.clone()
                .header("x-amz-content-sha256", EMPTY_SHA256_HEX),
        ];
        for request in tampered {
            assert!(
                request.verify_at(SECRET, at_s, "us-east-1").is_err(),
                "{request:?}"
            );
        }
        assert_eq!(
            Request::new("GET", "/", "", &[]).with(|r| presign(
                r,
                &credentials,
                "us-east-1",
                system_time(at_s),
                60
            )),
            Err(SignRequestError::MissingHost)
        );
        assert_eq!(
            request_for_presign().with(|r| presign(
                r,
                &credentials,
                "us-east-1",
                system_time(at_s),
                604_801
            )),
            Err(SignRequestError::ExpiresOutOfRange)
        );
    }

    fn request_for_presign() -> Request {
        Request::new("GET", "/", "", &[("host", "h")])
    }

    // ----------------------------------------------------- chunked decoder

    fn test_verified(decoded_length: Option<u64>) -> (Verified, ChunkSigner) {
        let signing_key = signing_key(SECRET, "20130524", "us-east-1");
        let context = ChunkContext {
            signing_key,
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            amz_date: "20130524T000000Z".into(),
        };
        let seed = [7u8; 32];
        let verified = Verified {
            access_key_id: AKID.into(),
            payload: PayloadMode::StreamingSigned { decoded_length },
            seed_signature: seed,
            signing_key,
            scope: context.scope.clone(),
            amz_date: context.amz_date.clone(),
        };
        (
            verified,
            ChunkSigner {
                context,
                previous: seed,
            },
        )
    }

    /// Feeds `body` in pieces whose sizes cycle through `sizes`; returns
    /// the data and events, or the first error (finish included).
    fn decode_in_pieces(
        verified: &Verified,
        body: &[u8],
        sizes: &[usize],
    ) -> Result<(Vec<u8>, Vec<ChunkEvent>), SigV4Error> {
        let mut decoder = ChunkedDecoder::from_verified(verified)?;
        let (mut data, mut all, mut events) = (Vec::new(), Vec::new(), Vec::new());
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at >= body.len() {
                break;
            }
            let piece = &body[at..(at + size.max(&1)).min(body.len())];
            events.clear();
            decoder.push(piece, &mut events)?;
            for event in &events {
                if let ChunkEvent::Data(range) = event {
                    data.extend_from_slice(&piece[range.clone()]);
                }
            }
            all.append(&mut events);
            at += piece.len();
        }
        decoder.finish()?;
        assert_eq!(decoder.decoded_bytes(), data.len() as u64);
        Ok((data, all))
    }

    fn chunk(size: usize, signature: &str) -> Vec<u8> {
        let mut out = format!("{size:x};chunk-signature={signature}\r\n").into_bytes();
        out.extend(std::iter::repeat_n(b'x', size));
        out.extend_from_slice(b"\r\n");
        out
    }

    #[test]
    fn chunked_decoder_rejects_bad_framing() {
        let (verified, signer) = test_verified(None);
        let good = signer.clone().encode_body(b"hello world", 4);
        assert_eq!(
            decode_in_pieces(&verified, &good, &[3]).unwrap().0,
            b"hello world"
        );
        let zero_sig = "0".repeat(64);
        let cases: Vec<(&str, Vec<u8>, SigV4Error)> = vec![
            ("empty body", Vec::new(), SigV4Error::IncompleteBody),
            (
                "truncated",
                good[..good.len() - 1].to_vec(),
                SigV4Error::IncompleteBody,
            ),
            (
                "after end",
                [good.as_slice(), b"x"].concat(),
                SigV4Error::ChunkedBodyMalformed("data after the final chunk"),
            ),
            (
                "bad signature",
                chunk(3, &zero_sig),
                SigV4Error::ChunkSignatureMismatch,
            ),
            (
                "long line",
                vec![b'1'; CHUNK_HEADER_BYTES_MAX + 1],
                SigV4Error::ChunkedBodyMalformed("chunk header line too long"),
            ),
            (
                "bare LF",
                format!("3;chunk-signature={zero_sig}\n").into_bytes(),
                SigV4Error::ChunkedBodyMalformed("chunk header must end with CRLF"),
            ),
            (
                "no signature",
                b"3\r\n".to_vec(),
                SigV4Error::ChunkedBodyMalformed("chunk header has no chunk-signature"),
            ),
            (
                "extension",
                format!("3;chunk-signature={zero_sig};x=y\r\n").into_bytes(),
                SigV4Error::ChunkedBodyMalformed("the chunk signature must be 64 hex digits"),
            ),
            (
                "bad size",
                format!("3g;chunk-signature={zero_sig}\r\n").into_bytes(),
                SigV4Error::ChunkedBodyMalformed("invalid chunk size"),
            ),
            (
                "empty size",
                format!(";chunk-signature={zero_sig}\r\n").into_bytes(),
                SigV4Error::ChunkedBodyMalformed("invalid chunk size"),
            ),
            (
                "too large",
                format!("1000001;chunk-signature={zero_sig}\r\n").into_bytes(),
                SigV4Error::ChunkedBodyMalformed("chunk larger than 16 MiB"),
            ),
        ];
        for (what, body, expected) in cases {
            assert_eq!(
                decode_in_pieces(&verified, &body, &[1000]).unwrap_err(),
                expected,
                "{what}"
            );
        }
        // Data not followed by CRLF.
        let mut signer_copy = signer.clone();
        let signature = hex::encode(signer_copy.sign_chunk(b"abc"));
        let body = format!("3;chunk-signature={signature}\r\nabcX\r\n").into_bytes();
        assert_eq!(
            decode_in_pieces(&verified, &body, &[1000]).unwrap_err(),
            SigV4Error::ChunkedBodyMalformed("a chunk must end with CRLF")
        );
        // Trailing headers after the final chunk are refused clearly.
        let mut with_trailer = good[..good.len() - 2].to_vec();
        with_trailer.extend_from_slice(b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
        let error = decode_in_pieces(&verified, &with_trailer, &[5]).unwrap_err();
        assert_eq!(
            (error.clone(), error.s3_code()),
            (SigV4Error::TrailersUnsupported, "NotImplemented")
        );
        // A decoder stays failed.
        let mut decoder = ChunkedDecoder::from_verified(&verified).unwrap();
        let mut events = Vec::new();
        assert!(decoder.push(&chunk(3, &zero_sig), &mut events).is_err());
        assert_eq!(
            decoder.push(&good, &mut events),
            Err(SigV4Error::ChunkSignatureMismatch)
        );
    }

    #[test]
    fn chunked_decoder_enforces_decoded_length() {
        let data = b"0123456789";
        for (length, expected) in [
            (Some(10), Ok(())),
            (None, Ok(())),
            (
                Some(9),
                Err(SigV4Error::ChunkedBodyMalformed(
                    "more data than x-amz-decoded-content-length",
                )),
            ),
            (Some(11), Err(SigV4Error::IncompleteBody)),
        ] {
            let (verified, signer) = test_verified(length);
            let body = signer.clone().encode_body(data, 3);
            let result = decode_in_pieces(&verified, &body, &[2]).map(|_| ());
            assert_eq!(result, expected, "{length:?}");
        }
        let (mut verified, _) = test_verified(None);
        verified.payload = PayloadMode::Unsigned;
        assert!(matches!(
            ChunkedDecoder::from_verified(&verified),
            Err(SigV4Error::NotStreaming)
        ));
    }

    #[test]
    fn encoded_length_matches_the_encoder() {
        let (_, signer) = test_verified(None);
        for (len, chunk_bytes) in [
            (0usize, 1usize),
            (1, 1),
            (15, 16),
            (16, 16),
            (17, 16),
            (300, 7),
            (4096, 4096),
            (70_000, 65_536),
        ] {
            let body = signer.clone().encode_body(&vec![0; len], chunk_bytes);
            assert_eq!(
                encoded_chunked_length(len as u64, chunk_bytes as u64),
                body.len() as u64,
                "{len} {chunk_bytes}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn chunked_decoder_is_independent_of_how_the_body_is_split(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            chunk_bytes in 1usize..400,
            sizes in proptest::collection::vec(1usize..300, 1..20),
        ) {
            let (verified, signer) = test_verified(Some(data.len() as u64));
            let body = signer.clone().encode_body(&data, chunk_bytes);
            let (whole, whole_events) = decode_in_pieces(&verified, &body, &[body.len()]).unwrap();
            let (split, split_events) = decode_in_pieces(&verified, &body, &sizes).unwrap();
            prop_assert_eq!(&whole, &data);
            prop_assert_eq!(&split, &data);
            let boundaries = |events: &[ChunkEvent]| -> Vec<ChunkEvent> {
                events.iter().filter(|e| !matches!(e, ChunkEvent::Data(_))).cloned().collect()
            };
            prop_assert_eq!(boundaries(&whole_events), boundaries(&split_events));
        }

        #[test]
        fn chunked_decoder_detects_any_flipped_byte(
            data in proptest::collection::vec(any::<u8>(), 1..600),
            chunk_bytes in 1usize..200,
            position in any::<prop::sample::Index>(),
            sizes in proptest::collection::vec(1usize..100, 1..5),
        ) {
            let (verified, signer) = test_verified(None);
            let mut body = signer.clone().encode_body(&data, chunk_bytes);
            let at = position.index(body.len());
            body[at] ^= 1;
            prop_assert!(decode_in_pieces(&verified, &body, &sizes).is_err());
        }

        #[test]
        fn arbitrary_requests_never_panic(
            method in "\\PC{0,8}",
            path in "[/%a-zA-Z0-9+ ~\u{80}-\u{10ffff}]{0,30}",
            query in "[=&%a-zA-Z0-9+ /-]{0,40}",
            names in proptest::collection::vec("(?i)(host|x-amz-[a-z-]{0,20}|authorization|date|[a-z]{1,5})", 0..6),
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 6),
            fragments in proptest::collection::vec(prop::sample::select(vec![
                "AWS4-HMAC-SHA256 ", "Credential=", "AKID/20130524/us-east-1/s3/aws4_request", "/", ",",
                ", ", "SignedHeaders=", "host;x-amz-date", ";", "Signature=", "=", "ab",
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&", "X-Amz-Expires=", "&", "20130524T000000Z",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ]), 0..12),
            now_s in any::<u64>(),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut request = Request::new(&method, &path, &query, &[]);
            for (name, value) in names.iter().zip(&values) {
                request.headers.push((name.clone(), value.clone()));
            }
            let crafted = fragments.concat();
            for extra in [None, Some(("authorization", crafted.clone()))] {
                let mut request = request.clone();
                if let Some((name, value)) = extra {
                    request = request.header(name, &value);
                }
                let _ = request.verify_at(SECRET, now_s, "*");
                let _ = Request { query: crafted.clone(), ..request.clone() }.verify_at(SECRET, now_s, "us-east-1");
            }
            let (verified, _) = test_verified(Some(body.len() as u64));
            let _ = decode_in_pieces(&verified, &body, &[1, 7, 64]);
        }

        #[test]
        fn sign_then_verify_round_trips(
            key in "[a-zA-Z0-9 +=&?#%/~._-]{0,40}",
            value in "[a-zA-Z0-9 +=&/~._-]{0,20}",
            meta in "[ -~]{0,30}",
            at_s in 0u64..4_000_000_000,
        ) {
            let path = format!("/bucket/{}", uri_encode(key.as_bytes(), false));
            let query = format!("prefix={}&list-type=2", uri_encode(value.as_bytes(), true));
            let request = Request::new("GET", &path, &query, &[("host", "h"), ("x-amz-meta-m", &meta)]);
            let (signed, _) = request.signed("r", at_s, UNSIGNED_PAYLOAD);
            prop_assert!(signed.verify_at(SECRET, at_s, "r").is_ok());
        }
    }
}
