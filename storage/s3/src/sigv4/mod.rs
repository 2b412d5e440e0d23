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
    #[error("Request has expired")]
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

mod chunked;
mod sign;
pub(crate) mod time;
pub use chunked::*;
pub use sign::*;
pub use time::parse_iso8601_seconds;
use time::*;

#[cfg(test)]
mod tests;
