//! Reading a request body the way S3 does: aws-chunked bodies decoded with
//! their chunk signatures checked, the payload hash checked against the
//! signature, `Content-MD5` and `x-amz-checksum-*` checked at the end, and
//! the size bounded. Data is handed out as it arrives; the caller must not
//! make anything visible before [`BodyReader::finish`] succeeds.

use std::collections::VecDeque;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use md5::{Digest, Md5};
use photon_s3::error::{S3Error, S3ErrorCode};
use photon_s3::sigv4::{ChunkEvent, ChunkedDecoder, PayloadMode};
use sha2::Sha256;

use crate::api::S3Request;
use crate::auth::sigv4_error;
use crate::checksum::{Algorithm, Hasher};

/// How slowly a request body may arrive: a body that sends nothing for
/// `idle_timeout`, or averages under `rate_min_bytes_per_s` once it has run
/// for `idle_timeout`, is cut with RequestTimeout (a slow-loris upload holds
/// a connection and a buffer; an honest one is far faster).
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    pub idle_timeout: std::time::Duration,
    pub rate_min_bytes_per_s: u64,
}

fn request_timeout(what: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::RequestTimeout,
        format!("your socket connection to the server was not read from or written to within the timeout period: {what}"),
    )
}

/// Digests the client asked us to check, from the request headers.
#[derive(Debug, Default, Clone)]
struct Expected {
    md5: Option<[u8; 16]>,
    /// The one `x-amz-checksum-<algorithm>` value (the header policy
    /// refuses a request with several).
    checksum: Option<(Algorithm, Vec<u8>)>,
}

/// What the whole body turned out to be.
#[derive(Debug, Clone)]
pub struct Received {
    pub size: u64,
    pub md5: [u8; 16],
    /// The additional checksum: the one the client sent (verified), or the
    /// one asked for with [`BodyReader::compute`].
    pub checksum: Option<(Algorithm, Vec<u8>)>,
}

pub struct BodyReader {
    incoming: Incoming,
    decoder: Option<ChunkedDecoder>,
    payload: PayloadMode,
    events: Vec<ChunkEvent>,
    ready: VecDeque<Bytes>,
    md5: Md5,
    sha256: Option<Sha256>,
    checksum: Option<(Algorithm, Hasher)>,
    expected: Expected,
    received: u64,
    limit: u64,
    declared: Option<u64>,
    ended: bool,
    pace: BodyPace,
    started: std::time::Instant,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn decode_md5(headers: &HeaderMap) -> Result<Option<[u8; 16]>, S3Error> {
    let Some(text) = header(headers, "content-md5") else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(Some)
        .ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidDigest,
                "the Content-MD5 you specified is not valid",
            )
        })
}

/// Which request headers carry digests of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyDigests {
    /// `Content-MD5` and `x-amz-checksum-*`.
    All,
    /// `Content-MD5` only: `x-amz-checksum-*` means something else
    /// (CompleteMultipartUpload: the whole object's checksum).
    Md5Only,
}

impl BodyReader {
    /// Takes the request's body after checking its headers (so a refused
    /// request leaves the body unread for the caller to drain). `limit` is
    /// the largest body the operation accepts (EntityTooLarge beyond it).
    pub fn new(request: &mut S3Request, limit: u64) -> Result<Self, S3Error> {
        Self::with_digests(request, limit, BodyDigests::All)
    }

    /// [`BodyReader::new`], saying which headers are digests of the body.
    pub fn with_digests(
        request: &mut S3Request,
        limit: u64,
        digests: BodyDigests,
    ) -> Result<Self, S3Error> {
        let headers = request.headers();
        let verified = &request.caller.verified;
        let checksum = match digests {
            BodyDigests::All => match crate::headers::checksum_value(headers)? {
                Some((algorithm, text)) => {
                    Some((algorithm, crate::headers::decode_value(algorithm, &text)?))
                }
                None => None,
            },
            BodyDigests::Md5Only => None,
        };
        let expected = Expected {
            md5: decode_md5(headers)?,
            checksum,
        };
        let decoder = match verified.payload {
            PayloadMode::StreamingSigned { .. } => {
                Some(ChunkedDecoder::from_verified(verified).map_err(sigv4_error)?)
            }
            _ => None,
        };
        let declared = match verified.payload {
            PayloadMode::StreamingSigned { decoded_length } => decoded_length,
            _ => header(headers, "content-length").and_then(|v| v.parse().ok()),
        };
        if declared.is_some_and(|d| d > limit) {
            return Err(too_large(limit));
        }
        let wants_sha256 = matches!(verified.payload, PayloadMode::Sha256(_));
        let payload = verified.payload;
        let pace = request.pace;
        let incoming = request.take_body()?;
        Ok(Self {
            incoming,
            decoder,
            payload,
            events: Vec::new(),
            ready: VecDeque::new(),
            md5: Md5::new(),
            sha256: wants_sha256.then(Sha256::new),
            checksum: expected
                .checksum
                .as_ref()
                .map(|(algorithm, _)| (*algorithm, Hasher::new(*algorithm))),
            expected,
            received: 0,
            limit,
            declared,
            ended: false,
            pace,
            started: std::time::Instant::now(),
        })
    }

