//! The transmission phase: the 28-byte request header, request checks
//! against the export, simple replies and structured reply chunks.

use crate::consts::*;

/// A command of the transmission phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Disconnect,
    Flush,
    Trim,
    Cache,
    WriteZeroes,
    BlockStatus,
    Unknown(u16),
}

impl Command {
    fn from_code(code: u16) -> Self {
        match code {
            CMD_READ => Command::Read,
            CMD_WRITE => Command::Write,
            CMD_DISC => Command::Disconnect,
            CMD_FLUSH => Command::Flush,
            CMD_TRIM => Command::Trim,
            CMD_CACHE => Command::Cache,
            CMD_WRITE_ZEROES => Command::WriteZeroes,
            CMD_BLOCK_STATUS => Command::BlockStatus,
            other => Command::Unknown(other),
        }
    }
}

/// A parsed request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub command: Command,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

/// A request header the server cannot frame; the connection must close
/// (the byte stream can no longer be trusted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request magic {0:#x} is not NBD_REQUEST_MAGIC")]
    BadMagic(u32),
    #[error("write payload of {length} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge { length: u32, max: u32 },
}

impl Request {
    pub const BYTES: usize = 28;

    pub fn parse(bytes: [u8; Self::BYTES]) -> Result<Self, RequestError> {
        let u16_at = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let u32_at =
            |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        let u64_at =
            |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        let magic = u32_at(0);
        if magic != REQUEST_MAGIC {
            return Err(RequestError::BadMagic(magic));
        }
        let request = Request {
            flags: u16_at(4),
            command: Command::from_code(u16_at(6)),
            cookie: u64_at(8),
            offset: u64_at(16),
            length: u32_at(24),
        };
        // A write's payload follows the header: one the server will not read
        // leaves the stream unframed, so it is a framing error, not an errno.
        if request.command == Command::Write && request.length > limits::PAYLOAD_BYTES_MAX {
            return Err(RequestError::PayloadTooLarge {
                length: request.length,
                max: limits::PAYLOAD_BYTES_MAX,
            });
        }
        Ok(request)
    }

    /// Checks the request against an export of `size` bytes whose I/O must
    /// be aligned to `block_min`; returns the errno to answer with.
    pub fn check(&self, size: u64, block_min: u32, read_only: bool) -> Result<(), u32> {
        let known_flags =
            CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE | CMD_FLAG_FAST_ZERO;
        if self.flags & !known_flags != 0 {
            return Err(EINVAL);
        }
        match self.command {
            Command::Unknown(_) => return Err(EINVAL),
            Command::Disconnect | Command::Flush => return Ok(()),
            Command::Read if self.length > limits::PAYLOAD_BYTES_MAX => return Err(EOVERFLOW),
            Command::Write | Command::Trim | Command::WriteZeroes if read_only => {
                return Err(EPERM)
            }
            _ => {}
        }
        let block = u64::from(block_min.max(1));
        if !self.offset.is_multiple_of(block) || !u64::from(self.length).is_multiple_of(block) {
            return Err(EINVAL);
        }
        let end = self
            .offset
            .checked_add(u64::from(self.length))
            .ok_or(EINVAL)?;
        if end > size {
            return Err(match self.command {
                Command::Write | Command::WriteZeroes => ENOSPC,
                _ => EINVAL,
            });
        }
        Ok(())
    }
}

/// A simple reply header (data follows for a successful READ).
pub fn simple_reply(cookie: u64, error: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&cookie.to_be_bytes());
    out
}

/// A structured reply chunk header for a payload of `length` bytes.
pub fn chunk_header(cookie: u64, flags: u16, kind: u16, length: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&kind.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out[16..].copy_from_slice(&length.to_be_bytes());
    out
}

fn done(last: bool) -> u16 {
    if last {
        REPLY_FLAG_DONE
    } else {
        0
    }
}

/// `NBD_REPLY_TYPE_OFFSET_DATA` header and offset; `data_len` bytes follow.
pub fn offset_data(cookie: u64, offset: u64, data_len: u32, last: bool) -> [u8; 28] {
    let mut out = [0u8; 28];
    out[..20].copy_from_slice(&chunk_header(
        cookie,
        done(last),
        REPLY_TYPE_OFFSET_DATA,
        data_len + 8,
    ));
    out[20..].copy_from_slice(&offset.to_be_bytes());
    out
}

/// `NBD_REPLY_TYPE_OFFSET_HOLE`: `[offset, offset + len)` reads as zeroes.
pub fn offset_hole(cookie: u64, offset: u64, len: u32, last: bool) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..20].copy_from_slice(&chunk_header(
        cookie,
        done(last),
        REPLY_TYPE_OFFSET_HOLE,
        12,
    ));
    out[20..28].copy_from_slice(&offset.to_be_bytes());
    out[28..].copy_from_slice(&len.to_be_bytes());
    out
}

