//! The fixed-newstyle handshake: the server's greeting, the client's flags,
//! options and the option replies.

use crate::consts::*;

/// Why the handshake cannot go on; the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("client flags {0:#x} name bits this server does not know")]
    UnknownClientFlags(u32),
    #[error("the client does not speak fixed newstyle")]
    NotFixedNewstyle,
    #[error("option header does not start with IHAVEOPT")]
    BadOptionMagic,
    #[error("option {option} carries {length} bytes, more than the {max} accepted")]
    OptionTooLong { option: u32, length: u32, max: u32 },
}

/// Why one option is refused; the server answers with the reply type and
/// message and the handshake goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OptionError {
    /// An `NBD_REP_ERR_*` value.
    pub reply: u32,
    pub message: String,
}

impl OptionError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            reply: REP_ERR_INVALID,
            message: message.into(),
        }
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self {
            reply: REP_ERR_UNSUP,
            message: message.into(),
        }
    }
}

/// What the server sends first: magic, IHAVEOPT, handshake flags.
pub fn greeting() -> [u8; 18] {
    let mut out = [0u8; 18];
    out[..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    out[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    out[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    out
}

/// The client's 4-byte flags; returns whether it asked for no zeroes.
pub fn parse_client_flags(bytes: [u8; 4]) -> Result<bool, HandshakeError> {
    let flags = u32::from_be_bytes(bytes);
    if flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(HandshakeError::UnknownClientFlags(flags));
    }
    if flags & FLAG_C_FIXED_NEWSTYLE == 0 {
        return Err(HandshakeError::NotFixedNewstyle);
    }
    Ok(flags & FLAG_C_NO_ZEROES != 0)
}

/// The 16-byte header of a client option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub length: u32,
}

impl OptionHeader {
    pub fn parse(bytes: [u8; 16]) -> Result<Self, HandshakeError> {
        let magic = u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default());
        if magic != IHAVEOPT {
            return Err(HandshakeError::BadOptionMagic);
        }
        let option = u32::from_be_bytes(bytes[8..12].try_into().unwrap_or_default());
        let length = u32::from_be_bytes(bytes[12..16].try_into().unwrap_or_default());
        if length > limits::OPTION_BYTES_MAX {
            return Err(HandshakeError::OptionTooLong {
                option,
                length,
                max: limits::OPTION_BYTES_MAX,
            });
        }
        Ok(Self { option, length })
    }
}

/// A parsed client option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOption {
    ExportName(String),
    Abort,
    List,
    /// `NBD_OPT_INFO` (`go: false`) or `NBD_OPT_GO`.
    Info {
        go: bool,
        name: String,
        requests: Vec<u16>,
    },
    StructuredReply,
    /// `NBD_OPT_LIST_META_CONTEXT` (`set: false`) or `NBD_OPT_SET_META_CONTEXT`.
    MetaContext {
        set: bool,
        export: String,
        queries: Vec<String>,
    },
    /// Known or unknown, but not supported here (STARTTLS, extended headers, ...).
    Unsupported(u32),
}

/// Reads big-endian fields off an option's payload.
struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], OptionError> {
        if self.data.len() < n {
            return Err(OptionError::invalid(format!(
                "option data ends inside {what}"
            )));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn u16(&mut self, what: &str) -> Result<u16, OptionError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, OptionError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, len: usize, what: &str) -> Result<String, OptionError> {
        if len > limits::EXPORT_NAME_BYTES_MAX {
            return Err(OptionError::invalid(format!("{what} is too long")));
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| OptionError::invalid(format!("{what} is not UTF-8")))
    }

    fn finish(&self) -> Result<(), OptionError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(OptionError::invalid("option data has trailing bytes"))
        }
    }
}

