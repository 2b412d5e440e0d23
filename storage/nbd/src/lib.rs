//! `photon-nbd`: the NBD protocol as CoronaFS speaks it, free of I/O so it
//! can be tested against real clients' bytes and fuzzed: the fixed-newstyle
//! handshake ([`handshake`]: options, option replies, export info), the
//! transmission phase ([`transmission`]: request headers, simple and
//! structured replies, `base:allocation` block status) and the protocol's
//! numbers ([`consts`]). Everything follows the NBD protocol document
//! (`doc/proto.md` of the NBD project); all integers are big-endian.
//!
//! It must never import the engine, the control plane or a storage engine:
//! the volume server builds on it.

pub mod consts;
pub mod handshake;
pub mod transmission;

pub use handshake::{ClientOption, OptionError, OptionHeader};
pub use transmission::{Command, Request, RequestError};
