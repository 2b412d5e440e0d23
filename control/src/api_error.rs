//! The typed error of the client API (`error.capnp`): a code, whether the
//! same request may be sent again, a message for people and, for "not the
//! leader", where the leader is. Servers put it in the reply's `error`
//! field; the client library reads it back. Nobody parses error text.

use photon_schema::error_capnp::error;

use crate::kv::KvError;
use crate::proposer::{LeaderHint, ProposeError};
use crate::resource::{CommitError, Refusal};

/// What kind of failure an [`ApiError`] is (`Error.Code` in the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Internal,
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    PermissionDenied,
    Unauthenticated,
    NotLeader,
    Unavailable,
    ResourceExhausted,
}

impl Code {
    /// Whether the same request may succeed when sent again (to the leader
    /// for [`Code::NotLeader`], after a pause for the others): nothing was
    /// done.
    pub fn retryable(self) -> bool {
        matches!(self, Self::NotLeader | Self::Unavailable)
    }

    /// The words messages of this code start with.
    pub fn words(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::InvalidArgument => "invalid argument",
            Self::NotFound => "not found",
            Self::AlreadyExists => "already exists",
            Self::FailedPrecondition => "failed precondition",
            Self::PermissionDenied => "permission denied",
            Self::Unauthenticated => "unauthenticated",
            Self::NotLeader => crate::proposer::NOT_LEADER,
            Self::Unavailable => "unavailable",
            Self::ResourceExhausted => "resource exhausted",
        }
    }

    /// The name in the schema (`notFound`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::InvalidArgument => "invalidArgument",
            Self::NotFound => "notFound",
            Self::AlreadyExists => "alreadyExists",
            Self::FailedPrecondition => "failedPrecondition",
            Self::PermissionDenied => "permissionDenied",
            Self::Unauthenticated => "unauthenticated",
            Self::NotLeader => "notLeader",
            Self::Unavailable => "unavailable",
            Self::ResourceExhausted => "resourceExhausted",
        }
    }

    fn to_wire(self) -> error::Code {
        match self {
            Self::Internal => error::Code::Internal,
            Self::InvalidArgument => error::Code::InvalidArgument,
            Self::NotFound => error::Code::NotFound,
            Self::AlreadyExists => error::Code::AlreadyExists,
            Self::FailedPrecondition => error::Code::FailedPrecondition,
            Self::PermissionDenied => error::Code::PermissionDenied,
            Self::Unauthenticated => error::Code::Unauthenticated,
            Self::NotLeader => error::Code::NotLeader,
            Self::Unavailable => error::Code::Unavailable,
            Self::ResourceExhausted => error::Code::ResourceExhausted,
        }
    }

    fn from_wire(code: error::Code) -> Self {
        match code {
            error::Code::Internal => Self::Internal,
            error::Code::InvalidArgument => Self::InvalidArgument,
            error::Code::NotFound => Self::NotFound,
            error::Code::AlreadyExists => Self::AlreadyExists,
            error::Code::FailedPrecondition => Self::FailedPrecondition,
            error::Code::PermissionDenied => Self::PermissionDenied,
            error::Code::Unauthenticated => Self::Unauthenticated,
            error::Code::NotLeader => Self::NotLeader,
            error::Code::Unavailable => Self::Unavailable,
            error::Code::ResourceExhausted => Self::ResourceExhausted,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed call, as the server answers it and the client reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: Code,
    /// For people; starts with the code's [`words`](Code::words) (KV
    /// errors with `kv:`).
    pub message: String,
    /// Where the leader is (only [`Code::NotLeader`], when known).
    pub leader: Option<LeaderHint>,
}

/// What a server method body returns.
pub type Reply<T = ()> = Result<T, ApiError>;

impl ApiError {
    /// An error whose message is `message` as given.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            leader: None,
        }
    }

    /// An error whose message is "<the code's words>: <detail>".
    pub fn with_words(code: Code, detail: impl std::fmt::Display) -> Self {
        Self::new(code, format!("{}: {detail}", code.words()))
    }

    pub fn invalid(detail: impl std::fmt::Display) -> Self {
        Self::with_words(Code::InvalidArgument, detail)
    }

    pub fn not_found(detail: impl std::fmt::Display) -> Self {
        Self::with_words(Code::NotFound, detail)
    }

    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        Self::with_words(Code::Unavailable, detail)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::with_words(Code::Internal, detail)
    }

    pub fn unauthenticated(detail: impl std::fmt::Display) -> Self {
        Self::with_words(Code::Unauthenticated, detail)
    }

    pub fn permission_denied(detail: impl std::fmt::Display) -> Self {
        Self::with_words(Code::PermissionDenied, detail)
    }

    pub fn retryable(&self) -> bool {
        self.code.retryable()
    }

    /// Fills a reply's `error` field.
    pub fn write(&self, mut out: error::Builder<'_>) {
        out.set_code(self.code.to_wire());
        out.set_retryable(self.retryable());
        out.set_message(&self.message);
        if let Some(leader) = &self.leader {
            out.set_leader_id(leader.id);
            out.set_leader_address(&leader.address);
        }
    }

    /// Reads a reply's `error` field. A code this client does not know
    /// (a newer server) reads as `internal`, keeping its retryable flag's
    /// meaning through the message only.
    pub fn read(r: error::Reader<'_>) -> capnp::Result<Self> {
        let code = match r.get_code() {
            Ok(code) => Code::from_wire(code),
            Err(_) if r.get_retryable() => Code::Unavailable,
            Err(_) => Code::Internal,
        };
        let address = r.get_leader_address()?.to_string().unwrap_or_default();
        let leader = (code == Code::NotLeader && !address.is_empty()).then(|| LeaderHint {
            id: r.get_leader_id(),
            address,
        });
        Ok(Self {
            code,
            message: r.get_message()?.to_string().unwrap_or_default(),
            leader,
        })
    }
}