impl ClientOption {
    /// Parses option `option` with payload `data` (`data.len()` is the
    /// header's length, already bounded).
    pub fn parse(option: u32, data: &[u8]) -> Result<Self, OptionError> {
        let mut fields = Fields { data };
        let parsed = match option {
            OPT_EXPORT_NAME => {
                return fields
                    .string(data.len(), "export name")
                    .map(ClientOption::ExportName)
            }
            OPT_ABORT => ClientOption::Abort,
            OPT_LIST => ClientOption::List,
            OPT_STRUCTURED_REPLY => ClientOption::StructuredReply,
            OPT_INFO | OPT_GO => {
                let len = fields.u32("export name length")? as usize;
                let name = fields.string(len, "export name")?;
                let count = fields.u16("information request count")? as usize;
                if count > limits::INFO_REQUESTS_MAX {
                    return Err(OptionError::invalid("too many information requests"));
                }
                let requests = (0..count)
                    .map(|_| fields.u16("information request"))
                    .collect::<Result<_, _>>()?;
                ClientOption::Info {
                    go: option == OPT_GO,
                    name,
                    requests,
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let len = fields.u32("export name length")? as usize;
                let export = fields.string(len, "export name")?;
                let count = fields.u32("query count")? as usize;
                if count > limits::META_QUERIES_MAX {
                    return Err(OptionError::invalid("too many meta context queries"));
                }
                let queries = (0..count)
                    .map(|_| {
                        let len = fields.u32("query length")? as usize;
                        fields.string(len, "query")
                    })
                    .collect::<Result<_, _>>()?;
                ClientOption::MetaContext {
                    set: option == OPT_SET_META_CONTEXT,
                    export,
                    queries,
                }
            }
            other => return Ok(ClientOption::Unsupported(other)),
        };
        fields.finish()?;
        Ok(parsed)
    }
}

/// One option reply: magic, option, reply type, length, data.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

pub fn ack(option: u32) -> Vec<u8> {
    option_reply(option, REP_ACK, &[])
}

/// An error reply with a human-readable message (UTF-8, as the spec allows).
pub fn error_reply(option: u32, error: &OptionError) -> Vec<u8> {
    option_reply(option, error.reply, error.message.as_bytes())
}

/// One `NBD_REP_SERVER` entry of an `NBD_OPT_LIST` answer.
pub fn server_entry(name: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(4 + name.len());
    data.extend_from_slice(&(name.len() as u32).to_be_bytes());
    data.extend_from_slice(name.as_bytes());
    option_reply(OPT_LIST, REP_SERVER, &data)
}

/// `NBD_INFO_EXPORT`: size and transmission flags.
pub fn info_export(option: u32, size: u64, flags: u16) -> Vec<u8> {
    let mut data = Vec::with_capacity(12);
    data.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    data.extend_from_slice(&size.to_be_bytes());
    data.extend_from_slice(&flags.to_be_bytes());
    option_reply(option, REP_INFO, &data)
}

/// `NBD_INFO_BLOCK_SIZE`: minimum, preferred and maximum block sizes.
pub fn info_block_size(option: u32, minimum: u32, preferred: u32, maximum: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(14);
    data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    for v in [minimum, preferred, maximum] {
        data.extend_from_slice(&v.to_be_bytes());
    }
    option_reply(option, REP_INFO, &data)
}

/// `NBD_INFO_NAME`: the export's canonical name.
pub fn info_name(option: u32, name: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(2 + name.len());
    data.extend_from_slice(&INFO_NAME.to_be_bytes());
    data.extend_from_slice(name.as_bytes());
    option_reply(option, REP_INFO, &data)
}

/// `NBD_REP_META_CONTEXT`: a context id and its name.
pub fn meta_context(option: u32, id: u32, name: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(4 + name.len());
    data.extend_from_slice(&id.to_be_bytes());
    data.extend_from_slice(name.as_bytes());
    option_reply(option, REP_META_CONTEXT, &data)
}

/// The answer to `NBD_OPT_EXPORT_NAME`: size, flags, and 124 zero bytes
/// unless the client asked for none.
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(134);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        out.extend_from_slice(&[0u8; 124]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(option: u32, length: u32) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
        h[8..12].copy_from_slice(&option.to_be_bytes());
        h[12..].copy_from_slice(&length.to_be_bytes());
        h
    }