/// `NBD_REPLY_TYPE_BLOCK_STATUS` for one context: (length, status) extents.
pub fn block_status(cookie: u64, context: u32, extents: &[(u32, u32)], last: bool) -> Vec<u8> {
    let length = 4 + 8 * extents.len() as u32;
    let mut out = Vec::with_capacity(20 + length as usize);
    out.extend_from_slice(&chunk_header(
        cookie,
        done(last),
        REPLY_TYPE_BLOCK_STATUS,
        length,
    ));
    out.extend_from_slice(&context.to_be_bytes());
    for (len, status) in extents {
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&status.to_be_bytes());
    }
    out
}

/// `NBD_REPLY_TYPE_ERROR` with a message (always the last chunk here).
pub fn structured_error(cookie: u64, error: u32, message: &str) -> Vec<u8> {
    let message = &message.as_bytes()[..message.len().min(1024)];
    let length = 6 + message.len() as u32;
    let mut out = Vec::with_capacity(20 + length as usize);
    out.extend_from_slice(&chunk_header(
        cookie,
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        length,
    ));
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// `NBD_REPLY_TYPE_NONE` with the done flag: the end of a reply.
pub fn structured_done(cookie: u64) -> [u8; 20] {
    chunk_header(cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u16, command: u16, offset: u64, length: u32) -> [u8; 28] {
        let mut h = [0u8; 28];
        h[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        h[4..6].copy_from_slice(&flags.to_be_bytes());
        h[6..8].copy_from_slice(&command.to_be_bytes());
        h[8..16].copy_from_slice(&7u64.to_be_bytes());
        h[16..24].copy_from_slice(&offset.to_be_bytes());
        h[24..].copy_from_slice(&length.to_be_bytes());
        h
    }

    #[test]
    fn requests_parse_and_check() {
        let r = Request::parse(header(CMD_FLAG_FUA, CMD_WRITE, 4096, 512)).unwrap();
        assert_eq!(
            (r.command, r.cookie, r.offset, r.length),
            (Command::Write, 7, 4096, 512)
        );
        assert_eq!(r.check(1 << 20, 512, false), Ok(()));
        assert_eq!(r.check(1 << 20, 4096, false), Err(EINVAL));
        assert_eq!(r.check(4096, 512, false), Err(ENOSPC));
        assert_eq!(r.check(1 << 20, 512, true), Err(EPERM));
        let read = Request::parse(header(0, CMD_READ, 4096, 512)).unwrap();
        assert_eq!(read.check(4096, 512, false), Err(EINVAL));
        let huge = Request::parse(header(0, CMD_READ, 0, u32::MAX)).unwrap();
        assert_eq!(huge.check(u64::MAX, 1, false), Err(EOVERFLOW));
        let wrap = Request::parse(header(0, CMD_TRIM, u64::MAX - 511, 1024)).unwrap();
        assert_eq!(wrap.check(u64::MAX, 512, false), Err(EINVAL));
        assert_eq!(
            Request::parse(header(0, 99, 0, 0))
                .unwrap()
                .check(1, 1, false),
            Err(EINVAL)
        );
        assert_eq!(
            Request::parse(header(1 << 9, CMD_READ, 0, 0))
                .unwrap()
                .check(1, 1, false),
            Err(EINVAL)
        );
        assert!(matches!(
            Request::parse(header(0, CMD_WRITE, 0, u32::MAX)),
            Err(RequestError::PayloadTooLarge { .. })
        ));
        let mut bad = header(0, CMD_READ, 0, 0);
        bad[0] = 0;
        assert!(matches!(
            Request::parse(bad),
            Err(RequestError::BadMagic(_))
        ));
    }

    #[test]
    fn reply_framing() {
        let s = simple_reply(9, EIO);
        assert_eq!(&s[..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
        assert_eq!(u32::from_be_bytes(s[4..8].try_into().unwrap()), EIO);
        let d = offset_data(9, 4096, 512, true);
        assert_eq!(u16::from_be_bytes([d[4], d[5]]), REPLY_FLAG_DONE);
        assert_eq!(u32::from_be_bytes(d[16..20].try_into().unwrap()), 520);
        let b = block_status(9, 1, &[(4096, 0), (8192, STATE_HOLE | STATE_ZERO)], true);
        assert_eq!(b.len(), 20 + 4 + 16);
        let e = structured_error(9, EINVAL, "bad");
        assert_eq!(u16::from_be_bytes([e[6], e[7]]), REPLY_TYPE_ERROR);
        assert_eq!(e.len(), 20 + 6 + 3);
    }

    proptest::proptest! {
        #[test]
        fn any_header_parses_or_refuses(bytes in proptest::array::uniform28(proptest::num::u8::ANY), size in 0u64..(1 << 40)) {
            if let Ok(r) = Request::parse(bytes) {
                if r.check(size, 512, false).is_ok() && !matches!(r.command, Command::Flush | Command::Disconnect) {
                    proptest::prop_assert!(r.offset + u64::from(r.length) <= size);
                }
            }
        }
    }
}