/// A request the server could not decode (or, rarely, a reply it could not
/// build): the caller sent something malformed.
impl From<capnp::Error> for ApiError {
    fn from(e: capnp::Error) -> Self {
        match e.kind {
            capnp::ErrorKind::Overloaded | capnp::ErrorKind::Disconnected => {
                Self::unavailable(e.extra)
            }
            _ => Self::invalid(e.extra),
        }
    }
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        let code = match &e {
            KvError::KeyNotFound { .. } | KvError::LeaseNotFound { .. } => Code::NotFound,
            KvError::LeaseExists { .. } => Code::AlreadyExists,
            KvError::Compacted { .. }
            | KvError::FutureRevision { .. }
            | KvError::LeaseExpired { .. } => Code::FailedPrecondition,
            KvError::TooManyLeases { .. } => Code::ResourceExhausted,
            _ => Code::InvalidArgument,
        };
        Self::new(code, format!("kv: {e}"))
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        let code = match &e {
            ProposeError::NotLeader(hint) => {
                return Self {
                    code: Code::NotLeader,
                    message: e.to_string(),
                    leader: hint.clone(),
                }
            }
            ProposeError::Kv(kv) => return kv.clone().into(),
            ProposeError::Busy(_) | ProposeError::ShuttingDown => Code::Unavailable,
            ProposeError::DiskFull => Code::ResourceExhausted,
            ProposeError::Raft(_) => Code::Internal,
        };
        Self::with_words(code, e)
    }
}

impl From<CommitError> for ApiError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Propose(p) => p.into(),
            contended => Self::new(Code::Unavailable, contended.to_string()),
        }
    }
}

/// A resource kind's refusal: the commit failure behind it keeps its code;
/// the kind's own refusals say theirs through [`Refusal::code`].
pub fn refusal<E: Refusal>(e: E) -> ApiError {
    match e.commit() {
        Some(commit) => commit.clone().into(),
        None => ApiError::new(e.code(), e.to_string()),
    }
}
