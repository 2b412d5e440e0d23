//! Streaming uploads: chunk signatures and the aws-chunked body decoder.

use super::*;

// -------------------------------------------------------- chunk signatures

#[derive(Clone)]
pub(super) struct ChunkContext {
    pub(super) signing_key: [u8; 32],
    pub(super) scope: String,
    pub(super) amz_date: String,
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
    pub(super) context: ChunkContext,
    pub(super) previous: [u8; 32],
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
    pub(super) context: ChunkContext,
    pub(super) previous: [u8; 32],
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
pub(super) enum DecodeState {
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
    pub(super) verifier: ChunkVerifier,
    pub(super) state: DecodeState,
    pub(super) line: [u8; CHUNK_HEADER_BYTES_MAX],
    pub(super) line_bytes: usize,
    pub(super) chunk_signature: [u8; 32],
    pub(super) chunk_bytes: u64,
    pub(super) chunk_hash: Sha256,
    pub(super) decoded_bytes: u64,
    pub(super) decoded_length: Option<u64>,
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
pub(super) fn parse_chunk_header(line: &[u8]) -> Result<(u64, [u8; 32]), SigV4Error> {
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