    /// Computes `algorithm`'s checksum of the body (a multipart upload's
    /// algorithm for its parts). A checksum header of another algorithm is
    /// refused, as S3 does.
    pub fn compute(&mut self, algorithm: Algorithm) -> Result<(), S3Error> {
        match &self.checksum {
            Some((sent, _)) if *sent == algorithm => Ok(()),
            Some((sent, _)) => Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                format!(
                    "checksum type mismatch: the upload uses {}, the request sent {}",
                    algorithm.name(),
                    sent.name()
                ),
            )),
            None => {
                self.checksum = Some((algorithm, Hasher::new(algorithm)));
                Ok(())
            }
        }
    }

    /// The size the client announced, when it did.
    pub fn declared_size(&self) -> Option<u64> {
        self.declared
    }

    /// The next piece of data, or `None` at the end of the body.
    pub async fn next(&mut self) -> Result<Option<Bytes>, S3Error> {
        loop {
            if let Some(piece) = self.ready.pop_front() {
                self.account(&piece)?;
                return Ok(Some(piece));
            }
            // A body announced empty is never polled: hyper answers a
            // polled empty body that came with `Expect: 100-continue` in a
            // way that stalls the connection's next request (botocore sends
            // that header even for empty PUTs).
            if self.ended || (self.declared == Some(0) && self.decoder.is_none()) {
                self.ended = true;
                return Ok(None);
            }
            match self.next_frame().await? {
                None => {
                    self.ended = true;
                    if let Some(decoder) = &self.decoder {
                        decoder.finish().map_err(sigv4_error)?;
                    }
                }
                Some(Err(e)) => {
                    return Err(S3Error::with_message(
                        S3ErrorCode::IncompleteBody,
                        format!("the request body ended early: {e}"),
                    ))
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    self.push(data)?;
                }
            }
        }
    }

    /// The next frame of the body, within the pace limits.
    async fn next_frame(
        &mut self,
    ) -> Result<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>, S3Error> {
        let elapsed = self.started.elapsed();
        if elapsed > self.pace.idle_timeout {
            let rate = self.received as f64 / elapsed.as_secs_f64();
            if rate < self.pace.rate_min_bytes_per_s as f64 {
                return Err(request_timeout(&format!(
                    "the body arrived at {rate:.0} bytes/s, under the minimum of {} bytes/s",
                    self.pace.rate_min_bytes_per_s
                )));
            }
        }
        let idle = self.pace.idle_timeout;
        let incoming = &mut self.incoming;
        futures_lite::future::or(async { Ok(incoming.frame().await) }, async {
            glommio::timer::sleep(idle).await;
            Err(request_timeout(&format!(
                "no body bytes for {} ms",
                idle.as_millis()
            )))
        })
        .await
    }

    fn push(&mut self, data: Bytes) -> Result<(), S3Error> {
        let Some(decoder) = &mut self.decoder else {
            self.ready.push_back(data);
            return Ok(());
        };
        self.events.clear();
        decoder.push(&data, &mut self.events).map_err(sigv4_error)?;
        for event in &self.events {
            if let ChunkEvent::Data(range) = event {
                self.ready.push_back(data.slice(range.clone()));
            }
        }
        Ok(())
    }

    fn account(&mut self, piece: &[u8]) -> Result<(), S3Error> {
        self.received += piece.len() as u64;
        if self.received > self.limit {
            return Err(too_large(self.limit));
        }
        self.md5.update(piece);
        if let Some(h) = &mut self.sha256 {
            h.update(piece);
        }
        if let Some((_, h)) = &mut self.checksum {
            h.update(piece);
        }
        Ok(())
    }

    /// Reads and drops the rest of the body (so a keep-alive connection can
    /// carry the next request), up to `bytes_max`.
    pub async fn drain(&mut self, bytes_max: u64) {
        let mut seen = 0u64;
        while seen < bytes_max {
            match self.incoming.frame().await {
                Some(Ok(frame)) => {
                    seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    }

    /// Checks that the whole body arrived and matches every digest given.
    pub fn finish(self) -> Result<Received, S3Error> {
        if let Some(declared) = self.declared {
            if declared != self.received {
                return Err(S3Error::new(S3ErrorCode::IncompleteBody));
            }
        }
        let sha256: Option<[u8; 32]> = self.sha256.map(|h| h.finalize().into());
        if let (PayloadMode::Sha256(_), Some(actual)) = (self.payload, sha256) {
            self.payload.check_sha256(&actual).map_err(sigv4_error)?;
        }
        let md5: [u8; 16] = self.md5.finalize().into();
        let mismatch = |what: &str| {
            S3Error::with_message(
                S3ErrorCode::BadDigest,
                format!("the {what} you specified did not match the calculated checksum"),
            )
        };
        if self.expected.md5.is_some_and(|e| e != md5) {
            return Err(mismatch("Content-MD5"));
        }
        let checksum = self.checksum.map(|(algorithm, h)| (algorithm, h.finish()));
        if let (Some((algorithm, expected)), Some((_, actual))) =
            (&self.expected.checksum, &checksum)
        {
            if expected != actual {
                return Err(mismatch(algorithm.name()));
            }
        }
        Ok(Received {
            size: self.received,
            md5,
            checksum,
        })
    }
}

fn too_large(limit: u64) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::EntityTooLarge,
        format!("your proposed upload exceeds the maximum allowed size of {limit} bytes"),
    )
}

/// Reads a small body (XML documents) whole, at most `limit` bytes.
pub async fn read_small(mut reader: BodyReader) -> Result<Vec<u8>, S3Error> {
    let mut out = Vec::new();
    while let Some(piece) = reader.next().await? {
        out.extend_from_slice(&piece);
    }
    reader.finish()?;
    Ok(out)
}
