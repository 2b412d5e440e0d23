//! The one error of every decoder, and its mapping to HTTP status codes.

use std::fmt;

/// Where in a request a problem lies, for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A remote-write series, by its position, before its labels are read.
    SeriesIndex(usize),
    /// A remote-write series: its position and its labels as sent.
    Series { index: usize, labels: String },
    /// A line of a text format, counted from 1.
    Line(usize),
    /// A remote-write 1.0 metadata entry, by its position.
    Metadata(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::SeriesIndex(index) => write!(f, "series {index}"),
            Place::Series { index, labels } => write!(f, "series {index} {labels}"),
            Place::Line(line) => write!(f, "line {line}"),
            Place::Metadata(index) => write!(f, "metadata entry {index}"),
        }
    }
}

/// What is wrong with one series' labels (Prometheus' data model rules and
/// the limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelProblem {
    #[error("{count} labels, over the limit of {max}")]
    TooMany { count: usize, max: usize },
    #[error("label name {name:?}... is {bytes} bytes, over the limit of {max}")]
    NameTooLong {
        name: String,
        bytes: usize,
        max: usize,
    },
    #[error("label {name} has a value of {bytes} bytes, over the limit of {max}")]
    ValueTooLong {
        name: String,
        bytes: usize,
        max: usize,
    },
    #[error("invalid label name {name:?} (must match [a-zA-Z_][a-zA-Z0-9_]*)")]
    InvalidName { name: String },
    #[error("invalid metric name {name:?} (must match [a-zA-Z_:][a-zA-Z0-9_:]*)")]
    InvalidMetricName { name: String },
    #[error("no metric name (label __name__)")]
    MissingMetricName,
    #[error("duplicate label name {name}")]
    Duplicate { name: String },
    #[error("label name or value is not valid UTF-8 (near {name:?})")]
    NotUtf8 { name: String },
}

/// Why a write request was refused. Nothing of a refused request is stored.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("unsupported content type {0:?}: expected application/x-protobuf, optionally with proto=prometheus.WriteRequest or proto=io.prometheus.write.v2.Request")]
    UnsupportedContentType(String),
    #[error("unsupported content encoding {0:?}: only snappy is accepted")]
    UnsupportedContentEncoding(String),
    #[error("request body of {bytes} bytes is over the limit of {max}")]
    BodyTooLarge { bytes: usize, max: usize },
    #[error("decoded request body of {bytes} bytes is over the limit of {max}")]
    DecodedTooLarge { bytes: usize, max: usize },
    #[error("request body is not valid snappy (block format)")]
    Snappy(#[source] snap::Error),
    #[error("request body is not a valid {message} protobuf message")]
    Protobuf {
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error("request body is not a valid protobuf message: {reason} at byte {offset}")]
    MalformedProtobuf { offset: usize, reason: &'static str },
    #[error("more than {max} series in one request")]
    TooManySeries { max: usize },
    #[error("more than {max} samples in one request")]
    TooManySamples { max: usize },
    #[error("more than {max} metadata entries in one request")]
    TooManyMetadata { max: usize },
    #[error("more than {max} symbols in one request")]
    TooManySymbols { max: usize },
    #[error("{at}: {problem}")]
    Label { at: Place, problem: LabelProblem },
    #[error("{at}: native histograms are not supported")]
    NativeHistograms { at: Place },
    #[error("{at}: exemplars are not supported")]
    Exemplars { at: Place },
    #[error("the first symbol must be the empty string")]
    FirstSymbolNotEmpty,
    #[error("{at}: symbol reference {reference} is out of range ({symbols} symbols)")]
    SymbolOutOfRange {
        at: Place,
        reference: u32,
        symbols: usize,
    },
    #[error("{at}: an odd number of label references ({count})")]
    OddLabelRefs { at: Place, count: usize },
    #[error("{at}: {reason}")]
    Syntax { at: Place, reason: String },
    #[error("{at}: field {field:?} is a string; only numeric and boolean fields are stored")]
    StringField { at: Place, field: String },
    #[error("unknown precision {0:?}")]
    UnknownPrecision(String),
}

impl WireError {
    /// The HTTP status to answer with: 415 for a content type or encoding
    /// we do not speak, 413 for a request over a size limit, 400 for
    /// everything else (bad input a retry will not fix).
    pub fn status(&self) -> u16 {
        match self {
            WireError::UnsupportedContentType(_) | WireError::UnsupportedContentEncoding(_) => 415,
            WireError::BodyTooLarge { .. }
            | WireError::DecodedTooLarge { .. }
            | WireError::TooManySeries { .. }
            | WireError::TooManySamples { .. }
            | WireError::TooManyMetadata { .. }
            | WireError::TooManySymbols { .. } => 413,
            _ => 400,
        }
    }

    pub(crate) fn syntax(line: usize, reason: impl Into<String>) -> Self {
        WireError::Syntax {
            at: Place::Line(line),
            reason: reason.into(),
        }
    }
}