    #[test]
    fn greeting_and_client_flags() {
        let g = greeting();
        assert_eq!(&g[..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(u16::from_be_bytes([g[16], g[17]]), 3);
        assert_eq!(parse_client_flags([0, 0, 0, 3]), Ok(true));
        assert_eq!(parse_client_flags([0, 0, 0, 1]), Ok(false));
        assert_eq!(
            parse_client_flags([0, 0, 0, 0]),
            Err(HandshakeError::NotFixedNewstyle)
        );
        assert!(parse_client_flags([0, 0, 1, 1]).is_err());
    }

    #[test]
    fn option_headers() {
        assert_eq!(
            OptionHeader::parse(header(OPT_GO, 10)),
            Ok(OptionHeader {
                option: OPT_GO,
                length: 10
            })
        );
        let mut bad = header(OPT_GO, 10);
        bad[0] = 0;
        assert_eq!(
            OptionHeader::parse(bad),
            Err(HandshakeError::BadOptionMagic)
        );
        assert!(matches!(
            OptionHeader::parse(header(OPT_GO, 1 << 20)),
            Err(HandshakeError::OptionTooLong { .. })
        ));
    }

    #[test]
    fn go_and_meta_context_payloads() {
        let mut go = Vec::new();
        go.extend_from_slice(&3u32.to_be_bytes());
        go.extend_from_slice(b"vol");
        go.extend_from_slice(&2u16.to_be_bytes());
        go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        go.extend_from_slice(&INFO_NAME.to_be_bytes());
        assert_eq!(
            ClientOption::parse(OPT_GO, &go),
            Ok(ClientOption::Info {
                go: true,
                name: "vol".into(),
                requests: vec![3, 1]
            })
        );
        // Truncated, and trailing bytes.
        assert_eq!(
            ClientOption::parse(OPT_GO, &go[..go.len() - 1])
                .unwrap_err()
                .reply,
            REP_ERR_INVALID
        );
        let mut long = go.clone();
        long.push(0);
        assert_eq!(
            ClientOption::parse(OPT_GO, &long).unwrap_err().reply,
            REP_ERR_INVALID
        );

        let mut set = Vec::new();
        set.extend_from_slice(&3u32.to_be_bytes());
        set.extend_from_slice(b"vol");
        set.extend_from_slice(&1u32.to_be_bytes());
        set.extend_from_slice(&(BASE_ALLOCATION.len() as u32).to_be_bytes());
        set.extend_from_slice(BASE_ALLOCATION.as_bytes());
        assert_eq!(
            ClientOption::parse(OPT_SET_META_CONTEXT, &set),
            Ok(ClientOption::MetaContext {
                set: true,
                export: "vol".into(),
                queries: vec![BASE_ALLOCATION.into()]
            })
        );
        assert_eq!(ClientOption::parse(OPT_ABORT, &[]), Ok(ClientOption::Abort));
        assert_eq!(
            ClientOption::parse(OPT_LIST, &[1]).unwrap_err().reply,
            REP_ERR_INVALID
        );
        assert_eq!(
            ClientOption::parse(OPT_STARTTLS, &[]),
            Ok(ClientOption::Unsupported(OPT_STARTTLS))
        );
        assert_eq!(
            ClientOption::parse(OPT_EXPORT_NAME, b"x"),
            Ok(ClientOption::ExportName("x".into()))
        );
    }

    #[test]
    fn replies_are_framed() {
        let r = info_export(OPT_GO, 1 << 30, FLAG_HAS_FLAGS | FLAG_SEND_FLUSH);
        assert_eq!(&r[..8], &OPTION_REPLY_MAGIC.to_be_bytes());
        assert_eq!(u32::from_be_bytes(r[12..16].try_into().unwrap()), REP_INFO);
        assert_eq!(u32::from_be_bytes(r[16..20].try_into().unwrap()), 12);
        assert_eq!(r.len(), 32);
        assert_eq!(export_name_reply(5, 1, false).len(), 134);
        assert_eq!(export_name_reply(5, 1, true).len(), 10);
        let e = error_reply(
            OPT_GO,
            &OptionError {
                reply: REP_ERR_POLICY,
                message: "no".into(),
            },
        );
        assert_eq!(
            u32::from_be_bytes(e[12..16].try_into().unwrap()),
            REP_ERR_POLICY
        );
    }

    proptest::proptest! {
        #[test]
        fn option_parsing_never_panics(option in 0u32..16, data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = ClientOption::parse(option, &data);
        }
    }
}
